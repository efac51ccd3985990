# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""Configurations of the CED and Dasheng audio encoders.

Field names follow the `config.json` of the public `mispeech/ced-*` checkpoints, so such a file loads as is.
The mel front end lives in `LaacFeatureExtractor`; the front-end fields here (`n_fft`, `win_size`, `hop_size`,
`f_min`, `f_max`, `center`) are kept only so those files round-trip and to document what the weights expect.
"""

from typing import Any

from transformers import PretrainedConfig
from transformers.utils import logging

logger = logging.get_logger(__name__)

# Sizes of the released checkpoints: name -> (embed_dim, depth, num_heads).
CED_PRESETS: dict[str, tuple[int, int, int]] = {
    "ced-tiny": (192, 12, 3),
    "ced-mini": (256, 12, 4),
    "ced-small": (384, 12, 6),
    "ced-base": (768, 12, 12),
}
DASHENG_PRESETS: dict[str, tuple[int, int, int]] = {
    "dasheng-base": (768, 12, 12),
    "dasheng-0.6B": (1280, 32, 16),
    "dasheng-1.2B": (1536, 40, 24),
}


CED_POOLINGS = ("mean", "max")


class CedConfig(PretrainedConfig):
    r"""
    Configuration of a CED audio encoder (Dinkel et al., ICASSP 2024): a ViT over a 64-bin log-mel spectrogram.

    `embed_dim`, `depth` and `num_heads` left as `None` are taken from the preset `name` (default "ced-base":
    768 / 12 / 12); values given explicitly always win.

    Args:
        name (`str`, *optional*): preset name, one of `CED_PRESETS` ("ced-tiny", "ced-mini", "ced-small", "ced-base").
        embed_dim (`int`, *optional*): token width.
        depth (`int`, *optional*): number of transformer blocks.
        num_heads (`int`, *optional*): attention heads per block.
        mlp_ratio (`float`, defaults to 4.0): MLP hidden width / `embed_dim`.
        patch_size (`int` or `[int, int]`, defaults to 16): (frequency, time) kernel of the patch convolution.
        patch_stride (`int` or `[int, int]`, defaults to 16): (frequency, time) stride of the patch convolution.
        n_mels (`int`, defaults to 64): mel bins of the input.
        target_length (`int`, defaults to 1012): frames per chunk; longer inputs are cut into chunks of this length.
        qkv_bias (`bool`, defaults to `True`): bias on the fused qkv projection.
        layer_norm_eps (`float`, defaults to 1e-6): epsilon of the encoder LayerNorms (the tagging head uses 1e-5).
        outputdim (`int`, defaults to 527): classes of the AudioSet tagging head.
        pooling (`str`, defaults to "mean"): how the tagging head pools a clip. "mean" (the released models): mean
            over each chunk's tokens, then the head, then the chunks' probabilities averaged. "max": the head on
            every token, then the largest logit over the clip's tokens; training a tagger from scratch, it learns
            short sparse events (beeps, knocks) that a mean dilutes.
        drop_rate, attn_drop_rate, drop_path_rate (`float`, default 0.0): dropout after projections/positions,
            on attention weights, and stochastic depth (linearly increasing over blocks).
        trim_last_chunk (`bool`, defaults to `False`): CED keeps every token of the zero-padded last chunk;
            Dasheng drops the tokens that cover only padding.
        drop_exact_multiple_chunk (`bool`, defaults to `False`): the original code drops the last chunk of a clip
            longer than one chunk whose length is an exact multiple of `target_length` (its chunking loop stops
            one chunk early); `True` reproduces that, `False` encodes every frame.
    """

    model_type = "ced"
    presets = CED_PRESETS
    default_name = "ced-base"

    @classmethod
    def _shape(
        cls, name: str | None, embed_dim: int | None, depth: int | None, num_heads: int | None
    ) -> tuple[int, int, int]:
        """(embed_dim, depth, num_heads): the preset's, each overridden by an explicit value."""
        preset_name = name or cls.default_name
        if preset_name not in cls.presets and None in (embed_dim, depth, num_heads):
            raise ValueError(
                f"unknown preset name {preset_name!r}; use one of {sorted(cls.presets)} or give embed_dim, depth "
                "and num_heads explicitly"
            )
        preset = cls.presets.get(preset_name, (None, None, None))
        embed_dim = embed_dim if embed_dim is not None else preset[0]
        depth = depth if depth is not None else preset[1]
        num_heads = num_heads if num_heads is not None else preset[2]
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        return embed_dim, depth, num_heads

    def __init__(
        self,
        name: str | None = None,
        embed_dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        mlp_ratio: float = 4.0,
        patch_size: int | list[int] = 16,
        patch_stride: int | list[int] = 16,
        n_mels: int = 64,
        target_length: int = 1012,
        qkv_bias: bool = True,
        layer_norm_eps: float = 1e-6,
        outputdim: int = 527,
        pooling: str = "mean",
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        trim_last_chunk: bool = False,
        drop_exact_multiple_chunk: bool = False,
        n_fft: int = 512,
        win_size: int = 512,
        hop_size: int = 160,
        f_min: int = 0,
        f_max: int = 8000,
        center: bool = True,
        **kwargs: Any,
    ) -> None:
        self.name = name
        self.embed_dim, self.depth, self.num_heads = self._shape(name, embed_dim, depth, num_heads)
        if pooling not in CED_POOLINGS:
            raise ValueError(f"pooling {pooling!r} is not one of {CED_POOLINGS}; the released models use 'mean'")
        self.mlp_ratio = mlp_ratio
        self.patch_size = patch_size
        self.patch_stride = patch_stride
        self.n_mels = n_mels
        self.target_length = target_length
        self.qkv_bias = qkv_bias
        self.layer_norm_eps = layer_norm_eps
        self.outputdim = outputdim
        self.pooling = pooling
        self.drop_rate = drop_rate
        self.attn_drop_rate = attn_drop_rate
        self.drop_path_rate = drop_path_rate
        self.trim_last_chunk = trim_last_chunk
        self.drop_exact_multiple_chunk = drop_exact_multiple_chunk
        self.n_fft = n_fft
        self.win_size = win_size
        self.hop_size = hop_size
        self.f_min = f_min
        self.f_max = f_max
        self.center = center
        # `hidden_size` is what generic code (e.g. LAAC's Q-Former bridge, DeepSpeed auto sizes) reads.
        self.hidden_size = self.embed_dim
        super().__init__(**kwargs)


