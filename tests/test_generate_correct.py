"""generate(correct=...): raw and corrected captions from one path (stock generate, fast loop, pipeline, CLI, Trainer).

The corrector pieces are the tiny offline ones of the corrector tests: the tiny FENSE-format detector folder of
tests/test_pipeline.py and the scripted LLM stand-in of tests/test_corrector.py (no Hub, no LLM download).
"""

import json
import os
import textwrap
from pathlib import Path

import laac  # noqa: F401  registers the LAAC classes and the task
import pytest
import soundfile as sf
import torch
from laac.cli import main as cli
from laac.corrector_laac import REPORT_ANSWER_RULES, CaptionCorrector, ErrorDetector, PostCorrector
from laac.custom_generate import generate as fast
from laac.data.loaders import load_clotho
from laac.data.synthetic_corpus import write_corpus
from laac.evaluation.metrics import compute_dcase_metrics
from laac.modeling_laac import LaacForConditionalGeneration, LaacGenerateCorrectedOutput, PostCorrectionError
from laac.training.trainer import evaluate_model, parse_correct_setting
from transformers import GenerationMixin, pipeline

from tests.laac_tester import make_audio, run_without_laac, save_tiny_model, tiny_config, tiny_model, tiny_processor
from tests.test_corrector import ScriptedCorrector
from tests.test_pipeline import detector_folder  # noqa: F401  (a pytest fixture: the tiny FENSE-format detector)

CLIP_SECONDS = (1.0, 3.0, 6.0, 2.0, 4.5)


class AppendingCorrector(ScriptedCorrector):
    """The scripted LLM stand-in answering every caption with "<caption> loudly" (the report's answer rules)."""

    def __init__(self) -> None:
        super().__init__({}, answer_rules=REPORT_ANSWER_RULES)

    def generate(self, captions: list[str]) -> list[str]:
        self.calls.append(list(captions))
        return [f"{caption} loudly" for caption in captions]


@pytest.fixture(scope="module")
def setup():
    config = tiny_config("llama")
    model, processor = tiny_model(config), tiny_processor(config)
    inputs = processor([make_audio(s, seed=i) for i, s in enumerate(CLIP_SECONDS)], sampling_rate=16000)
    return model, processor, inputs


