"""pipeline("audio-captioning"): input forms, batching = batch size 1, long audio, errors, correction, remote code."""

import json
import textwrap
import tracemalloc
from pathlib import Path

import laac  # noqa: F401  registers the LAAC classes and the task
import numpy as np
import pytest
import soundfile as sf
import torch
from laac.configuration_laac import LaacConfig
from laac.cli.captioning import BatchSizes, caption_records
from laac.correction.post_corrector import ErrorDetector
from laac.pipeline_laac import (
    AudioCaptioningPipeline,
    AudioInputError,
    iter_segments,
    overall_caption,
    segment_bounds,
)
from transformers import pipeline

from tests.laac_tester import caption_loss_fn, make_audio, run_without_laac, save_tiny_model
from tests.numerics import assert_same_captions


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = save_tiny_model(tmp_path_factory.mktemp("laac-pipeline"))
    return path


@pytest.fixture(scope="module")
def captioner(folder):
    return pipeline("audio-captioning", model=str(folder), device="cpu")


def clips(lengths=(1.0, 6.0, 0.3, 12.0, 2.0, 0.06, 4.0)):
    return [make_audio(seconds, seed) for seed, seconds in enumerate(lengths)]


def test_installed_checkout_builds_the_pipeline(captioner):
    assert isinstance(captioner, AudioCaptioningPipeline)
    assert type(captioner.model).__name__ == "LaacForConditionalGeneration"
    result = captioner(make_audio(2.0), sampling_rate=16000)
    assert set(result) == {"caption"} and isinstance(result["caption"], str) and result["caption"]
    assert json.loads(json.dumps(result)) == result


def test_input_forms_give_the_same_caption(captioner, tmp_path):
    audio = make_audio(3.0, 2)
    sf.write(tmp_path / "clip.wav", audio, 16000, subtype="FLOAT")
    expected = captioner(audio, sampling_rate=16000)["caption"]
    forms = [
        str(tmp_path / "clip.wav"),
        tmp_path / "clip.wav",
        (tmp_path / "clip.wav").read_bytes(),
        torch.from_numpy(audio),
        {"raw": audio, "sampling_rate": 16000},
        {"array": audio, "sampling_rate": 16000, "path": "ignored.wav"},
    ]
    results = captioner(forms, sampling_rate=16000)
    assert [r["caption"] for r in results] == [expected] * len(forms)


def test_file_pcm_and_array_pcm_agree(captioner, tmp_path):
    """A 44.1 kHz stereo int16 file and the same int16 array (channels last) are read alike."""
    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal((44100 * 2, 2)) * 3000).astype(np.int16)
    sf.write(tmp_path / "stereo.wav", pcm, 44100, subtype="PCM_16")
    from_file = captioner(str(tmp_path / "stereo.wav"))
    from_array = captioner(pcm, sampling_rate=44100)
    assert from_file == from_array


def test_batching_gives_the_captions_of_batch_size_one(captioner):
    audio = clips()
    one = [captioner(clip, sampling_rate=16000)["caption"] for clip in audio]
    assert len(set(one)) >= 2, "the test needs clips with different captions to mean anything"
    caption_loss = caption_loss_fn(captioner.model, captioner.processor, audio)
    for batch_size in (2, 3, 8):
        batched = [r["caption"] for r in captioner(audio, sampling_rate=16000, batch_size=batch_size)]
        assert_same_captions(batched, one, caption_loss)


def test_a_batch_is_the_processors_batch(captioner, monkeypatch):
    """The base class's collate of one-segment model inputs gives what the processor makes of the clips at once."""
    audio = clips((8.0, 0.5, 3.0))
    seen = []
    real = type(captioner.model).generate.__get__(captioner.model)
    monkeypatch.setattr(captioner.model, "generate", lambda **inputs: seen.append(inputs) or real(**inputs))
    captioner(audio, sampling_rate=16000, batch_size=3)
    expected = captioner.processor(audio, sampling_rate=16000)
    assert len(seen) == 1
    for key in ("input_features", "feature_attention_mask", "input_ids", "attention_mask"):
        assert torch.equal(seen[0][key], expected[key]), key


