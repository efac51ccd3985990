"""
Property-based fuzzing of every entry point that takes outside input (hypothesis). Only the documented errors may
come out (`ValueError`, whose subclass `AudioInputError` carries the path and the reason) and every produced
result or record is valid. Seeded (`SEED`, no example database), so a run is reproducible.

Generated cases per entry point (each test counts its calls and asserts the count):
  feature extractor 1,000 inputs; processor 1,000; file reading 1,000 sources; pipeline 100 calls x 10 sources =
  1,000; CLI 50 folder runs x 20 files = 1,000; metrics 1,000; post-corrector input checks 1,000 calls;
  train.py's data sources (manifest -> clip table -> collator) 1,000 manifests.
Model calls are the costly part: one tiny model for the module, greedy decoding of at most 3 tokens, and most
hostile sources are refused from their header before the model sees them.
"""

import json
import operator
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from laac.correction import post_corrector
from laac.cli import main as cli
from laac.cli.captioning import BatchSizes, caption_records
from laac.evaluation import metrics as metrics_laac
from laac.audio_laac import AudioInputError, AudioLimits, iter_segments, read_audio
from laac.data.loaders import CaptionExamples, LaacDataCollator, load_manifest
from laac.feature_extraction_laac import LaacFeatureExtractor

from tests.hostile_audio import lying_wav, real_file
from tests.laac_tester import save_tiny_model, tiny_config, tiny_processor

SEED = 20241215  # the suite's seed: every test draws the same cases on every run
LIMITS = AudioLimits()
CHEAP_GENERATION = {"num_beams": 1, "max_new_tokens": 3}


def fuzz(strategy: st.SearchStrategy, check: Callable[[Any], None], examples: int) -> int:
    """Run `check` on `examples` seeded draws of `strategy`; returns how many cases ran."""
    calls = []

    @seed(SEED)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(case: Any) -> None:
        calls.append(1)
        check(case)

    run()
    return len(calls)


# -- strategies ------------------------------------------------------------------------------------------------------

DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "uint8", "bool", "complex64", "object")
RATES = st.one_of(
    st.sampled_from([16000, 44100, 8000, 22050, 48000, 192000, 1, 100, 999, 1000, 768000, 768001, 0, -16000]),
    st.integers(100, 192_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([None, "16000", True]),
)


@st.composite
def clips(draw: Any) -> Any:
    """One clip as a user might pass it: array, list or tensor; any dtype, 1-6 channels, 0-12,640 samples."""
    length = draw(st.one_of(st.sampled_from([0, 1, 2, 255, 256, 257, 12640]), st.integers(0, 12_000)))
    channels = draw(st.integers(1, 6))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    audio = rng.standard_normal((length, channels)) * draw(st.sampled_from([0.0, 0.01, 1.0, 1e4]))
    if draw(st.booleans()) and length:
        audio.flat[rng.integers(audio.size)] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e38]))
    if dtype == "object":
        audio = audio.astype(object)
    elif np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        audio = np.clip(audio * info.max, info.min, info.max).astype(dtype) if np.isfinite(audio).all() else audio
    else:
        audio = audio.astype(dtype)
    layout = draw(st.sampled_from(["mono", "last", "first", "3d"]))
    audio = {"mono": audio[:, 0], "last": audio, "first": audio.T, "3d": audio[None]}[layout]
    kind = draw(st.sampled_from(["numpy", "list", "tensor", "string"]))
    if kind == "list":
        return audio.tolist()
    if kind == "tensor" and audio.dtype.kind in "fiub" and audio.dtype != np.uint16:
        return torch.from_numpy(np.ascontiguousarray(audio))
    return "not audio" if kind == "string" else audio


BATCHES = st.one_of(clips(), st.lists(clips(), min_size=1, max_size=3))


def _features_are_valid(features: Any, count: int) -> None:
    mel, mask = features["input_features"], features["feature_attention_mask"]
    assert mel.dtype == torch.float32 and mel.shape[:2] == (count, 64) and mel.shape[2] >= 80
    assert torch.isfinite(mel).all() and mask.shape == (count, mel.shape[2])
    assert (mask.sum(-1) >= 80).all()


# -- feature extractor and processor ---------------------------------------------------------------------------------


def test_fuzz_feature_extractor():
    extractor = LaacFeatureExtractor()

    def check(case: tuple[Any, Any]) -> None:
        audio, rate = case
        try:
            features = extractor(audio, sampling_rate=rate)
        except ValueError:  # AudioInputError is one
            return
        count = len(audio) if extractor._is_batch(audio) else 1
        _features_are_valid(features, count)

    assert fuzz(st.tuples(BATCHES, RATES), check, 1000) >= 1000


