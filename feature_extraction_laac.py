# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""Log-mel front end of LAAC: the CED / Dasheng mel spectrogram, computed with torch.stft (no torchaudio).

Per clip: 16 kHz mono -> centred STFT (reflect padding, periodic Hann) -> power -> 64 HTK mel bands 0-8000 Hz
(unnormalised triangles) -> dB by `transformers.audio_utils.power_to_db`: 10 * log10(max(mel, 1e-10)), clamped at
(the clip's own max - 120 dB).
A clip of N samples gives 1 + N // 160 frames.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.audio_utils import mel_filter_bank, power_to_db
from transformers.utils import TensorType, logging

from .audio_laac import (
    MAX_CHANNELS,
    MAX_DURATION_SECONDS,
    MAX_SAMPLING_RATE,
    MIN_SAMPLING_RATE,
    AudioLimits,
    check_clip,
    resample,
)

logger = logging.get_logger(__name__)

SAMPLING_RATE = 16000
N_FFT = 512
WIN_LENGTH = 512
HOP_LENGTH = 160  # 10 ms frames
N_MELS = 64
F_MIN = 0.0
F_MAX = 8000.0
TOP_DB = 120.0
AMIN = 1e-10  # power floor before the log
# Shortest mel the extractor emits: 80 frames = 5 CED time patches x 4 frequency patches = 20 tokens, enough for
# one 17-token Q-Former window. Shorter clips are padded with silence in the waveform.
MIN_NUM_FRAMES = 80
# Longer clips have their STFT computed this many frames (60 s) at a time: the complex STFT of a 12-hour clip would
# take 8.9 GB at once.
MEL_CHUNK_FRAMES = 6000

AudioInput = np.ndarray | torch.Tensor | Sequence[float]


def mel_num_frames(num_samples: int, hop_length: int = HOP_LENGTH) -> int:
    """Frames of a centred STFT: 1 + num_samples // hop_length."""
    return 1 + num_samples // hop_length


class LaacFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Turns raw audio into the log-mel input of the CED / Dasheng encoders.

    Args:
        feature_size (`int`, defaults to 64): mel bands.
        sampling_rate (`int`, defaults to 16000): rate the mel is computed at; other rates are resampled to it.
        n_fft, win_length, hop_length (`int`, default 512 / 512 / 160): STFT size, periodic-Hann window, hop.
        f_min, f_max (`float`, default 0 / 8000): mel filterbank range (HTK scale, no normalisation).
        top_db (`float`, defaults to 120): dynamic range kept below each clip's maximum.
        padding_value (`float`, defaults to 0.0): value of the mel frames added to pad a batch.
        min_num_frames (`int`, defaults to 80): clips shorter than this many frames are padded with silence (in
            the waveform) up to it, so that even a 10 ms clip fills one Q-Former window. 0 disables it.
        min_sampling_rate, max_sampling_rate (`float`, default 1000 / 768000): input rates outside this range are
            refused as not audio, before any resampling (`audio_laac.AudioLimits`).
        max_duration_seconds (`float`, defaults to 43200 = 12 h), max_channels (`int`, defaults to 32): longer or
            wider clips are refused. Each limit can also be passed per call.
    """

    model_input_names = ["input_features", "feature_attention_mask"]

    def __init__(
        self,
        feature_size: int = N_MELS,
        sampling_rate: int = SAMPLING_RATE,
        n_fft: int = N_FFT,
        win_length: int = WIN_LENGTH,
        hop_length: int = HOP_LENGTH,
        f_min: float = F_MIN,
        f_max: float = F_MAX,
        top_db: float = TOP_DB,
        padding_value: float = 0.0,
        min_num_frames: int = MIN_NUM_FRAMES,
        min_sampling_rate: float = MIN_SAMPLING_RATE,
        max_sampling_rate: float = MAX_SAMPLING_RATE,
        max_duration_seconds: float = MAX_DURATION_SECONDS,
        max_channels: int = MAX_CHANNELS,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            **kwargs,
        )
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.f_min = f_min
        self.f_max = f_max
        self.top_db = top_db
        self.min_num_frames = min_num_frames
        self.min_sampling_rate = min_sampling_rate
        self.max_sampling_rate = max_sampling_rate
        self.max_duration_seconds = max_duration_seconds
        self.max_channels = max_channels
        _ = self.limits  # validates the four limits now, not at the first call
        # (n_fft // 2 + 1, n_mels) float64; not saved (to_dict drops `mel_filters`), rebuilt from the fields above
        self.mel_filters = mel_filter_bank(
            num_frequency_bins=1 + n_fft // 2,
            num_mel_filters=feature_size,
            min_frequency=f_min,
            max_frequency=f_max,
            sampling_rate=sampling_rate,
            norm=None,
            mel_scale="htk",
        )

    @property
    def limits(self) -> AudioLimits:
        """The input limits this extractor enforces (its four limit settings)."""
        return AudioLimits(self.min_sampling_rate, self.max_sampling_rate, self.max_duration_seconds, self.max_channels)

    def num_frames(self, num_samples: int) -> int:
        """Mel frames this extractor emits for a clip of `num_samples` samples at `self.sampling_rate`."""
        return max(mel_num_frames(num_samples, self.hop_length), self.min_num_frames)

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """
        (samples,) float mono at `sampling_rate` -> (n_mels, 1 + samples // hop_length) dB. Clips longer than
        `MEL_CHUNK_FRAMES` frames are transformed in chunks of frames, so the complex STFT (257 x 8 bytes per
        frame, 20x the mel) never exists for a whole long recording; frame for frame the result is the same.
        """
        if waveform.shape[-1] <= self.n_fft // 2:
            raise ValueError(
                f"a clip of {waveform.shape[-1]} samples is too short for the reflect-padded STFT (needs > "
                f"{self.n_fft // 2}); keep min_num_frames > 0 so short clips are padded with silence"
            )
        num_frames = mel_num_frames(waveform.shape[-1], self.hop_length)
        if num_frames <= MEL_CHUNK_FRAMES:
            mel = self._mel_power(waveform, center=True)
        else:  # the centred STFT's reflect padding once, then frames [first, last) from their own samples
            pad = self.n_fft // 2
            padded = torch.nn.functional.pad(waveform[None, None], (pad, pad), mode="reflect")[0, 0]
            mel = torch.cat(
                [
                    self._mel_power(padded[first * self.hop_length : (last - 1) * self.hop_length + self.n_fft], False)
                    for first, last in (
                        (first, min(first + MEL_CHUNK_FRAMES, num_frames))
                        for first in range(0, num_frames, MEL_CHUNK_FRAMES)
                    )
                ],
                dim=-1,
            )
        # db_range: the floor is this clip's own max - top_db. The reference (0 dB = power 1) is a float32 scalar:
        # with a Python float, NumPy 2 would promote the whole result to float64 (twice the mel's memory, then a cast).
        log_mel = power_to_db(mel.numpy(), reference=np.float32(1.0), min_value=AMIN, db_range=self.top_db)
        return torch.from_numpy(log_mel)

    def _mel_power(self, waveform: torch.Tensor, center: bool) -> torch.Tensor:
        """Mel-filtered STFT power, (n_mels, frames); `center` pads by reflection as the CED front end does."""
        window = torch.hann_window(self.win_length, periodic=True, dtype=waveform.dtype)
        stft = torch.stft(
            waveform,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=window,
            center=center,
            pad_mode="reflect",
            return_complex=True,
        )
        power = stft.abs() ** 2  # (n_fft // 2 + 1, frames)
        return torch.from_numpy(self.mel_filters).to(power.dtype).T @ power  # (n_mels, frames)

    def clip_log_mel(self, audio: np.ndarray, sampling_rate: float, resample_audio: bool = True) -> np.ndarray:
        """
        (n_mels, frames) log-mel of one mono float clip that was checked where it came in (`check_clip` in
        `__call__`, or a segment read by `audio_laac.iter_segments` in the pipeline): resampled to
        `self.sampling_rate` (the one place audio is resampled for the model), padded with silence to
        `min_num_frames`.
        """
        if sampling_rate != self.sampling_rate:
            if not resample_audio:
                raise ValueError(
                    f"expected {self.sampling_rate} Hz audio, got {sampling_rate}; pass resample=True or resample first"
                )
            audio = resample(audio, sampling_rate, self.sampling_rate)
        min_samples = (self.min_num_frames - 1) * self.hop_length
        if audio.shape[0] < min_samples:
            audio = np.pad(audio, (0, min_samples - audio.shape[0]))  # silence, so the clip fills one window
        return self.log_mel(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))).numpy()

    @staticmethod
    def _is_batch(raw_speech: Any) -> bool:
        # A batch is a list/tuple of clips; a 2-D array is ONE multi-channel clip.
        return (
            isinstance(raw_speech, (list, tuple))
            and len(raw_speech) > 0
            and (isinstance(raw_speech[0], (np.ndarray, torch.Tensor, list, tuple)))
        )

    def __call__(
        self,
        raw_speech: AudioInput | Sequence[AudioInput],
        sampling_rate: int | Sequence[int] | None = None,
        return_tensors: str | TensorType | None = "pt",
        resample: bool = True,
        **kwargs: Any,
    ) -> BatchFeature:
        r"""
        Args:
            raw_speech: one clip or a list of clips. A clip is a numpy array, torch tensor or list of samples:
                float, or integer PCM (int16/int32/uint8..., scaled to [-1, 1]); 1-D mono or 2-D multi-channel
                ([channels, samples] or [samples, channels], the shorter axis being the channels), downmixed by
                the mean.
            sampling_rate: rate of `raw_speech`, or one rate per clip (a batch read at mixed rates). Other rates
                than `self.sampling_rate` are resampled, each clip once. If omitted, a warning is logged and
                `self.sampling_rate` assumed.
            return_tensors: "pt" (default), "np", or None for lists.
            resample: resample other rates with soxr; if False they raise a ValueError.
            min_sampling_rate, max_sampling_rate, max_duration_seconds, max_channels: override this extractor's
                limits for this call (an input outside them raises `AudioInputError`, a ValueError).

        Returns:
            `BatchFeature` with `input_features` float32 (B, n_mels, T_max) in dB, each clip right-padded with
            `padding_value`, and `feature_attention_mask` int32 (B, T_max), 1 for real frames.
        """
        limits = AudioLimits.from_kwargs(kwargs, self.limits)
        if kwargs:
            logger.warning(f"LaacFeatureExtractor ignores the arguments {sorted(kwargs)}")
        clips = list(raw_speech) if self._is_batch(raw_speech) else [raw_speech]
        rates = self._clip_rates(sampling_rate, len(clips))
        mels = [
            self.clip_log_mel(check_clip(clip, rate, limits, f"clip {index}"), rate, resample)
            for index, (clip, rate) in enumerate(zip(clips, rates))
        ]
        return self.pad_log_mels(mels, return_tensors=return_tensors)

    def _clip_rates(self, sampling_rate: float | Sequence[float] | None, n_clips: int) -> list[float]:
        """One rate per clip: the rate given for all, or one given per clip (a batch read at mixed rates)."""
        if sampling_rate is None:
            logger.warning(
                f"no sampling_rate given to LaacFeatureExtractor; assuming {self.sampling_rate} Hz. Pass "
                "sampling_rate= to avoid silent errors"
            )
            return [self.sampling_rate] * n_clips
        if not isinstance(sampling_rate, (list, tuple)):
            return [sampling_rate] * n_clips
        if len(sampling_rate) != n_clips:
            raise ValueError(
                f"got {n_clips} clips but {len(sampling_rate)} sampling rates; pass one rate for all clips or one per clip"
            )
        return list(sampling_rate)

    def pad_log_mels(self, mels: Sequence[np.ndarray], return_tensors: str | TensorType | None = "pt") -> BatchFeature:
        """
        Log-mels of single clips, (n_mels, frames) each (from `log_mel`, e.g. kept from an earlier epoch) -> the
        batch `__call__` returns: right-padded with `padding_value`, and `feature_attention_mask`.
        """
        lengths = [mel.shape[-1] for mel in mels]
        features = np.full(
            (len(mels), self.feature_size, max(lengths)),
            self.padding_value,
            dtype=np.float32,
        )
        mask = np.zeros((len(mels), max(lengths)), dtype=np.int32)
        for index, (mel, length) in enumerate(zip(mels, lengths)):
            features[index, :, :length] = mel
            mask[index, :length] = 1
        data = {"input_features": features, "feature_attention_mask": mask}
        if return_tensors is None:
            data = {key: value.tolist() for key, value in data.items()}
        return BatchFeature(data, tensor_type=return_tensors)

__all__ = ["LaacFeatureExtractor", "mel_num_frames"]
