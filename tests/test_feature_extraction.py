"""LaacFeatureExtractor: parity with the original CED front end, input handling, errors, save/load."""


import numpy as np
import pytest
import torch
from laac import feature_extraction_laac
from laac.feature_extraction_laac import LaacFeatureExtractor, mel_num_frames
from safetensors import safe_open
from transformers.testing_utils import CaptureLogger

from tests.laac_tester import CED_REFERENCE as REFERENCE
from tests.numerics import assert_log_mel_close


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    with safe_open(str(REFERENCE), "pt") as f:
        return {key: f.get_tensor(key) for key in f.keys() if not key.startswith("weights.")}


@pytest.fixture(scope="module")
def extractor() -> LaacFeatureExtractor:
    return LaacFeatureExtractor()


def _noise(num_samples: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(num_samples) * 0.1).astype(np.float32)


@pytest.mark.parametrize("name", ["1s", "10s"])
def test_mel_matches_original_front_end(extractor, reference, name):
    features = extractor(reference[f"wave_{name}"], sampling_rate=16000)["input_features"][0]
    expected = reference[f"mel_{name}"]
    assert features.shape == expected.shape
    torch.testing.assert_close(features, expected, atol=1e-3, rtol=0)
    # the per-clip top_db clamp is really exercised by the silent stretch
    assert (features == features.max() - 120).float().mean() > 0.03


def test_db_floor_is_each_clips_own_max_and_stays_float32():
    """dB = 10 log10(max(mel power, 1e-10)), floored at the clip's own max - top_db (power_to_db's db_range)."""
    extractor = LaacFeatureExtractor(top_db=80.0)  # above the 1e-10 power floor (-100 dB) for both clips
    loud = _noise(32000)
    loud[8000:24000] = 0.0  # a silent stretch, so the floor is reached
    maxima = []
    for clip in (loud, loud * 0.1):  # 20 dB quieter: its floor moves 20 dB down with it
        waveform = torch.from_numpy(clip)
        log_mel = extractor.log_mel(waveform)
        assert log_mel.dtype == torch.float32
        power = extractor._mel_power(waveform.double(), center=True)  # an independent float64 reckoning
        expected = 10.0 * power.clamp(min=feature_extraction_laac.AMIN).log10()
        expected = expected.clamp(min=float(expected.max()) - extractor.top_db).float()
        assert_log_mel_close(log_mel, expected)
        assert float(log_mel.min()) == pytest.approx(float(log_mel.max()) - extractor.top_db, abs=1e-4)
        maxima.append(float(log_mel.max()))
    assert maxima[0] - maxima[1] == pytest.approx(20.0, abs=1e-3)


def test_batch_pads_right_and_masks(extractor):
    clips = [_noise(16000), _noise(48000, 1), _noise(32000, 2)]
    out = extractor(clips, sampling_rate=16000)
    assert out["input_features"].dtype == torch.float32
    assert out["input_features"].shape == (3, 64, 301)
    assert out["feature_attention_mask"].sum(-1).tolist() == [101, 301, 201]
    assert torch.all(out["input_features"][0, :, 101:] == 0.0)
    alone = extractor(clips[2], sampling_rate=16000)["input_features"][0]
    torch.testing.assert_close(out["input_features"][2, :, :201], alone, atol=0, rtol=0)


def test_frames_formula():
    assert mel_num_frames(16000) == 101 and mel_num_frames(160000) == 1001 and mel_num_frames(159) == 1
    assert LaacFeatureExtractor().num_frames(160) == 80
    assert LaacFeatureExtractor(min_num_frames=0).num_frames(1000) == 7


