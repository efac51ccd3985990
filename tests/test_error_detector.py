"""The offline FENSE-format error detector: its training code on a small slice, and held-out metrics that can fail."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from laac.correction import corruptions, detector_evaluation, english
from laac.correction import train_error_detector as ted
from laac.correction.post_corrector import FENSE_ERROR_TYPES, ErrorDetector, doubled_phrase, load_error_detector

from tests.laac_tester import unavailable


def test_roc_auc_and_scores_by_hand():
    labels = np.array([False, False, True, True])
    assert detector_evaluation.roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), labels) == 0.75  # 3 of 4 positive/negative pairs ordered
    assert detector_evaluation.roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), labels) == 0.5  # ties count one half
    with pytest.raises(ValueError, match="both classes"):
        detector_evaluation.roc_auc(np.array([0.1, 0.2]), np.array([True, True]))
    rows = detector_evaluation.score_rows(np.array([0.1, 0.95, 0.2, 0.3]), {"add_tail": np.array([0.99, 0.97, 0.5])}, 0.9)
    assert rows["add_tail"]["precision"] == pytest.approx(2 / 3) and rows["add_tail"]["recall"] == pytest.approx(2 / 3)
    assert rows["add_tail"]["roc_auc"] == pytest.approx(11 / 12)  # 0.5 is below 0.95 only


def test_quality_check_fails_a_detector_that_does_not_detect():
    """A doubled word inside a caption scored below clean captions ("a keyboard keyboard while" 0.006) must fail the
    check, as must a gate that flags too many clean captions or a mixture caught with too little precision."""
    clean = np.array([0.72, 0.6, 0.95, 0.3])
    corrupted = {"repeat_word (random)": np.array([0.19, 0.36, 0.25, 0.5]), "mixture (random)": np.array([0.97, 0.2])}
    problems = detector_evaluation.quality_problems(detector_evaluation.score_rows(clean, corrupted, 0.9))
    assert problems == [
        "repeat_word (random): ROC-AUC 0.125 < 0.97",
        "mixture (random): ROC-AUC 0.500 < 0.97",
        "mixture (random): precision 0.500 at 0.9 < 0.95",
        "clean captions above 0.9: 1 of 4 > 2%",
    ]
    good = detector_evaluation.score_rows(np.array([0.01, 0.02, 0.1]), {"mixture (fense)": np.array([0.97, 0.99, 0.95])}, 0.9)
    assert detector_evaluation.quality_problems(good) == [] and good["mixture (fense)"]["clean_flagged"] == 0


def test_folds_are_read_as_one_table_of_means():
    """Detectors trained on the folds of one split, each scored on its own held-out captions: the mean ROC-AUC,
    precision and recall per row, the captions and clean captions flagged summed, and the targets judged on that."""
    fold_a = detector_evaluation.score_rows(np.array([0.01, 0.02, 0.95]), {"mixture (fense)": np.array([0.97, 0.99]),
                                                                           "add_tail (fense)": np.array([0.5, 0.99])}, 0.9)
    fold_b = detector_evaluation.score_rows(np.array([0.1, 0.2, 0.3, 0.4]), {"mixture (fense)": np.array([0.35, 0.98])}, 0.9)
    rows = detector_evaluation.mean_rows([fold_a, fold_b])
    assert list(rows) == ["mixture (fense)"]  # a row one fold lacks is left out
    row = rows["mixture (fense)"]
    assert row["roc_auc"] == pytest.approx((1.0 + 7 / 8) / 2) and (row["roc_auc_min"], row["roc_auc_max"]) == (7 / 8, 1.0)
    assert row["precision"] == pytest.approx((2 / 3 + 1) / 2) and row["recall"] == pytest.approx((1 + 0.5) / 2)
    assert (row["positives"], row["negatives"], row["clean_flagged"], row["folds"]) == (4, 7, 1, 2)
    assert detector_evaluation.quality_problems(rows) == [
        "mixture (fense): ROC-AUC 0.938 < 0.97", "mixture (fense): precision 0.833 at 0.9 < 0.95",
        "clean captions above 0.9: 1 of 7 > 2%",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="got none"):
        detector_evaluation.mean_rows([])


def test_rows_are_also_scored_against_the_clean_captions_written_without_commas():
    """A comma-joined clean caption reads, cleaned as FENSE does, like a removed conjunction: the second table scores
    the same corruptions against the other clean captions only."""
    captions = ["A clock ticks loudly, an alarm goes off.", "A dog barks while rain falls on a roof.",
                "Birds sing in the trees and a car passes by.", "A man speaks and a door closes slowly."]  # fmt: skip
    comma_caption = corruptions.fense_normalize_caption(captions[0])
    clean = {corruptions.fense_normalize_caption(caption) for caption in captions}

    def score(texts, batch_size=32):  # the comma-joined clean caption above every corruption, the others below
        cleaned = [corruptions.fense_normalize_caption(text) for text in texts]  # as the detector reads them
        return [1.0 if text == comma_caption else 0.0 if text in clean else 0.6 for text in cleaned]

    detector = FakeDetector(score)
    tables = detector_evaluation.evaluate_detector_by_clean_subset(detector, captions, seed=0)
    every, without = tables[detector_evaluation.ALL_CLEAN], tables[detector_evaluation.WITHOUT_COMMAS]
    assert set(every) == set(without) and "remove_conj (fense)" in every
    for name, row in every.items():
        assert row["negatives"] == 4 and without[name]["negatives"] == 3
        assert without[name]["positives"] == row["positives"]
        assert row["roc_auc"] == pytest.approx(0.75) and without[name]["roc_auc"] == 1.0
        assert row["clean_flagged"] == 1 and without[name]["clean_flagged"] == 0
    assert detector_evaluation.evaluate_detector(detector, captions, seed=0) == every
    no_commas = detector_evaluation.evaluate_detector_by_clean_subset(detector, captions[1:], seed=0)
    assert list(no_commas) == [detector_evaluation.ALL_CLEAN]  # the second table would repeat the first


class FakeDetector:
    """An `ErrorDetector` stand-in whose classifier is `score` (its rules are `ErrorDetector`'s)."""

    __call__ = ErrorDetector.__call__
    probabilities = ErrorDetector.probabilities
    clause_probabilities = ErrorDetector.clause_probabilities

    def __init__(self, score, flag_doubled_phrases: bool = False, read_clause_marks: bool = False):
        self.classifier_probabilities = score
        self.flag_doubled_phrases = flag_doubled_phrases
        self.read_clause_marks = read_clause_marks


def test_a_detector_that_flags_doubled_phrases_is_also_scored_by_its_classifier_alone():
    """The held-out rows of a detector with `flag_doubled_phrases` are its own (a doubled word scores 1.0); a third
    table scores the same rows by its classifier alone."""
    captions = ["A dog barks while rain falls on a roof.", "Birds sing in the trees and a car passes by.",
                "A man speaks and a door closes slowly.", "Water drips slowly into a metal sink."]  # fmt: skip
    clean = {corruptions.fense_normalize_caption(caption) for caption in captions}
    def score(texts, batch_size=32):
        return [0.1 if corruptions.fense_normalize_caption(text) in clean else 0.05 for text in texts]

    detector = FakeDetector(score, True)
    tables = detector_evaluation.evaluate_detector_by_clean_subset(detector, captions, seed=0)
    assert list(tables) == [detector_evaluation.ALL_CLEAN, detector_evaluation.CLASSIFIER_ALONE]
    gate, alone = tables[detector_evaluation.ALL_CLEAN], tables[detector_evaluation.CLASSIFIER_ALONE]
    assert gate["repeat_word (random)"]["roc_auc"] == 1.0 and gate["repeat_word (random)"]["recall"] == 1.0
    assert alone["repeat_word (random)"]["roc_auc"] == 0.0 and alone["repeat_word (random)"]["recall"] == 0.0
    assert gate["remove_conj (random)"] == alone["remove_conj (random)"]  # no doubled phrase: the classifier's
    detector.flag_doubled_phrases = False
    assert detector_evaluation.evaluate_detector_by_clean_subset(detector, captions, seed=0) == {
        detector_evaluation.ALL_CLEAN: alone
    }


@pytest.mark.parametrize(
    "written, expected",
    [
        ("Sheep cry out, water flows and birds chirp.", ["sheep cry out", "water flows and birds chirp"]),
        ("A dog barks; rain falls. A car passes by!", ["a dog barks", "rain falls", "a car passes by"]),
        ("A dog barks, and then it stops.", ["a dog barks and then it stops"]),  # a link opens the words after it
        ("A bell rings, followed by footsteps.", ["a bell rings followed by footsteps"]),
        ("Rain falls, heavy and steady.", ["rain falls heavy and steady"]),  # no verb after the comma
        ("Outdoors, bicycle, bicycle bells, people talking", ["outdoors bicycle bicycle bells", "people talking"]),
        ("With a dog nearby, someone walks on gravel.", ["with a dog nearby", "someone walks on gravel"]),
        ("A dog barks, a dog barks.", ["a dog barks a dog barks"]),  # written again: left whole, to read as doubled
        ("A dog barks rain falls", ["a dog barks rain falls"]),  # no mark: FENSE's reading only
    ],
)
def test_clauses_cut_a_caption_only_where_its_marks_join_two_clauses(written, expected):
    assert english.clauses(written) == expected


@pytest.mark.parametrize(
    "written, text, expected",
    [
        ("A dog barks, rain falls.", "a dog barks rain falls loudly loudly", "a dog barks, rain falls loudly loudly"),
        # inserted after the mark: a tail on the clause before, unless the words copy the clause after
        ("A dog barks loudly, rain falls.", "a dog barks loudly loudly rain falls", "a dog barks loudly loudly, rain falls"),
        ("A dog barks, rain falls.", "a dog barks rain falls rain falls", "a dog barks, rain falls rain falls"),
        ("Rain falls, a dog barks.", "rain falls a a dog barks", "rain falls, a a dog barks"),
        ("A man speaks, a car passes.", "a man a car passes", "a man, a car passes"),  # a removed word
        ("A dog barks, and rain falls.", "a dog barks rain falls", "a dog barks, rain falls"),
        ("A dog barks and rain falls.", "a dog barks rain falls", "a dog barks rain falls"),
    ],
)
def test_held_out_corruptions_keep_the_clause_marks_their_caption_is_written_with(written, text, expected):
    assert corruptions.with_written_marks(written, text) == expected
    assert corruptions.fense_normalize_caption(expected) == text


def test_a_detector_reading_clause_marks_keeps_the_errors_inside_a_clause():
    """Comma-joined clauses scored one by one pass as their clauses do; an error inside one clause keeps its score,
    a doubled phrase still scores 1.0, and the classifier alone (what FER and FENSE read) is FENSE's reading."""
    scores = {"sheep cry out water flows and birds chirp": 0.95, "sheep cry out": 0.1, "water flows and birds chirp": 0.2,
              "sheep cry out water flows birds chirp": 0.97, "water flows birds chirp": 0.93}  # fmt: skip
    calls = []

    def score(texts, batch_size=32):
        calls.append(len(texts))
        return [scores.get(corruptions.fense_normalize_caption(text), 0.99) for text in texts]

    detector = FakeDetector(score, flag_doubled_phrases=True, read_clause_marks=True)
    captions = ["Sheep cry out, water flows and birds chirp.", "Sheep cry out, water flows birds chirp.",
                "Sheep cry out, water flows flows and birds chirp."]  # fmt: skip
    alone, gate = detector.probabilities(captions)
    assert alone == [0.95, 0.97, 0.99] and gate == [0.2, 0.93, 1.0]
    assert calls == [3, 6]  # each caption, then each clause of the captions cut, once
    detector.read_clause_marks = False
    assert detector(captions) == [0.95, 0.97, 1.0]


def test_single_rule_corruptions_change_each_caption_by_one_kind():
    captions = ["A dog barks loudly while a car is passing by.", "rain falls"]
    corrupted = detector_evaluation.single_rule_corruptions(captions, seed=0)
    assert set(corrupted) == set(corruptions.ERROR_KINDS) and set(corruptions.ERROR_KINDS.values()) == set(FENSE_ERROR_TYPES[:-1])
    assert "a dog barks loudly while a car is passing by loudly" in corrupted["repeat_adv"]
    assert len(corrupted["repeat_adv"]) == 1  # "rain falls" has no adverb to repeat
    assert len(corrupted["add_tail"]) == 2
    anywhere = detector_evaluation.single_rule_corruptions(captions, seed=0, position="random")
    assert anywhere["add_tail"] in (["a dog barks loudly while a"], ["a dog barks loudly while"])
    assert [corruptions.fense_labels(kind) for kind in ("repeat_word", "dangling_clause")] == [[0, 1, 0, 0, 0], [1, 0, 0, 0, 0]]


def _undoubled(text: str) -> str:
    """`text` with every run of one word repeated in a row cut to one ("a keyboard keyboard" -> "a keyboard")."""
    words = text.split()
    return " ".join(word for index, word in enumerate(words) if index == 0 or word != words[index - 1])


def test_words_and_adverbs_are_doubled_or_tripled_anywhere():
    """Anywhere, a word or adverb is repeated where it stands, two or three times, at every position it can be;
    at FENSE's position the last one (a doubled last word, an adverb appended at the end)."""
    caption = "a person types on a keyboard while a printer whirs loudly"
    drawn = {corruptions.apply_rule("repeat_word", caption, caption, random.Random(seed), "random") for seed in range(200)}
    assert all(_undoubled(text) == caption for text in drawn)
    assert "a person types on a keyboard keyboard while a printer whirs loudly" in drawn
    assert "a person types types types on a keyboard while a printer whirs loudly" in drawn  # tripled
    assert not any("loudly loudly" in text for text in drawn)  # an adverb: repeat_adv's
    assert corruptions.apply_rule("repeat_word", "a man speaking", "a man speaking", random.Random(0)) in {
        "a man speaking speaking", "a man speaking speaking speaking"}  # fmt: skip
    caption = "a cat purrs quietly next to a radiator"
    drawn = {corruptions.apply_rule("repeat_adv", caption, caption, random.Random(seed), "random") for seed in range(20)}
    assert drawn == {"a cat purrs quietly quietly next to a radiator",
                     "a cat purrs quietly quietly quietly next to a radiator"}  # fmt: skip


def test_training_draws_the_doubled_word_by_word_class():
    """Training (`by_word_class`) doubles a conjunction, a word of quantity, a function word, a phrase's last word, a
    verb or another word about as often each; drawn by position (the evaluation's way, unchanged), articles and
    prepositions dominate."""
    words = "a person types on a keyboard while a printer whirs loudly".split()
    assert [corruptions.repeat_class(words, i) for i in range(len(words) - 1)] == [
        "function", "other", "phrase_end", "function", "function", "phrase_end", "conjunction", "function", "other",
        "verb"]  # fmt: skip
    counted = "two dogs bark at a cat in the yard of a house".split()
    assert corruptions.repeat_class(counted, 0) == "quantity"
    assert corruptions.repeat_class("a bell rings twice".split(), 3) == "quantity"
    caption = " ".join(counted)
    drawn = [corruptions.apply_rule("repeat_word", caption, caption, random.Random(seed), "random", True)
             for seed in range(600)]  # fmt: skip
    # 1 of 4 classes (150 of 600); among the function words, 1 of 7 in 1 of 3 classes (38 of 600 measured)
    assert 110 < sum(text.startswith("two two") for text in drawn) < 190
    caption = " ".join(words)

    def doubled(by_word_class):
        drawn = [corruptions.apply_rule("repeat_word", caption, caption, random.Random(seed), "random", by_word_class)
                 for seed in range(1000)]  # fmt: skip
        assert all(_undoubled(text) == caption for text in drawn)
        return [next(w for w, v in zip(text.split(), text.split()[1:]) if w == v) for text in drawn]

    by_class, by_position = doubled(True), doubled(False)
    assert 150 < by_class.count("while") < 250 and by_position.count("while") < 130  # 1 of 5 classes, 1 of 10 words
    assert 150 < by_class.count("keyboard") + by_class.count("types") < 250
    assert by_position.count("a") > 250 and by_class.count("a") < 200  # 3 of 4 function words: 3 of 20
    for seed in range(20):  # other kinds, and FENSE's position, are drawn as without it
        for kind in corruptions.ERROR_KINDS:
            for position in corruptions.POSITIONS:
                if kind != "repeat_word" or position == "fense":
                    plain = corruptions.apply_rule(kind, caption, caption, random.Random(seed), position)
                    assert corruptions.apply_rule(kind, caption, caption, random.Random(seed), position, True) == plain


def test_words_people_repeat_on_purpose_are_never_doubled():
    caption = "a very loud knock and a beep"
    for seed in range(50):
        for kind in ("repeat_word", "repeat_adv"):
            text = corruptions.apply_rule(kind, caption, caption, random.Random(seed), "random")
            assert text is None or not any(f"{word} {word}" in text for word in ("very", "knock", "beep")), text


@pytest.mark.parametrize(
    "caption, doubled",
    [
        ("frogs croak loudly near a pond pond at night", "pond"),
        ("A fire fire crackles, in a stone fireplace.", "fire"),  # cleaned as FENSE does
        ("a cat purrs quietly quietly quietly next to a radiator", "quietly"),
        ("a motorcycle revs its engine revs its engine and speeds away", "revs its engine"),
        ("a dog barks twice a dog barks twice and then a gate creaks", "a dog barks twice"),
        ("a woman laughs and a woman laughs and a man answers", "a woman laughs and a woman laughs"),
        ("paper is crumpled and then paper is crumpled", "paper is crumpled and then paper is crumpled"),
        ("the the door closes", "the"),
        # not doubled in place, or doubled on purpose
        ("a phone vibrates on a table a phone vibrates and then stops", None),
        ("the whistle gets louder and louder and louder", None),
        ("someone shakes a plastic sheet over and over again", None),
        ("a bell rings and rings again", None),
        ("a clock goes tick tock tick tock", None),
        ("a very very loud horn goes beep beep", None),
        ("a door opens and a door closes", None),
        ("three golf swings and then six golf swings and then six more", None),
        ("Outdoors, bicycle, bicycle bells, motorbike honking", None),  # punctuation between the copies
    ],
)
def test_doubled_phrase_finds_a_phrase_written_twice_in_place(caption, doubled):
    assert doubled_phrase(caption) == doubled


def test_doubled_phrase_passes_every_clotho_reference(clotho_csv):
    """None of Clotho's 5,225 evaluation captions doubles a phrase in place as written; cleaned as FENSE does, one
    list runs together ("Outdoors, bicycle, bicycle bells" -> "outdoors bicycle bicycle bells")."""
    captions = [c for clip in ted.read_clotho_captions(clotho_csv).values() for c in clip]
    assert [caption for caption in captions if doubled_phrase(caption)] == []
    cleaned = [corruptions.fense_normalize_caption(caption) for caption in captions]
    assert [caption for caption in cleaned if doubled_phrase(caption)] == [
        "outdoors bicycle bicycle bells motorbike honking and car traffic horns people talking"
    ]


def test_some_clean_training_captions_double_a_word_on_purpose():
    """ "very very loud", "beep beep": some of the clean captions with such a word have it doubled, labelled clean
    (few: more taught the detector that a doubled noun before a conjunction reads well)."""
    caption = "a horn goes beep as a very loud truck passes"
    assert {corruptions.with_intended_repeat(caption, random.Random(seed)) for seed in range(20)} == {
        "a horn goes beep beep as a very loud truck passes", "a horn goes beep as a very very loud truck passes"}
    assert corruptions.with_intended_repeat("a dog barks", random.Random(0)) == "a dog barks"
    examples = ted.labelled_pairs(["a very loud horn"] * 200, 0, "balanced")
    clean = [text for text, labels in examples[::2] if not any(labels)]
    expected = 200 * corruptions.INTENDED_REPEAT_SHARE
    assert len(clean) == 200 and 0 < expected - 20 < clean.count("a very very loud horn") < expected + 20


def test_endings_are_cut_where_a_caption_cannot_end():
    """A cut ending keeps the caption up to a determiner, conjunction or object-taking preposition; a dangling
    clause follows the caption or the end of one of its phrases."""
    caption = "a car engine is idling in the distance while birds chirp on a roof"
    cuts = {corruptions.apply_rule("add_tail", caption, caption, random.Random(seed), "random") for seed in range(100)}
    assert cuts == {"a car engine is idling in the", "a car engine is idling in the distance while",
                    "a car engine is idling in the distance while birds chirp on a"}  # fmt: skip
    drawn = {corruptions.apply_rule("dangling_clause", caption, caption, random.Random(seed), "random") for seed in range(200)}
    tails = [max((t for t in corruptions.DANGLING_CLAUSES if text.endswith(" " + t)), key=len) for text in drawn]
    heads = {text[: -len(tail)].strip() for text, tail in zip(drawn, tails)}
    assert heads == {"a car engine is idling", "a car engine is idling in the distance",
                     "a car engine is idling in the distance while birds chirp"}  # fmt: skip
    fense = corruptions.apply_rule("dangling_clause", caption, caption, random.Random(0))
    assert fense.startswith(caption + " ") and fense[len(caption) + 1 :] in corruptions.DANGLING_CLAUSES
    assert corruptions.apply_rule("add_tail", "a car passes by", "a car passes by", random.Random(0), "random") is None


def test_events_are_repeated_where_they_stand():
    caption = "a dog barks while rain falls on a roof"
    drawn = {corruptions.apply_rule("repeat_event", caption, caption, random.Random(seed), "random") for seed in range(100)}
    assert "a dog barks a dog barks while rain falls on a roof" in drawn
    assert "a dog barks while rain falls on a roof and rain falls on a roof" in drawn
    assert all(text.count("barks") + text.count("falls") >= 3 for text in drawn)
    fense = corruptions.apply_rule("repeat_event", caption, caption, random.Random(0))
    assert fense.startswith(caption + " ")  # FENSE: after the caption, behind a conjunction


def test_a_predicate_is_doubled_where_it_stands():
    """ "people are talking are talking as": a predicate doubled without its subject, as captioners double it."""
    caption = "people are talking as a car passes"
    drawn = {corruptions.apply_rule("repeat_event", caption, caption, random.Random(seed), "random") for seed in range(200)}
    predicates = {text for text in drawn if text.count("people") == 1 and text.count("car") == 1}
    assert predicates == {
        "people are talking are talking as a car passes", "people are talking are talking are talking as a car passes",
        "people are talking and are talking as a car passes",
        "people are talking and are talking and are talking as a car passes",
    }  # fmt: skip
    # a one-word predicate is `repeat_word`'s: "a dog barks barks" is not made here
    assert not any("barks barks" in corruptions.apply_rule("repeat_event", "a dog barks", "a dog barks",
                                                           random.Random(seed), "random") for seed in range(50))  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "caption", "expected"),
    [
        ("remove_verb", "a dog is barking", "a dog is"),  # an auxiliary left without its verb
        ("remove_verb", "a man opens a door", "a man a door"),  # subject and object with no verb between
        ("remove_verb", "birds chirping loudly", "birds loudly"),
        ("remove_verb", "a train begins to move slowly", "a train begins to slowly"),
        ("remove_verb", "a train begins to move slowly and stops", "a train begins to move slowly and"),  # the last
        ("remove_conj", "a dog barks while rain falls", "a dog barks rain falls"),  # two clauses run together
        ("remove_conj", "a man and a woman talk", "a man a woman talk"),
        ("remove_conj", "a dog barks and growls", "a dog barks growls"),
        ("remove_conj", "a river is quickly and loudly flowing", "a river is quickly loudly flowing"),  # two adverbs
        ("remove_verb", "a man begins to open the door", "a man begins to the door"),  # a verb wants "to"+verb
        ("remove_verb", "a saw is cutting very thin pieces of wood", "a saw is very thin pieces of wood"),
        ("repeat_adv", "a car passes slowly by", "a car passes slowly by slowly"),
    ],
)
def test_rules_make_genuine_errors(rule, caption, expected):
    assert corruptions.apply_rule(rule, caption, caption, random.Random(0)) == expected


