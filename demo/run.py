# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
`laac demo`: the whole system end to end on a laptop CPU, on data and weights the project makes itself.

No real dataset or checkpoint can be downloaded here, so the demo follows the report's recipe in miniature:

1. corpus     a seeded Clotho-format corpus of synthetic sound scenes (`synthetic_corpus`), five captions a clip;
2. encoder    a small CED pretrained as an audio tagger on the corpus's events, as CED-Base is pretrained on
              AudioSet (stock `Trainer` on `CedForAudioClassification`);
3. captioner  that encoder (frozen) + a random Q-Former + a small random Llama with a word vocabulary, trained
              on the captions with `train.py` (every other weight trains: nothing here is pretrained text);
4. baseline   the same captioner trained the same way on silence: what the language prior alone achieves;
5. evaluate   beam-3 captions of the held-out split, scored with the DCASE metrics and an event F1;
6. export     a self-contained folder, reloaded in a fresh process with `pipeline("audio-captioning",
              trust_remote_code=True)` where the `laac` package is not importable, captioning the held-out clips
              and any files you pass; the post-corrector (SmolLM2-135M-Instruct, offline) runs on the captions
              a FENSE-style detector flags, when a detector is given;
7. report     `report.md`, `metrics.json` and `index.html` (spectrogram, audio, references, caption per clip).

