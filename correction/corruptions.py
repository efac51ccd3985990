"""The error detector's corruption rules: FENSE's five, and the same errors placed anywhere in a caption.

FENSE (Zhou et al., 2022) corrupted human captions by five rules (useless tail, repeated event, repeated adverb,
removed conjunction, removed verb) at fixed places, mostly the caption's end. These rules re-implement them (word
lists stand in for FENSE's spaCy part-of-speech tags; a removal is made only where it leaves a broken caption) and
add the errors small captioners make anywhere: each error kind (`ERROR_KINDS`) is made at FENSE's position or
anywhere (`POSITIONS`). `correction.train_error_detector` trains on them, `correction.detector_evaluation` scores a
detector on them; `RULES_VERSION` changes whenever what the training makes changes.
"""

from __future__ import annotations

import difflib
import random
import re

from laac.correction.english import (
    AUXILIARIES,
    CLAUSE_BREAKS,
    CONJUNCTION_WORDS,
    SUBORDINATORS,
    VERB_STEMS,
    inflects_stem,
    is_verb,
    words_after_marks,
)
from laac.correction.post_corrector import FENSE_ERROR_TYPES, INTENDED_REPEATS
from laac.processing_laac import fense_normalize_caption

RULES = FENSE_ERROR_TYPES[:-1]  # the five corruption rules; the last output is "any error"
# Raised whenever the corruption rules change what the training makes: `ensure_error_detector` retrains a cached
# detector made under another version (its recorded arguments alone would not show the change). Not raised when only
# the held-out rows change (a conjunction written after a comma kept, `conjunctions_after_marks`).
RULES_VERSION = 11

# ---------------------------------------------------------------------------------------------------------------
# FENSE corruption rules (facts from the FENSE paper / experiment notebook; implemented here)
# ---------------------------------------------------------------------------------------------------------------
USELESS_TAILS = ("in the", "of a", "and", "and a", "and a series of", "followed by", "as", "with", "a", "by a",
                 "on the", "and then")
EVENT_CONJUNCTIONS = ("and", "followed by", "while", "before", "after", "as", "with")
# Rule probabilities per corruption round (FENSE: 2 rounds with probability 0.9, else 1).
RULE_PROBABILITIES = {"add_tail": 0.2, "repeat_event": 0.4, "repeat_adv": 0.1, "remove_conj": 0.1,
                      "remove_verb": 0.15}
# How often the "balanced" mix applies each error kind (`ERROR_KINDS`) alone, relative to the others: tails, which
# FENSE's mix applies most and the detector learns first, least; doubled words and events, the errors captioners
# make, and removals, which it learns last, more; a removed conjunction most, as it reads like the run-ons that
# FENSE's cleaning makes of clean captions with commas. An event doubled with "and" between the copies ("a dog barks
# and a dog barks") was missed with repeat_event weighted 0.75; a removed verb weighs 4 since it may leave a word
# hanging in more ways (`verb_removal_is_error`) (docs/detector-trainings.md).
SINGLE_RULE_WEIGHTS = {"add_tail": 0.3, "dangling_clause": 0.15, "repeat_event": 2.5, "repeat_word": 4.5,
                       "repeat_adv": 1.0, "remove_conj": 5.0, "remove_verb": 4.0}
EXTRA_ADVERBS = {"again", "away", "together", "often", "very", "too", "still", "quite", "almost"}
NOT_ADVERBS = {"only", "family", "fly", "butterfly", "dragonfly", "jelly", "belly", "lily", "rally", "ally",
               "reply", "supply", "apply", "assembly", "early", "holy", "hilly", "bully", "july", "italy",
               "lovely", "friendly", "chilly", "ugly", "curly", "wobbly", "bubbly", "daily", "oily", "woolly"}


