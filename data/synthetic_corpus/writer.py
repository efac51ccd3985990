"""Writing the synthetic corpus in Clotho's layout (one clip per (seed, split, index)), reading it back, and its
command line (`python -m laac.data.synthetic_corpus`)."""

from __future__ import annotations

import argparse
import csv
import json
import logging as stdlib_logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import soundfile as sf
from transformers.utils import logging

from ...audio_laac import read_audio
from .grammar import NUM_CAPTIONS, make_captions
from .layout import SAMPLING_RATE, sample_clip
from .synthesis import render_clip

logger = logging.get_logger(__name__)

SPLITS = ("development", "validation", "evaluation")


def clip_file_name(split: str, index: int) -> str:
    return f"synth_{split}_{index:05d}.wav"


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one clip: a function of (seed, split, index) only, so worker scheduling cannot matter."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), index]))


def generate_clip(seed: int, split: str, index: int) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Audio (float32, 16 kHz), five captions and the metadata record of clip `index` of `split`."""
    rng = clip_rng(seed, split, index)
    clip = sample_clip(rng)
    captions = make_captions(rng, clip)
    audio = render_clip(rng, clip)
    metadata = {
        "file_name": clip_file_name(split, index),
        "duration": clip.duration_s,
        "events": sorted({event.name for event in clip.events}),
        "scenes": [[event.name for event in scene] for scene in clip.scenes],
        "event_details": [
            {"event": e.name, "start": e.start_s, "end": e.end_s, "attributes": e.attributes, "gain_db": e.gain_db}
            for e in clip.events
        ],
        "captions": captions,
    }
    return audio, captions, metadata


def _write_clip(job: tuple[str, int, str, int]) -> dict[str, Any]:
    out_dir, seed, split, index = job
    audio, _, metadata = generate_clip(seed, split, index)
    sf.write(os.path.join(out_dir, split, metadata["file_name"]), audio, SAMPLING_RATE, subtype="PCM_16")
    return metadata


def write_split(out_dir: str, split: str, n_clips: int, seed: int = 0, num_workers: int = 2) -> float:
    """Write `n_clips` clips of `split` in the Clotho layout under `out_dir`; returns the seconds it took."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    if n_clips < 0:
        raise ValueError(f"n_clips must be >= 0, got {n_clips}")
    start = time.perf_counter()
    os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    jobs = [(out_dir, seed, split, index) for index in range(n_clips)]
    if num_workers > 1 and n_clips > 1:
        with multiprocessing.get_context("fork").Pool(num_workers) as pool:
            records = list(pool.imap(_write_clip, jobs, chunksize=16))
    else:
        records = [_write_clip(job) for job in jobs]
    # Clotho's CSV: comma separated, minimal quoting, "\n" line ends.
    with open(os.path.join(out_dir, f"clotho_captions_{split}.csv"), "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["file_name"] + [f"caption_{i}" for i in range(1, NUM_CAPTIONS + 1)])
        writer.writerows([record["file_name"], *record["captions"]] for record in records)
    with open(os.path.join(out_dir, f"metadata_{split}.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        f.writelines(json.dumps(record, sort_keys=True) + "\n" for record in records)
    return time.perf_counter() - start


def write_corpus(out_dir: str, sizes: dict[str, int], seed: int = 0, num_workers: int = 2) -> dict[str, float]:
    """Write every split in `sizes` ({"development": 4000, ...}); returns seconds per split."""
    return {split: write_split(out_dir, split, n, seed, num_workers) for split, n in sizes.items()}


def read_metadata(out_dir: str, split: str) -> list[dict[str, Any]]:
    """The metadata records of a split, in CSV order."""
    with open(os.path.join(out_dir, f"metadata_{split}.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def as_datasets(out_dir: str, split: str) -> Any:
    """A `datasets.Dataset` view of a written split.

    Columns: file_name, audio ({"array": float32 samples, "sampling_rate": 16000}, decoded here with audio_laac
    rather than datasets' Audio feature, which would need torchcodec), caption_1..caption_5 and events (from the
    metadata file). The audio is held in memory: about 4 bytes per sample, ~350 MB for 4,000 clips of 5.5 s.
    """
    import datasets

    from ..loaders import read_clotho_captions

    csv_path = os.path.join(out_dir, f"clotho_captions_{split}.csv")
    if not os.path.exists(csv_path):
        raise ValueError(f"no {csv_path}; write the split first with write_split(out_dir, {split!r}, n)")
    clips = read_clotho_captions(csv_path)
    events = {record["file_name"]: record["events"] for record in read_metadata(out_dir, split)}
    caption_columns = [f"caption_{i}" for i in range(1, NUM_CAPTIONS + 1)]
    columns: dict[str, list[Any]] = {"file_name": [], "audio": [], "events": []}
    columns.update({name: [] for name in caption_columns})
    for file_name, captions in clips.items():
        array, sampling_rate = read_audio(os.path.join(out_dir, split, file_name), mono=True)
        columns["file_name"].append(file_name)
        columns["audio"].append({"array": array, "sampling_rate": sampling_rate})
        columns["events"].append(events[file_name])
        for name, caption in zip(caption_columns, captions + [""] * (NUM_CAPTIONS - len(captions))):
            columns[name].append(caption)
    features = datasets.Features(
        {
            "file_name": datasets.Value("string"),
            "audio": {"array": datasets.List(datasets.Value("float32")), "sampling_rate": datasets.Value("int32")},
            "events": datasets.List(datasets.Value("string")),
            **{name: datasets.Value("string") for name in caption_columns},
        }
    )
    return datasets.Dataset.from_dict(columns, features=features)


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Write a Clotho-format synthetic captioning corpus.")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=4000, help="clips in the development split")
    parser.add_argument("--n-val", type=int, default=200, help="clips in the validation split")
    parser.add_argument("--n-test", type=int, default=200, help="clips in the evaluation split")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (output does not depend on it)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    # Library modules only log; the command line shows INFO messages on stderr.
    stdlib_logging.basicConfig(format="%(message)s", level=stdlib_logging.INFO)
    sizes = dict(zip(SPLITS, (args.n_train, args.n_val, args.n_test)))
    seconds = write_corpus(args.out, sizes, seed=args.seed, num_workers=args.workers)
    for split, n in sizes.items():
        logger.info(f"{split}: {n} clips in {seconds[split]:.1f} s")
    logger.info(f"wrote {sum(sizes.values())} clips to {args.out} in {sum(seconds.values()):.1f} s")
    return 0

