"""A model in bfloat16 or float16 takes the processor's float32 output as it comes: generate, forward, training."""

import numpy as np
import pytest
import torch
from laac.modeling_laac import LaacForConditionalGeneration
from transformers import AutoModel, AutoProcessor, TrainerCallback

from tests.laac_tester import CAPTIONS, make_audio, tiny_config, tiny_model, tiny_processor

# float16 matrix products on this CPU: PyTorch's CPU kernels cover them, slowly, where the build has them
try:
    torch.ones(2, 2, dtype=torch.float16) @ torch.ones(2, 2, dtype=torch.float16)
    LOW_PRECISION = [torch.bfloat16, torch.float16]
except RuntimeError:  # pragma: no cover - depends on the PyTorch build
    LOW_PRECISION = [torch.bfloat16]


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """A float32 model, its processor and the folder it is saved in."""
    config = tiny_config()
    model, processor = tiny_model(config), tiny_processor(config)
    folder = tmp_path_factory.mktemp("float32")
    model.save_pretrained(folder)
    return model, processor, folder


def _low(folder, dtype):
    """The same weights loaded in `dtype` (the Q-Former stays in float32 under float16: `_keep_in_fp32_modules`)."""
    return LaacForConditionalGeneration.from_pretrained(folder, dtype=dtype)


def _clips():
    return [make_audio(1.5, 0), make_audio(4.0, 1)]


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
def test_generate_takes_float32_features(full, dtype):
    model, processor, folder = full
    low = _low(folder, dtype)
    inputs = processor(_clips(), sampling_rate=16000)
    assert inputs["input_features"].dtype == torch.float32
    sequences = low.generate(**inputs, max_new_tokens=6)
    # the same features given in the model's dtype: the cast inside the model is the only difference
    cast = {**inputs, "input_features": inputs["input_features"].to(dtype)}
    assert torch.equal(low.generate(**cast, max_new_tokens=6), sequences)
    assert all(processor.decode_captions(sequences, inputs["input_ids"]))


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
def test_forward_with_labels_from_the_processor(full, dtype):
    model, processor, folder = full
    low = _low(folder, dtype).train()
    batch = processor(_clips(), text_target=CAPTIONS[:2], sampling_rate=16000)
    with torch.no_grad():
        reference = model.eval()(**batch).loss
    loss = low(**batch).loss
    assert loss.dtype == torch.float32 or loss.dtype == dtype
    # bf16 keeps 8 bits of mantissa: the loss of a tiny random model agrees to about 1%
    torch.testing.assert_close(loss.float(), reference, rtol=3e-2, atol=3e-2)
    loss.backward()
    grads = [p.grad for p in low.parameters() if p.requires_grad]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)


def test_readme_use_snippet_on_a_bf16_checkpoint(full, tmp_path):
    """The README's AutoModel / AutoProcessor lines, verbatim in substance, on a checkpoint saved in bfloat16."""
    model, processor, folder = full
    half = _low(folder, torch.bfloat16)
    half.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    waveform = np.random.default_rng(0).standard_normal((2, 44100 * 2)).astype(np.float32) * 0.1  # stereo, 44.1 kHz

    model = AutoModel.from_pretrained(tmp_path, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    inputs = processor([waveform], sampling_rate=44100)
    sequences = model.generate(**inputs)
    captions = processor.decode_captions(sequences, inputs["input_ids"])

    assert model.dtype == torch.bfloat16 and not model.training
    assert len(captions) == 1 and isinstance(captions[0], str) and captions[0]


def test_train_py_step_in_bfloat16(tmp_path):
    from laac.data.synthetic_corpus import write_corpus
    from laac.train import main

    write_corpus(str(tmp_path / "corpus"), {"development": 4}, seed=0, num_workers=1)
    tiny_config().to_json_file(str(tmp_path / "tiny.json"))
    corpus = tmp_path / "corpus"
    losses, dtypes = [], set()

    class Capture(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            dtypes.update(p.dtype for name, p in model.named_parameters() if "language_model" in name)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    main([
        "--config_name", str(tmp_path / "tiny.json"), "--dtype", "bfloat16",
        "--train_sources", f"clotho:csv={corpus}/clotho_captions_development.csv,audio_dir={corpus}/development",
        "--output_dir", str(tmp_path / "run"), "--do_train", "--per_device_train_batch_size", "2",
        "--max_train_seconds", "2", "--max_steps", "1", "--logging_steps", "1", "--save_strategy", "no",
        "--report_to", "none", "--disable_tqdm", "true",
    ], callbacks=[Capture()])  # fmt: skip
    assert torch.bfloat16 in dtypes
    # one step of a random model: the loss of a uniform guess over the vocabulary, ln(64) = 4.16, give or take
    assert len(losses) == 1 and abs(losses[0] - np.log(tiny_config().text_config.vocab_size)) < 1.5, losses


def test_full_shape_benchmark_small_shape(tmp_path, llama_tokenizers, monkeypatch):
    """benchmarks/full_shape.py at its small shape: the real build, decoding loops and LoRA step, in bf16.

    The two loops' ids are compared with oneDNN kept off AMX: on CPUs with it (Intel Sapphire / Emerald Rapids) its
    bf16 kernels are chosen by the row count, which the fast loop changes (the prompt run once per clip), so the
    random model's near-tied beams can swap there (docs/performance.md, "Exactness"); the cap is a no-op elsewhere.
    """
    from laac.benchmarks.full_shape import main
    from laac.data.public_data import LLAMA2_TOKENIZER

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")  # read by the benchmark's fresh process
    result = main(["--shape", "small", "--workdir", str(tmp_path), "--tokenizer_gguf",
                   str(llama_tokenizers / LLAMA2_TOKENIZER)])  # fmt: skip
    assert result["eval_mode"] and result["weights_finite"] and result["audio_tokens"] == 14
    assert result["ids_identical"] and 2 <= result["new_tokens"] <= 30
    # a random model's first loss: a uniform guess over Llama 2's 32,001 tokens, ln(32001) = 10.37, give or take
    assert abs(result["lora_loss"] - np.log(32001)) < 1.5, result["lora_loss"]
    trainable = result["trainable"]
    assert trainable["other"] == 0 and min(trainable["text_lora"], trainable["audio_lora"], trainable["qformer"]) > 0


def test_full_shape_benchmark_refuses_when_memory_is_short(tmp_path, monkeypatch):
    from laac.benchmarks import full_shape

    monkeypatch.setitem(full_shape.NEEDS, "llama2-7b", {"memory": 2**50, "disk": 10**18})
    with pytest.raises(SystemExit, match=r"GiB of memory available, 1048576 GiB needed; .* GB free under .*--shape small"):
        full_shape.check_room("llama2-7b", tmp_path, written=False)
    assert not any(tmp_path.iterdir())  # nothing written