@pytest.mark.parametrize(
    ("rule", "caption"),
    [
        ("remove_verb", "people talking"),  # -> "people": a noun phrase, as many human captions are
        ("remove_verb", "birds chirping in the background"),  # -> "birds in the background"
        ("remove_verb", "a dog is barking at a cat"),  # -> "a dog is at a cat"
        ("remove_verb", "there is a dog barking"),  # -> "there is a dog"
        ("remove_verb", "a dog barks"),  # -> "a dog"
        ("remove_verb", "the pages are rustling continuously followed by a thud"),  # -> "are continuously followed"
        ("remove_verb", "a group of chatting people walk by"),  # -> "a group of people walk by"
        ("remove_verb", "a car is moving very fast"),  # -> "a car is very fast"
        ("remove_verb", "someone puts money in a machine and gets a snack"),  # -> "... a machine and a snack"
        ("remove_verb", "a train slows before reaching the station"),  # -> "slows before the station"
        ("remove_verb", "a ball rolls after hitting a wall"),  # -> "rolls after a wall"
        ("remove_conj", "a loud and clear voice"),  # -> "a loud clear voice"
        ("remove_conj", "the pages are then followed by a thud"),  # -> "the pages are followed by a thud"
        ("remove_conj", "a machine bangs before slowly coming to a stop"),  # -> "bangs slowly coming": a participle
        ("remove_conj", "a dog barks and then a cat meows"),  # either word alone still links the clauses
        ("remove_conj", "a man whistles while walking"),  # -> "a man whistles walking": a participle phrase
        ("remove_conj", "a dog barks and"),  # removing a dangling last word would mend the caption
        ("remove_conj", "water is falling and making a gurgling sound"),  # -> "falling making a ...": a participle
        ("repeat_adv", "rain falls"),  # no adverb to repeat
    ],
)
def test_rules_that_would_leave_a_well_formed_caption_return_none(rule, caption):
    assert corruptions.apply_rule(rule, caption, caption, random.Random(0)) is None


