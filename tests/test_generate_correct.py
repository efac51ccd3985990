"""The post-correction hook: generate(post_processor=...) returns the ids' captions raw and corrected, one path for
the stock generate, the fast loop, the pipeline, the CLI and Trainer evaluation; `correct=` is parsed once.

The corrector pieces are the tiny offline ones of the corrector tests: the tiny FENSE-format detector folder of
tests/test_pipeline.py and the scripted LLM stand-in of tests/test_corrector.py (no Hub, no LLM download).
"""

import functools
import json
import os
import textwrap
from pathlib import Path
from types import SimpleNamespace

import laac  # noqa: F401  registers the LAAC classes and the task
import pytest
import soundfile as sf
import torch
from laac.cli import main as cli
from laac.cli.captioning import BatchSizes, caption_records
from laac import FAST_DECODING
from laac.correction.post_corrector import (
    REPORT_ANSWER_RULES,
    CaptionCorrector,
    CaptionPostProcessor,
    CorrectorSettings,
    ErrorDetector,
    LaacGenerateCorrectedOutput,
    PostCorrection,
    PostCorrectionError,
    PostCorrector,
)
from laac.data.loaders import load_clotho
from laac.data.synthetic_corpus import write_corpus
from laac.evaluation.metrics import compute_dcase_metrics
from laac.training.trainer import LaacTrainer, evaluate_model, parse_correct_setting
from transformers import GenerationMixin, pipeline

from tests.laac_tester import ScriptedCorrector, make_audio, run_without_laac, save_tiny_model, tiny_config, tiny_model, tiny_processor

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


OPT_IN = {"custom_generate": FAST_DECODING, "trust_remote_code": True}  # the opt-in fast decoding loop


def _reference_forbidden(monkeypatch):
    """Stock decoding must not run (the fast loop's result would then be the reference's by construction)."""
    for name in ("_sample", "_beam_search"):
        original = getattr(GenerationMixin, name)

        @functools.wraps(original)  # transformers reads the signature to route custom_generate arguments
        def refuse(*args, **kwargs):
            raise AssertionError("the reference decoding loop ran")

        monkeypatch.setattr(GenerationMixin, name, refuse)


def _spy_on_the_hook(monkeypatch) -> list[dict]:
    """Record every call of the generation hook (then run it): its corrector and the prompt ids it was handed."""
    calls = []
    original = CaptionPostProcessor.__call__

    def spy(self, generate_output, prompt_ids=None):
        calls.append({"hook": self, "corrector": self.corrector, "prompt_ids": prompt_ids})
        return original(self, generate_output, prompt_ids)

    monkeypatch.setattr(CaptionPostProcessor, "__call__", spy)
    return calls


# -- generate() ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [{}, {"num_beams": 1, "max_new_tokens": 6}], ids=["beam3", "greedy"])
def test_without_a_hook_generate_returns_the_token_ids(setup, settings):
    model, processor, inputs = setup
    reference = GenerationMixin.generate(model, **inputs, **settings)
    for hook in ({}, {"post_processor": None}):
        stock, fast = model.generate(**inputs, **settings, **hook), model.generate(**inputs, **settings, **hook, **OPT_IN)
        for output in (stock, fast):
            assert type(output) is torch.Tensor
            assert torch.equal(output, reference)


def test_generate_with_the_hook_gives_raw_and_corrected_captions(setup, detector_folder):
    model, processor, inputs = setup
    sequences = model.generate(**inputs)
    raw = processor.decode_captions(sequences, inputs["input_ids"])
    assert len(set(raw)) >= 2, raw  # distinct captions, so the gate below can split them
    detector = ErrorDetector.from_pretrained(str(detector_folder))
    probabilities = detector(raw)
    threshold = sorted(set(probabilities))[0]  # the lowest-scored caption(s) stay, the others are rewritten
    corrector = AppendingCorrector()
    post_corrector = PostCorrector(threshold=threshold, detector=detector, corrector=corrector)

    output = model.generate(**inputs, post_processor=post_corrector.for_tokenizer(processor.tokenizer))
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


