"""The one audio reader (`audio_laac`): limits checked from the header before decoding, one error type, soxr."""

import json
import os
import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import torch
import pytest
import soundfile as sf
from laac import pipeline_laac
from laac.cli import main as cli
from laac.data import loaders as data_laac
from laac.audio_laac import (
    AudioFile,
    AudioInputError,
    AudioLimits,
    iter_segments,
    read_audio,
    resample,
)
from laac.feature_extraction_laac import LaacFeatureExtractor

from tests.hostile_audio import hostile_one_hertz_wav, lying_wav, real_file
from tests.laac_tester import make_audio, save_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(save_tiny_model(tmp_path_factory.mktemp("laac-audio-model")))


def test_one_error_class_for_every_reader():
    assert pipeline_laac.AudioInputError is data_laac.AudioReadError is AudioInputError
    assert issubclass(AudioInputError, ValueError)
    error = AudioInputError("cannot decode: bad header", "/data/x.wav")
    assert (error.path, error.reason) == ("/data/x.wav", "cannot decode: bad header")
    assert str(error) == "/data/x.wav: cannot decode: bad header"
    copy = pickle.loads(pickle.dumps(error))  # crosses DataLoader worker processes intact
    assert (copy.path, copy.reason, str(copy)) == (error.path, error.reason, str(error))


def test_one_extension_list():
    assert cli.AUDIO_EXTENSIONS is data_laac.AUDIO_EXTENSIONS
    assert {".wav", ".flac", ".ogg", ".mp3", ".opus"} <= set(cli.AUDIO_EXTENSIONS)


def test_hostile_header_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "one_hertz.wav"
    path.write_bytes(hostile_one_hertz_wav())
    assert sf.info(str(path)).samplerate == 1 and sf.info(str(path)).frames == 200_000  # what the header claims
    reads = []
    monkeypatch.setattr(sf.SoundFile, "read", lambda self, *a, **k: reads.append(self.name))
    with pytest.raises(AudioInputError, match=r"1 Hz is not audio.*1000\.\.768000 Hz.*min_sampling_rate") as caught:
        AudioFile(str(path))
    assert caught.value.path == str(path) and reads == []
    accepted = AudioLimits(min_sampling_rate=1, max_duration_seconds=3600)  # raising one limit meets the next
    with pytest.raises(AudioInputError, match=r"55\.56 h, over the limit of 1\.00 h; raise max_duration_seconds"):
        AudioFile(str(path), accepted)
    assert reads == []


def test_channel_and_duration_limits_name_their_setting(tmp_path):
    wide = tmp_path / "wide.wav"
    wide.write_bytes(lying_wav(rate=16000, channels=64, bits=16, claimed_bytes=64 * 2 * 100, actual_bytes=64 * 2 * 100))
    with pytest.raises(AudioInputError, match=r"64 channels is over the limit of 32; raise max_channels"):
        read_audio(str(wide))
    assert read_audio(str(wide), AudioLimits(max_channels=64))[0].shape == (100, 64)
    clip = tmp_path / "three_seconds.flac"
    sf.write(clip, make_audio(3.0), 16000)
    with pytest.raises(AudioInputError, match=r"48000 frames at 16000 Hz is 3\.0 s, over the limit of 2\.0 s"):
        list(iter_segments(str(clip), 1.0, 1.0, AudioLimits(max_duration_seconds=2)))
    assert len(list(iter_segments(str(clip), 1.0, 1.0, AudioLimits(max_duration_seconds=3)))) == 3


def test_lying_length_is_truncation_not_a_long_decode(tmp_path):
    path = tmp_path / "claims_an_hour.wav"
    path.write_bytes(lying_wav(rate=16000, channels=1, bits=16, claimed_bytes=16000 * 2 * 3600, actual_bytes=32000))
    with pytest.raises(AudioInputError, match="truncated file: the header promises 115200000 data bytes"):
        read_audio(str(path))