def is_adverb(word: str) -> bool:
    return word in EXTRA_ADVERBS or (word.endswith("ly") and len(word) > 4 and word not in NOT_ADVERBS)


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
NOUN_PHRASE_OPENERS = DETERMINERS - {"of"}  # "a motor", "the old door", "their steps"
# Adverbs that grade an adjective: "is moving very fast" -> "is very fast", "is emitting mostly static".
DEGREE_ADVERBS = {"very", "mostly", "quite", "too", "almost", "really", "extremely", "fairly", "slightly", "so",
                  "rather", "pretty", "increasingly", "somewhat", "barely", "mainly", "largely", "completely"}
PREPOSITIONS = {"in", "on", "at", "from", "to", "with", "into", "through", "over", "for", "of", "by", "near",
                "across", "along", "around", "behind", "outside", "inside", "during", "throughout"}
# Particles that end a verb phrase ("opening up and closing the doors" -> "opening up and the doors" is broken).
VERB_PARTICLES = {"up", "down", "out", "off", "away", "back", "over", "around", "by", "past"}
# Participles that open a phrase of what an action makes or causes: after another -ing verb they read well without
# the "and" ("water is falling and making a gurgling sound" -> "water is falling making a gurgling sound").
RESULT_PARTICIPLES = {"making", "causing", "creating", "producing", "emitting", "giving", "sending", "leaving"}
# Words that take an -ing clause as a preposition takes a noun phrase: without the -ing verb, its object follows
# them and reads well ("before reaching a steady pace" -> "before a steady pace").
PREPOSITIONS_BEFORE_ING = {"before", "after", "without", "until", "upon"}
# Subjects that cannot stand as a caption of their own: without its verb, what follows them is left hanging
# ("someone chops vegetables" -> "someone vegetables", "it gets louder" -> "it louder").
BARE_SUBJECTS = {"someone", "somebody", "something", "everyone", "everybody", "it", "he", "she"}
# How often an event happens: after a verb only ("a dog barks twice" -> "a dog twice").
COUNT_WORDS = {"once", "twice", "thrice", "five", "six", "seven", "eight", "nine", "ten"}
# Verbs and adjectives that take "to" + a verb and never "to" + a place: without the verb, "to" meets the object and
# the caption is broken ("begins to open the door" -> "begins to the door"). After other words "to" reads as a
# preposition ("drips to hit something" -> "drips to something", "is used to move grain" -> "is used to grain").
INFINITIVE_TAKERS = {
    "begin", "start", "decide", "try", "tries", "tried", "want", "need", "seem", "appear", "attempt", "fail",
    "manage", "refuse", "tend", "continue", "proceed", "plan", "learn", "prepare", "going", "able", "about",
    "began", "begun", "cease", "struggle",
}


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
    if following in RESULT_PARTICIPLES and previous.endswith("ing") and is_verb(previous):
        return False  # "is blowing and causing much noise" -> "is blowing causing much noise": a participle phrase
    if following in CLAUSE_OPENERS:
        return True
    if is_verb(following):  # "barks and growls" -> "barks growls"; "while walking" -> "walking" is a participle phrase
        return words[index] in COORDINATORS and (is_verb(previous) or is_adverb(previous))
    return after is not None and is_verb(after)  # "and dogs barking" / "while rain falls": a new clause's subject


def conjunctions_after_marks(written: str) -> frozenset[tuple[str, str, str]]:
    """
    Each conjunction that `written` (a caption with its punctuation) puts after a comma, semicolon or colon, as the
    words before it, it and the word after it, cleaned as FENSE cleans them: `remove_conj` keeps these, as "a door
    closes, and someone walks in" without its "and" joins two clauses with a comma, as clean captions do.

        >>> sorted(conjunctions_after_marks("A door closes, and someone walks in; then it shuts."))
        [('closes', 'and', 'someone'), ('in', 'then', 'it')]
    """
    pairs = words_after_marks(written)
    return frozenset(
        (pairs[index - 1][0], word, pairs[index + 1][0])
        for index, (word, after_mark) in enumerate(pairs[:-1])
        if index and after_mark and word in CONJUNCTION_WORDS
    )


