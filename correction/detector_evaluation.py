"""How well an error detector separates clean captions from corrupted ones: per error kind and position, ROC-AUC
(scikit-learn's), precision and recall at the report's 0.9 gate, and the clean captions above it; the targets it
must reach and the table the docs show."""

from __future__ import annotations

import random

import numpy as np
from sklearn.metrics import roc_auc_score

from laac.correction.post_corrector import ErrorDetector
from laac.evaluation.metrics import precision_recall_f1
from laac.processing_laac import fense_normalize_caption

from .corruptions import (
    ERROR_KINDS,
    POSITIONS,
    apply_rule,
    corrupt_caption,
    single_rule_corruption,
    with_written_marks,
)

# Quality the detector must reach on held-out real captions: ROC-AUC for every error kind and position, precision
# at the gate over the mixtures, and the share of clean captions the gate flags.
MIN_ROC_AUC = 0.97
MIN_PRECISION = 0.95
MAX_CLEAN_FLAGGED = 0.02
GATE_THRESHOLD = 0.9
# The clean captions `evaluate_detector_by_clean_subset` scores the corrupted rows against: all, or those written
# without commas.
ALL_CLEAN = "all clean captions"
WITHOUT_COMMAS = "clean captions without commas"
# The same rows scored by the classifier alone, where the detector flags doubled phrases (`flag_doubled_phrases`).
CLASSIFIER_ALONE = "the classifier alone"


