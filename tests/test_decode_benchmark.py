"""benchmarks/decode_benchmark.py stays honest: the tiny shape runs the whole path; fast ids equal the reference's."""

from laac.benchmarks import decode_benchmark
from laac.demo.run import DemoShape


def test_tiny_shape_runs_every_phase_with_equal_ids(capsys):
    summary = decode_benchmark.main(
        ["--shape", "tiny", "--clips", "4", "--batch", "2", "--seconds", "3", "--latency_runs", "1",
         "--workers", "0", "--original_clips", "2", "--static"]
    )  # fmt: skip
    assert summary["same_ids"] is True and summary["static_same_ids"] is True
    assert summary["fast_over_reference"] > 0 and summary["fast_over_original"] > 0
    assert summary["log_mel_one_thread"]["x_real_time"] > 0 and summary["data_path"]["clips_per_s"] > 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split('"phase": "')[1].split('"')[0] for line in lines[:4]] == ["original", "reference", "fast", "static"]


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
