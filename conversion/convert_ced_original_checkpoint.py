# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""Convert an original CED (github.com/RicherMans/CED) or Dasheng `.pt` checkpoint to the mispeech layout.

The original `AudioTransformer` state dict has no `encoder.` prefix, keeps the torchaudio front end as buffers
(`front_end.*`, dropped here: the mel lives in `LaacFeatureExtractor`) and stores its BatchNorm as `init_bn.1.*`
(index 1 of a Sequential between two einops Rearrange layers). The output folder (config.json + model.safetensors)
loads with `CedForAudioClassification.from_pretrained` (CED) or `DashengModel.from_pretrained` (Dasheng).

    python -m laac.conversion.convert_ced_original_checkpoint audiotransformer_base_mAP_4999.pt out/ced-base
    python -m laac.conversion.convert_ced_original_checkpoint dasheng_base.pt out/dasheng-base --model-type dasheng

Which of the key layouts a released `.pt` file uses could not be checked offline: the loader accepts a bare state
dict, a `{"model": state_dict, "config": {...}}` dump (Dasheng's format) and DDP `module.` prefixes.
"""

import argparse
from pathlib import Path
from typing import Any

import torch
from laac.configuration_ced import CedConfig, DashengConfig
from laac.modeling_ced import CedForAudioClassification, DashengModel

HEAD_DIM = 64  # every released CED / Dasheng model uses 64-wide heads; num_heads is not stored in the weights
DROPPED_PREFIXES = ("front_end.",)


def load_original_state_dict(
    path: str,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict and (Dasheng dumps only) the stored config of an original checkpoint."""
    dump = torch.load(path, map_location="cpu", weights_only=True)
    config: dict[str, Any] = {}
    if isinstance(dump, dict) and isinstance(dump.get("model"), dict):
        config = dict(dump.get("config") or {})
        dump = dump["model"]
    state_dict = {key.removeprefix("module."): value for key, value in dump.items()}
    return state_dict, config


def convert_state_dict(state_dict: dict[str, torch.Tensor], model_type: str = "ced") -> dict[str, torch.Tensor]:
    """Original key names -> mispeech key names (`encoder.` prefix, head `outputlayer.*` at the top)."""
    converted = {}
    for key, value in state_dict.items():
        if key.startswith(DROPPED_PREFIXES):
            continue
        if key.startswith("outputlayer."):
            if model_type == "dasheng":
                continue  # DashengModel is encoder-only
            converted[key] = value
            continue
        if key.startswith("init_bn.1.") and model_type == "ced":
            key = "init_bn." + key.removeprefix("init_bn.1.")  # mispeech CED stores a bare BatchNorm2d
        converted["encoder." + key] = value
    return converted


def infer_config(
    state_dict: dict[str, torch.Tensor],
    model_type: str = "ced",
    num_heads: int | None = None,
    target_length: int | None = None,
    stored_config: dict[str, Any] | None = None,
) -> CedConfig:
    """Read the architecture off the (converted) tensor shapes; heads and chunk length come from arguments."""
    patch = state_dict["encoder.patch_embed.proj.weight"]  # (D, 1, k_f, k_t)
    embed_dim = patch.shape[0]
    depth = len({key.split(".")[2] for key in state_dict if key.startswith("encoder.blocks.")})
    fields: dict[str, Any] = {
        "embed_dim": embed_dim,
        "depth": depth,
        "num_heads": num_heads or (stored_config or {}).get("num_heads") or embed_dim // HEAD_DIM,
        "mlp_ratio": state_dict["encoder.blocks.0.mlp.fc1.weight"].shape[0] / embed_dim,
        "qkv_bias": "encoder.blocks.0.attn.qkv.bias" in state_dict,
        "n_mels": state_dict["encoder.init_bn.weight" if model_type == "ced" else "encoder.init_bn.1.weight"].shape[0],
    }
    if model_type == "dasheng":
        fields.update(patch_size=list(patch.shape[2:]), patch_stride=list(patch.shape[2:]))
        stored_length = (stored_config or {}).get("target_length")
        return DashengConfig(target_length=target_length or stored_length or 1008, **fields)
    fields.update(
        patch_size=patch.shape[-1],
        patch_stride=patch.shape[-1],
        outputdim=state_dict["outputlayer.1.weight"].shape[0],
    )
    return CedConfig(target_length=target_length or 1012, **fields)


def convert_checkpoint(
    checkpoint_path: str,
    output_dir: str,
    model_type: str = "ced",
    num_heads: int | None = None,
    target_length: int | None = None,
) -> None:
    """Convert, load strictly into the HF model (so every tensor is checked), and save config + safetensors."""
    original, stored_config = load_original_state_dict(checkpoint_path)
    state_dict = convert_state_dict(original, model_type)
    config = infer_config(state_dict, model_type, num_heads, target_length, stored_config)
    model = (DashengModel if model_type == "dasheng" else CedForAudioClassification)(config)
    if model_type == "dasheng":  # DashengModel holds the encoder itself: its own keys have no prefix
        state_dict = {key.removeprefix("encoder."): value for key, value in state_dict.items()}
    model.load_state_dict(state_dict, strict=True)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="original .pt checkpoint")
    parser.add_argument("output_dir", help="folder for config.json + model.safetensors")
    parser.add_argument("--model-type", choices=["ced", "dasheng"], default="ced")
    parser.add_argument("--num-heads", type=int, default=None, help=f"default: embed_dim // {HEAD_DIM}")
    parser.add_argument(
        "--target-length",
        type=int,
        default=None,
        help="chunk frames (CED 1012, Dasheng 1008)",
    )
    args = parser.parse_args()
    convert_checkpoint(
        args.checkpoint,
        args.output_dir,
        args.model_type,
        args.num_heads,
        args.target_length,
    )


if __name__ == "__main__":
    main()