def _reference_forbidden(monkeypatch):
    """The stock generate must not run (the fast loop's result would then be the reference's by construction)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the reference generate ran")

    monkeypatch.setattr(LaacForConditionalGeneration, "generate", refuse)


def _spy_on_the_correction_path(monkeypatch) -> list[dict]:
    """Record every call of the one post-correction helper (then run it)."""
    calls = []
    original = LaacForConditionalGeneration._generate_and_correct

    def spy(self, generate_ids, input_ids, correct, tokenizer, processor):
        calls.append({"correct": correct, "tokenizer": tokenizer, "processor": processor})
        return original(self, generate_ids, input_ids, correct, tokenizer, processor)

    monkeypatch.setattr(LaacForConditionalGeneration, "_generate_and_correct", spy)
    return calls


# -- generate() ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [{}, {"num_beams": 1, "max_new_tokens": 6}], ids=["beam3", "greedy"])
def test_without_correct_generate_returns_the_token_ids_as_before(setup, settings):
    model, processor, inputs = setup
    reference = GenerationMixin.generate(model, **inputs, **settings)  # what generate() returned before correct=
    for correct in ({}, {"correct": None}, {"correct": False}):
        for output in (model.generate(**inputs, **settings, **correct), fast.generate(model, **inputs, **settings, **correct)):
            assert type(output) is torch.Tensor
            assert torch.equal(output, reference)


def test_generate_correct_gives_raw_and_corrected_captions(setup, detector_folder):  # noqa: F811
    model, processor, inputs = setup
    sequences = model.generate(**inputs)
    raw = processor.decode_captions(sequences, inputs["input_ids"])
    assert len(set(raw)) >= 2, raw  # distinct captions, so the gate below can split them
    detector = ErrorDetector.from_pretrained(str(detector_folder))
    probabilities = detector(raw)
    threshold = sorted(set(probabilities))[0]  # the lowest-scored caption(s) stay, the others are rewritten
    corrector = AppendingCorrector()
    post_corrector = PostCorrector(threshold=threshold, detector=detector, corrector=corrector)

    output = model.generate(**inputs, correct=post_corrector, tokenizer=processor.tokenizer)
    assert isinstance(output, LaacGenerateCorrectedOutput)
    assert torch.equal(output.sequences, sequences)
    assert output.captions == raw
    flagged = [p > threshold for p in probabilities]
    assert 0 < sum(flagged) < len(raw)
    assert output.corrected_captions == [f"{c} loudly" if f else c for c, f in zip(raw, flagged)]
    assert output.corrected == flagged
    assert output.error_probabilities == pytest.approx(probabilities, abs=1e-6)
    assert output.reasons == ["corrected" if f else "below_threshold" for f in flagged]
    assert sum(len(call) for call in corrector.calls) == len({c for c, f in zip(raw, flagged) if f})  # once each
    assert output.records()[0] == {
        "caption": output.corrected_captions[0], "raw_caption": raw[0], "error_prob": output.error_probabilities[0],
        "corrected": flagged[0], "reason": output.reasons[0],
    }  # fmt: skip


def test_fast_loop_and_stock_generate_correct_alike(setup, monkeypatch):
    model, processor, inputs = setup
    post_corrector = PostCorrector(mode="always", detector="/never/loaded", corrector=AppendingCorrector())
    stock = model.generate(**inputs, correct=post_corrector, processor=processor)
    calls = _spy_on_the_correction_path(monkeypatch)
    _reference_forbidden(monkeypatch)
    quick = fast.generate(model, **inputs, correct=post_corrector, tokenizer=processor.tokenizer)
    assert len(calls) == 1  # the fast loop went through the model's helper, without the reference
    assert isinstance(quick, LaacGenerateCorrectedOutput)
    assert torch.equal(quick.sequences, stock.sequences)
    assert quick.records() == stock.records()
    assert stock.corrected_captions == [f"{c} loudly" for c in stock.captions]


def test_encoder_decoder_text_model_decodes_without_a_prompt():
    config = tiny_config("bart")
    model, processor = tiny_model(config), tiny_processor(config)
    inputs = processor([make_audio(2.0), make_audio(4.0, seed=1)], sampling_rate=16000)
    sequences = model.generate(**inputs)
    output = model.generate(**inputs, correct="never", processor=processor)
    assert torch.equal(output.sequences, sequences)
    assert output.captions == processor.decode_captions(sequences, inputs["input_ids"]) == output.corrected_captions


def test_return_dict_in_generate_is_kept_beside_the_captions(setup):
    model, processor, inputs = setup
    output = model.generate(
        **inputs, correct="never", tokenizer=processor.tokenizer, return_dict_in_generate=True, output_scores=True
    )
    assert torch.equal(output.sequences, output.generate_output.sequences)
    assert output.generate_output.scores is not None
    assert output.corrected_captions == output.captions and set(output.reasons) == {"gate_never"}


def test_correct_without_a_tokenizer_or_with_bad_settings_is_a_clear_error(setup, monkeypatch):
    model, processor, inputs = setup

    def no_generation(*args, **kwargs):
        raise AssertionError("generation ran before the arguments were checked")

    monkeypatch.setattr(GenerationMixin, "generate", no_generation)
    for generate in (model.generate, lambda **kw: fast.generate(model, **kw)):
        with pytest.raises(ValueError, match=r"needs the text tokenizer: pass tokenizer=processor.tokenizer"):
            generate(**inputs, correct=True)
        with pytest.raises(PostCorrectionError, match="correct must be a bool"):
            generate(**inputs, correct=3, tokenizer=processor.tokenizer)
        with pytest.raises(PostCorrectionError, match="mode must be one of"):
            generate(**inputs, correct="sometimes", processor=processor)
        with pytest.raises(ValueError, match="cannot decode with a int"):
            generate(**inputs, correct=True, tokenizer=7)
    monkeypatch.undo()
    with pytest.raises(PostCorrectionError, match="post-correction failed"):  # the detector loads after decoding
        model.generate(**inputs, correct={"detector": str(Path(__file__).parent / "no-such-detector.ckpt")},
                       tokenizer=processor.tokenizer)


REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["laac"] = None  # everything comes from the folder
    import numpy as np
    from transformers import AutoModel, AutoProcessor
    folder = sys.argv[1]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    rng = np.random.default_rng(0)
    inputs = processor([(0.1 * rng.standard_normal(s * 16000)).astype(np.float32) for s in (2, 5)], sampling_rate=16000)
    ids = model.generate(**inputs)
    shout = lambda captions: [{"caption": c.upper(), "error_prob": 0.95, "corrected": True} for c in captions]
    fast = model.generate(**inputs, correct=shout, tokenizer=processor.tokenizer)
    stock = type(model).generate(model, **inputs, correct="never", processor=processor)
    print(json.dumps({"module": type(fast).__module__, "same_ids": fast.sequences.tolist() == ids.tolist(),
                      "fast": fast.records(), "stock": stock.records(), "ids_type": type(ids).__name__}))
    """
)