def test_fuzz_processor():
    processor = tiny_processor(tiny_config())
    captions = st.one_of(st.none(), st.text(max_size=60), st.lists(st.text(max_size=30), max_size=4))

    def check(case: tuple[Any, Any, Any]) -> None:
        audio, rate, text = case
        try:
            batch = processor(audio, text=text, sampling_rate=rate)
        except ValueError:
            return
        count = batch["input_features"].shape[0]
        _features_are_valid(batch, count)
        assert batch["input_ids"].shape[0] == count and batch["attention_mask"].shape == batch["input_ids"].shape
        if text is not None:
            assert batch["labels"].shape == batch["input_ids"].shape

    assert fuzz(st.tuples(BATCHES, RATES, captions), check, 1000) >= 1000


# -- file reading ----------------------------------------------------------------------------------------------------

REAL_FILES = {
    (fmt, rate, channels): real_file(fmt, seconds=0.25, rate=rate, channels=channels, seed=channels)
    for fmt in ("WAV", "FLAC", "OGG")
    for rate, channels in ((16000, 1), (44100, 2), (8000, 6))
}


def _truncate(case: tuple[bytes, float]) -> bytes:
    data, fraction = case
    return data[: int(len(data) * fraction)]


def _corrupt(case: tuple[bytes, list[tuple[int, int]]]) -> bytes:
    data, edits = case
    buffer = bytearray(data)
    for position, value in edits:
        buffer[position % len(buffer)] = value
    return bytes(buffer)


REAL = st.sampled_from(sorted(REAL_FILES)).map(REAL_FILES.get)
LYING_HEADERS = st.builds(
    lying_wav,
    rate=st.one_of(st.sampled_from([0, 1, 999, 1000, 16000, 768000, 768001, 2**32 - 1]), st.integers(0, 2**32 - 1)),
    channels=st.one_of(st.sampled_from([0, 1, 2, 32, 33, 1024, 65535]), st.integers(0, 65535)),
    bits=st.sampled_from([0, 7, 8, 16, 24, 32, 64]),
    claimed_bytes=st.one_of(st.sampled_from([0, 1, 2**31, 2**32 - 1]), st.integers(0, 2**32 - 1)),
    actual_bytes=st.integers(0, 4096),
    seed=st.integers(0, 1000),
)
FILE_BYTES = st.one_of(
    st.binary(max_size=2048),
    st.builds(operator.add, st.sampled_from([b"RIFF", b"fLaC", b"OggS", b"ID3", b"FORM"]), st.binary(max_size=512)),
    st.tuples(REAL, st.floats(0.0, 1.0)).map(_truncate),
    st.tuples(REAL, st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 255)), min_size=1, max_size=16)).map(
        _corrupt
    ),
    LYING_HEADERS,
    REAL,
)


def _samples_are_valid(samples: np.ndarray, rate: int) -> None:
    assert samples.dtype == np.float32 and samples.ndim == 2 and 1 <= samples.shape[1] <= LIMITS.max_channels
    assert samples.shape[0] >= 1 and np.isfinite(samples).all()
    assert LIMITS.min_sampling_rate <= rate <= LIMITS.max_sampling_rate
    assert samples.shape[0] / rate <= LIMITS.max_duration_seconds


def test_fuzz_file_reading():
    def check(data: bytes) -> None:
        try:
            samples, rate = read_audio(data)
        except AudioInputError as error:
            assert error.path == "audio bytes" and error.reason
        else:
            _samples_are_valid(samples, rate)
        try:
            segments = list(iter_segments(data, 0.1, 0.1))
        except AudioInputError:
            return
        for audio, rate, start, end, _ in segments:
            assert audio.dtype == np.float32 and audio.shape == (end - start,) and 0 <= start <= end

    assert fuzz(FILE_BYTES, check, 1000) >= 1000


# -- pipeline and CLI ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(save_tiny_model(tmp_path_factory.mktemp("laac-fuzz-model")))


@pytest.fixture(scope="module")
def captioner(model_dir):
    from transformers import pipeline

    import laac  # noqa: F401  registers the task

    return pipeline("audio-captioning", model=model_dir)


def _record_is_valid(record: dict) -> None:
    json.dumps(record)  # JSON-able
    assert ("caption" in record) != ("error" in record), record
    if "error" in record:
        assert isinstance(record["error"], str) and record["error"]
    else:
        assert isinstance(record["caption"], str)
        for segment in record.get("segments", []):
            assert isinstance(segment["caption"], str) and 0 <= segment["start"] < segment["end"]


