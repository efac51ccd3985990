# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
`pipeline("audio-captioning")`: audio in any common form -> one caption per input; a recording longer than one
segment is captioned per segment, with an overall caption.

    from transformers import pipeline
    captioner = pipeline("audio-captioning", model="path/to/laac", trust_remote_code=True)
    captioner("rain.wav")                                   # {"caption": "rain falls on a roof"}
    captioner([wave, "dog.flac"], sampling_rate=44100, batch_size=8)
    captioner("two_hours.flac", segment_seconds=30)         # {"caption": ..., "segments": [{"start", "end", ...}]}
    for record in captioner(path for path in paths): ...    # a generator streams the records, in input order

A `ChunkPipeline`, as transformers' speech-recognition pipeline is: `preprocess` checks one input where it comes
in and yields its segments' model inputs (read lazily: a recording of any length needs memory for one segment),
`_forward` is the model's `generate`, `postprocess` merges one recording's segments. Batches of segments
(`batch_size`), the DataLoader worker (`num_workers`) and streaming over a generator are the base class's. Bad input
raises; `laac caption` turns failures into per-file error records and splits batches that run out of memory
(`laac.cli.captioning`).

This file ships next to the weights through transformers' custom-pipeline mechanism: config.json's
`custom_pipelines` names `pipeline_laac.AudioCaptioningPipeline` and `LaacConfig.save_pretrained` copies this file,
so `pipeline("audio-captioning", model=folder, trust_remote_code=True)` loads it from the folder; `import laac`
registers the installed copy. It imports only torch / transformers / numpy / stdlib and its siblings.
"""

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, GenerationConfig
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import ChunkPipeline
from transformers.utils import logging

from .audio_laac import AudioInputError, AudioLimits, check_clip, iter_segments, segment_bounds
from .configuration_laac import PIPELINE_TASK as TASK

try:  # post-correction is the installed laac package's: it does not travel with checkpoints
    from laac.correction.post_corrector import CaptionPostProcessor, PostCorrection, PostCorrectionError
except ImportError:  # this file's copy next to a checkpoint, run without the package: captions only

    class PostCorrectionError(ValueError):
        """Post-correction could not run."""

    class PostCorrection:
        @staticmethod
        def parse(correct: Any, defaults: Any = None) -> None:
            if correct is None or correct is False:
                return None
            raise PostCorrectionError(
                f"correct={correct!r} needs the laac package, which holds the post-corrector (it does not travel with "
                "checkpoints): pip install the LAAC repository, or caption without correct="
            )

    CaptionPostProcessor = PostCorrection

logger = logging.get_logger(__name__)

# The span the model is captioned on at once; longer audio is cut into segments of this length.
DEFAULT_SEGMENT_SECONDS = 30.0
# Start-to-start distance of segments; equal to the span by default (no overlap).
DEFAULT_HOP_SECONDS = 30.0
# What a segment carries past the model to `postprocess`; `is_last` first: the base class reads a batch's size off
# the first key of `_forward`'s output.
SEGMENT_KEYS = ("is_last", "start", "end", "energy")
# A segment's record with post-correction (`CorrectionOutput.records()` less its `reason`).
CORRECTED_KEYS = ("caption", "raw_caption", "error_prob", "corrected")
FILE_SOURCES = (str, os.PathLike, bytes, bytearray)

# The opt-in fast decoding loop: the folder holding `custom_generate/generate.py`, beside this file in an installed
# checkout (a checkpoint's copy of this file has none beside it; pass a folder or Hub repository instead)
FAST_DECODING = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fast_decoding")


def fast_decoding_source(fast_decoding: bool | str) -> str:
    """
    What `generate(custom_generate=...)` takes for the fast decoding loop: `True` -> the installed checkout's
    `FAST_DECODING` folder; a string -> that folder or Hub repository (holding `custom_generate/generate.py`).
    """
    if isinstance(fast_decoding, str):
        return fast_decoding
    if not os.path.isfile(os.path.join(FAST_DECODING, "custom_generate", "generate.py")):
        raise ValueError(
            f"fast_decoding=True needs the fast decoding loop at {FAST_DECODING}/custom_generate/generate.py, which "
            "only an installed LAAC checkout has; pass fast_decoding='<folder or Hub repo holding "
            "custom_generate/generate.py>' instead"
        )
    return FAST_DECODING


def checked_array(item: Any, sampling_rate: Any, limits: AudioLimits) -> tuple[np.ndarray, Any]:
    """
    An in-memory input (array, tensor or `datasets` audio dict) as mono float32 and its rate, checked once
    (`check_clip`: rate, length and channels against `limits`, then the samples), as a file's samples are read.
    """
    if isinstance(item, dict):
        if "sampling_rate" not in item or not ({"raw", "array"} & set(item)):
            raise ValueError(f"an audio dict needs 'raw' or 'array' and 'sampling_rate', got keys {sorted(item)}")
        sampling_rate, item = item["sampling_rate"], item["raw" if "raw" in item else "array"]
    if not isinstance(item, (np.ndarray, torch.Tensor)):
        raise TypeError(
            f"cannot caption a {type(item).__name__}; pass a path, bytes, a numpy array / torch tensor with "
            "sampling_rate=, or a {'raw': array, 'sampling_rate': rate} dict"
        )
    if sampling_rate is None:
        raise ValueError("array inputs need their rate: pass sampling_rate= (e.g. 16000) or a dict with one")
    name = f"the array of shape {tuple(item.shape)}"
    return check_clip(item, sampling_rate, limits, name).astype(np.float32, copy=False), sampling_rate


def overall_index(captions: list[str], energies: list[float]) -> int:
    """Index of the caption given to the most segments; ties go to the segment with the highest mean energy."""
    counts = Counter(captions)
    return max(range(len(captions)), key=lambda i: (counts[captions[i]], energies[i]))


def overall_caption(segments: list[dict], energies: list[float]) -> str:
    """The caption given to the most segments; ties go to the segment with the highest mean energy."""
    return segments[overall_index([segment["caption"] for segment in segments], energies)]["caption"]


class AudioCaptioningPipeline(ChunkPipeline):
    r"""
    Captions audio with a LAAC model (`LaacForConditionalGeneration` + `LaacProcessor`).

    Inputs: one, a list (records in input order) or a generator (an iterator of records, in input order, each as
    soon as its input is captioned). An input is a file path (anything soundfile decodes: wav, flac, ogg, mp3,
    ...), the file's bytes, a numpy array or torch tensor with `sampling_rate=`, or a dict `{"raw" or "array":
    samples, "sampling_rate": rate}` (the `datasets` audio format). Any rate (resampled to 16 kHz), any channel
    count (averaged), integer or float samples.

    Call arguments:
        batch_size (`int`): segments per `generate()` call (the base class's batching, in input order); the
            captions are those of batch size 1.
        num_workers (`int`): the base class's DataLoader worker, which reads, decodes, resamples and log-mels the
            inputs while the model runs (a `ChunkPipeline` uses at most one).
        sampling_rate (`int`): rate of array inputs.
        segment_seconds, hop_seconds (`float`, default 30 / 30): audio longer than `segment_seconds` is captioned
            per segment; segments start every `hop_seconds` and the last is shifted to end with the audio.
        max_duration_seconds, max_channels, min_sampling_rate, max_sampling_rate: input limits (defaults from the
            feature extractor: 12 h, 32 channels, 1 kHz..768 kHz). A file is checked from its header before it is
            decoded, an array from its shape; an input over a limit raises `AudioInputError` naming the setting.
        correct (`bool`, `str`, `dict`, callable or `PostCorrection`): post-correct the captions, parsed once
            (`PostCorrection.parse`): `True` uses `model.config.post_corrector`; a gate mode ("auto", "always", "never")
            or a dict overrides those settings; a callable `captions -> records` (e.g. a `PostCorrector`) is used as
            is. The pipeline builds one `CaptionPostProcessor` for it (reused while `correct` stays the same) and
            hands it to `generate(post_processor=...)`. A corrector that cannot run raises `PostCorrectionError`.
        generate_kwargs (`dict`) or any `GenerationConfig` field (`num_beams=1`, `max_new_tokens=20`): decoding.
        fast_decoding (`bool` or `str`, default False): decode with the opt-in fast loop instead of stock `generate`
            (passed as `generate(custom_generate=..., trust_remote_code=True)`): `True` for the installed checkout's
            `FAST_DECODING` folder, or a folder / Hub repository holding `custom_generate/generate.py`.

    Returns per input a JSON-able dict: `{"caption": str}`; audio longer than one segment also has
    `"segments": [{"start": s, "end": s, "caption": str}, ...]`, and its `caption` is the overall caption: the
    caption given to the most segments, ties going to the segment with the highest mean energy (a summary of
    many segments would need a model trained for it; this is the most representative caption the model gave).
    With correction, `caption` is the corrected text and `raw_caption`, `error_prob` and `corrected` are added (to
    segments too); the overall caption is chosen on the raw captions and carries its segment's correction.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False
    _load_video_processor = False
    _pipeline_calls_generate = True
    _PREPROCESS_PARAMS = ("sampling_rate", "segment_seconds", "hop_seconds", *AudioLimits.FIELDS)
    _PIPELINE_PARAMS = (*_PREPROCESS_PARAMS, "correct", "fast_decoding", "generate_kwargs")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.processor is None:
            raise ValueError(
                "the audio-captioning pipeline needs the LaacProcessor: save it next to the model "
                "(processor.save_pretrained(folder)) or pass processor="
            )
        # The base class's collate pads a batch's prompts with the tokenizer's pad token on its side: as the
        # processor pads them (on the left for a decoder-only text model, with EOS where there is no pad token).
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "right" if self.processor.is_encoder_decoder else "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        """
        Caption one input (returns a dict), a list or tuple of inputs (a list, in input order) or a generator (an
        iterator over the records, in input order). `batch_size`, `num_workers` and the call arguments of the
        class docstring apply.
        """
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(inputs, list):
            if not inputs:
                return []
            if isinstance(inputs[0], (int, float, np.number)):
                raise ValueError("a list of numbers is ambiguous; pass one clip as a numpy array with sampling_rate=")
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, **kwargs: Any) -> tuple[dict, dict, dict]:
        known = {*self._PIPELINE_PARAMS, *GenerationConfig().to_dict()}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(
                f"unknown audio-captioning arguments {unknown}; use {list(self._PIPELINE_PARAMS)}, batch_size, "
                "num_workers, or GenerationConfig fields such as num_beams"
            )
        preprocess = {k: kwargs[k] for k in self._PREPROCESS_PARAMS if k in kwargs}
        self._check_settings(preprocess)
        generate = dict(kwargs.get("generate_kwargs") or {})
        generate.update({k: v for k, v in kwargs.items() if k not in self._PIPELINE_PARAMS})
        if kwargs.get("fast_decoding"):
            generate.update(custom_generate=fast_decoding_source(kwargs["fast_decoding"]), trust_remote_code=True)
        forward: dict[str, Any] = {"generate_kwargs": generate} if generate else {}
        if "correct" in kwargs:
            forward["correct"] = PostCorrection.parse(kwargs["correct"], self.model.config.post_corrector)
        return preprocess, forward, {}

    def _check_settings(self, preprocess: dict[str, Any]) -> None:
        """Bad segment or limit settings raise once, when the call is made, rather than for every input."""
        AudioLimits.from_kwargs(dict(preprocess), self.processor.feature_extractor.limits)
        lengths = {k: preprocess[k] for k in ("segment_seconds", "hop_seconds") if k in preprocess}
        if any(not value > 0 for value in lengths.values()):
            raise ValueError(f"segment_seconds and hop_seconds must be > 0, got {lengths}")

    # -- one input -> its segments' model inputs -------------------------------------------------------------------

    def preprocess(
        self,
        inputs: Any,
        sampling_rate: int | None = None,
        segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
        hop_seconds: float = DEFAULT_HOP_SECONDS,
        **limit_settings: float,
    ) -> Iterator[dict[str, Any]]:
        """
        The model inputs of each segment of one input, read lazily. A file or its bytes is checked from its header
        (`AudioFile`), an array from its shape and samples (`checked_array`), once; each segment's samples are
        checked as they are read, then the feature extractor resamples them to 16 kHz and makes the log-mel, and
        the processor adds the prompt. `input_features` travels frames first, (1, frames, n_mels), so that the base
        class's collate pads its time axis; with it go the segment's `is_last`, `start` and `end` (seconds) and
        `energy` (mean square, which breaks ties of the overall caption).
        """
        limits = AudioLimits.from_kwargs(limit_settings, self.processor.feature_extractor.limits)
        rate = None
        if not isinstance(inputs, FILE_SOURCES):
            inputs, rate = checked_array(inputs, sampling_rate, limits)
        extractor = self.processor.feature_extractor
        for segment in iter_segments(inputs, segment_seconds, hop_seconds, limits, rate):
            mel = extractor.clip_log_mel(segment.samples, segment.sampling_rate)
            model_inputs = self.processor.from_features(extractor.pad_log_mels([mel]))
            model_inputs["input_features"] = model_inputs["input_features"].transpose(1, 2)  # (1, frames, n_mels)
            yield {
                "is_last": segment.is_last,
                "start": segment.start / segment.sampling_rate,
                "end": segment.end / segment.sampling_rate,
                "energy": float(np.mean(np.square(segment.samples, dtype=np.float64))),
                **model_inputs,
            }

    # -- a batch of segments -> generate ----------------------------------------------------------------------------

    def _forward(
        self, model_inputs: dict[str, Any], generate_kwargs: dict | None = None, correct: PostCorrection | None = None
    ) -> dict[str, Any]:
        """
        `generate` on a batch of segments (stock, or the fast loop where `generate_kwargs` name it), with the
        post-correction hook when `correct` asks for it. The segments' own keys are passed on to `postprocess`.
        """
        segments = {key: model_inputs.pop(key) for key in SEGMENT_KEYS}
        # (B, frames, n_mels) -> (B, n_mels, frames), the model's layout
        model_inputs["input_features"] = model_inputs["input_features"].transpose(1, 2).contiguous()
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs or {})
        post_processor = self._post_processor(correct)
        if post_processor is None:
            sequences = self.model.generate(**model_inputs, **generate_kwargs)
            return {**segments, "sequences": sequences, "input_ids": model_inputs["input_ids"]}
        # the generation hook: the same call as model.generate(..., post_processor=...) and Trainer evaluation
        records = self.model.generate(**model_inputs, **generate_kwargs, post_processor=post_processor).records()
        collated = isinstance(segments["is_last"], list)  # a batch the base class collated (batch_size > 1)
        return {**segments, "record": records if collated else records[0]}

    def _post_processor(self, request: PostCorrection | None) -> CaptionPostProcessor | None:
        """The generation hook for `request`, built once and kept while the request stays the same."""
        if request is None:
            return None
        cached = self.__dict__.get("_post_processor_for")
        if cached is None or cached[0] != request:
            device = None if self.model.device.type == "meta" else str(self.model.device)
            self.__dict__["_post_processor_for"] = (request, CaptionPostProcessor(self.processor, request, device))
        return self.__dict__["_post_processor_for"][1]

    # -- one input's segments -> its record -------------------------------------------------------------------------

    def postprocess(self, model_outputs: list[dict[str, Any]]) -> dict:
        """
        The input's record: its one segment's, or the overall caption (chosen on the raw captions, with that
        segment's correction fields) and every segment's record with its times.
        """
        records = [self._segment_record(output) for output in model_outputs]
        if len(records) == 1:
            return records[0]
        segments = [
            {"start": round(output["start"], 3), "end": round(output["end"], 3), **record}
            for output, record in zip(model_outputs, records)
        ]
        raw = [record.get("raw_caption", record["caption"]) for record in records]
        best = records[overall_index(raw, [output["energy"] for output in model_outputs])]
        return {**best, "segments": segments}

    def _segment_record(self, output: dict[str, Any]) -> dict:
        """`{"caption"}`, plus `raw_caption`, `error_prob`, `corrected` with correction."""
        if "record" in output:
            return {key: output["record"][key] for key in CORRECTED_KEYS}
        return {"caption": self.processor.decode_captions(output["sequences"], output["input_ids"])[0]}


# The entry of `configuration_laac.CUSTOM_PIPELINES` (what config.json names), registered for this process; the
# first copy registered wins.
if TASK not in PIPELINE_REGISTRY.get_supported_tasks():
    PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=AudioCaptioningPipeline, pt_model=AutoModel, type="multimodal")

__all__ = [
    "AudioCaptioningPipeline",
    "AudioInputError",
    "PostCorrectionError",
    "checked_array",
    "iter_segments",
    "overall_caption",
    "overall_index",
    "segment_bounds",
]
