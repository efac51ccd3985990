# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""Configuration of LAAC: audio encoder (CED / Dasheng) -> windowed Q-Former -> text decoder (Llama / BART)."""

import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Optional, Union

from transformers import AutoConfig, Blip2QFormerConfig, PretrainedConfig
from transformers.dynamic_module_utils import get_relative_import_files
from transformers.utils import logging

from .configuration_ced import CedConfig, DashengConfig, ced_num_tokens


logger = logging.get_logger(__name__)

# Prompt I of the report, verbatim; the audio tokens replace AUDIO_PLACEHOLDER.
AUDIO_PLACEHOLDER = "<AcousticTokens>"
PROMPT_I = "Describe the detail of this audio:<AcousticTokens>\n---\nDetailed: "
# Decoding of the report: beam 3, at least 2 and at most 30 new tokens.
DEFAULT_GENERATION: dict[str, Any] = {"num_beams": 3, "max_new_tokens": 30, "min_new_tokens": 2}

TOKEN_ORDERS = ("frequency", "time")
LAST_WINDOW_MODES = ("drop", "pad")
AUTO_MAP = {
    "AutoConfig": "configuration_laac.LaacConfig",
    "AutoModel": "modeling_laac.LaacForConditionalGeneration",
    "AutoModelForCausalLM": "modeling_laac.LaacForConditionalGeneration",
}
AUDIO_CONFIG_CLASSES = {"ced": CedConfig, "dasheng": DashengConfig}
# `pipeline("audio-captioning")` for checkpoints loaded with trust_remote_code: transformers' custom-pipeline entry
# (what `Pipeline.save_pretrained` writes for a registered pipeline) names the class in the checkpoint's own
# pipeline_laac.py, which `LaacConfig.save_pretrained` copies next to config.json. The pipeline is found through
# config.json, not through an import: configurations import only configurations.
PIPELINE_TASK = "audio-captioning"
CUSTOM_PIPELINES: dict[str, dict[str, Any]] = {
    PIPELINE_TASK: {"impl": "pipeline_laac.AudioCaptioningPipeline", "pt": ["AutoModel"], "type": "multimodal"}
}


def num_windows(num_encoder_tokens: int, window_size: int, last_window: str) -> int:
    """Q-Former windows over `num_encoder_tokens`: an incomplete last window is dropped or padded (and masked)."""
    if last_window == "drop":
        return num_encoder_tokens // window_size
    return math.ceil(num_encoder_tokens / window_size)


def num_audio_tokens(
    num_frames: int,
    audio_config: CedConfig,
    window_size: int = 17,
    queries_per_window: int = 1,
    last_window: str = "drop",
) -> int:
    """
    THE length helper: audio tokens the LLM receives for a clip of `num_frames` mel frames (1 + samples // 160).

    encoder tokens (CED: 4 frequency x time patches per <=1012-frame chunk) -> windows of `window_size` tokens ->
    `queries_per_window` tokens each. CED-Base defaults: 10 s (1001 frames) -> 248 -> 14; 30 s -> 756 -> 44.
    The model and `LaacProcessor` both call this, so the placeholder count and the features cannot disagree.
    """
    return queries_per_window * num_windows(ced_num_tokens(num_frames, audio_config), window_size, last_window)


def _build_audio_config(audio_config: Union[None, dict, PretrainedConfig]) -> CedConfig:
    if isinstance(audio_config, PretrainedConfig):
        return audio_config
    audio_config = dict(audio_config or {})
    model_type = audio_config.pop("model_type", "ced")
    if model_type not in AUDIO_CONFIG_CLASSES:
        raise ValueError(f"unknown audio encoder model_type {model_type!r}; use one of {sorted(AUDIO_CONFIG_CLASSES)}")
    return AUDIO_CONFIG_CLASSES[model_type](**audio_config)


def _build_qformer_config(qformer_config: Union[None, dict, PretrainedConfig], encoder_width: int) -> Blip2QFormerConfig:
    if isinstance(qformer_config, PretrainedConfig):
        return qformer_config
    # The report's bridge: 2 layers, width 768, 12 heads, cross-attention in EVERY layer (the BLIP-2 default is
    # every other layer), reading encoder tokens of the encoder's width.
    defaults = {
        "hidden_size": 768,
        "num_hidden_layers": 2,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "cross_attention_frequency": 1,
        "encoder_hidden_size": encoder_width,
    }
    defaults.update({k: v for k, v in (qformer_config or {}).items() if k != "model_type"})
    return Blip2QFormerConfig(**defaults)


