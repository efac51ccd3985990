"""Tests for the LAAC post-corrector: FENSE-format error detector, LLM corrector, gate, CLI, corruption rules."""

from __future__ import annotations

import argparse
import csv
import os
import json
import random

import pytest
import torch
from laac import processing_laac
from laac.configuration_laac import LaacConfig
from laac.correction import post_corrector
from laac.correction.correct_captions import main as correct_captions_main
from laac.correction.post_corrector import (
    CORRECTION_SYSTEM_PROMPT,
    FENSE_ERROR_TYPES,
    TRUNCATION_MARK,
    BertFlatClassifier,
    CaptionCorrector,
    Correction,
    ErrorDetector,
    STRICT_ANSWER_RULES,
    PostCorrection,
    PostCorrector,
    correction_problem,
    parse_corrected_caption,
    save_echecker_checkpoint,
)
from laac.correction.corruptions import apply_rule, corrupt_caption
from laac.correction.train_error_detector import split_by_clip
from transformers import BertConfig, BertModel, BertTokenizerFast

from tests.laac_tester import ScriptedCorrector

WORDS = (
    "a dog barks while car passes by and then man is speaking rain falls on the tin roof birds chirp loudly "
    "in of with door closes water flows people talk"
).split()
CAPTIONS = [
    "A dog barks while a car passes by.",
    "a man is speaking and then",
    "Rain falls on the tin roof",
    "birds chirp loudly loudly",
    "water flows",
]


def tiny_config(vocab_size: int) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=80,
    )


@pytest.fixture(scope="module")
def tiny_fense_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny random BERT saved exactly as FENSE does (model_type pointing at the Hub, legacy position_ids)."""
    folder = tmp_path_factory.mktemp("fense")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True)
    tokenizer_dir = folder / "tokenizer"
    tokenizer.save_pretrained(tokenizer_dir)
    config = tiny_config(len(vocab))
    config_dir = folder / "config"
    config.save_pretrained(config_dir)
    torch.manual_seed(0)
    classifier = BertFlatClassifier(config, num_classes=len(FENSE_ERROR_TYPES))
    state_dict = dict(classifier.state_dict())
    state_dict["encoder.embeddings.position_ids"] = torch.arange(80)[None]  # what transformers 4.2x saved
    checkpoint_file = folder / "echecker_tiny.ckpt"
    torch.save({"model_type": "bert-base-uncased", "num_classes": 6, "state_dict": state_dict}, checkpoint_file)
    return {
        "file": str(checkpoint_file), "tokenizer": str(tokenizer_dir), "config": str(config_dir),
        "classifier": classifier, "hf_tokenizer": tokenizer,
    }


@pytest.fixture(scope="module")
def tiny_detector(tiny_fense_checkpoint: dict) -> ErrorDetector:
    return ErrorDetector.from_pretrained(
        tiny_fense_checkpoint["file"], tiny_fense_checkpoint["tokenizer"], tiny_fense_checkpoint["config"]
    )


def fense_reference_probabilities(checkpoint: dict, captions: list[str]) -> list[float]:
    """FENSE's own recipe, re-done independently: strip, lower, pad to 64, BERT [CLS] -> linear -> sigmoid[-1]."""
    state = torch.load(checkpoint["file"], weights_only=True)["state_dict"]
    encoder = BertModel(tiny_config(checkpoint["hf_tokenizer"].vocab_size), add_pooling_layer=True).eval()
    encoder.load_state_dict({k[len("encoder."):]: v for k, v in state.items()
                             if k.startswith("encoder.") and "position_ids" not in k})
    texts = [__import__("re").sub(r"[^\w\s]", "", c).lower() for c in captions]
    batch = checkpoint["hf_tokenizer"](texts, truncation=True, padding="max_length", max_length=64,
                                       return_tensors="pt")
    with torch.no_grad():
        cls = encoder(**batch).last_hidden_state[:, 0]
        logits = cls @ state["clf.weight"].T + state["clf.bias"]
    return torch.sigmoid(logits[:, -1]).tolist()


# ------------------------------------------------------------------------------------------------ error detector
def test_detector_loads_fense_format_and_matches_reference(tiny_fense_checkpoint: dict, tiny_detector: ErrorDetector):
    probabilities = tiny_detector(CAPTIONS)
    expected = fense_reference_probabilities(tiny_fense_checkpoint, CAPTIONS)
    assert len(probabilities) == len(CAPTIONS)
    assert probabilities == pytest.approx(expected, abs=1e-5)
    assert all(0.0 < p < 1.0 for p in probabilities)
    assert tiny_detector.classifier.clf.out_features == 6


def test_detector_batching_equals_one_by_one(tiny_detector: ErrorDetector):
    batched = tiny_detector(CAPTIONS, batch_size=3)
    single = [tiny_detector([caption], batch_size=1)[0] for caption in CAPTIONS]
    assert batched == pytest.approx(single, abs=1e-5)


def test_detector_preprocessing(tiny_detector: ErrorDetector):
    noisy, clean = tiny_detector(["A DOG, barks!!", "a dog barks"])
    assert noisy == pytest.approx(clean, abs=1e-6)
    long_caption = " ".join(["rain"] * 200)
    assert tiny_detector.tokenize([long_caption])["input_ids"].shape == (1, 64)
    with pytest.raises(ValueError, match="expects strings"):
        tiny_detector([None])


def test_detector_round_trip_via_save_echecker_checkpoint(tmp_path, tiny_fense_checkpoint: dict,
                                                          tiny_detector: ErrorDetector):
    # Our own format: encoder_config inside the .ckpt and tokenizer files next to it, so a folder path suffices.
    save_echecker_checkpoint(tiny_detector.classifier, str(tmp_path / "echecker.ckpt"), "tiny-bert")
    tiny_fense_checkpoint["hf_tokenizer"].save_pretrained(tmp_path)
    reloaded = ErrorDetector.from_pretrained(str(tmp_path))
    assert reloaded(CAPTIONS) == pytest.approx(tiny_detector(CAPTIONS), abs=1e-6)
    assert torch.load(tmp_path / "echecker.ckpt", weights_only=True)["model_type"] == "tiny-bert"