The exported model becomes the default `--model` of `laac caption`.
"""

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TrainerCallback, TrainerState
from transformers.trainer import TRAINER_STATE_NAME
from transformers.utils import logging

from ..cli.paths import DEMO_MODEL_DIR
from ..data.synthetic_corpus import events_in_caption, write_corpus

from .progress import DemoProgress, machine_speed, stage_caps, stage_estimates
from .recipe import DEMO_DIR, RECIPES, SMOLLM2_RECIPE, TEXT_MODELS, WORK_FOLDERS, DemoShape, fast_bf16
from .stages import (
    DetectorChoice,
    build_initial_model,
    caption_in_fresh_process,
    choose_detector,
    clip_cards,
    correction_check,
    correction_notes,
    error_detector,
    evaluate_export,
    post_corrector,
    pretrain_encoder,
    pretrained_text_model_args,
    run_train_py,
    summarize_correction,
    train_captioner,
)

logger = logging.get_logger(__name__)


def train_pretrained_text_captioner(
    run: "DemoRun", out_dir: str, steps: int, silence: bool = False, seconds: float | None = None
) -> str:
    """The captioner (or, with `silence`, its blind baseline) on SmolLM2; returns the merged export."""
    from ..conversion.convert_gguf_causal_lm import smollm2_folder
    from ..correction.train_error_detector import TimeBudgetCallback

    model_args = pretrained_text_model_args(os.path.join(run.out, "encoder"), smollm2_folder(), run.shape)
    callbacks: list[TrainerCallback] = [run.progress]
    if seconds:
        callbacks.append(TimeBudgetCallback(seconds))
    recipe = SMOLLM2_RECIPE
    return run_train_py(
        run.corpus, model_args, out_dir, steps, recipe.batch_size, recipe.learning_rate, run.args.seed, silence,
        callbacks, use_cpu=not torch.cuda.is_available(), frozen_audio=False,  # LoRA trains the encoder too
        scheduler="constant_with_warmup",  # a time cap may end the run anywhere: no schedule to cut short
        feature_cache=run.log_mels,  # the tagger stage's log-mels (the silent run keys its own apart)
    )  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="laac demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="*", help="audio files of yours to caption with the trained model too")
    parser.add_argument("--out", default=DEMO_DIR, help=f"working folder (default {DEMO_DIR})")
    parser.add_argument(
        "--model-dir", default=DEMO_MODEL_DIR, help=f"where the trained model goes (default {DEMO_MODEL_DIR})"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=3000, help="training clips of the synthetic corpus")
    parser.add_argument("--n-test", type=int, default=200, help="held-out clips")
    parser.add_argument(
        "--recipe", choices=["auto", *RECIPES], default="auto",
        help="training steps: 'full' where bf16 is native (GPU, AVX512-BF16/AMX CPU), 'compact' elsewhere (auto)",
    )  # fmt: skip
    parser.add_argument(
        "--text-model", choices=TEXT_MODELS, default="tiny",
        help="'tiny': a small Llama trained from scratch (default); 'smollm2': the real pretrained SmolLM2-135M-"
        "Instruct, frozen, with LoRA on both sides, as the report trains Llama 2 (slow on CPU; see README)",
    )  # fmt: skip
    parser.add_argument(
        "--caption-seconds", type=float,
        help="stop captioner training after this long (default: none; smollm2: %d s)" % SMOLLM2_RECIPE.caption_seconds,
    )  # fmt: skip
    parser.add_argument("--tagger-steps", type=int, help="encoder pretraining steps (batch 32); default: the recipe's")
    parser.add_argument("--caption-steps", type=int, help="captioner training steps (batch 64); default: the recipe's")
    parser.add_argument("--baseline-steps", type=int, help="blind baseline steps; default: the recipe's")
    parser.add_argument("--no-baseline", action="store_true", help="skip the blind (silence) baseline")
    parser.add_argument(
        "--detector",
        help="a FENSE-format error detector folder; default: the offline one that scripts/setup.sh trains once",
    )
    parser.add_argument("--no-correction", action="store_true", help="skip the post-corrector")
    parser.add_argument("--report-clips", type=int, default=24, help="held-out clips shown in the HTML report")
    args = parser.parse_args(argv)
    args.recipe = args.recipe if args.recipe != "auto" else ("full" if fast_bf16() else "compact")
    for name in ("tagger_steps", "caption_steps", "baseline_steps"):
        if getattr(args, name) is None:
            recipe = SMOLLM2_RECIPE if args.text_model == "smollm2" and name != "tagger_steps" else RECIPES[args.recipe]
            setattr(args, name, getattr(recipe, name))
    if args.text_model == "smollm2" and args.caption_seconds is None:
        args.caption_seconds = SMOLLM2_RECIPE.caption_seconds
    return args


# Seconds per unit of work on the machine the compact recipe was calibrated on (2-core AMD EPYC, Zen 3, float32), from
# `laac demo`'s own timings; `machine_speed` scales them to the machine at hand.


@dataclass
class DemoRun:
    """What the stages share: the arguments, the folders, the progress clock and what the report will show."""

    args: argparse.Namespace
    shape: DemoShape
    progress: DemoProgress
    systems: dict[str, dict[str, Any]]
    notes: list[str]
    log_mels: dict = field(default_factory=dict)  # the development clips', from the tagger stage to the captioner's
    detector: DetectorChoice = DetectorChoice(None, "post-correction: skipped")

    @property
    def out(self) -> str:
        return os.path.abspath(self.args.out)

    @property
    def corpus(self) -> str:
        return os.path.join(self.out, "corpus")


def run_corpus(run: DemoRun) -> None:
    for stale in WORK_FOLDERS:  # only what an earlier run of the demo made here; never the folder itself
        shutil.rmtree(os.path.join(run.out, stale), ignore_errors=True)
    sizes = {"development": run.args.n_train, "validation": 100, "evaluation": run.args.n_test}
    write_corpus(run.corpus, sizes, seed=run.args.seed)


def run_encoder(run: DemoRun) -> None:
    encoder_dir = os.path.join(run.out, "encoder")
    tagging = pretrain_encoder(
        run.corpus, encoder_dir, run.shape, run.args.tagger_steps, run.args.seed, run.progress, run.log_mels
    )
    run.notes.append(f"encoder tagging F1 (validation): {tagging['tagging_f1']:.3f}")
    print(f"[demo] {run.notes[-1]}", flush=True)


def run_captioner(run: DemoRun) -> str:
    if run.args.text_model == "smollm2":
        captioner_dir = os.path.join(run.out, "captioner")
        export = train_pretrained_text_captioner(
            run, captioner_dir, run.args.caption_steps, seconds=run.args.caption_seconds
        )
        run.notes.append(
            f"captioner (SmolLM2): {trainer_state(captioner_dir).global_step} of {run.args.caption_steps} steps within "
            f"the {run.args.caption_seconds:.0f}-s cap; {format_loss_curve(captioner_dir)}"
        )
        print(f"[demo] {run.notes[-1]}", flush=True)
    else:
        init_dir = build_initial_model(
            run.corpus, os.path.join(run.out, "encoder"), os.path.join(run.out, "init"), run.shape, run.args.seed
        )
        export = train_captioner(
            run.corpus, init_dir, os.path.join(run.out, "captioner"), run.shape, run.args.caption_steps,
            run.args.seed, callbacks=[run.progress], feature_cache=run.log_mels,
        )  # fmt: skip
    run.log_mels.clear()  # the captioner was their last reader
    return export


def run_baseline(run: DemoRun) -> None:
    """The same captioner on silence (100 steps of 32 at twice the rate; the notes show its loss curve)."""
    blind_dir = os.path.join(run.out, "blind")
    if run.args.text_model == "smollm2":
        blind = train_pretrained_text_captioner(
            run, blind_dir, run.args.baseline_steps, silence=True, seconds=SMOLLM2_RECIPE.baseline_seconds
        )
    else:
        blind = train_captioner(
            run.corpus, os.path.join(run.out, "init"), blind_dir, run.shape, run.args.baseline_steps, run.args.seed,
            silence=True, callbacks=[run.progress],
        )  # fmt: skip
    run.systems["blind baseline (silence)"] = evaluate_export(blind, run.corpus, "evaluation", silence=True)[1]
    run.notes.append(f"blind baseline {format_loss_curve(blind_dir)}")
    print(f"[demo] {run.notes[-1]}", flush=True)


def trainer_state(output_dir: str) -> TrainerState:
    """The state a Trainer run saved in `output_dir` (its step count, its logged losses)."""
    return TrainerState.load_from_json(os.path.join(output_dir, TRAINER_STATE_NAME))


def loss_curve(output_dir: str) -> list[tuple[int, float]]:
    """(step, training loss) pairs that the Trainer logged in a run's trainer_state.json."""
    return [(entry["step"], float(entry["loss"])) for entry in trainer_state(output_dir).log_history if "loss" in entry]