def test_verb_removal_after_to_depends_on_what_comes_before():
    """Removing a verb after "to": "a key to open the door" -> "a key to the door" and "drips to hit something" ->
    "drips to something" read well ("to" is a preposition there), "begins to open the door" -> "begins to the door"
    does not: only a verb that takes "to" + a verb leaves "to" + the object broken."""
    assert not corruptions.verb_removal_is_error("someone uses a key to open the door".split(), 5)
    assert not corruptions.verb_removal_is_error("a small amount of liquid drips to hit something".split(), 7)
    assert not corruptions.verb_removal_is_error("a blender is being run continuously to make a mixture".split(), 7)
    assert not corruptions.verb_removal_is_error("a small shovel is used to move some grain".split(), 6)
    assert corruptions.verb_removal_is_error("a man begins to open the door".split(), 4)
    assert corruptions.verb_removal_is_error("a water faucet starts to fill a container".split(), 5)
    assert corruptions.verb_removal_is_error("someone decided to start the motor".split(), 3)
    assert corruptions.verb_removal_is_error("the dog continues to bark".split(), 4)  # "continues to": nothing follows
    assert corruptions.verb_removal_is_error("a dog is barking very loudly".split(), 3)  # "is very loudly": no adjective


def test_a_verb_removed_beside_another_verb_is_not_an_error():
    """Where the word before is a verb form that heads a clause ("starts", "chirps", "passes by"), the caption keeps
    a verb without the removed one; a bare stem before it may be a noun ("a porch swing"), and the removal counts."""
    assert not corruptions.verb_removal_is_error("a machine starts chopping rapidly".split(), 3)  # "starts rapidly"
    assert not corruptions.verb_removal_is_error("bird chirps fill the air".split(), 2)  # "bird chirps the air"
    assert not corruptions.verb_removal_is_error("the train passes by sounding its horn".split(), 4)  # "by its horn"
    assert not corruptions.verb_removal_is_error("a vehicle passes followed closely by another".split(), 3)
    assert corruptions.verb_removal_is_error("a porch swing creaks gently".split(), 3)  # "a porch swing gently"
    assert corruptions.verb_removal_is_error("a train whistle blows four times".split(), 3)
    assert corruptions.apply_rule("remove_verb", "bird chirps fill the air", "", random.Random(0)) is None