def test_the_hook_corrects_each_distinct_caption_once(setup):
    model, processor, inputs = setup
    seen = []

    def shout(captions):
        seen.append(list(captions))
        return [{"caption": c.upper()} for c in captions]

    one_clip = {key: value[:1].repeat(3, *[1] * (value.dim() - 1)) for key, value in inputs.items()}  # 3 copies
    output = model.generate(**one_clip, post_processor=CaptionPostProcessor(processor, shout))
    assert len(set(output.captions)) == 1 and len(output.captions) == 3
    assert seen == [[output.captions[0]]]
    assert output.corrected_captions == [output.captions[0].upper()] * 3 and output.corrected == [True] * 3
    assert output.error_probabilities == [None] * 3


def test_fast_loop_and_stock_generate_call_the_hook_alike(setup, monkeypatch):
    model, processor, inputs = setup
    post_corrector = PostCorrector(mode="always", detector="/never/loaded", corrector=AppendingCorrector())
    hook = post_corrector.for_tokenizer(processor)
    calls = _spy_on_the_hook(monkeypatch)
    stock = model.generate(**inputs, post_processor=hook)
    _reference_forbidden(monkeypatch)
    quick = model.generate(**inputs, post_processor=hook, **OPT_IN)
    assert len(calls) == 2 and all(torch.equal(call["prompt_ids"], inputs["input_ids"]) for call in calls)
    assert isinstance(quick, LaacGenerateCorrectedOutput)
    assert torch.equal(quick.sequences, stock.sequences)
    assert quick.records() == stock.records()
    assert stock.corrected_captions == [f"{c} loudly" for c in stock.captions]


def test_encoder_decoder_text_model_decodes_without_a_prompt(monkeypatch):
    config = tiny_config("bart")
    model, processor = tiny_model(config), tiny_processor(config)
    inputs = processor([make_audio(2.0), make_audio(4.0, seed=1)], sampling_rate=16000)
    sequences = model.generate(**inputs)
    calls = _spy_on_the_hook(monkeypatch)
    hook = PostCorrector(mode="never").for_tokenizer(processor.tokenizer)
    stock, fast = model.generate(**inputs, post_processor=hook), model.generate(**inputs, post_processor=hook, **OPT_IN)
    for output in (stock, fast):
        assert torch.equal(output.sequences, sequences)
        assert output.captions == processor.decode_captions(sequences, inputs["input_ids"]) == output.corrected_captions
    assert [call["prompt_ids"] for call in calls] == [None, None]


def test_return_dict_in_generate_is_kept_beside_the_captions(setup):
    model, processor, inputs = setup
    hook = PostCorrector(mode="never").for_tokenizer(processor.tokenizer)
    output = model.generate(**inputs, post_processor=hook, return_dict_in_generate=True, output_scores=True)
    assert torch.equal(output.sequences, output.generate_output.sequences)
    assert output.generate_output.scores is not None
    assert output.corrected_captions == output.captions and set(output.reasons) == {"gate_never"}


def test_correct_is_parsed_once_into_one_typed_request():
    defaults = CorrectorSettings(threshold=0.5).to_dict()
    assert [PostCorrection.parse(off, defaults) for off in (None, False)] == [None, None]
    assert PostCorrection.parse(True, defaults).settings == CorrectorSettings(threshold=0.5)
    assert PostCorrection.parse("never", defaults).settings == CorrectorSettings(threshold=0.5, mode="never")
    request = PostCorrection.parse({"mode": "always", "device": "cpu"}, defaults)
    assert request.settings == CorrectorSettings(threshold=0.5, mode="always") and request.device == "cpu"
    assert PostCorrection.parse(request) is request
    shout = lambda captions: [{"caption": c.upper()} for c in captions]  # noqa: E731
    assert PostCorrection.parse(shout).corrector is shout and PostCorrection.parse(shout).build() is shout
    built = PostCorrection.parse("never", defaults).build(device="cpu")
    assert isinstance(built, PostCorrector) and built.mode == "never" and built.threshold == 0.5
    assert built.is_loaded == {"detector": False, "corrector": False}  # models load on first use
    with pytest.raises(PostCorrectionError, match="correct must be a bool"):
        PostCorrection.parse(3, defaults)
    with pytest.raises(PostCorrectionError, match="mode must be one of"):
        PostCorrection.parse("sometimes", defaults)
    with pytest.raises(PostCorrectionError, match="unknown post-corrector settings"):
        PostCorrection.parse({"treshold": 0.5}, defaults)