def test_integer_pcm_is_scaled(extractor):
    pcm16 = (np.random.default_rng(3).standard_normal(16000) * 3000).astype(np.int16)
    from_int = extractor(pcm16, sampling_rate=16000)["input_features"]
    from_float = extractor(pcm16.astype(np.float32) / 32768.0, sampling_rate=16000)["input_features"]
    torch.testing.assert_close(from_int, from_float, atol=1e-4, rtol=0)
    pcm8 = (pcm16 // 256 + 128).astype(np.uint8)
    from_uint8 = extractor(pcm8, sampling_rate=16000)["input_features"]
    from_float8 = extractor((pcm8.astype(np.float32) - 128) / 128, sampling_rate=16000)["input_features"]
    torch.testing.assert_close(from_uint8, from_float8, atol=1e-4, rtol=0)


def test_multichannel_is_downmixed_either_layout(extractor):
    left, right = _noise(16000, 4), _noise(16000, 5)
    mono = extractor((left + right) / 2, sampling_rate=16000)["input_features"]
    channels_first = extractor(np.stack([left, right]), sampling_rate=16000)["input_features"]
    channels_last = extractor(torch.from_numpy(np.stack([left, right], axis=1)), sampling_rate=16000)
    torch.testing.assert_close(channels_first, mono, atol=1e-4, rtol=0)
    torch.testing.assert_close(channels_last["input_features"], mono, atol=1e-4, rtol=0)


def test_resampling_keeps_a_tone_in_its_mel_band(extractor):
    def tone(rate: int) -> np.ndarray:
        return 0.5 * np.sin(2 * np.pi * 1000 * np.arange(rate) / rate)

    at_44k = extractor(tone(44100), sampling_rate=44100)["input_features"][0]
    at_16k = extractor(tone(16000), sampling_rate=16000)["input_features"][0]
    assert at_44k.shape == at_16k.shape == (64, 101)
    peak = int(at_16k.mean(-1).argmax())
    assert int(at_44k.mean(-1).argmax()) == peak
    assert abs(float(at_44k[peak].mean() - at_16k[peak].mean())) < 0.5  # dB
    with pytest.raises(ValueError, match="expected 16000 Hz audio, got 44100; pass resample=True"):
        extractor(tone(44100), sampling_rate=44100, resample=False)


def test_short_clip_is_padded_with_silence(extractor):
    out = extractor(_noise(160), sampling_rate=16000)  # 10 ms
    assert out["input_features"].shape == (1, 64, 80)
    assert int(out["feature_attention_mask"].sum()) == 80
    no_padding = LaacFeatureExtractor(min_num_frames=0)(_noise(1000), sampling_rate=16000)
    assert no_padding["input_features"].shape == (1, 64, 7)
    with pytest.raises(ValueError, match="too short"):
        LaacFeatureExtractor(min_num_frames=0)(_noise(100), sampling_rate=16000)


@pytest.mark.parametrize(
    "audio, message",
    [
        (np.zeros(0, dtype=np.float32), "clip 0 is empty"),
        (
            np.array([0.1, np.nan, 0.2, np.inf] * 100, dtype=np.float32),
            "clip 0 has 200 NaN/Inf samples",
        ),
        (np.zeros((2, 2, 1600), dtype=np.float32), r"clip 0 has shape \(2, 2, 1600\)"),
    ],
)
def test_bad_audio_raises_naming_the_problem(extractor, audio, message):
    with pytest.raises(ValueError, match=message):
        extractor(audio, sampling_rate=16000)


def test_bad_clip_in_batch_is_named(extractor):
    with pytest.raises(ValueError, match="clip 1 is empty"):
        extractor([_noise(1600), np.zeros(0, dtype=np.float32)], sampling_rate=16000)


def test_missing_sampling_rate_warns_and_assumes_16k(extractor):
    logger = feature_extraction_laac.logger
    with CaptureLogger(logger) as captured:
        out = extractor(_noise(16000))
    assert "no sampling_rate" in captured.out
    assert out["input_features"].shape == (1, 64, 101)


def test_return_types(extractor):
    as_numpy = extractor(_noise(1600), sampling_rate=16000, return_tensors="np")
    assert isinstance(as_numpy["input_features"], np.ndarray) and as_numpy["input_features"].dtype == np.float32
    as_list = extractor([_noise(16000).tolist()], sampling_rate=16000, return_tensors=None)
    assert len(as_list["input_features"][0]) == 64


def test_save_and_load_round_trip(tmp_path):
    extractor = LaacFeatureExtractor(min_num_frames=32, top_db=80.0, padding_value=-100.0)
    extractor.save_pretrained(tmp_path)
    loaded = LaacFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.to_dict() == extractor.to_dict()
    assert loaded.min_num_frames == 32 and loaded.top_db == 80.0
    np.testing.assert_array_equal(loaded.mel_filters, extractor.mel_filters)
    clips = [_noise(800), _noise(16000, 1)]
    first, second = (
        extractor(clips, sampling_rate=16000),
        loaded(clips, sampling_rate=16000),
    )
    assert_log_mel_close(first["input_features"], second["input_features"])  # two instances: own filter arrays
    assert first["input_features"][0, 0, -1] == -100.0  # padding_value used for batch padding