def test_removals_beside_a_participle_depend_on_the_words_around_it():
    """A participle phrase of result ("falling making a sound") or an -ing clause after "before" ("before the
    station") reads well without the removed word; a shared object or a clause after "while" does not."""
    assert not corruptions.conjunction_removal_is_error("water is falling and making a sound".split(), 3)
    assert corruptions.conjunction_removal_is_error("someone is opening and closing a door".split(), 3)
    assert corruptions.conjunction_removal_is_error("water is falling and splashing on rocks".split(), 3)
    assert not corruptions.verb_removal_is_error("a train slows before reaching the station".split(), 4)
    assert corruptions.verb_removal_is_error("a train slows while reaching the station".split(), 4)


def test_verb_removals_that_leave_a_clause_without_its_verb_are_errors():
    """A clause opened by "while" / "as" or led by its subject before "and", an adverb after its subject or an
    auxiliary, and a verb between "and" and the next clause: without the verb, each clause is left without one. "and
    then" still links ("repeats and reverberates then fades" -> "repeats and then fades")."""
    assert corruptions.verb_removal_is_error("rain falls while thunder crashes in the distance".split(), 4)
    assert corruptions.verb_removal_is_error("the floor creaks as water runs into the sink".split(), 5)
    assert corruptions.verb_removal_is_error("a man whistles as he walks".split(), 5)
    assert corruptions.verb_removal_is_error("a motor starts and runs at a high speed".split(), 2)  # "a motor and runs"
    assert corruptions.verb_removal_is_error("a car drives by and a bird chirps".split(), 2)  # "a car by and"
    assert corruptions.verb_removal_is_error("a fan continually blows at a high speed".split(), 3)
    assert corruptions.verb_removal_is_error("birds are continuously chirping and then a woman talks".split(), 3)
    assert corruptions.verb_removal_is_error("people yelled and whistled while a helicopter flew overhead".split(), 3)
    assert not corruptions.verb_removal_is_error("a pulse repeats and reverberates then fades".split(), 4)
    assert not corruptions.verb_removal_is_error("a car drives by the house".split(), 2)  # "a car by the house"
    assert not corruptions.verb_removal_is_error("a dog barks as well as a cat".split(), 2)
    assert not corruptions.verb_removal_is_error("while walking on gravel a man whistles".split(), 1)


def test_verb_removals_that_leave_a_word_hanging_are_errors():
    """Without its verb, a conjunction before a preposition links nothing, a bare subject ("someone") meets the
    object, and a count follows a noun: each is an error. Two phrases of place joined ("down the stairs and into a
    wall"), a noun phrase that reads well ("a dog in the distance") and a verb's stem that is also a noun ("hiss")
    are not."""
    assert corruptions.verb_removal_is_error("children play and run in a yard".split(), 3)
    assert corruptions.verb_removal_is_error("the sizzling and popping of a pan".split(), 3)
    assert not corruptions.verb_removal_is_error("a ball rolls down the stairs and bounces into a wall".split(), 6)
    assert corruptions.verb_removal_is_error("someone chops vegetables on a board".split(), 1)
    assert corruptions.verb_removal_is_error("it gets louder and louder".split(), 1)
    assert corruptions.verb_removal_is_error("a dog barks twice".split(), 2)
    assert not corruptions.verb_removal_is_error("then it gets opened again".split(), 2)  # "it opened again"
    assert not corruptions.verb_removal_is_error("a dog barks in the distance".split(), 2)
    assert not corruptions.verb_removal_is_error("someone walks in the garden".split(), 1)  # "someone in the garden"
    assert not corruptions._is_finite("hiss") and corruptions._is_finite("hisses")
    assert corruptions.apply_rule("remove_verb", "someone chops vegetables", "", random.Random(0)) == "someone vegetables"


def test_removal_rules_find_genuine_errors_in_human_captions(clotho_csv):
    """On Clotho's captions each removal rule still applies often (at least a fifth), one word at a time."""
    captions = [c for clip in ted.read_clotho_captions(clotho_csv).values() for c in clip][:500]
    corrupted = detector_evaluation.single_rule_corruptions(captions, seed=0)
    for rule in ("remove_conj", "remove_verb", "repeat_adv"):
        assert len(corrupted[rule]) > 0.2 * len(captions), rule
    for text in corrupted["remove_conj"] + corrupted["remove_verb"]:
        assert text not in {corruptions.fense_normalize_caption(c) for c in captions}


def test_training_on_a_small_slice_saves_a_loadable_detector(tmp_path, monkeypatch, caplog, clotho_csv):
    """The whole training path (real Clotho captions + synthetic ones, split by clip) on a slice: seconds, not minutes."""
    args = ted.DetectorTrainingArguments(
        output_dir=str(tmp_path / "detector"), captions_csv=str(clotho_csv), synthetic_clips=10,
        max_train_captions=48, max_eval_captions=30, epochs=1, batch_size=16, max_train_seconds=None,
    )  # fmt: skip
    train_captions, held_out = ted.split_captions(args)  # 30 held out: 4 of them hold a comma
    clotho = ted.read_clotho_captions(clotho_csv)
    assert sum(map(len, clotho.values())) == 5225  # the 1,045 clips x 5 captions of Clotho's evaluation split
    by_caption = {c: name for name, captions in clotho.items() for c in captions}
    held_clips = {by_caption[c] for c in held_out["clotho"]}
    assert not held_clips & {by_caption[c] for c in train_captions if c in by_caption}  # split by clip
    metrics = ted.train(args)
    assert metrics["train_steps"] == 6 and metrics["train_examples"] == 96  # 48 clean + 48 corrupted, batch 16
    rows = metrics["held_out"]["clotho"]
    assert {"repeat_word (random)", "remove_conj (fense)", "mixture (fense)", "mixture (random)"} <= set(rows)
    assert set(rows) <= {f"{kind} ({position})" for kind in [*corruptions.ERROR_KINDS, "mixture"] for position in corruptions.POSITIONS}
    assert json.loads((tmp_path / "detector" / "metrics.json").read_text())["held_out"] == metrics["held_out"]
    without_commas = metrics["held_out"]["clotho, clean captions without commas"]
    assert {name: row["positives"] for name, row in without_commas.items()} == {
        name: row["positives"] for name, row in rows.items()
    }
    assert {row["negatives"] for row in without_commas.values()} == {sum("," not in c for c in held_out["clotho"])}
    assert metrics["quality_problems"] == detector_evaluation.quality_problems(rows)  # judged on all clean captions
    detector = load_error_detector(str(tmp_path / "detector"))
    assert len(detector(["a dog barks", "a dog barks barks and"])) == 2
    # saved to flag a phrase doubled in place (`flag_doubled_phrases`, on by default): the held-out rows are the
    # detector's, and a third table holds its classifier's
    assert detector.flag_doubled_phrases and detector(["a dog barks barks while rain falls"]) == [1.0]
    assert rows["repeat_word (random)"]["recall"] == 1.0
    alone = metrics["held_out"]["clotho, the classifier alone"]
    assert {name: row["positives"] for name, row in alone.items()} == {name: row["positives"] for name, row in rows.items()}
    # the word-embedding matrix is kept as pretrained (`freeze_word_embeddings`); the layers above it are trained
    from transformers import AutoModel

    pretrained = AutoModel.from_pretrained(ted.minilm_model_dir()).state_dict()
    trained_encoder = detector.classifier.encoder.state_dict()
    assert torch.equal(trained_encoder["embeddings.word_embeddings.weight"], pretrained["embeddings.word_embeddings.weight"])
    assert not torch.equal(trained_encoder["encoder.layer.0.attention.self.query.weight"],
                           pretrained["encoder.layer.0.attention.self.query.weight"])  # fmt: skip
    # ensure_error_detector reuses a folder made by the same recipe, retrains one made by another (arguments or rules)
    same = {k: v for k, v in dataclasses.asdict(args).items() if k != "output_dir"}
    trained = []
    monkeypatch.setattr(ted, "train", lambda a: trained.append(a) or {"quality_problems": []})
    assert ted.ensure_error_detector(str(tmp_path / "detector"), **same) == str(tmp_path / "detector")
    assert trained == []
    assert not ted.needs_training(str(tmp_path / "detector"), **same)
    with monkeypatch.context() as patch:
        patch.setattr(ted, "SINGLE_RULE_WEIGHTS", {**corruptions.SINGLE_RULE_WEIGHTS, "remove_conj": 1.0})
        assert ted.needs_training(str(tmp_path / "detector"), **same)  # another weighting of the rules
    assert ted.needs_training(str(tmp_path / "detector"), **{**same, "epochs": 2})  # what the demo asks first
    # a detector recorded before the held-out fold was an argument held out fold 0, as the default does
    metrics_file = tmp_path / "detector" / "metrics.json"
    metrics_file.write_text(json.dumps({k: v for k, v in json.loads(metrics_file.read_text()).items() if k != "held_out_fold"}))
    assert same["held_out_fold"] == 0 and not ted.needs_training(str(tmp_path / "detector"), **same)
    assert ted.needs_training(str(tmp_path / "detector"), **{**same, "held_out_fold": 1})
    ted.ensure_error_detector(str(tmp_path / "detector"), **{**same, "epochs": 2})
    monkeypatch.setattr(ted, "RULES_VERSION", corruptions.RULES_VERSION + 1)
    ted.ensure_error_detector(str(tmp_path / "detector"), **same)
    assert [a.epochs for a in trained] == [2, 1]
    # a training that misses a held-out target says so in one line, and the detector is used as it is
    monkeypatch.setattr(ted, "train", lambda a: {"quality_problems": ["remove_conj (random): ROC-AUC 0.960 < 0.97"]})
    with caplog.at_level("WARNING"):
        assert ted.ensure_error_detector(str(tmp_path / "other")) == str(tmp_path / "other")
    assert [r.getMessage() for r in caplog.records if "misses" in r.getMessage()] == [
        f"The error detector trained in {tmp_path / 'other'} misses held-out targets (remove_conj (random): ROC-AUC "
        "0.960 < 0.97); it is used as it is. The recipe's figures: docs/post-correction.md, 'Held-out figures'."
    ]
    monkeypatch.setattr(ted, "train", lambda a: trained.append(a) or {"quality_problems": []})
    (tmp_path / "detector" / "metrics.json").unlink()  # not made here: a detector given, reused as it is
    assert ted.ensure_error_detector(str(tmp_path / "detector"), **same) and len(trained) == 2


