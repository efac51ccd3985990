"""Save/load: safetensors only, identical outputs, errors naming bad tensors, and the remote-code round trip."""

import functools
import json
import os
import textwrap
from pathlib import Path

import pytest
import torch
from laac.modeling_laac import LaacForConditionalGeneration
from laac.processing_laac import LaacProcessor
from safetensors.torch import load_file, save_file

from tests.laac_tester import (
    load_strictly,
    loading_problems,
    make_audio,
    run_without_laac,
    tiny_config,
    tiny_model,
    tiny_processor,
)
from tests.numerics import FP32_KERNELS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    config = tiny_config()
    model, processor = tiny_model(config), tiny_processor(config)
    folder = tmp_path_factory.mktemp("laac-tiny")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    inputs = processor([make_audio(1.5, 0), make_audio(11.0, 1)], sampling_rate=16000)
    with torch.no_grad():
        logits = model(**inputs).logits
        sequences = model.generate(**inputs)
    captions = processor.decode_captions(sequences, inputs["input_ids"])
    save_file({"logits": logits.contiguous(), **{k: v.contiguous() for k, v in inputs.items()}}, folder / "_expected.safetensors")
    (folder / "_expected_captions.json").write_text(json.dumps(captions))
    return folder, model, processor


def test_folder_contents(saved):
    folder, model, _ = saved
    names = {p.name for p in folder.iterdir()}
    code = {n for n in names if n.endswith(".py")}
    # what loading and running the captioner needs; the post-corrector and the tokenizer building are tooling
    assert code == {"configuration_ced.py", "configuration_laac.py", "modeling_ced.py", "modeling_laac.py",
                    "feature_extraction_laac.py", "audio_laac.py", "processing_laac.py", "pipeline_laac.py"}, code
    for required in ("config.json", "model.safetensors", "generation_config.json", "processor_config.json",
                     "tokenizer.json"):
        assert required in names, f"{required} missing from {sorted(names)}"
    # stock generate stays the checkpoint's generate: the opt-in fast loop is not saved next to the weights
    assert "custom_generate" not in names and "generation_laac.py" not in names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names), "weights must be safetensors only"
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_laac.LaacForConditionalGeneration"
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_laac.LaacForConditionalGeneration"
    assert json.loads((folder / "generation_config.json").read_text())["num_beams"] == 3


def test_reload_in_process_is_identical(saved):
    folder, model, processor = saved
    reloaded = LaacForConditionalGeneration.from_pretrained(folder).eval()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[key], value, rtol=0, atol=0)
    processor2 = LaacProcessor.from_pretrained(folder)
    assert processor2.num_audio_tokens(1001) == processor.num_audio_tokens(1001)
    assert processor2.audio_token_id == model.config.audio_token_id


def test_loading_is_strict_and_a_broken_checkpoint_is_named(saved, tmp_path):
    """A saved model loads with every tensor matched; transformers refuses a mis-shaped tensor, names a missing one."""
    folder, _, _ = saved
    load_strictly(LaacForConditionalGeneration, folder)
    for name in os.listdir(folder):
        if not name.startswith("_") and (folder / name).is_file():
            (tmp_path / name).write_bytes((folder / name).read_bytes())
    weights = load_file(tmp_path / "model.safetensors")
    weights.pop("qformer.query_tokens")
    weights["language_projection.weight"] = torch.zeros(3, 3)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        LaacForConditionalGeneration.from_pretrained(tmp_path)
    _, problems = loading_problems(LaacForConditionalGeneration, tmp_path, ignore_mismatched_sizes=True)
    assert problems == {"missing_keys": ["qformer.query_tokens"], "mismatched_keys": ["language_projection.weight"]}


REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["laac"] = None  # the repository must not be importable: everything comes from the folder
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoProcessor, AutoFeatureExtractor
    folder = sys.argv[1]
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    assert type(config).__name__ == "LaacConfig", type(config)
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    assert type(processor).__name__ == "LaacProcessor", type(processor)
    assert type(AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)).__name__ == "LaacFeatureExtractor"
    expected = load_file(folder + "/_expected.safetensors")
    inputs = {k: v for k, v in expected.items() if k != "logits"}
    for auto in (AutoModel, AutoModelForCausalLM):
        model = auto.from_pretrained(folder, trust_remote_code=True).eval()
        assert type(model).__name__ == "LaacForConditionalGeneration"
        assert "transformers_modules" in type(model).__module__, type(model).__module__
        with torch.no_grad():
            # another process, weights memory-mapped from the file: float32 kernel tolerance (tests/numerics.py)
            torch.testing.assert_close(model(**inputs).logits, expected["logits"], **json.loads(sys.argv[2]))
            sequences = model.generate(**inputs)
        captions = processor.decode_captions(sequences, inputs["input_ids"])
        assert captions == json.load(open(folder + "/_expected_captions.json")), captions
    # the processor rebuilt from the folder produces the same inputs
    import numpy as np
    print("REMOTE-OK")
    """
)


def test_remote_code_round_trip_in_fresh_process(saved, tmp_path):
    folder, _, _ = saved
    result = run_without_laac(REMOTE_SCRIPT, [str(folder), json.dumps(FP32_KERNELS)], tmp_path)
    assert result.returncode == 0 and "REMOTE-OK" in result.stdout, result.stderr[-4000:]


def test_pickled_weights_run_no_code(saved, tmp_path):
    """transformers reads a pickled weights file with torch's weights-only unpickler: an object that runs code is refused."""
    folder, model, _ = saved
    for name in os.listdir(folder):
        if not name.startswith("_") and name != "model.safetensors" and (folder / name).is_file():
            (tmp_path / name).write_bytes((folder / name).read_bytes())
    torch.save({**model.state_dict(), "payload": functools.partial(os.system, "echo pwned")}, tmp_path / "pytorch_model.bin")
    with pytest.raises(Exception, match="weights_only|Weights only load failed"):
        LaacForConditionalGeneration.from_pretrained(tmp_path)
    with pytest.raises(OSError, match="safetensors"):  # and a caller can refuse pickles outright
        LaacForConditionalGeneration.from_pretrained(tmp_path, use_safetensors=True)


@pytest.fixture
def hub_commits(monkeypatch):
    """The Hub calls of a push, offline: a new empty repository, and each commit's files recorded."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    commits: list[set[str]] = []

    def create_commit(api, repo_id, operations, **kwargs):
        commits.append({operation.path_in_repo.replace(os.sep, "/") for operation in operations})

    def no_card(*args, **kwargs):
        raise EntryNotFoundError("a new repository has no README.md")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda api, repo_id, **kw: huggingface_hub.RepoUrl(
        f"https://huggingface.co/{repo_id}"))
    monkeypatch.setattr(huggingface_hub.HfApi, "create_commit", create_commit)
    monkeypatch.setattr(huggingface_hub.ModelCard, "load", no_card)
    return commits


def test_save_pretrained_push_to_hub_uploads_the_model_without_a_decoding_loop(saved, tmp_path, hub_commits):
    """save_pretrained(push_to_hub=True) and push_to_hub commit the weights and the model code, no custom_generate/."""
    _, model, _ = saved
    model.save_pretrained(tmp_path / "laac-push", push_to_hub=True, repo_id="someone/laac-push")
    model.push_to_hub("someone/laac-push")  # PushToHubMixin.push_to_hub: a temporary folder, then the same upload
    assert len(hub_commits) == 2
    for files in hub_commits:
        assert {"model.safetensors", "config.json", "modeling_laac.py", "pipeline_laac.py"} <= files
        assert not any(name.startswith("custom_generate/") for name in files), sorted(files)