def with_written_marks(written: str, text: str) -> str:
    """
    `text`, a corruption of `written`'s cleaned words, with the clause marks `written` puts between them (a comma
    where it has any of `CLAUSE_BREAKS` inside it): what a captioner who writes them would have written. Words a
    corruption inserts after a mark take the mark after them unless they copy the words that follow it (a tail on
    the clause before, "a dog barks loudly loudly, rain falls", against "a dog barks, rain falls rain falls"); a
    removed word's mark passes to the word after it.

        >>> with_written_marks("A dog barks, rain falls.", "a dog barks rain falls loudly loudly")
        'a dog barks, rain falls loudly loudly'
    """
    source = words_after_marks(written, CLAUSE_BREAKS)
    words = text.split()
    marked, pending = [False] * len(words), False  # pending: the mark of a removed word, for the next word
    matcher = difflib.SequenceMatcher(a=[word for word, _ in source], b=words, autojunk=False)
    for tag, start, end, new_start, new_end in matcher.get_opcodes():
        if tag == "equal":
            for offset in range(end - start):
                marked[new_start + offset] = source[start + offset][1]
            marked[new_start] = marked[new_start] or pending
        elif tag == "insert":  # the mark before source[start] stays there, after the words put in, unless they copy it
            copied = [word for word, _ in source[start : start + new_end - new_start]]
            if start < len(source) and source[start][1] and words[new_start:new_end] == copied:
                marked[new_start], source[start] = True, (source[start][0], False)
        elif tag == "replace":
            marked[new_start] = pending or any(mark for _, mark in source[start:end])
        pending = tag == "delete" and (pending or any(mark for _, mark in source[start:end]))
    out: list[str] = []
    for word, mark in zip(words, marked):
        if mark and out:
            out[-1] += ","
        out.append(word)
    return " ".join(out)


def _adverb_ends_clause(word: str | None, after: str | None) -> bool:
    """`word` is an adverb not followed by a verb ("are continuously followed by" keeps a verb after it)."""
    return word is not None and is_adverb(word) and not (after is not None and (is_verb(after) or after.endswith("ed")))


