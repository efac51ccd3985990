# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
Train, evaluate and export LAAC with the stock `transformers.Trainer` (the report's two-stage recipe).

    python train.py presets/pretrain.yaml                      # Clotho + AudioCaps + WavCaps, 10 epochs
    python train.py presets/finetune.yaml --output_dir out/ft  # a YAML/JSON file, then flags that override it
    torchrun --nproc_per_node 8 train.py presets/pretrain.yaml # DDP (see docs/distributed.md)
    python train.py presets/finetune.yaml --do_train false --do_eval --model_name_or_path out/ft/export

The model starts from a LAAC folder (`model_name_or_path`), from released parts (`audio_encoder` + `text_model`)
or from a `LaacConfig` JSON with random weights (`config_name`; tests and benchmarks). LoRA goes on both sides
(`lora.apply_lora`); checkpoints hold only what trains (LoRA, Q-Former, projection) as `adapter_model.safetensors`.
The only Trainer subclass hook is evaluation (`training.trainer.LaacTrainer`): next to the loss it generates captions
(beam 3) and scores them with the DCASE metrics, writing `eval_metrics_step_N.json` per evaluation; with
`--eval_correct true` (or a gate mode, or a JSON corrector-settings dict) `generate()` also post-corrects them and
each metric is followed by `corrected_<metric>`. `--export_dir` merges LoRA into a
self-contained folder (model, processor, code, model card) that loads with AutoModel and no peft.
"""

import json
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import yaml
from laac.configuration_laac import AUDIO_PLACEHOLDER, LaacConfig
from laac.data.loaders import CaptionExamples, LaacDataCollator, load_sources
from laac.training.lora import LaacLoraArguments, apply_lora, count_trainable_parameters, load_lora, merge_lora
from laac.modeling_laac import LaacForConditionalGeneration
from laac.pipeline_laac import AudioCaptioningPipeline
from laac.processing_laac import DEFAULT_AUDIO_TOKEN, LaacProcessor, check_prompt_tokenization
from laac.training.tokenizer_utils import build_word_tokenizer
from laac.training.trainer import (  # the library half of training; its names stay importable from here
    EvaluationResult,
    LaacTrainer,
    LaacTrainingArguments,
    enable_audio_token_cache,
    evaluate_model,
    set_attn_implementation,
    write_evaluation,
)
from peft import PeftModel
from transformers import (
    AutoProcessor,
    AutoTokenizer,
    HfArgumentParser,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer import TRAINER_STATE_NAME  # written last in a checkpoint: marks a complete one
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging

logger = logging.get_logger(__name__)

CARD_SKIPPED_METRICS = ("runtime", "per_second", "epoch")  # Trainer bookkeeping, not model quality
ADAPTER_SUBFOLDER = "adapter"  # export_dir/adapter: the unmerged adapters of a LoRA run


# ---------------------------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class ModelArguments:
    """Where the model comes from: a LAAC folder, released parts, or a config with random weights."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "A LAAC folder (e.g. a previous export)."})
    audio_encoder: str | None = field(default=None, metadata={"help": "CED/Dasheng id or folder (with text_model)."})
    text_model: str | None = field(default=None, metadata={"help": "Causal LM or BART id or folder."})
    config_name: str | None = field(
        default=None, metadata={"help": "LaacConfig JSON: random init (tests/benchmarks)."}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": 'JSON merged into the config, e.g. \'{"text_config": {"num_hidden_layers": 2}}\''},
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "With config_name: a tokenizer; default: a word tokenizer of the captions."}
    )
    adapter_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A previous stage's adapter (an export's adapter/ folder or a checkpoint: LoRA, Q-Former, "
            "projection) on the model the other fields build (the same one that stage started from)."
        },
    )
    continue_adapters: bool = field(
        default=True,
        metadata={
            "help": "With adapter_name_or_path: keep training its LoRA adapters unmerged (the original's stage 2); "
            "false merges them and trains fresh adapters on the merged model."
        },
    )
    prompt_tokenization: str | None = field(
        default=None,
        metadata={
            "help": "How prompt and caption become ids for a decoder-only text model: separate (the original code's "
            "ids; the default for SentencePiece tokenizers such as Llama 2's) or joint (the default for others). "
            "Unset: that default, or the setting a LAAC folder was saved with."
        },
    )
    dtype: str | None = field(default=None, metadata={"help": "Weights dtype of the frozen parts: float32, bfloat16."})
    attn_implementation: str | None = field(
        default=None,
        metadata={
            "help": "Attention kernels of the Q-Former and text model: sdpa (default) or eager. On CPU, eager trains a "
            "small model about a quarter faster (the SDPA backward is slow for short sequences)."
        },
    )