def test_a_detector_that_flags_doubled_phrases_scores_them_one(tmp_path, tiny_fense_checkpoint: dict,
                                                              tiny_detector: ErrorDetector):
    """A phrase doubled in place scores 1.0 where the checkpoint says so (detectors trained by laac) or where asked
    (also of FENSE's own checkpoints, which leave it off); every other caption keeps its classifier's probability."""
    captions = ["a dog barks barks while rain falls", "rain falls on a roof", "the whistle gets louder and louder"]
    alone = tiny_detector(captions)
    assert not tiny_detector.flag_doubled_phrases and max(alone) < 1.0
    save_echecker_checkpoint(tiny_detector.classifier, str(tmp_path / "echecker.ckpt"), "tiny-bert", True)
    tiny_fense_checkpoint["hf_tokenizer"].save_pretrained(tmp_path)
    flagging = ErrorDetector.from_pretrained(str(tmp_path))
    assert flagging.flag_doubled_phrases
    assert flagging(captions) == pytest.approx([1.0, *alone[1:]], abs=1e-6)
    assert flagging.classifier_probabilities(captions) == pytest.approx(alone, abs=1e-6)
    assert not ErrorDetector.from_pretrained(str(tmp_path), flag_doubled_phrases=False).flag_doubled_phrases
    fense = tiny_fense_checkpoint["file"], tiny_fense_checkpoint["tokenizer"], tiny_fense_checkpoint["config"]
    assert ErrorDetector.from_pretrained(*fense, flag_doubled_phrases=True)(captions)[0] == 1.0
    # as the post-corrector's setting (`laac correct --flag_doubled_phrases true`)
    post = PostCorrector(detector=fense[0], detector_tokenizer=fense[1], detector_config=fense[2],
                         flag_doubled_phrases=True, corrector="/nonexistent/llm")  # fmt: skip
    assert post.detector.flag_doubled_phrases and post.to_settings()["flag_doubled_phrases"] is True
    assert not PostCorrector(detector=fense[0], detector_tokenizer=fense[1], detector_config=fense[2]).detector.flag_doubled_phrases


def test_a_detector_that_reads_clause_marks_scores_the_lower_of_the_whole_and_its_highest_clause(
    tmp_path, tiny_fense_checkpoint: dict, tiny_detector: ErrorDetector
):
    """Where commas join clauses, the detector that reads them scores the lower of the classifier's probability of
    the whole (FENSE's reading, marks dropped) and the highest of its clauses' (`english.clauses`); any other caption
    keeps its classifier's probability. On where the checkpoint says so (detectors trained by laac) or where asked."""
    captions = ["Sheep cry out, water flows and birds chirp.", "Rain falls, heavy and steady.", "rain falls on a roof"]
    alone = tiny_detector(captions)
    whole, first, second = tiny_detector.classifier_probabilities(
        ["sheep cry out water flows and birds chirp", "sheep cry out", "water flows and birds chirp"]
    )
    assert alone[0] == pytest.approx(whole, abs=1e-6) and not tiny_detector.read_clause_marks
    checkpoint = str(tmp_path / "echecker.ckpt")
    save_echecker_checkpoint(tiny_detector.classifier, checkpoint, "tiny-bert", read_clause_marks=True)
    tiny_fense_checkpoint["hf_tokenizer"].save_pretrained(tmp_path)
    reading = ErrorDetector.from_pretrained(str(tmp_path))
    assert reading.read_clause_marks and not reading.flag_doubled_phrases
    expected = [min(whole, max(first, second)), *alone[1:]]  # "heavy and steady" holds no verb: one clause
    assert reading(captions) == pytest.approx(expected, abs=1e-6)
    assert reading.probabilities(captions)[0] == pytest.approx(alone, abs=1e-6)  # the classifier alone: FENSE's
    assert not ErrorDetector.from_pretrained(str(tmp_path), read_clause_marks=False).read_clause_marks
    fense = tiny_fense_checkpoint["file"], tiny_fense_checkpoint["tokenizer"], tiny_fense_checkpoint["config"]
    assert not ErrorDetector.from_pretrained(*fense).read_clause_marks
    assert ErrorDetector.from_pretrained(*fense, read_clause_marks=True)(captions) == pytest.approx(expected, abs=1e-6)
    post = PostCorrector(detector=fense[0], detector_tokenizer=fense[1], detector_config=fense[2],
                         read_clause_marks=True, corrector="/nonexistent/llm")  # fmt: skip
    assert post.detector.read_clause_marks and post.to_settings()["read_clause_marks"] is True


def test_detector_refuses_pickled_objects_unless_trusted(tmp_path, tiny_fense_checkpoint: dict):
    checkpoint = torch.load(tiny_fense_checkpoint["file"], weights_only=True)
    checkpoint["hparams"] = argparse.Namespace(lr=1e-4)  # an arbitrary Python object
    path = tmp_path / "pickled.ckpt"
    torch.save(checkpoint, path)
    kwargs = {"tokenizer_path": tiny_fense_checkpoint["tokenizer"], "encoder_config": tiny_fense_checkpoint["config"]}
    with pytest.raises(ValueError, match="trust_pickled_checkpoint"):
        ErrorDetector.from_pretrained(str(path), **kwargs)
    detector = ErrorDetector.from_pretrained(str(path), trust_pickled_checkpoint=True, **kwargs)
    assert len(detector(CAPTIONS[:2])) == 2


def test_detector_rejects_mismatched_config(tmp_path, tiny_fense_checkpoint: dict):
    wrong = tiny_config(tiny_fense_checkpoint["hf_tokenizer"].vocab_size)
    wrong.num_hidden_layers = 3
    with pytest.raises(ValueError, match="does not match"):
        ErrorDetector.from_pretrained(tiny_fense_checkpoint["file"], tiny_fense_checkpoint["tokenizer"], wrong)
    torch.save({"state_dict": {}}, tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match="model_type"):
        ErrorDetector.from_pretrained(str(tmp_path / "bad.ckpt"))


