# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
`LaacTrainer` and `LaacTrainingArguments`: the stock `transformers.Trainer` with generation-based evaluation (as
transformers' `Seq2SeqTrainer`), and the pieces that `train.py`, the demo and the benchmarks share: captioning and
scoring a clip table (`evaluate_model`), the attention kernels, the audio-token cache of a frozen encoder.

    trainer = LaacTrainer(model=model, args=LaacTrainingArguments(output_dir="out"), train_dataset=examples,
                          data_collator=LaacDataCollator(processor, 10.0), processing_class=processor)
    result = evaluate_model(model, processor, clips)     # EvaluationResult(predictions, metrics)
    result = evaluate_model(model, processor, clips, correct=True)  # + corrected_* metrics beside the raw ones
"""

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import torch
from peft import PeftModel
from transformers import Trainer, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.utils import logging

from ..correction.post_corrector import GATE_MODES
from ..correction.post_corrector import CaptionPostProcessor, PostCorrection
from ..data.loaders import CaptionExamples, LaacDataCollator
from ..evaluation.metrics import compute_dcase_metrics
from ..modeling_laac import LaacForConditionalGeneration
from ..processing_laac import LaacProcessor
from .audio_token_cache import AudioTokenCache

logger = logging.get_logger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class LaacTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the recipe's warm-up in epochs, generation-based evaluation and the export."""

    warmup_epochs: float | None = field(
        default=None, metadata={"help": "Warm-up length in epochs (the report: 0.3); overrides warmup_steps."}
    )
    predict_with_generate: bool = field(default=True, metadata={"help": "Generate and score captions at evaluation."})
    generation_num_beams: int = field(default=3, metadata={"help": "Beam size at evaluation (the report: 3)."})
    generation_max_new_tokens: int = field(default=30, metadata={"help": "Longest caption at evaluation."})
    eval_metrics: str = field(
        default="dcase2024", metadata={"help": "'dcase2024', or comma-separated aac-metrics names (e.g. cider_d)."}
    )
    eval_correct: str | None = field(
        default=None,
        metadata={
            "help": "Post-correct the generated captions at evaluation (generate(post_processor=...)) and report corrected_* "
            "metrics beside the raw ones: true (the model's config.post_corrector), a gate mode (auto, always, "
            'never) or a JSON settings dict, e.g. \'{"corrector_model": "smollm2", "detector": "DIR"}\'.'
        },
    )
    export_dir: str | None = field(default=None, metadata={"help": "Merge LoRA and save a self-contained folder."})
    bf16_if_available: bool = field(default=True, metadata={"help": "Turn on bf16 on GPUs that support it."})
    # Trainer defaults that do not fit LAAC: the collator needs the raw columns, the loss comes from `labels`,
    # and evaluation logits (batch x length x vocab) are never needed, the captions are generated instead.
    remove_unused_columns: bool = False
    label_names: list[str] | None = field(default_factory=lambda: ["labels"])
    prediction_loss_only: bool = True

    def __post_init__(self) -> None:
        self.eval_correct = parse_correct_setting(self.eval_correct)
        if self.bf16_if_available and not (self.bf16 or self.fp16) and not self.use_cpu:
            self.bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        # transformers >= 5.20 names it activation_checkpointing (gradient_checkpointing is the old alias)
        new_name = hasattr(self, "activation_checkpointing")
        checkpointing = getattr(self, "activation_checkpointing", None) or self.gradient_checkpointing
        kwargs = getattr(self, "activation_checkpointing_kwargs", None) or self.gradient_checkpointing_kwargs
        if checkpointing and kwargs is None:
            # the frozen embeddings give the reentrant variant inputs without grad: LoRA would get none
            kwargs_name = "activation_checkpointing_kwargs" if new_name else "gradient_checkpointing_kwargs"
            setattr(self, kwargs_name, {"use_reentrant": False})
        super().__post_init__()


def parse_correct_setting(value: Any) -> Any:
    """
    `--eval_correct` as `PostCorrection.parse` takes it: a flag string ("true", "false", a gate mode, a JSON object)
    becomes None (off), True (the model's `config.post_corrector`), the gate mode or the settings dict; a YAML value (a
    bool, a dict, None) is already one and passes as it is.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() in ("", "false", "none", "no", "0"):
        return None
    if text.lower() in ("true", "yes", "1"):
        return True
    if text in GATE_MODES:
        return text
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"--eval_correct {text!r} is not valid JSON ({error}); quote it as one JSON object") from error
    raise ValueError(
        f"--eval_correct got {value!r}; use true, false, a gate mode {GATE_MODES} or a JSON settings dict such as "
        '\'{"corrector_model": "smollm2", "detector": "path/to/detector"}\''
    )


# ---------------------------------------------------------------------------------------------------------------
# Evaluation: generation + DCASE metrics
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class EvaluationResult:
    # {"id", "prediction", "references"} per clip; with post-correction also "corrected_prediction", "error_prob"
    # and "corrected" ("prediction" stays the raw caption)
    predictions: list[dict[str, Any]]
    # metric -> value, plus "unavailable": {metric: reason}; with post-correction each metric is followed by
    # "corrected_<metric>" (the same metric on the corrected captions) and "post_correction_rewritten" counts rewrites
    metrics: dict[str, Any]


def _metric_names(eval_metrics: str | Sequence[str] | None) -> str | list[str] | None:
    if eval_metrics is None or not isinstance(eval_metrics, str) or eval_metrics == "dcase2024":
        return eval_metrics
    return [name.strip() for name in eval_metrics.split(",") if name.strip()]


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module,
    processor: LaacProcessor,
    clips: datasets.Dataset,
    batch_size: int = 8,
    max_seconds: float | None = None,
    generation_kwargs: dict[str, Any] | None = None,
    metrics: str | Sequence[str] | None = "dcase2024",
    metric_kwargs: dict[str, Any] | None = None,
    silence: bool = False,
    correct: Any = None,
) -> EvaluationResult:
    """
    Caption every clip of a clip table (`laac.data.loaders`) with `model.generate` (its generation config: beam 3
    by default; `generation_kwargs` override it) and score against all references with `compute_dcase_metrics`
    (`metrics=None` skips scoring). Audio is read deterministically: the first `max_seconds`, or whole clips.
    Works with a plain or a LoRA-wrapped (peft) model. With `correct` (what the pipeline's `correct=` takes,
    parsed once by `PostCorrection.parse`), `generate()` also post-corrects the captions through one
    `CaptionPostProcessor` and every metric is reported twice, raw then `corrected_`.
    """
    request = PostCorrection.parse(correct, model.config.post_corrector)
    examples = CaptionExamples(clips, per_caption=False)
    collator = LaacDataCollator(processor, max_seconds=max_seconds, train=False, with_labels=False, silence=silence)
    loader = torch.utils.data.DataLoader(examples, batch_size=batch_size, collate_fn=lambda batch: batch)
    parameter = next(model.parameters())
    post_processor = None if request is None else CaptionPostProcessor(processor, request, str(parameter.device))
    was_training = model.training
    model.eval()
    predictions = []
    for batch in loader:
        inputs = collator(batch).to(parameter.device)
        rows = _generate_captions(model, processor, inputs, generation_kwargs or {}, post_processor)
        predictions += [{"id": ex["id"], **row, "references": ex["references"]} for ex, row in zip(batch, rows)]
    model.train(was_training)
    scores: dict[str, Any] = {}
    if metrics:
        scores = _score(predictions, "prediction", metrics, metric_kwargs)
        if request is not None:
            scores = side_by_side(scores, _score(predictions, "corrected_prediction", metrics, metric_kwargs))
    if request is not None:
        scores["post_correction_rewritten"] = sum(bool(p["corrected"]) for p in predictions)
    return EvaluationResult(predictions, scores)


def _generate_captions(
    model: torch.nn.Module,
    processor: LaacProcessor,
    inputs: Any,
    generation_kwargs: dict[str, Any],
    post_processor: CaptionPostProcessor | None,
) -> list[dict[str, Any]]:
    """One batch: `{"prediction"}` per clip, plus the post-corrector's fields with a `post_processor`."""
    if post_processor is None:
        sequences = model.generate(**inputs, **generation_kwargs)
        return [{"prediction": caption} for caption in processor.decode_captions(sequences, inputs["input_ids"])]
    output = model.generate(**inputs, **generation_kwargs, post_processor=post_processor)
    return [
        {"prediction": raw, "corrected_prediction": final, "error_prob": probability, "corrected": changed}
        for raw, final, probability, changed in zip(
            output.captions, output.corrected_captions, output.error_probabilities, output.corrected
        )
    ]


def _score(
    predictions: list[dict[str, Any]], key: str, metrics: str | Sequence[str], metric_kwargs: dict[str, Any] | None
) -> dict[str, Any]:
    return compute_dcase_metrics(
        [p[key] for p in predictions],
        [p["references"] for p in predictions],
        metrics=_metric_names(metrics),
        **(metric_kwargs or {}),
    )


def side_by_side(raw: dict[str, Any], corrected: dict[str, Any]) -> dict[str, Any]:
    """`raw`'s metrics, each followed by the same metric of the corrected captions as `corrected_<name>`."""
    merged: dict[str, Any] = {}
    for name in dict.fromkeys([*raw, *corrected]):
        if name in raw:
            merged[name] = raw[name]
        if name in corrected:
            merged[f"corrected_{name}"] = corrected[name]
    return merged


def write_evaluation(output_dir: str, step: int, result: EvaluationResult, prefix: str = "eval") -> str:
    """`{prefix}_metrics_step_{step}.json` and `{prefix}_predictions_step_{step}.json` in `output_dir`."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, f"{prefix}_metrics_step_{step}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"step": step, "num_clips": len(result.predictions), "metrics": result.metrics}, f, indent=2)
    with open(os.path.join(output_dir, f"{prefix}_predictions_step_{step}.json"), "w", encoding="utf-8") as f:
        json.dump(result.predictions, f, indent=1, ensure_ascii=False)
    return path


class LaacTrainer(Trainer):
    """
    `Trainer` plus generation-based evaluation: `evaluate()` returns the caption loss (deterministic crops, every
    reference caption one example) and, with `predict_with_generate`, the DCASE metrics of generated captions.
    Generation runs on the main process (ranks wait for the broadcast metrics); with FSDP / ZeRO-3 turn
    `predict_with_generate` off and evaluate the export instead.
    """

    def __init__(
        self,
        *args: Any,
        eval_data_collator: LaacDataCollator | None = None,
        generation_clips: datasets.Dataset | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.eval_data_collator = eval_data_collator
        self.generation_clips = generation_clips

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        # Trainer can only infer lengths from token ids; audio examples know their durations from file headers.
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy == "group_by_length" and isinstance(dataset, CaptionExamples):
            max_seconds = getattr(self.data_collator, "max_seconds", None)
            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return LengthGroupedSampler(batch, lengths=dataset.lengths(max_seconds))
        return super()._get_train_sampler(train_dataset)

    def get_eval_dataloader(self, eval_dataset: Any = None) -> torch.utils.data.DataLoader:
        # Trainer has one collator; evaluation must read audio without random crops
        if self.eval_data_collator is None:
            return super().get_eval_dataloader(eval_dataset)
        train_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator

    def evaluate(
        self, eval_dataset: Any = None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if eval_dataset is not None or self.eval_dataset is not None:
            metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if self.args.predict_with_generate and self.generation_clips is not None:
            metrics.update(self._generate_and_score(metric_key_prefix))
        return metrics

    def _eval_post_corrector(self) -> Any:
        """`--eval_correct` as one corrector, built at the first evaluation and kept (its models load once)."""
        if "_post_corrector" not in self.__dict__:
            request = PostCorrection.parse(self.args.eval_correct, self.model.config.post_corrector)
            device = str(next(self.model.parameters()).device)
            self.__dict__["_post_corrector"] = None if request is None else request.build(device)
        return self.__dict__["_post_corrector"]

    def _generate_and_score(self, prefix: str) -> dict[str, float]:
        scores = None
        if self.is_world_process_zero():
            collator = self.eval_data_collator
            with self.autocast_smart_context_manager():
                result = evaluate_model(
                    self.model,
                    self.processing_class,
                    self.generation_clips,
                    batch_size=self.args.per_device_eval_batch_size,
                    max_seconds=collator.max_seconds if collator is not None else None,
                    generation_kwargs={
                        "num_beams": self.args.generation_num_beams,
                        "max_new_tokens": self.args.generation_max_new_tokens,
                    },
                    metrics=self.args.eval_metrics,
                    silence=collator is not None and collator.silence,
                    correct=self._eval_post_corrector(),
                )
            write_evaluation(self.args.output_dir, self.state.global_step, result, prefix)
            scores = {f"{prefix}_{k}": v for k, v in result.metrics.items() if isinstance(v, (int, float))}
        if self.args.world_size > 1:
            box = [scores]
            torch.distributed.broadcast_object_list(box, src=0)
            scores = box[0]
        self.log(scores)
        return scores


# ---------------------------------------------------------------------------------------------------------------
# Model set-up shared by train.py, the demo and the benchmarks
# ---------------------------------------------------------------------------------------------------------------


def set_attn_implementation(model: LaacForConditionalGeneration, implementation: str) -> None:
    """`--attn_implementation`: the CED encoder has one fixed SDPA path; the Q-Former and text model follow."""
    for part in (model.qformer.transformer, model.language_model):
        part.set_attn_implementation(implementation)


def enable_audio_token_cache(model: torch.nn.Module) -> None:
    """`--cache_audio_tokens`: the frozen audio tower encodes each clip once (see `AudioTokenCache`)."""
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    training = sum(p.numel() for p in base.audio_tower.parameters() if p.requires_grad)
    if training:
        raise ValueError(
            f"--cache_audio_tokens needs a frozen audio tower, but {training} of its parameters train; pass "
            "--freeze_audio_tower true (or LoRA targets without the audio tower), or drop --cache_audio_tokens"
        )
    base.audio_token_cache = AudioTokenCache()


__all__ = [
    "EvaluationResult",
    "LaacTrainer",
    "LaacTrainingArguments",
    "enable_audio_token_cache",
    "evaluate_model",
    "parse_correct_setting",
    "set_attn_implementation",
    "side_by_side",
    "write_evaluation",
]
