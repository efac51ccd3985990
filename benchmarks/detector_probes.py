"""How well does an error detector catch four errors that the held-out table mixes into larger rows?

Each probe corrupts every held-out Clotho caption it can (the held-out fifth of `--seed`, the split a training of
that seed left out) once, and scores the corrupted captions against the clean ones: ROC-AUC and recall at the 0.9
gate, for the detector and for its classifier alone (every probe doubles a phrase in place, which a detector that
flags doubled phrases, `correction.post_corrector.doubled_phrase`, scores 1.0 whatever its classifier says).

- "quantity doubled": the caption's first word of quantity doubled ("two two women", "a few few times");
- "event doubled with and": its first event phrase of two words or more doubled with "and" between the copies ("a dog
  barks and a dog barks and a car passes");
- "predicate doubled" / "predicate doubled with and": one predicate doubled in place, with or without "and" between
  the copies ("people are talking are talking as a car passes"): a verb other than an -ing form, or an auxiliary,
  after the caption's first word, with up to three words after it before a conjunction.

    OMP_NUM_THREADS=2 python -m laac.benchmarks.detector_probes --detector ~/.cache/laac/error_detector_minilm

The same detector and seed give the same figures; docs/post-correction.md quotes them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Optional

from transformers import HfArgumentParser

from laac.cli.paths import ERROR_DETECTOR_DIR
from laac.correction.corruptions import AUXILIARIES, CONJUNCTION_WORDS, QUANTITY_WORDS, event_phrases, is_verb
from laac.correction.detector_evaluation import GATE_THRESHOLD, classifier_and_detector_probabilities, score_rows
from laac.correction.post_corrector import load_error_detector
from laac.correction.train_error_detector import DetectorTrainingArguments, split_captions
from laac.processing_laac import fense_normalize_caption

PREDICATE_SEED = 5  # which predicate of a caption is doubled


def quantity_doubled(caption: str) -> str | None:
    """The first word of quantity doubled; None without one."""
    words = caption.split()
    index = next((i for i, word in enumerate(words) if word in QUANTITY_WORDS), None)
    return None if index is None else " ".join(words[: index + 1] + words[index:])


def event_doubled_with_and(caption: str) -> str | None:
    """The first event phrase of two words or more doubled, "and" between the copies; None without one."""
    events = [event for event in event_phrases(caption) if len(event.split()) >= 2]
    return caption.replace(events[0], f"{events[0]} and {events[0]}", 1) if events else None


def predicate_doubled(caption: str, rng: random.Random) -> tuple[str, str] | None:
    """One predicate (a verb or auxiliary after the first word and up to three words after it, before a conjunction)
    doubled in place: without and with "and" between the copies. None without one."""
    words = caption.split()
    starts = [i for i in range(1, len(words))
              if words[i] in AUXILIARIES or (is_verb(words[i]) and not words[i].endswith("ing"))]  # fmt: skip
    if not starts:
        return None
    start = rng.choice(starts)
    end = start + 1
    while end < len(words) and words[end] not in CONJUNCTION_WORDS and end - start < 4:
        end += 1
    head, span, tail = words[:end], words[start:end], words[end:]
    return " ".join(head + span + tail), " ".join(head + ["and"] + span + tail)


def probe_corruptions(captions: list[str]) -> dict[str, list[str]]:
    """Each probe's corrupted captions (`captions` already cleaned as FENSE does)."""
    rng = random.Random(PREDICATE_SEED)
    probes: dict[str, list[str]] = {"quantity doubled": [], "event doubled with and": [], "predicate doubled": [],
                                    "predicate doubled with and": []}  # fmt: skip
    for caption in captions:
        for name, text in (("quantity doubled", quantity_doubled(caption)),
                           ("event doubled with and", event_doubled_with_and(caption))):  # fmt: skip
            if text is not None:
                probes[name].append(text)
        predicate = predicate_doubled(caption, rng)
        if predicate is not None:
            probes["predicate doubled"].append(predicate[0])
            probes["predicate doubled with and"].append(predicate[1])
    return probes


@dataclass
class ProbeArguments:
    detector: str = field(default=ERROR_DETECTOR_DIR, metadata={"help": "Error detector folder."})
    seed: int = field(default=2021, metadata={"help": "The training seed whose held-out captions are probed."})
    show: int = field(default=0, metadata={"help": "Print this many of each probe's lowest-scored captions."})
    flag_doubled_phrases: Optional[bool] = field(
        default=None, metadata={"help": "Whether the detector flags doubled phrases (unset: its checkpoint's choice)."}
    )
    read_clause_marks: Optional[bool] = field(
        default=False,
        metadata={"help": "Whether the detector reads clause marks (off: the probes are made from cleaned captions, "
                  "without the marks the clean captions keep; unset: the checkpoint's choice)."},
    )


def main(argv: list[str] | None = None) -> dict[str, dict[str, dict]]:
    """Print and return each probe's row for the detector (`"detector"`) and its classifier (`"classifier alone"`)."""
    (args,) = HfArgumentParser(ProbeArguments).parse_args_into_dataclasses(argv)
    _, held_out = split_captions(DetectorTrainingArguments(output_dir=args.detector, seed=args.seed))
    captions = [fense_normalize_caption(caption) for caption in held_out["clotho"]]
    detector = load_error_detector(
        args.detector, flag_doubled_phrases=args.flag_doubled_phrases, read_clause_marks=args.read_clause_marks
    )
    probes = probe_corruptions(captions)
    (alone_clean, alone), gate = classifier_and_detector_probabilities(detector, held_out["clotho"], probes)
    tables = {"detector": score_rows(*gate, GATE_THRESHOLD),
              "classifier alone": score_rows(alone_clean, alone, GATE_THRESHOLD)}  # fmt: skip
    print(f"{args.detector}, seed {args.seed}: {len(captions)} held-out clean captions; ROC-AUC and recall at "
          f"{GATE_THRESHOLD}, the detector (flag_doubled_phrases={detector.flag_doubled_phrases}) / its classifier "
          "alone")  # fmt: skip
    for name, row in tables["detector"].items():
        other = tables["classifier alone"][name]
        print(f"{name}: {row['positives']} captions, ROC-AUC {row['roc_auc']:.3f} / {other['roc_auc']:.3f}, recall "
              f"{row['recall']:.3f} / {other['recall']:.3f}")  # fmt: skip
        for score, text in sorted(zip(alone[name], probes[name]))[: args.show]:  # the classifier's lowest
            print(f"    {score:.3f} {text}")
    return tables

if __name__ == "__main__":
    main()