# ------------------------------------------------------------------------------------------------ answer parsing
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("rain is falling on a tin roof ==> rain is falling on the tin roof", "rain is falling on the tin roof"),
        ("A dog barks loudly.", "a dog barks loudly"),
        ('Corrected sentence: "A dog barks, loudly."', "a dog barks loudly"),
        ('The sentence should be "birds chirp loudly" instead of "birds chirp loudly loudly".', "birds chirp loudly"),
        ("A man speaks. Then a door closes.\nI hope this helps!", "a man speaks"),
        ("\n\n  A car passes by!\nExplanation: the tail was removed.", "a car passes by"),
        ("Revised version: Water is flowing in a stream", "water is flowing in a stream"),
        ("a dog barks ==>", "a dog barks"),
        ("The sentence is correct but awkward. Here's a revised version:\n\nA man speaks and a toilet flushes.",
         "a man speaks and a toilet flushes"),
        ('It is awkward. A more idiomatic way to say it would be: "The door creaks open."', "the door creaks open"),
        ("   ", ""),
        ("...", ""),
    ],
)
def test_parse_corrected_caption(answer: str, expected: str):
    assert parse_corrected_caption(answer) == expected


def test_correction_problem_strict_rules():
    def correction_problem(source, corrected):
        return post_corrector.correction_problem(source, corrected, STRICT_ANSWER_RULES)

    assert correction_problem("a dog barks", "") == "empty_answer"
    assert correction_problem("a dog barks", " ".join(["a dog barks"] * 4)) == "answer_too_long"
    assert correction_problem("a dog barks", "i cannot help with that") == "answer_no_overlap"
    assert correction_problem("a dog barks and", "a dog barks") is None
    assert correction_problem("a man is speaking and then", "the sentence is correct as it is") == "answer_no_overlap"
    assert correction_problem("a man is speaking loudly", "a man speaks loudly") is None  # 2 of 3 content words
    assert correction_problem("the and a", "a the") is None  # all function words: plain overlap counts
    assert correction_problem("a person walking on gravel and then a",
                              "a person walking on gravel and then a glass of water") == "answer_adds_content"
    assert correction_problem("the machine hums and spins", "the machine is humming and spinning") is None
    # the corrector normalises with the processor's function (one normalisation: tests/test_processing_laac.py)
    assert post_corrector.fense_normalize_caption is processing_laac.fense_normalize_caption


# ------------------------------------------------------------------------------------------------ corrector
def test_corrector_bad_inputs_and_answers_keep_original():
    corrector = ScriptedCorrector({
        "a man is speaking and then": "Sure! Here is the revised sentence: \"a man is speaking\"",
        "a dog barks and a": "",
        "birds chirp": "birds chirp " * 10,
        "water flows and": "I am sorry, I cannot do that.",
        "a man speaks and a": "Here is a revised version:\nA man speaks and a toilet f" + TRUNCATION_MARK,
        "a man speaks and then": "A man speaks. Some more chatter that was cut" + TRUNCATION_MARK,
    })
    inputs = ["a man is speaking and then", "a dog barks and a", "birds chirp", "water flows and", "rain falls",
              "a man speaks and a", "", "   ", None, 42, "word " * 200, "a man speaks and then"]
    results = corrector(inputs, batch_size=2)
    assert [r.reason for r in results] == [
        "corrected", "empty_answer", "answer_too_long", "answer_no_overlap", "unchanged", "answer_truncated",
        "empty_input", "empty_input", "non_text_input", "non_text_input", "input_too_long", "corrected",
    ]
    assert results[0] == Correction("a man is speaking", True, "corrected", results[0].raw_answer)
    assert results[-1].caption == "a man speaks"  # the cut happened after the first, complete sentence
    assert [r.caption for r in results[1:-1]] == inputs[1:-1]
    assert not any(r.changed for r in results[1:-1])
    assert sum(len(batch) for batch in corrector.calls) == 7  # bad inputs never reach the LLM


def test_corrector_failed_batch_keeps_captions_and_continues():
    corrector = ScriptedCorrector({"a dog barks and": "a dog barks"}, fail_on="boom now")
    results = corrector(["boom now", "x y", "a dog barks and"], batch_size=2)
    assert [r.reason for r in results] == ["generation_failed", "generation_failed", "corrected"]
    assert results[2].caption == "a dog barks"


@pytest.fixture(scope="module")
def smollm2_corrector() -> CaptionCorrector:
    return CaptionCorrector.from_pretrained("smollm2", max_new_tokens=24)


def test_smollm2_corrector_prompt_and_batching(smollm2_corrector: CaptionCorrector):
    prompt = smollm2_corrector.build_prompt("a dog barks and")
    assert CORRECTION_SYSTEM_PROMPT in prompt and prompt.rstrip().endswith("assistant")
    assert smollm2_corrector.tokenizer.padding_side == "left"
    captions = ["a man is speaking and then", "a dog barks while and a car passes by"]
    batched = smollm2_corrector.generate(captions)
    single = [smollm2_corrector.generate([caption])[0] for caption in captions]
    assert batched == single
    results = smollm2_corrector(captions)
    assert all(isinstance(r.caption, str) and r.caption for r in results)
    assert all(r.reason in {"corrected", "unchanged", "answer_no_overlap", "answer_too_long", "empty_answer",
                            "answer_adds_content", "answer_truncated"}
               for r in results)


# ------------------------------------------------------------------------------------------------ gate
class FixedDetector(ErrorDetector):
    def __init__(self, probabilities: dict[str, float]) -> None:
        self.probabilities = probabilities

    def __call__(self, captions: list[str], batch_size: int = 32) -> list[float]:
        return [self.probabilities[caption] for caption in captions]


def test_gate_never_loads_nothing():
    post = PostCorrector(mode="never", detector="/nonexistent/detector", corrector="/nonexistent/llm")
    records = post(["a dog barks and", None])
    assert [r["reason"] for r in records] == ["gate_never", "non_text_input"]
    assert [r["caption"] for r in records] == ["a dog barks and", None]
    assert post.is_loaded == {"detector": False, "corrector": False}


def test_gate_auto_rewrites_only_above_threshold():
    detector = FixedDetector({"a dog barks and": 0.95, "rain falls": 0.2, "birds chirp a": 0.9})
    corrector = ScriptedCorrector({"a dog barks and": "A dog barks."})
    post = PostCorrector(mode="auto", threshold=0.9, detector=detector, corrector=corrector)
    records = post(["a dog barks and", "rain falls", "birds chirp a", ""])
    assert [r["caption"] for r in records] == ["a dog barks", "rain falls", "birds chirp a", ""]
    assert [r["corrected"] for r in records] == [True, False, False, False]
    assert [r["reason"] for r in records] == ["corrected", "below_threshold", "below_threshold", "empty_input"]
    assert [r["error_prob"] for r in records] == [0.95, 0.2, 0.9, None]  # 0.9 is not > 0.9
    assert records[0]["raw_caption"] == "a dog barks and"
    assert corrector.calls == [["a dog barks and"]]


