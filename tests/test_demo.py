"""`laac demo` end to end at toy scale: every stage runs and the report, model and fresh-process check exist."""

import json
import os

import pytest

from laac.data.loaders import feature_cache_key
from laac.demo import progress as demo_progress, recipe as demo_recipe, run as demo, stages as demo_stages
from laac.demo.run import main
from laac.modeling_laac import LaacForConditionalGeneration
from laac.processing_laac import LaacProcessor



def test_demo_end_to_end_at_toy_scale(tmp_path, capsys, detector_folder):
    out, model_dir = tmp_path / "demo", tmp_path / "model"
    user_file = tmp_path / "mine.wav"
    import soundfile as sf

    from tests.laac_tester import make_audio

    sf.write(user_file, make_audio(12.0, rate=22050), 22050)
    code = main([
        str(user_file), "--out", str(out), "--model-dir", str(model_dir), "--n-train", "48", "--n-test", "8",
        "--tagger-steps", "3", "--caption-steps", "3", "--baseline-steps", "2", "--detector", str(detector_folder),
        "--report-clips", "4",
    ])  # fmt: skip
    assert code == 0
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert set(metrics) == {"LAAC (demo)", "blind baseline (silence)"}
    for system in metrics.values():
        assert system["cider_d"] is not None and system["meteor"] is not None
    html = (out / "report" / "index.html").read_text()
    assert html.count("<audio") == 5 and "mine.wav" in html  # 4 held-out clips + the user's file
    report = (out / "report" / "report.md").read_text()
    assert "4/4 held-out captions identical" in report  # the fresh process agrees with the in-process evaluation
    assert "blind baseline training loss (step: loss): 1: " in report  # its loss curve, to show it flattened
    assert "post-corrector on the model's captions:" in report and "of 5 flagged" in report  # 4 clips + the file
    assert "detector on 8 held-out references and corruptions of them" in report  # the mixture's figures, then
    assert "detector, repeat_word: at FENSE position: ROC-AUC" in report  # one line per error kind
    printed = capsys.readouterr().out
    assert "[demo] 1/7 corpus" in printed and "[demo] 7/7 post-correction" in printed  # every stage says where it is
    fresh = json.loads((out / "fresh_process_captions.json").read_text())
    assert fresh[-1]["path"] == str(user_file) and "caption" in fresh[-1]
    LaacForConditionalGeneration.from_pretrained(model_dir)  # the model `laac caption` will use
    timings = json.loads((out / "report" / "timings.json").read_text())
    stages = {name: seconds for name, seconds in timings.items() if name != "total"}
    assert "captioner training" in stages and abs(timings["total"] - sum(stages.values())) <= 0.1
    # the stage benchmark reruns the stages after the tagger on this run's corpus and initial model
    from laac.benchmarks.demo_stages import main as demo_stages

    result = demo_stages([
        "--demo-dir", str(out), "--caption-steps", "3", "--baseline-steps", "2", "--detector", str(detector_folder)
    ])  # fmt: skip
    assert set(result["seconds"]) == {"captioner training", "evaluation", "blind baseline", "post-correction"}
    assert result["corrupted"]["captions"] == 8  # the toy's 8 held-out clips


def test_tagging_collator_crops_training_windows_and_pads():
    import torch
    from laac.demo.stages import TaggingCollator
    from laac.feature_extraction_laac import LaacFeatureExtractor

    mels = [torch.arange(64 * 1500, dtype=torch.float32).reshape(64, 1500), torch.randn(64, 300)]
    examples = [{"row": 0, "labels": [1.0, 0.0]}, {"row": 1, "labels": [0.0, 1.0]}]
    torch.manual_seed(0)
    batch = TaggingCollator(mels, LaacFeatureExtractor(padding_value=-5.0), max_frames=1000)(examples)
    assert batch["input_features"].shape == (2, 64, 1000)
    assert batch["feature_attention_mask"].sum(-1).tolist() == [1000, 300]
    start = int(batch["input_features"][0, 0, 0])  # the window of clip 0 is a contiguous run of its frames
    assert 0 <= start <= 500 and torch.equal(batch["input_features"][0], mels[0][:, start : start + 1000])
    assert torch.equal(batch["input_features"][1, :, :300], mels[1])
    assert bool((batch["input_features"][1, :, 300:] == -5.0).all())
    assert batch["labels"].tolist() == [[1.0, 0.0], [0.0, 1.0]]
    whole = TaggingCollator(mels, LaacFeatureExtractor(), max_frames=1000, train=False)(examples)
    assert whole["input_features"].shape == (2, 64, 1500)  # evaluation sees whole clips