def test_a_checkpoint_post_corrects_in_generate_without_laac_installed(tmp_path):
    folder = save_tiny_model(tmp_path / "model")
    result = run_without_laac(REMOTE_SCRIPT, [str(folder)], tmp_path, OMP_NUM_THREADS="1")
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["module"].startswith("transformers_modules") and report["ids_type"] == "Tensor"
    assert report["same_ids"]
    assert [r["caption"] for r in report["fast"]] == [r["raw_caption"].upper() for r in report["fast"]]
    assert [r["raw_caption"] for r in report["stock"]] == [r["raw_caption"] for r in report["fast"]]
    assert all(r["reason"] == "gate_never" and r["caption"] == r["raw_caption"] for r in report["stock"])


# -- pipeline and CLI ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corrector_model_dir(tmp_path_factory, detector_folder):  # noqa: F811
    """A tiny model whose config.corrector gates with the tiny detector at threshold 0 (everything is rewritten)."""
    settings = {"detector": str(detector_folder), "threshold": 0.0, "corrector_model": "appending-stand-in"}
    return save_tiny_model(tmp_path_factory.mktemp("laac-correct"), tiny_config("llama", corrector=settings))


@pytest.fixture
def appending_llm(monkeypatch):
    """CaptionCorrector.from_pretrained gives the scripted stand-in (the detector is the real tiny one)."""
    corrector = AppendingCorrector()
    monkeypatch.setattr(CaptionCorrector, "from_pretrained", classmethod(lambda cls, *args, **kwargs: corrector))
    return corrector


def test_pipeline_correct_goes_through_generate(corrector_model_dir, appending_llm, monkeypatch):
    captioner = pipeline("audio-captioning", model=str(corrector_model_dir), device="cpu")
    clips = [make_audio(s, seed=i) for i, s in enumerate(CLIP_SECONDS[:3])]
    raw = [r["caption"] for r in captioner(clips, sampling_rate=16000, batch_size=3)]
    calls = _spy_on_the_correction_path(monkeypatch)
    results = captioner(clips, sampling_rate=16000, batch_size=3, correct=True)
    assert len(calls) == 1 and calls[0]["correct"] is True and calls[0]["processor"] is captioner.processor
    assert [r["raw_caption"] for r in results] == raw
    assert [r["caption"] for r in results] == [f"{c} loudly" for c in raw]
    assert all(r["corrected"] is True and 0.0 < r["error_prob"] < 1.0 for r in results)
    # long audio: every segment corrected in generate(), the overall caption is a segment's (chosen on raw captions)
    long = captioner(make_audio(25.0), sampling_rate=16000, segment_seconds=10, correct=True)
    assert all(s["caption"] == f"{s['raw_caption']} loudly" for s in long["segments"])
    assert {k: long[k] for k in ("caption", "raw_caption")} in [
        {k: s[k] for k in ("caption", "raw_caption")} for s in long["segments"]]  # fmt: skip


def test_pipeline_raises_a_corrector_failure_even_when_recording_errors(corrector_model_dir):
    captioner = pipeline("audio-captioning", model=str(corrector_model_dir), device="cpu")
    broken = {"detector": str(corrector_model_dir / "no-such-detector.ckpt")}
    with pytest.raises(PostCorrectionError, match="post-correction failed"):
        list(captioner.iter_captions([make_audio(1.0), make_audio(2.0)], sampling_rate=16000, on_error="record",
                                     correct=broken))


def test_cli_caption_correct_goes_through_generate(corrector_model_dir, appending_llm, monkeypatch, tmp_path):
    paths = []
    for seed, seconds in enumerate(CLIP_SECONDS[:3]):
        paths.append(str(tmp_path / f"clip{seed}.wav"))
        sf.write(paths[-1], make_audio(seconds, seed), 16000)
    plain, corrected = tmp_path / "plain.jsonl", tmp_path / "corrected.jsonl"
    assert cli.main(["caption", "-q", "-m", str(corrector_model_dir), "-o", str(plain), *paths]) == 0
    calls = _spy_on_the_correction_path(monkeypatch)
    from laac.correction import correct_captions

    monkeypatch.setattr(correct_captions, "hub_model_problem", lambda model_id: None)  # the stand-in LLM "loads"
    assert cli.main(["caption", "-q", "-m", str(corrector_model_dir), "--correct", "-o", str(corrected), *paths]) == 0
    # --correct is the model's corrector settings, resolved to what this machine can load (here: as configured)
    assert calls and all(call["correct"]["corrector_model"] == "appending-stand-in" for call in calls)
    assert all(call["correct"]["mode"] == "auto" and call["correct"]["threshold"] == 0.0 for call in calls)
    before = {r["path"]: r for r in map(json.loads, plain.read_text().splitlines())}
    after = {r["path"]: r for r in map(json.loads, corrected.read_text().splitlines())}
    assert set(after) == {os.path.normpath(p) for p in paths}
    for path, record in after.items():
        assert record["raw_caption"] == before[path]["caption"]
        assert record["caption"] == f"{record['raw_caption']} loudly" and record["corrected"] is True
        assert isinstance(record["error_prob"], float)