def format_loss_curve(output_dir: str) -> str:
    """The loss curve of a run as the report notes show it."""
    return "training loss (step: loss): " + ", ".join(f"{s}: {l:.3f}" for s, l in loss_curve(output_dir))


def run_fresh_process(run: DemoRun, export: str, predictions: list[dict]) -> list[dict]:
    """Copy the export to the model folder; caption held-out clips and the user's files where laac is absent."""
    model_dir = os.path.abspath(run.args.model_dir)
    shutil.rmtree(model_dir, ignore_errors=True)
    shutil.copytree(export, model_dir)
    cards = clip_cards(predictions, run.corpus, "evaluation", run.args.report_clips)
    paths = [card["audio_path"] for card in cards] + [os.path.abspath(f) for f in run.args.files]
    fresh = caption_in_fresh_process(model_dir, paths, os.path.join(run.out, "fresh_process_captions.json"))
    agree = sum(r.get("caption") == card["caption"] for r, card in zip(fresh, cards))
    for path, result in zip(run.args.files, fresh[len(cards) :]):
        cards.append({"file_name": os.path.basename(path), "audio_path": os.path.abspath(path), "references": [],
                      "caption": result.get("caption", f"error: {result.get('error')}"), "events": [],
                      "predicted_events": sorted(events_in_caption(result.get("caption", ""))),
                      "segments": result.get("segments", [])})  # fmt: skip
    run.notes.append(
        f"fresh process (laac not importable, pipeline + trust_remote_code): {agree}/{len(fresh) - len(run.args.files)}"
        " held-out captions identical to the in-process evaluation"
    )
    return cards