def test_progress_forecast(monkeypatch, capsys):
    now = [0.0]
    monkeypatch.setattr(demo_progress.time, "perf_counter", lambda: now[0])
    progress = demo_progress.DemoProgress({"corpus": 10.0, "training": 40.0}, speed=0.5, every=0.0)  # a 2x faster machine
    progress.begin("corpus")  # estimates halved: 5 s + 20 s
    assert progress.left() == (5.0, 25.0)
    now[0] = 7.0
    assert progress.end() == 7.0  # 2 s over: later stages scaled by (7 + 60) / (5 + 60), not by 7 / 5
    progress.begin("training")
    assert progress.left() == pytest.approx((20 * 67 / 65, 20 * 67 / 65))
    now[0] = 8.0
    progress.tick(done=1, total=40)  # the first step (after log-mels, warm-up) starts the stage's own clock
    now[0] = 15.0
    progress.tick(done=10, total=40)  # 9 steps in 7 s: 30 more take 23.3 s
    assert "(step 10/40): elapsed 0:15, about 0:23 left in this stage, 0:23 in all" in capsys.readouterr().out


def test_smollm2_text_model_runs_the_report_recipe_with_time_caps(tmp_path, monkeypatch):
    """`--text-model smollm2`: SmolLM2 from its converted folder under LoRA on both sides, time-capped, constant lr."""
    args = demo.parse_args(["--text-model", "smollm2", "--out", str(tmp_path)])
    recipe = demo.SMOLLM2_RECIPE
    assert (args.caption_steps, args.baseline_steps, args.caption_seconds) == (
        recipe.caption_steps, recipe.baseline_steps, recipe.caption_seconds
    )  # fmt: skip
    assert demo.parse_args([]).caption_steps == demo_recipe.RECIPES[demo.parse_args([]).recipe].caption_steps  # tiny default
    calls = []

    def fake_train_py(corpus, model_args, out_dir, steps, batch_size, learning_rate, seed, silence, callbacks, **kw):
        calls.append(dict(model_args=model_args, steps=steps, batch_size=batch_size, silence=silence, **kw,
                          caps=[c.seconds for c in callbacks if hasattr(c, "seconds")]))  # fmt: skip
        (tmp_path / os.path.basename(out_dir)).mkdir(exist_ok=True)
        state = {"global_step": 7, "log_history": [{"step": 5, "loss": 3.0}, {"step": 7, "loss": 2.5}]}
        (tmp_path / os.path.basename(out_dir) / "trainer_state.json").write_text(json.dumps(state))
        return os.path.join(out_dir, "export")

    monkeypatch.setattr(demo, "run_train_py", fake_train_py)
    monkeypatch.setattr(
        "laac.conversion.convert_gguf_causal_lm.smollm2_folder", lambda out_dir=None: "/converted/smollm2"
    )
    run = demo.DemoRun(args, demo_recipe.DemoShape(), demo_progress.DemoProgress({}), systems={}, notes=[])
    assert demo.run_captioner(run) == os.path.join(str(tmp_path), "captioner", "export")
    call = calls[0]
    flags = dict(zip(call["model_args"][::2], call["model_args"][1::2]))
    assert flags["--text_model"] == "/converted/smollm2" and flags["--audio_encoder"] == str(tmp_path / "encoder")
    assert (flags["--lora_text"], flags["--lora_audio"], flags["--lora_r"], flags["--lora_alpha"]) == (
        "true", "true", "8", "32"
    )  # fmt: skip
    overrides = json.loads(flags["--config_overrides"])
    assert overrides["qformer_config"]["hidden_size"] == demo_recipe.DemoShape().qformer_width
    assert overrides["token_order"] == "time"
    assert call["frozen_audio"] is False and call["scheduler"] == "constant_with_warmup"
    assert call["caps"] == [recipe.caption_seconds] and call["batch_size"] == recipe.batch_size
    assert f"7 of {recipe.caption_steps} steps within the {recipe.caption_seconds:.0f}-s cap" in run.notes[-1]
    assert "7: 2.500" in run.notes[-1]


def test_progress_caps_time_capped_stages():
    progress = demo_progress.DemoProgress({"corpus": 10.0, "training": 400.0}, speed=3.0, caps={"training": 100.0})
    assert progress.estimates == {"corpus": 30.0, "training": 100.0}


