# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
`pipeline("audio-captioning")`: audio in any common form -> one caption per input, with long recordings captioned
per segment, batches bucketed by length, and the optional LLM post-corrector.

    from transformers import pipeline
    captioner = pipeline("audio-captioning", model="path/to/laac", trust_remote_code=True)
    captioner("rain.wav")                                   # {"caption": "rain falls on a roof"}
    captioner([wave, "dog.flac"], sampling_rate=44100, batch_size=8)
    captioner("two_hours.flac", segment_seconds=30)         # {"caption": ..., "segments": [{"start", "end", ...}]}

This file ships next to the weights through transformers' custom-pipeline mechanism: config.json's
`custom_pipelines` names `pipeline_laac.AudioCaptioningPipeline` and `LaacConfig.save_pretrained` copies this file,
so `pipeline("audio-captioning", model=folder, trust_remote_code=True)` loads it from the folder; `import laac`
registers the installed copy. It imports only torch / transformers / numpy / stdlib and its siblings.
"""

import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, GenerationConfig, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.utils import logging

from .configuration_laac import PIPELINE_TASK as TASK
from .audio_laac import (
    AudioInputError,
    AudioLimits,
    check_samples,
    frames_and_channels,
    iter_file_segments,
    resample,
    segment_bounds,
    to_float_array,
    to_mono,
)

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
# Segments buffered and sorted by length before batching: batch_size * BUCKET_BATCHES. Bounds memory for any
# number and length of inputs while keeping the padding inside a batch small.
BUCKET_BATCHES = 8

# The opt-in fast decoding loop: the folder holding `custom_generate/generate.py`, beside this file in an installed
# checkout (a checkpoint's copy of this file has none beside it; pass a folder or Hub repository instead)
FAST_DECODING = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fast_decoding")
RELEASED = np.zeros(0, dtype=np.float32)  # a captioned segment's samples: memory stays flat in a recording's length


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


@dataclass
class Segment:
    """One span of one input, mono float32 at the source rate (`RELEASED` once captioned)."""

    index: int  # position of the input in the call
    number: int  # position of the segment in its input
    audio: np.ndarray
    sampling_rate: int
    start: float  # seconds
    end: float
    energy: float  # mean square: breaks ties when choosing the overall caption
    limits: AudioLimits | None = None  # the call's input limits, passed on to the processor
    last: bool = False  # the input's last segment: the input is fully read
    features: np.ndarray | None = None  # (n_mels, frames) log-mel made in a DataLoader worker; None: from `audio`


@dataclass
class _InputFailure:
    """An input that could not be read: it gets one error record (or raises), its segments are dropped."""

    index: int
    error: AudioInputError


@dataclass
class BatchSizes:
    """
    The batch size of one captioning call: the `requested` one and the `current` one, which an out-of-memory error
    halves for the failed batch and every following batch of the call (`settled` is what the call ended with).
    """

    requested: int
    current: int = 0
    out_of_memory_errors: int = 0

    def __post_init__(self) -> None:
        self.current = self.current or self.requested

    def shrink(self, failed: int) -> None:
        """After an out-of-memory error at a batch of `failed` segments: half of it, from now on."""
        self.out_of_memory_errors += 1
        half = (failed + 1) // 2
        if half < self.current:
            logger.warning(f"out of memory at batch size {failed}: split in halves and retried; batches of {half} now")
            self.current = half


@dataclass
class _InputState:
    """What is known about one input while its segments are in flight."""

    segments: list[Segment] = field(default_factory=list)
    captions: dict[int, dict] = field(default_factory=dict)  # segment number -> its record ("caption", ...)
    enumerated: bool = False  # all segments have been read
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.error is not None or (self.enumerated and len(self.captions) == len(self.segments))


# -- audio reading ---------------------------------------------------------------------------------------------------


def _mono_array(audio: Any, index: int, sampling_rate: Any, limits: AudioLimits) -> np.ndarray:
    """
    An in-memory clip as mono float32 (integer PCM scaled, channels averaged, as `LaacFeatureExtractor` does), its
    rate, length and channels checked against `limits` first.
    """
    name = f"clip {index}"
    frames, channels = frames_and_channels(tuple(np.shape(audio)), name)
    limits.check(sampling_rate, frames, channels, name)
    try:
        return to_mono(to_float_array(audio), name).astype(np.float32, copy=False)
    except AudioInputError:
        raise
    except ValueError as error:
        raise AudioInputError(str(error), name) from error


def read_segments(
    item: Any,
    index: int,
    limits: AudioLimits,
    sampling_rate: int | None = None,
    segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
    hop_seconds: float = DEFAULT_HOP_SECONDS,
) -> Iterator[Segment]:
    """
    The segments of one input, read lazily: the header (or array shape) is checked against `limits` first, then
    each segment is validated (zero samples, NaN/Inf) as it is read. The last one is marked `last`.
    """
    if segment_seconds <= 0 or hop_seconds <= 0:
        raise ValueError(f"segment_seconds and hop_seconds must be > 0, got {segment_seconds} and {hop_seconds}")
    if isinstance(item, (str, os.PathLike, bytes, bytearray)):
        pieces = iter_file_segments(item, segment_seconds, hop_seconds, limits)
    else:
        pieces = _array_segments(item, index, sampling_rate, segment_seconds, hop_seconds, limits)
    previous = None
    for number, (audio, rate, start, end) in enumerate(pieces):
        check_samples(audio)
        energy = float(np.mean(np.square(audio, dtype=np.float64)))
        if previous is not None:
            yield previous
        previous = Segment(index, number, audio, rate, start / rate, end / rate, energy, limits)
    if previous is None:  # segment_bounds gives at least one range and zero samples fail check_samples
        raise AudioInputError("no audio was read", f"input {index}")
    previous.last = True
    yield previous


def _array_segments(
    item: Any,
    index: int,
    sampling_rate: int | None,
    segment_seconds: float,
    hop_seconds: float,
    limits: AudioLimits,
) -> Iterator[tuple[np.ndarray, int, int, int]]:
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
    audio = _mono_array(item, index, sampling_rate, limits)
    segment, hop = max(1, round(segment_seconds * sampling_rate)), max(1, round(hop_seconds * sampling_rate))
    for start, end in segment_bounds(audio.shape[0], segment, hop):
        yield audio[start:end], sampling_rate, start, end


def input_events(
    item: Any, index: int, limits: AudioLimits, options: dict[str, Any], feature_extractor: Any = None
) -> Iterator[Segment | _InputFailure]:
    """
    One input's segments, or an `_InputFailure` after those read before it failed. With a `feature_extractor`
    (in a DataLoader worker) each segment also gets its log-mel, and its samples are dropped (the mel is what the
    model needs, and smaller to send back).
    """
    try:
        for segment in read_segments(item, index, limits, **options):
            if feature_extractor is not None:
                segment.features = _log_mel(feature_extractor, segment)
                segment.audio = RELEASED
            yield segment
    except AudioInputError as error:
        yield _InputFailure(index, error)


def _log_mel(feature_extractor: Any, segment: Segment) -> np.ndarray:
    """(n_mels, frames) log-mel of one segment, resampled to 16 kHz: what the processor computes per clip."""
    try:
        features = feature_extractor(
            segment.audio, sampling_rate=segment.sampling_rate, return_tensors="np", **asdict(segment.limits)
        )
    except AudioInputError:
        raise
    except ValueError as error:
        raise AudioInputError(f"cannot compute the log-mel: {error}", f"input {segment.index}") from error
    return features["input_features"][0]


class _WorkerReader(torch.utils.data.IterableDataset):
    """
    The inputs, read in DataLoader workers: worker w of n takes inputs w, w + n, ... and yields their events
    (`input_events` with log-mels). The DataLoader takes one event from each worker in turn, so one-segment inputs
    arrive in input order.
    """

    def __init__(
        self, items: Sequence[Any], limits: AudioLimits, options: dict[str, Any], feature_extractor: Any
    ) -> None:
        self.items, self.limits, self.options, self.feature_extractor = items, limits, options, feature_extractor

    def __iter__(self) -> Iterator[Segment | _InputFailure]:
        worker = torch.utils.data.get_worker_info()
        first, step = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        for index in range(first, len(self.items), step):
            yield from input_events(self.items[index], index, self.limits, self.options, self.feature_extractor)


def _as_is(event: Any) -> Any:
    """The DataLoader's collate function: events are passed on unchanged (module level: workers may pickle it)."""
    return event


