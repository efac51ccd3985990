# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""The demo's progress lines: elapsed time per stage and an estimate of what is left, from a quick speed probe."""

import argparse
import math
import time

import torch
from transformers import TrainerCallback
from transformers.utils import logging

from ..modeling_ced import CedForAudioClassification

from .recipe import EVENT_NAMES, SMOLLM2_RECIPE, DemoShape, fast_bf16
from .stages import DetectorChoice

logger = logging.get_logger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# Progress: elapsed time and an estimate of what is left, from the first seconds on
# ----------------------------------------------------------------------------------------------------------------


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


class DemoProgress(TrainerCallback):
    """
    One line per stage, and one every `every` seconds inside a stage, with the elapsed time and the time left.

    The estimate starts from `estimates` (seconds per stage on a reference machine, scaled by `speed`: how long this
    machine takes for a probe step relative to that machine). Inside a training stage the stage's own step rate
    takes over; after each stage the stages still to come are rescaled by how the finished ones compared with
    their estimates. As a `TrainerCallback` it reports training steps.
    """

    PRIOR_SECONDS = 60.0

    def __init__(
        self, estimates: dict[str, float], speed: float = 1.0, every: float = 10.0, caps: dict[str, float] | None = None
    ) -> None:
        # `caps`: stages whose training stops at a wall-clock limit take at most that long on any machine
        caps = caps or {}
        self.estimates = {name: min(seconds * speed, caps.get(name, math.inf)) for name, seconds in estimates.items()}
        self.speed, self.every = speed, every
        self.timings: dict[str, float] = {}
        self.start = self.stage_start = self.last_line = time.perf_counter()
        self.stage: str | None = None

    def _scale(self) -> float:
        """
        Observed over estimated time of the finished stages, each side padded with PRIOR_SECONDS of agreement, so a
        short stage that ran long (a corpus written in 37 s instead of 18) does not swing the whole forecast.
        """
        estimated = sum(self.estimates[name] for name in self.timings) + self.PRIOR_SECONDS
        return (sum(self.timings.values()) + self.PRIOR_SECONDS) / estimated

    def left(self, stage_left: float | None = None) -> tuple[float, float]:
        """(seconds left in the current stage, seconds left in the run)."""
        elapsed = time.perf_counter() - self.stage_start
        if stage_left is None:
            stage_left = max(self.estimates.get(self.stage, 0.0) * self._scale() - elapsed, 0.0)
        later = [name for name in self.estimates if name not in self.timings and name != self.stage]
        return stage_left, stage_left + self._scale() * sum(self.estimates[name] for name in later)

    def _line(self, detail: str = "", stage_left: float | None = None) -> None:
        names = list(self.estimates)
        number = names.index(self.stage) + 1 if self.stage in names else len(names)
        now = time.perf_counter()
        stage, total = self.left(stage_left)
        print(
            f"[demo] {number}/{len(names)} {self.stage}{detail}: elapsed {_clock(now - self.start)}, "
            f"about {_clock(stage)} left in this stage, {_clock(total)} in all (ends at about "
            f"{_clock(now - self.start + total)})",
            flush=True,
        )
        self.last_line = now

    def begin(self, stage: str) -> None:
        self.stage, self.stage_start = stage, time.perf_counter()
        self.first_step: tuple[float, int] | None = None  # (time, step) of a training stage's first step
        self._line()

    def tick(self, done: int | None = None, total: int | None = None) -> None:
        """
        A line if `every` seconds have passed. With done/total (training steps), the stage's remaining time comes
        from its own step rate, measured from its first step on (what precedes it, such as computing log-mels, and
        the first step's warm-up would distort it).
        """
        now = time.perf_counter()
        if done and self.first_step is None:
            self.first_step = (now, done)
        if now - self.last_line < self.every:
            return
        if done and total and done > self.first_step[1]:
            start, first = self.first_step
            self._line(f" (step {done}/{total})", stage_left=(now - start) * (total - done) / (done - first))
        else:
            self._line()

    def end(self) -> float:
        seconds = round(time.perf_counter() - self.stage_start, 1)
        self.timings[self.stage] = seconds
        print(f"[demo] {self.stage}: {seconds} s (estimated {self.estimates.get(self.stage, 0.0):.0f} s)", flush=True)
        return seconds

    def on_step_end(self, args, state, control, **kwargs):
        self.tick(state.global_step, state.max_steps)