def run_correction(run: DemoRun, cards: list[dict]) -> None:
    """The gate and the rewrite on the model's captions, then the detector per error kind on corrupted references."""
    # one corrector for both: the detector and the LLM load once
    corrector = post_corrector(error_detector(run.detector))
    records = corrector([card["caption"] for card in cards])
    for card, record in zip(cards, records):
        card.update(caption=record["caption"], raw_caption=record["raw_caption"],
                    error_prob=record["error_prob"], corrected=record["corrected"])  # fmt: skip
    held_out = summarize_correction(records, corrector.threshold)
    run.notes.append(
        f"post-corrector on the model's captions: {held_out['flagged']} of {held_out['captions']} flagged (error "
        f"probability above 0.9), {held_out['rewritten']} rewritten"
    )
    check = correction_check(corrector, run.corpus, "evaluation", run.args.n_test, run.args.report_clips, run.args.seed)
    notes = correction_notes(check, run.args.n_test)
    run.notes.extend(notes)
    for note in run.notes[-1 - len(notes) :]:  # the line on the model's captions, then the check's
        print(f"[demo] {note}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    detector = choose_detector(args.detector, args.no_correction)
    from ..evaluation.report import write_report

    shape = DemoShape(text_layers=RECIPES[args.recipe].text_layers)
    progress = DemoProgress(stage_estimates(args, detector), speed=machine_speed(shape), caps=stage_caps(args))
    run = DemoRun(args, shape, progress, systems={}, notes=[], detector=detector)
    text_model = (
        f"SmolLM2-135M-Instruct frozen with LoRA on both sides, batch {SMOLLM2_RECIPE.batch_size}, at most "
        f"{args.caption_seconds:.0f} s" if args.text_model == "smollm2" else f"{shape.text_layers} text layers"
    )
    run.notes.append(
        f"recipe {args.recipe} (native bf16: {fast_bf16()}): tagger {args.tagger_steps} steps, captioner "
        f"{args.caption_steps} ({text_model}), blind baseline {args.baseline_steps}; machine speed "
        f"{progress.speed:.2f}x the reference machine's step time"
    )
    run.notes.append(detector.note)
    for note in run.notes:
        print(f"[demo] {note}", flush=True)
    progress.begin("corpus")
    run_corpus(run)
    progress.end()
    progress.begin("encoder pretraining")
    run_encoder(run)
    progress.end()
    progress.begin("captioner training")
    export = run_captioner(run)
    progress.end()
    progress.begin("evaluation")
    predictions, run.systems["LAAC (demo)"] = evaluate_export(export, run.corpus, "evaluation")
    progress.end()
    if not args.no_baseline:
        progress.begin("blind baseline")
        run_baseline(run)
        progress.end()
    progress.begin("fresh-process captioning")
    cards = run_fresh_process(run, export, predictions)
    progress.end()
    status = 0
    if detector.detector is not None:
        progress.begin("post-correction")
        try:
            run_correction(run, cards)
        except OSError as error:  # a detector or text model that could not be read or downloaded
            run.notes.append(f"post-correction failed, the captions are uncorrected: {error}")
            print(f"[demo] {run.notes[-1]}", file=sys.stderr, flush=True)
            status = 1
        progress.end()
    write_outputs(run, cards, write_report)
    return status


def write_outputs(run: DemoRun, cards: list[dict], write_report: Any) -> None:
    timings = {**run.progress.timings, "total": round(sum(run.progress.timings.values()), 1)}
    run.notes.append("timings (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    paths = write_report(os.path.join(run.out, "report"), cards, run.systems, notes=run.notes)
    with open(os.path.join(run.out, "report", "timings.json"), "w", encoding="utf-8") as f:
        json.dump(timings, f, indent=2)
    with open(paths["markdown"], encoding="utf-8") as f:
        print(f.read())
    print(f"[demo] report: {paths['html']}\n[demo] model: {os.path.abspath(run.args.model_dir)}")


if __name__ == "__main__":
    sys.exit(main())
