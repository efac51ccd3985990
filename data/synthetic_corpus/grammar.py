"""The synthetic corpus's caption grammar: five lower-case captions per clip that name every event it holds."""

from __future__ import annotations

import re

import numpy as np

from .catalogue import EVENTS_BY_NAME, events_in_caption
from .layout import ClipSpec, EventInstance

NUM_CAPTIONS = 5
MIN_CAPTION_WORDS = 8
MAX_CAPTION_WORDS = 20

# Generic attribute words; "adj" goes in the {adj} slot, "adv" in the {adv} slot of clauses, "noun_adv" in the {adv}
# slot of noun phrases. An attribute value with no words for a slot is simply not mentioned there.
_ATTRIBUTE_WORDS: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {
    ("pitch", "high"): {"adj": ("high pitched ", "shrill ")},
    ("pitch", "low"): {"adj": ("low pitched ", "deep ")},
    ("loudness", "loud"): {"adj": ("loud ",), "adv": (" loudly",)},
    ("loudness", "quiet"): {"adj": ("quiet ", "faint ", "soft "), "adv": (" quietly", " softly")},
    ("envelope", "crescendo"): {
        "adv": (" louder and louder", " growing louder", " getting louder"),
        "noun_adv": (" getting louder", " that grows louder"),
    },
    ("envelope", "fade"): {
        "adv": (" fading out", " fading away", " softer and softer"),
        "noun_adv": (" fading away", " that fades out"),
    },
    ("speed", "fast"): {"adj": ("fast ", "rapid "), "adv": (" quickly", " rapidly")},
    ("speed", "slow"): {"adj": ("slow ",), "adv": (" slowly",)},
}
_COUNT_WORDS = {1: " once", 2: " twice", 3: " three times", 4: " four times", 5: " five times"}

_UNMENTIONED = {"normal", "steady"}

# Where or how long the sound is; at most one phrase of each group goes into a caption, so that a caption never
# says both "in the distance" and "nearby".
_PLACE_FILLER_GROUPS = (
    (" in the distance", " from far away", " off in the distance", " nearby", " close by", " somewhere nearby"),
    (" in the background",),
    (" outside",),
    (" throughout the recording", " for a while"),
)
_NOUN_FRAMES = (
    "the sound of {np}{place}",
    "{np} can be heard{place}",
    "you can hear {np}{place}",
    "there is {np}{place}",
    "a recording of {np}{place}",
    "{np} is heard{place}",
)


# ---------------------------------------------------------------------------------------------------------------
# Caption analysis: which events a caption names, and event-level F1
# ---------------------------------------------------------------------------------------------------------------


def _fix_articles(text: str) -> str:
    """ "a engine" -> "an engine", "an loud engine" -> "a loud engine" (templates always write the article)."""
    text = re.sub(r"\ba (?=[aeiou])", "an ", text)
    return re.sub(r"\ban (?=[^aeiou\s])", "a ", text)


def _attribute_phrases(
    rng: np.random.Generator, event: EventInstance, form: str, mention_probability: float
) -> tuple[str, str]:
    """Adjective and trailing-modifier strings for the attributes this caption mentions (at most two)."""
    spec = EVENTS_BY_NAME[event.name]
    adverb_slot = "adv" if form == "clause" else "noun_adv"
    adjectives, adverbs = [], []
    for kind in rng.permutation(sorted(event.attributes)):
        value = event.attributes[kind]
        if value in _UNMENTIONED or rng.random() >= mention_probability or len(adjectives) + len(adverbs) >= 2:
            continue
        if kind == "count":
            if form == "clause":
                adverbs.append(_COUNT_WORDS[value])
            continue
        words = spec.attribute_words.get((kind, value), _ATTRIBUTE_WORDS[(kind, value)])
        slots = [slot for slot in ("adj", adverb_slot) if words.get(slot)]
        if not slots:
            continue
        slot = slots[int(rng.integers(len(slots)))]
        choice = words[slot][int(rng.integers(len(words[slot])))]
        (adjectives if slot == "adj" else adverbs).append(choice)
    if len(adverbs) == 2 and all(adverb.endswith("ly") and " " not in adverb.strip() for adverb in adverbs):
        adverbs.insert(1, " and")  # "loudly and quickly", not "loudly quickly"
    return "".join(adjectives), "".join(adverbs)