def _free_accelerator_memory(device: torch.device) -> None:
    """After an out-of-memory error: give the allocator's cached blocks back before the retry."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type != "cpu" and hasattr(torch, "accelerator"):  # torch >= 2.6: mps, xpu, ...
        torch.accelerator.empty_cache()


# -- the pipeline ----------------------------------------------------------------------------------------------------


class AudioCaptioningPipeline(Pipeline):
    r"""
    Captions audio with a LAAC model (`LaacForConditionalGeneration` + `LaacProcessor`).

    Inputs (one, or a list of them): a file path (anything soundfile decodes: wav, flac, ogg, mp3, ...), the
    file's bytes, a numpy array or torch tensor with `sampling_rate=`, or a dict `{"raw" or "array": samples,
    "sampling_rate": rate}` (the `datasets` audio format). Any rate (resampled to 16 kHz), any channel count
    (averaged), integer or float samples.

    Call arguments:
        batch_size (`int`): segments per `generate()` call. Segments are sorted by length within a buffer of
            `batch_size * 8` so padding stays small; captions are those of batch size 1. A batch that runs out of
            device memory is retried in halves, and the call keeps the smaller size (`self.batch_sizes`).
        num_workers (`int`): DataLoader worker processes that read, decode, resample and log-mel a list of inputs
            while the model runs (default: the pipeline's `num_workers`, else 0: all in this process).
        sampling_rate (`int`): rate of array inputs.
        segment_seconds, hop_seconds (`float`, default 30 / 30): audio longer than `segment_seconds` is captioned
            per segment; segments start every `hop_seconds` and the last is shifted to end with the audio.
        max_duration_seconds, max_channels, min_sampling_rate, max_sampling_rate: input limits (defaults from the
            feature extractor: 12 h, 32 channels, 1 kHz..768 kHz). A file is checked from its header before it is
            decoded; an input over a limit raises `AudioInputError` (or gets an error record) naming the setting.
        correct (`bool`, `str`, `dict`, callable or `PostCorrection`): post-correct the captions, parsed once
            (`PostCorrection.parse`): `True` uses `model.config.post_corrector`; a gate mode ("auto", "always", "never")
            or a dict overrides those settings; a callable `captions -> records` (e.g. a `PostCorrector`) is used as
            is. The pipeline builds one `CaptionPostProcessor` for it (reused while `correct` stays the same) and
            hands it to `generate(post_processor=...)`. A corrector that cannot run raises `PostCorrectionError`,
            also with `on_error="record"` (it is no fault of the input).
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

    # -- transformers Pipeline protocol --------------------------------------------------------------------------

    def _sanitize_parameters(self, **kwargs: Any) -> tuple[dict, dict, dict]:
        known = {*self._PIPELINE_PARAMS, *GenerationConfig().to_dict()}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(
                f"unknown audio-captioning arguments {unknown}; use {list(self._PIPELINE_PARAMS)}, batch_size, or "
                "GenerationConfig fields such as num_beams"
            )
        preprocess = {k: kwargs[k] for k in self._PREPROCESS_PARAMS if k in kwargs}
        generate = dict(kwargs.get("generate_kwargs") or {})
        generate.update({k: v for k, v in kwargs.items() if k not in self._PIPELINE_PARAMS})
        if kwargs.get("fast_decoding"):
            generate.update(custom_generate=fast_decoding_source(kwargs["fast_decoding"]), trust_remote_code=True)
        forward = {"generate_kwargs": generate}
        if "correct" in kwargs:
            forward["correct"] = PostCorrection.parse(kwargs["correct"], self.model.config.post_corrector)
        return preprocess, forward, {}

    def preprocess(self, segments: list[Segment]) -> dict[str, torch.Tensor]:
        """
        A batch of segments -> model inputs: the processor resamples to 16 kHz and pads, within their limits; the
        log-mels of segments read in DataLoader workers are only padded.
        """
        if segments[0].features is not None:
            features = self.processor.feature_extractor.pad_log_mels([segment.features for segment in segments])
            return dict(self.processor.from_features(features))
        limits = segments[0].limits
        rates = {segment.sampling_rate for segment in segments}
        if len(rates) > 1:  # the processor takes one rate per call: resample each clip apart
            rate = self.processor.feature_extractor.sampling_rate
            audio = [resample(segment.audio, segment.sampling_rate, rate) for segment in segments]
        else:
            rate, audio = rates.pop(), [segment.audio for segment in segments]
        inputs = self.processor(audio, sampling_rate=rate, **(asdict(limits) if limits else {}))
        return dict(inputs)

    def _limits(self, preprocess: dict[str, Any]) -> AudioLimits:
        """The call's limits (popped out of `preprocess`); defaults from the checkpoint's feature extractor."""
        return AudioLimits.from_kwargs(preprocess, getattr(self.processor.feature_extractor, "limits", None))

    def _forward(
        self,
        model_inputs: dict[str, torch.Tensor],
        generate_kwargs: dict | None = None,
        post_processor: CaptionPostProcessor | None = None,
    ) -> dict:
        model_inputs = dict(model_inputs)
        generate = self.model.generate  # stock generate, or the fast loop where generate_kwargs name it
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs or {})
        if post_processor is None:
            return {"sequences": generate(**model_inputs, **generate_kwargs), "input_ids": model_inputs["input_ids"]}
        # the generation hook: the same call as model.generate(..., post_processor=...) and Trainer evaluation
        output = generate(**model_inputs, **generate_kwargs, post_processor=post_processor)
        return {"records": output.records()}  # plain dicts: Pipeline.forward rebuilds ModelOutputs as base ones

    def _post_processor(self, request: PostCorrection | None) -> CaptionPostProcessor | None:
        """The generation hook for `request`, built once and kept while the request stays the same."""
        if request is None:
            return None
        cached = self.__dict__.get("_post_processor_for")
        if cached is None or cached[0] != request:
            device = None if self.model.device.type == "meta" else str(self.model.device)
            self.__dict__["_post_processor_for"] = (request, CaptionPostProcessor(self.processor, request, device))
        return self.__dict__["_post_processor_for"][1]

    def postprocess(self, model_outputs: dict, **kwargs: Any) -> list[dict]:
        """One record per segment: `{"caption"}`, plus `raw_caption`, `error_prob`, `corrected` with correction."""
        if "records" not in model_outputs:
            captions = self.processor.decode_captions(model_outputs["sequences"], model_outputs["input_ids"])
            return [{"caption": caption} for caption in captions]
        keep = ("caption", "raw_caption", "error_prob", "corrected")
        return [{key: record[key] for key in keep} for record in model_outputs["records"]]

    # -- calling -------------------------------------------------------------------------------------------------

    def __call__(
        self, inputs: Any, batch_size: int | None = None, num_workers: int | None = None, **kwargs: Any
    ) -> dict | list[dict]:
        """Caption one input (returns a dict) or a list/tuple of inputs (returns a list, in input order)."""
        single = not isinstance(inputs, (list, tuple))
        items = [inputs] if single else list(inputs)
        if items and isinstance(items[0], (int, float, np.number)):
            raise ValueError("a list of numbers is ambiguous; pass one clip as a numpy array with sampling_rate=")
        results: list[dict | None] = [None] * len(items)
        for index, record in self.iter_captions(items, batch_size=batch_size, num_workers=num_workers, **kwargs):
            results[index] = record
        return results[0] if single else results

    def iter_captions(
        self,
        inputs: Iterable[Any],
        batch_size: int | None = None,
        on_error: str = "raise",
        num_workers: int | None = None,
        **kwargs: Any,
    ) -> Iterator[tuple[int, dict]]:
        """
        Stream `(input index, record)` as soon as each input is captioned (not in input order: batches are sorted
        by length). Inputs are read lazily, so `inputs` may be a generator over many files. With
        `on_error="record"` an input that cannot be captioned gives `{"error": reason}` and the rest go on.
        `num_workers` > 0 (default: the pipeline's `num_workers`, else 0) reads, decodes, resamples and log-mels a
        list of inputs in that many DataLoader worker processes while this one runs the model. An out-of-memory
        error halves the batch and the following ones; `self.batch_sizes` holds the size the call settled on.
        """
        if on_error not in ("raise", "record"):
            raise ValueError(f"on_error must be 'raise' or 'record', got {on_error!r}")
        preprocess, forward, _ = self._sanitize_parameters(**kwargs)
        preprocess = {**self._preprocess_params, **preprocess}
        forward = {
            "generate_kwargs": {**self._forward_params.get("generate_kwargs", {}), **forward["generate_kwargs"]},
            "post_processor": self._post_processor(forward.get("correct", self._forward_params.get("correct"))),
        }
        limits = self._limits(preprocess)
        batch_size = batch_size or self._batch_size or 1
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_sizes = sizes = BatchSizes(batch_size)
        states: dict[int, _InputState] = {}
        pool: list[Segment] = []
        for event in self._input_events(inputs, limits, preprocess, num_workers):
            state = states.setdefault(event.index, _InputState())
            if isinstance(event, _InputFailure):
                if on_error == "raise":
                    raise AudioInputError(f"input {event.index}: {event.error}", event.error.path) from event.error
                state.error, state.enumerated = str(event.error), True
                pool = [segment for segment in pool if segment.index != event.index]
            else:
                state.segments.append(event)
                state.enumerated = event.last
                pool.append(event)
                if len(pool) >= batch_size * BUCKET_BATCHES:
                    yield from self._run_pool(pool, states, sizes, forward, on_error)
                    pool = []
            yield from self._pop_finished(states)
        yield from self._run_pool(pool, states, sizes, forward, on_error)
        if sizes.current < sizes.requested:
            logger.warning(f"settled on batch size {sizes.current} (asked {sizes.requested}): out of memory above it")
        yield from self._pop_finished(states)

    def _input_events(
        self, inputs: Iterable[Any], limits: AudioLimits, options: dict[str, Any], num_workers: int | None
    ) -> Iterator[Segment | _InputFailure]:
        """Every input's segments (or its failure), read here or in `num_workers` DataLoader workers."""
        num_workers = (self._num_workers or 0) if num_workers is None else num_workers
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if num_workers == 0:
            return (event for index, item in enumerate(inputs) for event in input_events(item, index, limits, options))
        if not isinstance(inputs, Sequence) or isinstance(inputs, (str, bytes)):
            raise TypeError(
                f"num_workers={num_workers} needs a list of inputs (worker w reads every n-th one), got a "
                f"{type(inputs).__name__}; pass list(inputs), or num_workers=0 to read a generator lazily"
            )
        reader = _WorkerReader(inputs, limits, options, self.processor.feature_extractor)
        workers = min(num_workers, len(inputs))
        return iter(torch.utils.data.DataLoader(reader, batch_size=None, num_workers=workers, collate_fn=_as_is))

    # -- internals -----------------------------------------------------------------------------------------------

    def _run_pool(
        self,
        pool: list[Segment],
        states: dict[int, _InputState],
        sizes: BatchSizes,
        forward: dict,
        on_error: str,
    ) -> Iterator[tuple[int, dict]]:
        """
        Caption the buffered segments, shortest first, `sizes.current` at a time, yielding the records of the
        inputs each batch finishes (a run killed later keeps them). A batch that runs out of memory is retried from
        its first segment at half its size, which the following batches keep. Then the segments' samples are
        dropped: an input's state keeps its segments (times, energy) until all are captioned, and a recording of
        hours has hundreds.
        """
        ordered = sorted(pool, key=lambda segment: segment.end - segment.start)
        position = 0
        while position < len(ordered):
            size = sizes.current
            batch = [segment for segment in ordered[position : position + size] if states[segment.index].error is None]
            if batch and not self._caption_batch(batch, states, forward, on_error):
                sizes.shrink(len(batch))
                continue
            position += size
            yield from self._pop_finished(states)
        for segment in pool:
            segment.audio, segment.features = RELEASED, None

    def _caption_batch(
        self, batch: list[Segment], states: dict[int, _InputState], forward: dict, on_error: str
    ) -> bool:
        """
        Caption one batch into `states`; False if it ran out of memory (a batch of more than one segment: the
        caller retries it smaller). A segment that fails alone gets its input's error (or raises).
        """
        out_of_memory = None
        try:
            records = self.postprocess(self.forward(self.preprocess(batch), **forward))
        except PostCorrectionError:
            raise  # the corrector's settings or models: every input would fail alike
        except torch.OutOfMemoryError as error:  # (torch.cuda.OutOfMemoryError is the same class)
            if len(batch) == 1 and on_error == "raise":
                raise
            out_of_memory = " ".join(str(error).split())  # handled below, once the traceback's tensors are freed
        except (ValueError, RuntimeError) as error:
            if on_error == "raise":
                raise
            if len(batch) > 1:  # find the segment at fault; the others are captioned alone
                for segment in batch:
                    self._caption_batch([segment], states, forward, on_error)
                return True
            states[batch[0].index].error = f"captioning failed: {' '.join(str(error).split())}"
            return True
        if out_of_memory is not None:
            _free_accelerator_memory(self.device)
            if len(batch) > 1:
                return False
            states[batch[0].index].error = f"out of memory with this segment alone: {out_of_memory}"
            return True
        for segment, record in zip(batch, records):
            states[segment.index].captions[segment.number] = record
        return True

    def _pop_finished(self, states: dict[int, _InputState]) -> Iterator[tuple[int, dict]]:
        finished = sorted(index for index, state in states.items() if state.finished)
        yield from ((index, self._record(states.pop(index))) for index in finished)

    @staticmethod
    def _record(state: _InputState) -> dict:
        """
        The input's record: its one segment's, or the overall caption (chosen on the raw captions, with that
        segment's correction fields) and every segment's record with its times.
        """
        if state.error is not None:
            return {"error": state.error}
        if len(state.segments) == 1:
            return dict(state.captions[0])
        segments = [
            {"start": round(s.start, 3), "end": round(s.end, 3), **state.captions[s.number]} for s in state.segments
        ]
        raw = [segment.get("raw_caption", segment["caption"]) for segment in segments]
        best = segments[overall_index(raw, [s.energy for s in state.segments])]
        return {**{k: v for k, v in best.items() if k not in ("start", "end")}, "segments": segments}


def overall_index(captions: list[str], energies: list[float]) -> int:
    """Index of the caption given to the most segments; ties go to the segment with the highest mean energy."""
    counts = Counter(captions)
    return max(range(len(captions)), key=lambda i: (counts[captions[i]], energies[i]))


def overall_caption(segments: list[dict], energies: list[float]) -> str:
    """The caption given to the most segments; ties go to the segment with the highest mean energy."""
    return segments[overall_index([segment["caption"] for segment in segments], energies)]["caption"]


# The entry of `configuration_laac.CUSTOM_PIPELINES` (what config.json names), registered for this process; the
# first copy registered wins.
if TASK not in PIPELINE_REGISTRY.get_supported_tasks():
    PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=AudioCaptioningPipeline, pt_model=AutoModel, type="multimodal")

__all__ = [
    "AudioCaptioningPipeline",
    "AudioInputError",
    "BatchSizes",
    "PostCorrectionError",
    "iter_file_segments",
    "overall_caption",
    "overall_index",
    "read_segments",
    "segment_bounds",
]