def test_segments_of_several_inputs_share_batches_in_input_order(captioner, monkeypatch):
    sizes = []
    real = type(captioner.model).generate.__get__(captioner.model)
    monkeypatch.setattr(captioner.model, "generate",
                        lambda **inputs: sizes.append(inputs["feature_attention_mask"].sum(-1).tolist()) or real(**inputs))
    audio = clips((25.0, 1.0, 12.0))  # segments of 10 s: 3, 1 and 2 (the last ones shifted to end with the audio)
    records = captioner(audio, sampling_rate=16000, batch_size=4, segment_seconds=10, hop_seconds=10)
    assert sizes == [[1001, 1001, 1001, 101], [1001, 1001]]
    assert [len(record.get("segments", [])) for record in records] == [3, 0, 2]
    alone = [captioner(clip, sampling_rate=16000, segment_seconds=10, hop_seconds=10) for clip in audio]
    assert records == alone


def test_call_forms(captioner):
    """A tuple is a list; an empty list gives an empty list; a generator streams the records in input order."""
    audio = clips((1.0, 2.0, 0.5))
    expected = captioner(audio, sampling_rate=16000)
    assert captioner(tuple(audio), sampling_rate=16000) == expected
    assert captioner([], sampling_rate=16000) == []
    streamed = captioner((clip for clip in audio), sampling_rate=16000, batch_size=2)
    assert not isinstance(streamed, list) and list(streamed) == expected


def test_generation_kwargs_and_dtype(folder, captioner):
    short = captioner(make_audio(2.0), sampling_rate=16000, num_beams=1, max_new_tokens=3)["caption"]
    assert 1 <= len(short.split()) <= 3  # the word-level tokenizer: one token per word
    greedy = captioner(make_audio(2.0), sampling_rate=16000, generate_kwargs={"num_beams": 1, "max_new_tokens": 3})
    assert greedy["caption"] == short
    half = pipeline("audio-captioning", model=str(folder), device="cpu", torch_dtype=torch.bfloat16)
    assert half.model.dtype == torch.bfloat16
    assert isinstance(half(make_audio(2.0), sampling_rate=16000)["caption"], str)
    with pytest.raises(TypeError, match="num_beam"):
        captioner(make_audio(1.0), sampling_rate=16000, num_beam=2)


def test_segment_bounds():
    assert segment_bounds(25, 30, 30) == [(0, 25)]
    assert segment_bounds(90, 30, 30) == [(0, 30), (30, 60), (60, 90)]
    assert segment_bounds(100, 30, 30) == [(0, 30), (30, 60), (60, 90), (70, 100)]  # last one ends at the end
    assert segment_bounds(50, 30, 10) == [(0, 30), (10, 40), (20, 50)]


def test_long_audio_is_captioned_per_segment(captioner, tmp_path):
    audio = np.concatenate([make_audio(20.0, 0), make_audio(20.0, 5), make_audio(30.0, 0)])
    result = captioner(audio, sampling_rate=16000, segment_seconds=20, hop_seconds=20)
    assert [(s["start"], s["end"]) for s in result["segments"]] == [(0, 20), (20, 40), (40, 60), (50, 70)]
    alone = [captioner(audio[int(a * 16000) : int(b * 16000)], sampling_rate=16000)["caption"]
             for a, b in [(0, 20), (20, 40), (40, 60), (50, 70)]]
    assert [s["caption"] for s in result["segments"]] == alone
    energies = [float(np.mean(np.square(audio[int(a * 16000) : int(b * 16000)], dtype=np.float64)))
                for a, b in [(0, 20), (20, 40), (40, 60), (50, 70)]]
    assert result["caption"] == overall_caption(result["segments"], energies)
    sf.write(tmp_path / "long.flac", audio, 16000, subtype="PCM_24")
    from_file = captioner(str(tmp_path / "long.flac"), segment_seconds=20, hop_seconds=20)
    assert [s["start"] for s in from_file["segments"]] == [0, 20, 40, 50]


