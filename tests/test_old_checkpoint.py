"""Checkpoints saved by earlier versions still load.

Each tests/fixtures/laac_<commit>/ was saved by the code of that commit (see tests/fixtures/make_old_checkpoint.py),
with the logits, token ids and captions that code computed: e3750b6 (before the prompt's tokenization was a
setting), 25a5c43 (post-corrector settings in the config, the tokenizer module among the copied files) and ecc2b14
(the report's `<AcousticTokens>` in processor_config.json's prompt, no caption_normalization setting, config.json
naming the pipeline in `custom_pipelines` and the pipeline's code copied with every model). The
current code must load each and reproduce them, and so must its own copied .py files through trust_remote_code in
a process where `laac` is not importable.
"""

import json
import textwrap
from pathlib import Path

import pytest
import torch
from laac.modeling_laac import LaacForConditionalGeneration
from laac.processing_laac import LaacProcessor
from safetensors.torch import load_file

from tests.laac_tester import make_audio, run_without_laac
from tests.numerics import FP32_KERNELS, assert_log_mel_close

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FOLDERS = [FIXTURES / "laac_e3750b6", FIXTURES / "laac_25a5c43", FIXTURES / "laac_ecc2b14"]
by_commit = pytest.mark.parametrize("folder", FOLDERS, ids=lambda folder: folder.name)
INPUT_KEYS = ("input_features", "feature_attention_mask", "input_ids", "attention_mask")


def expected_outputs(folder: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The stored processor inputs, logits and token ids, and the decoded captions."""
    expected = load_file(folder / "expected_outputs.safetensors")
    return expected, json.loads((folder / "expected_captions.json").read_text())


@by_commit
def test_fixture_is_small_and_safetensors_only(folder):
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    assert sum(sizes.values()) < 1_000_000, sizes
    assert "model.safetensors" in sizes and not any(n.endswith((".bin", ".pt", ".pkl")) for n in sizes)


def test_processor_saved_before_prompt_tokenization_loads_as_joint():
    folder = FIXTURES / "laac_e3750b6"
    # the ids its model was trained on
    assert "prompt_tokenization" not in json.loads((folder / "processor_config.json").read_text())
    assert LaacProcessor.from_pretrained(folder).prompt_tokenization == "joint"


def test_processor_saved_with_the_report_marker_and_no_caption_setting():
    """Its prompt holds `<AcousticTokens>` (read as the audio token) and its captions were normalised."""
    folder = FIXTURES / "laac_ecc2b14"
    saved = json.loads((folder / "processor_config.json").read_text())
    assert "<AcousticTokens>" in saved["prompt_template"] and "caption_normalization" not in saved
    processor = LaacProcessor.from_pretrained(folder)
    assert processor.prompt_template == "Describe the detail of this audio:<|audio|>\n---\nDetailed: "
    assert processor.caption_normalization == "original"


def test_laac_caption_runs_the_installed_pipeline_on_a_folder_naming_its_own(tmp_path):
    """config.json names the copied pipeline_laac.py; `laac caption` runs the installed class, no remote code."""
    import soundfile as sf
    from laac.cli import main as cli

    folder = FIXTURES / "laac_ecc2b14"
    assert "audio-captioning" in json.loads((folder / "config.json").read_text())["custom_pipelines"]
    wav, out = tmp_path / "clip.wav", tmp_path / "captions.jsonl"
    sf.write(wav, make_audio(1.0, 0), 16000)
    assert cli.main(["caption", "-q", "-m", str(folder), "-o", str(out), str(wav)]) == 0
    _, captions = expected_outputs(folder)
    assert json.loads(out.read_text())["caption"] == captions[0]


@by_commit
def test_current_processor_reproduces_the_stored_inputs(folder):
    processor = LaacProcessor.from_pretrained(folder)
    expected, _ = expected_outputs(folder)
    inputs = processor([make_audio(1.0, 0), make_audio(2.0, 1)], sampling_rate=16000)
    for key in ("input_ids", "attention_mask", "feature_attention_mask"):
        assert torch.equal(inputs[key], expected[key]), key
    assert_log_mel_close(inputs["input_features"], expected["input_features"])


@by_commit
def test_current_code_loads_the_old_checkpoint(folder):
    model = LaacForConditionalGeneration.from_pretrained(folder).eval()
    processor = LaacProcessor.from_pretrained(folder)
    expected, captions = expected_outputs(folder)
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


@by_commit
def test_old_checkpoint_loads_as_remote_code_in_fresh_process(folder, tmp_path):
    result = run_without_laac(REMOTE_SCRIPT, [str(folder), json.dumps(FP32_KERNELS)], tmp_path)
    assert result.returncode == 0 and "REMOTE-OK" in result.stdout, result.stderr[-4000:]
