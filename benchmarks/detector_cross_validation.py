"""How well does the error detector's recipe on Clotho's evaluation captions do, apart from which clips it holds out?

Where Clotho's development captions cannot be had, a training holds out a fifth of the evaluation clips and scores
the detector on their captions; the removals' rows swing by about +-0.01 of ROC-AUC with that draw alone
(docs/post-correction.md). This trains that recipe (`--captions_csv` the evaluation captions) once per fold of
one seed's split (`DetectorTrainingArguments.held_out_fold`: the five fifths of the shuffled clips, every clip held
out once), each detector scored on its own held-out captions as the training scores it, and prints per row the mean
over the folds with the lowest and highest ROC-AUC, and the targets the mean misses
(`correction.detector_evaluation.quality_problems` on `mean_rows`).

    OMP_NUM_THREADS=2 python -m laac.benchmarks.detector_cross_validation --output_dir detector_folds

Each fold is trained into `output_dir/fold_K` and reused there when its recipe is unchanged
(`correction.train_error_detector.ensure_error_detector`); fold 0 of the default seed is the detector that
`scripts/setup.sh` trains into the cache without the development captions, used from there when it is that one.
About 4-5 minutes a fold on 2 cores.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from laac.cli.paths import ERROR_DETECTOR_DIR
from laac.correction.detector_evaluation import format_table, mean_rows, quality_problems
from laac.correction.train_error_detector import ensure_error_detector, is_reusable, DetectorTrainingArguments
from laac.data.public_data import clotho_captions_csv


@dataclass
class CrossValidationArguments:
    output_dir: str = field(default="detector_folds", metadata={"help": "Where each fold's detector is trained."})
    folds: str = field(default="0,1,2,3,4", metadata={"help": "The folds to train and score, comma-separated."})
    seed: int = field(default=2021, metadata={"help": "The seed of the split and of every training."})


def fold_detector(args: CrossValidationArguments, fold: int) -> str:
    """The folder of `fold`'s detector: the cached default where it is that detector, else trained (or reused)
    under `output_dir`."""
    overrides = {"seed": args.seed, "held_out_fold": fold, "captions_csv": clotho_captions_csv()}
    cache = os.path.expanduser(ERROR_DETECTOR_DIR)
    if is_reusable(cache, DetectorTrainingArguments(output_dir=cache, **overrides)):
        return cache
    return ensure_error_detector(os.path.join(args.output_dir, f"fold_{fold}"), **overrides)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    """Train or reuse each fold's detector; print and return the mean rows of its held-out Clotho tables."""
    (args,) = HfArgumentParser(CrossValidationArguments).parse_args_into_dataclasses(argv)
    folds = [int(fold) for fold in args.folds.split(",")]
    tables = []
    for fold in folds:
        path = fold_detector(args, fold)
        with open(os.path.join(path, "metrics.json")) as handle:
            tables.append(json.load(handle)["held_out"]["clotho"])
        print(f"fold {fold}: {path}")
    rows = mean_rows(tables)
    print(f"held-out Clotho, seed {args.seed}, the mean of folds {args.folds} (ROC-AUC lowest-highest):")
    print(format_table(rows))
    for name, row in rows.items():
        print(f"{name}: ROC-AUC {row['roc_auc']:.3f} ({row['roc_auc_min']:.3f}-{row['roc_auc_max']:.3f})")
    for problem in quality_problems(rows) or ["none: every target met by the mean"]:
        print(f"below target: {problem}")
    return rows


if __name__ == "__main__":
    main()
