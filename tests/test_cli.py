"""`laac` command line: every input gets one caption or one error record, outputs, resume after a kill, help."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from laac.cli import main as cli

from tests.hostile_audio import tone, write_bad_files
from tests.laac_tester import make_audio, read_jsonl, save_tiny_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = save_tiny_model(tmp_path_factory.mktemp("laac-cli-model"))
    return str(path)


def write_good_files(folder: Path) -> list[str]:
    """Captionable: silence, 10 ms and 60 ms clips, every PCM width and float, 8-96 kHz, 1-8 channels, 4 formats."""
    specs = [
        ("silence.wav", np.zeros(16000, dtype=np.float32), 16000, "PCM_16"),
        ("ten_ms.wav", tone(0.01, 16000), 16000, "PCM_16"),
        ("sixty_ms.wav", tone(0.06, 16000), 16000, "PCM_16"),
        ("u8_8k.wav", tone(1.0, 8000), 8000, "PCM_U8"),
        ("pcm24_96k_8ch.wav", tone(1.0, 96000, 8), 96000, "PCM_24"),
        ("pcm32_22k_stereo.wav", tone(1.5, 22050, 2), 22050, "PCM_32"),
        ("float_48k_6ch.wav", tone(1.0, 48000, 6), 48000, "FLOAT"),
        ("double_32k.wav", tone(1.0, 32000), 32000, "DOUBLE"),
        ("nested/clip.flac", tone(2.0, 44100, 2), 44100, "PCM_16"),
        ("nested/deeper/clip.ogg", tone(2.0, 48000), 48000, "VORBIS"),
        ("clip.mp3", tone(2.0, 44100, 2), 44100, "MPEG_LAYER_III"),
    ]
    paths = []
    for name, audio, rate, subtype in specs:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, audio, rate, subtype=subtype)
        paths.append(os.path.normpath(path))
    return paths


def test_every_input_gets_one_record_and_the_exit_status_counts_failures(model_dir, tmp_path, monkeypatch):
    good = write_good_files(tmp_path / "good")
    bad = write_bad_files(tmp_path / "bad")
    denied = os.path.normpath(tmp_path / "good" / "silence.wav")
    # Tests run as root, for whom chmod 000 denies nothing: simulate the OS refusing to open one file.
    real_open = open

    def guarded_open(path, *args, **kwargs):
        if os.path.normpath(str(path)) == denied:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", guarded_open)
    out = tmp_path / "out.jsonl"
    status = cli.main(["caption", "-q", "-m", model_dir, "-b", "4", "-o", str(out), str(tmp_path / "good"), *bad])
    records = read_jsonl(out)
    by_path = {r["path"]: r for r in records}
    assert len(records) == len(by_path) == len(good) + len(bad)
    for path in good:
        if path == denied:
            assert "permission denied" in by_path[path]["error"]
        else:
            assert isinstance(by_path[path]["caption"], str) and by_path[path]["caption"], by_path[path]
    for path, words in bad.items():
        assert words in by_path[path]["error"], by_path[path]
    assert status == len(bad) + 1


def test_glob_csv_and_srt_outputs(model_dir, tmp_path):
    for seed in range(3):
        sf.write(tmp_path / f"clip{seed}.wav", make_audio(1.0 + seed, seed), 16000)
    sf.write(tmp_path / "long.flac", make_audio(25.0, 4), 16000)
    out = tmp_path / "out.csv"
    assert cli.main(["caption", "-q", "-m", model_dir, "--segment-seconds", "10", "-o", str(out),
                     str(tmp_path / "clip*.wav"), str(tmp_path / "long.flac")]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["path"] for r in rows if not r["start"]] == sorted(
        [os.path.normpath(tmp_path / f"clip{i}.wav") for i in range(3)]) + [os.path.normpath(tmp_path / "long.flac")]
    assert [(r["start"], r["end"]) for r in rows if r["start"]] == [("0.0", "10.0"), ("10.0", "20.0"), ("15.0", "25.0")]
    srt = tmp_path / "long.srt"
    assert cli.main(["caption", "-q", "-m", model_dir, "--segment-seconds", "10", "-o", str(srt),
                     str(tmp_path / "long.flac")]) == 0
    blocks = srt.read_text().strip().split("\n\n")
    assert [b.splitlines()[1] for b in blocks] == [
        "00:00:00,000 --> 00:00:10,000", "00:00:10,000 --> 00:00:20,000", "00:00:15,000 --> 00:00:25,000"]
    assert [b.splitlines()[2] for b in blocks] == [r["caption"] for r in rows if r["start"]]


def test_resume_after_kill_loses_and_duplicates_nothing(model_dir, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    names = [folder / f"clip{index:02d}.wav" for index in range(40)]
    for index, name in enumerate(names):
        sf.write(name, make_audio(2.0, index % 7), 16000)
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "laac.cli.main", "caption", "-q", "-m", model_dir, "-b", "1", "-o", str(out), str(folder)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = out.read_text().count("\n")
    assert 3 <= done_before < 40, f"the run was not killed mid-way ({done_before} records)"
    with out.open("a") as handle:  # a kill in the middle of a write leaves a partial last line
        handle.write('{"path": "' + str(names[-1]) + '", "capt')
    # without --resume an existing output is refused rather than overwritten
    with pytest.raises(SystemExit):
        cli.main(["caption", "-q", "-m", model_dir, "-o", str(out), str(folder)])
    assert cli.main(["caption", "-q", "-m", model_dir, "-b", "4", "--resume", "-o", str(out), str(folder)]) == 0
    paths = [record["path"] for record in read_jsonl(out)]
    assert sorted(paths) == sorted(os.path.normpath(name) for name in names)  # each exactly once
    # a second resume has nothing left to do
    assert cli.main(["caption", "-q", "-m", model_dir, "--resume", "-o", str(out), str(folder)]) == 0
    assert len(read_jsonl(out)) == 40


def test_missing_default_model_says_how_to_get_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "DEMO_MODEL_DIR", str(tmp_path / "no-demo"))
    sf.write(tmp_path / "a.wav", make_audio(1.0), 16000)
    with pytest.raises(SystemExit) as info:
        cli.main(["caption", str(tmp_path / "a.wav")])
    assert info.value.code == 2
    assert "laac demo" in capsys.readouterr().err


def test_demo_model_is_the_default(tmp_path, monkeypatch, model_dir):
    monkeypatch.setattr(cli, "DEMO_MODEL_DIR", model_dir)  # where `laac demo` leaves its model
    sf.write(tmp_path / "a.wav", make_audio(1.0), 16000)
    assert cli.main(["caption", "-q", "-o", str(tmp_path / "out.jsonl"), str(tmp_path / "a.wav")]) == 0
    assert "caption" in read_jsonl(tmp_path / "out.jsonl")[0]


def test_help_and_subcommands(capsys, monkeypatch):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert info.value.code == 0
    for command in ("caption", "train", "evaluate", "correct", "demo", "bench"):
        assert command in text
    with pytest.raises(SystemExit) as info:
        cli.main(["caption", "--help"])
    assert "--resume" in capsys.readouterr().out
    assert cli.main(["evaluate", "--help"]) == 0  # delegated to laac.evaluation.evaluate_captions with its own parser
    assert "usage: laac evaluate" in capsys.readouterr().out
    monkeypatch.setattr(cli, "run_caption", lambda args: 300)
    assert cli.main(["caption", "x.wav"]) == 255  # exit status is capped


@pytest.mark.parametrize("flags", [["--fast-decoding"], ["--fast-decoding", "--static-cache"], ["--static-cache"]])
def test_decoding_flags_give_the_stock_records(model_dir, tmp_path, monkeypatch, flags):
    """
    `laac caption` runs stock generate; --fast-decoding passes the opt-in loop as `custom_generate` (with
    --static-cache, its fixed-shape step); --static-cache alone asks stock generate for a static cache. Same records.
    """
    from laac import FAST_DECODING
    from laac.modeling_laac import LaacForConditionalGeneration

    paths = []
    for seed in range(3):
        paths.append(str(tmp_path / f"clip{seed}.wav"))
        sf.write(paths[-1], make_audio(1.0 + 2 * seed, seed), 16000)
    calls = []
    original = LaacForConditionalGeneration.generate

    def spy(self, *args, **kwargs):
        if "custom_generate" not in kwargs or isinstance(kwargs["custom_generate"], str):  # the user-level calls
            calls.append((kwargs.get("custom_generate"), kwargs.get("cache_implementation")))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LaacForConditionalGeneration, "generate", spy)
    plain, flagged = tmp_path / "plain.jsonl", tmp_path / "flagged.jsonl"
    assert cli.main(["caption", "-q", "-m", model_dir, "-o", str(plain), *paths]) == 0
    assert calls and set(calls) == {(None, None)}
    calls.clear()
    assert cli.main(["caption", "-q", "-m", model_dir, *flags, "-o", str(flagged), *paths]) == 0
    expected = (FAST_DECODING if "--fast-decoding" in flags else None, "static" if "--static-cache" in flags else None)
    assert calls and set(calls) == {expected}
    assert read_jsonl(flagged) == read_jsonl(plain)