def test_gate_auto_loads_no_llm_when_nothing_is_flagged():
    post = PostCorrector(detector=FixedDetector({"rain falls": 0.1}), corrector="/nonexistent/llm")
    records = post(["rain falls", ""])
    assert [r["reason"] for r in records] == ["below_threshold", "empty_input"]
    assert post.is_loaded["corrector"] is False
    post_invalid_only = PostCorrector(detector="/nonexistent/detector", corrector="/nonexistent/llm")
    assert post_invalid_only([None, " "])[1]["reason"] == "empty_input"
    assert post_invalid_only.is_loaded == {"detector": False, "corrector": False}


def test_gate_always_skips_detector():
    corrector = ScriptedCorrector({"rain falls": "rain is falling"})
    post = PostCorrector(mode="always", detector="/nonexistent/detector", corrector=corrector)
    records = post(["rain falls", "a dog barks"])
    assert [r["reason"] for r in records] == ["corrected", "unchanged"]
    assert all(r["error_prob"] is None for r in records)
    assert post.is_loaded["detector"] is False


def test_gate_with_real_tiny_detector(tiny_detector: ErrorDetector):
    probabilities = tiny_detector(CAPTIONS)
    threshold = sorted(probabilities)[2]  # the two highest pass
    corrector = ScriptedCorrector({})
    records = PostCorrector(threshold=threshold, detector=tiny_detector, corrector=corrector)(CAPTIONS)
    assert [r["error_prob"] for r in records] == pytest.approx(probabilities, abs=1e-6)
    assert sum(len(call) for call in corrector.calls) == 2