@dataclass
class DataArguments:
    """Data sources (see `data.loaders.parse_source_spec`) and the audio crop lengths."""

    train_sources: list[str] = field(
        default_factory=list, metadata={"help": "e.g. clotho:csv=dev.csv,audio_dir=development (several mix)."}
    )
    eval_sources: list[str] = field(default_factory=list, metadata={"help": "Evaluation clips (all captions)."})
    max_train_seconds: float | None = field(default=10.0, metadata={"help": "Random crop length in training."})
    max_eval_seconds: float | None = field(
        default=None, metadata={"help": "Evaluation reads the first N seconds; default: the whole clip."}
    )
    max_eval_clips: int | None = field(default=None, metadata={"help": "Evaluate on the first N clips only."})
    silence_audio: bool = field(
        default=False, metadata={"help": "Ablation: replace all audio by silence (a blind baseline's training)."}
    )
    cache_audio_tokens: bool = field(
        default=False,
        metadata={
            "help": "With a frozen audio tower (--freeze_audio_tower, or LoRA without audio targets): encode each "
            "clip once and keep its encoder tokens in memory (AudioTokenCache). Exact; best with --cache_features."
        },
    )
    cache_features: bool = field(
        default=False,
        metadata={
            "help": "Keep each training clip's log-mel in memory after its first read (clips up to max_train_seconds; "
            "crops of longer ones are made afresh): for small corpora, ~0.26 MB per 10 s of audio per worker."
        },
    )


def parse_args(argv: Sequence[str] | None = None) -> tuple[Any, ...]:
    """
    `[CONFIG.yaml|json] [--flag value ...]`: the file's values become defaults that flags override. The file may
    hold data sources as mappings (YAML) instead of strings.
    """
    parser = HfArgumentParser((ModelArguments, DataArguments, LaacLoraArguments, LaacTrainingArguments))
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        with open(argv.pop(0), encoding="utf-8") as f:
            defaults = yaml.safe_load(f) or {}  # JSON is YAML
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(defaults) - known)
        if unknown:
            raise ValueError(f"unknown keys {unknown} in the config file; see `python train.py --help`")
        parser.set_defaults(**defaults)
    return parser.parse_args_into_dataclasses(args=argv)


# ---------------------------------------------------------------------------------------------------------------
# Model and processor
# ---------------------------------------------------------------------------------------------------------------


