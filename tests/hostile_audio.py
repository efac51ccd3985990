"""Hand-made audio files for the hostile-input tests: WAV headers that lie about rate, length and channels."""

import io
import struct

import numpy as np
import soundfile as sf


def wav_header(rate: int, channels: int, bits: int, data_bytes: int, riff_bytes: int | None = None) -> bytes:
    """A canonical 44-byte PCM WAV header claiming `rate`, `channels`, `bits` and a data chunk of `data_bytes`."""
    block_align = channels * bits // 8
    riff = 36 + data_bytes if riff_bytes is None else riff_bytes
    fields = (1, channels, rate, rate * block_align, block_align, bits)
    masks = (0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFF, 0xFFFF)  # the field widths: lies wrap, never overflow
    fmt = struct.pack("<HHIIHH", *(value & mask for value, mask in zip(fields, masks)))
    return (
        b"RIFF" + struct.pack("<I", riff & 0xFFFFFFFF) + b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"data" + struct.pack("<I", data_bytes & 0xFFFFFFFF)
    )  # fmt: skip


def lying_wav(rate: int, channels: int, bits: int, claimed_bytes: int, actual_bytes: int, seed: int = 0) -> bytes:
    """A WAV header claiming `claimed_bytes` of data, followed by `actual_bytes` of random sample bytes."""
    payload = np.random.default_rng(seed).integers(0, 256, actual_bytes, dtype=np.uint8).tobytes()
    return wav_header(rate, channels, bits, claimed_bytes) + payload


def hostile_one_hertz_wav() -> bytes:
    """400 KB of 16-bit mono samples under a header that says 1 Hz (200,000 samples = 55.6 h)."""
    return lying_wav(rate=1, channels=1, bits=16, claimed_bytes=400_000, actual_bytes=400_000)


def real_file(fmt: str, seconds: float = 0.5, rate: int = 16000, channels: int = 1, seed: int = 0) -> bytes:
    """A genuine file (WAV, FLAC, OGG) of a quiet tone plus noise, as bytes."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    audio = 0.3 * np.sin(2 * np.pi * 440 * t)[:, None] + 0.01 * rng.standard_normal((t.size, channels))
    buffer = io.BytesIO()
    subtype = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS"}[fmt]
    sf.write(buffer, audio.astype(np.float32), rate, format=fmt, subtype=subtype)
    return buffer.getvalue()