REFERENCE_SECONDS = {
    "corpus": 0.0112,  # per clip written
    "encoder pretraining": 0.45,  # per tagger step (batch 32), with the log-mels computed once
    "captioner training": 0.45,  # per captioner step (batch 64, 1 text layer)
    "evaluation": 0.10,  # per held-out clip (beam 3)
    "blind baseline": 0.60,  # per step (batch 32), with its log-mels and export, plus its evaluation
    "fresh-process captioning": 11.0,
    "post-correction": 33.0,  # the offline detector trained beforehand (scripts/setup.sh), SmolLM2 converted
    "offline detector training": 600.0,  # when set-up did not train it (450 s on 2 quiet cores)
    "smollm2 step": 10.0,  # per SmolLM2 captioner step (batch 8), LoRA on both sides
    "evaluation (smollm2)": 0.5,  # per held-out clip (beam 3)
}
REFERENCE_PROBE_SECONDS = 0.115


def machine_speed(shape: DemoShape) -> float:
    """How long this machine takes, relative to the reference one, for two tagger steps (about a second)."""
    torch.manual_seed(0)
    model = CedForAudioClassification(shape.audio_config())
    features, labels = torch.randn(8, 64, 600), torch.rand(8, len(EVENT_NAMES)).round()
    seconds = []
    for _ in range(3):  # the first is warm-up
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast_bf16() and not torch.cuda.is_available()):
            model(features, labels=labels).loss.backward()
        seconds.append(time.perf_counter() - start)
    return min(seconds[1:]) / REFERENCE_PROBE_SECONDS


def stage_caps(args: argparse.Namespace) -> dict[str, float]:
    """The most seconds a time-capped stage can take (its training cap, its evaluation at the reference speed)."""
    if args.text_model != "smollm2":
        return {}
    evaluation = 4 * REFERENCE_SECONDS["evaluation (smollm2)"] * args.n_test  # a 4x slower machine's
    caps = {"captioner training": args.caption_seconds + 60.0}
    caps["blind baseline"] = SMOLLM2_RECIPE.baseline_seconds + 60.0 + evaluation
    return caps


def stage_estimates(args: argparse.Namespace, detector: DetectorChoice) -> dict[str, float]:
    """Reference-machine seconds of each stage of this run, in order."""
    clips = args.n_train + 100 + args.n_test
    estimates = {
        "corpus": REFERENCE_SECONDS["corpus"] * clips,
        "encoder pretraining": REFERENCE_SECONDS["encoder pretraining"] * args.tagger_steps,
        "captioner training": REFERENCE_SECONDS["captioner training"] * args.caption_steps,
        "evaluation": REFERENCE_SECONDS["evaluation"] * args.n_test,
        "blind baseline": REFERENCE_SECONDS["blind baseline"] * args.baseline_steps
        + REFERENCE_SECONDS["evaluation"] * args.n_test,
        "fresh-process captioning": REFERENCE_SECONDS["fresh-process captioning"],
        "post-correction": REFERENCE_SECONDS["post-correction"]
        + (REFERENCE_SECONDS["offline detector training"] if detector.train else 0.0),
    }
    if args.text_model == "smollm2":  # its training stages stop at their time caps; evaluation is a larger model's
        evaluation = REFERENCE_SECONDS["evaluation (smollm2)"] * args.n_test
        estimates.update({
            "captioner training": REFERENCE_SECONDS["smollm2 step"] * args.caption_steps,
            "evaluation": evaluation,
            "blind baseline": REFERENCE_SECONDS["smollm2 step"] * args.baseline_steps + evaluation,
            "fresh-process captioning": 2 * REFERENCE_SECONDS["fresh-process captioning"],
        })  # fmt: skip
    if args.no_baseline:
        del estimates["blind baseline"]
    if detector.detector is None:
        del estimates["post-correction"]
    return estimates
