# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""`--cache_audio_tokens`: a frozen audio tower's encoder tokens, computed once per clip during training.

Set as `LaacForConditionalGeneration.audio_token_cache` (by `training.trainer.enable_audio_token_cache`), it takes
the tower's place in `get_audio_features`. It is a training aid: checkpoints neither carry nor need it.
"""

import hashlib
from typing import Optional

import torch
from torch import nn

try:  # installed with `datasets`, which training needs; BLAKE2b where it is absent
    import xxhash
except ImportError:
    xxhash = None


class AudioTokenCache:
    """
    Encoder tokens of a frozen audio tower, kept per clip and keyed by the clip's log-mel bytes, so training that
    sees each clip many times encodes it once (`train.py --cache_audio_tokens`). Exact only while the tower does
    not train; the tower runs in eval mode here (no dropout), as a frozen feature extractor. Not saved with the
    model. Memory: the tokens (about 60 KB per 5-s clip for a 128-wide encoder, 375 KB for CED-Base).
    """

    def __init__(self) -> None:
        self.tokens: dict[bytes, torch.Tensor] = {}

    @staticmethod
    def _key(mel: torch.Tensor) -> bytes:
        """
        A digest of the log-mel's bytes and their count. xxHash's 128-bit XXH3 (installed with `datasets`, which
        training needs) hashes a 5-s clip's log-mel in microseconds where BLAKE2b took half a millisecond, about 20
        ms of every 64-clip step on 2 CPU cores; BLAKE2b where xxhash is absent.
        """
        data = memoryview(mel.detach().to("cpu", torch.float32).contiguous().numpy()).cast("B")
        size = len(data).to_bytes(8, "little")
        if xxhash is not None:
            return xxhash.xxh3_128_digest(data) + size
        return hashlib.blake2b(data, digest_size=16).digest() + size

    @torch.no_grad()
    def __call__(
        self, tower: nn.Module, input_features: torch.Tensor, feature_attention_mask: Optional[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like `tower(...)`: (B, N_max, D) tokens packed left-aligned per clip and their (B, N_max) mask."""
        if any(param.requires_grad for param in tower.parameters()):
            raise ValueError(
                "AudioTokenCache needs a frozen audio tower, but some of its parameters train; freeze it "
                "(--freeze_audio_tower true) or drop the cache"
            )
        frames = (
            feature_attention_mask.long().sum(-1).tolist()
            if feature_attention_mask is not None
            else [input_features.shape[-1]] * input_features.shape[0]
        )
        keys = [self._key(input_features[i, :, :n]) for i, n in enumerate(frames)]
        first_rows: dict[bytes, int] = {}  # each clip not seen before, encoded once: a batch may hold a clip twice
        for i, key in enumerate(keys):  # (two of its captions; the blind baseline's silences of one length)
            if key not in self.tokens:
                first_rows.setdefault(key, i)
        missing = list(first_rows.values())
        if missing:
            longest = max(frames[i] for i in missing)
            mask = None if feature_attention_mask is None else feature_attention_mask[missing, :longest]
            was_training = tower.training
            tower.eval()
            encoded = tower(input_features[missing, :, :longest], feature_attention_mask=mask, return_dict=True)
            tower.train(was_training)
            for row, i in enumerate(missing):
                self.tokens[keys[i]] = encoded.last_hidden_state[row, : int(encoded.attention_mask[row].sum())].clone()
        clips = [self.tokens[key] for key in keys]
        tokens = clips[0].new_zeros(len(clips), max(len(c) for c in clips), clips[0].shape[-1])
        token_mask = torch.zeros(tokens.shape[:2], dtype=torch.long, device=tokens.device)
        for row, clip in enumerate(clips):
            tokens[row, : len(clip)] = clip
            token_mask[row, : len(clip)] = 1
        return tokens, token_mask


__all__ = ["AudioTokenCache"]
