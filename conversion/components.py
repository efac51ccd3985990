# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
A LAAC model and its processor assembled from released parts: a pretrained audio encoder (`mispeech/ced-*` /
`mispeech/dasheng-*`) and a pretrained text model with its tokenizer (a Hub id, a folder, or for the tokenizer a
`.gguf` file). `LaacForConditionalGeneration.from_components` and `LaacProcessor.from_components` call these; the
two add the audio placeholder to the text vocabulary through the same `load_text_tokenizer`, so they agree on its
id. This is tooling of the installed package: checkpoints carry the assembled model, not its assembly.
"""

from typing import Any, Optional

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, PretrainedConfig, PreTrainedModel
from transformers.utils import logging

from ..configuration_ced import CedConfig
from ..configuration_laac import AUDIO_CONFIG_CLASSES, LaacConfig
from ..modeling_laac import AUDIO_TOWER_CLASSES
from ..processing_laac import DEFAULT_AUDIO_TOKEN
from .text_tokenizer import load_text_tokenizer


logger = logging.get_logger(__name__)


def load_audio_config(path: str) -> CedConfig:
    """The audio encoder config of a `mispeech/ced-*` / `mispeech/dasheng-*` id or folder, by its `model_type`."""
    config_dict, _ = PretrainedConfig.get_config_dict(path)
    model_type = config_dict.get("model_type", "ced")
    if model_type not in AUDIO_CONFIG_CLASSES:
        raise ValueError(
            f"{path} is a {model_type!r} model; expected one of {sorted(AUDIO_CONFIG_CLASSES)} (CED or Dasheng)"
        )
    return AUDIO_CONFIG_CLASSES[model_type].from_dict(config_dict)


def build_model(
    model_class: type[PreTrainedModel],
    audio: str,
    text: str,
    audio_token: str = DEFAULT_AUDIO_TOKEN,
    dtype: Optional[torch.dtype] = None,
    **config_kwargs: Any,
) -> PreTrainedModel:
    """
    `model_class` (LaacForConditionalGeneration) from the audio encoder at `audio` and the text model at `text`;
    the Q-Former and the projection start random. Each part is held once: the model is built on the meta device
    and the loaded encoder and text model take the places of their empty twins, so a Llama 2-7B build peaks near
    the weights' own bytes (`benchmarks/build_memory.py`). `text` must hold the model's tokenizer; a missing one,
    an audio token the tokenizer already uses, or a vocabulary that cannot grow is a `ValueError` naming the folder.
    """
    audio_config = load_audio_config(audio)
    audio_tower = AUDIO_TOWER_CLASSES[audio_config.model_type].from_pretrained(audio, config=audio_config, dtype=dtype)
    tokenizer = load_text_tokenizer(text, audio_token)
    language_model = _load_text_model(text, dtype)
    _make_room_for_audio_token(language_model, tokenizer, text)
    config = model_class.config_class(
        audio_config=audio_tower.config,
        text_config=language_model.config,
        audio_token_id=tokenizer.convert_tokens_to_ids(audio_token),
        **config_kwargs,
    )
    with torch.device("meta"):  # allocates nothing: only the Q-Former and the projection are new
        model = model_class(config)
    model.audio_tower = audio_tower
    model.language_model = language_model
    for name in ("qformer", "language_projection"):
        module = model.get_submodule(name).to_empty(device=language_model.device)
        module.apply(model._init_weights)
    if dtype is not None:
        model.to(dtype)
        if dtype == torch.float16:  # as from_pretrained does: `_keep_in_fp32_modules` stay in float32
            for name in model_class._keep_in_fp32_modules:
                model.get_submodule(name).float()
    return model.eval()  # as from_pretrained: dropout off until training asks for it


def _load_text_model(text: str, dtype: Optional[torch.dtype]) -> PreTrainedModel:
    """The pretrained text model at `text` (a causal LM, or an encoder-decoder such as BART), from safetensors."""
    text_config = AutoConfig.from_pretrained(text)
    text_auto = AutoModelForSeq2SeqLM if getattr(text_config, "is_encoder_decoder", False) else AutoModelForCausalLM
    return text_auto.from_pretrained(text, dtype=dtype, use_safetensors=True)


def _make_room_for_audio_token(language_model: PreTrainedModel, tokenizer: Any, text: str) -> None:
    """
    Grows the text model's embeddings (and output layer) to the tokenizer's size with the audio token, new rows
    random. A vocabulary padded beyond the tokenizer already has room and is left as it is; a tokenizer larger than
    the embeddings, or embeddings that cannot grow, are errors naming `text`.
    """
    try:
        rows = language_model.get_input_embeddings().weight.shape[0]
    except (NotImplementedError, AttributeError) as error:
        raise ValueError(
            f"the text model of {text} ({type(language_model).__name__}) cannot take one more token: it exposes no "
            "input embeddings to grow; use a text model whose class implements get_input_embeddings (any "
            "transformers causal LM or BART does)"
        ) from error
    text_tokens = len(tokenizer) - 1  # without the audio token
    if text_tokens > rows:
        raise ValueError(
            f"the tokenizer of {text} has {text_tokens} tokens but its model's embeddings have {rows} rows: they are "
            "not one model's parts; put the text model's own tokenizer next to its weights"
        )
    if len(tokenizer) > rows:
        language_model.resize_token_embeddings(len(tokenizer), mean_resizing=False)


def build_processor(
    processor_class: type,
    audio: Optional[str],
    text: str,
    audio_token: str = DEFAULT_AUDIO_TOKEN,
    config: Optional[LaacConfig] = None,
    prompt_tokenization: Optional[str] = None,
) -> Any:
    """
    `processor_class` (LaacProcessor) matching `build_model(audio, text)`: the text model's tokenizer with the audio
    token added (same id as the model's), and the token layout of `config` (default: one built from the audio
    encoder at `audio` and the text model's config, or Submission 4's Llama 2-7B text config when `text` holds only
    a tokenizer). The tokenizer must fit `config` (`check_tokenizer_fits`).
    """
    tokenizer = load_text_tokenizer(text, audio_token)
    audio_token_id = tokenizer.convert_tokens_to_ids(audio_token)
    if config is None:
        config = _components_config(audio, text, len(tokenizer), audio_token_id)
    check_tokenizer_fits(tokenizer, audio_token_id, config, text)
    return processor_class.from_config(config, tokenizer, audio_token, prompt_tokenization)


def check_tokenizer_fits(tokenizer: Any, audio_token_id: int, config: LaacConfig, source: str) -> None:
    """
    The tokenizer (with its audio token) must fit the model's text vocabulary and give the audio token the id the
    model's `config` expects; otherwise the processor would produce ids the model has no embedding for, or
    splice the audio somewhere else.
    """
    rows = config.text_config.vocab_size
    if len(tokenizer) > rows:
        raise ValueError(
            f"the text vocabulary of the model ({rows} tokens) cannot take one more token: the tokenizer of {source} "
            f"has {len(tokenizer) - 1} tokens plus the audio token (id {audio_token_id}); build the model and the "
            "processor from the same text model (LaacForConditionalGeneration.from_components, then "
            "LaacProcessor.from_components(..., config=model.config)), or give the config "
            f"text_config.vocab_size >= {len(tokenizer)}"
        )
    if audio_token_id != config.audio_token_id:
        raise ValueError(
            f"the tokenizer of {source} gives the audio token id {audio_token_id}, but the model's config expects "
            f"audio_token_id {config.audio_token_id}; build the processor from the text model the model was built "
            "from, with config=model.config"
        )


def _components_config(audio: Optional[str], text: str, vocab_size: int, audio_token_id: int) -> LaacConfig:
    """
    The config `build_model(audio, text)` builds, as far as the processor needs it: the text model's config with
    the vocabulary grown by the audio token, or, for a folder that holds only a tokenizer, Submission 4's default
    text config (Llama 2-7B, 32,001 tokens).
    """
    audio_config = load_audio_config(audio) if audio else None
    try:
        text_config = AutoConfig.from_pretrained(text)
    except (OSError, ValueError):
        logger.info("%s has no model config; using LaacConfig's default text config (Llama 2-7B)", text)
        return LaacConfig(audio_config=audio_config)
    text_config.vocab_size = max(text_config.vocab_size, vocab_size)
    return LaacConfig(audio_config=audio_config, text_config=text_config, audio_token_id=audio_token_id)


__all__ = ["build_model", "build_processor", "check_tokenizer_fits", "load_audio_config"]
