"""The synthetic corpus's event catalogue: every nameable sound event, its caption words and its synthesiser.

The catalogue is data, `events.json` beside this file: one entry per event with its `keywords` (the words that name
it in a caption), `clauses` and `nouns` (caption phrases with `{adj}` and `{adv}` slots), the `attributes` it
varies (pitch, speed, loudness, envelope, count), the name of its `synth` function (`synthesis.SYNTHESISERS`), for
counted events `burst_period_s` and `max_count`, and `attribute_words` where its attribute values take words of
their own ("heavy" rain, not "loud" rain). `load_catalogue` reads it into `EventSpec`s.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CATALOGUE = Path(__file__).with_name("events.json")


@dataclass(frozen=True)
class EventSpec:
    """One nameable sound event.

    `clauses` are full phrases ("a dog barks") and `nouns` noun phrases ("the barking of a dog"); both hold an
    `{adj}` slot for adjectives ("loud ", "high pitched ") and an `{adv}` slot for trailing modifiers
    (" twice", " getting louder"). Every phrase contains one of `keywords`, which `events_in_caption` looks for.
    """

    name: str
    keywords: tuple[str, ...]
    clauses: tuple[str, ...]
    nouns: tuple[str, ...]
    attributes: tuple[str, ...]
    synth: str  # the synthesiser's name in synthesis.SYNTHESISERS
    # Longest gap between bursts plus one burst, in seconds: bounds how many counted bursts fit a segment.
    burst_period_s: float = 0.0
    max_count: int = 1
    # Event-specific words that replace the generic attribute words, e.g. rain is "heavy", not "loud".
    attribute_words: dict[tuple[str, str], dict[str, tuple[str, ...]]] = field(default_factory=dict)


def _event_spec(entry: dict[str, Any]) -> EventSpec:
    """One catalogue entry as an `EventSpec` (lists become tuples; attribute words keyed by (attribute, value))."""
    words = {
        (attribute, value): {slot: tuple(phrases) for slot, phrases in slots.items()}
        for attribute, values in entry.get("attribute_words", {}).items()
        for value, slots in values.items()
    }
    return EventSpec(
        name=entry["name"],
        keywords=tuple(entry["keywords"]),
        clauses=tuple(entry["clauses"]),
        nouns=tuple(entry["nouns"]),
        attributes=tuple(entry["attributes"]),
        synth=entry["synth"],
        burst_period_s=float(entry.get("burst_period_s", 0.0)),
        max_count=int(entry.get("max_count", 1)),
        attribute_words=words,
    )


def load_catalogue(path: str | Path = CATALOGUE) -> tuple[EventSpec, ...]:
    """The events of a catalogue file, in its order (the order the clip sampler draws from)."""
    with open(path, encoding="utf-8") as f:
        return tuple(_event_spec(entry) for entry in json.load(f))


EVENTS: tuple[EventSpec, ...] = load_catalogue()
EVENTS_BY_NAME: dict[str, EventSpec] = {spec.name: spec for spec in EVENTS}
# Event name -> caption words that identify it.
EVENT_VOCABULARY: dict[str, list[str]] = {spec.name: list(spec.keywords) for spec in EVENTS}
KEYWORD_TO_EVENT: dict[str, str] = {word: name for name, words in EVENT_VOCABULARY.items() for word in words}


def events_in_caption(caption: str) -> set[str]:
    """Names of the events whose `EVENT_VOCABULARY` words occur in `caption` (case and punctuation ignored)."""
    words = re.findall(r"[a-z]+", caption.lower())
    return {KEYWORD_TO_EVENT[word] for word in words if word in KEYWORD_TO_EVENT}
