"""Tiny LAAC configs, tokenizers and inputs shared by the tests (transformers' ModelTester habit)."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytest
import torch
from laac.configuration_laac import PROMPT_I, LaacConfig
from laac.correction.post_corrector import STRICT_ANSWER_RULES, CaptionCorrector
from laac.modeling_laac import LaacForConditionalGeneration
from laac.processing_laac import LaacProcessor
from laac.training.tokenizer_utils import build_word_tokenizer

CAPTIONS = [
    "a dog barks while rain falls on a roof",
    "a bell rings twice then a car passes by",
    "birds chirp and wind blows through the trees",
    "an engine hums as people talk in the background",
]
SAMPLING_RATE = 16000


# Numbers computed by the original CED implementation on a small random model (provenance: its README.md).
CED_REFERENCE = Path(__file__).resolve().parent / "fixtures" / "ced_reference" / "ced_reference.safetensors"


def required_by_ci() -> bool:
    """Under CI (`CI=true`, as GitHub Actions and `.ci/run` set it) missing data or tools fail instead of skipping."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> NoReturn:
    """Skip a test that needs what this machine lacks, with `reason` (which says how to get it); fail under CI."""
    if required_by_ci():
        pytest.fail(f"{reason} [CI=true: a test may not skip for this]")
    pytest.skip(reason)


def tiny_tokenizer(audio_token: str = "<|audio|>"):
    prompt_words = PROMPT_I.replace("<AcousticTokens>", " ").split()
    return build_word_tokenizer(CAPTIONS, audio_token=audio_token, extra_words=prompt_words)


def tiny_config(text: str = "llama", audio: str = "ced", vocab_size: int = 64, **kwargs: Any) -> LaacConfig:
    audio_config = {"model_type": audio, "embed_dim": 32, "depth": 2, "num_heads": 2}
    qformer_config = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    if text == "llama":
        text_config = {
            "model_type": "llama", "vocab_size": vocab_size, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
        }
    elif text == "bart":
        text_config = {
            "model_type": "bart", "vocab_size": vocab_size, "d_model": 32, "encoder_layers": 2, "decoder_layers": 2,
            "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 64,
            "decoder_ffn_dim": 64, "max_position_embeddings": 512,
            "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": 2,
            "forced_eos_token_id": None, "forced_bos_token_id": None,
        }
    else:
        raise ValueError(text)
    return LaacConfig(
        audio_config=audio_config, qformer_config=qformer_config, text_config=text_config, audio_token_id=4, **kwargs
    )


def tiny_processor(config: LaacConfig) -> LaacProcessor:
    return LaacProcessor.from_config(config, tiny_tokenizer())


def tiny_model(config: LaacConfig, seed: int = 0) -> LaacForConditionalGeneration:
    torch.manual_seed(seed)
    return LaacForConditionalGeneration(config).eval()


def make_audio(seconds: float, seed: int = 0, rate: int = SAMPLING_RATE) -> np.ndarray:
    """A deterministic chirp + noise clip."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.4 * np.sin(2 * np.pi * (300 + 200 * seed + 400 * t) * t)
    return (tone + 0.05 * rng.standard_normal(t.shape)).astype(np.float32)


LOADING_PROBLEMS = ("missing_keys", "unexpected_keys", "mismatched_keys")


def loading_problems(model_class: Any, folder: Any, **kwargs: Any) -> tuple[Any, dict[str, list[str]]]:
    """`model_class.from_pretrained(folder)` and the tensors that did not match, from transformers' loading info."""
    model, info = model_class.from_pretrained(folder, output_loading_info=True, **kwargs)
    problems = {kind: sorted(str(k[0] if isinstance(k, tuple) else k) for k in info[kind]) for kind in LOADING_PROBLEMS}
    return model, {kind: keys for kind, keys in problems.items() if keys}


def load_strictly(model_class: Any, folder: Any, **kwargs: Any) -> Any:
    """`model_class.from_pretrained(folder)`, asserting that every tensor of checkpoint and model matched by name and shape."""
    model, problems = loading_problems(model_class, folder, **kwargs)
    assert not problems, f"{folder} does not match {model_class.__name__}: {problems}"
    return model


def save_tiny_model(folder: Path, config: LaacConfig = None, seed: int = 0) -> Path:
    """A tiny model and its processor saved to `folder` (a checkpoint folder for pipeline/CLI/remote-code tests)."""
    config = config or tiny_config()
    tiny_model(config, seed).save_pretrained(folder)
    tiny_processor(config).save_pretrained(folder)
    return folder


def caption_loss_fn(model: Any, processor: Any, clips: list[np.ndarray], sampling_rate: int = SAMPLING_RATE) -> Any:
    """`(index, caption) -> mean negative log-likelihood` of a caption for one of `clips`, scored alone."""

    def caption_loss(index: int, caption: str) -> float:
        batch = processor([clips[index]], text_target=[caption], sampling_rate=sampling_rate)
        with torch.no_grad():
            return float(model(**batch).loss)

    return caption_loss


def run_without_laac(script: str, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """
    Run `python -c script *args` offline in a fresh process that does not see this checkout (no PYTHONPATH; the
    script itself blocks `import laac`), with its own HF_HOME under `cwd`: what a user without LAAC installed has.
    """
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environment.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(cwd / "hf_home"), **env)
    return subprocess.run(
        [sys.executable, "-c", script, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=300
    )


def read_jsonl(path: str | Path) -> list[Any]:
    """The records of a JSON-lines file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


class ScriptedCorrector(CaptionCorrector):
    """CaptionCorrector whose LLM is replaced by canned answers (tests the judging and bookkeeping only)."""

    def __init__(self, answers: dict[str, str], fail_on: str | None = None, answer_rules=STRICT_ANSWER_RULES) -> None:
        self.answers, self.fail_on, self.calls = answers, fail_on, []
        self.answer_rules = answer_rules

    def generate(self, captions: list[str]) -> list[str]:
        self.calls.append(list(captions))
        if self.fail_on in captions:
            raise RuntimeError("CUDA out of memory")
        return [self.answers.get(caption, caption) for caption in captions]