def test_processor_refuses_an_absurd_rate_before_resampling():
    """170,000 samples "at 1 Hz" would resample to 10.1 GiB: a small, immediate error instead."""
    extractor = LaacFeatureExtractor()
    audio = np.full(170_000, 0.1, np.float32)
    tracemalloc.start()
    with pytest.raises(AudioInputError, match=r"clip 0: a sampling rate of 1 Hz is not audio"):
        extractor(audio, sampling_rate=1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**20, f"{peak} bytes allocated before refusing"
    with pytest.raises(AudioInputError, match=r"clip 0: .*over the limit of 0\.5 s; raise max_duration_seconds"):
        extractor(make_audio(1.0), sampling_rate=16000, max_duration_seconds=0.5)
    with pytest.raises(AudioInputError, match="clip 0: 40 channels is over the limit of 32"):
        extractor(np.zeros((40, 16000), np.float32), sampling_rate=16000)
    wide = extractor(np.zeros((40, 16000), np.float32), sampling_rate=16000, max_channels=40)
    assert wide["input_features"].shape == (1, 64, 101)


def test_feature_extractor_limits_are_saved(tmp_path):
    LaacFeatureExtractor(max_duration_seconds=60.0, max_channels=2).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["max_duration_seconds"] == 60.0 and saved["max_channels"] == 2
    loaded = LaacFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.limits == AudioLimits(max_duration_seconds=60.0, max_channels=2)
    with pytest.raises(ValueError, match="max_channels must be a positive number, got 0"):
        LaacFeatureExtractor(max_channels=0)


def test_soxr_resampling_keeps_length_and_a_tone():
    rate = 44100
    tone = np.sin(2 * np.pi * 1000 * np.arange(rate) / rate).astype(np.float32)
    out = resample(tone, rate, 16000)
    assert out.dtype == np.float32 and out.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(out))
    assert int(spectrum.argmax()) == 1000  # 1 Hz bins over one second
    stereo = resample(np.stack([tone, tone], axis=1), rate, 16000)
    assert stereo.shape == (16000, 2)


def test_pipeline_limits_are_call_arguments(model_dir):
    from transformers import pipeline

    import laac  # noqa: F401  registers the task

    captioner = pipeline("audio-captioning", model=model_dir)
    with pytest.raises(AudioInputError, match="raise max_duration_seconds"):
        captioner(make_audio(2.0), sampling_rate=16000, max_duration_seconds=1.0)
    assert "caption" in captioner(make_audio(2.0), sampling_rate=16000, max_duration_seconds=2.0)
    with pytest.raises(AudioInputError, match="1 Hz is not audio"):
        captioner(hostile_one_hertz_wav())


