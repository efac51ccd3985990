"""Hand-made audio files for the hostile-input tests: WAV headers that lie about rate, length and channels."""

import io
import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.laac_tester import make_audio


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


def tone(seconds, rate, channels=1, seed=0):
    mono = make_audio(seconds, seed, rate)
    return np.repeat(mono[:, None], channels, axis=1) * np.linspace(1.0, 0.5, channels)[None, :]


def write_bad_files(folder: Path) -> dict[str, str]:
    """path -> expected words of its error record."""
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / "whole.wav", tone(2.0, 16000), 16000, subtype="PCM_16")
    data = (folder / "whole.wav").read_bytes()
    (folder / "truncated.wav").write_bytes(data[: len(data) // 2])
    sf.write(folder / "whole.flac", tone(2.0, 16000), 16000, subtype="PCM_16")
    data = (folder / "whole.flac").read_bytes()
    (folder / "truncated.flac").write_bytes(data[: len(data) // 2])
    os.remove(folder / "whole.wav"), os.remove(folder / "whole.flac")
    sf.write(folder / "empty.wav", np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    nan = tone(1.0, 16000).astype(np.float32)
    nan[100:110] = np.nan
    sf.write(folder / "nan.wav", nan, 16000, subtype="FLOAT")
    (folder / "text.wav").write_bytes(b"definitely not audio\n" * 50)
    (folder / "empty_folder").mkdir()
    expected = {
        "truncated.wav": "truncated", "truncated.flac": "cannot decode", "empty.wav": "zero samples",
        "nan.wav": "10 NaN/Inf", "text.wav": "cannot decode", "missing.wav": "no such file",
        "empty_folder": "no audio files", "nomatch_*.wav": "no file matches",
    }
    return {os.path.normpath(folder / name): words for name, words in expected.items()}
