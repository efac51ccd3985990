# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
The one audio reader of LAAC: decode files and bytes (soundfile), check them against limits read from the header
before anything large is allocated, validate samples (empty, NaN/Inf), downmix, and resample (soxr, as
`transformers.audio_utils` does). The pipeline, the feature extractor, the data loaders, the report, the CLI and
the synthetic corpus all read audio through it, and every failure is one `AudioInputError` (a `ValueError`) that
carries the path and the reason.

Limits (`AudioLimits`, all configurable where audio comes in: pipeline and processor keyword arguments of the same
names, `laac caption --max-duration-seconds ...`): a sampling rate of 1 kHz..768 kHz (anything else is not audio;
a header claiming 1 Hz makes a 400 KB file "55 hours" long), at most 12 hours and 32 channels per input. A file
is refused from its header alone, so a hostile file costs a header read, not a decode.

This file travels with checkpoints (the pipeline and the feature extractor import it relatively); soundfile and
soxr are imported lazily so that loading a checkpoint does not require them until audio must be decoded or
resampled.
"""

import io
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

# The file types soundfile (libsndfile 1.1+) decodes; folders are searched for these.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".rf64", ".caf")
MIN_SAMPLING_RATE = 1_000  # Hz; below this a "rate" is not audio (and resampling it to 16 kHz multiplies memory)
MAX_SAMPLING_RATE = 768_000  # Hz; the highest rate audio interfaces record
MAX_DURATION_SECONDS = 12 * 3600.0
MAX_CHANNELS = 32
# Float audio is nominally in [-1, 1]; unnormalised PCM values (up to 2**31) are still audio. Beyond 1e6 a sample is
# not audio, and its STFT power would overflow float32 (infinite, then NaN, log-mel).
MAX_SAMPLE_MAGNITUDE = 1e6
# Samples (frames x channels) decoded at once when a segment is read in blocks: 4 MiB of float32.
READ_BLOCK_SAMPLES = 2**20
_WAV_DATA_SIZE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_WAV_HEAD_BYTES = 4096  # where a WAV file's fmt chunk is looked for when libsndfile refuses its header
# libsndfile's words for a file whose data stops early or is damaged, and for bytes in no format it knows.
_DAMAGED_WORDS = ("psf_fseek", "lost sync", "malformed", "unexpected end", "premature end", "truncated")
_UNKNOWN_WORDS = ("format not recognised", "unknown format")

AudioSource = str | os.PathLike | bytes | bytearray


class AudioInputError(ValueError):
    """
    Audio that cannot be used: missing, unreadable, truncated, empty, NaN/Inf, or over a limit. `path` names the
    input (a file path, "audio bytes", "clip 3"; None if unknown), `reason` says what is wrong and how to fix it.
    """

    def __init__(self, reason: str, path: Any = None) -> None:
        self.reason = reason
        self.path = None if path is None else str(path)
        named = self.path is None or self.path in reason
        super().__init__(reason if named else f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[Any, tuple[str, str | None]]:  # picklable across DataLoader workers
        return type(self), (self.reason, self.path)


@dataclass(frozen=True)
class AudioLimits:
    """What one input may claim before it is decoded. The field names are the settings that raise each limit."""

    min_sampling_rate: float = MIN_SAMPLING_RATE
    max_sampling_rate: float = MAX_SAMPLING_RATE
    max_duration_seconds: float = MAX_DURATION_SECONDS
    max_channels: int = MAX_CHANNELS

    FIELDS = ("min_sampling_rate", "max_sampling_rate", "max_duration_seconds", "max_channels")

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any], defaults: "AudioLimits | None" = None) -> "AudioLimits":
        """Pops the limit settings out of `kwargs` (None values keep the default) and returns the limits."""
        base = defaults or cls()
        values = {name: kwargs.pop(name, None) for name in cls.FIELDS}
        return cls(**{name: getattr(base, name) if value is None else value for name, value in values.items()})

    def __post_init__(self) -> None:
        for name in self.FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.min_sampling_rate > self.max_sampling_rate:
            raise ValueError(
                f"min_sampling_rate ({self.min_sampling_rate}) is above max_sampling_rate ({self.max_sampling_rate})"
            )

    def check(self, sampling_rate: Any, frames: int, channels: int, path: Any = None) -> None:
        """Refuse an input from its claimed rate, length and channels, before any of it is decoded or resampled."""
        check_sampling_rate(sampling_rate, self, path)
        if channels > self.max_channels:
            raise AudioInputError(
                f"{channels} channels is over the limit of {self.max_channels}; raise max_channels "
                "(laac caption --max-channels) to read it",
                path,
            )
        seconds = frames / sampling_rate
        if seconds > self.max_duration_seconds:
            raise AudioInputError(
                f"{frames} frames at {sampling_rate} Hz is {_duration(seconds)}, over the limit of "
                f"{_duration(self.max_duration_seconds)}; raise max_duration_seconds (now "
                f"{self.max_duration_seconds:g}; laac caption --max-duration-seconds) to read it, or cut the recording",
                path,
            )


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds:.1f} s"


def check_sampling_rate(sampling_rate: Any, limits: AudioLimits | None = None, path: Any = None) -> None:
    """A sampling rate is a finite number of Hz inside the limits; anything else is refused as not audio."""
    limits = limits or AudioLimits()
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, float, np.number)):
        raise AudioInputError(f"sampling_rate must be a number of Hz, got {sampling_rate!r}", path)
    if not limits.min_sampling_rate <= sampling_rate <= limits.max_sampling_rate:
        raise AudioInputError(
            f"a sampling rate of {sampling_rate} Hz is not audio: the allowed range is {limits.min_sampling_rate:g}.."
            f"{limits.max_sampling_rate:g} Hz (settings min_sampling_rate / max_sampling_rate, laac caption "
            "--min-sampling-rate / --max-sampling-rate); pass the true rate",
            path,
        )


# -- samples ---------------------------------------------------------------------------------------------------------


def to_float_array(audio: Any) -> np.ndarray:
    """numpy copy of one clip (array, tensor or list); integer PCM scaled to [-1, 1], other floats to float32."""
    if type(audio).__module__.startswith("torch"):  # a tensor, without importing torch here
        audio = audio.detach().cpu()
        audio = audio.float() if str(audio.dtype) in ("torch.float16", "torch.bfloat16") else audio
        audio = audio.numpy()
    try:
        audio = np.asarray(audio)
    except (ValueError, TypeError) as error:  # ragged nested lists
        raise ValueError(f"audio must be a numeric array, list or tensor: {error}") from error
    if audio.dtype == np.bool_ or not np.issubdtype(audio.dtype, np.number) or np.iscomplexobj(audio):
        raise ValueError(f"audio must be real numeric samples, got dtype {audio.dtype}; pass float or integer PCM")
    if np.issubdtype(audio.dtype, np.signedinteger):
        return audio.astype(np.float64) / -np.iinfo(audio.dtype).min  # int16: / 32768
    if np.issubdtype(audio.dtype, np.unsignedinteger):
        half = (int(np.iinfo(audio.dtype).max) + 1) / 2  # uint8: centred on 128
        return (audio.astype(np.float64) - half) / half
    return audio.astype(np.float64 if audio.dtype == np.float64 else np.float32)


def frames_and_channels(shape: tuple[int, ...], name: Any = None) -> tuple[int, int]:
    """
    (frames, channels) of a clip's shape. A 2-D clip may be [channels, samples] or [samples, channels]: the shorter
    axis is taken as the channel axis (a clip has more samples than channels; a square array counts as
    [channels, samples]).
    """
    if len(shape) == 1:
        return shape[0], 1
    if len(shape) != 2:
        raise AudioInputError(
            f"{_subject(name)} has shape {tuple(shape)}; expected 1-D mono or 2-D multi-channel audio. Pass a batch "
            "as a list of clips, not as one >2-D array",
            name,
        )
    return max(shape), min(shape)


def to_mono(audio: np.ndarray, name: Any = None) -> np.ndarray:
    """Downmix by the mean over the channel axis (see `frames_and_channels`)."""
    if audio.ndim == 1:
        return audio
    frames_and_channels(audio.shape, name)
    if audio.size == 0:
        return audio.reshape(0)
    return audio.mean(axis=0 if audio.shape[0] <= audio.shape[1] else 1)


def check_samples(audio: np.ndarray, name: Any = None) -> None:
    """The one empty / NaN-Inf / magnitude check."""
    if audio.size == 0:
        raise AudioInputError(f"{_subject(name)} is empty (zero samples); drop it or pass at least one sample", name)
    bad = int(audio.size - np.count_nonzero(np.isfinite(audio)))
    if bad:
        raise AudioInputError(f"{_subject(name)} has {bad} NaN/Inf samples; clean or drop the audio", name)
    peak = float(np.abs(audio).max())
    if peak > MAX_SAMPLE_MAGNITUDE:
        raise AudioInputError(
            f"{_subject(name)} has samples of magnitude {peak:.3g}, over {MAX_SAMPLE_MAGNITUDE:g}: not audio. Float "
            "audio is expected in [-1, 1] (integer PCM is scaled automatically); normalise it",
            name,
        )


def _subject(name: Any) -> str:
    return "the audio" if name is None else str(name)


def check_clip(audio: Any, sampling_rate: Any, limits: AudioLimits | None = None, name: Any = None) -> np.ndarray:
    """
    The one check of an in-memory clip (array, tensor or list), where it comes in: its rate, length and channels
    against `limits` from its shape, before anything is converted; then its samples as mono float (integer PCM
    scaled, channels averaged; float64 stays float64, other floats become float32), checked by `check_samples`.
    """
    if not hasattr(audio, "shape"):
        audio = _as_float_array(audio, name)  # a list: numpy first, for its shape
    frames, channels = frames_and_channels(tuple(audio.shape), name)
    (limits or AudioLimits()).check(sampling_rate, frames, channels, name)
    mono = to_mono(_as_float_array(audio, name), name)
    check_samples(mono, name)
    return mono


def _as_float_array(audio: Any, name: Any) -> np.ndarray:
    try:
        return to_float_array(audio)
    except ValueError as error:
        raise AudioInputError(str(error), name) from error


def resample(audio: np.ndarray, orig_rate: float, target_rate: float) -> np.ndarray:
    """(frames,) or (frames, channels) float audio from `orig_rate` to `target_rate` with soxr (its HQ setting)."""
    if orig_rate == target_rate:
        return audio
    try:  # optional for remote-code users who feed 16 kHz audio; the try keeps transformers' import check quiet
        import soxr
    except ImportError as error:
        raise ImportError(
            f"resampling {orig_rate} Hz audio needs soxr; pip install soxr or pass {target_rate} Hz audio"
        ) from error
    dtype = audio.dtype if audio.dtype in (np.float32, np.float64) else np.float32
    return soxr.resample(np.ascontiguousarray(audio, dtype=dtype), orig_rate, target_rate)


# -- files -----------------------------------------------------------------------------------------------------------


def _soundfile() -> Any:
    try:  # only needed for paths and bytes; the try keeps transformers' remote-code import check quiet
        import soundfile
    except ImportError as error:
        raise ImportError("reading audio files or bytes needs soundfile: pip install soundfile") from error
    return soundfile


def source_name(source: Any) -> str:
    """How an error names a source: its path, or "audio bytes"."""
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else "audio bytes"


def _open_error(source: Any, error: Exception) -> AudioInputError:
    name = source_name(source)
    if isinstance(error, FileNotFoundError):
        return AudioInputError("no such file", name)
    if isinstance(error, PermissionError):
        return AudioInputError("permission denied", name)
    if isinstance(error, IsADirectoryError) or (isinstance(source, (str, os.PathLike)) and os.path.isdir(source)):
        return AudioInputError("is a directory, not an audio file", name)
    reason = re.sub(r"^Error opening .*?: ", "", " ".join(str(error).split()))  # libsndfile repeats the handle
    lowered = reason.lower()
    claim = _wav_header_problem(source)  # libsndfile refuses such a header without naming the field
    if claim is not None:
        return AudioInputError(f"cannot decode: {claim}", name)
    if any(words in lowered for words in _DAMAGED_WORDS):
        return AudioInputError(
            f"cannot decode: the file is truncated or damaged (libsndfile: {reason}); download or export it again", name
        )
    if any(words in lowered for words in _UNKNOWN_WORDS):
        return AudioInputError(
            f"cannot decode: not audio in a format soundfile reads (libsndfile: {reason}); convert it to WAV or FLAC, "
            "e.g. `ffmpeg -i FILE out.wav`",
            name,
        )
    return AudioInputError(f"cannot decode: {reason}", name)


def _wav_header_problem(source: Any) -> str | None:
    """
    What a RIFF/WAVE header claims that no audio can have (0 Hz, 0 channels, 0 bits per sample), read from the
    file's first bytes after libsndfile refused it; None for other files and headers.
    """
    try:
        if isinstance(source, (bytes, bytearray)):
            head = bytes(source[:_WAV_HEAD_BYTES])
        else:
            with open(source, "rb") as handle:
                head = handle.read(_WAV_HEAD_BYTES)
    except OSError:
        return None
    if head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        return None
    position = 12
    while position + 8 <= len(head):
        chunk, size = head[position : position + 4], int.from_bytes(head[position + 4 : position + 8], "little")
        if chunk == b"fmt " and position + 24 <= len(head):
            channels = int.from_bytes(head[position + 10 : position + 12], "little")
            rate = int.from_bytes(head[position + 12 : position + 16], "little")
            bits = int.from_bytes(head[position + 22 : position + 24], "little")
            claims = {"a sampling rate of 0 Hz": rate, "0 channels": channels, "0 bits per sample": bits}
            wrong = [claim for claim, value in claims.items() if value == 0]
            if not wrong:
                return None
            return (
                f"the WAV header claims {' and '.join(wrong)}, which no audio has: export the file again from its "
                "source, or read its samples yourself and pass the array with its true sampling_rate="
            )
        position += 8 + size + (size & 1)  # chunks are padded to an even length
    return None


def _check_wav_complete(audio_file: Any, name: str) -> None:
    """libsndfile reads a truncated WAV silently; its header report says how much data is missing."""
    if not audio_file.format.startswith("WAV"):
        return
    match = _WAV_DATA_SIZE.search(audio_file.extra_info)
    if match and int(match.group(2)) < int(match.group(1)):
        raise AudioInputError(
            f"truncated file: the header promises {match.group(1)} data bytes, the file holds {match.group(2)}", name
        )


def _no_audio_reason(format_name: str) -> str:
    if format_name.startswith("WAV"):
        return "holds no audio (zero samples): an empty recording; drop it"
    return (
        f"holds no audio (zero samples): its {format_name} header is there but no audio follows it, as in a cut "
        "download or an empty recording; download or export it again"
    )


class AudioFile:
    """
    An opened audio file or byte string whose header passed `limits`: `sampling_rate`, `frames`, `channels` are
    known, nothing is decoded yet. Use as a context manager; `read` decodes a range of frames.
    """

    def __init__(self, source: AudioSource, limits: AudioLimits | None = None) -> None:
        soundfile = _soundfile()
        self.name = source_name(source)
        handle = None
        try:  # Python's open() names the OS error (missing, permission, directory); libsndfile only says "System error"
            is_bytes = isinstance(source, (bytes, bytearray))
            handle = io.BytesIO(bytes(source)) if is_bytes else open(source, "rb")  # noqa: SIM115
            self._file = soundfile.SoundFile(handle)
        except (OSError, RuntimeError, TypeError, ValueError) as error:  # LibsndfileError is a RuntimeError
            if handle is not None:
                handle.close()
            raise _open_error(source, error) from error
        self._handle = handle
        try:
            self.sampling_rate, self.frames = self._file.samplerate, self._file.frames
            self.channels = self._file.channels
            _check_wav_complete(self._file, self.name)
            if self.frames == 0:
                raise AudioInputError(_no_audio_reason(self._file.format), self.name)
            (limits or AudioLimits()).check(self.sampling_rate, self.frames, self.channels, self.name)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "AudioFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()
        self._handle.close()

    def read(self, start: int, frames: int, mono: bool = False) -> np.ndarray:
        """
        float32 samples [start, start + frames): (frames, channels), or (frames,) averaged over channels when
        `mono` (decoded in blocks, so a many-channel file needs one block of all channels at a time).
        """
        out = np.empty((frames,) if mono else (frames, self.channels), dtype=np.float32)
        block = max(1, READ_BLOCK_SAMPLES // self.channels) if mono else frames
        done = 0
        try:
            self._file.seek(start)
            while done < frames:
                data = self._file.read(min(block, frames - done), dtype="float32", always_2d=True)
                if data.shape[0] == 0:
                    break
                out[done : done + data.shape[0]] = data.mean(axis=1) if mono else data
                done += data.shape[0]
        except (OSError, RuntimeError, ValueError) as error:
            raise _open_error(self.name, error) from error
        if done < frames:
            raise AudioInputError(
                f"truncated or corrupt file: the header promises {self.frames} frames, only {start + done} could be "
                "read",
                self.name,
            )
        return out


def read_audio(
    source: AudioSource,
    limits: AudioLimits | None = None,
    start: int = 0,
    frames: int | None = None,
    mono: bool = False,
) -> tuple[np.ndarray, int]:
    """
    Checked float32 samples and the rate of a file or bytes: (frames, channels), or (frames,) when `mono`; from
    frame `start`, `frames` of them (None: to the end). Raises `AudioInputError` for any failure.
    """
    with AudioFile(source, limits) as audio_file:
        count = audio_file.frames - start if frames is None else min(frames, audio_file.frames - start)
        samples = audio_file.read(start, max(count, 0), mono=mono)
    check_samples(samples, audio_file.name)
    return samples, audio_file.sampling_rate


def segment_bounds(num_samples: int, segment_samples: int, hop_samples: int) -> list[tuple[int, int]]:
    """
    (start, end) sample ranges covering `num_samples`. Audio no longer than a segment is one range. Otherwise
    segments start every `hop_samples`, and the last one is shifted back to end at the end of the audio, so every
    segment has the full length (it overlaps its neighbour instead of being a short, poorly captioned tail).
    """
    if num_samples <= segment_samples:
        return [(0, num_samples)]
    starts = list(range(0, num_samples - segment_samples, hop_samples))
    if num_samples - segment_samples > starts[-1]:
        starts.append(num_samples - segment_samples)
    return [(start, start + segment_samples) for start in starts]


class AudioSegment(NamedTuple):
    """One span of a recording: mono float samples at the recording's rate, and where they lie in it."""

    samples: np.ndarray  # (end - start,)
    sampling_rate: int
    start: int  # first sample
    end: int  # one past the last sample
    is_last: bool  # the recording's last segment


