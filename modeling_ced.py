# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""CED and Dasheng audio encoders as transformers models.

Both are ViTs over a log-mel spectrogram (from `LaacFeatureExtractor`, shape (B, n_mels, T) in dB):

1. BatchNorm over the mel bins (`init_bn`; running statistics frozen by default, or updated in training: see
   `CedModel.set_batchnorm_statistics`).
2. Clips longer than `target_length` frames are cut into chunks of that length, the last one zero-padded
   (after the norm, as the original code does). Each chunk is encoded on its own.
3. Conv2d patches (CED 16x16: 4 frequency x t time patches; Dasheng 64x4: 1 x t), learned time and frequency
   position embeddings, pre-norm blocks, final LayerNorm.
4. Tokens are frequency-major inside a chunk (index f * n_t + t) and chunks follow each other in time.

Batches of clips with different lengths (`feature_attention_mask`) give every clip exactly what it gives alone:
each clip has its own chunk layout (`chunk_layout`), padded patches are masked out of attention, and the real
tokens are packed left-aligned in `last_hidden_state` with `attention_mask` marking them.
Weight names match the `mispeech/ced-*` (and `mispeech/dasheng-*`) safetensors checkpoints.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput, logging

from .configuration_ced import (  # the length arithmetic lives with the configs; re-exported here
    CedConfig,
    DashengConfig,
    _num_patches,
    _pair,
    ced_num_tokens,
    chunk_layout,
    dasheng_num_tokens,
    num_freq_patches,
)

logger = logging.get_logger(__name__)

HEAD_LAYER_NORM_EPS = 1e-5  # the tagging head's LayerNorm uses the torch default, unlike the encoder's 1e-6


# ----------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class CedModelOutput(ModelOutput):
    """
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, max_num_tokens, embed_dim)`):
        Encoder tokens after the final LayerNorm, each clip's tokens left-aligned in its single-clip order; zeros
        after them.
    attention_mask (`torch.LongTensor` of shape `(batch_size, max_num_tokens)`): 1 for real tokens, 0 for padding.
    hidden_states (`tuple(torch.FloatTensor)`, *optional*): the input of block 0 and the output of every block
        (before the final LayerNorm), packed the same way.
    """

    last_hidden_state: torch.FloatTensor | None = None
    attention_mask: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class CedAudioClassifierOutput(ModelOutput):
    """
    loss (`torch.FloatTensor`, *optional*): binary cross-entropy against multi-hot `labels`.
    logits (`torch.FloatTensor` of shape `(batch_size, outputdim)`): log-odds of `probabilities`.
    probabilities (`torch.FloatTensor` of shape `(batch_size, outputdim)`): sigmoid tag scores averaged over a
        clip's chunks, as the original model outputs them (it calls them "logits").
    last_hidden_state, attention_mask, hidden_states: as in `CedModelOutput`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    probabilities: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    attention_mask: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class _EncodedChunks:
    """Chunk-level encoder state before packing; tensors are (n_chunks, n_freq * n_time, D)."""

    last_hidden: torch.Tensor  # after the final LayerNorm
    hidden_states: list[torch.Tensor] | None  # block-0 input and every block output, if requested
    kept_mask: torch.Tensor  # (n_chunks, n_freq * n_time) bool: token is part of its clip's output
    chunks_per_clip: list[int]
    tokens_per_clip: list[int]


# ----------------------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------------------


def _drop_path(x: torch.Tensor, prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop a residual branch for whole samples."""
    if prob == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - prob)
    return x * keep / (1.0 - prob)


