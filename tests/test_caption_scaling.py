"""
Captioning at scale with `laac caption`'s loop over the pipeline (`laac.cli.captioning.caption_records`): a batch
that runs out of device memory is split and retried (the smaller size is kept and reported), every input gets a
record in input order, and audio read, decoded, resampled and log-melled in the pipeline's DataLoader worker gives
the captions and error records of the in-process path.

Out-of-memory is simulated on the CPU by a `generate` that raises `torch.OutOfMemoryError` (what
`torch.cuda.OutOfMemoryError` is) for batches above a size: the control flow under test is the CLI's, the error the
one CUDA raises.
"""

import argparse
import json
import os
from pathlib import Path

import laac  # noqa: F401  registers the LAAC classes and the task
import numpy as np
import pytest
import soundfile as sf
import torch
from laac.cli import main as cli
from laac.cli.captioning import BatchSizes, caption_records
from transformers import pipeline

from tests.hostile_audio import hostile_one_hertz_wav, lying_wav, write_bad_files
from tests.laac_tester import caption_loss_fn, make_audio, read_jsonl, save_tiny_model
from tests.numerics import assert_same_captions

LENGTHS = (1.0, 6.0, 0.3, 12.0, 2.0, 0.06, 4.0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(save_tiny_model(tmp_path_factory.mktemp("laac-scaling")))


@pytest.fixture(scope="module")
def captioner(model_dir):
    return pipeline("audio-captioning", model=model_dir, device="cpu")


def clips(lengths=LENGTHS):
    return [make_audio(seconds, seed) for seed, seconds in enumerate(lengths)]


class Killed(BaseException):
    """Stands for the process being killed mid-run (not an error the pipeline may catch)."""


def fit_at_most(monkeypatch, captioner, most, attempts=None, fails_alone=None, kill_after=None):
    """
    Make the model's generate raise `torch.OutOfMemoryError` for batches of more than `most` segments, and for any
    batch holding a segment of `fails_alone` mel frames; `attempts` collects every batch size tried; after
    `kill_after` successful batches the run is killed.
    """
    real = type(captioner.model).generate.__get__(captioner.model)
    attempts = [] if attempts is None else attempts
    done = []

    def generate(**inputs):
        frames = inputs["feature_attention_mask"].sum(-1).tolist()
        attempts.append(len(frames))
        if len(frames) > most or fails_alone in frames:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB (batch of {len(frames)})")
        if kill_after is not None and len(done) == kill_after:
            raise Killed()
        done.append(len(frames))
        return real(**inputs)

    monkeypatch.setattr(captioner.model, "generate", generate)
    return attempts


# -- out of memory ---------------------------------------------------------------------------------------------------


def records_of(captioner, items, batch_size, **kwargs):
    """The CLI's loop over `items`: (records in input order, the batch sizes it ended with)."""
    sizes = BatchSizes(batch_size)
    indexed = list(caption_records(captioner, items, sizes, **kwargs))
    assert [index for index, _ in indexed] == list(range(len(items)))  # every input once, in input order
    return [record for _, record in indexed], sizes


def test_out_of_memory_halves_the_batch_and_gives_the_unsplit_captions(captioner, monkeypatch):
    audio = clips()
    unsplit = captioner(audio, sampling_rate=16000, batch_size=8)
    in_twos = captioner(audio, sampling_rate=16000, batch_size=2)
    attempts = fit_at_most(monkeypatch, captioner, 2)
    with pytest.raises(torch.OutOfMemoryError):  # the pipeline itself raises: splitting is the CLI's
        captioner(audio, sampling_rate=16000, batch_size=8)
    attempts.clear()
    split, sizes = records_of(captioner, audio, 8, sampling_rate=16000)
    # 7 clips: 7 fails, 4 fails, then 2, 2, 2, 1: the batches of a batch-size-2 run, in the same order
    assert attempts == [7, 4, 2, 2, 2, 1]
    assert split == in_twos
    caption_loss = caption_loss_fn(captioner.model, captioner.processor, audio)
    assert_same_captions([r["caption"] for r in split], [r["caption"] for r in unsplit], caption_loss)
    assert (sizes.requested, sizes.current, sizes.out_of_memory_errors) == (8, 2, 2)


def test_the_smaller_batch_size_is_kept_for_the_following_batches(captioner, monkeypatch):
    attempts = fit_at_most(monkeypatch, captioner, 1)
    records, sizes = records_of(captioner, clips(LENGTHS + (3.0, 5.0)), 4, sampling_rate=16000)
    assert attempts == [4, 2] + [1] * 9  # out of memory at the first batch only; the rest start at the settled size
    assert all("caption" in record for record in records)
    assert sizes.current == 1


def test_a_segment_that_does_not_fit_alone_gets_an_error_record(captioner, monkeypatch):
    audio = clips()
    expected = captioner(audio, sampling_rate=16000, batch_size=4)
    longest = 1 + 12 * 16000 // 160  # the mel frames of the 12-s clip (input 3)
    fit_at_most(monkeypatch, captioner, 4, fails_alone=longest)
    records, _ = records_of(captioner, audio, 4, sampling_rate=16000)
    assert "out of memory with this segment alone" in records[3]["error"]
    assert [records[i] for i in range(len(audio)) if i != 3] == [r for i, r in enumerate(expected) if i != 3]


def test_a_failing_input_is_found_and_the_others_captioned(captioner, monkeypatch):
    """An error that names no input (here the model's, on one clip) is traced to its input by re-running its batch."""
    audio = clips()
    expected = captioner(audio, sampling_rate=16000, batch_size=3)
    real = type(captioner.model).generate.__get__(captioner.model)
    bad_frames = 1 + 6 * 16000 // 160  # the 6-s clip (input 1)

    def generate(**inputs):
        if bad_frames in inputs["feature_attention_mask"].sum(-1).tolist():
            raise RuntimeError("the model cannot take this clip")
        return real(**inputs)

    monkeypatch.setattr(captioner.model, "generate", generate)
    records, _ = records_of(captioner, audio, 3, sampling_rate=16000)
    assert records[1] == {"error": "captioning failed: the model cannot take this clip"}
    assert [records[i] for i in range(len(audio)) if i != 1] == [r for i, r in enumerate(expected) if i != 1]


def write_clips(folder: Path, count: int, rates=(16000, 44100, 22050)) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        rate = rates[index % len(rates)]
        path = folder / f"clip{index:02d}.wav"
        sf.write(path, make_audio(0.5 + (index % 5) * 0.7, index % 7, rate), rate, subtype="PCM_16")
        paths.append(os.path.normpath(path))
    return paths


def summary_line(stderr: str) -> dict:
    return json.loads([line for line in stderr.splitlines() if line.startswith('{"processes"')][-1])


def test_cli_settles_on_a_batch_size_reports_it_and_resumes(model_dir, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "clips"
    paths = write_clips(folder, 12)
    reference = tmp_path / "reference.jsonl"
    assert cli.main(["caption", "-q", "-m", model_dir, "-b", "2", "-j", "0", "-o", str(reference), str(folder)]) == 0
    expected = {record["path"]: record for record in read_jsonl(reference)}
    captioner = pipeline("audio-captioning", model=model_dir, device="cpu")
    monkeypatch.setattr(cli, "_load_pipeline", lambda args: captioner)
    out = tmp_path / "out.jsonl"
    fit_at_most(monkeypatch, captioner, 2, kill_after=3)  # killed after 3 batches of 2
    with pytest.raises(Killed):
        cli.main(["caption", "-q", "-m", model_dir, "-b", "8", "-j", "0", "-o", str(out), str(folder)])
    written = read_jsonl(out)
    assert len(written) == 6 and all(expected[record["path"]] == record for record in written)
    capsys.readouterr()
    fit_at_most(monkeypatch, captioner, 2)
    assert cli.main(["caption", "-q", "-m", model_dir, "-b", "8", "-j", "0", "--resume", "-o", str(out),
                     str(folder)]) == 0  # fmt: skip
    records = read_jsonl(out)
    assert sorted(record["path"] for record in records) == sorted(paths)  # each input exactly once
    assert {record["path"]: record for record in records} == expected
    summary = summary_line(capsys.readouterr().err)
    assert (summary["inputs"], summary["failed"], summary["batch_size"], summary["settled_batch_size"]) == (6, 0, 8, 2)


# -- DataLoader workers ----------------------------------------------------------------------------------------------


def test_a_worker_gives_the_in_process_records(captioner, tmp_path, monkeypatch):
    """Files at several rates, bytes, arrays and a long recording read in the worker: the records of no worker."""
    where = tmp_path / "where.txt"  # one line per input preprocessed: in a worker process or in this one
    original = captioner.preprocess

    def preprocess(inputs, **params):
        with open(where, "a") as log:
            log.write("worker\n" if torch.utils.data.get_worker_info() is not None else "main\n")
        return original(inputs, **params)

    monkeypatch.setattr(captioner, "preprocess", preprocess)
    paths = write_clips(tmp_path / "clips", 6)
    long = tmp_path / "long.flac"
    sf.write(long, np.concatenate([make_audio(10.0, 1), make_audio(10.0, 2), make_audio(10.0, 3)]), 16000)
    items = [*paths[:3], str(long), Path(paths[3]).read_bytes(), {"array": make_audio(2.0, 4), "sampling_rate": 8000},
             paths[4], paths[5]]  # fmt: skip
    options = {"batch_size": 3, "segment_seconds": 10.0, "hop_seconds": 10.0}
    in_process = captioner(items, num_workers=0, **options)
    assert set(where.read_text().split()) == {"main"}
    where.unlink()
    in_worker = captioner(items, num_workers=1, **options)
    assert set(where.read_text().split()) == {"worker"}
    assert in_worker == in_process and len(in_worker[3]["segments"]) == 3
    # through the CLI's loop, a missing file among them: its error record (found again in this process), the same rest
    with_missing = [*items[:7], "/nonexistent/clip.wav", items[7]]
    records, _ = records_of(captioner, with_missing, 3, num_workers=1, segment_seconds=10.0, hop_seconds=10.0)
    assert "no such file" in records[7]["error"] and records[7]["error"].startswith("/nonexistent/clip.wav")
    assert records[:7] + records[8:] == in_process


def test_a_worker_streams_a_generator_and_passes_on_errors_of_the_call(captioner):
    audio = [make_audio(1.0), make_audio(2.0, 1)]
    expected = captioner(audio, sampling_rate=16000)
    assert list(captioner((clip for clip in audio), sampling_rate=16000, num_workers=1)) == expected
    with pytest.raises(ValueError, match="sampling_rate"):  # raised in the worker, re-raised here
        captioner(audio, num_workers=1)
    with pytest.raises(ValueError, match="num_workers"):
        captioner(audio, sampling_rate=16000, num_workers=-1)


def test_cli_workers_record_each_bad_file_and_caption_the_rest(model_dir, tmp_path, capsys):
    good = write_clips(tmp_path / "good", 8)
    bad = write_bad_files(tmp_path / "bad")
    (tmp_path / "bad" / "one_hertz.wav").write_bytes(hostile_one_hertz_wav())
    (tmp_path / "bad" / "lying.wav").write_bytes(lying_wav(16000, 1, 16, 10**9, 4000))
    bad[os.path.normpath(tmp_path / "bad" / "one_hertz.wav")] = "is not audio"
    bad[os.path.normpath(tmp_path / "bad" / "lying.wav")] = "truncated"
    inputs = [str(tmp_path / "good"), *bad]
    outputs = {}
    for workers in ("0", "1"):
        out = tmp_path / f"workers{workers}.jsonl"
        status = cli.main(["caption", "-q", "-m", model_dir, "-b", "3", "-j", workers, "-o", str(out), *inputs])
        assert status == len(bad)
        assert summary_line(capsys.readouterr().err)["num_workers"] == int(workers)
        outputs[workers] = {record["path"]: record for record in read_jsonl(out)}
        assert len(read_jsonl(out)) == len(good) + len(bad)
    assert outputs["1"] == outputs["0"]
    for path, words in bad.items():
        assert words in outputs["1"][path]["error"], outputs["1"][path]
    assert all(outputs["1"][path]["caption"] for path in good)


def test_default_worker_count(monkeypatch):
    args = argparse.Namespace(num_workers=None)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert cli.num_workers(args, 1000, "cuda") == 1
    assert cli.num_workers(args, cli.AUTO_WORKERS_FROM - 1, "cuda") == 0  # few inputs: a worker costs more than it saves
    assert cli.num_workers(args, 1000, "cpu") == 0  # the model computes on the cores the worker would take
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # 8 launched processes share the 16 CPUs: 2 each
    assert cli.num_workers(args, 1000, "cuda") == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")  # 1 CPU each: none left for a worker
    assert cli.num_workers(args, 1000, "cuda") == 0
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert cli.num_workers(args, 1000, "cuda") == 0
    assert cli.num_workers(argparse.Namespace(num_workers=3), 1, "cpu") == 1  # the pipeline reads in one worker at most
    with pytest.raises(ValueError, match="--num-workers must be >= 0"):
        cli.num_workers(argparse.Namespace(num_workers=-1), 10, "cuda")