# -- Trainer evaluation ----------------------------------------------------------------------------------------------


def test_parse_correct_setting():
    assert [parse_correct_setting(v) for v in (None, False, "false", "", "none")] == [None] * 5
    assert [parse_correct_setting(v) for v in (True, "true", "True")] == [True] * 3
    assert parse_correct_setting("never") == "never"
    assert parse_correct_setting('{"threshold": 0.5}') == {"threshold": 0.5}
    assert parse_correct_setting({"mode": "always"}) == {"mode": "always"}
    with pytest.raises(ValueError, match="'sometimes'.*gate mode"):
        parse_correct_setting("sometimes")
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_correct_setting("{threshold: 0.5}")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(str(root), {"validation": 4}, seed=0, num_workers=1)
    return root


def test_evaluate_model_scores_raw_and_corrected_side_by_side(setup, corpus):
    model, processor, _ = setup
    clips = load_clotho(str(corpus / "clotho_captions_validation.csv"), str(corpus / "validation"))
    post_corrector = PostCorrector(mode="always", detector="/never/loaded", corrector=AppendingCorrector())
    kwargs = {"generation_kwargs": {"max_new_tokens": 8}, "metrics": "bleu_1,cider_d"}
    plain = evaluate_model(model, processor, clips, **kwargs)
    result = evaluate_model(model, processor, clips, correct=post_corrector, **kwargs)
    raw = [p["prediction"] for p in result.predictions]
    assert raw == [p["prediction"] for p in plain.predictions]
    assert [p["corrected_prediction"] for p in result.predictions] == [f"{c} loudly" for c in raw]
    numeric = [name for name, value in result.metrics.items() if isinstance(value, float)]
    assert numeric == ["bleu_1", "corrected_bleu_1", "cider_d", "corrected_cider_d"]  # side by side
    assert result.metrics["bleu_1"] == plain.metrics["bleu_1"]
    references = [p["references"] for p in result.predictions]
    expected = compute_dcase_metrics([f"{c} loudly" for c in raw], references, metrics=["bleu_1", "cider_d"])
    assert result.metrics["corrected_cider_d"] == pytest.approx(expected["cider_d"])
    assert result.metrics["corrected_bleu_1"] == pytest.approx(expected["bleu_1"])
    assert result.metrics["corrected_bleu_1"] != result.metrics["bleu_1"]
    assert result.metrics["post_correction_rewritten"] == len(raw)
    assert "corrected_bleu_1" not in plain.metrics


def test_train_eval_correct_reports_corrected_metrics(corrector_model_dir, corpus, appending_llm, monkeypatch, tmp_path):
    from laac.train import main

    calls = _spy_on_the_correction_path(monkeypatch)
    source = f"clotho:csv={corpus}/clotho_captions_validation.csv,audio_dir={corpus}/validation"
    results = main([
        "--model_name_or_path", str(corrector_model_dir), "--output_dir", str(tmp_path / "out"), "--do_eval",
        "--eval_sources", source, "--eval_metrics", "bleu_1", "--generation_max_new_tokens", "8",
        "--eval_correct", "true", "--report_to", "none",
    ])  # fmt: skip
    assert calls and all(call["correct"] is True for call in calls)
    metrics = results["eval"]
    names = [name for name in metrics if name.endswith("bleu_1")]
    assert names == ["eval_bleu_1", "eval_corrected_bleu_1"]
    assert metrics["eval_post_correction_rewritten"] == 4
    report = json.loads((tmp_path / "out" / "eval_metrics_step_0.json").read_text())["metrics"]
    assert report["corrected_bleu_1"] == pytest.approx(metrics["eval_corrected_bleu_1"])
    predictions = json.loads((tmp_path / "out" / "eval_predictions_step_0.json").read_text())
    assert all(p["corrected_prediction"] == f"{p['prediction']} loudly" for p in predictions)