def test_the_demo_chooses_its_error_detector_in_order(monkeypatch, tmp_path):
    """Given, else the cached offline one, else FENSE's downloaded, else the offline one trained on Clotho's captions,
    else none (the demo runs without post-correction and its report says why)."""
    import urllib.error

    from laac.correction import post_corrector
    from laac.correction import train_error_detector
    from laac.data import public_data

    assert demo_stages.choose_detector(str(tmp_path)) == demo_stages.DetectorChoice(str(tmp_path), f"error detector: {tmp_path} (given)")
    assert demo_stages.choose_detector(None, no_correction=True).detector is None
    monkeypatch.setattr(train_error_detector, "needs_training", lambda: False)
    assert demo_stages.choose_detector(None).detector == demo_stages.ERROR_DETECTOR_DIR
    monkeypatch.setattr(train_error_detector, "needs_training", lambda: True)
    monkeypatch.setattr(post_corrector, "fense_checkpoint_file", lambda name: f"/hub/{name}.ckpt")
    assert demo_stages.choose_detector(None).detector == "echecker_clotho_audiocaps_base"

    def offline(name):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(post_corrector, "fense_checkpoint_file", offline)
    monkeypatch.setattr(public_data, "clotho_captions_csv", lambda: "/data/clotho.csv")
    choice = demo_stages.choose_detector(None)
    assert choice.train and choice.note == (
        "error detector: the offline one, trained in this run (on Clotho's development captions where they can be "
        "had, else on /data/clotho.csv)"
    )
    trained = []
    monkeypatch.setattr(train_error_detector, "ensure_error_detector", lambda: trained.append(1) or "offline-folder")
    assert demo_stages.error_detector(choice) == "offline-folder" and trained == [1]
    assert demo_stages.error_detector(demo_stages.choose_detector(str(tmp_path))) == str(tmp_path) and trained == [1]
    reference = demo_progress.REFERENCE_SECONDS
    assert demo_progress.stage_estimates(demo.parse_args([]), choice)["post-correction"] == (
        reference["post-correction"] + reference["offline detector training"])  # fmt: skip

    def unavailable(allow_download=True):
        raise public_data.DataUnavailable("Clotho's captions", "the download failed: offline", "Get them so.")

    monkeypatch.setattr(public_data, "clotho_captions_csv", unavailable)
    none = demo_stages.choose_detector(None)
    assert none.detector is None and "post-correction" not in demo_progress.stage_estimates(demo.parse_args([]), none)
    assert none.note.startswith("post-correction: skipped, no error detector can be had here: none cached in ")
    assert "cannot be downloaded (<urlopen error no network>)" in none.note and "(the download failed: offline)" in none.note
    assert "\n" not in none.note


def test_the_demo_post_corrects_with_smollm2_in_one_batch(tmp_path):
    corrector = demo_stages.post_corrector(str(tmp_path))
    assert corrector.settings.answer_rules == "strict" and corrector.threshold == 0.9
    assert corrector.settings.batch_size == 32  # the flagged captions in one batch (post_corrector's docstring)
    assert os.path.isfile(os.path.join(corrector.settings.corrector_model, "model.safetensors"))  # SmolLM2's folder


def test_laac_demo_stops_at_once_naming_the_fix(tmp_path, capsys):
    """`laac demo` with a --detector that does not exist: the reason on stderr, exit status 1, before any training."""
    from laac.cli.main import main as laac

    assert laac(["demo", "--out", str(tmp_path / "demo"), "--detector", str(tmp_path / "nowhere")]) == 1
    error = capsys.readouterr().err
    assert f"laac demo: --detector '{tmp_path / 'nowhere'}' does not exist" in error and "--no-correction" in error
    assert not (tmp_path / "demo").exists()  # stopped before the corpus was written


def test_a_delegated_command_that_cannot_read_its_input_says_so(tmp_path, capsys):
    from laac.cli.main import main as laac

    missing = tmp_path / "predictions.csv"
    assert laac(["evaluate", "--predictions", str(missing), "--references", str(missing)]) == 1
    assert capsys.readouterr().err == f"laac evaluate: error: [Errno 2] No such file or directory: '{missing}'\n"


def test_the_demo_without_a_detector_still_reports(monkeypatch, tmp_path):
    """No detector to be had: every stage but post-correction runs and the report says why in one line."""
    skipped = demo_stages.DetectorChoice(None, "post-correction: skipped, because")
    monkeypatch.setattr(demo, "choose_detector", lambda detector, no_correction: skipped)
    out = tmp_path / "demo"
    code = main([
        "--out", str(out), "--model-dir", str(tmp_path / "model"), "--n-train", "48", "--n-test", "8",
        "--tagger-steps", "2", "--caption-steps", "2", "--no-baseline", "--report-clips", "2",
    ])  # fmt: skip
    assert code == 0
    report = (out / "report" / "report.md").read_text()
    assert "post-correction: skipped, because" in report and "post-corrector on the model's captions" not in report


