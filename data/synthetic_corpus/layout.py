"""The synthetic corpus's clip layouts: duration, events, their grouping into scenes, times and attributes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .catalogue import EVENTS, EVENTS_BY_NAME, EventSpec

SAMPLING_RATE = 16000
MIN_DURATION_S = 1.0
MAX_DURATION_S = 15.0
# Shortest stretch of time one "scene" (a group of overlapping events) may occupy.
MIN_SCENE_S = 0.9
# Loudness attribute -> gain in dB. With +-1 dB of jitter, events of one clip stay within 10 dB of each other.
LOUDNESS_GAIN_DB = {"normal": 0.0, "loud": 3.5, "quiet": -4.5}
LOUDNESS_JITTER_DB = 1.0
# The values of each attribute an event varies and their probabilities (synthesis needs one of each).
ATTRIBUTE_VALUES = {
    "pitch": (("high", "low"), (0.5, 0.5)),
    "speed": (("fast", "slow"), (0.5, 0.5)),
    "loudness": (("normal", "loud", "quiet"), (0.6, 0.2, 0.2)),
    "envelope": (("steady", "crescendo", "fade"), (0.6, 0.2, 0.2)),
}


@dataclass
class EventInstance:
    """One event of a clip: where it sounds (seconds) and its attribute values."""

    name: str
    start_s: float
    end_s: float
    attributes: dict[str, Any]
    gain_db: float


@dataclass
class ClipSpec:
    """A clip's layout. `scenes` are consecutive stretches of time; events within one scene overlap ("while"),
    scenes follow one another ("then")."""

    duration_s: float
    scenes: list[list[EventInstance]]

    @property
    def events(self) -> list[EventInstance]:
        return [event for scene in self.scenes for event in scene]


def sample_duration(rng: np.random.Generator) -> float:
    """Clip length in seconds: mostly 2-8 s, with tails down to 1 s and up to 15 s."""
    bucket = rng.choice(3, p=(0.08, 0.8, 0.12))
    low, high = ((MIN_DURATION_S, 2.0), (2.0, 8.0), (8.0, MAX_DURATION_S))[bucket]
    return round(float(rng.uniform(low, high)), 2)


def _sample_scene_sizes(rng: np.random.Generator, n_events: int, duration_s: float) -> list[int]:
    """How many overlapping events each consecutive scene holds, e.g. [2, 1] = "A while B, then C"."""
    options = {1: ([1],), 2: ([2], [1, 1]), 3: ([3], [2, 1], [1, 2], [1, 1, 1])}[n_events]
    fitting = [sizes for sizes in options if len(sizes) * MIN_SCENE_S <= duration_s]
    return list(fitting[int(rng.integers(len(fitting)))])


def _sample_attributes(rng: np.random.Generator, spec: EventSpec, segment_s: float) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for kind in spec.attributes:
        if kind == "count":
            fitting = max(1, min(spec.max_count, int(segment_s / spec.burst_period_s)))
            attributes["count"] = int(rng.integers(1, fitting + 1))
        else:
            values, probabilities = ATTRIBUTE_VALUES[kind]
            attributes[kind] = str(values[rng.choice(len(values), p=probabilities)])
    return attributes


def sample_clip(rng: np.random.Generator) -> ClipSpec:
    """Draw a clip layout: duration, 1-3 distinct events, their grouping into scenes, times and attributes."""
    duration_s = sample_duration(rng)
    max_events = 1 if duration_s < 2.0 else 2 if duration_s < 4.0 else 3
    n_events = min(max_events, 1 + int(rng.choice(3, p=(0.3, 0.45, 0.25))))
    names = [EVENTS[i].name for i in rng.choice(len(EVENTS), n_events, replace=False)]
    sizes = _sample_scene_sizes(rng, n_events, duration_s)
    # Scene boundaries: random shares of the clip, each at least MIN_SCENE_S long.
    shares = rng.uniform(0.7, 1.3, len(sizes))
    spare = duration_s - MIN_SCENE_S * len(sizes)
    lengths = MIN_SCENE_S + spare * shares / shares.sum()
    bounds = np.concatenate([[0.0], np.cumsum(lengths)])
    scenes, next_name = [], iter(names)
    for scene_index, size in enumerate(sizes):
        start_s, end_s = round(float(bounds[scene_index]), 3), round(float(bounds[scene_index + 1]), 3)
        scene = []
        for _ in range(size):
            spec = EVENTS_BY_NAME[next(next_name)]
            attributes = _sample_attributes(rng, spec, end_s - start_s)
            jitter = rng.uniform(-LOUDNESS_JITTER_DB, LOUDNESS_JITTER_DB)
            gain_db = LOUDNESS_GAIN_DB[attributes.get("loudness", "normal")] + jitter
            scene.append(EventInstance(spec.name, start_s, end_s, attributes, round(float(gain_db), 2)))
        scenes.append(scene)
    return ClipSpec(duration_s, scenes)