def test_a_bad_hook_is_refused_before_decoding(setup, monkeypatch):
    model, processor, inputs = setup

    def no_generation(*args, **kwargs):
        raise AssertionError("generation ran before the arguments were checked")

    monkeypatch.setattr(GenerationMixin, "generate", no_generation)
    with pytest.raises(ValueError, match="cannot decode with a int"):
        CaptionPostProcessor(7, PostCorrector(mode="never"))
    with pytest.raises(PostCorrectionError, match="must be callable"):
        CaptionPostProcessor(processor, "not a corrector")
    monkeypatch.undo()
    with pytest.raises(ValueError, match="not used by the model.*correct"):  # an unknown keyword is not ignored
        model.generate(**inputs, correct=True)
    missing = {"detector": str(Path(__file__).parent / "no-such-detector.ckpt")}
    hook = CaptionPostProcessor(processor.tokenizer, PostCorrection.parse(missing))
    with pytest.raises(PostCorrectionError, match="post-correction failed"):  # the detector loads after decoding
        model.generate(**inputs, post_processor=hook)


def test_post_corrector_saves_and_loads_its_own_config(tmp_path, detector_folder):
    post_corrector = PostCorrector(threshold=0.25, detector=str(detector_folder), corrector="some/instruct-llm")
    path = post_corrector.save_pretrained(tmp_path / "corrector")
    assert os.path.basename(path) == "post_corrector_config.json" and os.listdir(tmp_path / "corrector") == [
        "post_corrector_config.json"]  # fmt: skip
    loaded = PostCorrector.from_pretrained(tmp_path / "corrector", device="cpu")
    assert loaded.to_settings() == post_corrector.to_settings() and loaded.device == "cpu"
    assert loaded.settings.detector == str(detector_folder) and loaded.settings.corrector_model == "some/instruct-llm"
    assert PostCorrector.from_pretrained(path, mode="never").mode == "never"  # the file itself; overrides win
    # a model folder: the post-corrector its config names, a saved one or (configs saved before) its settings
    model_dir = save_tiny_model(tmp_path / "model", tiny_config("llama", post_corrector=str(tmp_path / "corrector")))
    assert PostCorrector.from_pretrained(model_dir).to_settings() == post_corrector.to_settings()
    assert PostCorrection.parse(True, str(tmp_path / "corrector")).settings == post_corrector.settings
    old_dir = save_tiny_model(tmp_path / "old", tiny_config("llama", corrector={"threshold": 0.75}))
    assert PostCorrector.from_pretrained(old_dir).threshold == 0.75
    assert PostCorrector.from_pretrained(save_tiny_model(tmp_path / "plain")).to_settings() == CorrectorSettings().to_dict()
    with pytest.raises(ValueError, match="no post-corrector settings at"):
        PostCorrector.from_pretrained(tmp_path / "empty")
    with pytest.raises(PostCorrectionError, match="default post-corrector .* cannot be read"):
        PostCorrection.parse(True, str(tmp_path / "empty"))


REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["laac"] = None  # everything comes from the folder
    import numpy as np
    from transformers import AutoModel, AutoProcessor, pipeline
    folder = sys.argv[1]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    rng = np.random.default_rng(0)
    inputs = processor([(0.1 * rng.standard_normal(s * 16000)).astype(np.float32) for s in (2, 5)], sampling_rate=16000)
    ids = model.generate(**inputs)
    hooked = model.generate(**inputs, post_processor=lambda out, prompt_ids: (out, processor.decode_captions(out, prompt_ids)))
    captioner = pipeline("audio-captioning", model=folder, trust_remote_code=True, device="cpu")
    clip = (0.1 * rng.standard_normal(32000)).astype(np.float32)
    plain = captioner(clip, sampling_rate=16000, correct=False)
    try:
        captioner(clip, sampling_rate=16000, correct=True)
        error = None
    except ValueError as raised:
        error = f"{type(raised).__name__}: {raised}"
    print(json.dumps({"same_ids": hooked[0].tolist() == ids.tolist(), "captions": hooked[1],
                      "decoded": processor.decode_captions(ids, inputs["input_ids"]), "plain": plain, "error": error}))
    """
)


def test_a_checkpoint_without_laac_installed_captions_and_names_the_package_for_correct(tmp_path):
    """The post-corrector does not travel: generate's hook is any callable, and correct= asks for the package."""
    folder = save_tiny_model(tmp_path / "model")
    assert not list(folder.glob("*corrector*"))  # neither its code nor its settings sit next to the weights
    result = run_without_laac(REMOTE_SCRIPT, [str(folder)], tmp_path, OMP_NUM_THREADS="1")
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["same_ids"] and report["captions"] == report["decoded"]
    assert set(report["plain"]) == {"caption"}
    assert report["error"].startswith("PostCorrectionError: correct=True needs the laac package")


# -- pipeline and CLI ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corrector_model_dir(tmp_path_factory, detector_folder):
    """A tiny model whose post-corrector gates with the tiny detector at threshold 0 (everything is rewritten)."""
    root = tmp_path_factory.mktemp("laac-correct")
    PostCorrector(threshold=0.0, detector=str(detector_folder), corrector="appending-stand-in").save_pretrained(
        root / "post-corrector"
    )
    return save_tiny_model(root / "model", tiny_config("llama", post_corrector=str(root / "post-corrector")))


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
    calls = _spy_on_the_hook(monkeypatch)
    results = captioner(clips, sampling_rate=16000, batch_size=3, correct=True)
    assert len(calls) == 1 and isinstance(calls[0]["corrector"], PostCorrector)
    # True: the post-corrector the model's config names
    assert calls[0]["corrector"].to_settings() == PostCorrector.from_pretrained(corrector_model_dir).to_settings()
    assert calls[0]["corrector"].threshold == 0.0
    assert calls[0]["hook"].tokenizer is captioner.processor.tokenizer
    assert [r["raw_caption"] for r in results] == raw
    assert [r["caption"] for r in results] == [f"{c} loudly" for c in raw]
    assert all(r["corrected"] is True and 0.0 < r["error_prob"] < 1.0 for r in results)
    # long audio: every segment corrected in generate(), the overall caption is a segment's (chosen on raw captions)
    long = captioner(make_audio(25.0), sampling_rate=16000, segment_seconds=10, correct=True)
    assert all(s["caption"] == f"{s['raw_caption']} loudly" for s in long["segments"])
    assert {k: long[k] for k in ("caption", "raw_caption")} in [
        {k: s[k] for k in ("caption", "raw_caption")} for s in long["segments"]]  # fmt: skip
    assert len({id(call["hook"]) for call in calls}) == 1  # one hook per request, reused across calls and batches


def test_pipeline_raises_a_corrector_failure_even_when_recording_errors(corrector_model_dir):
    captioner = pipeline("audio-captioning", model=str(corrector_model_dir), device="cpu")
    broken = {"detector": str(corrector_model_dir / "no-such-detector.ckpt")}
    with pytest.raises(PostCorrectionError, match="post-correction failed"):
        list(caption_records(captioner, [make_audio(1.0), make_audio(2.0)], BatchSizes(2), sampling_rate=16000,
                             correct=broken))