def binary_scores(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall, F1 and accuracy of `probabilities > threshold` against boolean `labels`."""
    predicted = probabilities > threshold
    true_positive = float(np.sum(predicted & labels))
    scores = precision_recall_f1(
        true_positive, float(np.sum(predicted & ~labels)), float(np.sum(~predicted & labels))
    )
    return {**scores, "accuracy": float(np.mean(predicted == labels))}


# ---------------------------------------------------------------------------------------------------------------
# Held-out metrics
# ---------------------------------------------------------------------------------------------------------------
def roc_auc(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of `probabilities` for boolean `labels` (scikit-learn's `roc_auc_score`: the share of
    positive/negative pairs ordered, ties counting one half)."""
    positives, negatives = int(np.sum(labels)), int(np.sum(~labels))
    if not positives or not negatives:
        raise ValueError(f"ROC-AUC needs both classes; got {positives} positives and {negatives} negatives.")
    return float(roc_auc_score(labels, probabilities))


def single_rule_corruptions(captions: list[str], seed: int, position: str = "fense") -> dict[str, list[str]]:
    """For each error kind, each caption corrupted by that kind alone at `position` (captions it cannot change are
    left out), with the clause marks the caption is written with (`with_written_marks`)."""
    rng = random.Random(seed)
    corrupted: dict[str, list[str]] = {kind: [] for kind in ERROR_KINDS}
    for caption in captions:
        clean = fense_normalize_caption(caption)
        for kind in ERROR_KINDS:
            text = apply_rule(kind, clean, clean, rng, position, written=caption)
            if text is not None and text != clean:
                corrupted[kind].append(with_written_marks(caption, text))
    return corrupted


def score_rows(clean: np.ndarray, corrupted: dict[str, np.ndarray], threshold: float) -> dict[str, dict]:
    """Per row: ROC-AUC and precision / recall at `threshold` of its corruptions against all clean captions, and how
    many clean captions are above `threshold`."""
    rows = {}
    for name, positives in corrupted.items():
        probabilities = np.concatenate([clean, positives])
        labels = np.concatenate([np.zeros(len(clean), bool), np.ones(len(positives), bool)])
        scores = binary_scores(probabilities, labels, threshold)
        rows[name] = {"roc_auc": roc_auc(probabilities, labels), "precision": scores["precision"],
                      "recall": scores["recall"], "positives": len(positives), "negatives": len(clean),
                      "clean_flagged": int(np.sum(clean > threshold))}  # fmt: skip
    return rows


def held_out_corruptions(captions: list[str], seed: int) -> dict[str, list[str]]:
    """
    The evaluation's positives, one row per error kind and position ("repeat_word (random)"), each kind alone, plus
    two mixtures: FENSE's random mix of rules ("mixture (fense)") and one kind drawn per caption, placed anywhere
    ("mixture (random)"). Each keeps the clause marks its caption is written with (`with_written_marks`), as a
    captioner that writes them would: a detector that reads them (`read_clause_marks`) sees a comma-joined clean
    caption and its corruption alike, and FENSE's reading drops them from both.
    """
    rows = {}
    for position in POSITIONS:
        for kind, texts in single_rule_corruptions(captions, seed, position).items():
            rows[f"{kind} ({position})"] = texts
    rng = random.Random(seed + 1)
    rows["mixture (fense)"] = [with_written_marks(caption, corrupt_caption(caption, rng)[0]) for caption in captions]
    anywhere = [(caption, single_rule_corruption(caption, rng, random_position_share=1.0)) for caption in captions]
    rows["mixture (random)"] = [with_written_marks(caption, made[0]) for caption, made in anywhere if made is not None]
    return {name: texts for name, texts in rows.items() if texts}


def detector_scores(detector: ErrorDetector, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """`detector(texts)` as an array."""
    return np.asarray(detector(texts, batch_size=batch_size), dtype=float)


def classifier_and_detector_scores(
    detector: ErrorDetector, texts: list[str], batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """`detector.probabilities(texts)` as arrays: the classifier's alone and the detector's."""
    alone, gate = detector.probabilities(texts, batch_size=batch_size)
    return np.asarray(alone, dtype=float), np.asarray(gate, dtype=float)


Probabilities = tuple[np.ndarray, dict[str, np.ndarray]]


def classifier_and_detector_probabilities(
    detector: ErrorDetector, captions: list[str], corrupted: dict[str, list[str]]
) -> tuple[Probabilities, Probabilities]:
    """`error_probabilities` by the classifier alone and by the detector, each text scored once: the clean `captions`
    as written and each row of `corrupted`."""
    alone, gate = classifier_and_detector_scores(detector, list(captions))
    alone_rows, gate_rows = {}, {}
    for name, texts in corrupted.items():
        alone_rows[name], gate_rows[name] = classifier_and_detector_scores(detector, texts)
    return (alone, alone_rows), (gate, gate_rows)


def score_detector(
    detector: ErrorDetector, captions: list[str], corrupted: dict[str, list[str]], threshold: float = GATE_THRESHOLD
) -> dict[str, dict]:
    """`score_rows` of the detector's error probabilities: clean `captions` (negatives) against each row of
    `corrupted`."""
    return score_rows(*error_probabilities(detector, captions, corrupted), threshold)


def error_probabilities(
    detector: ErrorDetector, captions: list[str], corrupted: dict[str, list[str]]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The detector's error probabilities of the clean `captions`, as written (the detector cleans them as FENSE does;
    its doubled-phrase rule reads their punctuation), and of each row of `corrupted`."""
    clean = detector_scores(detector, list(captions))
    return clean, {name: detector_scores(detector, texts) for name, texts in corrupted.items()}


def evaluate_detector(detector: ErrorDetector, captions: list[str], seed: int) -> dict[str, dict]:
    """Error probabilities of the held-out clean captions (negatives) against their `held_out_corruptions`."""
    return evaluate_detector_by_clean_subset(detector, captions, seed)[ALL_CLEAN]


def evaluate_detector_by_clean_subset(
    detector: ErrorDetector, captions: list[str], seed: int, threshold: float = GATE_THRESHOLD
) -> dict[str, dict[str, dict]]:
    """
    `evaluate_detector`'s rows (`ALL_CLEAN`) and, where some captions hold a comma, the same corruptions against
    only the clean captions written without one (`WITHOUT_COMMAS`). FENSE's cleaning strips punctuation, so a
    caption of two clauses joined by a comma ("a clock ticks loudly, an alarm goes off") reaches the detector as the
    run-on a removed conjunction leaves ("a clock ticks loudly an alarm goes off"); the second table shows how much
    of a row's shortfall those captions make. A detector that flags doubled phrases gets a third table, all clean
    captions against every row scored by its classifier alone (`CLASSIFIER_ALONE`). Each text is scored once.
    """
    corrupted = held_out_corruptions(captions, seed)
    alone, (clean, gate) = classifier_and_detector_probabilities(detector, captions, corrupted)
    tables = {ALL_CLEAN: score_rows(clean, gate, threshold)}
    without_commas = np.array(["," not in caption for caption in captions], dtype=bool)
    if 0 < without_commas.sum() < len(captions):
        tables[WITHOUT_COMMAS] = score_rows(clean[without_commas], gate, threshold)
    if detector.flag_doubled_phrases:
        tables[CLASSIFIER_ALONE] = score_rows(*alone, threshold)
    return tables


def quality_problems(rows: dict[str, dict]) -> list[str]:
    """
    Where the held-out rows miss the targets (empty: all met): ROC-AUC >= `MIN_ROC_AUC` in every row, precision >=
    `MIN_PRECISION` at the gate on the mixtures, at most `MAX_CLEAN_FLAGGED` of the clean captions above the gate.
    """
    problems = []
    for name, row in rows.items():
        if row["roc_auc"] < MIN_ROC_AUC:
            problems.append(f"{name}: ROC-AUC {row['roc_auc']:.3f} < {MIN_ROC_AUC}")
        if name.startswith("mixture") and row["precision"] < MIN_PRECISION:
            problems.append(f"{name}: precision {row['precision']:.3f} at {GATE_THRESHOLD} < {MIN_PRECISION}")
    row = next(iter(rows.values()), None)
    if row is not None and row["clean_flagged"] > MAX_CLEAN_FLAGGED * row["negatives"]:
        flagged = f"{row['clean_flagged']} of {row['negatives']}"
        problems.append(f"clean captions above {GATE_THRESHOLD}: {flagged} > {MAX_CLEAN_FLAGGED:.0%}")
    return problems


def mean_rows(folds: list[dict[str, dict]]) -> dict[str, dict]:
    """
    The rows of detectors trained on the folds of one split, each scored on its own held-out captions, as one table:
    per row the mean ROC-AUC, precision and recall over the folds (and the lowest and highest ROC-AUC), the
    corrupted and clean captions and the clean captions flagged summed, so that `quality_problems` reads it as one.
    """
    if not folds:
        raise ValueError("mean_rows needs the rows of one fold at least, got none.")
    names = [name for name in folds[0] if all(name in rows for rows in folds)]
    table = {}
    for name in names:
        rows = [fold[name] for fold in folds]
        aucs = [row["roc_auc"] for row in rows]
        table[name] = {
            **{key: float(np.mean([row[key] for row in rows])) for key in ("roc_auc", "precision", "recall")},
            **{key: int(sum(row[key] for row in rows)) for key in ("positives", "negatives", "clean_flagged")},
            "roc_auc_min": float(min(aucs)), "roc_auc_max": float(max(aucs)), "folds": len(rows),
        }  # fmt: skip
    return table


def format_table(rows: dict[str, dict]) -> str:
    """Markdown table of `evaluate_detector` rows (what docs/post-correction.md shows)."""
    lines = ["| error kind (position) | ROC-AUC | precision @0.9 | recall @0.9 | corrupted / clean | clean flagged |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name, row in rows.items():
        lines.append(f"| {name} | {row['roc_auc']:.3f} | {row['precision']:.3f} | {row['recall']:.3f} | "
                     f"{row['positives']} / {row['negatives']} | {row['clean_flagged']} |")
    return "\n".join(lines)