class DashengConfig(CedConfig):
    r"""
    Configuration of a Dasheng audio encoder (Dinkel et al., Interspeech 2024): the CED block design with 64x4
    patches (all mel bins x 4 frames, 25 tokens per second), 1008-frame chunks (252 time positions, one
    frequency position), and the padding-only tokens of the last chunk trimmed.

    Presets (`name`): "dasheng-base" (768/12/12, default), "dasheng-0.6B" (1280/32/16), "dasheng-1.2B" (1536/40/24).
    A `mispeech/dasheng-*` `config.json` stores the encoder fields inside `encoder_kwargs`; they are unpacked here.
    """

    model_type = "dasheng"
    presets = DASHENG_PRESETS
    default_name = "dasheng-base"

    def __init__(
        self,
        name: str | None = None,
        patch_size: int | list[int] = (64, 4),
        patch_stride: int | list[int] = (64, 4),
        target_length: int = 1008,
        trim_last_chunk: bool = True,
        encoder_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        fields = {
            "patch_size": list(patch_size) if not isinstance(patch_size, int) else patch_size,
            "patch_stride": list(patch_stride) if not isinstance(patch_stride, int) else patch_stride,
            "target_length": target_length,
            "trim_last_chunk": trim_last_chunk,
            **kwargs,
        }
        # mispeech/dasheng-* configs nest the architecture under `encoder_kwargs`; flat fields win over it.
        for key, value in (encoder_kwargs or {}).items():
            if key not in kwargs:
                fields[key] = value
        fields.pop("loss", None)  # a training setting of the mispeech port, not architecture
        super().__init__(name=name, **fields)


# ----------------------------------------------------------------------------------------------------------------
# Length arithmetic: pure functions on ints, shared by the models (for their masks), the LAAC
# config and the processor (`num_audio_tokens`). They live here so that configurations import no model code.
# ----------------------------------------------------------------------------------------------------------------


def _pair(value: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _num_patches(length: int, kernel: int, stride: int) -> int:
    """Outputs of a convolution without padding; leftover frames are dropped."""
    return 0 if length < kernel else (length - kernel) // stride + 1


def num_freq_patches(config: CedConfig) -> int:
    """Frequency patches per time step: 4 for CED (64 mels / 16), 1 for Dasheng (64 / 64)."""
    return _num_patches(config.n_mels, _pair(config.patch_size)[0], _pair(config.patch_stride)[0])


def chunk_layout(num_frames: int, config: CedConfig) -> list[tuple[int, int]]:
    """
    How a clip of `num_frames` mel frames is encoded, one `(attended, kept)` pair per chunk: the number of time
    patches the chunk's self-attention runs over, and the number of time patches it contributes to the output.

    - Up to `target_length` frames: one chunk of the clip's own length. A clip shorter than one patch is
      zero-padded to one patch so that it still gives tokens (public ports return none).
    - Longer: `target_length`-frame chunks; the last partial chunk is zero-padded to full length. A length that
      is an exact multiple keeps its last chunk (the original code drops it: `config.drop_exact_multiple_chunk`).
      CED keeps every token of the padded chunk; Dasheng (`config.trim_last_chunk`) keeps only the patches that
      hold real frames.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}; empty audio cannot be encoded")
    kernel, stride = _pair(config.patch_size)[1], _pair(config.patch_stride)[1]
    if num_frames <= config.target_length:
        n = _num_patches(max(num_frames, kernel), kernel, stride)
        return [(n, n)]
    per_chunk = _num_patches(config.target_length, kernel, stride)
    n_full, rest = divmod(num_frames, config.target_length)
    if rest == 0 and getattr(config, "drop_exact_multiple_chunk", False):
        n_full -= 1  # the original's chunking stops one chunk early on an exact multiple
    layout = [(per_chunk, per_chunk)] * n_full
    if rest:
        kept = _num_patches(rest, kernel, stride) if config.trim_last_chunk else per_chunk
        if kept > 0:
            layout.append((per_chunk, kept))
    return layout


def ced_num_tokens(num_frames: int, config: CedConfig) -> int:
    """
    Encoder tokens for a clip of `num_frames` mel frames (works for `CedConfig` and `DashengConfig`).

    CED-Base: 1001 frames (10 s) -> 248; 3001 (30 s) -> 756 = 3 x 252; 2024 -> 504; 5 -> 4.
    Dasheng: `max(1, num_frames // 4)` (25 tokens per second).
    """
    return num_freq_patches(config) * sum(kept for _, kept in chunk_layout(num_frames, config))


dasheng_num_tokens = ced_num_tokens  # one rule for both encoders; the config carries the differences
