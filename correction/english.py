"""What the error detector's rules know of English: word classes by lists (verbs, conjunctions) and the clauses of a
caption as written.

FENSE's cleaning (`processing_laac.fense_normalize_caption`) drops every punctuation mark, so "sheep cry out, water
flows and birds chirp" reaches the detector as the run-on a removed conjunction leaves. `clauses` reads the marks
first; `correction.post_corrector.ErrorDetector` (`read_clause_marks`) scores the clauses one by one, and the
corruption rules (`correction.corruptions`) read the same word classes.
"""

from __future__ import annotations

import re

from ..processing_laac import fense_normalize_caption

CONJUNCTION_WORDS = {"and", "while", "as", "but", "or", "then", "before", "after", "until", "when", "because"}
# Conjunctions that open a clause of its own: its subject alone is left without the verb ("while waves on a beach").
SUBORDINATORS = {"while", "as", "when", "because", "until", "whilst", "although", "though", "once"}
# Words that go on with the clause before a mark rather than open one of their own (`clauses`: "a dog barks, and
# then it stops", "a bell rings, followed by footsteps").
CLAUSE_LINKS = CONJUNCTION_WORDS | SUBORDINATORS | {
    "followed", "with", "which", "who", "that", "where", "so", "yet", "nor", "including", "like", "such", "plus",
    "along", "accompanied",
}
AUXILIARIES = {"is", "are", "was", "were", "be", "being", "been"}
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


def inflects_stem(word: str, suffixes: tuple[str, ...]) -> bool:
    """`word` is a verb of `VERB_STEMS` with one of `suffixes` added ("barks", "chopped")."""
    return any(word[: -len(suffix)] in VERB_STEMS for suffix in suffixes if word.endswith(suffix))


def is_verb(word: str) -> bool:
    if word in AUXILIARIES or word in COMMON_VERBS:
        return True
    if word in VERB_STEMS or inflects_stem(word, ("s", "es", "d", "ed")):
        return True
    return word.endswith("ing") and len(word) > 4 and word not in NOT_VERBS_ING


# Marks that join two clauses in a caption as written ("a door closes, someone walks in"); FENSE's cleaning drops
# them, and with them the only sign that the clauses were joined on purpose.
CLAUSE_MARKS = ",;:"
# Marks that may end a clause of a caption as written (`clauses`, `with_written_marks`): those and a full stop,
# question or exclamation mark inside it.
CLAUSE_BREAKS = CLAUSE_MARKS + ".!?"


def words_after_marks(written: str, marks: str = CLAUSE_MARKS) -> list[tuple[str, bool]]:
    """
    The words of `written` (a caption with its punctuation), cleaned as FENSE cleans them, each with whether one of
    `marks` stands before it: at the end of the word before, between the two or at the start of its own.

        >>> words_after_marks("Rain falls; then, thunder.")
        [('rain', False), ('falls', False), ('then', True), ('thunder', True)]
    """
    pairs, gap = [], ""
    for token in written.split():
        word = fense_normalize_caption(token)
        if not word:
            gap += token
            continue
        pairs.append((word, bool(pairs) and any(mark in gap + re.match(r"\W*", token).group() for mark in marks)))
        gap = re.search(r"\W*$", token).group()  # the marks after the word, up to the next word's
    return pairs


def clauses(written: str) -> list[str]:
    """
    `written` (a caption with its punctuation) cut into its clauses at the marks between them (`CLAUSE_BREAKS`),
    each cleaned as FENSE cleans it. A mark cuts only where the words after it, up to the next mark, make a clause of
    their own: they hold a verb, do not open with a link to the words before (`CLAUSE_LINKS`: "a dog barks, and then
    it stops") and share no two words in a row with them (a phrase written again after a comma stays whole, to be
    read as doubled).
    FENSE's cleaning drops the marks, which turns "sheep cry out, water flows and birds chirp" into the run-on a
    removed conjunction leaves; `ErrorDetector` with `read_clause_marks` also scores the clauses one by one.

        >>> clauses("Sheep cry out, water flows and birds chirp.")
        ['sheep cry out', 'water flows and birds chirp']
        >>> clauses("With a dog nearby, someone walks on gravel, and then it stops.")
        ['with a dog nearby', 'someone walks on gravel and then it stops']
    """
    pieces: list[list[str]] = []
    for word, after_mark in words_after_marks(written, CLAUSE_BREAKS):
        if after_mark or not pieces:
            pieces.append([])
        pieces[-1].append(word)
    parts = pieces[:1]
    for piece in pieces[1:]:
        before = parts[-1]
        shared = set(zip(before, before[1:])) & set(zip(piece, piece[1:]))
        if piece[0] in CLAUSE_LINKS or shared or not any(map(is_verb, piece)):
            before.extend(piece)
        else:
            parts.append(list(piece))
    return [" ".join(part) for part in parts]