def _linear_from(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """A new nn.Linear holding copies of `weight` (out, in) and `bias`, with the same trainability."""
    linear = nn.Linear(
        weight.shape[1],
        weight.shape[0],
        bias=bias is not None,
        device=weight.device,
        dtype=weight.dtype,
    )
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    linear.requires_grad_(weight.requires_grad)
    return linear


class CedPatchEmbed(nn.Module):
    def __init__(self, config: CedConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(
            1,
            config.embed_dim,
            kernel_size=_pair(config.patch_size),
            stride=_pair(config.patch_stride),
        )

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.proj(mel)  # (n, 1, F, T) -> (n, D, n_freq, n_time)


class CedAttention(nn.Module):
    """
    Multi-head self-attention with the original fused `qkv` projection (output rows ordered [q; k; v]).

    `unfuse_qkv()` swaps `qkv` for separate `q_proj` / `k_proj` / `v_proj` with the same weights so that LoRA
    (peft `target_modules=["q_proj", "v_proj"]`) can adapt q and v alone; `fuse_qkv()` restores `qkv`, e.g.
    before saving in the checkpoint layout. The forward pass works in either state.
    """

    def __init__(self, config: CedConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.head_dim = config.embed_dim // config.num_heads
        self.attn_drop = config.attn_drop_rate
        self.qkv: nn.Linear | None = nn.Linear(config.embed_dim, 3 * config.embed_dim, bias=config.qkv_bias)
        self.proj = nn.Linear(config.embed_dim, config.embed_dim)
        self.proj_drop = nn.Dropout(config.drop_rate)

    @property
    def is_fused(self) -> bool:
        return self.qkv is not None

    def unfuse_qkv(self) -> None:
        if not self.is_fused:
            return
        dim = self.proj.in_features
        weights = self.qkv.weight.split(dim)
        biases = self.qkv.bias.split(dim) if self.qkv.bias is not None else (None,) * 3
        for name, weight, bias in zip(("q_proj", "k_proj", "v_proj"), weights, biases):
            setattr(self, name, _linear_from(weight, bias))
        self.qkv = None

    def fuse_qkv(self) -> None:
        if self.is_fused:
            return
        parts = (self.q_proj, self.k_proj, self.v_proj)
        bias = torch.cat([p.bias for p in parts]) if parts[0].bias is not None else None
        self.qkv = _linear_from(torch.cat([p.weight for p in parts]), bias)
        del self.q_proj, self.k_proj, self.v_proj

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.is_fused:
            return self.qkv(x).chunk(3, dim=-1)
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, length, dim = x.shape
        # (n, L, D) -> (n, heads, L, head_dim)
        q, k, v = (t.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2) for t in self._project(x))
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]  # (n, 1, 1, L), True = attend
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.attn_drop if self.training else 0.0,
        )
        y = y.transpose(1, 2).reshape(batch, length, dim)
        return self.proj_drop(self.proj(y))


