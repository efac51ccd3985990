# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
LaacProcessor: audio -> log-mel features, and Prompt I with the audio placeholder expanded to one token per
audio token (the count comes from `num_audio_tokens`, the same helper the model uses). With captions it also
builds the training labels: only caption tokens and EOS carry loss. Captions become targets as in the original
code (`normalize_caption_target`); `fense_normalize_caption` is FENSE's detector cleaning, for the post-corrector.
"""

import os
import re
import warnings
from typing import Any, Optional, Sequence, Union

import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import BatchFeature, ProcessorMixin
from transformers.utils import logging

from .configuration_laac import AUDIO_PLACEHOLDER, PROMPT_I, LaacConfig, _build_audio_config, num_audio_tokens
from .feature_extraction_laac import LaacFeatureExtractor

logger = logging.get_logger(__name__)

IGNORE_INDEX = -100
# The audio placeholder token added to the text vocabulary (`laac.conversion.text_tokenizer.add_audio_token`).
DEFAULT_AUDIO_TOKEN = "<|audio|>"
# How a decoder-only text model's prompt and caption become ids (see `LaacProcessor._prompt_ids`).
SEPARATE, JOINT = "separate", "joint"
PROMPT_TOKENIZATIONS = (SEPARATE, JOINT)
# What a processor_config.json written before `prompt_tokenization` existed was trained with.
SAVED_WITHOUT_SETTING = JOINT
# Training targets as the original code makes them (`normalize_caption_target`): a space before a mark that ends
# a word ("barks ." -> "barks.") is dropped, then each of these characters becomes a space. Hyphens and apostrophes
# stay, and so does the space a final "." leaves: with Llama 2, 4,467 of Clotho's 5,225 evaluation captions end
# in "▁ </s>".
_SPACE_BEFORE_MARK = re.compile(r'\s(?P<mark>[,.!?;:"](?:\s|$))')
_TARGET_MARKS = re.compile(r'[,.!?;:|*"()]')
# FENSE's error detector cleans its input differently: every character that is neither a word character nor
# whitespace is deleted ("rain-drops" -> "raindrops", "dog's" -> "dogs").
_FENSE_PUNCTUATION = re.compile(r"[^\w\s]")


def decode_generated_captions(
    tokenizer: Any, sequences: torch.Tensor, input_ids: Optional[torch.Tensor] = None, is_encoder_decoder: bool = False
) -> list[str]:
    """
    Captions from `generate()` token ids: the prompt dropped (a decoder-only model returns it first: pass the
    `input_ids` that went in), every special token dropped, whitespace trimmed. `LaacProcessor.decode_captions` and
    the post-correction hook (`laac.correction.post_corrector.CaptionPostProcessor`) both decode with it.
    """
    if input_ids is not None and not is_encoder_decoder:
        sequences = sequences[:, input_ids.shape[1] :]
    texts = tokenizer.batch_decode(sequences, skip_special_tokens=True, clean_up_tokenization_spaces=True)
    return [" ".join(t.split()) for t in texts]


def normalize_caption_target(caption: str) -> str:
    """The training target the original code makes of a caption; `LaacProcessor` applies it to `text_target`.

    Lower-cased; a space before a closing `, . ! ? ; : "` is dropped, then each of `, . ! ? ; : | * " ( )` becomes
    a space and each pair of spaces one space. Hyphens, apostrophes and the space a final mark leaves are kept:

        >>> normalize_caption_target("Rain-drops fall, on a tin roof!")
        'rain-drops fall on a tin roof '
        >>> normalize_caption_target("A dog's bark (loud) .")
        "a dog's bark loud "
    """
    text = _SPACE_BEFORE_MARK.sub(r"\g<mark>", caption.lower()).replace("  ", " ")
    return _TARGET_MARKS.sub(" ", text).replace("  ", " ")


def fense_normalize_caption(caption: str) -> str:
    """FENSE's error-detector cleaning: the input of the post-corrector's detector, not a training target.

    Lower-cased, every character that is neither a word character (letters, digits, `_`) nor whitespace deleted,
    whitespace collapsed to single spaces:

        >>> fense_normalize_caption("Rain-drops fall, on a tin roof!")
        'raindrops fall on a tin roof'
        >>> fense_normalize_caption("  A Dog's   BARK, loud! ")
        'a dogs bark loud'
        >>> fense_normalize_caption("2 cars pass at 10:30.")
        '2 cars pass at 1030'
    """
    return " ".join(_FENSE_PUNCTUATION.sub("", caption).lower().split())


def _deprecated_prompt(text: Optional[Union[str, Sequence[str]]], prompt: Optional[str]) -> Any:
    """`prompt=` is the old name of `text=` (the prompt is the model's text input, as in transformers processors)."""
    if prompt is None:
        return text
    if text is not None:
        raise ValueError("pass the prompt once: text= (prompt= is its deprecated old name), not both")
    warnings.warn("LaacProcessor(prompt=...) is deprecated; pass the prompt as text=", FutureWarning, stacklevel=3)
    return prompt


def adds_dummy_prefix(tokenizer: Any) -> bool:
    """
    Whether `tokenizer` is a SentencePiece-style one that marks a word-initial space with "▁" and puts one before
    the first word of every text it encodes (SentencePiece's dummy prefix), probed on the text "a": Llama 1/2's
    tokenizer gives "▁a" (as do Mistral's and TinyLlama's); byte-level BPE (Llama 3, GPT-2, SmolLM2, BART) and
    word-level tokenizers give no "▁".
    """
    ids = tokenizer("a", add_special_tokens=False)["input_ids"]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    return bool(pieces) and pieces[0].startswith("▁")


def default_prompt_tokenization(tokenizer: Any) -> str:
    """
    `"separate"` (the original code's ids) for a tokenizer with a dummy prefix (`adds_dummy_prefix`: Llama 2's), the
    only kind the original was trained with; `"joint"` for any other, where a caption tokenised on its own would
    lose the space before its first word.
    """
    return SEPARATE if adds_dummy_prefix(tokenizer) else JOINT


def check_prompt_tokenization(value: Any) -> str:
    """`value` if it names a prompt tokenization, else a ValueError saying which values there are."""
    if value not in PROMPT_TOKENIZATIONS:
        raise ValueError(
            f"prompt_tokenization={value!r} is not one of {PROMPT_TOKENIZATIONS}: pass 'separate' (the prompt's "
            "pieces and the caption tokenised each on its own, as the original code does) or 'joint' (prompt and "
            "caption tokenised as one text), or leave it unset to choose by tokenizer"
        )
    return value


class LaacProcessor(ProcessorMixin):
    r"""
    Feature extractor + tokenizer + Prompt I.

    Args:
        feature_extractor ([`LaacFeatureExtractor`]): audio -> log-mel.
        tokenizer: the text model's tokenizer, with `audio_token` added as a special token.
        audio_token (`str`): the placeholder token that `LaacConfig.audio_token_id` identifies.
        prompt_template (`str`): Prompt I by default; `<AcousticTokens>` marks the audio.
        audio_token_layout (`dict`): `LaacConfig.audio_token_layout()`, so the processor counts audio tokens
            exactly as the model does.
        is_encoder_decoder (`bool`): captions go to the decoder (BART) rather than after the prompt (Llama).
        prompt_tokenization (`str`, *optional*): how a decoder-only text model's prompt and caption become ids.
            `"separate"`: `<s>` + the text before the audio, the text after it and the caption are tokenised each
            on its own, as the original code does; with Llama 2 the prompt ends in a lone "▁" (29871) and the
            caption starts with its own "▁a". `"joint"`: the prompt without its trailing space and the caption
            continue one tokenisation (the prompt ends at ":", 29901). Unset: `default_prompt_tokenization` of the
            tokenizer ("separate" for Llama 2's). Saved in processor_config.json; a processor_config.json written
            before this setting existed loads as "joint", the ids its model was trained on.
    """

    def __init__(
        self,
        feature_extractor: Optional[LaacFeatureExtractor] = None,
        tokenizer: Any = None,
        audio_token: str = DEFAULT_AUDIO_TOKEN,
        prompt_template: str = PROMPT_I,
        audio_token_layout: Optional[dict[str, Any]] = None,
        is_encoder_decoder: bool = False,
        chat_template: Optional[str] = None,
        prompt_tokenization: Optional[str] = None,
    ) -> None:
        if prompt_template.count(AUDIO_PLACEHOLDER) != 1:
            raise ValueError(
                f"prompt_template must contain {AUDIO_PLACEHOLDER!r} exactly once, got {prompt_template!r}"
            )
        self.audio_token = audio_token
        self.prompt_template = prompt_template
        self.audio_token_layout = audio_token_layout or LaacConfig().audio_token_layout()
        self.is_encoder_decoder = is_encoder_decoder
        self._audio_config = _build_audio_config(dict(self.audio_token_layout["audio_config"]))
        super().__init__(feature_extractor, tokenizer, chat_template=chat_template)
        if self.tokenizer.convert_tokens_to_ids(audio_token) in (None, self.tokenizer.unk_token_id):
            raise ValueError(
                f"the tokenizer has no token {audio_token!r}; add it with "
                f"tokenizer.add_special_tokens({{'additional_special_tokens': [{audio_token!r}]}}) and resize the "
                "model's embeddings, or build both with from_components()"
            )
        self.audio_token_id = self.tokenizer.convert_tokens_to_ids(audio_token)
        if prompt_tokenization is None:
            prompt_tokenization = default_prompt_tokenization(self.tokenizer)
        self.prompt_tokenization = check_prompt_tokenization(prompt_tokenization)

    @classmethod
    def get_processor_dict(
        cls, pretrained_model_name_or_path: Union[str, os.PathLike], **kwargs: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """processor_config.json's settings; one saved before `prompt_tokenization` existed keeps its "joint" ids."""
        processor_dict, kwargs = super().get_processor_dict(pretrained_model_name_or_path, **kwargs)
        processor_dict.setdefault("prompt_tokenization", SAVED_WITHOUT_SETTING)
        return processor_dict, kwargs

    # -- length arithmetic (mirrors the model) ----------------------------------------------------------------------

    def num_audio_tokens(self, num_frames: int) -> int:
        """Audio tokens for `num_frames` mel frames: the model's `LaacConfig.num_audio_tokens`, same helper."""
        layout = self.audio_token_layout
        return num_audio_tokens(
            num_frames, self._audio_config, layout["window_size"], layout["queries_per_window"], layout["last_window"]
        )

    def _template(self, prompt: Optional[str] = None) -> str:
        """The prompt template to use (`prompt`, or the configured one), checked to hold the audio placeholder once."""
        template = self.prompt_template if prompt is None else prompt
        if template.count(AUDIO_PLACEHOLDER) != 1:
            raise ValueError(
                f"a prompt must contain {AUDIO_PLACEHOLDER!r} exactly once, got {template!r}; e.g. {PROMPT_I!r}. "
                "The processor's text= is the prompt (the model input); captions are targets: pass them as "
                "text_target="
            )
        return template

    def build_prompt(self, n_audio_tokens: int, prompt: Optional[str] = None) -> str:
        """The prompt text with the placeholder expanded to `n_audio_tokens` audio tokens."""
        return self._template(prompt).replace(AUDIO_PLACEHOLDER, self.audio_token * n_audio_tokens)

    # -- tokenization -----------------------------------------------------------------------------------------------

    def _encode(self, texts: list[str], special: bool = True) -> list[list[int]]:
        """Token ids of each text, in one tokenizer call: a fast tokenizer encodes the whole batch at once."""
        return self.tokenizer(texts, add_special_tokens=special)["input_ids"] if texts else []

    def _prompt_ids(self, templates: list[str], n_audio: list[int]) -> list[list[int]]:
        """
        Token ids of each prompt for a decoder-only text model: what training puts before the caption and what
        generation continues from. "separate": the special tokens (`<s>`) and the text before the audio, the audio
        tokens, then the text after them tokenised on its own, trailing space included. "joint": the expanded
        prompt without its trailing space, in one tokenisation (the space belongs to the caption's first token).
        """
        if self.prompt_tokenization == JOINT:
            return self._encode([self.build_prompt(n, t).rstrip(" ") for n, t in zip(n_audio, templates)])
        before, after = zip(*(t.split(AUDIO_PLACEHOLDER) for t in templates))
        heads, tails = self._encode(list(before)), self._encode(list(after), special=False)
        return [head + [self.audio_token_id] * n + tail for head, n, tail in zip(heads, n_audio, tails)]

    def _joint_caption_ids(
        self, prompt_ids: list[list[int]], prompts: list[str], captions: list[str]
    ) -> list[list[int]]:
        """Each caption's ids as they continue its prompt in one tokenisation of prompt + caption ("joint")."""
        rows = []
        joints = self._encode([prompt + caption for prompt, caption in zip(prompts, captions)])
        for ids, joint, caption in zip(prompt_ids, joints, captions):
            if joint[: len(ids)] == ids:
                rows.append(joint[len(ids) :])
            else:  # the tokenizer merges across the boundary: fall back to the caption on its own
                rows.append(self._encode([caption], special=False)[0])
        return rows

    def _caption_ids(
        self, prompt_ids: list[list[int]], templates: list[str], n_audio: list[int], captions: list[str]
    ) -> list[list[int]]:
        """Each caption's target ids, ending in EOS: tokenised on its own ("separate") or after its prompt ("joint")."""
        eos = self.tokenizer.eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no eos_token; set tokenizer.eos_token so captions can end")
        if self.prompt_tokenization == SEPARATE:
            rows = self._encode(captions, special=False)
        else:
            prompts = [self.build_prompt(n, t) for n, t in zip(n_audio, templates)]
            rows = self._joint_caption_ids(prompt_ids, prompts, captions)
        return [row if row[-1:] == [eos] else row + [eos] for row in rows]

    def _pad(self, rows: list[list[int]], value: int, side: str) -> torch.Tensor:
        return pad_sequence([torch.tensor(r, dtype=torch.long) for r in rows], True, value, padding_side=side)

    def _decoder_only_text(
        self, templates: list[str], n_audio: list[int], captions: Optional[list[str]]
    ) -> dict[str, torch.Tensor]:
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        prompt_ids = self._prompt_ids(templates, n_audio)
        caption_ids = [[]] * len(prompt_ids)
        if captions is not None:
            caption_ids = self._caption_ids(prompt_ids, templates, n_audio, captions)
        ids = [prompt + caption for prompt, caption in zip(prompt_ids, caption_ids)]
        labels = [[IGNORE_INDEX] * len(prompt) + caption for prompt, caption in zip(prompt_ids, caption_ids)]
        # Left padding: prompts end where generation starts, and the model derives positions from the mask.
        out = {
            "input_ids": self._pad(ids, pad_id, "left"),
            "attention_mask": self._pad([[1] * len(r) for r in ids], 0, "left"),
        }
        if captions is not None:
            out["labels"] = self._pad(labels, IGNORE_INDEX, "left")
        return out

    def _encoder_decoder_text(self, prompts: list[str], captions: Optional[list[str]]) -> dict[str, torch.Tensor]:
        pad_id = self.tokenizer.pad_token_id
        ids = self._encode(prompts)
        out = {
            "input_ids": self._pad(ids, pad_id, "right"),
            "attention_mask": self._pad([[1] * len(r) for r in ids], 0, "right"),
        }
        if captions is not None:
            out["labels"] = self._pad(self._encode(captions), IGNORE_INDEX, "right")
        return out

    # -- main entry point -------------------------------------------------------------------------------------------

    def __call__(
        self,
        audio: Any = None,
        text: Optional[Union[str, Sequence[str]]] = None,
        text_target: Optional[Union[str, Sequence[str]]] = None,
        sampling_rate: Optional[Union[int, Sequence[int]]] = None,
        return_tensors: str = "pt",
        normalize: bool = True,
        prompt: Optional[str] = None,
        **kwargs: Any,
    ) -> BatchFeature:
        r"""
        Args:
            audio: one clip or a list of clips (see `LaacFeatureExtractor`).
            text: the model's text input, as in every transformers processor: a prompt other than the configured
                template (one for all clips, or one per clip); each must contain `<AcousticTokens>` once.
            text_target: optional captions, one per clip: the training targets (the transformers name for
                sequence-to-sequence targets), made into the original code's targets by `normalize_caption_target`
                unless `normalize=False` (then used as given).
            sampling_rate: rate of `audio`, or one rate per clip; other rates are resampled to 16 kHz.
            prompt: the former name of `text` (deprecated).

        Returns:
            `BatchFeature` with `input_features`, `feature_attention_mask`, `input_ids`, `attention_mask` and, with
            `text_target`, `labels`.
        """
        if audio is None:
            raise ValueError("LaacProcessor needs audio; pass audio=<array or list of arrays> and sampling_rate=")
        if return_tensors != "pt":
            raise ValueError(f"return_tensors={return_tensors!r} is not supported; LaacProcessor returns 'pt' tensors")
        text = _deprecated_prompt(text, prompt)
        features = self.feature_extractor(audio, sampling_rate=sampling_rate, return_tensors="pt", **kwargs)
        return self.from_features(features, text_target=text_target, text=text, normalize=normalize)

    def from_features(
        self,
        features: BatchFeature,
        text_target: Optional[Union[str, Sequence[str]]] = None,
        text: Optional[Union[str, Sequence[str]]] = None,
        normalize: bool = True,
    ) -> BatchFeature:
        """
        What `__call__` returns, from log-mel features the feature extractor made earlier (`input_features` and
        `feature_attention_mask`, e.g. `feature_extractor.pad_log_mels` of kept log-mels): adds the prompt and,
        with `text_target`, the caption tokens and labels.
        """
        frames = [int(n) for n in features["feature_attention_mask"].sum(-1).tolist()]
        captions = None
        if text_target is not None:
            captions = [text_target] if isinstance(text_target, str) else list(text_target)
            if len(captions) != len(frames):
                raise ValueError(
                    f"got {len(frames)} audio clips but {len(captions)} captions; pass one caption per clip"
                )
            captions = [normalize_caption_target(c) if normalize else c for c in captions]
        templates = [self._template(t) for t in self._prompt_templates(text, len(frames))]
        n_audio = [self.num_audio_tokens(n) for n in frames]
        if self.is_encoder_decoder:
            prompts = [self.build_prompt(n, t) for n, t in zip(n_audio, templates)]
            text_inputs = self._encoder_decoder_text(prompts, captions)
        else:
            text_inputs = self._decoder_only_text(templates, n_audio, captions)
        return BatchFeature({**features, **text_inputs}, tensor_type="pt")

    def _prompt_templates(self, text: Optional[Union[str, Sequence[str]]], n_clips: int) -> list[Optional[str]]:
        """One prompt template per clip: the configured one, one given for all, or one given per clip."""
        if text is None or isinstance(text, str):
            return [text] * n_clips
        templates = list(text)
        if len(templates) != n_clips:
            raise ValueError(
                f"got {n_clips} audio clips but {len(templates)} prompts in text=; pass one prompt for all clips or "
                "one per clip (captions are targets: pass them as text_target=)"
            )
        return templates

    def decode_captions(self, sequences: torch.Tensor, input_ids: Optional[torch.Tensor] = None) -> list[str]:
        """
        Captions from `model.generate(**inputs)`: drops the prompt (decoder-only models return it; pass the
        `input_ids` that went in) and every special token, and trims whitespace.
        """
        return decode_generated_captions(self.tokenizer, sequences, input_ids, self.is_encoder_decoder)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "input_features", "feature_attention_mask"]

    @classmethod
    def from_components(
        cls,
        audio: Optional[str],
        text: str,
        audio_token: str = DEFAULT_AUDIO_TOKEN,
        config: Optional[LaacConfig] = None,
        prompt_tokenization: Optional[str] = None,
    ) -> "LaacProcessor":
        """
        The processor matching `LaacForConditionalGeneration.from_components(audio, text)`: the text model's
        tokenizer (`text` may also be a `.gguf` file holding it) with the audio token added (same id as the
        model's), the default feature extractor, and the token layout of `config` (default: the one
        `from_components` builds). `prompt_tokenization`: see the class docstring. The installed package's
        `laac.conversion.components.build_processor` does the work (checkpoints do not carry it).
        """
        try:  # tooling of the installed package, not of checkpoints
            from laac.conversion.components import build_processor
        except ImportError as error:
            raise ImportError(
                "from_components needs the laac package (laac.conversion.components): pip install the LAAC repository"
            ) from error
        return build_processor(cls, audio, text, audio_token, config, prompt_tokenization)

    @classmethod
    def from_config(
        cls,
        config: LaacConfig,
        tokenizer: Any,
        audio_token: str = DEFAULT_AUDIO_TOKEN,
        prompt_tokenization: Optional[str] = None,
    ) -> "LaacProcessor":
        """
        The processor matching a model's `config`: its prompt, audio-token layout and text-model kind, with the
        default feature extractor. Sets the tokenizer's padding side (left for decoder-only text models).
        `prompt_tokenization`: see the class docstring (unset: chosen by tokenizer).
        """
        tokenizer.padding_side = "right" if config.is_encoder_decoder else "left"
        return cls(
            LaacFeatureExtractor(),
            tokenizer,
            audio_token=audio_token,
            prompt_template=config.prompt_template,
            audio_token_layout=config.audio_token_layout(),
            is_encoder_decoder=config.is_encoder_decoder,
            prompt_tokenization=prompt_tokenization,
        )


LaacFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
LaacProcessor.register_for_auto_class("AutoProcessor")

__all__ = [
    "IGNORE_INDEX",
    "PROMPT_TOKENIZATIONS",
    "LaacProcessor",
    "DEFAULT_AUDIO_TOKEN",
    "adds_dummy_prefix",
    "check_prompt_tokenization",
    "decode_generated_captions",
    "default_prompt_tokenization",
    "fense_normalize_caption",
    "normalize_caption_target",
]