def test_from_settings_and_to_settings():
    settings = {"mode": "never", "threshold": 0.5, "corrector_model": "smollm2", "detector": "some/detector"}
    post = PostCorrector.from_settings(settings, threshold=0.7)
    assert post.threshold == 0.7 and post.mode == "never"
    assert post.to_settings()["corrector_model"] == "smollm2"
    assert PostCorrector.from_settings(post.to_settings()).to_settings() == post.to_settings()
    with pytest.raises(ValueError, match="unknown post-corrector settings"):
        PostCorrector.from_settings({"treshold": 0.5})
    with pytest.raises(ValueError, match="mode must be one of"):
        PostCorrector(mode="sometimes")
    with pytest.raises(ValueError, match="threshold"):
        PostCorrector(threshold=90)


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_on_csv_and_jsonl(tmp_path, tiny_fense_checkpoint: dict, smollm2_corrector: CaptionCorrector,
                              monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(CaptionCorrector, "from_pretrained", classmethod(lambda cls, *a, **k: smollm2_corrector))
    rows = [{"file_name": f"clip_{i}.wav", "caption": caption} for i, caption in enumerate(CAPTIONS)]
    source = tmp_path / "captions.csv"
    with open(source, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file_name", "caption"])
        writer.writeheader()
        writer.writerows(rows)
    common = ["--detector", tiny_fense_checkpoint["file"], "--detector_tokenizer", tiny_fense_checkpoint["tokenizer"],
              "--detector_config", tiny_fense_checkpoint["config"], "--corrector_model", "smollm2"]
    out_csv = tmp_path / "out.csv"
    correct_captions_main(["--input", str(source), "--output", str(out_csv), "--threshold", "0.0", *common])
    with open(out_csv, newline="") as handle:
        written = list(csv.DictReader(handle))
    assert list(written[0]) == ["file_name", "caption", "raw_caption", "error_prob", "corrected", "reason"]
    assert [r["file_name"] for r in written] == [r["file_name"] for r in rows]
    assert [r["raw_caption"] for r in written] == CAPTIONS
    assert all(r["reason"] != "below_threshold" for r in written)  # threshold 0: every caption went to the LLM

    jsonl = tmp_path / "captions.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out_jsonl = tmp_path / "out.jsonl"
    correct_captions_main(["--input", str(jsonl), "--output", str(out_jsonl), "--mode", "never", *common])
    written = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    assert [r["caption"] for r in written] == CAPTIONS
    assert {r["reason"] for r in written} == {"gate_never"} and not any(r["corrected"] for r in written)

    def corrected(name: str, captions: list[str], *flags: str) -> list[dict]:
        """`laac correct` with `flags` on a JSONL of `captions`; the records it writes."""
        source, output = tmp_path / f"{name}.jsonl", tmp_path / f"out_{name}.jsonl"
        source.write_text("".join(json.dumps({"caption": caption}) + "\n" for caption in captions))
        correct_captions_main(["--input", str(source), "--output", str(output), *flags, *common])
        return [json.loads(line) for line in output.read_text().splitlines()]

    # --flag_doubled_phrases true: a phrase doubled in place goes to the LLM whatever the classifier says
    written = corrected("doubled", ["a dog barks barks", "rain falls on a roof"], "--threshold", "0.99",
                        "--flag_doubled_phrases", "true")  # fmt: skip
    assert written[0]["error_prob"] == 1.0 and written[0]["reason"] != "below_threshold"
    assert written[1]["error_prob"] < 0.99 and written[1]["reason"] == "below_threshold"

    # --read_clause_marks true: a caption whose commas join clauses is also scored clause by clause
    captions = ["Sheep cry out, water flows and birds chirp.", "rain falls on a roof"]
    written = corrected("joined", captions, "--threshold", "1.0", "--read_clause_marks", "true")
    fense = tiny_fense_checkpoint["file"], tiny_fense_checkpoint["tokenizer"], tiny_fense_checkpoint["config"]
    reading = ErrorDetector.from_pretrained(*fense, read_clause_marks=True)
    assert [row["error_prob"] for row in written] == pytest.approx(reading(captions), abs=1e-6)

    # --post_corrector: the settings a PostCorrector saved (threshold 0); a flag off its default overrides them
    saved = PostCorrector.from_settings(
        {"threshold": 0.0, "detector": tiny_fense_checkpoint["file"], "corrector_model": "smollm2",
         "detector_tokenizer": tiny_fense_checkpoint["tokenizer"], "detector_config": tiny_fense_checkpoint["config"]}
    )  # fmt: skip
    saved.save_pretrained(tmp_path / "post_corrector")
    out_saved = tmp_path / "out_saved.jsonl"
    correct_captions_main(["--input", str(jsonl), "--output", str(out_saved), "--post_corrector",
                           str(tmp_path / "post_corrector")])  # fmt: skip
    written = [json.loads(line) for line in out_saved.read_text().splitlines()]
    assert [r["raw_caption"] for r in written] == CAPTIONS
    assert all(r["reason"] != "below_threshold" and r["error_prob"] is not None for r in written)
    correct_captions_main(["--input", str(jsonl), "--output", str(out_saved), "--post_corrector",
                           str(tmp_path / "post_corrector"), "--mode", "never"])  # fmt: skip
    written = [json.loads(line) for line in out_saved.read_text().splitlines()]
    assert {r["reason"] for r in written} == {"gate_never"}


# ------------------------------------------------------------------------------------------------ FENSE rules
def test_fense_corruption_rules():
    rng = random.Random(0)
    source = "a dog barks loudly while a car is passing by"
    assert apply_rule("repeat_adv", source, source, rng) == source + " loudly"
    assert apply_rule("remove_conj", source, source, rng) == "a dog barks loudly a car is passing by"
    assert apply_rule("remove_verb", source, source, rng) == "a dog barks loudly while a car is by"
    assert apply_rule("repeat_adv", "rain falls", "rain falls", rng) is None
    assert apply_rule("add_tail", source, source, rng).startswith(source + " ")
    for _ in range(50):
        text, labels = corrupt_caption("A dog barks while a car passes by.", rng)
        assert any(labels) and len(labels) == 5 and text != "a dog barks while a car passes by"
    clips = {f"clip{i}": [f"caption {i} {j}" for j in range(5)] for i in range(10)}
    train, held_out = split_by_clip(clips, 0.2, seed=1)
    assert len(train) == 40 and len(held_out) == 10
    assert not {c.split()[1] for c in train} & {c.split()[1] for c in held_out}
    names = sorted(clips)
    random.Random(1).shuffle(names)
    assert held_out == [c for name in names[8:] for c in clips[name]]  # fold 0: the last fifth of the shuffled clips
    # the five folds of one seed hold out every clip once, and each trains on the other four
    folds = [split_by_clip(clips, 0.2, seed=1, fold=fold) for fold in range(5)]
    assert folds[0] == (train, held_out)
    assert sorted(c for _, held in folds for c in held) == sorted(c for captions in clips.values() for c in captions)
    assert all(len(kept) == 40 and not set(kept) & set(held) for kept, held in folds)
    with pytest.raises(ValueError, match="held_out_fold=5 .* pass 0 to 4"):
        split_by_clip(clips, 0.2, seed=1, fold=5)


# ------------------------------------------------------------------------------------------------ answer rules
def test_report_rules_take_the_revision_strict_rules_refuse_it():
    """The report takes Llama 3's revision; the strict preset (offline SmolLM2) refuses a two-word completion."""
    answers = {"a man is speaking and then a": "A man is speaking and then a door closes.",
               "a dog barks and": "The sentence is correct as it is.",
               "rain falls": ""}
    captions = list(answers)
    report = ScriptedCorrector(answers, answer_rules=post_corrector.REPORT_ANSWER_RULES)(captions)
    strict = ScriptedCorrector(answers, answer_rules=STRICT_ANSWER_RULES)(captions)
    assert [r.reason for r in report] == ["corrected", "corrected", "empty_answer"]
    assert report[0].caption == "a man is speaking and then a door closes"
    assert [r.reason for r in strict] == ["answer_adds_content", "answer_no_overlap", "empty_answer"]
    assert [r.caption for r in strict] == captions


def test_corrector_settings_answer_rules_and_presets():
    from laac.correction.post_corrector import ANSWER_RULE_PRESETS, CorrectorSettings

    assert CorrectorSettings().rules() == ANSWER_RULE_PRESETS["report"]  # Llama 3 8B Instruct: the report's
    assert CorrectorSettings(corrector_model="smollm2").rules() == STRICT_ANSWER_RULES
    assert CorrectorSettings(corrector_model="smollm2", answer_rules="report").rules() == ANSWER_RULE_PRESETS["report"]
    assert PostCorrection.parse(True, LaacConfig().post_corrector).settings == CorrectorSettings()  # the report's
    with pytest.raises(ValueError, match="answer_rules must be"):
        CorrectorSettings(answer_rules="lenient")
    post = PostCorrector.from_settings({"corrector_model": "smollm2", "mode": "never"})
    assert post.settings.rules() == STRICT_ANSWER_RULES and post.to_settings()["answer_rules"] == "auto"


# ------------------------------------------------------------------------------------------------ Llama 3 format
LLAMA3_PROMPT_II_IDS = [
    128000, 128006, 9125, 128007, 271, 2675, 527, 264, 4221, 24687, 889, 649, 65836, 279, 11914, 311, 1304, 433, 810,
    4495, 323, 41760, 13795, 0, 1472, 1288, 1833, 279, 3770, 3645, 25, 11422, 374, 16054, 389, 264, 25826, 15485,
    33396, 11422, 374, 16054, 389, 279, 25826, 15485, 128009, 128006, 882, 128007, 271, 64, 5679, 293, 7341, 323,
    128009, 128006, 78191, 128007, 271,
]


def test_prompt_ii_in_llama3_chat_format_with_the_real_tokenizer(llama_tokenizers):
    """Prompt II reaches Llama 3 8B Instruct in its exact chat format, with Llama 3's real vocabulary (no template)."""
    from laac.data.public_data import LLAMA3_TOKENIZER
    from transformers import AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(llama_tokenizers, gguf_file=LLAMA3_TOKENIZER)
    assert not tokenizer.chat_template  # the GGUF vocabulary carries none: the project's template is used
    stand_in = torch.nn.Linear(1, 1)  # build_prompt needs only the tokenizer; the stop ids read generation_config
    stand_in.generation_config = GenerationConfig(eos_token_id=128001)
    corrector = CaptionCorrector(stand_in, tokenizer)
    prompt = corrector.build_prompt("a dog barks and")
    assert prompt == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + CORRECTION_SYSTEM_PROMPT + "<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\na dog barks and<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]  # generate() tokenises it like this
    assert ids == LLAMA3_PROMPT_II_IDS
    # the structure with Meta's special ids: <|begin_of_text|>, headers (system 9125, user 882, assistant 78191),
    # "\n\n" (271) after each header, <|eot_id|> (128009) closing each message; content tokenised on its own
    caption_ids = tokenizer("a dog barks and", add_special_tokens=False)["input_ids"]
    system_ids = tokenizer(CORRECTION_SYSTEM_PROMPT, add_special_tokens=False)["input_ids"]
    assert ids == [128000, 128006, 9125, 128007, 271, *system_ids, 128009, 128006, 882, 128007, 271, *caption_ids,
                   128009, 128006, 78191, 128007, 271]
    assert tokenizer.convert_tokens_to_ids("<|eot_id|>") in corrector._stop_token_ids()
    with pytest.raises(ValueError, match="no chat template"):
        CaptionCorrector(torch.nn.Linear(1, 1), BertTokenizerFast(vocab_file=None, vocab={"[UNK]": 0, "[PAD]": 1}))


def test_laac_correct_falls_back_to_the_offline_detector(monkeypatch: pytest.MonkeyPatch):
    """Official FENSE checkpoint not downloadable -> the cached offline detector; SmolLM2 -> strict rules."""
    import urllib.error

    from laac.correction import correct_captions
    from laac.correction.post_corrector import CorrectorSettings

    def no_network(name):
        raise urllib.error.URLError("no network")

    trained = []
    monkeypatch.setattr(correct_captions, "fense_checkpoint_file", no_network)
    monkeypatch.setattr(correct_captions, "ensure_error_detector", lambda path: trained.append(path) or "/cache/det")
    settings = CorrectorSettings(corrector_model="smollm2")
    fallback = correct_captions.offline_fallback(settings, "/cache/det")
    assert fallback.detector == "/cache/det" and trained == ["/cache/det"]
    assert fallback.rules() == STRICT_ANSWER_RULES and fallback.corrector_model == "smollm2"
    # a local detector, or a gate that never reads it, is kept as given
    assert correct_captions.offline_fallback(CorrectorSettings(detector="/my/det"), None).detector == "/my/det"
    assert correct_captions.offline_fallback(CorrectorSettings(mode="never"), None).detector == settings.detector
    monkeypatch.setattr(correct_captions, "fense_checkpoint_file", lambda name: "/hub/fense.ckpt")
    assert correct_captions.offline_fallback(settings, None).detector == settings.detector


def test_one_fense_loader_serves_the_metrics_and_the_gate(tmp_path, tiny_fense_checkpoint: dict,
                                                          tiny_detector: ErrorDetector):
    """evaluation.metrics.load_echecker goes through load_error_detector; aac-metrics' fer reads the same scores."""
    import shutil

    from aac_metrics.functional.fer import fer
    from laac.evaluation.metrics import load_echecker

    base = tmp_path / "bert-base-uncased"  # the backbone folder FENSE names: config + tokenizer together
    shutil.copytree(tiny_fense_checkpoint["tokenizer"], base)
    shutil.copy(f"{tiny_fense_checkpoint['config']}/config.json", base / "config.json")
    classifier, tokenizer = load_echecker(tiny_fense_checkpoint["file"], base)
    assert isinstance(classifier, BertFlatClassifier)
    _, sentences = fer(CAPTIONS, echecker=classifier, echecker_tokenizer=tokenizer, device="cpu", return_probs=True)
    torch.testing.assert_close(sentences["fer.error_prob"].float(), torch.tensor(tiny_detector(CAPTIONS)),
                               rtol=1e-5, atol=1e-5)


class _NoHub(Exception):
    """What the Hub client raises without a network (its own transport error types)."""


def _probe(monkeypatch: pytest.MonkeyPatch, outcome: Exception | None) -> list[str]:
    """Replace the Hub's access check: raise `outcome` (None: access granted); returns the ids it was asked about."""
    from laac.correction import correct_captions

    asked = []

    def ask_hub_for_access(repo_id, timeout=correct_captions.HUB_PROBE_TIMEOUT):
        asked.append(repo_id)
        assert timeout <= 10  # a short wait, not the Hub client's default of none
        if outcome is not None:
            raise outcome

    monkeypatch.setattr(correct_captions, "ask_hub_for_access", ask_hub_for_access)
    return asked


class FakeHub:
    """A local HTTP server standing in for the Hugging Face Hub: `answer` is what it does with an access check.

    "close": drop the connection without a response (a Hub out of reach); "hang": never answer; an int: that HTTP
    status, with `error_code` as the X-Error-Code header when set. `requests` lists the access checks asked for.
    """

    def __init__(self) -> None:
        import http.server
        import threading

        hub = self
        self.answer: str | int = "close"
        self.error_code: str | None = None
        self.requests: list[str] = []
        self.release = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802  (http.server's name)
                if "/auth-check" in self.path:
                    hub.requests.append(self.path)
                    if hub.answer == "hang":
                        hub.release.wait(30)
                if not isinstance(hub.answer, int):
                    self.close_connection = True
                    return
                self.send_response(hub.answer)
                if hub.error_code:
                    self.send_header("X-Error-Code", hub.error_code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path) -> FakeHub:
    """The Hub client pointed at a `FakeHub`, with an empty local cache and offline mode off."""
    from huggingface_hub import constants

    hub = FakeHub()
    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    yield hub
    hub.close()


@pytest.fixture
def offline_detector_dir(tmp_path, tiny_fense_checkpoint: dict) -> str:
    """A detector folder that loads without any network: checkpoint with its encoder config, tokenizer files."""
    folder = tmp_path / "offline_detector"
    tiny_fense_checkpoint["hf_tokenizer"].save_pretrained(folder)
    save_echecker_checkpoint(tiny_fense_checkpoint["classifier"], str(folder / "echecker.ckpt"), "bert")
    return str(folder)


def _no_network(name):
    import urllib.error

    raise urllib.error.URLError("no network")


def test_the_corrector_llm_falls_back_to_smollm2_at_once_when_the_hub_is_out_of_reach(monkeypatch, caplog):
    """Llama 3 neither cached nor reachable: one quick probe, one warning line, SmolLM2 with its strict rules."""
    from laac.correction.post_corrector import DEFAULT_CORRECTOR_MODEL, CorrectorSettings
    from laac.correction import correct_captions

    asked = _probe(monkeypatch, _NoHub("[Errno -2] Name or service not known"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda repo, name: None)
    with caplog.at_level("WARNING"):
        settings = correct_captions.corrector_fallback(CorrectorSettings())
    assert asked == [DEFAULT_CORRECTOR_MODEL]
    assert settings.corrector_model == "smollm2" and settings.rules() == STRICT_ANSWER_RULES
    lines = [r.getMessage() for r in caplog.records if "corrector LLM" in r.getMessage()]
    assert lines == [
        f"The corrector LLM {DEFAULT_CORRECTOR_MODEL} cannot be loaded (the Hugging Face Hub cannot be reached: "
        "[Errno -2] Name or service not known); using the offline stand-in smollm2 (SmolLM2-135M-Instruct, strict "
        "answer rules)."
    ]
    # answer rules the user chose stay theirs
    assert correct_captions.corrector_fallback(CorrectorSettings(answer_rules="report")).rules().min_content_overlap is None
    # reachable, cached, local, or never needed: kept as given, and a local model is never probed
    _probe(monkeypatch, None)
    assert correct_captions.corrector_fallback(CorrectorSettings()).corrector_model == DEFAULT_CORRECTOR_MODEL
    asked = _probe(monkeypatch, _NoHub("offline"))
    assert correct_captions.corrector_fallback(CorrectorSettings(mode="never")).corrector_model == DEFAULT_CORRECTOR_MODEL
    assert correct_captions.hub_model_problem(os.path.dirname(__file__)) is None and asked == []
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda repo, name: "/hf/cache/config.json")
    assert correct_captions.hub_model_problem(DEFAULT_CORRECTOR_MODEL) is None and asked == []


def test_another_corrector_llm_that_cannot_be_had_stops_at_once(monkeypatch):
    """Only the default LLM is swapped for the stand-in; a model the user named stops, naming the offline alias."""
    from laac.correction.post_corrector import CorrectorSettings
    from laac.correction import correct_captions

    asked = _probe(monkeypatch, _NoHub("[Errno -2] Name or service not known"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda repo, name: None)
    with pytest.raises(correct_captions.CorrectorUnavailableError,
                       match=r"Qwen/Qwen2.5-7B-Instruct cannot be loaded \(the Hugging Face Hub cannot be reached: "
                             r".*\); pass --corrector_model with a local folder, a .gguf file or smollm2"):
        correct_captions.corrector_fallback(CorrectorSettings(corrector_model="Qwen/Qwen2.5-7B-Instruct"))
    assert asked == ["Qwen/Qwen2.5-7B-Instruct"]
    # a path that is not there is no Hub id: said without asking the Hub
    for missing in ("./no/such/model", "/no/such/model.gguf"):
        with pytest.raises(ValueError, match="neither a local file or folder nor a Hugging Face Hub id.*smollm2"):
            correct_captions.hub_model_problem(missing)
    assert asked == ["Qwen/Qwen2.5-7B-Instruct"]


def test_hf_hub_offline_means_no_request(monkeypatch):
    from huggingface_hub import constants
    from laac.correction import correct_captions

    asked = _probe(monkeypatch, None)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda repo, name: None)
    problem = correct_captions.hub_model_problem("meta-llama/Meta-Llama-3-8B-Instruct")
    assert problem == "HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache" and asked == []


def test_hf_hub_offline_in_the_environment(tmp_path, fake_hub: FakeHub):
    """HF_HUB_OFFLINE=1 as a user sets it (read when huggingface_hub is imported): the stand-in, no request sent."""
    import subprocess
    import sys

    code = ("from laac.correction.post_corrector import CorrectorSettings\n"
            "from laac.correction.correct_captions import corrector_fallback\n"
            "print(corrector_fallback(CorrectorSettings()).corrector_model)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": fake_hub.endpoint, "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_HUB_CACHE", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "smollm2"
    assert "cannot be loaded (HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache); using the " \
           "offline stand-in smollm2" in done.stderr
    assert fake_hub.requests == []


def test_the_real_probe_asks_once_and_waits_a_few_seconds_at_most(fake_hub: FakeHub, monkeypatch):
    """Through the Hub client and a socket: a dropped connection or a silent server is one request, no retries."""
    import time

    from laac.correction import correct_captions

    problem = correct_captions.hub_model_problem("meta-llama/Meta-Llama-3-8B-Instruct")
    assert problem.startswith("the Hugging Face Hub cannot be reached: ")
    assert fake_hub.requests == ["/api/models/meta-llama/Meta-Llama-3-8B-Instruct/auth-check"]

    fake_hub.answer = "hang"
    monkeypatch.setattr(correct_captions, "HUB_PROBE_TIMEOUT", 0.5)
    start = time.perf_counter()
    problem = correct_captions.hub_model_problem("meta-llama/Meta-Llama-3-8B-Instruct")
    assert time.perf_counter() - start < 10  # the Hub client alone would wait for ever
    assert problem.startswith("the Hugging Face Hub cannot be reached: ") and len(fake_hub.requests) == 2

    fake_hub.answer = 200
    assert correct_captions.hub_model_problem("meta-llama/Meta-Llama-3-8B-Instruct") is None
    fake_hub.answer = 503
    assert correct_captions.hub_model_problem("meta-llama/Meta-Llama-3-8B-Instruct") == \
        "the Hugging Face Hub answered HTTP 503"
    fake_hub.answer, fake_hub.error_code = 404, "RepoNotFound"
    with pytest.raises(ValueError, match=r"no model 'someone/no-such-model' on the Hugging Face Hub; pass "
                                         r"--corrector_model .* smollm2"):
        correct_captions.hub_model_problem("someone/no-such-model")
    assert len(fake_hub.requests) == 5


@pytest.mark.parametrize("status, error_code", [(403, "GatedRepo"), (401, "GatedRepo"), (401, None), (403, None)])
def test_a_gated_corrector_llm_stops_at_once_naming_both_fixes(fake_hub: FakeHub, status, error_code):
    """The Hub refusing access (licence not accepted, not logged in) is said at once, never swapped silently."""
    from laac.correction.post_corrector import CorrectorSettings
    from laac.correction import correct_captions

    fake_hub.answer, fake_hub.error_code = status, error_code
    what = "is a gated repository this machine has no access to" if error_code else "refuses access to"
    with pytest.raises(ValueError, match=rf"{what} .*HTTP {status}\): accept its licence on https://huggingface.co/"
                       r"meta-llama/Meta-Llama-3-8B-Instruct and log in with `hf auth login` \(`huggingface-cli "
                       r"login` with older huggingface_hub\), or pass --corrector_model smollm2"):
        correct_captions.corrector_fallback(CorrectorSettings())
    assert len(fake_hub.requests) == 1


def _corrector_spy(monkeypatch: pytest.MonkeyPatch, stand_in: CaptionCorrector) -> list[tuple]:
    """Record which LLM `CaptionCorrector.from_pretrained` is asked for (and its answer rules); return `stand_in`."""
    loaded = []

    def from_pretrained(cls, model_id, *args, **kwargs):
        loaded.append((model_id, kwargs["answer_rules"]))
        return stand_in

    monkeypatch.setattr(CaptionCorrector, "from_pretrained", classmethod(from_pretrained))
    return loaded


def test_laac_correct_with_default_settings_offline(tmp_path, offline_detector_dir: str, fake_hub: FakeHub,
                                                    monkeypatch, caplog):
    """`laac correct` as a user runs it, Hub out of reach: one probe, the offline detector and SmolLM2 load at once."""
    import time

    from laac.cli.main import main as laac
    from laac.correction import train_error_detector

    # `laac correct` runs the module afresh (runpy), so its names are patched where it imports them from
    monkeypatch.setattr(post_corrector, "fense_checkpoint_file", _no_network)
    monkeypatch.setattr(train_error_detector, "ensure_error_detector", lambda path: offline_detector_dir)
    loaded = _corrector_spy(monkeypatch, ScriptedCorrector({"a dog barks and": "a dog barks"}))
    source, out = tmp_path / "captions.csv", tmp_path / "out.csv"
    source.write_text("file_name,caption\na.wav,a dog barks and\nb.wav,rain falls\nc.wav,birds chirp loudly\n")
    start = time.perf_counter()
    with caplog.at_level("WARNING"):
        assert laac(["correct", "--input", str(source), "--output", str(out), "--threshold", "0.0"]) == 0
    assert time.perf_counter() - start < 30  # the Hub client's retries alone took about 50 s
    assert fake_hub.requests == ["/api/models/meta-llama/Meta-Llama-3-8B-Instruct/auth-check"]
    assert loaded == [("smollm2", STRICT_ANSWER_RULES)]
    lines = [r.getMessage() for r in caplog.records if "cannot be" in r.getMessage()]
    assert len(lines) == 2 and lines[0].startswith("The official FENSE detector echecker_clotho_audiocaps_base cannot")
    assert lines[1].startswith("The corrector LLM meta-llama/Meta-Llama-3-8B-Instruct cannot be loaded (the Hugging "
                               "Face Hub cannot be reached: ")
    assert lines[1].endswith("using the offline stand-in smollm2 (SmolLM2-135M-Instruct, strict answer rules).")
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["raw_caption"] for row in rows] == ["a dog barks and", "rain falls", "birds chirp loudly"]
    assert rows[0]["caption"] == "a dog barks"


def test_laac_correct_on_a_gated_llm_says_the_fixes_without_a_traceback(tmp_path, offline_detector_dir: str,
                                                                         fake_hub: FakeHub, monkeypatch, capsys):
    from laac.cli.main import main as laac

    fake_hub.answer, fake_hub.error_code = 403, "GatedRepo"
    loaded = _corrector_spy(monkeypatch, ScriptedCorrector({}))
    source = tmp_path / "captions.csv"
    source.write_text("file_name,caption\na.wav,a dog barks and\n")
    argv = ["correct", "--input", str(source), "--output", str(tmp_path / "out.csv"), "--detector", offline_detector_dir]
    assert laac(argv) == 1
    error = capsys.readouterr().err
    assert error.startswith("laac correct: error: meta-llama/Meta-Llama-3-8B-Instruct is a gated repository")
    assert "`hf auth login`" in error and "--corrector_model smollm2" in error and "Traceback" not in error
    assert loaded == [] and len(fake_hub.requests) == 1 and not (tmp_path / "out.csv").exists()


def test_laac_caption_correct_resolves_the_same_fallbacks(monkeypatch, fake_hub: FakeHub):
    """`laac caption --correct [MODE]`: the model's corrector settings, with what this machine can load."""
    from laac.cli import main as cli
    from laac.correction import correct_captions

    monkeypatch.setattr(correct_captions, "fense_checkpoint_file", _no_network)
    monkeypatch.setattr(correct_captions, "ensure_error_detector", lambda path: "/cache/detector")
    real_access_check = correct_captions.ask_hub_for_access
    asked = _probe(monkeypatch, _NoHub("no network"))
    request = cli._post_correction("auto", {"threshold": 0.8})  # parsed once, into the pipeline's typed request
    settings = request.settings
    assert settings.detector == "/cache/detector" and settings.corrector_model == "smollm2"
    assert settings.threshold == 0.8 and settings.mode == "auto" and len(asked) == 1
    assert cli._post_correction(request, None) == request  # resolved once more (another load): unchanged
    assert cli._post_correction(True, None).settings.mode == "auto"
    # a gated LLM stops `laac caption --correct` as it stops `laac correct` (a ValueError: printed, exit status 2)
    monkeypatch.setattr(correct_captions, "ask_hub_for_access", real_access_check)  # on a Hub that refuses it
    fake_hub.answer, fake_hub.error_code = 403, "GatedRepo"
    with pytest.raises(ValueError, match="is a gated repository .*--corrector_model smollm2"):
        cli._post_correction("auto", None)