def test_overall_caption_rule():
    segments = [{"caption": c} for c in ("rain", "dog", "rain", "car")]
    assert overall_caption(segments, [0.1, 0.9, 0.2, 0.3]) == "rain"  # the most common
    assert overall_caption(segments[1:2] + segments[3:], [0.1, 0.3]) == "car"  # tie: the loudest


def test_long_file_is_read_in_bounded_memory(tmp_path):
    path = tmp_path / "ten_minutes.wav"
    with sf.SoundFile(path, "w", samplerate=16000, channels=1, subtype="PCM_16") as out:
        for _ in range(20):  # 10 min = 38 MB as float32, written in 30 s blocks
            out.write(np.full(16000 * 30, 0.01, dtype=np.float32))
    tracemalloc.start()
    count = 0
    for audio, rate, start, end, _ in iter_segments(str(path), 30.0, 30.0):
        assert audio.shape == (end - start,) and rate == 16000
        count += 1
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 20
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB: the file was not read segment by segment"


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros(0, dtype=np.float32), "zero samples"),
        (np.array([0.0, np.nan, np.inf] * 100, dtype=np.float32), "200 NaN/Inf"),
        (b"this is not audio" * 20, "cannot decode"),
        ("/nonexistent/clip.wav", "no such file"),
    ],
)
def test_bad_inputs_raise_or_are_recorded(captioner, bad, message):
    with pytest.raises(AudioInputError, match=message):
        captioner(bad, sampling_rate=16000)
    # `laac caption`'s loop turns it into the input's error record; the others are captioned
    records = dict(caption_records(captioner, [make_audio(1.0), bad, make_audio(2.0)], BatchSizes(2), sampling_rate=16000))
    assert message in records[1]["error"] and "caption" in records[0] and "caption" in records[2]


def test_arrays_need_a_rate(captioner):
    with pytest.raises(ValueError, match="sampling_rate"):
        captioner(make_audio(1.0))
    with pytest.raises(ValueError, match="ambiguous"):
        captioner([0.0, 0.1, 0.2], sampling_rate=16000)


def test_correct_with_a_real_tiny_detector(captioner, detector_folder):
    audio = clips((1.0, 6.0))
    raw = [r["caption"] for r in captioner(audio, sampling_rate=16000)]
    # threshold 1.0: nothing is flagged, so no LLM is loaded; the error probabilities are the detector's
    results = captioner(audio, sampling_rate=16000, correct={"detector": str(detector_folder), "threshold": 1.0})
    expected = ErrorDetector.from_pretrained(str(detector_folder))(raw)
    for result, caption, probability in zip(results, raw, expected):
        assert result["caption"] == result["raw_caption"] == caption and result["corrected"] is False
        assert result["error_prob"] == pytest.approx(probability, abs=1e-6)
    never = captioner(audio, sampling_rate=16000, correct="never")
    assert [r["caption"] for r in never] == raw and all(r["error_prob"] is None for r in never)


def test_correct_applies_to_segments_and_accepts_a_callable(captioner):
    def shout(captions):
        return [{"caption": c.upper(), "raw_caption": c, "error_prob": 0.95, "corrected": True} for c in captions]

    result = captioner(make_audio(25.0), sampling_rate=16000, segment_seconds=10, correct=shout)
    assert result["caption"] == result["raw_caption"].upper()
    assert all(s["caption"] == s["raw_caption"].upper() and s["error_prob"] == 0.95 for s in result["segments"])