def test_cli_folder_with_a_hostile_file_finishes_the_good_ones(model_dir, tmp_path, monkeypatch):
    folder = tmp_path / "recordings"
    folder.mkdir()
    good = []
    for index, fmt in enumerate(("WAV", "FLAC", "OGG", "WAV")):
        path = folder / f"good_{index}.{fmt.lower()}"
        path.write_bytes(real_file(fmt, seconds=1.0 + index, seed=index))
        good.append(os.path.normpath(path))
    hostile = os.path.normpath(folder / "hostile.wav")
    Path(hostile).write_bytes(hostile_one_hertz_wav())
    reads: list[tuple[str, int]] = []  # (file, frames) of every decode
    real_read = AudioFile.read

    def counting_read(self, start, frames, mono=False):
        reads.append((self.name, frames))
        return real_read(self, start, frames, mono)

    monkeypatch.setattr(AudioFile, "read", counting_read)
    out = tmp_path / "captions.jsonl"
    status = cli.main(["caption", "-q", "-m", model_dir, "-o", str(out), str(folder)])
    records = {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert status == 1 and sorted(records) == sorted(good + [hostile])
    assert all(records[path]["caption"] for path in good)
    assert "1 Hz is not audio" in records[hostile]["error"] and "min_sampling_rate" in records[hostile]["error"]
    # the hostile file costs a header read, never a decode. The good files read into the batch it stopped are read
    # again when the CLI resumes without it (in a folder sorted by name it is the last: all four here)
    decoded = [name for name, _ in reads]
    assert hostile not in decoded and set(decoded) == set(good)
    assert all(decoded.count(path) <= 2 for path in good)
    # the same folder with the limit raised for the command: the header is then refused for its length instead
    out2 = tmp_path / "raised.jsonl"
    cli.main(["caption", "-q", "-m", model_dir, "-o", str(out2), "--min-sampling-rate", "1", hostile])
    assert "raise max_duration_seconds" in json.loads(out2.read_text())["error"]


def test_long_clip_mel_is_computed_in_chunks_frame_for_frame(monkeypatch):
    from laac import feature_extraction_laac

    from tests.numerics import assert_log_mel_close

    extractor = LaacFeatureExtractor()
    waveform = torch.from_numpy(make_audio(125.0))  # 12,501 frames: two full chunks and a partial one
    chunked = extractor.log_mel(waveform)
    monkeypatch.setattr(feature_extraction_laac, "MEL_CHUNK_FRAMES", 10**9)
    whole = extractor.log_mel(waveform)
    assert chunked.shape == whole.shape == (64, 12501)
    assert_log_mel_close(chunked, whole)  # the same frames; only the mel product's summation may be blocked anew


def test_captioning_a_long_file_reads_one_segment_at_a_time(model_dir, tmp_path):
    """Segments are read as the batches need them: memory does not grow with the recording's length."""
    from transformers import pipeline

    import laac  # noqa: F401  registers the task

    captioner = pipeline("audio-captioning", model=model_dir)
    path = tmp_path / "six_minutes.wav"
    with sf.SoundFile(path, "w", samplerate=16000, channels=1, subtype="PCM_16") as out:
        for seed in range(36):
            out.write(make_audio(10.0, seed))  # 36 segments of 10 s = 23 MB of float32 in all
    tracemalloc.start()
    record = captioner(str(path), segment_seconds=10, hop_seconds=10, num_beams=1, max_new_tokens=2, batch_size=8)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(record["segments"]) == 36
    # a segment's samples (0.64 MB) at a time plus working copies, not a batch's or all 36 segments' samples
    # (4.6 MiB measured; a reader that buffers 8 batches of 8 segments needs 27 MiB)
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB: captioned segments kept their samples"


def _cut_after_header(data: bytes, fmt: str) -> bytes:
    """The file's header pages/blocks and nothing (or too little) of its audio: a download cut early."""
    if fmt == "FLAC":
        return data[:200]  # STREAMINFO and the start of the first frame
    # Ogg: the Vorbis identification, comment and setup pages (the setup page ends before the first audio page)
    first_audio = data.index(b"OggS", data.index(b"OggS", data.index(b"OggS") + 4) + 4)
    return data[:first_audio]


@pytest.mark.parametrize(
    "name, make, expected",
    [
        ("cut.flac", lambda: _cut_after_header(real_file("FLAC", 2.0), "FLAC"),
         r"cut\.flac: cannot decode: the file is truncated or damaged \(libsndfile: .*\); download or export it again"),
        ("cut.ogg", lambda: _cut_after_header(real_file("OGG", 2.0), "OGG"),
         r"cut\.ogg: holds no audio \(zero samples\): its OGG header is there but no audio follows it, as in a cut "
         r"download .*; download or export it again"),
        ("zero_hz.wav", lambda: lying_wav(rate=0, channels=1, bits=16, claimed_bytes=3200, actual_bytes=3200),
         r"zero_hz\.wav: cannot decode: the WAV header claims a sampling rate of 0 Hz, which no audio has: export the "
         r"file again from its source, or read its samples yourself and pass the array with its true sampling_rate="),
        ("no_channels.wav", lambda: lying_wav(rate=16000, channels=0, bits=16, claimed_bytes=3200, actual_bytes=3200),
         r"no_channels\.wav: cannot decode: the WAV header claims 0 channels"),
        ("text.wav", lambda: b"this is not audio\n" * 50,
         r"text\.wav: cannot decode: not audio in a format soundfile reads \(libsndfile: .*\); convert it to WAV"),
    ],
)  # fmt: skip
def test_cut_and_lying_headers_say_what_is_wrong_and_the_fix(tmp_path, name, make, expected):
    """A user's first broken files: each error names the file, says what is wrong in plain words, and the fix."""
    path = tmp_path / name
    path.write_bytes(make())
    with pytest.raises(AudioInputError, match=expected):
        read_audio(str(path))
    with pytest.raises(AudioInputError, match=expected.split(": ", 1)[1]):  # the same words for bytes
        read_audio(path.read_bytes())


def test_cli_records_name_each_broken_file_and_go_on(tmp_path):
    """`laac caption` on a folder with the broken files and a good one: one record each, the good one captioned."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "cut.ogg").write_bytes(_cut_after_header(real_file("OGG", 2.0), "OGG"))
    (folder / "cut.flac").write_bytes(_cut_after_header(real_file("FLAC", 2.0), "FLAC"))
    (folder / "zero_hz.wav").write_bytes(lying_wav(rate=0, channels=1, bits=16, claimed_bytes=3200, actual_bytes=3200))
    (folder / "good.flac").write_bytes(real_file("FLAC", 1.0))
    model = save_tiny_model(tmp_path / "model")
    out = tmp_path / "captions.jsonl"
    assert cli.main(["caption", "--model", str(model), "--output", str(out), "--quiet", str(folder)]) == 3
    records = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines()) if "path" in r}
    assert "caption" in records["good.flac"]
    assert records["cut.ogg"]["error"].startswith(f"{folder / 'cut.ogg'}: holds no audio (zero samples)")
    assert "truncated or damaged" in records["cut.flac"]["error"] and str(folder) in records["cut.flac"]["error"]
    assert "claims a sampling rate of 0 Hz" in records["zero_hz.wav"]["error"]