def test_cli_caption_correct_goes_through_generate(corrector_model_dir, appending_llm, monkeypatch, tmp_path):
    paths = []
    for seed, seconds in enumerate(CLIP_SECONDS[:3]):
        paths.append(str(tmp_path / f"clip{seed}.wav"))
        sf.write(paths[-1], make_audio(seconds, seed), 16000)
    plain, corrected = tmp_path / "plain.jsonl", tmp_path / "corrected.jsonl"
    assert cli.main(["caption", "-q", "-m", str(corrector_model_dir), "-o", str(plain), *paths]) == 0
    calls = _spy_on_the_hook(monkeypatch)
    from laac.correction import correct_captions

    monkeypatch.setattr(correct_captions, "hub_model_problem", lambda model_id: None)  # the stand-in LLM "loads"
    assert cli.main(["caption", "-q", "-m", str(corrector_model_dir), "--correct", "-o", str(corrected), *paths]) == 0
    # --correct is the model's corrector settings, resolved to what this machine can load (here: as configured)
    settings = [call["corrector"].settings for call in calls]
    assert settings and all(s.corrector_model == "appending-stand-in" for s in settings)
    assert all(s.mode == "auto" and s.threshold == 0.0 for s in settings)
    before = {r["path"]: r for r in map(json.loads, plain.read_text().splitlines())}
    after = {r["path"]: r for r in map(json.loads, corrected.read_text().splitlines())}
    assert set(after) == {os.path.normpath(p) for p in paths}
    for path, record in after.items():
        assert record["raw_caption"] == before[path]["caption"]
        assert record["caption"] == f"{record['raw_caption']} loudly" and record["corrected"] is True
        assert isinstance(record["error_prob"], float)


# -- Trainer evaluation ----------------------------------------------------------------------------------------------


def test_parse_correct_setting():
    assert [parse_correct_setting(v) for v in (None, "false", "", "none")] == [None] * 4
    assert parse_correct_setting(False) is False  # a YAML value passes; PostCorrection.parse reads it as off
    assert [parse_correct_setting(v) for v in (True, "true", "True")] == [True] * 3
    assert parse_correct_setting("never") == "never"
    assert parse_correct_setting('{"threshold": 0.5}') == {"threshold": 0.5}
    assert parse_correct_setting({"mode": "always"}) == {"mode": "always"}
    with pytest.raises(ValueError, match="'sometimes'.*gate mode"):
        parse_correct_setting("sometimes")
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_correct_setting("{threshold: 0.5}")


def test_trainer_builds_its_eval_corrector_once(setup):
    model, _, _ = setup
    trainer = SimpleNamespace(args=SimpleNamespace(eval_correct="never"), model=model)  # what the method reads
    corrector = LaacTrainer._eval_post_corrector(trainer)
    assert isinstance(corrector, PostCorrector) and corrector.mode == "never"
    assert corrector.threshold == CorrectorSettings().threshold  # config.post_corrector None: the report's
    assert LaacTrainer._eval_post_corrector(trainer) is corrector  # every later evaluation: the same object
    off = SimpleNamespace(args=SimpleNamespace(eval_correct=None), model=model)
    assert LaacTrainer._eval_post_corrector(off) is None


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

    calls = _spy_on_the_hook(monkeypatch)
    source = f"clotho:csv={corpus}/clotho_captions_validation.csv,audio_dir={corpus}/validation"
    results = main([
        "--model_name_or_path", str(corrector_model_dir), "--output_dir", str(tmp_path / "out"), "--do_eval",
        "--eval_sources", source, "--eval_metrics", "bleu_1", "--generation_max_new_tokens", "8",
        "--eval_correct", "true", "--report_to", "none",
    ])  # fmt: skip
    named = PostCorrector.from_pretrained(json.loads((corrector_model_dir / "config.json").read_text())["post_corrector"])
    assert calls and all(call["corrector"].to_settings() == named.to_settings() for call in calls)
    assert len({id(call["corrector"]) for call in calls}) == 1  # one corrector for the run: its models load once
    metrics = results["eval"]
    names = [name for name in metrics if name.endswith("bleu_1")]
    assert names == ["eval_bleu_1", "eval_corrected_bleu_1"]
    assert metrics["eval_post_correction_rewritten"] == 4
    report = json.loads((tmp_path / "out" / "eval_metrics_step_0.json").read_text())["metrics"]
    assert report["corrected_bleu_1"] == pytest.approx(metrics["eval_corrected_bleu_1"])
    predictions = json.loads((tmp_path / "out" / "eval_predictions_step_0.json").read_text())
    assert all(p["corrected_prediction"] == f"{p['prediction']} loudly" for p in predictions)