def test_config_names_the_pipeline_as_pipeline_save_pretrained_does(captioner, tmp_path):
    """config.json's custom_pipelines entry is transformers' own (Pipeline.save_pretrained writes the same)."""
    default = json.loads(json.dumps(LaacConfig().to_dict()["custom_pipelines"]))
    assert default == {"audio-captioning": {"impl": "pipeline_laac.AudioCaptioningPipeline", "pt": ["AutoModel"],
                                            "type": "multimodal"}}
    captioner.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["custom_pipelines"] == default
    assert (tmp_path / "pipeline_laac.py").read_bytes() == Path(laac.pipeline_laac.__file__).read_bytes()
    # `import laac` registered the task, so pipeline() is not sent to the folder's copy (that needs remote code)
    assert captioner.model.config.custom_pipelines == {}


REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["laac"] = None  # the repository must not be importable: everything comes from the folder
    import soundfile as sf
    from transformers import pipeline
    folder, wav, expected = sys.argv[1:4]
    captioner = pipeline("audio-captioning", model=folder, trust_remote_code=True, device="cpu")
    assert "transformers_modules" in type(captioner).__module__, type(captioner).__module__
    assert "transformers_modules" in type(captioner.model).__module__
    audio, rate = sf.read(wav, dtype="float32")
    got = [captioner(wav), captioner(audio, sampling_rate=rate), captioner([wav, wav], batch_size=2)]
    assert got == json.loads(expected), (got, expected)
    print("REMOTE-PIPELINE-OK")
    """
)


def test_pipeline_from_saved_folder_in_fresh_process(folder, captioner, tmp_path):
    wav = tmp_path / "clip.wav"
    sf.write(wav, make_audio(2.5, 3), 16000, subtype="PCM_16")
    expected = [captioner(str(wav)), captioner(str(wav)), captioner([str(wav)] * 2, batch_size=2)]
    assert (folder / "pipeline_laac.py").exists()
    args = [str(folder), str(wav), json.dumps(expected)]
    result = run_without_laac(REMOTE_SCRIPT, args, tmp_path, OMP_NUM_THREADS="1")
    assert result.returncode == 0 and "REMOTE-PIPELINE-OK" in result.stdout, result.stderr[-4000:]


def test_fast_decoding_needs_the_loop_beside_the_code(monkeypatch, tmp_path):
    """fast_decoding=True names the installed checkout's folder; without it there, the error says what to pass."""
    import laac.pipeline_laac as pipeline_module

    assert pipeline_module.fast_decoding_source(True) == pipeline_module.FAST_DECODING
    assert pipeline_module.fast_decoding_source("someone/laac-fast") == "someone/laac-fast"
    monkeypatch.setattr(pipeline_module, "FAST_DECODING", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="pass fast_decoding='<folder or Hub repo"):
        pipeline_module.fast_decoding_source(True)


def test_readme_caption_files_snippet_runs(folder, captioner, tmp_path, monkeypatch, capsys):
    """README's "Caption files" block, on the tiny checkpoint and files of those names (its `correct=True` line needs
    the report's detector and LLM: test_generate_correct.py runs that call with stand-ins)."""
    readme = (Path(laac.__file__).parent / "README.md").read_text()
    block = readme.split("## Caption files", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    for seed, (name, seconds) in enumerate([("rain.flac", 2.0), ("a.wav", 1.0), ("b.mp3", 3.0), ("meeting.flac", 70.0)]):
        sf.write(name, make_audio(seconds, seed), 16000)
    lines = [line for line in block.splitlines() if "correct=True" not in line]
    assert len(lines) == len(block.splitlines()) - 1
    namespace = {}
    exec("\n".join(lines).replace("path/to/laac-checkpoint", str(folder)), namespace)
    printed = capsys.readouterr().out.splitlines()
    assert printed == [record["caption"] for record in captioner(["a.wav", "b.mp3"])]
    assert len(namespace["captioner"]("meeting.flac", segment_seconds=30, hop_seconds=30)["segments"]) == 3
