"""Seconds of the demo's stages after the tagger, on the corpus and encoder of a finished `laac demo` run.

    laac demo --out DIR                                   # once: the corpus, the tagger, the initial model
    python benchmarks/demo_stages.py --demo-dir DIR       # captioner, evaluation, blind baseline, post-correction

The stages run as `laac demo` runs them (the recipe's steps, its blind baseline, its post-corrector with the offline
detector and SmolLM2), into a scratch folder, so the code of two commits can be timed side by side on the same data:
check out one, run, check out the other, run. The captioner gets the development clips' log-mels as the tagger stage
hands them over (computed before the clock starts: the tagger stage computes them anyway). Prints one JSON line.
"""

import argparse
import json
import os
import tempfile
import time

from laac.demo import recipe as demo_recipe, stages as demo_stages
from laac.feature_extraction_laac import LaacFeatureExtractor


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-dir", required=True, help="the --out folder of a finished `laac demo` run")
    parser.add_argument("--recipe", default="compact", choices=sorted(demo_recipe.RECIPES))
    parser.add_argument("--caption-steps", type=int, help="default: the recipe's")
    parser.add_argument("--baseline-steps", type=int, help="default: the recipe's")
    parser.add_argument("--detector", help="a FENSE-format error detector; default: the offline one set-up trains")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    corpus, init = os.path.join(args.demo_dir, "corpus"), os.path.join(args.demo_dir, "init")
    for folder in (corpus, init):
        if not os.path.isdir(folder):
            raise SystemExit(f"no {folder}: run `laac demo --out {args.demo_dir}` first (it writes corpus/ and init/)")
    detector = demo_stages.choose_detector(args.detector)
    if detector.detector is None:
        raise SystemExit(f"demo_stages times the post-correction stage too: {detector.note}")
    recipe = demo_recipe.RECIPES[args.recipe]
    caption_steps = args.caption_steps or recipe.caption_steps
    baseline_steps = args.baseline_steps or recipe.baseline_steps
    shape = demo_recipe.DemoShape(text_layers=recipe.text_layers)
    examples = demo_stages.tagging_examples(corpus, "development")
    log_mels = demo_stages.captioner_log_mels(examples, demo_stages.split_log_mels(examples, LaacFeatureExtractor()))
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        export = demo_stages.train_captioner(
            corpus, init, os.path.join(scratch, "captioner"), shape, caption_steps, args.seed,
            feature_cache=log_mels,
        )  # fmt: skip
        seconds["captioner training"] = time.perf_counter() - start
        start = time.perf_counter()
        predictions, metrics = demo_stages.evaluate_export(export, corpus, "evaluation")
        seconds["evaluation"] = time.perf_counter() - start
        start = time.perf_counter()
        blind = demo_stages.train_captioner(
            corpus, init, os.path.join(scratch, "blind"), shape, baseline_steps, args.seed, silence=True
        )
        blind_metrics = demo_stages.evaluate_export(blind, corpus, "evaluation", silence=True)[1]
        seconds["blind baseline"] = time.perf_counter() - start
        start = time.perf_counter()
        corrector = demo_stages.post_corrector(demo_stages.error_detector(detector))
        corrector([prediction["prediction"] for prediction in predictions[:24]])
        check = demo_stages.correction_check(corrector, corpus, "evaluation", len(predictions), 24, args.seed)
        seconds["post-correction"] = time.perf_counter() - start
    result = {
        "seconds": {stage: round(value, 1) for stage, value in seconds.items()},
        "total": round(sum(seconds.values()), 1),
        "event_f1": round(metrics["event_f1"], 4),
        "blind_event_f1": round(blind_metrics["event_f1"], 4),
        "corrupted": check["corrupted"],
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