def _event_phrase(rng: np.random.Generator, event: EventInstance, form: str, mention_probability: float) -> str:
    spec = EVENTS_BY_NAME[event.name]
    templates = spec.clauses if form == "clause" else spec.nouns
    template = templates[int(rng.integers(len(templates)))]
    adjective, adverb = _attribute_phrases(rng, event, form, mention_probability)
    if "{adj}" not in template:
        adjective = ""
    return template.format(adj=adjective, adv=adverb)


def _scene_phrase(rng: np.random.Generator, scene: list[EventInstance], mention_probability: float) -> str:
    """Overlapping events joined with "while", "as", "over", "and ... at the same time"."""
    order = [scene[i] for i in rng.permutation(len(scene))]
    first = _event_phrase(rng, order[0], "clause", mention_probability)
    if len(order) == 1:
        return first
    rest = order[1:]
    style = int(rng.integers(4))
    if style == 0:
        return f"{first} while " + " and ".join(_event_phrase(rng, e, "clause", mention_probability) for e in rest)
    if style == 1:
        return f"{first} as " + " and ".join(_event_phrase(rng, e, "clause", mention_probability) for e in rest)
    if style == 2:
        return f"{first} over " + " and ".join(_event_phrase(rng, e, "noun", mention_probability) for e in rest)
    nouns = [_event_phrase(rng, e, "noun", mention_probability) for e in order]
    return " and ".join(nouns) + " can be heard at the same time"


def _sequence_phrase(rng: np.random.Generator, scenes: list[list[EventInstance]], mention_probability: float) -> str:
    """Consecutive scenes joined with "then", "and then", "followed by", "before", "and after that"."""
    text = _scene_phrase(rng, scenes[0], mention_probability)
    for scene in scenes[1:]:
        style = int(rng.integers(5))
        if style == 2 and len(scene) == 1:
            text += " followed by " + _event_phrase(rng, scene[0], "noun", mention_probability)
            continue
        connector = (" then ", " and then ", " and then ", " before ", " and after that ")[style]
        text += connector + _scene_phrase(rng, scene, mention_probability)
    return text


def _one_caption(rng: np.random.Generator, clip: ClipSpec, mention_probability: float) -> str:
    single = len(clip.events) == 1
    if single and rng.random() < 0.5:
        noun = _event_phrase(rng, clip.events[0], "noun", mention_probability)
        caption = _NOUN_FRAMES[int(rng.integers(len(_NOUN_FRAMES)))].format(np=noun, place="{place}")
    else:
        caption = _sequence_phrase(rng, clip.scenes, mention_probability) + "{place}"
    groups = [_PLACE_FILLER_GROUPS[i] for i in rng.permutation(len(_PLACE_FILLER_GROUPS))]
    # Pad short captions with where the sound is, as annotators of short clips do; now and then pad longer ones too.
    n_fillers = 1 if not single and rng.random() < 0.2 else 0
    place = ""
    for group in groups:
        if len(caption.format(place=place).split()) >= MIN_CAPTION_WORDS and n_fillers == 0:
            break
        place += group[int(rng.integers(len(group)))]
        n_fillers = max(0, n_fillers - 1)
    return " ".join(_fix_articles(caption.format(place=place)).split())


def make_captions(rng: np.random.Generator, clip: ClipSpec, num_captions: int = NUM_CAPTIONS) -> list[str]:
    """`num_captions` distinct captions of 8-20 words, each naming exactly the clip's events."""
    names = {event.name for event in clip.events}
    captions: list[str] = []
    for attempt in range(200):
        # Later attempts mention fewer attributes, which keeps three-event captions under the word limit.
        caption = _one_caption(rng, clip, mention_probability=0.6 if attempt < 60 else 0.0)
        words = len(caption.split())
        valid = MIN_CAPTION_WORDS <= words <= MAX_CAPTION_WORDS and events_in_caption(caption) == names
        if valid and caption not in captions:
            captions.append(caption)
            if len(captions) == num_captions:
                return captions
    raise RuntimeError(f"could not write {num_captions} distinct captions for events {sorted(names)}")