def verb_removal_is_error(words: list[str], index: int) -> bool:
    """
    Whether deleting the verb `words[index]` leaves a caption or one of its clauses missing its verb ("a dog is", "a
    man a door", "a dog loudly", "someone vegetables", "play and in a yard", "while waves on a beach", "a motor and
    runs"), not a noun phrase that reads well on its own ("people talking" -> "people", "birds chirping in the
    background" -> "birds in the background", "a dog is barking at a cat" -> "a dog is at a cat") nor a caption that
    keeps a verb there ("starts chopping rapidly" -> "starts rapidly", "drips to hit something" -> "drips to
    something").
    """
    word = words[index]
    previous, following, after = _word_at(words, index - 1), _word_at(words, index + 1), _word_at(words, index + 2)
    if previous is None or (previous in DETERMINERS and word.endswith("ing")):
        return False  # "running water splashes" -> "water splashes"; "a group of chatting people" -> "of people"
    if previous in PREPOSITIONS_BEFORE_ING and word.endswith("ing") and following in DETERMINERS:
        return False  # "passes before reaching a steady pace" -> "passes before a steady pace"
    before = _word_at(words, index - 2)
    if _is_inflected_verb(previous) or (previous in VERB_PARTICLES and _is_inflected_verb(before)):
        # A verb is left beside what follows: "starts chopping rapidly" -> "starts rapidly", "bird chirps fill the
        # air" -> "bird chirps the air", "passes by sounding its horn" -> "passes by its horn"
        return False
    finite = _is_finite(word) or (word in VERB_STEMS and previous.endswith("s") and not previous.endswith("ss"))
    conjunction_or_end = following is None or following in CONJUNCTION_WORDS
    after_subject = not (previous in AUXILIARIES or is_adverb(previous) or previous in CONJUNCTION_WORDS)
    if after_subject and following in {"and", "or"} and after is not None and not _opens_predicate(words, index + 2):
        return False  # "while dogs bark and crickets sing" -> "while dogs and crickets sing": two subjects, one verb
    if previous in COORDINATORS and conjunction_or_end and following != "then":  # "repeats and [fades] then"
        return True  # "people yelled and whistled while" -> "yelled and while"; "opens and closes" -> "opens and"
    if is_adverb(previous) and conjunction_or_end and before in AUXILIARIES:
        return True  # "birds are continuously chirping and then" -> "are continuously and then"
    if finite:
        if (is_adverb(previous) and not _ends_verb_phrase(before)) or _noun_phrase_after(words, index, SUBORDINATORS):
            return True  # "a faucet rapidly drips water"; "while waves crash on a beach" -> "while waves on a beach"
        particle_then_end = following in VERB_PARTICLES and (after is None or after in CONJUNCTION_WORDS)
        if (following in COORDINATORS or particle_then_end) and _noun_phrase_after(words, index, NOUN_PHRASE_OPENERS):
            return True  # "a motor starts and runs" -> "a motor and runs"; "a car drives by and" -> "a car by and"
    if previous in AUXILIARIES or previous == "to":
        graded = following in DEGREE_ADVERBS and after is not None and not is_adverb(after)
        if previous in AUXILIARIES and graded and _ends_phrase(_word_at(words, index + 3)):
            return False  # "a car is moving very fast in" -> "a car is very fast in"
        clause_ends = following is None or following in CONJUNCTION_WORDS or _adverb_ends_clause(following, after)
        particle_ends = following in CLAUSE_FINAL_PARTICLES and (after is None or after in CONJUNCTION_WORDS)
        # "decides to start the motor" -> "decides to the motor"; but "a key to open the door" -> "a key to the door"
        object_left = previous == "to" and following in CLAUSE_OPENERS and _takes_infinitive(before)
        return clause_ends or particle_ends or object_left
    if previous in {"and", "or"} and following in DETERMINERS and not _ends_verb_phrase(before):
        return False  # "puts money in a machine and gets a snack" -> "... a machine and a snack": two objects
    if previous in COORDINATORS and following in PREPOSITIONS:
        # "children play and run in a yard" -> "play and in a yard": "and" links nothing; but after a phrase of place
        # it links two ("rolls down the stairs and bounces into a wall" -> "down the stairs and into a wall")
        return not _place_phrase_before(words, index - 1)
    hanging = following in COUNT_WORDS or (
        previous in BARE_SUBJECTS and not _ends_phrase(following) and not _ends_verb_phrase(following)
    )  # "then it gets opened again" -> "then it opened again" has a verb
    if _is_finite(word) and hanging:
        return True  # "a dog barks twice" -> "a dog twice"; "someone chops vegetables" -> "someone vegetables"
    return following is not None and (following in CLAUSE_OPENERS or _adverb_ends_clause(following, after))


def _opens_predicate(words: list[str], index: int) -> bool:
    """`words[index]` begins a verb phrase ("runs", "slowly fades", "then accelerates"), not a noun phrase."""
    word = words[index]
    if word == "then":
        return index + 1 < len(words) and _opens_predicate(words, index + 1)
    return is_verb(word) or is_adverb(word)


def _noun_phrase_after(words: list[str], index: int, openers: set[str]) -> bool:
    """Within the four words before `words[index]`, one of `openers` and after it a noun phrase alone (no verb,
    adverb, conjunction or preposition): "while waves", "as a soft wind", "a motor"."""
    for back in range(index - 1, max(-1, index - 5), -1):
        word = words[back]
        if word in openers:
            return back < index - 1
        if is_verb(word) or is_adverb(word) or word in CONJUNCTION_WORDS or word in PREPOSITIONS:
            return False
    return False


def _place_phrase_before(words: list[str], index: int) -> bool:
    """A preposition or particle stands between the last verb before `words[index]` and it ("rolls down the
    stairs", "scuff on dry leaves")."""
    for word in reversed(words[:index]):
        if word in PREPOSITIONS or word in VERB_PARTICLES:
            return True
        if is_verb(word):
            return False
    return False