def test_the_tagger_hands_its_log_mels_to_the_captioner_as_its_collator_computes_them(tmp_path):
    """The tagger stage's development log-mels are keyed as train.py's collator keys them, and equal to its own."""
    import numpy as np
    from laac.data.loaders import LaacDataCollator, load_sources
    from laac.data.synthetic_corpus import write_corpus

    corpus = str(tmp_path / "corpus")
    write_corpus(corpus, {"development": 12, "validation": 4}, seed=3, num_workers=1)
    shape = demo_recipe.DemoShape(text_layers=1)
    log_mels = {}
    demo_stages.pretrain_encoder(corpus, str(tmp_path / "encoder"), shape, steps=1, seed=0, feature_cache=log_mels)
    init = demo_stages.build_initial_model(corpus, str(tmp_path / "encoder"), str(tmp_path / "init"), shape, seed=0)
    clips = load_sources([demo_stages.clotho_source(corpus, "development")])  # as train.py reads --train_sources
    collator = LaacDataCollator(
        LaacProcessor.from_pretrained(init), demo_stages.CAPTION_MAX_SECONDS, train=True, cache_features=True
    )
    examples = [{"id": clip["id"], "audio": clip["audio"], "caption": clip["captions"][0]} for clip in clips]
    assert len(log_mels) == len(examples) == 12
    for example in examples:
        np.testing.assert_array_equal(log_mels[feature_cache_key(example)], collator._log_mel(example))


def test_the_blind_baseline_trains_on_half_batches_at_twice_the_rate(monkeypatch):
    calls = []
    monkeypatch.setattr(demo_stages, "run_train_py", lambda *args, **kwargs: calls.append(args[3:8]) or "export")
    shape = demo_recipe.DemoShape()
    demo_stages.train_captioner("corpus", "init", "out", shape, steps=5, seed=0)
    demo_stages.train_captioner("corpus", "init", "blind", shape, steps=5, seed=0, silence=True)
    assert calls == [
        (5, 64, shape.caption_learning_rate, 0, False), (5, 32, 2 * shape.caption_learning_rate, 0, True)
    ]  # fmt: skip


def test_the_correction_check_reports_each_error_kind_and_the_rewrites(monkeypatch):
    """The post-correction stage's check: per error kind and position, the detector's figures on the references'
    corruptions; the mixture's precision / recall at the gate; how many of the first corrupted are rewritten."""
    references = ["a dog barks loudly while a car is passing by", "rain falls on a metal roof and thunder rumbles",
                  "a man speaks and a door closes slowly"]  # fmt: skip
    monkeypatch.setattr(demo_stages, "read_metadata", lambda corpus, split: [{"captions": [c, "other"]} for c in references])

    class FakeCorrector:  # flags what is not a clean reference, plus one clean reference
        threshold = 0.9

        def detector(self, texts, batch_size):
            return [0.95 if text not in references[1:] else 0.1 for text in texts]

        def __call__(self, captions):
            return [{"raw_caption": c, "caption": "fixed", "error_prob": 0.95, "corrected": True} for c in captions]

    check = demo_stages.correction_check(FakeCorrector(), "corpus", "evaluation", count=3, rewrite=2, seed=0)
    kinds = check["kinds"]
    assert {"repeat_word (fense)", "repeat_word (random)", "dangling_clause (random)", "mixture (random)"} <= set(kinds)
    assert all(row["clean_flagged"] == 1 and row["negatives"] == 3 and row["recall"] == 1.0 for row in kinds.values())
    assert check["precision"] == 3 / 4 and check["recall"] == 1.0 and check["clean_flagged"] == 1
    assert check["corrupted"] == {"captions": 2, "flagged": 2, "rewritten": 2} and len(check["examples"]) == 2
    notes = demo_stages.correction_notes(check, 3)
    assert notes[0].startswith("detector on 3 held-out references and corruptions of them, one error each, anywhere")
    assert "(1 of the 3 clean references flagged); corrector on the first 2 corrupted: 2 flagged, 2 rewritten" in (
        notes[0])  # fmt: skip
    assert any(n.startswith("detector, repeat_word: at FENSE position: ROC-AUC ") and "; anywhere: ROC-AUC" in n
               for n in notes)  # fmt: skip
    from laac.correction.corruptions import ERROR_KINDS

    assert notes[-1].startswith("rewrite: '") and len(notes) == 1 + len(ERROR_KINDS) + 1 + 2  # kinds, mixture, rewrites
