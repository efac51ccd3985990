"""benchmarks/decode_benchmark.py stays honest: the tiny shape runs the whole path; fast ids equal the reference's."""

import json

from laac.benchmarks import decode_benchmark
from laac.demo.recipe import DemoShape


def test_tiny_shape_runs_every_phase_with_equal_ids(capsys):
    summary = decode_benchmark.main(
        ["--shape", "tiny", "--clips", "4", "--batch", "2", "--seconds", "3", "--latency_runs", "1",
         "--workers", "0", "--original_clips", "2", "--static"]
    )  # fmt: skip
    assert summary["same_ids"] is True and summary["static_same_ids"] is True
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    # each step printed as it ended (a run stopped by a time limit keeps them), then the best pass of each phase
    steps = [record["phase"] for record in records[:-1]]
    assert steps[:4] == ["build", "write_clips", "log_mel_one_thread", "data_path"]
    assert [(r["phase"], r["pass"]) for r in records[4:8]] == [(n, 1) for n in ("original", "reference", "fast", "static")]
    phases = {record["phase"]: record for record in records[8:-1]}
    assert list(phases) == ["original", "reference", "fast", "static"]
    # the ratios are those of the printed phases (one repeat: the best run is the only one)
    assert {name: phase["clips"] for name, phase in phases.items()} == {"original": 2, "reference": 4, "fast": 4, "static": 4}
    speed = {name: phase["clips_per_s"] for name, phase in phases.items()}
    assert summary["fast_over_reference"] == round(speed["fast"] / speed["reference"], 2)
    assert summary["fast_over_original"] == round(speed["fast"] / speed["original"], 2)
    assert summary["fast_qualifies_as_default"] == (summary["fast_over_reference"] >= 1.5)  # ids equal (above)
    assert set(summary["log_mel_one_thread"]) == {"clip_seconds", "x_real_time"} and summary["data_path"]["workers"] == 0


def test_demo_shape_is_the_demo_model():
    model, processor = decode_benchmark.build("demo", 8)
    tokenizer = processor.tokenizer
    expected = DemoShape().config(
        len(tokenizer), model.config.audio_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    )  # fmt: skip
    got = model.config
    assert got.text_config.to_dict() == expected.text_config.to_dict()
    assert got.qformer_config.to_dict() == expected.qformer_config.to_dict()
    assert (got.token_order, got.last_window, got.window_size) == (
        expected.token_order, expected.last_window, expected.window_size)
    for key in ("embed_dim", "depth", "num_heads", "n_mels"):
        assert getattr(got.audio_config, key) == getattr(expected.audio_config, key), key