def _is_inflected_verb(word: str | None) -> bool:
    """`word` is a verb form that can head a clause ("chirps", "starts", "passed", "playing"), not an auxiliary nor a
    bare stem, which may be a noun ("a porch swing creaks", "a low growl rumbles")."""
    return word is not None and is_verb(word) and word not in AUXILIARIES and word not in VERB_STEMS


def _takes_infinitive(word: str | None) -> bool:
    """`word` is a form of `INFINITIVE_TAKERS` ("begins", "starting", "decided")."""
    if word is None:
        return False
    stems = [word] + [word[: -len(suffix)] + extra for suffix in ("s", "es", "ed", "d", "ing") if word.endswith(suffix)
                      for extra in ("", "e")]  # fmt: skip
    stems += [stem[:-1] for stem in stems if len(stem) > 3 and stem[-1] == stem[-2]]  # "beginning" -> "begin"
    return any(stem in INFINITIVE_TAKERS for stem in stems)


def _is_finite(word: str) -> bool:
    """`word` is the -s form of a verb in `VERB_STEMS` ("chops", "gets"; not "hiss", which is its stem)."""
    return word not in VERB_STEMS and inflects_stem(word, ("s", "es"))


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
CUT_AFTER = NOUN_PHRASE_OPENERS | {"and", "or", "but", "while", "as", "before", "after", "until", "when",
                                   "because", "of", "with", "from", "into", "onto", "to", "at", "for", "the"}
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
    with a verb doubled or tripled where it stands, with or without a conjunction ("a dog barks a dog barks while"),
    or, for `PREDICATE_REPEAT_SHARE` of the events with a subject, its predicate alone (`_doubled_predicate`)."""
    events = event_phrases(source)
    if not anywhere:
        return f"{' '.join(words)} {rng.choice(EVENT_CONJUNCTIONS[:-1])} {vary_event(rng.choice(events), rng)}"
    text = f" {' '.join(words)} "
    events = [event for event in events if f" {event} " in text and any(is_verb(w) for w in event.split())]
    if not events:
        return None
    event = rng.choice(events)
    event_words = event.split()
    predicate = _predicate_start(event_words)
    if predicate is not None and rng.random() < PREDICATE_REPEAT_SHARE:
        return text.replace(f" {event} ", f" {_doubled_predicate(event_words, predicate, rng)} ", 1).strip()
    copies = [vary_event(event, rng) for _ in range(rng.choice(REPEAT_COUNTS) - 1)]
    joined = event + "".join(f" {rng.choice(('', 'and ', 'and then ', 'while '))}{copy}" for copy in copies)
    return text.replace(f" {event} ", f" {joined} ", 1).strip()


# The share of events doubled anywhere whose predicate alone is doubled ("people are talking are talking as a car
# passes", "a motorcycle revs its engine revs its engine and"): with whole events only, the detector passed many of
# these (0.003). At one half the trainings lost more of the removed conjunction and of the doubled words of quantity.
PREDICATE_REPEAT_SHARE = 0.3


def _predicate_start(event: list[str]) -> int | None:
    """Where the predicate of `event` begins (its first verb, an auxiliary included), when a subject stands before it
    and the predicate holds two words or more; else None."""
    start = next((index for index, word in enumerate(event) if is_verb(word)), None)
    return start if start is not None and 0 < start <= len(event) - 2 else None


def _doubled_predicate(event: list[str], start: int, rng: random.Random) -> str:
    """`event` with two words or more of its predicate, from `start`, doubled or tripled in place, with or without
    "and" between the copies ("people are talking are talking", "a child is playing and is playing in a puddle")."""
    end = rng.randint(start + 2, len(event))
    link = ["and"] if rng.random() < 0.5 else []
    copies = (link + event[start:end]) * (rng.choice(REPEAT_COUNTS) - 1)
    return " ".join(event[:end] + copies + event[end:])


def repeat_word(
    words: list[str], source: str, rng: random.Random, anywhere: bool, by_word_class: bool = False
) -> str | None:
    """A word doubled or tripled ("a man speaking speaking"): the last word that can be (FENSE's end), or any. Adverbs
    are `repeat_adv`'s; words people double on purpose (`INTENDED_REPEATS`) are never doubled. With `by_word_class`
    (training only), anywhere draws a `repeat_class` first, then a word of it."""
    def repeatable(i: int) -> bool:
        return words[i] not in INTENDED_REPEATS and not is_adverb(words[i]) and not words[i].isdigit()

    if anywhere and by_word_class:
        classes: dict[str, list[int]] = {}
        for i in range(len(words)):
            if repeatable(i):
                classes.setdefault(repeat_class(words, i), []).append(i)
        index = rng.choice(classes[rng.choice(sorted(classes))]) if classes else None
    else:
        index = _qualifying(words, repeatable, rng, anywhere)
    return None if index is None else _repeated(words, index, rng)


# The classes `repeat_word(..., by_word_class=True)` draws from evenly. Drawn by position instead, most doubled words
# are "a", "the", "in", "of": the detector trained so missed "while while", "then then" and a noun doubled before a
# conjunction ("a keyboard keyboard while"), each rare among a caption's words.
REPEAT_CLASSES = ("conjunction", "quantity", "function", "phrase_end", "verb", "other")
# Words that say how many or how often, a class of their own: drawn among the function words, where "a" and "the"
# crowd them out, 19 of the default training's 13,440 corruptions doubled one (63 now), and the detector passed "two
# two women" (0.003) and "multiple multiple cars" (0.005).
QUANTITY_WORDS = COUNT_WORDS | {"one", "two", "three", "four", "multiple", "several", "few", "couple", "numerous",
                                "various", "both"}


def repeat_class(words: list[str], index: int) -> str:
    """Which of `REPEAT_CLASSES` `words[index]` falls in: a conjunction; a word of quantity (`QUANTITY_WORDS`); an
    article, determiner, preposition or auxiliary; the last word of a phrase (before a conjunction or preposition); a
    verb; any other word."""
    word, following = words[index], _word_at(words, index + 1)
    if word in CONJUNCTION_WORDS:
        return "conjunction"
    if word in QUANTITY_WORDS:
        return "quantity"
    if word in DETERMINERS or word in PREPOSITIONS or word in AUXILIARIES:
        return "function"
    if following in CONJUNCTION_WORDS or following in PREPOSITIONS:
        return "phrase_end"
    return "verb" if is_verb(word) else "other"


def repeat_adv(words: list[str], source: str, rng: random.Random, anywhere: bool) -> str | None:
    """FENSE: the last adverb repeated at the end ("passes slowly by slowly"). Anywhere: an adverb doubled or tripled
    in place ("purrs quietly quietly next to")."""
    def repeatable(i: int) -> bool:  # appended at the end, "very" is an error; doubled in place, an intensifier
        return is_adverb(words[i]) and not (anywhere and words[i] in INTENDED_REPEATS)

    index = _qualifying(words, repeatable, rng, anywhere)
    if index is None:
        return None
    return _repeated(words, index, rng) if anywhere else " ".join(words + [words[index]])


def remove_conj(
    words: list[str], source: str, rng: random.Random, anywhere: bool,
    kept: frozenset[tuple[str, str, str]] = frozenset(),
) -> str | None:
    """
    A conjunction removed where two clauses or phrases are left side by side: the last such (FENSE) or any. Not one
    in `kept` (`conjunctions_after_marks` of the caption as written: its word before, it and its word after).
    """

    def removable(i: int) -> bool:
        if words[i] not in CONJUNCTION_WORDS or tuple(words[i - 1 : i + 2]) in kept:
            return False
        return conjunction_removal_is_error(words, i)

    index = _qualifying(words, removable, rng, anywhere)
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


def apply_rule(
    rule: str, text: str, source: str, rng: random.Random, position: str = "fense", by_word_class: bool = False,
    written: str | None = None,
) -> str | None:
    """
    Apply one error kind (`ERROR_KINDS`) to `text` (perhaps already corrupted; `source` is the clean caption) at
    FENSE's position or, with `position="random"`, anywhere it can fall. None where the kind does not apply or would
    leave a well-formed caption (a removal is made only where `conjunction_removal_is_error` /
    `verb_removal_is_error` say the result is broken, and, given `written`, the clean caption with its punctuation,
    no conjunction it puts after a comma is removed: `conjunctions_after_marks`). `by_word_class` (training only;
    the evaluation draws by position): a word doubled anywhere is drawn by `repeat_class` first.
    """
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
    if rule not in CORRUPTIONS:
        raise ValueError(f"unknown error kind {rule!r}; expected one of {tuple(CORRUPTIONS)}")
    anywhere = position == "random"
    if by_word_class and rule == "repeat_word":
        return repeat_word(text.split(), source, rng, anywhere, by_word_class=True)
    if rule == "remove_conj" and written is not None:
        return remove_conj(text.split(), source, rng, anywhere, conjunctions_after_marks(written))
    return CORRUPTIONS[rule](text.split(), source, rng, anywhere)


def fense_labels(kind: str) -> list[int]:
    """The 0/1 label per FENSE rule (`RULES`) of a caption corrupted by `kind`."""
    return [int(rule == ERROR_KINDS[kind]) for rule in RULES]


def corrupt_caption(caption: str, rng: random.Random, ensure_error: bool = True) -> tuple[str, list[int]]:
    """Corrupt a caption with FENSE's rules; returns (text, one 0/1 label per rule in FENSE_ERROR_TYPES[:-1]).

    Rounds follow FENSE: 2 rounds with probability 0.9 (else 1), each applying the first rule whose coin comes up.
    With `ensure_error`, rounds repeat until something changed (FENSE kept unchanged ones as clean examples).
    `caption` is read as written: see `apply_rule`.
    """
    source = fense_normalize_caption(caption)
    rule_names = list(RULE_PROBABILITIES)
    for _ in range(20):
        text, labels = source, [0] * len(rule_names)
        for _ in range(2 if rng.random() < 0.9 else 1):
            for index, rule in enumerate(rule_names):
                if rng.random() < RULE_PROBABILITIES[rule]:
                    changed = apply_rule(rule, text, source, rng, written=caption)
                    if changed is not None and changed != text:
                        text, labels[index] = changed, 1
                        break
        if any(labels) or not ensure_error:
            return text, labels
    return f"{source} {rng.choice(USELESS_TAILS)}", [1, 0, 0, 0, 0]


def single_rule_corruption(
    caption: str, rng: random.Random, counts: list[int] | None = None, random_position_share: float = 0.5,
    by_word_class: bool = False,
) -> tuple[str, list[int]] | None:
    """
    `caption` corrupted by one error kind among those that apply to it (None when none does), at a random position
    with probability `random_position_share`, else at FENSE's. The kind is drawn uniformly, or, with `counts` (uses
    so far per kind, updated here), the one least used relative to `SINGLE_RULE_WEIGHTS`, so that kinds that apply
    to few captions (a repeated adverb needs an adverb) are trained on as often as intended. `caption` is read as
    written, and `by_word_class` is `apply_rule`'s.
    """
    clean = fense_normalize_caption(caption)
    kinds = list(ERROR_KINDS)
    position = "random" if rng.random() < random_position_share else "fense"
    applied = {
        index: apply_rule(kind, clean, clean, rng, position, by_word_class, caption) for index, kind in enumerate(kinds)
    }
    applied = {index: text for index, text in applied.items() if text is not None and text != clean}
    if not applied:
        return None
    order = rng.sample(sorted(applied), len(applied))
    weights = [SINGLE_RULE_WEIGHTS[kind] for kind in kinds]
    index = order[0] if counts is None else min(order, key=lambda i: counts[i] / weights[i])
    if counts is not None:
        counts[index] += 1
    return applied[index], fense_labels(kinds[index])
