"""Data-parallel `laac caption` (torchrun, 2 gloo processes on CPU): every input exactly once, resume, merge."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from laac.cli import caption_shards as shards
from laac.cli import main as cli

from tests.laac_tester import make_audio, save_tiny_model


def test_shares_are_disjoint_and_cover_the_inputs():
    todo = [f"clip{i}.wav" for i in range(7)]
    worlds = [shards.World(rank, 3, rank) for rank in range(3)]
    shares = [shards.my_share(todo, world) for world in worlds]
    assert sorted(sum(shares, [])) == sorted(todo) and len(set(sum(shares, []))) == 7
    assert shards.part_path("out/captions.jsonl", worlds[1]) == "out/captions.part1-of-3.jsonl"
    assert worlds[2].device("auto", cuda_available=True) == "cuda:2" and worlds[2].device("auto", False) == "cpu"


@pytest.mark.parametrize("extension", [".jsonl", ".csv"])
def test_merge_appends_each_input_once(tmp_path, extension):
    world, output = shards.World(0, 2, 0), str(tmp_path / f"out{extension}")
    if extension == ".jsonl":
        parts = ['{"path": "a", "caption": "x"}\n{"path": "b", "caption": "y"}\n',
                 '{"path": "c", "caption": "z"}\n{"pa']  # fmt: skip
        Path(output).write_text('{"path": "a", "caption": "x"}\n')  # a merge cut short by a kill
    else:
        header = ",".join(cli.CSV_COLUMNS) + "\n"
        parts = [header + "a,,,x,,,\nb,,,y,,,\n", header + "c,,,z,,,\nc,0,10,z,,,\n"]
    for rank, text in enumerate(parts):
        Path(shards.part_path(output, world, rank)).write_text(text)
    shards.merge_parts(output, world, existing={"a"} if extension == ".jsonl" else set())
    merged = Path(output).read_text().splitlines()
    assert not any(os.path.exists(shards.part_path(output, world, rank)) for rank in range(2))
    if extension == ".jsonl":
        assert [json.loads(line)["path"] for line in merged] == ["a", "b", "c"]
    else:
        assert merged[0] == ",".join(cli.CSV_COLUMNS)
        assert [line.split(",")[0] for line in merged[1:]] == ["a", "b", "c", "c"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(model, output, inputs, *extra, processes=2):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
               "-m", "laac.cli.main", "caption", "--model", model, "--output", output, "--batch-size", "1", "--quiet",
               *extra, *inputs]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


def test_two_processes_caption_every_input_once_and_resume(tmp_path):
    model = str(save_tiny_model(tmp_path / "model"))
    folder = tmp_path / "audio"
    folder.mkdir()
    for i, seconds in enumerate((1.0, 2.5, 0.5, 4.0, 1.5)):
        sf.write(folder / f"clip{i}.wav", make_audio(seconds, i), 16000)
    inputs = [str(folder), str(tmp_path / "missing.wav")]
    alone = tmp_path / "alone.jsonl"
    assert cli.main(["caption", "--model", model, "--output", str(alone), "--batch-size", "1", "-q", *inputs]) == 1
    output = tmp_path / "sharded.jsonl"
    result = _launch(model, str(output), inputs)
    assert result.returncode == 1, result.stderr[-3000:]  # rank 0 exits with the failure count, as one process does
    records = [json.loads(line) for line in output.read_text().splitlines()]
    expected = {r["path"]: r for r in (json.loads(line) for line in alone.read_text().splitlines())}
    assert sorted(r["path"] for r in records) == sorted(expected), result.stderr[-3000:]
    assert {r["path"]: r for r in records} == expected  # batch size 1: the same captions as one process
    summary = json.loads([line for line in result.stderr.splitlines() if '"processes"' in line][-1])
    assert (summary["processes"], summary["inputs"], summary["failed"]) == (2, 6, 1)
    # all ranks' clips over the run's seconds (printed rounded to 10 ms)
    assert 6 / (summary["seconds"] + 0.005) - 1e-3 <= summary["clips_per_s"] <= 6 / max(summary["seconds"] - 0.005, 1e-9) + 1e-3
    assert (summary["batch_size"], summary["settled_batch_size"]) == (1, 1)  # the smallest any process settled on
    assert not list(tmp_path.glob("sharded.part*"))
    again = _launch(model, str(output), inputs, "--resume")  # nothing left to do: nothing appended
    assert output.read_text().count("\n") == 6, again.stderr[-3000:]
    assert '"inputs": 0' in again.stderr
