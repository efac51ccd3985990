# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
LoRA for LAAC through peft, as the report trains it: LoRA on q_proj/v_proj of the text decoder and on the q and
v parts of the audio encoder's fused qkv; the Q-Former (with its queries) and the projection train in full;
everything else is frozen.

CED stores q, k and v in one `qkv` Linear. To give q and v their own adapters (as the report does) the encoder's
attention is split into `q_proj`/`k_proj`/`v_proj` with the same weights before peft targets them, and fused back
after merging, so a released checkpoint has the original `qkv` layout again.

Stage 2 of the report continues stage 1's adapters: `load_lora` puts a saved adapter (LoRA, Q-Former, projection)
back on the model unmerged and trainable, exactly as `apply_lora` wrapped it in stage 1.
"""

import os
from dataclasses import dataclass, field
from typing import Optional

import torch
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file

from ..modeling_laac import LaacForConditionalGeneration

FULLY_TRAINED_MODULES = ["qformer", "language_projection"]
# With updating BatchNorm statistics, CED's init_bn travels in adapter checkpoints too (its affine stays frozen).
AUDIO_BATCHNORM = "audio_tower.init_bn"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass
class LaacLoraArguments:
    """LoRA settings (defaults: the report's r 8, alpha 32, dropout 0.1 on both sides)."""

    lora_text: bool = True
    lora_audio: bool = True
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    full_finetune: bool = field(
        default=False,
        metadata={"help": "Train every weight and use no LoRA: for models trained from scratch (the demo)."},
    )
    freeze_audio_tower: bool = field(
        default=False,
        metadata={"help": "With full_finetune: keep the (pretrained) audio encoder frozen, train the rest."},
    )
    audio_batchnorm: str = field(
        default="frozen",
        metadata={
            "help": "CED's input BatchNorm in training: frozen (its AudioSet running statistics, the default) or "
            "update (batch statistics, running ones updated with momentum 0.01, as the original code)."
        },
    )


def lora_target_pattern(text: bool, audio: bool) -> Optional[str]:
    """Regex (peft full-matches it against module names) for the q/v projections of the chosen sides."""
    parts = []
    if text:
        parts.append(r"language_model\..*\.(q_proj|v_proj)")
    if audio:
        parts.append(r"audio_tower\.blocks\.\d+\.attn\.(q_proj|v_proj)")
    return "|".join(parts) or None


def apply_lora(model: LaacForConditionalGeneration, args: Optional[LaacLoraArguments] = None) -> PeftModel:
    """
    Wrap `model` for training: LoRA adapters where `args` asks, Q-Former and projection fully trainable
    (peft's `modules_to_save`, so adapter checkpoints hold them too), all other weights frozen.
    """
    args = args or LaacLoraArguments()
    if args.full_finetune:
        raise ValueError("full_finetune=True trains the model as it is: do not wrap it with apply_lora")
    model.audio_tower.set_batchnorm_statistics(args.audio_batchnorm)
    if args.lora_audio:
        model.audio_tower.unfuse_qkv()
    target = lora_target_pattern(args.lora_text, args.lora_audio)
    updating_batchnorm = args.audio_batchnorm == "update"
    config = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=target if target is not None else [],
        modules_to_save=FULLY_TRAINED_MODULES + ([AUDIO_BATCHNORM] if updating_batchnorm else []),
        bias="none",
    )
    peft_model = get_peft_model(model, config)
    if updating_batchnorm:  # saved for its running statistics; its weight and bias stay frozen as without LoRA
        peft_model.get_base_model().audio_tower.init_bn.requires_grad_(False)
    return peft_model


def lora_arguments_from_adapter(adapter_dir: str) -> LaacLoraArguments:
    """The `LaacLoraArguments` a saved LAAC adapter was made with (sides, rank, alpha, dropout, BatchNorm mode)."""
    config = LoraConfig.from_pretrained(adapter_dir)
    target = config.target_modules if isinstance(config.target_modules, str) else " ".join(config.target_modules)
    return LaacLoraArguments(
        lora_text="language_model" in target,
        lora_audio="audio_tower" in target,
        lora_r=config.r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        audio_batchnorm="update" if AUDIO_BATCHNORM in (config.modules_to_save or []) else "frozen",
    )


def load_lora(model: LaacForConditionalGeneration, adapter_dir: str) -> PeftModel:
    """
    A saved adapter (a Trainer checkpoint or an export's `adapter/` folder) on `model`, unmerged and trainable:
    the model is wrapped by `apply_lora` with the adapter's own settings (so exactly the same tensors train as
    in the stage that saved it), then every adapter tensor is loaded; a missing or unexpected one is an error.
    """
    peft_model = apply_lora(model, lora_arguments_from_adapter(adapter_dir))
    weights = load_file(os.path.join(adapter_dir, ADAPTER_WEIGHTS))
    result = set_peft_model_state_dict(peft_model, weights)
    trained = {name for name, param in peft_model.named_parameters() if param.requires_grad}
    missing = sorted(name for name in result.missing_keys if name in trained)
    if missing or result.unexpected_keys:
        raise ValueError(
            f"the adapter in {adapter_dir} does not fit this model: missing {missing[:5]}, unexpected "
            f"{list(result.unexpected_keys)[:5]}; build the model as the stage that saved the adapter did."
        )
    return peft_model


def merge_lora(model: PeftModel) -> LaacForConditionalGeneration:
    """Merge the adapters into the weights and restore the encoder's fused qkv: a plain, peft-free model."""
    merged = model.merge_and_unload()
    if not merged.audio_tower.blocks[0].attn.is_fused:
        merged.audio_tower.fuse_qkv()
    return merged


def count_trainable_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Trainable parameters by part: qformer, language_projection, text LoRA, audio LoRA (and the total)."""
    counts = {"qformer": 0, "language_projection": 0, "text_lora": 0, "audio_lora": 0, "other": 0}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        name = "." + name  # the same tests for peft-wrapped ("base_model.model.qformer...") and plain names
        if "lora_" in name:
            key = "audio_lora" if ".audio_tower." in name else "text_lora"
        elif ".qformer." in name:
            key = "qformer"
        elif ".language_projection." in name:
            key = "language_projection"
        else:
            key = "other"
        counts[key] += param.numel()
    counts["total"] = sum(counts.values())
    return counts


__all__ = [
    "LaacLoraArguments",
    "apply_lora",
    "count_trainable_parameters",
    "load_lora",
    "lora_arguments_from_adapter",
    "lora_target_pattern",
    "merge_lora",
]