def iter_segments(
    source: AudioSource | np.ndarray,
    segment_seconds: float,
    hop_seconds: float,
    limits: AudioLimits | None = None,
    sampling_rate: int | None = None,
) -> Iterator[AudioSegment]:
    """
    The segments of one recording (`segment_bounds`), read lazily. A file or its bytes is opened with its header
    checked against `limits`, then each segment is decoded (mono float32) and its samples checked as it is reached,
    so a recording of any length needs memory for one segment (plus one read block). A mono array at
    `sampling_rate` (already checked where it came in: `check_clip`) is sliced.
    """
    if segment_seconds <= 0 or hop_seconds <= 0:
        raise ValueError(f"segment_seconds and hop_seconds must be > 0, got {segment_seconds} and {hop_seconds}")
    if isinstance(source, np.ndarray):
        yield from _segments(source.shape[0], sampling_rate, segment_seconds, hop_seconds, lambda a, b: source[a:b])
        return
    with AudioFile(source, limits) as audio_file:

        def read(start: int, end: int) -> np.ndarray:
            samples = audio_file.read(start, end - start, mono=True)
            check_samples(samples, audio_file.name)
            return samples

        yield from _segments(audio_file.frames, audio_file.sampling_rate, segment_seconds, hop_seconds, read)


def _segments(
    frames: int, rate: int, segment_seconds: float, hop_seconds: float, read: Callable[[int, int], np.ndarray]
) -> Iterator[AudioSegment]:
    segment, hop = max(1, round(segment_seconds * rate)), max(1, round(hop_seconds * rate))
    bounds = segment_bounds(frames, segment, hop)
    for number, (start, end) in enumerate(bounds):
        yield AudioSegment(read(start, end), rate, start, end, number == len(bounds) - 1)


__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioFile",
    "AudioInputError",
    "AudioLimits",
    "AudioSegment",
    "check_clip",
    "check_samples",
    "check_sampling_rate",
    "iter_segments",
    "read_audio",
    "resample",
    "segment_bounds",
    "to_float_array",
    "to_mono",
]
