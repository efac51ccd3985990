# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""Tokenizers the tools build: a small word-level one trained on a caption corpus, and Llama 2's from a GGUF file.

Captions use a few hundred words; a vocabulary of exactly those words makes a small decoder several times faster
than a 32k-50k subword vocabulary (the softmax dominates), which is what the embedded demo and the tests need.
Llama 2's own SentencePiece tokenizer comes offline as a GGUF file (llama.cpp's test vocabularies); loaded as
Meta's `tokenizer.json` would load, it is the tokenizer of Submission 4's text model. Its loader,
`llama_tokenizer_from_gguf`, lives in `laac.conversion.text_tokenizer` (`from_components` given a bare `.gguf` uses
it) and is importable from here as before.
"""

from collections.abc import Iterable

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from ..conversion.text_tokenizer import llama_tokenizer_from_gguf
from ..processing_laac import DEFAULT_AUDIO_TOKEN

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def build_word_tokenizer(
    texts: Iterable[str], audio_token: str = DEFAULT_AUDIO_TOKEN, extra_words: Iterable[str] = ()
) -> PreTrainedTokenizerFast:
    """
    A lower-casing word-level tokenizer over `texts` (+ `extra_words`), adding BOS like Llama's, with the audio
    placeholder as a special token. Ids: <pad> 0, <s> 1, </s> 2, <unk> 3, audio token 4, then the words.
    """
    specials = [*SPECIAL_TOKENS.values(), audio_token]
    tokenizer = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.normalizer = normalizers.Lowercase()
    # Punctuation splits off as its own token, so Prompt I ("audio:", "---") tokenizes into known words.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    trainer = trainers.WordLevelTrainer(special_tokens=specials, min_frequency=1)
    tokenizer.train_from_iterator([*texts, " ".join(extra_words)], trainer=trainer)
    bos = SPECIAL_TOKENS["bos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))]
    )
    from tokenizers import decoders

    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, **SPECIAL_TOKENS, additional_special_tokens=[audio_token], padding_side="left"
    )
    return fast


__all__ = ["build_word_tokenizer", "llama_tokenizer_from_gguf", "SPECIAL_TOKENS"]