def _build_text_config(text_config: Union[None, dict, PretrainedConfig]) -> PretrainedConfig:
    if isinstance(text_config, PretrainedConfig):
        return text_config
    text_config = dict(text_config or {})
    model_type = text_config.pop("model_type", "llama")
    if model_type == "llama":
        # Llama 2-7B with one extra token: the audio placeholder.
        text_config.setdefault("vocab_size", 32001)
    return AutoConfig.for_model(model_type, **text_config)


class LaacConfig(PretrainedConfig):
    r"""
    Configuration of [`LaacForConditionalGeneration`]. The defaults build the report's best system
    ("Submission 4"): CED-Base -> 2-layer Q-Former over 17-token windows, 1 query each -> Llama 2-7B.

    Args:
        audio_config (`dict` or `CedConfig`/`DashengConfig`, *optional*): the audio encoder ("ced" or "dasheng").
        qformer_config (`dict` or `Blip2QFormerConfig`, *optional*): the Q-Former bridge.
        text_config (`dict` or `PretrainedConfig`, *optional*): the text decoder, any causal LM
            (default Llama 2-7B) or an encoder-decoder such as BART ("Submission 3").
        window_size (`int`, defaults to 17): encoder tokens per Q-Former window.
        queries_per_window (`int`, defaults to 1): learned queries (= audio tokens) per window.
        token_order (`str`, defaults to `"frequency"`): order of the encoder tokens before windowing:
            `"frequency"` (frequency-major within each chunk, as the original code) or `"time"` (time-major).
        last_window (`str`, defaults to `"drop"`): an incomplete last window is `"drop"`ped (as the original
            code) or zero-`"pad"`ded and masked in the Q-Former's cross-attention.
        audio_token_id (`int`, *optional*): id of the audio placeholder token in the text vocabulary.
        prompt_template (`str`, defaults to Prompt I): the text prompt; `AUDIO_PLACEHOLDER` marks the audio.
        post_corrector (`str`, *optional*): the model's default post-corrector, what `correct=True` uses: the folder
            or Hub id of a saved `laac.correction.post_corrector.PostCorrector` (its own artifact, holding
            post_corrector_config.json). None: the report's settings. A config saved before the post-corrector was
            its own artifact holds the settings themselves here (a dict, read from its `corrector` key).
    """

    model_type = "laac"
    sub_configs = {"audio_config": PretrainedConfig, "qformer_config": Blip2QFormerConfig, "text_config": AutoConfig}

    def __init__(
        self,
        audio_config: Union[None, dict, PretrainedConfig] = None,
        qformer_config: Union[None, dict, PretrainedConfig] = None,
        text_config: Union[None, dict, PretrainedConfig] = None,
        window_size: int = 17,
        queries_per_window: int = 1,
        token_order: str = "frequency",
        last_window: str = "drop",
        audio_token_id: Optional[int] = None,
        prompt_template: str = PROMPT_I,
        post_corrector: Union[None, str, dict[str, Any]] = None,
        **kwargs: Any,
    ) -> None:
        if token_order not in TOKEN_ORDERS:
            raise ValueError(f"token_order must be one of {TOKEN_ORDERS}, got {token_order!r}")
        if last_window not in LAST_WINDOW_MODES:
            raise ValueError(f"last_window must be one of {LAST_WINDOW_MODES}, got {last_window!r}")
        if window_size < 1 or queries_per_window < 1:
            raise ValueError(
                f"window_size and queries_per_window must be >= 1, got {window_size} and {queries_per_window}"
            )
        if prompt_template.count(AUDIO_PLACEHOLDER) != 1:
            raise ValueError(
                f"prompt_template must contain {AUDIO_PLACEHOLDER!r} exactly once, got {prompt_template!r}; "
                f"e.g. {PROMPT_I!r}"
            )
        self.audio_config = _build_audio_config(audio_config)
        self.qformer_config = _build_qformer_config(qformer_config, self.audio_config.embed_dim)
        self.text_config = _build_text_config(text_config)
        self.window_size = window_size
        self.queries_per_window = queries_per_window
        self.token_order = token_order
        self.last_window = last_window
        # The placeholder is appended to the text vocabulary, so by default it is the last id.
        self.audio_token_id = audio_token_id if audio_token_id is not None else self.text_config.vocab_size - 1
        self.prompt_template = prompt_template
        # configs saved before the post-corrector was its own artifact hold its settings under `corrector`
        saved_settings = kwargs.pop("corrector", None)
        post_corrector = saved_settings if post_corrector is None else post_corrector
        if not isinstance(post_corrector, (type(None), str, dict)):
            raise ValueError(
                f"post_corrector must be the folder or Hub id of a saved PostCorrector (or None), got {post_corrector!r}"
            )
        self.post_corrector = post_corrector
        # Entry points for `trust_remote_code=True` loading; save_pretrained copies the files they name.
        kwargs.setdefault("auto_map", dict(AUTO_MAP))
        kwargs.setdefault("custom_pipelines", CUSTOM_PIPELINES)
        kwargs.setdefault("is_encoder_decoder", bool(getattr(self.text_config, "is_encoder_decoder", False)))
        kwargs.setdefault("tie_word_embeddings", bool(getattr(self.text_config, "tie_word_embeddings", False)))
        super().__init__(**kwargs)

    def num_audio_tokens(self, num_frames: int) -> int:
        """Audio tokens for a clip of `num_frames` mel frames; see the module-level `num_audio_tokens`."""
        return num_audio_tokens(
            num_frames, self.audio_config, self.window_size, self.queries_per_window, self.last_window
        )

    def audio_token_layout(self) -> dict[str, Any]:
        """The fields `LaacProcessor` needs to mirror `num_audio_tokens` (saved in its processor config)."""
        return {
            "audio_config": self.audio_config.to_diff_dict() | {"model_type": self.audio_config.model_type},
            "window_size": self.window_size,
            "queries_per_window": self.queries_per_window,
            "last_window": self.last_window,
        }

    def get_text_config(self, decoder: Optional[bool] = None, encoder: Optional[bool] = None) -> PretrainedConfig:
        return self.text_config

    @property
    def custom_pipelines(self) -> dict[str, dict[str, Any]]:
        """
        The custom pipelines that transformers' `pipeline()` must load from the checkpoint's own code. `pipeline()`
        insists on `trust_remote_code=True` for every task listed here, even when this process has the same task
        registered already (`import laac` registers "audio-captioning"); such tasks are left out, so an installed
        checkout keeps loading folders without remote code. config.json always holds every entry.
        """
        registered = _registered_pipeline_tasks()
        stored = self.__dict__.get("custom_pipelines") or {}
        # copies: `pipeline()` rewrites the entry it reads in place (class names -> classes)
        return {task: dict(entry) for task, entry in stored.items() if task not in registered}

    @custom_pipelines.setter
    def custom_pipelines(self, value: dict[str, dict[str, Any]]) -> None:
        self.__dict__["custom_pipelines"] = {task: dict(entry) for task, entry in (value or {}).items()}

    def save_pretrained(self, save_directory: Union[str, os.PathLike], push_to_hub: bool = False, **kwargs: Any) -> None:
        """`PretrainedConfig.save_pretrained`, then the code of the custom pipelines config.json names."""
        super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        for entry in (self.__dict__.get("custom_pipelines") or {}).values():
            _copy_module_code(entry["impl"].split(".")[0], Path(save_directory), self._name_or_path)


