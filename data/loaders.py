# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
Captioning data for LAAC training and evaluation: loaders for the formats users have on disk, a view that turns
clips into training examples, and the collator that reads (and crops) the audio and calls `LaacProcessor`.

Every loader returns a `datasets.Dataset` of CLIPS with one schema, so sources mix with `concatenate_datasets`:

    id (str) | audio ({"path", "bytes"}, as Audio(decode=False) stores it) | captions (list[str]) | source (str)

The audio is never decoded by `datasets` (that would need torchcodec): the collator reads paths or bytes with
soundfile, taking only the frames it needs. Downmixing and resampling to 16 kHz happen in the feature extractor.
Training crops a random `max_seconds` window; evaluation takes the first `max_seconds` (or the whole clip) and is
never random.
"""

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import soundfile as sf
import torch
from transformers import BatchFeature
from transformers.utils import logging

from ..audio_laac import AUDIO_EXTENSIONS, AudioFile, AudioInputError, AudioLimits, check_samples
from ..processing_laac import LaacProcessor

logger = logging.get_logger(__name__)

MISSING_AUDIO_MODES = ("error", "skip")
CLIP_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        # what datasets' Audio(decode=False) stores, as a plain struct: no code path can reach torchcodec
        "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
        "captions": datasets.List(datasets.Value("string")),
        "source": datasets.Value("string"),
    }
)


# The one audio error (`audio_laac.AudioInputError`, a ValueError with the path and the reason), under the name
# this module used before; data errors name the row and the id as well.
AudioReadError = AudioInputError


# ---------------------------------------------------------------------------------------------------------------
# Building the clip table
# ---------------------------------------------------------------------------------------------------------------


def _clips_dataset(rows: list[dict[str, Any]], source: str, missing_audio: str) -> datasets.Dataset:
    """
    rows: {"id", "path" (None when no file was found), "captions", "where" (what was looked for)} -> the clip
    table. A row without audio is an error naming the row, or is skipped (with a warning) when `missing_audio`
    is "skip" (e.g. a partial download).
    """
    if missing_audio not in MISSING_AUDIO_MODES:
        raise ValueError(f"missing_audio must be one of {MISSING_AUDIO_MODES}, got {missing_audio!r}")
    missing = [(i, row) for i, row in enumerate(rows) if row["path"] is None]
    if missing and missing_audio == "error":
        index, row = missing[0]
        raise AudioReadError(
            f"{source}: no audio file for row {index} (id {row['id']!r}); looked for {row['where']}. "
            f"{len(missing)} of {len(rows)} rows have no audio; fix the paths or pass missing_audio='skip'"
        )
    if missing:
        logger.warning(f"{source}: skipping {len(missing)} of {len(rows)} rows without an audio file")
    kept = [row for row in rows if row["path"] is not None]
    if not kept:
        raise ValueError(f"{source}: none of the {len(rows)} rows has an audio file; check audio_dir")
    table = {
        "id": [row["id"] for row in kept],
        "audio": [{"path": row["path"], "bytes": None} for row in kept],
        "captions": [list(row["captions"]) for row in kept],
        "source": [source] * len(kept),
    }
    return datasets.Dataset.from_dict(table, features=CLIP_FEATURES)


def _index_audio_dir(audio_dir: str) -> dict[str, str]:
    """Every audio file under `audio_dir` by file name and by stem (name without extension), for fast lookups."""
    if not os.path.isdir(audio_dir):
        raise ValueError(f"audio_dir {audio_dir!r} is not a folder; pass the folder that holds the audio files")
    index: dict[str, str] = {}
    for folder, _, files in os.walk(audio_dir):
        for name in files:
            stem, ext = os.path.splitext(name)
            if ext.lower() in AUDIO_EXTENSIONS:
                path = os.path.join(folder, name)
                index.setdefault(name, path)
                index.setdefault(stem, path)
    return index


def _find(index: dict[str, str], candidates: Iterable[str]) -> str | None:
    return next((index[name] for name in candidates if name in index), None)


def _read_csv(path: str, required: Sequence[str]) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        absent = [c for c in required if c not in columns]
        if absent:
            raise ValueError(f"{path} has no column(s) {absent}; its columns are {columns}")
        return list(reader)


def read_clotho_captions(csv_path: str | os.PathLike) -> dict[str, list[str]]:
    """`file_name -> [caption_1, ..., caption_N]` from a Clotho captions CSV, in file order, empty cells skipped.

    The one Clotho reader of the repository (training data, the error detector's captions, evaluation references,
    the synthetic corpus). A CSV without `file_name` or any `caption_*` column, or listing a file twice, is refused.
    """
    with open(csv_path, encoding="utf-8-sig", newline="") as f:  # a byte-order mark, as spreadsheets write, skipped
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        caption_columns = [c for c in columns if c.startswith("caption_")]
        if "file_name" not in columns or not caption_columns:
            raise ValueError(f"{csv_path} has columns {columns}; expected file_name, caption_1..caption_5")
        captions: dict[str, list[str]] = {}
        for line, row in enumerate(reader, start=2):
            if row["file_name"] in captions:
                raise ValueError(f"{csv_path}:{line} lists {row['file_name']!r} a second time; keep one row per file")
            captions[row["file_name"]] = [row[c] for c in caption_columns if row[c]]
    return captions


def load_clotho(csv_path: str, audio_dir: str, missing_audio: str = "error") -> datasets.Dataset:
    """
    Clotho v2.1: a captions CSV (file_name, caption_1..caption_5) and the folder of that split's wav files
    (e.g. clotho_captions_development.csv + development/). One clip per row, all five captions kept.
    """
    clips = []
    for file_name, captions in read_clotho_captions(csv_path).items():
        path = os.path.join(audio_dir, file_name)
        clips.append(
            {"id": file_name, "path": path if os.path.isfile(path) else None, "captions": captions, "where": repr(path)}
        )
    return _clips_dataset(clips, "clotho", missing_audio)


def audiocaps_file_stems(youtube_id: str, start_time: str, audiocap_id: str) -> list[str]:
    """
    File names an AudioCaps clip may have on disk (any of .wav/.flac/.ogg/.mp3). Download tools name them
    differently; accepted, in order: `{youtube_id}_{start}`, `Y{youtube_id}_{start}`, the AudioSet style
    `{youtube_id}_{start:.3f}_{start+10:.3f}` (with or without the `Y`), `{youtube_id}`, `Y{youtube_id}` and
    `{audiocap_id}`; `start` is written as in the CSV ("30") and as a float ("30.0").
    """
    start = float(start_time)
    starts = dict.fromkeys([start_time, str(int(start)) if start.is_integer() else start_time, f"{start:.1f}"])
    stems = [f"{prefix}{youtube_id}_{s}" for s in starts for prefix in ("", "Y")]
    stems += [f"{prefix}{youtube_id}_{start:.3f}_{start + 10:.3f}" for prefix in ("", "Y")]
    return stems + [youtube_id, f"Y{youtube_id}", audiocap_id]


def load_audiocaps(csv_path: str, audio_dir: str, missing_audio: str = "error") -> datasets.Dataset:
    """
    AudioCaps: a CSV (audiocap_id, youtube_id, start_time, caption) and a folder of the downloaded 10-s clips
    (naming rules: `audiocaps_file_stems`). Rows of the same clip (validation/test have 5) become one clip.
    """
    rows = _read_csv(csv_path, ["audiocap_id", "youtube_id", "start_time", "caption"])
    index = _index_audio_dir(audio_dir)
    clips: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["youtube_id"], row["start_time"])
        if key not in clips:
            stems = audiocaps_file_stems(row["youtube_id"], row["start_time"], row["audiocap_id"])
            clips[key] = {
                "id": f"{row['youtube_id']}_{row['start_time']}",
                "path": _find(index, stems),
                "captions": [],
                "where": f"{stems[:2]}... in {audio_dir!r}",
            }
        clips[key]["captions"].append(row["caption"])
    return _clips_dataset(list(clips.values()), "audiocaps", missing_audio)


def read_id_list(path: str, source: str | None = None) -> set[str]:
    """
    An exclusion list: a text file (one id per line), a JSON list of ids, or a JSON object of lists keyed by
    source (as WavCaps' blacklist files: {"FreeSound": [...], ...}; with `source` only that list is used).
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not path.endswith(".json"):
        return {line.strip() for line in text.splitlines() if line.strip()}
    data = json.loads(text)
    if isinstance(data, dict):
        lists = [data[source]] if source is not None and source in data else list(data.values())
        return {str(item) for ids in lists for item in ids}
    return {str(item) for item in data}


def _stem(name: str) -> str:
    stem, ext = os.path.splitext(os.path.basename(name))
    return stem if ext.lower() in AUDIO_EXTENSIONS else os.path.basename(name)


def load_wavcaps(
    json_path: str,
    audio_dir: str,
    source: str | None = None,
    exclude: None | str | Iterable[str] = None,
    missing_audio: str = "error",
) -> datasets.Dataset:
    """
    One WavCaps source: its JSON ({"data": [{"id", "caption", "audio" or "file_name", ...}]}) and the folder of
    its audio. The file is `audio`/`file_name` when that exists under `audio_dir`, else `{id}` with any audio
    extension (the released archives name files by id; AudioSet_SL ids already end in ".wav").
    `exclude`: ids to drop (the Freesound clips that overlap Clotho): a list file (`read_id_list`) or ids.
    """
    with open(json_path, encoding="utf-8") as f:
        entries = json.load(f)["data"]
    source = source or os.path.splitext(os.path.basename(json_path))[0]
    excluded = read_id_list(exclude, source) if isinstance(exclude, str) else set(map(str, exclude or ()))
    excluded |= {_stem(item) for item in excluded}
    index = _index_audio_dir(audio_dir)
    clips = []
    for entry in entries:
        clip_id = str(entry["id"])
        if clip_id in excluded or _stem(clip_id) in excluded:
            continue
        names = [entry.get("audio"), entry.get("file_name"), clip_id, _stem(clip_id)]
        names = [os.path.basename(n) for n in names if n] + [_stem(n) for n in names if n]
        captions = entry["caption"] if isinstance(entry["caption"], list) else [entry["caption"]]
        clips.append({"id": clip_id, "path": _find(index, names), "captions": captions, "where": f"{names[:3]}"})
    if len(clips) < len(entries):
        logger.info(f"wavcaps/{source}: excluded {len(entries) - len(clips)} of {len(entries)} clips")
    return _clips_dataset(clips, f"wavcaps/{source}", missing_audio)


def load_manifest(
    path: str,
    audio_dir: str | None = None,
    audio_column: str = "audio",
    caption_column: str = "caption",
    id_column: str | None = None,
    missing_audio: str = "error",
) -> datasets.Dataset:
    """
    A generic manifest: JSONL (one object a line) or CSV with an audio path column and a caption column (a
    string, or in JSONL a list of strings). Rows that name the same audio file become one clip. Relative
    paths are resolved against `audio_dir` (default: the manifest's folder).
    """
    if path.endswith((".jsonl", ".json")):
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        if rows and (audio_column not in rows[0] or caption_column not in rows[0]):
            raise ValueError(f"{path}: rows need {audio_column!r} and {caption_column!r}; row 0 has {list(rows[0])}")
    else:
        rows = _read_csv(path, [audio_column, caption_column])
    base = audio_dir or os.path.dirname(os.path.abspath(path))
    clips: dict[str, dict[str, Any]] = {}
    for row in rows:
        file = os.path.join(base, row[audio_column])
        if file not in clips:
            clip_id = str(row[id_column]) if id_column else row[audio_column]
            clips[file] = {
                "id": clip_id,
                "path": file if os.path.isfile(file) else None,
                "captions": [],
                "where": repr(file),
            }
        caption = row[caption_column]
        clips[file]["captions"] += caption if isinstance(caption, list) else [caption]
    return _clips_dataset(list(clips.values()), f"manifest/{os.path.basename(path)}", missing_audio)


def _encode_arrays(example: dict[str, Any], audio_column: str) -> dict[str, Any]:
    """A decoded {"array", "sampling_rate"} clip -> FLAC bytes, so every source shares one (undecoded) schema."""
    buffer = io.BytesIO()
    array = np.asarray(example[audio_column]["array"], dtype=np.float32)
    sf.write(buffer, array, int(example[audio_column]["sampling_rate"]), format="FLAC", subtype="PCM_24")
    return {audio_column: {"bytes": buffer.getvalue(), "path": None}}


def load_hf_dataset(
    dataset: str | datasets.Dataset,
    split: str | None = None,
    audio_column: str = "audio",
    caption_column: str | Sequence[str] = "caption",
    id_column: str | None = None,
    source: str | None = None,
) -> datasets.Dataset:
    """
    Any `datasets` dataset with an audio column: a `Dataset`, a `save_to_disk` folder or a `load_dataset` name
    (with `split`). The audio column may be an `Audio` feature (read undecoded: no torchcodec), a path string,
    or decoded {"array", "sampling_rate"} dicts. `caption_column`: one column (a string or a list of strings) or
    several (e.g. caption_1..caption_5).
    """
    if isinstance(dataset, str):
        name = dataset
        dataset = datasets.load_from_disk(name) if os.path.isdir(name) else datasets.load_dataset(name, split=split)
        if isinstance(dataset, datasets.DatasetDict):
            if split is None:
                raise ValueError(f"{name} has splits {list(dataset)}; pass split=")
            dataset = dataset[split]
    source = source or f"hf/{getattr(dataset.info, 'dataset_name', None) or 'dataset'}"
    if audio_column not in dataset.column_names:
        raise ValueError(f"{source} has no audio column {audio_column!r}; columns are {dataset.column_names}")
    feature = dataset.features[audio_column]
    if isinstance(feature, dict) and "array" in feature:
        dataset = dataset.map(_encode_arrays, fn_kwargs={"audio_column": audio_column}, desc="encoding audio")
    else:  # an Audio feature or path strings: the undecoded {"bytes", "path"} storage
        dataset = dataset.cast_column(audio_column, datasets.Audio(decode=False))
    columns = [caption_column] if isinstance(caption_column, str) else list(caption_column)

    def to_clip(example: dict[str, Any], index: int) -> dict[str, Any]:
        captions = [
            c
            for column in columns
            for c in (example[column] if isinstance(example[column], list) else [example[column]])
        ]
        clip_id = str(example[id_column]) if id_column else (example[audio_column].get("path") or str(index))
        return {"id": clip_id, "captions": captions, "source": source}

    clips = dataset.map(
        to_clip, with_indices=True, remove_columns=[c for c in dataset.column_names if c != audio_column]
    )
    return (
        clips.rename_column(audio_column, "audio").cast(CLIP_FEATURES)
        if audio_column != "audio"
        else clips.cast(CLIP_FEATURES)
    )


# ---------------------------------------------------------------------------------------------------------------
# Source specs (what train.py's DataArguments hold) and mixing
# ---------------------------------------------------------------------------------------------------------------

LOADERS = {
    "clotho": (load_clotho, {"csv": "csv_path"}),
    "audiocaps": (load_audiocaps, {"csv": "csv_path"}),
    "wavcaps": (load_wavcaps, {"json": "json_path"}),
    "manifest": (load_manifest, {}),
    "hf": (load_hf_dataset, {"path": "dataset"}),
}


def parse_source_spec(spec: str | dict[str, Any]) -> dict[str, Any]:
    """
    A data source as a dict with a "kind" (clotho, audiocaps, wavcaps, manifest, hf) and the loader's arguments.
    Strings are JSON objects or `kind:key=value,key=value`, e.g.
    `clotho:csv=data/clotho_captions_development.csv,audio_dir=data/development`. Optional "limit" keeps the
    first N clips (smoke runs).
    """
    if isinstance(spec, dict):
        parsed = dict(spec)
    elif spec.lstrip().startswith("{"):
        parsed = json.loads(spec)
    else:
        kind, _, rest = spec.partition(":")
        pairs = [item.split("=", 1) for item in rest.split(",") if item]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError(f"bad data source {spec!r}; expected 'kind:key=value,key=value'")
        parsed = {"kind": kind, **dict(pairs)}
    if parsed.get("kind") not in LOADERS:
        raise ValueError(f"data source {spec!r} has kind {parsed.get('kind')!r}; use one of {sorted(LOADERS)}")
    return parsed


def load_source(spec: str | dict[str, Any]) -> datasets.Dataset:
    """The clip table of one source spec (see `parse_source_spec`)."""
    spec = parse_source_spec(spec)
    loader, renames = LOADERS[spec.pop("kind")]
    limit = spec.pop("limit", None)
    clips = loader(**{renames.get(key, key): value for key, value in spec.items()})
    return clips.select(range(min(int(limit), len(clips)))) if limit is not None else clips


def load_sources(specs: Sequence[str | dict[str, Any]]) -> datasets.Dataset:
    """Several sources mixed into one clip table (each row keeps its `source`)."""
    if not specs:
        raise ValueError("no data sources given; pass at least one (e.g. 'clotho:csv=...,audio_dir=...')")
    return datasets.concatenate_datasets([load_source(spec) for spec in specs])


# ---------------------------------------------------------------------------------------------------------------
# Examples and collation
# ---------------------------------------------------------------------------------------------------------------


class CaptionExamples(torch.utils.data.Dataset):
    """
    Examples over a clip table. `per_caption=True` (training, and the evaluation loss): each caption of each
    clip is one example. `per_caption=False` (generation): one example per clip, its captions as references.

    With a `seed`, every example carries a `crop_seed` (seed, epoch, index) for its random crop, so a crop depends
    on nothing else: not on dataloader workers, prefetching or a resume (call `set_epoch` each epoch; train.py does
    it with a callback). Without one, random crops draw from torch's global generator.
    """

    def __init__(self, clips: datasets.Dataset, per_caption: bool = True, seed: int | None = None) -> None:
        self.clips = clips
        self.seed = seed
        self.epoch = 0
        counts = [len(captions) for captions in clips["captions"]]
        if per_caption:
            self.index = [(row, k) for row, n in enumerate(counts) for k in range(n)]
        else:
            self.index = [(row, 0) for row in range(len(counts))]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def lengths(self, max_seconds: float | None = None) -> list[float]:
        """
        Seconds of audio each example feeds the model (clips longer than `max_seconds` are cropped to it), from
        the files' headers only: for batches of similar lengths (`train_sampling_strategy="group_by_length"`).
        """
        seconds = [audio_seconds(audio) for audio in self.clips["audio"]]
        cap = float("inf") if max_seconds is None else max_seconds
        return [min(seconds[row], cap) for row, _ in self.index]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row, k = self.index[i]
        clip = self.clips[row]
        example = {
            "row": row,
            "id": clip["id"],
            "audio": clip["audio"],
            "caption": clip["captions"][k],
            "references": clip["captions"],
        }
        if self.seed is not None:
            example["crop_seed"] = (self.seed, self.epoch, i)
        return example


def _source(audio: dict[str, Any]) -> str | bytes:
    return audio["bytes"] if audio.get("bytes") else audio["path"]


def audio_seconds(audio: dict[str, Any], limits: AudioLimits | None = None) -> float:
    """Duration of a clip's audio ({"path"} or {"bytes"}) from its header, without decoding it."""
    with AudioFile(_source(audio), limits) as audio_file:
        return audio_file.frames / audio_file.sampling_rate


def _crop_start(example: dict[str, Any], choices: int) -> int:
    """A random start among `choices`: from the example's own `crop_seed` if it has one, else torch's generator."""
    if "crop_seed" in example:
        return int(np.random.default_rng(list(example["crop_seed"])).integers(choices))
    return int(torch.randint(0, choices, ()).item())


def read_audio(example: dict[str, Any], max_seconds: float | None, random_crop: bool) -> tuple[np.ndarray, int]:
    """
    Samples (frames[, channels], float32) and rate of an example's audio, at most `max_seconds` of it: a random
    window when `random_crop`, else the first `max_seconds` (None: the whole clip). Only those frames are read.
    """
    samples, rate, _ = _read_window(example, max_seconds, random_crop)
    return samples, rate


def _read_window(
    example: dict[str, Any], max_seconds: float | None, random_crop: bool, limits: AudioLimits | None = None
) -> tuple[np.ndarray, int, bool]:
    """`read_audio`, and whether the samples are the whole clip."""
    audio = example["audio"]
    where = audio.get("path") if not audio.get("bytes") else f"<{len(audio['bytes'])} bytes of {audio.get('path')}>"
    try:
        with AudioFile(_source(audio), limits) as audio_file:
            rate, total = audio_file.sampling_rate, audio_file.frames
            length = total if max_seconds is None else min(total, round(max_seconds * rate))
            start = _crop_start(example, total - length + 1) if random_crop and total > length else 0
            samples = audio_file.read(start, length)
        check_samples(samples)
    except AudioInputError as error:
        raise AudioInputError(
            f"cannot read the audio of row {example.get('row')} (id {example.get('id')!r}) at {where}: {error.reason}",
            where,
        ) from error
    return (samples[:, 0] if samples.shape[1] == 1 else samples), rate, length == total


def feature_cache_key(example: dict[str, Any]) -> tuple[Any, ...] | None:
    """The key of a clip's whole log-mel in `LaacDataCollator.feature_cache`: its audio path and id."""
    path = example["audio"].get("path")
    return (path, example.get("id")) if path or example.get("id") else None


@dataclass
class LaacDataCollator:
    """
    Examples (from `CaptionExamples`) -> model inputs. Reads each clip with soundfile, crops it to
    `max_seconds` (randomly when `train`, else from the start; None keeps whole clips), and runs the processor,
    which downmixes, resamples to 16 kHz, and normalises the captions into labels (`with_labels`). `silence`
    replaces the audio by zeros: a model trained so learns the captions' language prior only.

    `cache_features` keeps the log-mel of every clip read whole (not longer than `max_seconds`) in memory, so
    later epochs skip reading and the mel (on 2 CPU cores about half the time of a small model's step); crops of
    longer clips are made afresh each time. About 0.26 MB per 10 s of audio, per DataLoader worker. The cache is
    `feature_cache`, keyed by `feature_cache_key(example)`: a caller that has computed the same log-mels (the same
    feature extractor, whole clips) may pass them in it, as `laac demo` passes its tagger's to the captioner.
    """

    processor: LaacProcessor
    max_seconds: float | None = 10.0
    train: bool = True
    with_labels: bool = True
    silence: bool = False  # ablation: every clip becomes digital silence of the same length (a blind baseline)
    cache_features: bool = False
    feature_cache: dict[tuple[Any, ...], np.ndarray] = field(default_factory=dict, repr=False)

    def __call__(self, examples: list[dict[str, Any]]) -> BatchFeature:
        text = [example["caption"] for example in examples] if self.with_labels else None
        if self.cache_features:
            features = self.processor.feature_extractor.pad_log_mels([self._log_mel(e) for e in examples])
            return self.processor.from_features(features, text_target=text)
        clips = [read_audio(example, self.max_seconds, random_crop=self.train) for example in examples]
        if self.silence:
            clips = [(np.zeros_like(samples), rate) for samples, rate in clips]
        audio, rates = [samples for samples, _ in clips], [rate for _, rate in clips]
        return self.processor(audio, text_target=text, sampling_rate=rates)  # mixed rates: resampled per clip

    def _log_mel(self, example: dict[str, Any]) -> np.ndarray:
        """One clip's (n_mels, frames) log-mel, as the processor makes it; kept when the clip was read whole."""
        key = feature_cache_key(example)
        if key is not None and self.silence:  # never a clip's own log-mel, even from a cache shared with another
            key = ("silence", *key)
        if key in self.feature_cache:
            return self.feature_cache[key]
        samples, rate, whole = _read_window(example, self.max_seconds, self.train)
        if self.silence:  # digital silence's log-mel depends on its shape alone: computed once per shape and rate
            silence_key = ("silence", samples.shape, rate)
            if silence_key not in self.feature_cache:
                self.feature_cache[silence_key] = self._features(np.zeros_like(samples), rate)
            mel = self.feature_cache[silence_key]
        else:
            mel = self._features(samples, rate)
        if whole and key is not None:
            self.feature_cache[key] = mel
        return mel

    def _features(self, samples: np.ndarray, rate: int) -> np.ndarray:
        features = self.processor.feature_extractor(samples, sampling_rate=rate, return_tensors="np")
        return features["input_features"][0, :, : int(features["feature_attention_mask"].sum())]


__all__ = [
    "CLIP_FEATURES",
    "AudioReadError",
    "CaptionExamples",
    "LaacDataCollator",
    "audio_seconds",
    "audiocaps_file_stems",
    "feature_cache_key",
    "load_audiocaps",
    "load_clotho",
    "read_clotho_captions",
    "load_hf_dataset",
    "load_manifest",
    "load_source",
    "load_sources",
    "load_wavcaps",
    "parse_source_spec",
    "read_audio",
    "read_id_list",
]
