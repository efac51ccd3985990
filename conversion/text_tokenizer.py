# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
The text tokenizer of a LAAC model: the text model's own, with the audio placeholder added after its vocabulary.
`LaacProcessor.from_components` and `LaacForConditionalGeneration.from_components` both load it here
(`laac.conversion.components`), so the two agree on the placeholder's id. A Llama 1/2 `.gguf` file tokenises as
SentencePiece does. A saved checkpoint holds the resulting tokenizer files; this module does not travel with it.
"""

import os
from typing import Any

from tokenizers import models, normalizers, pre_tokenizers

from ..processing_laac import DEFAULT_AUDIO_TOKEN


def _tokenizer_load_fix(is_gguf: bool) -> str:
    if is_gguf:
        return "pass a .gguf file that holds a tokenizer (tokenizer.ggml.* metadata, as the text model's own GGUF has)"
    return (
        "put the text model's tokenizer files (tokenizer.json or tokenizer.model, and tokenizer_config.json) in that "
        "folder, or pass a .gguf file holding the tokenizer"
    )


def add_audio_token(tokenizer: Any, audio_token: str, source: str) -> int:
    """
    Adds `audio_token` to `tokenizer` as a special token after the text vocabulary and returns its id. A tokenizer
    saved by LAAC already ends with it, and keeps it; a tokenizer that has the string elsewhere would make a text
    token and the audio placeholder one id, so that is an error naming `source`.
    """
    existing = tokenizer.get_vocab().get(audio_token)
    if existing is None:
        tokenizer.add_special_tokens({"additional_special_tokens": [audio_token]}, replace_extra_special_tokens=False)
        return tokenizer.convert_tokens_to_ids(audio_token)
    if existing != len(tokenizer) - 1 or audio_token not in tokenizer.all_special_tokens:
        raise ValueError(
            f"the tokenizer of {source} already has {audio_token!r} as token id {existing}, but LAAC's audio "
            f"placeholder must be a special token after the text vocabulary (id {len(tokenizer)}); pass "
            "audio_token= a string that tokenizer does not know, e.g. '<|laac_audio|>'"
        )
    return existing


def _is_sentencepiece_gguf_conversion(tokenizer: Any) -> bool:
    """
    The shape transformers' GGUF conversion gives a SentencePiece BPE vocabulary (llama.cpp's tokenizer model
    "llama": Llama 1/2 and kin): a BPE model behind a Metaspace pre-tokenizer that prepends "▁" to the first word.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre = getattr(backend, "pre_tokenizer", None)
    return (
        isinstance(getattr(backend, "model", None), models.BPE)
        and isinstance(pre, pre_tokenizers.Metaspace)
        and pre.prepend_scheme == "first"
        and not pre.split
    )


def _space_as_sentencepiece(tokenizer: Any) -> None:
    """
    Make a GGUF-converted SentencePiece tokenizer prepend "▁" to every text and turn every space into "▁" before
    the BPE merges, as SentencePiece, llama.cpp and Meta's `tokenizer.json` of meta-llama/Llama-2-7b-hf do. The
    conversion's Metaspace prepends nothing to a text that starts with a space (" Hello" -> [15043] instead of
    [29871, 15043]): 15 of llama.cpp's 46 reference tokenisations of Llama 2's vocabulary differ without this.
    """
    backend = tokenizer.backend_tokenizer
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.pre_tokenizer = None


def _tokenizer_from_gguf(gguf_path: str) -> tuple[Any, bool]:
    """
    The tokenizer a `.gguf` file holds, and whether it is a SentencePiece one; that one tokenises as SentencePiece
    does (`_space_as_sentencepiece`), any other as transformers' GGUF conversion gives it.
    """
    from transformers import AutoTokenizer

    folder, name = os.path.split(os.path.abspath(gguf_path))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    sentencepiece = _is_sentencepiece_gguf_conversion(tokenizer)
    if sentencepiece:
        _space_as_sentencepiece(tokenizer)
    return tokenizer, sentencepiece


def llama_tokenizer_from_gguf(gguf_path: str) -> Any:
    """
    Llama 1/2's SentencePiece tokenizer from a GGUF file (e.g. `shared/tokenizers/ggml-vocab-llama-spm.gguf`),
    tokenising as SentencePiece, llama.cpp and Meta's `tokenizer.json` do (`_space_as_sentencepiece`); any other
    GGUF is a ValueError. `save_pretrained` of the result writes the tokenizer files a Hub folder of Llama 2 holds.
    """
    tokenizer, sentencepiece = _tokenizer_from_gguf(gguf_path)
    if not sentencepiece or tokenizer.unk_token != "<unk>":
        kind = type(tokenizer.backend_tokenizer.model).__name__
        raise ValueError(
            f"{gguf_path} is not a Llama 1/2 SentencePiece tokenizer (model {kind}, "
            f"unk {tokenizer.unk_token!r}); pass ggml-vocab-llama-spm.gguf or a Llama 2 model's GGUF"
        )
    return tokenizer


def load_text_tokenizer(text: str, audio_token: str = DEFAULT_AUDIO_TOKEN) -> Any:
    """
    The tokenizer of the text model `text` (a Hub id, a folder, or a `.gguf` file that holds a tokenizer) with the
    audio placeholder added after its vocabulary (`add_audio_token`) and a pad token: Llama 2 has none, and its
    `<unk>` is never a caption target (SentencePiece falls back to bytes), so it pads with that. A SentencePiece
    `.gguf` (Llama 2's) tokenises as SentencePiece does, not as transformers' GGUF conversion does.
    """
    from transformers import AutoTokenizer

    is_gguf = text.endswith(".gguf") and os.path.isfile(text)
    try:
        tokenizer = _tokenizer_from_gguf(text)[0] if is_gguf else AutoTokenizer.from_pretrained(text)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ValueError(
            f"no tokenizer could be loaded from {text} ({type(error).__name__}: {error}); "
            f"{_tokenizer_load_fix(is_gguf)}"
        ) from error
    add_audio_token(tokenizer, audio_token, text)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer


__all__ = ["DEFAULT_AUDIO_TOKEN", "add_audio_token", "llama_tokenizer_from_gguf", "load_text_tokenizer"]