def _deep_update(base: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    for key, value in updates.items():
        base[key] = _deep_update(dict(base.get(key) or {}), value) if isinstance(value, dict) else value
    return base


def _random_init(model_args: ModelArguments, captions: list[str]) -> tuple[LaacForConditionalGeneration, Any]:
    """A model with random weights from a LaacConfig JSON; the text vocabulary is the tokenizer's."""
    config_dict = LaacConfig.from_json_file(model_args.config_name).to_dict()
    config_dict = _deep_update(config_dict, json.loads(model_args.config_overrides or "{}"))
    if model_args.tokenizer_name:
        tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name)
        tokenizer.add_special_tokens({"additional_special_tokens": [DEFAULT_AUDIO_TOKEN]})
    else:
        if not captions:
            raise ValueError(
                "config_name without tokenizer_name builds a word tokenizer from train_sources; pass some"
            )
        prompt = LaacConfig.from_dict(config_dict).prompt_template.replace(AUDIO_PLACEHOLDER, " ")
        tokenizer = build_word_tokenizer(captions, extra_words=prompt.split())
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.unk_token or tokenizer.eos_token
    text = config_dict["text_config"]
    text.update(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    text.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    config_dict["audio_token_id"] = tokenizer.convert_tokens_to_ids(DEFAULT_AUDIO_TOKEN)
    config = LaacConfig.from_dict(config_dict)
    return LaacForConditionalGeneration(config), LaacProcessor.from_config(config, tokenizer)


def build_model_and_processor(
    model_args: ModelArguments, captions: list[str]
) -> tuple[LaacForConditionalGeneration, LaacProcessor]:
    """
    The model and its processor. Call after `set_seed`: whatever starts random (the Q-Former, or everything with
    `config_name`) must come out identical when a run is resumed, since checkpoints hold only the trained parts.
    """
    model, processor = _build_model_and_processor(model_args, captions)
    if model_args.prompt_tokenization is not None:
        processor.prompt_tokenization = check_prompt_tokenization(model_args.prompt_tokenization)
    if model_args.attn_implementation:
        set_attn_implementation(model, model_args.attn_implementation)
    return model, processor


def _build_model_and_processor(
    model_args: ModelArguments, captions: list[str]
) -> tuple[LaacForConditionalGeneration, LaacProcessor]:
    dtype = getattr(torch, model_args.dtype) if model_args.dtype else None
    if model_args.model_name_or_path:
        path = model_args.model_name_or_path
        model = LaacForConditionalGeneration.from_pretrained(path, dtype=dtype)
        return model, AutoProcessor.from_pretrained(path)
    if model_args.audio_encoder and model_args.text_model:
        overrides = json.loads(model_args.config_overrides or "{}")
        model = LaacForConditionalGeneration.from_components(
            model_args.audio_encoder, model_args.text_model, dtype=dtype, **overrides
        )
        processor = LaacProcessor.from_components(model_args.audio_encoder, model_args.text_model, config=model.config)
        return model, processor
    if model_args.config_name:
        model, processor = _random_init(model_args, captions)
        return (model.to(dtype) if dtype else model), processor
    raise ValueError(
        "no model given: pass --model_name_or_path (a LAAC folder), --audio_encoder and --text_model, or "
        "--config_name (a LaacConfig JSON, random weights)"
    )


class DatasetEpochCallback(TrainerCallback):
    """
    Passes the epoch to the training examples, so each random crop is a function of (seed, epoch, example) only
    and a resumed run crops exactly as an uninterrupted one. (The global generator cannot give that: accelerate
    collates one batch ahead, so a checkpoint's RNG state is already past the next batch's crops.)
    """

    def __init__(self, dataset: CaptionExamples) -> None:
        self.dataset = dataset

    def on_epoch_begin(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:
        self.dataset.set_epoch(int(state.epoch + 1e-6))  # a resumed state holds a fraction: the epoch it is in


# ---------------------------------------------------------------------------------------------------------------
# Resume, export, model card, upload
# ---------------------------------------------------------------------------------------------------------------


def _state_is_complete(checkpoint: str) -> bool:
    """The checkpoint's trainer state exists and parses: a SIGKILL mid-write leaves it empty or cut."""
    try:
        with open(os.path.join(checkpoint, TRAINER_STATE_NAME), encoding="utf-8") as f:
            return isinstance(json.load(f), dict)
    except (OSError, ValueError):
        return False


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-N` with its trainer state written: a run killed while saving leaves a partial one."""
    if not os.path.isdir(output_dir):
        return None
    steps = [
        int(match.group(1))
        for name in os.listdir(output_dir)
        if (match := re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", name))
        and _state_is_complete(os.path.join(output_dir, name))
    ]
    return os.path.join(output_dir, f"{PREFIX_CHECKPOINT_DIR}-{max(steps)}") if steps else None


def resolve_resume(resume_from_checkpoint: str | None, output_dir: str) -> str | None:
    """A checkpoint path, or "last"/"true" for the newest complete checkpoint in `output_dir` (None if none)."""
    if resume_from_checkpoint is None or resume_from_checkpoint.lower() in ("", "false", "none"):
        return None
    if resume_from_checkpoint.lower() in ("last", "true"):
        checkpoint = last_complete_checkpoint(output_dir)
        if checkpoint is None:
            logger.warning(f"no complete checkpoint in {output_dir}; training from the start")
        return checkpoint
    return resume_from_checkpoint


def _metrics_table(metrics: dict[str, Any] | None) -> str:
    """Markdown rows of the numeric evaluation metrics (Trainer bookkeeping left out)."""
    rows = [
        (name.removeprefix("eval_"), value)
        for name, value in (metrics or {}).items()
        if isinstance(value, (int, float)) and not name.endswith(CARD_SKIPPED_METRICS)
    ]
    return "\n".join(f"| {name} | {value:.4f} |" for name, value in rows) or "| (not evaluated) | |"


def _recipe_line(training_args: LaacTrainingArguments) -> str:
    """The optimisation recipe in one sentence, for the model card."""
    batch = training_args.per_device_train_batch_size * training_args.world_size
    batch *= training_args.gradient_accumulation_steps
    if training_args.warmup_epochs is not None:
        warmup = f"{training_args.warmup_epochs} epoch"
    else:
        warmup = f"{training_args.warmup_steps} steps"
    length = (
        f"{training_args.max_steps} steps"
        if training_args.max_steps > 0
        else f"{training_args.num_train_epochs} epochs"
    )
    scheduler = getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)
    return (
        f"Caption cross-entropy; AdamW (weight decay {training_args.weight_decay}), learning rate "
        f"{training_args.learning_rate}, {scheduler} schedule with {warmup} warm-up, {length}, batch {batch}, "
        f"gradient clipping {training_args.max_grad_norm}, bf16 {training_args.bf16}, seed {training_args.seed}."
    )


def model_card(
    config: LaacConfig,
    data_args: DataArguments,
    training_args: LaacTrainingArguments,
    metrics: dict[str, Any] | None,
    num_train_examples: int | None,
) -> str:
    """README.md of an export: what the model is, what it was trained on and how, and how it scores."""
    audio, text, qformer = config.audio_config, config.text_config, config.qformer_config
    sources = [s if isinstance(s, str) else json.dumps(s, sort_keys=True) for s in data_args.train_sources]
    table, recipe = _metrics_table(metrics), _recipe_line(training_args)
    return f"""---
library_name: transformers
pipeline_tag: audio-text-to-text
license: apache-2.0
tags: [audio-captioning, laac, dcase2024]
---

# LAAC audio captioner

Automated audio captioning in the design of the Xiaomi DCASE 2024 Task 6 system: audio encoder -> windowed
Q-Former -> LLM, LoRA merged into the weights. Load with `AutoModel.from_pretrained(path, trust_remote_code=True)`
and `AutoProcessor.from_pretrained(path, trust_remote_code=True)`; `generate()` decodes as the report (beam 3,
2-30 new tokens: generation_config.json).

## Architecture
- Audio encoder: {audio.model_type}, width {audio.embed_dim}, {audio.depth} layers, {audio.num_heads} heads
- Q-Former: {qformer.num_hidden_layers} layers, width {qformer.hidden_size}; windows of {config.window_size} encoder \
tokens, {config.queries_per_window} query each ({config.token_order}-major tokens, last window: {config.last_window})
- Text decoder: {text.model_type}, width {text.hidden_size}, {text.num_hidden_layers} layers, vocabulary {text.vocab_size}
- Prompt: `{config.prompt_template!r}`

## Training data
{chr(10).join(f"- {s}" for s in sources) or "- (not recorded)"}

{num_train_examples if num_train_examples is not None else "?"} caption examples (each caption of a clip is one), \
random {data_args.max_train_seconds}-s crops.

## Recipe
{recipe}

## Evaluation
| metric | value |
|---|---|
{table}
"""


def export_model(
    model: torch.nn.Module, processor: LaacProcessor, export_dir: str, card: str | None = None
) -> LaacForConditionalGeneration:
    """
    Merge LoRA (if any) and save model + processor + code, as a pipeline is saved (+ README.md): loads with
    AutoModel or `pipeline(..., trust_remote_code=True)`, no peft and no laac needed.
    """
    if isinstance(model, PeftModel):  # the adapters beside the merged weights: a next stage continues them
        model.save_pretrained(os.path.join(export_dir, ADAPTER_SUBFOLDER))
    merged = merge_lora(model) if isinstance(model, PeftModel) else model
    # saved as a pipeline: the model, the processor and the pipeline's code, for `pipeline(..., trust_remote_code=True)`
    AudioCaptioningPipeline(model=merged, processor=processor).save_pretrained(export_dir)
    if card is not None:
        with open(os.path.join(export_dir, "README.md"), "w", encoding="utf-8") as f:
            f.write(card)
    return merged


def push_export(export_dir: str, repo_id: str, token: str | None = None, private: bool | None = None) -> Any:
    """
    Upload an export folder to the Hub repo the Trainer pushed checkpoints to, replacing the adapter files at
    its root (a root adapter_config.json would make transformers load the repo as a peft adapter).
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=export_dir,
        commit_message="LAAC export (LoRA merged)",
        delete_patterns=["adapter_config.json", "adapter_model.safetensors"],
    )


# ---------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------


def warmup_steps_for(training_args: LaacTrainingArguments, num_examples: int) -> int:
    """Optimizer steps in `warmup_epochs` epochs, counted as the Trainer counts an epoch's update steps."""
    batches = math.ceil(num_examples / (training_args.per_device_train_batch_size * training_args.world_size))
    steps_per_epoch = max(batches // training_args.gradient_accumulation_steps, 1)
    return math.ceil(training_args.warmup_epochs * steps_per_epoch)


def prepare_for_training(
    model: LaacForConditionalGeneration,
    lora_args: LaacLoraArguments,
    cache_audio_tokens: bool,
    adapter: str | None = None,
    continue_adapters: bool = True,
) -> torch.nn.Module:
    """
    What trains: every weight (`full_finetune`, the tower optionally frozen), or LoRA + Q-Former + projection:
    a previous stage's `adapter` continued unmerged (its own LoRA settings), or fresh adapters (on the model with
    that adapter merged in, when `continue_adapters` is false).
    """
    if lora_args.full_finetune:  # trained from scratch: every weight trains
        model.requires_grad_(True)
        model.audio_tower.requires_grad_(not lora_args.freeze_audio_tower)
        model.audio_tower.set_batchnorm_statistics(lora_args.audio_batchnorm)
    elif adapter and continue_adapters:
        model = load_lora(model, adapter)
    else:
        if adapter:
            model = merge_lora(load_lora(model, adapter))
        model = apply_lora(model, lora_args)
    if cache_audio_tokens:
        enable_audio_token_cache(model)
    logger.info(f"trainable parameters: {count_trainable_parameters(model)}")
    return model


def build_trainer(
    model: torch.nn.Module,
    processor: Any,
    data_args: DataArguments,
    training_args: LaacTrainingArguments,
    datasets_: tuple[Any, Any],
    callbacks: list[TrainerCallback],
    feature_cache: dict | None = None,
) -> LaacTrainer:
    """
    The stock Trainer (LaacTrainer: + caption generation at evaluation) with LAAC's collators; `feature_cache`:
    whole-clip log-mels already computed for training clips (`LaacDataCollator.feature_cache`), with
    `--cache_features`.
    """
    if feature_cache is not None and not data_args.cache_features:
        raise ValueError(
            "a feature_cache of log-mels is given but --cache_features is false; pass --cache_features true"
        )
    train_dataset, eval_clips = datasets_
    return LaacTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=CaptionExamples(eval_clips, per_caption=True) if eval_clips is not None else None,
        data_collator=LaacDataCollator(
            processor,
            data_args.max_train_seconds,
            train=True,
            silence=data_args.silence_audio,
            cache_features=data_args.cache_features,
            feature_cache={} if feature_cache is None else feature_cache,
        ),
        eval_data_collator=LaacDataCollator(
            processor, data_args.max_eval_seconds, train=False, silence=data_args.silence_audio
        ),
        generation_clips=eval_clips,
        processing_class=processor,
        callbacks=callbacks,
    )


def train_and_save(trainer: LaacTrainer, training_args: LaacTrainingArguments) -> dict[str, Any]:
    """Train (resuming from the last complete checkpoint when asked), save the model, metrics and state."""
    checkpoint = resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir)
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model()
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()
    return train_result.metrics


def export_or_push(
    trainer: LaacTrainer, processor: Any, data_args: DataArguments, training_args: LaacTrainingArguments,
    results: dict[str, Any], num_examples: int | None,
) -> None:  # fmt: skip
    """`--export_dir`: a merged, peft-free folder with a model card (and `--push_to_hub` uploads it)."""
    if training_args.export_dir and trainer.is_world_process_zero():
        card = model_card(model_card_config(trainer.model), data_args, training_args, results.get("eval"), num_examples)
        export_model(trainer.model, processor, training_args.export_dir, card)
        if training_args.push_to_hub:
            repo_id = training_args.hub_model_id or os.path.basename(os.path.abspath(training_args.output_dir))
            push_export(training_args.export_dir, repo_id, training_args.hub_token, training_args.hub_private_repo)
    elif training_args.push_to_hub:
        trainer.push_to_hub()


def main(
    argv: Sequence[str] | None = None,
    callbacks: list[TrainerCallback] | None = None,
    feature_cache: dict | None = None,
) -> dict[str, Any]:
    """
    Train and/or evaluate as the command line says; `callbacks` join the Trainer's, `feature_cache` holds log-mels of
    training clips that the caller computed already (see `build_trainer`).
    """
    model_args, data_args, lora_args, training_args = parse_args(argv)
    set_seed(training_args.seed)
    train_clips = load_sources(data_args.train_sources) if training_args.do_train else None
    eval_clips = load_sources(data_args.eval_sources) if data_args.eval_sources else None
    if eval_clips is not None and data_args.max_eval_clips is not None:
        eval_clips = eval_clips.select(range(min(data_args.max_eval_clips, len(eval_clips))))
    captions = [c for clip in train_clips["captions"] for c in clip] if train_clips is not None else []
    model, processor = build_model_and_processor(model_args, captions)

    train_dataset = None
    callbacks = list(callbacks or [])
    if train_clips is not None:
        train_dataset = CaptionExamples(train_clips, per_caption=True, seed=training_args.seed)
        callbacks.append(DatasetEpochCallback(train_dataset))
        model = prepare_for_training(
            model, lora_args, data_args.cache_audio_tokens, model_args.adapter_name_or_path,
            model_args.continue_adapters,
        )  # fmt: skip
        if training_args.warmup_epochs is not None:
            training_args.warmup_steps = warmup_steps_for(training_args, len(train_dataset))
    elif model_args.adapter_name_or_path:  # evaluation only: the adapter merged
        model = merge_lora(load_lora(model, model_args.adapter_name_or_path))
    trainer = build_trainer(
        model, processor, data_args, training_args, (train_dataset, eval_clips), callbacks, feature_cache
    )
    results: dict[str, Any] = {}
    if train_dataset is not None:
        results["train"] = train_and_save(trainer, training_args)
    if training_args.do_eval:
        results["eval"] = trainer.evaluate()
        trainer.save_metrics("eval", results["eval"])
    export_or_push(trainer, processor, data_args, training_args, results, _len(train_dataset))
    return results


def model_card_config(model: torch.nn.Module) -> LaacConfig:
    return model.get_base_model().config if isinstance(model, PeftModel) else model.config


def _len(dataset: Any) -> int | None:
    return len(dataset) if dataset is not None else None


__all__ = [
    "DataArguments",
    "EvaluationResult",
    "LaacTrainer",
    "LaacTrainingArguments",
    "ModelArguments",
    "build_model_and_processor",
    "enable_audio_token_cache",
    "evaluate_model",
    "export_model",
    "last_complete_checkpoint",
    "main",
    "parse_args",
    "push_export",
    "set_attn_implementation",
    "warmup_steps_for",
    "write_evaluation",
]

if __name__ == "__main__":
    main()