def test_fuzz_pipeline(captioner, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-pipeline")
    (folder / "real.flac").write_bytes(REAL_FILES[("FLAC", 44100, 2)])
    paths = st.sampled_from([str(folder / "real.flac"), str(folder / "missing.wav"), str(folder)])
    sources = st.lists(st.one_of(FILE_BYTES, FILE_BYTES, paths), min_size=10, max_size=10)
    captioned = []

    def check(items: list[Any]) -> None:
        records = dict(caption_records(captioner, items, BatchSizes(4), segment_seconds=0.2, **CHEAP_GENERATION))
        assert list(records) == list(range(len(items)))  # every input once, in input order
        for record in records.values():
            _record_is_valid(record)
        captioned.extend("caption" in record for record in records.values())

    assert fuzz(sources, check, 100) * 10 >= 1000
    assert 0 < sum(captioned) < len(captioned), "the cases must mix captioned and refused sources"


def test_fuzz_cli(captioner, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-cli")
    folders = iter(range(10**6))
    files = st.lists(FILE_BYTES, min_size=20, max_size=20)
    captioned = []

    def check(contents: list[bytes]) -> None:
        folder = root / str(next(folders))
        folder.mkdir()
        extensions = [".wav", ".flac", ".ogg", ".mp3"]
        for index, data in enumerate(contents):
            (folder / f"input_{index:02d}{extensions[index % 4]}").write_bytes(data)
        out = folder / "captions.jsonl"
        with mock.patch.object(cli, "_load_pipeline", return_value=captioner):
            status = cli.main(["caption", "-q", "--num-beams", "1", "-o", str(out), str(folder)])
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert sorted(Path(r["path"]).name for r in records) == sorted(p.name for p in folder.iterdir() if p != out)
        for record in records:
            _record_is_valid({k: v for k, v in record.items() if k != "path"})
        assert status == min(sum("error" in record for record in records), 255)
        captioned.extend("caption" in record for record in records)

    assert fuzz(files, check, 50) * 20 >= 1000
    assert 0 < sum(captioned) < len(captioned), "the cases must mix captioned and refused files"


# -- metrics ---------------------------------------------------------------------------------------------------------

ANYTHING = st.one_of(st.none(), st.integers(), st.floats(), st.binary(max_size=8), st.booleans())
LONG_TEXT = st.integers(20, 400).map(lambda n: "a dog barks " * n)  # 60-1,200 words: over the corrector's limits
CAPTION = st.one_of(st.text(max_size=40), st.just(""), st.just(" \n\t"), LONG_TEXT, ANYTHING)
REFERENCES = st.one_of(st.lists(CAPTION, max_size=5), st.text(max_size=10), ANYTHING)


def test_fuzz_metrics_validation():
    """compute_dcase_metrics on hostile predictions/references: a ValueError, or scoring reached with valid input."""
    reached = []

    def fake_tokenize(predictions: list, references: list, *args: Any) -> tuple[list, list]:
        assert all(isinstance(p, str) for p in predictions) and len(predictions) == len(references)
        assert all(refs and all(isinstance(r, str) for r in refs) for refs in references)
        reached.append(1)
        return predictions, references

    def fake_score(candidates: list, mult_refs: list, names: list, *args: Any) -> dict:
        assert len(candidates) >= 2 or not {"cider_d", "spider", "spider_fl"} & set(names)
        return {name: torch.tensor(0.5) for name in names}

    metric_names = st.one_of(st.none(), st.just("dcase2024"), st.lists(st.sampled_from(
        ["bleu_1", "bleu_4", "rouge_l", "meteor", "cider_d", "spider", "spice", "fense", "nonsense"]), max_size=3))
    hostile = st.tuples(
        st.one_of(st.lists(CAPTION, max_size=4), ANYTHING), st.one_of(st.lists(REFERENCES, max_size=4), ANYTHING)
    )
    texts = st.one_of(st.text(max_size=40), LONG_TEXT)
    well_formed = st.lists(st.tuples(texts, st.lists(texts, min_size=1, max_size=3)), max_size=4).map(
        lambda pairs: ([p for p, _ in pairs], [r for _, r in pairs])
    )
    cases = st.tuples(st.one_of(hostile, well_formed), metric_names).map(lambda case: (*case[0], case[1]))

    def check(case: tuple[Any, Any, Any]) -> None:
        predictions, references, names = case
        try:
            result = metrics_laac.compute_dcase_metrics(predictions, references, metrics=names)
        except ValueError:
            return
        assert isinstance(result["unavailable"], dict)
        assert all(isinstance(value, float) for key, value in result.items() if key != "unavailable")

    with (
        mock.patch.object(metrics_laac, "ptb_tokenize", fake_tokenize),
        mock.patch.object(metrics_laac, "_score", fake_score),
        mock.patch.object(metrics_laac, "java_major_version", lambda *a: 17),
        mock.patch.object(metrics_laac, "available_metrics", lambda *a: dict.fromkeys(metrics_laac.SUPPORTED_METRICS)),
    ):
        assert fuzz(cases, check, 1000) >= 1000
    assert reached, "no generated case was valid: the fuzzing never reached the scorer"


# -- post-corrector --------------------------------------------------------------------------------------------------

INPUT_PROBLEMS = {None, "non_text_input", "empty_input", "input_too_long"}
ANSWER_PROBLEMS = {None, "empty_answer", "answer_too_long", "answer_no_overlap", "answer_adds_content"}


def test_fuzz_post_corrector_inputs():
    """Input checks of the corrector (no LLM runs): per-caption verdicts, pass-through records, answer parsing."""
    gate = post_corrector.PostCorrector(mode="never")
    cases = st.tuples(st.lists(CAPTION, max_size=6), st.text(max_size=300), st.text(max_size=80))

    def check(case: tuple[list, str, str]) -> None:
        captions, answer, source = case
        assert {post_corrector.caption_input_problem(c) for c in captions} <= INPUT_PROBLEMS
        records = gate(captions)
        assert len(records) == len(captions)
        for caption, record in zip(captions, records):
            assert record["raw_caption"] is caption and record["corrected"] is False and record["error_prob"] is None
            assert record["reason"] in INPUT_PROBLEMS - {None} | {"gate_never"}
        parsed = post_corrector.parse_corrected_caption(answer)
        assert isinstance(parsed, str) and parsed == parsed.strip()
        assert post_corrector.correction_problem(source, parsed) in ANSWER_PROBLEMS

    assert fuzz(cases, check, 1000) >= 1000
    with pytest.raises(ValueError, match="mode must be one of"):
        post_corrector.PostCorrector(mode="sometimes")


# -- train.py's data sources -----------------------------------------------------------------------------------------


def _data_pool(folder: Path) -> list[str]:
    """Files a manifest may point at, by kind."""
    pool = {"good.wav": REAL_FILES[("WAV", 16000, 1)], "good.flac": REAL_FILES[("FLAC", 44100, 2)]}
    pool["empty_bytes.wav"] = b""
    pool["corrupt.wav"] = _corrupt((REAL_FILES[("WAV", 16000, 1)], [(i, 0xFF) for i in range(8, 40)]))
    pool["truncated.flac"] = _truncate((REAL_FILES[("FLAC", 16000, 1)], 0.4))
    pool["one_hertz.wav"] = lying_wav(1, 1, 16, 4000, 4000)
    pool["text.wav"] = b"not audio at all\n" * 20
    for name, data in pool.items():
        (folder / name).write_bytes(data)
    sf.write(folder / "zero_frames.wav", np.zeros(0, np.float32), 16000)
    nan = np.full(4000, 0.1, np.float32)
    nan[7] = np.nan
    sf.write(folder / "nan.wav", nan, 16000, subtype="FLOAT")
    (folder / "a_folder.wav").mkdir()
    return [*pool, "zero_frames.wav", "nan.wav", "a_folder.wav", "missing.wav"]


def test_fuzz_train_data_sources(tmp_path_factory):
    """Manifests (what train.py's `manifest:` sources read) pointing at missing, empty and corrupt files."""
    folder = tmp_path_factory.mktemp("fuzz-data")
    names = _data_pool(folder)
    processor = tiny_processor(tiny_config())
    rows = st.lists(st.tuples(st.sampled_from(names), st.text(min_size=1, max_size=20)), min_size=1, max_size=4)
    cases = st.tuples(rows, st.sampled_from(["error", "skip"]), st.booleans(), st.sampled_from([None, 0.1, 2.0]))
    outcomes = []

    def check(case: tuple[list, str, bool, Any]) -> None:
        manifest_rows, missing_audio, train, max_seconds = case
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", dir=folder, delete=False) as manifest:
            manifest.writelines(json.dumps({"audio": n, "caption": c}) + "\n" for n, c in manifest_rows)
        try:
            clips = load_manifest(manifest.name, missing_audio=missing_audio)
            examples = CaptionExamples(clips, seed=0)
            collator = LaacDataCollator(processor, max_seconds=max_seconds, train=train)
            batch = collator([examples[i] for i in range(len(examples))])
        except AudioInputError as error:
            assert error.reason and ("row" in str(error) or "manifest" in str(error))
            outcomes.append("refused")
            return
        except ValueError as error:  # a manifest with no usable row at all
            assert "none of the" in str(error), error
            outcomes.append("empty")
            return
        finally:
            os.remove(manifest.name)
        assert batch["input_features"].shape[0] == len(examples) and torch.isfinite(batch["input_features"]).all()
        outcomes.append("batch")

    assert fuzz(cases, check, 1000) >= 1000
    assert {"refused", "empty", "batch"} <= set(outcomes)