def _captions_csv(path: Path, clips: dict[str, list[str]]) -> Path:
    lines = ["file_name,caption_1,caption_2"] + [f"{name},{','.join(captions)}" for name, captions in clips.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_development_captions_are_trained_on_and_the_evaluation_captions_held_out(tmp_path, monkeypatch, caplog):
    """By default the detector trains on Clotho's development captions and is scored on all its evaluation captions;
    where the development captions cannot be had, it trains on 80% of the evaluation clips, as before, and says so."""
    development = _captions_csv(tmp_path / "clotho_captions_development.csv", {
        f"dev_{i}.wav": [f"a dog barks {i} times", f"rain falls on roof {i}"] for i in range(10)
    } | {"shared.wav": ["a clip in both splits", "it is not trained on"]})  # fmt: skip
    evaluation = _captions_csv(tmp_path / "clotho_evaluation_captions.csv", {
        f"eval_{i}.wav": [f"a car passes {i}", f"birds chirp {i}"] for i in range(5)
    } | {"shared.wav": ["a clip in both splits", "held out"]})  # fmt: skip
    monkeypatch.setattr(ted, "clotho_captions_csv", lambda allow_download=True: str(evaluation))
    monkeypatch.setattr(ted, "clotho_development_captions_csv", lambda allow_download=True: str(development))
    args = ted.DetectorTrainingArguments(output_dir=str(tmp_path / "detector"), synthetic_clips=0)
    assert ted.caption_files(args) == (str(development), str(evaluation))
    train, held_out = ted.split_captions(args)
    assert sorted(held_out["clotho"]) == sorted(
        [c for i in range(5) for c in (f"a car passes {i}", f"birds chirp {i}")] + ["a clip in both splits", "held out"]
    )
    development_captions = [c for i in range(10) for c in (f"a dog barks {i} times", f"rain falls on roof {i}")]
    assert sorted(train + held_out["calibration"]) == sorted(development_captions)  # one clip in ten sets the gate
    assert len(held_out["calibration"]) == 2 and not set(held_out["calibration"]) & set(train)
    # 3 passes of 80% of the evaluation captions' clips are 1,680 steps; Clotho's 19,195 development captions
    # (and 60 synthetic ones) make 0.7 of a pass in as many steps
    assert ted.training_epochs(ted.DetectorTrainingArguments(), 4480) == 3.0
    assert ted.training_epochs(ted.DetectorTrainingArguments(), 19255) == pytest.approx(0.698, abs=1e-3)
    assert ted.training_epochs(ted.DetectorTrainingArguments(max_steps=None), 19255) == 3.0
    # the recipe names the captions: a detector trained on the evaluation split is trained again once the
    # development captions are at hand, and reused while they are not
    recorded = ted.recipe(args)
    assert (recorded["training_captions"], recorded["held_out_captions"]) == (
        "clotho_captions_development.csv", "clotho_evaluation_captions.csv"
    )
    (tmp_path / "detector").mkdir()
    (tmp_path / "detector" / "echecker.ckpt").write_bytes(b"")
    old = {k: v for k, v in ted.recipe(args, (str(evaluation), None)).items() if k not in ted.RECIPE_KEYS_ADDED}
    (tmp_path / "detector" / "metrics.json").write_text(json.dumps(old))  # written before the captions were named
    assert ted.needs_training(str(tmp_path / "detector"), synthetic_clips=0)

    def offline(allow_download=True):
        raise ted.DataUnavailable("Clotho's development captions", "the download failed: offline", "Get them so.")

    monkeypatch.setattr(ted, "clotho_development_captions_csv", offline)
    assert not ted.needs_training(str(tmp_path / "detector"), synthetic_clips=0)
    with caplog.at_level("WARNING"):
        assert ted.caption_files(args) == (str(evaluation), None)
    assert "Clotho's development captions cannot be had (the download failed: offline)" in caplog.text
    assert "trains on 80% of the clips of Clotho's evaluation captions instead" in caplog.text
    # with no Clotho captions here at all, a detector trained on the development captions is used as it is
    (tmp_path / "detector" / "metrics.json").write_text(json.dumps(ted.recipe(args, (str(development), str(evaluation)))))
    monkeypatch.setattr(ted, "clotho_captions_csv", offline)
    assert not ted.needs_training(str(tmp_path / "detector"), synthetic_clips=0)
    # a CSV of one's own is split by clip, or held out against another given whole
    own = ted.DetectorTrainingArguments(captions_csv=str(development), held_out_captions_csv=str(evaluation))
    assert ted.caption_files(own) == (str(development), str(evaluation))
    assert ted.caption_label(str(tmp_path / "mine.csv")) == str(tmp_path / "mine.csv")
    assert ted.trained_on((str(evaluation), None), args).startswith("clotho_evaluation_captions.csv, 80% of its clips")
    assert ted.trained_on((str(development), str(evaluation)), args) == (
        "clotho_captions_development.csv but 10% of its clips (kept to set the gate on), + synthetic captions; "
        "clotho_evaluation_captions.csv held out"
    )


def test_a_training_against_a_held_out_csv_sets_its_gate_on_calibration_captions(tmp_path, clotho_csv):
    """Trained on one CSV and scored on another held out whole (the development and evaluation captions by
    default), a training keeps 10% of its clips out to set the gate on: the error output's bias is moved so that 1% of
    those clean captions pass 0.9, as the detector scores them."""
    clotho = ted.read_clotho_captions(clotho_csv)
    held_clips = dict(list(clotho.items())[:10])
    held_csv = _captions_csv(tmp_path / "held.csv", {name: captions[:2] for name, captions in held_clips.items()})
    args = ted.DetectorTrainingArguments(
        output_dir=str(tmp_path / "detector"), captions_csv=str(clotho_csv), held_out_captions_csv=str(held_csv),
        synthetic_clips=5, max_train_captions=48, epochs=1, batch_size=16, max_train_seconds=None,
    )  # fmt: skip
    train, held_out = ted.split_captions(args)
    calibration = held_out["calibration"]
    assert len(calibration) == 5 * 103  # 10% of the 1,035 clips not held out
    assert not set(calibration) & set(train) and not set(calibration) & set(held_out["clotho"])
    assert len(held_out["clotho"]) == 20 and not {c for n in held_clips for c in clotho[n]} & set(train)
    metrics = ted.train(args)
    assert metrics["calibration_captions"] == 515 and metrics["held_out"]["clotho"]["mixture (random)"]["negatives"] == 20
    assert metrics["held_out_captions"] == str(held_csv) and metrics["training_captions"] == "clotho_evaluation_captions.csv"
    detector = load_error_detector(str(tmp_path / "detector"))
    above = sum(score > 0.9 for score in detector(calibration, batch_size=64))
    assert above in (5, 6), above  # 1% of 515, whatever the 6 steps made of the classifier
    assert abs(metrics["gate_bias_shift"]) > 0.01


def test_a_conjunction_written_after_a_comma_is_kept_in_the_held_out_rows():
    """Without its conjunction, "a door closes, and someone walks in" joins two clauses with a comma as clean Clotho
    captions do ("a door closes, someone walks in"): read as written, the rules keep that conjunction, at FENSE's
    position and anywhere, and the held-out rows never remove it; one without a comma before it goes. The training
    corrupts the cleaned caption and may remove it (measured: the detector ranks the other removals better so)."""
    written = "A door closes, and someone walks in while a dog barks."
    assert corruptions.conjunctions_after_marks(written) == {("closes", "and", "someone")}
    assert corruptions.conjunctions_after_marks("Rain; then thunder: and wind, or hail") == {
        ("rain", "then", "thunder"), ("thunder", "and", "wind"), ("wind", "or", "hail")
    }
    assert corruptions.conjunctions_after_marks("A dog barks and a car passes, honking.") == frozenset()
    clean = "a door closes and someone walks in while a dog barks"
    assert corruptions.fense_normalize_caption(written) == clean
    kept = "a door closes and someone walks in a dog barks"
    comma_removed = "a door closes someone walks in while a dog barks"
    drawn = {corruptions.apply_rule("remove_conj", clean, clean, random.Random(seed), "random") for seed in range(20)}
    assert drawn == {kept, comma_removed}  # the cleaned caption alone: both conjunctions are removed
    for position in corruptions.POSITIONS:
        drawn = {corruptions.apply_rule("remove_conj", clean, clean, random.Random(seed), position, written=written)
                 for seed in range(20)}  # fmt: skip
        assert drawn == {kept}
    assert corruptions.apply_rule("remove_conj", "a door closes and someone walks in", "", random.Random(0),
                                  written="A door closes, and someone walks in.") is None  # fmt: skip
    singles = [corruptions.single_rule_corruption(written, random.Random(seed), random_position_share=1.0)
               for seed in range(300)]  # fmt: skip
    mixes = [corruptions.corrupt_caption(written, random.Random(seed))[0] for seed in range(300)]
    assert kept in {text for text, _ in singles} and comma_removed not in {text for text, _ in singles} | set(mixes)
    rows = detector_evaluation.held_out_corruptions([written] * 20, 0)  # with the comma, as written
    assert "a door closes, and someone walks in a dog barks" in rows["remove_conj (random)"]
    assert not {"a door closes, someone walks in while a dog barks", comma_removed} & set(sum(rows.values(), []))
    trained = {text for text, _ in ted.labelled_pairs([written] * 300, 0, "balanced", 0.5)}
    assert {kept, comma_removed} <= trained


def test_random_position_removes_any_word_that_qualifies():
    """FENSE's position removes the last qualifying word; "random" any of them, so training sees inner ones too."""
    caption = "a door is opened and closed while rain falls"  # "and" (opened closed) and "while" (rain falls) qualify
    assert corruptions.apply_rule("remove_conj", caption, caption, random.Random(0)) == "a door is opened and closed rain falls"
    drawn = {corruptions.apply_rule("remove_conj", caption, caption, random.Random(seed), "random") for seed in range(20)}
    assert drawn == {"a door is opened and closed rain falls", "a door is opened closed while rain falls"}
    with pytest.raises(ValueError, match="position.*'first'"):
        corruptions.apply_rule("remove_conj", caption, caption, random.Random(0), "first")
    with pytest.raises(ValueError, match="unknown error kind 'swap_words'"):
        corruptions.apply_rule("swap_words", caption, caption, random.Random(0))
    examples = ted.labelled_pairs([caption] * 300, 0, "balanced", 1.0, random_position_share=1.0)
    conjunction_removed = {text for text, labels in examples[1::2] if labels[3]}
    assert "a door is opened closed while rain falls" in conjunction_removed


def test_balanced_mix_sees_every_rule_alone():
    """The "balanced" corruption mix: half the corruptions carry exactly one rule, drawn uniformly."""
    captions = ["a dog barks loudly while a car is passing by"] * 400
    fense, balanced = ted.labelled_pairs(captions, 0), ted.labelled_pairs(captions, 0, "balanced")
    def rule_counts(examples):
        return np.array([labels[:-1] for _, labels in examples[1::2]]).sum(axis=0)

    assert len(fense) == len(balanced) == 800 and all(labels[-1] == 1.0 for _, labels in balanced[1::2])
    rules = dict(zip(FENSE_ERROR_TYPES[:-1], rule_counts(balanced)))
    assert min(rules.values()) > 0.05 * 400  # each rule appears (uniform half: ~40 each, plus FENSE's mix)
    assert rule_counts(balanced)[3] > rule_counts(fense)[3]  # remove_conj, rare in FENSE's mix, seen more often
    with pytest.raises(ValueError, match="corruption mix"):
        ted.labelled_pairs(captions, 0, "uniform")


def test_training_passes_keep_each_pair_together_with_fresh_corruptions():
    """Each pass: every clean caption directly before one corruption of it, in a new order, corrupted anew."""
    captions = [f"a dog barks loudly while car {i} is passing by" for i in range(40)]
    examples = ted.training_passes(captions, passes=2, seed=3, mix="balanced", single_rule_share=0.8)
    assert len(examples) == 160
    for (clean, clean_labels), (corrupted, labels) in zip(examples[::2], examples[1::2]):
        assert clean in captions and not any(clean_labels) and labels[-1] == 1.0 and corrupted != clean
    first, second = examples[:80], examples[80:]
    assert [text for text, _ in first[::2]] != [text for text, _ in second[::2]]  # each pass has its own order
    assert sorted(text for text, _ in first[::2]) == sorted(captions)  # and holds every caption once
    assert sorted(text for text, _ in first[1::2]) != sorted(text for text, _ in second[1::2])  # fresh corruptions


def test_each_clean_caption_can_be_followed_by_several_corruptions_of_different_kinds():
    """`corruptions_per_caption`: a clean caption, then that many corruptions of it (the least used kinds first, so
    they differ), kept together through the passes; each corruption's word marks are taken against its own clean
    caption."""
    captions = [f"a dog barks loudly while car {i} is passing by" for i in range(30)]
    examples = ted.training_passes(captions, passes=2, seed=1, mix="balanced", single_rule_share=1.0,
                                   corruptions_per_caption=2)  # fmt: skip
    assert len(examples) == 2 * 30 * 3
    groups = [examples[start : start + 3] for start in range(0, len(examples), 3)]
    for (clean, clean_labels), *corrupted in groups:
        assert clean in captions and not any(clean_labels)
        assert all(labels[-1] == 1.0 and text != clean for text, labels in corrupted)
    kinds = [tuple(labels[:-1]) for group in groups for _, labels in group[1:]]
    assert sum(a != b for a, b in zip(kinds[::2], kinds[1::2])) > 0.5 * len(groups)  # mostly two kinds per caption
    marks = ted.error_word_marks(examples)
    for start in range(0, len(examples), 3):
        clean = examples[start][0]
        assert marks[start] == []
        for offset in (1, 2):
            assert marks[start + offset] == ted.changed_words(clean, examples[start + offset][0]) != []
    with pytest.raises(ValueError, match="corruptions_per_caption"):
        ted.labelled_pairs(captions, 0, "balanced", corruptions_per_caption=0)


def test_length_batches_keep_groups_whole_and_pad_less():
    """With `batch_size`, a pass is cut into batches of captions of similar length (in random order), each clean
    caption still directly before its corruption and every caption there once: far less padding than at random."""
    rng = random.Random(0)
    captions = [" ".join(["a dog barks loudly while a car passes"] + ["by"] * rng.randrange(0, 12)) + f" {i}"
                for i in range(160)]  # fmt: skip
    plain = ted.training_passes(captions, passes=1, seed=2, mix="balanced", single_rule_share=0.8)
    bucketed = ted.training_passes(captions, passes=1, seed=2, mix="balanced", single_rule_share=0.8, batch_size=16)
    assert sorted(bucketed) == sorted(plain) and sorted(text for text, _ in bucketed[::2]) == sorted(captions)
    for (clean, clean_labels), (corrupted, labels) in zip(bucketed[::2], bucketed[1::2]):
        assert not any(clean_labels) and labels[-1] == 1.0 and corrupted != clean

    def padded(examples):  # words read when each batch of 16 is padded to its longest caption
        return sum(16 * max(len(t.split()) for t, _ in examples[i : i + 16]) for i in range(0, len(examples), 16))

    assert padded(bucketed) < 0.85 * padded(plain)
    lengths = [max(len(t.split()) for t, _ in bucketed[i : i + 16]) for i in range(0, len(bucketed), 16)]
    assert lengths != sorted(lengths)  # the batches themselves come in random order


def test_balanced_mix_follows_the_single_rule_weights():
    """Where every kind applies, single-kind corruptions come in the proportions of SINGLE_RULE_WEIGHTS (summed over
    the kinds that share a FENSE output), half of them placed anywhere."""
    captions = ["a dog barks loudly while a car is passing by"] * 1000
    examples = ted.labelled_pairs(captions, 0, "balanced", single_rule_share=1.0)
    counts = np.array([labels[:-1] for _, labels in examples[1::2]]).sum(axis=0)
    weights = np.array([sum(w for kind, w in corruptions.SINGLE_RULE_WEIGHTS.items() if corruptions.ERROR_KINDS[kind] == rule)
                        for rule in FENSE_ERROR_TYPES[:-1]])  # fmt: skip
    assert counts.sum() == 1000 and all(np.sum(labels[:-1]) == 1 for _, labels in examples[1::2])
    np.testing.assert_allclose(counts / 1000, weights / weights.sum(), atol=0.01)
    repeated_inside = sum(" loudly loudly " in text or " barks barks " in text for text, _ in examples[1::2])
    assert repeated_inside > 25  # doubled inside the caption, not only at its end (45 of 1000 measured)


def _paths_module_in(clone: Path):
    """A copy of `cli/paths.py` inside `clone`/cli/, imported from there: its lookup then starts at `clone`."""
    import importlib.util

    from laac.cli import paths

    (clone / "cli").mkdir(parents=True)
    target = clone / "cli" / "paths.py"
    target.write_text(Path(paths.__file__).read_text())
    spec = importlib.util.spec_from_file_location(f"paths_in_{clone.parent.name}", target)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shared_dir_is_found_beside_the_clone(monkeypatch, tmp_path):
    """
    `cli.paths.shared_dir`, the one lookup (the tests' and the benchmarks' too): $LAAC_SHARED_DIR, else shared/
    beside the clone, else beside the main clone of a git worktree; None elsewhere.
    """
    monkeypatch.delenv("LAAC_SHARED_DIR", raising=False)
    (tmp_path / "shared").mkdir()  # a shared/ folder beside the clone
    main = tmp_path / "laac"
    (main / ".git" / "worktrees" / "h1").mkdir(parents=True)
    (main / ".git" / "worktrees" / "h1" / "commondir").write_text("../..\n")  # what `git worktree add` writes
    in_main = _paths_module_in(main)
    assert in_main.shared_dir() == str(tmp_path / "shared")
    worktree = tmp_path / "wt" / "h1" / "laac"  # no shared/ beside it
    worktree.mkdir(parents=True)
    (worktree / ".git").write_text(f"gitdir: {main / '.git' / 'worktrees' / 'h1'}\n")
    assert _paths_module_in(worktree).shared_dir() == str(tmp_path / "shared")
    fresh = tmp_path / "x" / "fresh" / "laac"  # a clone elsewhere: nothing beside it
    (fresh / ".git").mkdir(parents=True)
    in_fresh = _paths_module_in(fresh)
    assert in_fresh.shared_dir() is None
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("LAAC_SHARED_DIR", str(elsewhere))  # the variable wins everywhere
    assert in_fresh.shared_dir() == in_main.shared_dir() == str(elsewhere)


@pytest.mark.parametrize(
    "clean, corrupted, marked",
    [
        ("a door is opened and closed", "a door is opened closed", ["opened", "closed"]),  # a word removed: both sides
        ("a dog is barking loudly", "a dog is loudly", ["is", "loudly"]),
        ("a man speaking", "a man speaking speaking", ["speaking"]),  # a repeat: the one added
        ("a dog barks", "a dog barks and a", ["and", "a"]),  # a tail
        ("a dog barks", "a dog barks", []),
    ],
)
def test_changed_words_marks_what_a_corruption_touched(clean, corrupted, marked):
    words = corrupted.split()
    assert [words[i] for i in ted.changed_words(clean, corrupted)] == marked


def test_localization_labels_cover_every_piece_of_a_marked_word():
    """Token labels follow the word marks through WordPiece: every piece of a marked word is 1, [CLS]/[SEP] ignored."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ted.minilm_model_dir())
    examples = [("a creaky door is opened and closed", [0.0] * 6), ("a creaky door is opened closed", [1.0] * 6)]
    dataset = ted.CaptionDataset(examples, tokenizer, ted.error_word_marks(examples))
    clean, corrupted = dataset[0], dataset[1]
    assert set(clean["token_labels"][1:-1]) == {0.0} and clean["token_labels"][0] == clean["token_labels"][-1] == -100
    pieces = tokenizer.convert_ids_to_tokens(corrupted["input_ids"])
    labelled = [piece for piece, label in zip(pieces, corrupted["token_labels"]) if label == 1.0]
    assert labelled == ["opened", "closed"] and len(pieces) > len(examples[1][0].split()) + 2  # "creaky": pieces
    batch = ted.LocalizationCollator(tokenizer)([dataset[0], dataset[1]])
    assert batch["token_labels"].shape == batch["input_ids"].shape and batch["token_labels"][1, -1] == -100


def test_localizing_classifier_adds_the_weighted_token_loss_and_saves_fense_keys_only(tmp_path):
    """The wrapper's loss: the classifier's (clean terms weighted) plus `weight` x the token loss; saved: FENSE's."""
    import torch
    from laac.correction.post_corrector import CHECKPOINT_NAME, BertFlatClassifier, save_echecker_checkpoint
    from transformers import BertConfig

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    classifier = BertFlatClassifier(config)
    model = ted.ErrorLocalizingClassifier(classifier, weight=2.0, negative_weight=3.0).eval()
    input_ids = torch.randint(0, 50, (2, 6))
    labels = torch.tensor([[0.0] * 6, [0.0, 0.0, 0.0, 1.0, 0.0, 1.0]])
    token_labels = torch.tensor([[-100, 0, 0, 0, 0, -100], [-100, 0, 1, 1, 0, -100]], dtype=torch.float)
    output = model(input_ids, labels=labels, token_labels=token_labels)
    hidden = classifier.encoder(input_ids=input_ids).last_hidden_state
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    kept = token_labels >= 0
    located = bce(model.locator(hidden).squeeze(-1)[kept], token_labels[kept])
    expected = ted.multilabel_loss(classifier(input_ids), labels, negative_weight=3.0) + 2.0 * located
    torch.testing.assert_close(output["loss"], expected)
    torch.testing.assert_close(output["logits"], classifier(input_ids))
    assert model(input_ids)["loss"] is None
    save_echecker_checkpoint(classifier, str(tmp_path / CHECKPOINT_NAME), "tiny")
    saved = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["state_dict"]
    assert set(saved) == set(BertFlatClassifier(config).state_dict()) and not any("locator" in k for k in saved)


@pytest.mark.parametrize("localization_weight", [0.0, 1.0])
def test_training_with_the_localization_loss_saves_a_fense_detector(tmp_path, localization_weight, clotho_csv):
    """`--localization_weight`: the Trainer runs the wrapper on token labels (or, at 0, the classifier with the
    weighted loss); either way the saved detector loads as FENSE's."""
    args = ted.DetectorTrainingArguments(
        output_dir=str(tmp_path / "detector"), captions_csv=str(clotho_csv), synthetic_clips=5,
        max_train_captions=16, max_eval_captions=5, epochs=1, batch_size=16, max_train_seconds=None,
        localization_weight=localization_weight,
    )  # fmt: skip
    metrics = ted.train(args)
    assert metrics["train_steps"] == 2 and metrics["localization_weight"] == localization_weight
    assert metrics["train_cpu_seconds"] > 0 and metrics["torch_threads"] >= 1
    scores = load_error_detector(str(tmp_path / "detector"))(["a dog barks", "a dog barks barks and"])
    assert len(scores) == 2 and all(0.0 <= score <= 1.0 for score in scores)


def test_frozen_layers_keep_the_embeddings_and_lowest_layers_as_pretrained(tmp_path, clotho_csv):
    """`frozen_layers`: the embeddings and that many of the lowest layers are saved as pretrained, the rest trained."""
    from transformers import AutoModel

    args = ted.DetectorTrainingArguments(
        output_dir=str(tmp_path / "detector"), captions_csv=str(clotho_csv), synthetic_clips=5,
        max_train_captions=16, max_eval_captions=5, epochs=1, batch_size=16, max_train_seconds=None, frozen_layers=2,
    )  # fmt: skip
    ted.train(args)
    pretrained = AutoModel.from_pretrained(ted.minilm_model_dir()).state_dict()
    trained = load_error_detector(str(tmp_path / "detector")).classifier.encoder.state_dict()
    for name in ("embeddings.position_embeddings.weight", "encoder.layer.1.output.dense.weight"):
        assert torch.equal(trained[name], pretrained[name]), name
    assert not torch.equal(trained["encoder.layer.2.output.dense.weight"], pretrained["encoder.layer.2.output.dense.weight"])


# Captions for the `fit` tests: two of each length, so a batch of 16 holds them all.
FIT_CAPTIONS = ["a dog barks while a car passes by", "rain falls on a tin roof and thunder rumbles"] * 4


def test_dropout_is_the_encoder_s_own_unless_set(tmp_path):
    """`dropout`: None trains with the encoder's 0.1; 0 trains without dropout, so a training-mode forward pass is the
    evaluation-mode one."""
    for dropout, expected in ((None, 0.1), (0.0, 0.0)):
        args = ted.DetectorTrainingArguments(
            output_dir=str(tmp_path / str(dropout)), epochs=1, batch_size=16, max_train_seconds=None, dropout=dropout
        )
        classifier = ted.fit(args, FIT_CAPTIONS)[0]
        assert {module.p for module in classifier.modules() if isinstance(module, torch.nn.Dropout)} == {expected}
        input_ids = torch.tensor([[101, 1037, 3899, 102]])
        if dropout == 0.0:
            torch.testing.assert_close(classifier.train()(input_ids), classifier.eval()(input_ids), rtol=0, atol=0)


def test_the_same_seed_trains_the_same_detector(tmp_path):
    """`seed` fixes the new heads' initial weights as well as the corruptions and the order: two fits in one process,
    with the global random state moved between them, give the same weights. Up to 1e-4: room for a kernel that sums
    in another order, none for unseeded heads (FENSE's classifier head then differed by 0.1 after this fit)."""
    weights = []
    for run in range(2):
        torch.manual_seed(run)  # what other code did to the global random state before
        args = ted.DetectorTrainingArguments(output_dir=str(tmp_path / str(run)), epochs=1, max_train_seconds=None)
        weights.append(ted.fit(args, FIT_CAPTIONS)[0].state_dict())
    for name, tensor in weights[0].items():
        torch.testing.assert_close(tensor, weights[1][name], rtol=0.0, atol=1e-4, msg=name)


def test_negative_weight_scales_the_clean_terms_of_the_loss():
    """`negative_weight` multiplies the loss of outputs labelled 0; 1 is plain binary cross-entropy."""
    import torch

    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    terms = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    torch.testing.assert_close(ted.multilabel_loss(logits, labels), terms.mean())
    weighted = (terms * torch.tensor([[1.0, 3.0], [3.0, 1.0]])).mean()
    torch.testing.assert_close(ted.multilabel_loss(logits, labels, negative_weight=3.0), weighted)


INDEPENDENT_CAPTIONS = Path(__file__).parent / "fixtures" / "error_detector_independent_captions.json"


def independent_captions() -> tuple[list[str], dict[str, list[str]]]:
    """Hand-written clean captions in Clotho's style and, per error kind, hand-written corrupted twins of some."""
    data = json.loads(INDEPENDENT_CAPTIONS.read_text())
    return data["clean"], {kind: [text for _, text in twins] for kind, twins in data["corrupted"].items()}


def test_the_independent_captions_are_not_clotho_s_and_each_twin_is_broken(clotho_csv):
    """The independent check's captions: none of Clotho's; at least 10 twins per kind, each differing from its clean
    caption the way its kind says (a doubled word: the clean caption once the repeat is cut)."""
    data = json.loads(INDEPENDENT_CAPTIONS.read_text())
    clotho = {corruptions.fense_normalize_caption(c) for clip in ted.read_clotho_captions(clotho_csv).values() for c in clip}
    assert len(data["clean"]) >= 40 and not {corruptions.fense_normalize_caption(c) for c in data["clean"]} & clotho
    for kind, twins in data["corrupted"].items():
        assert len(twins) >= 10, kind
        for index, text in twins:
            clean = data["clean"][index]
            assert text != clean and text not in data["clean"] and text == corruptions.fense_normalize_caption(text), text
            if kind in ("repeat_word", "repeat_adv"):
                assert _undoubled(text) == clean, text
            if kind in ("remove_verb", "remove_conj"):
                assert len(text.split()) == len(clean.split()) - 1, text


def test_the_default_detector_flags_the_independent_corruptions():
    """The detector `ensure_error_detector()` made (cached by set-up), on captions written outside the project: a
    floor under what trainings of the default recipe reached (three seeds on each of two machines: ROC-AUC
    0.981-0.997 over all kinds, 0.936-1.00 per kind; at most one clean caption above the gate; its classifier alone
    0.969-0.988, a doubled word 0.93 at seed 2021 on one), well above FENSE-position-only training (ROC-AUC 0.71 for
    a doubled word, 0.90 over all kinds); not the held-out targets, which it does not all meet. Every doubled word
    and adverb is caught: they double in place, which the detector flags whatever its classifier says
    (`flag_doubled_phrases`)."""
    if ted.needs_training():
        unavailable(
            f"no default error detector in {ted.ERROR_DETECTOR_DIR} (or one made by another recipe). Get them with "
            "`bash scripts/setup.sh`, which trains it once from Clotho's captions"
        )
    clean, corrupted = independent_captions()
    detector = load_error_detector(ted.ERROR_DETECTOR_DIR)
    negatives = np.array(detector(clean, batch_size=64))
    scored = {k: np.array(detector(v, batch_size=64)) for k, v in corrupted.items()}
    rows = detector_evaluation.score_rows(negatives, {**scored, "all kinds": np.concatenate(list(scored.values()))}, 0.9)
    print("\n" + detector_evaluation.format_table(rows))
    assert rows["all kinds"]["clean_flagged"] <= 3  # of 42, five with words repeated on purpose (0-2 measured)
    for kind, row in rows.items():
        assert row["roc_auc"] >= 0.8, (kind, row)
    assert rows["all kinds"]["roc_auc"] >= 0.97 and rows["all kinds"]["precision"] >= 0.95
    assert rows["repeat_word"]["recall"] == 1.0 and rows["repeat_adv"]["recall"] == 1.0
    assert rows["dangling_clause"]["recall"] >= 0.9 and rows["cut_ending"]["recall"] >= 0.9
    # a verb removed so that a word is left hanging ("someone vegetables"): 0.988 and 0.998 in two trainings of the
    # recipe, 0.91 before the removal rules made such errors
    assert rows["remove_verb"]["roc_auc"] >= 0.95


def test_the_default_detector_passes_comma_joined_clean_captions_by_their_clauses(clotho_csv):
    """Held-out clean Clotho captions whose commas join clauses reach FENSE's reading as run-ons ("a clock is ticking
    loudly an alarm is also going off"); the default detector reads them by clauses (`read_clause_marks`), scores them
    lower and flags fewer of them (measured on the 2-core AMD EPYC, seed 2021: 14 -> 7 of the 1,045 held-out clean
    captions above the gate)."""
    if ted.needs_training():
        unavailable(
            f"no default error detector in {ted.ERROR_DETECTOR_DIR} (or one made by another recipe). Get them with "
            "`bash scripts/setup.sh`, which trains it once from Clotho's captions"
        )
    detector = load_error_detector(ted.ERROR_DETECTOR_DIR)
    assert detector.read_clause_marks and detector.flag_doubled_phrases
    _, held_out = ted.split_captions(ted.DetectorTrainingArguments(captions_csv=str(clotho_csv)))
    joined = [caption for caption in held_out["clotho"] if len(english.clauses(caption)) > 1]
    assert len(joined) > 50  # 107 of the 1,045
    fense_reading, by_clauses = (np.array(scores) for scores in detector.probabilities(joined, batch_size=64))
    assert np.all(by_clauses <= fense_reading)
    # measured at seeds 2021 / 1 / 3: mean 0.225 -> 0.061, 0.247 -> 0.092, 0.221 -> 0.072; flagged 8/5/7 -> 1/1/0
    assert by_clauses.mean() < 2 / 3 * fense_reading.mean()
    assert np.sum(by_clauses > 0.9) <= max(1, np.sum(fense_reading > 0.9) // 2)


def test_detector_probes_double_what_they_name():
    """benchmarks/detector_probes.py: a word of quantity, an event phrase with "and", a predicate in place."""
    from laac.benchmarks import detector_probes as probes

    assert probes.quantity_doubled("two women and a man talk") == "two two women and a man talk"
    assert probes.quantity_doubled("a dog barks") is None
    assert probes.event_doubled_with_and("a dog barks while rain falls") == "a dog barks and a dog barks while rain falls"
    doubled = {probes.predicate_doubled("people are talking as a car passes", random.Random(seed)) for seed in range(20)}
    assert doubled == {  # from "are" or "passes", up to a conjunction; never from the first word or an -ing form
        ("people are talking are talking as a car passes", "people are talking and are talking as a car passes"),
        ("people are talking as a car passes passes", "people are talking as a car passes and passes"),
    }
    assert probes.predicate_doubled("birds chirping", random.Random(0)) is None


def test_detector_cross_validation_trains_each_fold_and_judges_the_mean(tmp_path, monkeypatch, capsys):
    """benchmarks/detector_cross_validation.py: the cached default serves as fold 0, every other fold is trained into
    its own folder with its `held_out_fold`, and the targets are judged on the mean of their held-out rows."""
    from laac.benchmarks import detector_cross_validation as cross_validation

    def write(folder: Path, roc_auc: float, clean_flagged: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        row = {"roc_auc": roc_auc, "precision": 1.0, "recall": 0.5, "positives": 10, "negatives": 100,
               "clean_flagged": clean_flagged}  # fmt: skip
        (folder / "metrics.json").write_text(json.dumps({"held_out": {"clotho": {"remove_conj (random)": row}}}))

    trained = []

    def train(path: str, **overrides) -> str:
        trained.append(overrides)
        write(Path(path), 0.94 + overrides["held_out_fold"] / 100, 0)
        return path

    write(tmp_path / "cache", 0.98, 1)
    monkeypatch.setattr(cross_validation, "ERROR_DETECTOR_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(
        cross_validation, "is_reusable", lambda path, args: path == str(tmp_path / "cache") and args.held_out_fold == 0
    )
    monkeypatch.setattr(cross_validation, "ensure_error_detector", train)
    monkeypatch.setattr(cross_validation, "clotho_captions_csv", lambda: "/data/clotho_evaluation_captions.csv")
    rows = cross_validation.main(["--output_dir", str(tmp_path / "folds"), "--folds", "0,1,2"])
    evaluation = {"captions_csv": "/data/clotho_evaluation_captions.csv"}  # the split, wherever the development captions
    assert trained == [{"seed": 2021, "held_out_fold": 1, **evaluation}, {"seed": 2021, "held_out_fold": 2, **evaluation}]
    assert (tmp_path / "folds" / "fold_2" / "metrics.json").is_file()
    row = rows["remove_conj (random)"]
    assert row["roc_auc"] == pytest.approx((0.98 + 0.95 + 0.96) / 3) and (row["roc_auc_min"], row["roc_auc_max"]) == (0.95, 0.98)
    assert (row["clean_flagged"], row["negatives"]) == (1, 300)
    assert "below target: remove_conj (random): ROC-AUC 0.963 < 0.97" in capsys.readouterr().out
