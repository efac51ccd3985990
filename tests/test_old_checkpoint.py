"""Checkpoints saved by the code before the redesign still load.

tests/fixtures/laac_e3750b6/ was saved by the code of commit e3750b6 (see tests/fixtures/make_laac_e3750b6.py),
with the logits, token ids and captions that code computed. The current code must load it and reproduce them, and
so must its own copied .py files through trust_remote_code in a process where `laac` is not importable.
"""

import json
import textwrap
from pathlib import Path

import torch
from laac.modeling_laac import LaacForConditionalGeneration
from laac.processing_laac import LaacProcessor
from safetensors.torch import load_file

from tests.laac_tester import make_audio, run_without_laac
from tests.numerics import FP32_KERNELS, assert_log_mel_close

FOLDER = Path(__file__).resolve().parent / "fixtures" / "laac_e3750b6"
INPUT_KEYS = ("input_features", "feature_attention_mask", "input_ids", "attention_mask")


def expected_outputs() -> tuple[dict[str, torch.Tensor], list[str]]:
    """The stored processor inputs, logits and token ids, and the decoded captions."""
    expected = load_file(FOLDER / "expected_outputs.safetensors")
    return expected, json.loads((FOLDER / "expected_captions.json").read_text())


def test_fixture_is_small_and_safetensors_only():
    sizes = {p.name: p.stat().st_size for p in FOLDER.iterdir()}
    assert sum(sizes.values()) < 1_000_000, sizes
    assert "model.safetensors" in sizes and not any(n.endswith((".bin", ".pt", ".pkl")) for n in sizes)


def test_current_processor_reproduces_the_stored_inputs():
    processor = LaacProcessor.from_pretrained(FOLDER)
    # saved before prompt_tokenization existed: loads as "joint", the ids its model was trained on
    assert "prompt_tokenization" not in json.loads((FOLDER / "processor_config.json").read_text())
    assert processor.prompt_tokenization == "joint"
    expected, _ = expected_outputs()
    inputs = processor([make_audio(1.0, 0), make_audio(2.0, 1)], sampling_rate=16000)
    for key in ("input_ids", "attention_mask", "feature_attention_mask"):
        assert torch.equal(inputs[key], expected[key]), key
    assert_log_mel_close(inputs["input_features"], expected["input_features"])


def test_current_code_loads_the_old_checkpoint():
    model = LaacForConditionalGeneration.from_pretrained(FOLDER).eval()
    processor = LaacProcessor.from_pretrained(FOLDER)
    expected, captions = expected_outputs()
    inputs = {key: expected[key] for key in INPUT_KEYS}
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, expected["logits"], **FP32_KERNELS)
        sequences = model.generate(**inputs)
    assert torch.equal(sequences, expected["sequences"])
    assert processor.decode_captions(sequences, inputs["input_ids"]) == captions


REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["laac"] = None  # only the folder's own copied files may be used
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoProcessor
    folder, tolerance = sys.argv[1], json.loads(sys.argv[2])
    expected = load_file(folder + "/expected_outputs.safetensors")
    inputs = {k: expected[k] for k in ("input_features", "feature_attention_mask", "input_ids", "attention_mask")}
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    assert "transformers_modules" in type(model).__module__, type(model).__module__
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, expected["logits"], **tolerance)
        sequences = model.generate(**inputs)
    assert torch.equal(sequences, expected["sequences"]), sequences
    captions = processor.decode_captions(sequences, inputs["input_ids"])
    assert captions == json.load(open(folder + "/expected_captions.json")), captions
    print("REMOTE-OK")
    """
)


def test_old_checkpoint_loads_as_remote_code_in_fresh_process(tmp_path):
    result = run_without_laac(REMOTE_SCRIPT, [str(FOLDER), json.dumps(FP32_KERNELS)], tmp_path)
    assert result.returncode == 0 and "REMOTE-OK" in result.stdout, result.stderr[-4000:]