def _registered_pipeline_tasks() -> set[str]:
    """Tasks in transformers' PIPELINE_REGISTRY; none can be registered before `transformers.pipelines` is imported."""
    pipelines = sys.modules.get("transformers.pipelines")  # looked up, not imported: pipelines import torch
    registry = getattr(pipelines, "PIPELINE_REGISTRY", None)
    return set(registry.get_supported_tasks()) if registry is not None else set()


def _copy_module_code(module: str, folder: Path, loaded_from: str = "") -> None:
    """
    Copy `module`.py and the siblings it imports relatively into `folder`, as `custom_object_save` does for the
    config and model code. The file is looked up next to this one (the package, or the code transformers cached
    for a checkpoint), then in the folder the config was loaded from.
    """
    candidates = [Path(__file__).with_name(f"{module}.py")]
    if loaded_from and os.path.isdir(loaded_from):
        candidates.append(Path(loaded_from) / f"{module}.py")
    source = next((path for path in candidates if path.is_file()), None)
    if source is None:
        logger.warning(f"{module}.py not found next to {Path(__file__).name}; {folder} will lack that pipeline code")
        return
    for path in [source, *map(Path, get_relative_import_files(source))]:
        target = folder / path.name
        if not (target.exists() and os.path.samefile(path, target)):
            shutil.copyfile(path, target)


LaacConfig.register_for_auto_class()
