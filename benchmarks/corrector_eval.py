"""How much does the post-corrector fix, judged by the error detector, and does the gate leave clean captions alone?

Erroneous set: handwritten captions with the disfluencies AAC decoders produce, plus FENSE-rule corruptions of
real Clotho evaluation captions. Clean set: real Clotho captions. Every erroneous caption is rewritten by the LLM
("always" mode) and re-scored by the detector; the clean set runs through the gated PostCorrector ("auto").

    OMP_NUM_THREADS=2 python -m laac.benchmarks.corrector_eval \
        --detector outputs/error_detector_minilm --corrector_model smollm2

Offline the detector is the MiniLM echecker trained by `train_error_detector.py` (the FENSE base checkpoint needs
a download) and the corrector SmolLM2-135M-Instruct (Llama 3 8B Instruct needs the Hub).
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from transformers import HfArgumentParser

from laac.correction.post_corrector import DEFAULT_ERROR_THRESHOLD, PostCorrector
from laac.data.loaders import read_clotho_captions
from laac.processing_laac import fense_normalize_caption
from laac.correction.corruptions import corrupt_caption
from laac.correction.train_error_detector import split_by_clip
from laac.data.public_data import clotho_captions_csv


HANDWRITTEN_ERRONEOUS = [
    "a man is speaking and then",
    "birds are chirping in the background and a",
    "a dog barks while a dog barks",
    "rain falls on a roof and rain falls on a roof",
    "a car engine is running and a car engine is running",
    "water is flowing and water is flowing in a stream",
    "people are talking while and music is playing",
    "a bell ringing ringing loudly loudly",
    "a person walking on gravel and then a",
    "wind blows strongly strongly",
    "a crowd of people cheering and clapping and cheering",
    "a train passes by followed by a train passes by",
    "someone typing on a keyboard with",
    "a woman speaking while a baby crying a",
    "thunder rumbles in the distance as",
    "an engine idling and a man speaking and then an engine",
    "a door creaks open and closes and a door creaks",
    "the birds the birds are singing",
    "a clock ticking ticking and a",
    "footsteps on a wooden floor by a",
]


@dataclass
class CorrectorEvalArguments:
    detector: str = field(default="outputs/error_detector_minilm", metadata={"help": "echecker .ckpt or folder."})
    corrector_model: str = field(default="smollm2")
    threshold: float = field(default=DEFAULT_ERROR_THRESHOLD)
    captions_csv: str | None = field(default=None, metadata={"help": "default: laac.data.public_data's copy"})
    num_corrupted: int = field(default=30, metadata={"help": "FENSE-rule corruptions of held-out Clotho captions."})
    num_clean: int = field(default=60, metadata={"help": "Clean held-out Clotho captions for the gate check."})
    batch_size: int = field(default=8)
    seed: int = field(default=7)
    output_json: str | None = field(default=None)


def build_sets(args: CorrectorEvalArguments) -> tuple[list[str], list[str]]:
    """(erroneous captions, clean captions), the Clotho ones from clips the detector did not train on."""
    _, held_out = split_by_clip(read_clotho_captions(args.captions_csv or clotho_captions_csv()), 0.2, seed=2021)
    rng = random.Random(args.seed)
    rng.shuffle(held_out)
    corrupted = [corrupt_caption(caption, rng)[0] for caption in held_out[: args.num_corrupted]]
    clean_slice = held_out[args.num_corrupted : args.num_corrupted + args.num_clean]
    clean = [fense_normalize_caption(caption) for caption in clean_slice]  # the detector's input cleaning
    return HANDWRITTEN_ERRONEOUS + corrupted, clean


def rewrite_figures(before: np.ndarray, after: np.ndarray, changed: np.ndarray, threshold: float) -> dict:
    flagged = before > threshold
    fixed = flagged & (after <= threshold)
    return {
        "captions": int(len(before)),
        "flagged_by_detector": int(flagged.sum()),
        "rewritten": int(changed.sum()),
        "fixed_of_flagged": int(fixed.sum()),
        "fix_rate_of_flagged": float(fixed.sum() / max(flagged.sum(), 1)),
        "mean_error_prob_before": float(before.mean()),
        "mean_error_prob_after": float(after.mean()),
        "error_prob_lowered": int(np.sum(after < before - 1e-6)),
    }


def evaluate(args: CorrectorEvalArguments) -> dict:
    erroneous, clean = build_sets(args)
    settings = {"detector": args.detector, "corrector_model": args.corrector_model, "threshold": args.threshold,
                "batch_size": args.batch_size}
    always = PostCorrector.from_settings(settings, mode="always")
    detector = always.detector  # one loaded copy of each model, shared by both post-correctors
    start = time.perf_counter()
    rewrites = always(erroneous)
    seconds = time.perf_counter() - start
    before = np.array(detector(erroneous))
    after = np.array(detector([record["caption"] for record in rewrites]))
    changed = np.array([record["corrected"] for record in rewrites])

    gated = PostCorrector.from_settings(settings, mode="auto", detector=detector, corrector_model=always.corrector)
    clean_records = gated(clean)
    examples = [(e, r["caption"], round(b, 3), round(a, 3)) for e, r, b, a in zip(erroneous, rewrites, before, after)]
    return {
        "threshold": args.threshold,
        "erroneous_all": rewrite_figures(before, after, changed, args.threshold),
        "erroneous_handwritten": rewrite_figures(*(x[: len(HANDWRITTEN_ERRONEOUS)] for x in (before, after, changed)),
                                                 args.threshold),
        "erroneous_at_0.5": rewrite_figures(before, after, changed, 0.5),
        "corrector_reasons": dict(Counter(record["reason"] for record in rewrites)),
        "corrector_seconds_per_caption": seconds / len(erroneous),
        "clean_captions": len(clean),
        "clean_untouched": sum(not record["corrected"] for record in clean_records),
        "clean_flagged": sum(record["error_prob"] > args.threshold for record in clean_records),
        "clean_reasons": dict(Counter(record["reason"] for record in clean_records)),
        "examples": examples[:10] + examples[len(HANDWRITTEN_ERRONEOUS) : len(HANDWRITTEN_ERRONEOUS) + 5],
    }


def main(argv: list[str] | None = None) -> dict:
    (args,) = HfArgumentParser(CorrectorEvalArguments).parse_args_into_dataclasses(
        args=sys.argv[1:] if argv is None else argv
    )
    results = evaluate(args)
    print(json.dumps(results, indent=2))
    if args.output_json:
        with open(args.output_json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