class CedMlp(nn.Module):
    def __init__(self, config: CedConfig) -> None:
        super().__init__()
        hidden = int(config.embed_dim * config.mlp_ratio)
        self.fc1 = nn.Linear(config.embed_dim, hidden)
        self.act = nn.GELU()  # exact (erf) GELU, as the original
        self.fc2 = nn.Linear(hidden, config.embed_dim)
        self.drop = nn.Dropout(config.drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class CedBlock(GradientCheckpointingLayer):
    def __init__(self, config: CedConfig, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.attn = CedAttention(config)
        self.norm2 = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.mlp = CedMlp(config)
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + _drop_path(self.attn(self.norm1(x), key_mask), self.drop_path, self.training)
        return x + _drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------


class CedPreTrainedModel(PreTrainedModel):
    config_class = CedConfig
    # The checkpoints keep the encoder under `encoder.`: CedForAudioClassification.encoder is a CedModel, and
    # CedModel.from_pretrained on a classifier checkpoint strips the prefix.
    base_model_prefix = "encoder"
    main_input_name = "input_features"
    input_modalities = "audio"
    supports_gradient_checkpointing = True
    _no_split_modules = ["CedBlock"]
    _supports_sdpa = True  # what CedAttention always calls

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)  # Linear/Conv ~ N(0, 0.02), norms to identity, BatchNorm stats reset
        if isinstance(module, CedModel):
            init.trunc_normal_(module.time_pos_embed, std=0.02)
            init.trunc_normal_(module.freq_pos_embed, std=0.02)


BATCHNORM_MODES = ("frozen", "update")


class CedModel(CedPreTrainedModel):
    """The CED encoder. Input: log-mel dB (B, n_mels, T); output: packed tokens + mask (see `CedModelOutput`)."""

    # A classifier checkpoint (mispeech/ced-*) carries the tagging head; the encoder alone ignores it.
    _keys_to_ignore_on_load_unexpected = [r"^outputlayer\."]

    def __init__(self, config: CedConfig) -> None:
        super().__init__(config)
        self.init_bn = self._build_init_bn(config)
        self.patch_embed = CedPatchEmbed(config)
        grid_f = num_freq_patches(config)
        grid_t = _num_patches(
            config.target_length,
            _pair(config.patch_size)[1],
            _pair(config.patch_stride)[1],
        )
        self.time_pos_embed = nn.Parameter(torch.zeros(1, config.embed_dim, 1, grid_t))
        self.freq_pos_embed = nn.Parameter(torch.zeros(1, config.embed_dim, grid_f, 1))
        self.pos_drop = nn.Dropout(config.drop_rate)
        drop_paths = [config.drop_path_rate * i / max(config.depth - 1, 1) for i in range(config.depth)]  # meta-safe
        self.blocks = nn.ModuleList([CedBlock(config, p) for p in drop_paths])
        self.norm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        # A training-time choice, not part of the config (see `set_batchnorm_statistics`).
        self.batchnorm_statistics = "frozen"
        self.post_init()

    @staticmethod
    def _build_init_bn(config: CedConfig) -> nn.Module:
        # momentum 0.01 as the original: it matters when the statistics update in training.
        return nn.BatchNorm2d(config.n_mels, momentum=0.01)

    def set_batchnorm_statistics(self, mode: str) -> None:
        """
        How `init_bn` behaves in training mode. "frozen" (default): it always normalises with its running
        statistics, the AudioSet mel statistics the rest of the network was trained on. "update": as any BatchNorm
        in training mode, it normalises with the batch's statistics and updates the running ones (momentum 0.01),
        as the original training code does by putting the whole model in train mode. Evaluation always uses the
        running statistics; the affine weight and bias train or not as `requires_grad` says, in both modes.
        """
        if mode not in BATCHNORM_MODES:
            raise ValueError(f"batchnorm statistics mode must be one of {BATCHNORM_MODES}, got {mode!r}")
        self.batchnorm_statistics = mode
        self.train(self.training)

    def train(self, mode: bool = True) -> "CedModel":
        """Set train/eval mode; `init_bn` stays in eval mode while its statistics are frozen."""
        super().train(mode)
        if getattr(self, "batchnorm_statistics", "frozen") == "frozen":
            self.init_bn.eval()
        return self

    def unfuse_qkv(self) -> None:
        """Split every block's fused qkv into q_proj/k_proj/v_proj (same weights), e.g. before adding LoRA."""
        for block in self.blocks:
            block.attn.unfuse_qkv()

    def fuse_qkv(self) -> None:
        """Undo `unfuse_qkv` (merge LoRA first), restoring the checkpoint layout."""
        for block in self.blocks:
            block.attn.fuse_qkv()

    # -- forward steps --------------------------------------------------------------------------------------------

    def _clip_lengths(self, input_features: torch.Tensor, feature_attention_mask: torch.Tensor | None) -> list[int]:
        batch, n_mels, frames = input_features.shape
        if n_mels != self.config.n_mels:
            raise ValueError(
                f"expected input_features of shape (batch, {self.config.n_mels}, frames), got "
                f"{tuple(input_features.shape)}; pass the log-mel from LaacFeatureExtractor"
            )
        if feature_attention_mask is None:
            return [frames] * batch
        if feature_attention_mask.shape != (batch, frames):
            raise ValueError(
                f"feature_attention_mask has shape {tuple(feature_attention_mask.shape)}, expected {(batch, frames)}"
            )
        lengths = feature_attention_mask.long().sum(-1).tolist()
        if min(lengths) < 1:
            raise ValueError(f"feature_attention_mask marks a clip with 0 frames (lengths {lengths})")
        return lengths

    def _normalize(self, input_features: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """Per-mel BatchNorm, then zero every frame past a clip's end: the original zero-pads AFTER the norm."""
        x = self.init_bn(input_features.unsqueeze(2)).transpose(1, 2)  # (B, F, 1, T) -> (B, 1, F, T)
        frame_ids = torch.arange(x.shape[-1], device=x.device)
        valid = frame_ids[None, :] < torch.tensor(lengths, device=x.device)[:, None]  # (B, T)
        return x.masked_fill(~valid[:, None, None, :], 0.0)

    def _split_chunks(self, x: torch.Tensor, layouts: list[list[tuple[int, int]]], lengths: list[int]) -> torch.Tensor:
        """(B, 1, F, T) -> (n_real_chunks, 1, F, W), clips in batch order, chunks in time order."""
        batch, _, n_mels, _ = x.shape
        max_chunks = max(len(layout) for layout in layouts)
        if max_chunks == 1:  # every clip fits one chunk: no need to pad to target_length
            kernel = _pair(self.config.patch_size)[1]
            width = max(kernel, max(lengths))
        else:
            width = self.config.target_length
        total = max_chunks * width
        x = F.pad(x, (0, total - x.shape[-1])) if x.shape[-1] < total else x[..., :total]
        x = x.reshape(batch, 1, n_mels, max_chunks, width).permute(0, 3, 1, 2, 4)  # (B, n_chunks, 1, F, W)
        exists = torch.tensor(
            [[c < len(layout) for c in range(max_chunks)] for layout in layouts],
            device=x.device,
        )
        return x[exists]  # chunks that exist only because of batch padding are dropped here

    def _embed(self, chunks: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(chunks)  # (n, D, n_freq, n_time)
        n_time = x.shape[-1]
        x = x + self.time_pos_embed[..., :n_time] + self.freq_pos_embed
        x = x.flatten(2).transpose(1, 2)  # (n, n_freq * n_time, D), frequency-major: index f * n_time + t
        return self.pos_drop(x)

    def _token_masks(
        self, layouts: list[list[tuple[int, int]]], n_time: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per chunk token masks (n, n_freq * n_time): attended (key mask) and kept (output)."""
        pairs = torch.tensor([pair for layout in layouts for pair in layout], device=device)  # (n, 2)
        time_ids = torch.arange(n_time, device=device)
        n_freq = num_freq_patches(self.config)
        attended, kept = (
            (time_ids[None, :] < pairs[:, i : i + 1])[:, None, :].expand(-1, n_freq, -1).flatten(1) for i in (0, 1)
        )
        return attended, kept

    def encode_chunks(
        self,
        input_features: torch.Tensor,
        feature_attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> _EncodedChunks:
        """Run the encoder chunk by chunk without packing (used by the tagging head, which pools per chunk)."""
        lengths = self._clip_lengths(input_features, feature_attention_mask)
        layouts = [chunk_layout(n, self.config) for n in lengths]
        chunks = self._split_chunks(self._normalize(input_features, lengths), layouts, lengths)
        x = self._embed(chunks)
        attended, kept = self._token_masks(layouts, x.shape[1] // num_freq_patches(self.config), x.device)
        key_mask = None if bool(attended.all()) else attended  # no mask lets SDPA pick its fastest kernel
        hidden_states = [x] if output_hidden_states else None
        for block in self.blocks:
            x = block(x, key_mask)
            if hidden_states is not None:
                hidden_states.append(x)
        return _EncodedChunks(
            last_hidden=self.norm(x),
            hidden_states=hidden_states,
            kept_mask=kept,
            chunks_per_clip=[len(layout) for layout in layouts],
            tokens_per_clip=[ced_num_tokens(n, self.config) for n in lengths],
        )

    @staticmethod
    def pack_tokens(encoded: _EncodedChunks, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n_chunks, L, D) chunk states -> (B, N_max, D) left-aligned per clip, and the (B, N_max) mask."""
        flat = hidden[encoded.kept_mask]  # (total_tokens, D), ordered clip, chunk, frequency, time
        counts = torch.tensor(encoded.tokens_per_clip, device=hidden.device)
        if flat.shape[0] != int(counts.sum()):
            raise RuntimeError(f"token count {flat.shape[0]} != chunk_layout total {int(counts.sum())}")
        positions = torch.arange(int(counts.max()), device=hidden.device)
        mask = positions[None, :] < counts[:, None]  # (B, N_max)
        packed = hidden.new_zeros(*mask.shape, hidden.shape[-1]).masked_scatter(mask[..., None], flat)
        return packed, mask.long()

    def forward(
        self,
        input_features: torch.Tensor,
        feature_attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CedModelOutput | tuple:
        r"""
        input_features (`torch.FloatTensor` of shape `(batch_size, n_mels, frames)`): log-mel in dB.
        feature_attention_mask (`torch.LongTensor` of shape `(batch_size, frames)`, *optional*): 1 for real
            frames (right padding). Each clip is encoded as if it were alone.
        """
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output = self.packed_output(self.encode_chunks(input_features, feature_attention_mask, output_hidden_states))
        return output if return_dict else output.to_tuple()

    def packed_output(self, encoded: _EncodedChunks) -> CedModelOutput:
        last_hidden_state, attention_mask = self.pack_tokens(encoded, encoded.last_hidden)
        hidden_states = None
        if encoded.hidden_states is not None:
            hidden_states = tuple(self.pack_tokens(encoded, h)[0] for h in encoded.hidden_states)
        return CedModelOutput(
            last_hidden_state=last_hidden_state, attention_mask=attention_mask, hidden_states=hidden_states
        )


class CedForAudioClassification(CedPreTrainedModel):
    """
    CED with its AudioSet tagging head (LayerNorm -> Linear -> sigmoid). `config.pooling` "mean" (the released
    models): per chunk, mean over tokens -> head; per clip, the chunks' probabilities averaged. "max": the head on
    every token; per clip, the largest logit over its tokens.
    """

    def __init__(self, config: CedConfig) -> None:
        super().__init__(config)
        self.encoder = CedModel(config)
        self.outputlayer = nn.Sequential(
            nn.LayerNorm(config.embed_dim, eps=HEAD_LAYER_NORM_EPS),
            nn.Linear(config.embed_dim, config.outputdim),
        )
        self.post_init()

    def _clip_logits(self, encoded: _EncodedChunks) -> torch.Tensor:
        hidden = encoded.last_hidden
        if self.config.pooling == "max":
            token_logits = self.outputlayer(hidden).masked_fill(~encoded.kept_mask[..., None], float("-inf"))
            chunk_max = token_logits.max(1).values  # (n_chunks, C)
            return torch.stack([z.max(0).values for z in chunk_max.split(encoded.chunks_per_clip)])  # (B, C)
        kept = encoded.kept_mask[..., None].to(hidden.dtype)  # (n_chunks, L, 1)
        chunk_logits = self.outputlayer((hidden * kept).sum(1) / kept.sum(1))  # (n_chunks, C)
        clip_logits = []
        for z in chunk_logits.split(encoded.chunks_per_clip):
            # log(mean sigmoid(z)) - log(1 - mean sigmoid(z)), computed stably; equals z for one chunk
            log_p = torch.logsumexp(F.logsigmoid(z), 0) - torch.logsumexp(F.logsigmoid(-z), 0)
            clip_logits.append(log_p)
        return torch.stack(clip_logits)  # (B, C)

    def forward(
        self,
        input_features: torch.Tensor,
        feature_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CedAudioClassifierOutput | tuple:
        r"""
        labels (`torch.FloatTensor` of shape `(batch_size, outputdim)`, *optional*): multi-hot tag targets.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        encoded = self.encoder.encode_chunks(input_features, feature_attention_mask, output_hidden_states)
        logits = self._clip_logits(encoded)
        loss = None
        if labels is not None:
            loss = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        output = CedAudioClassifierOutput(
            loss=loss, logits=logits, probabilities=logits.sigmoid(), **self.encoder.packed_output(encoded)
        )
        return output if return_dict else output.to_tuple()


class DashengModel(CedModel):
    """
    The Dasheng encoder: CED blocks over 64x4 patches (25 tokens/s), 1008-frame chunks, padded tokens of the last
    chunk trimmed. Weight names follow `mispeech/dasheng-*` (`encoder.` prefix, BatchNorm under `init_bn.1`).
    """

    config_class = DashengConfig

    @staticmethod
    def _build_init_bn(config: CedConfig) -> nn.Module:
        # The original wraps the BatchNorm between two (parameter-free) einops Rearrange layers, so its weights are
        # stored as `init_bn.1.*`; an Identity at index 0 keeps that name without the reshapes.
        return nn.Sequential(nn.Identity(), nn.BatchNorm2d(config.n_mels, momentum=0.01))


__all__ = [
    "CedAudioClassifierOutput",
    "CedForAudioClassification",
    "CedModel",
    "CedModelOutput",
    "CedPreTrainedModel",
    "DashengModel",
    "ced_num_tokens",
    "chunk_layout",
    "dasheng_num_tokens",
    "num_freq_patches",
]
