# Copyright 2024 The LAAC Authors. Licensed under the Apache License, Version 2.0.
"""Score a predictions file against Clotho references with the DCASE 2024 metrics.

    python -m laac.evaluation.evaluate_captions --predictions preds.csv --references clotho_evaluation_captions.csv

Predictions: CSV or JSONL with `file_name` and `caption`; optional `raw_caption` (LLM output before the corrector)
and `corrected_caption` columns are scored side by side. References: the Clotho CSV (`file_name`,
`caption_1`..`caption_5`). Writes a metrics JSON and prints a table (scores x100, as in the DCASE reports).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers.utils import logging

from laac.data.loaders import read_clotho_captions
from laac.evaluation.metrics import DCASE2024_METRICS, SUPPORTED_METRICS, compute_dcase_metrics


logger = logging.get_logger(__name__)

# Scored in this order when present; `caption` is the system's final output.
CAPTION_COLUMNS = ("caption", "raw_caption", "corrected_caption")


def read_predictions(path: str | Path) -> list[dict[str, str]]:
    """Rows of a predictions CSV or JSONL file (JSONL when the suffix is .jsonl or .json)."""
    path = Path(path)
    with path.open(encoding="utf-8", newline="") as f:
        if path.suffix in (".jsonl", ".json"):
            rows = [json.loads(line) for line in f if line.strip()]
        else:
            rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no prediction rows")
    if "file_name" not in rows[0]:
        raise ValueError(f"{path} has columns {sorted(rows[0])}; expected a 'file_name' column")
    return rows


def align(
    rows: list[dict[str, str]], references: dict[str, list[str]], column: str
) -> tuple[list[str], list[list[str]]]:
    """Predictions of `column` and their reference lists, in prediction order."""
    missing = [row["file_name"] for row in rows if row["file_name"] not in references]
    if missing:
        raise ValueError(
            f"{len(missing)} predicted file(s) have no references, e.g. {missing[:3]}; check the references CSV split"
        )
    if len(rows) < len(references):
        logger.warning(f"scoring {len(rows)} of the {len(references)} clips in the references file")
    predictions = [str(row[column] or "") for row in rows]
    return predictions, [references[row["file_name"]] for row in rows]


def format_table(scores: dict[str, dict[str, Any]], metrics: Sequence[str]) -> str:
    """Metric rows x caption-column columns, values x100; unavailable metrics show 'n/a'."""
    columns = list(scores)
    lines = [f"{'metric (x100)':<14}" + "".join(f"{c:>20}" for c in columns)]
    for metric in metrics:
        cells = [scores[c].get(metric) for c in columns]
        lines.append(f"{metric:<14}" + "".join(f"{v * 100:>20.2f}" if v is not None else f"{'n/a':>20}" for v in cells))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", required=True, help="CSV or JSONL with file_name, caption[, raw_caption]")
    parser.add_argument("--references", required=True, help="Clotho CSV: file_name, caption_1..caption_5")
    parser.add_argument("--output", default=None, help="metrics JSON (default: <predictions>.metrics.json)")
    parser.add_argument("--metrics", default="dcase2024", help=f"'dcase2024' or comma list of {SUPPORTED_METRICS}")
    parser.add_argument("--java_path", default=None)
    parser.add_argument("--cache_dir", default=None, help="aac-metrics jar layout (default ~/.cache/laac)")
    parser.add_argument("--sbert_model", default=None, help="local paraphrase-TinyBERT-L6-v2 folder")
    parser.add_argument("--echecker_path", default=None, help="local echecker_clotho_audiocaps_base.ckpt")
    parser.add_argument("--echecker_base_model", default=None, help="local bert-base-uncased folder")
    parser.add_argument("--spice_corenlp_dir", default=None, help="folder with the CoreNLP 3.6.0 jars for SPICE")
    parser.add_argument("--device", default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rows = read_predictions(args.predictions)
    references = read_clotho_captions(args.references)
    columns = [c for c in CAPTION_COLUMNS if c in rows[0]]
    if not columns:
        raise ValueError(f"{args.predictions} has columns {sorted(rows[0])}; expected one of {CAPTION_COLUMNS}")
    metrics = args.metrics if args.metrics == "dcase2024" else [m.strip() for m in args.metrics.split(",")]
    options = {
        k: getattr(args, k)
        for k in ("java_path", "cache_dir", "sbert_model", "echecker_path", "echecker_base_model", "spice_corenlp_dir")
    }
    scores: dict[str, dict[str, Any]] = {}
    for column in columns:
        predictions, mult_refs = align(rows, references, column)
        scores[column] = compute_dcase_metrics(predictions, mult_refs, metrics=metrics, device=args.device, **options)
    unavailable = next(iter(scores.values()))["unavailable"]
    report = {
        "predictions": str(args.predictions),
        "references": str(args.references),
        "num_clips": len(rows),
        "scores": {c: {k: v for k, v in s.items() if k != "unavailable"} for c, s in scores.items()},
        "unavailable": unavailable,
    }
    output = Path(args.output) if args.output else Path(f"{args.predictions}.metrics.json")
    output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    names = list(DCASE2024_METRICS) if metrics == "dcase2024" else metrics
    print(format_table(report["scores"], names))
    for name, reason in unavailable.items():
        print(f"n/a {name}: {reason}")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
