"""A deterministic generator of a small Clotho-like synthetic captioning corpus.

The embedded demo needs data that a tiny model can learn in minutes on a CPU and that can be scored without any
downloaded metric model. Every clip mixes one to three nameable sound events synthesised with numpy (beeps, a siren,
a dog barking, ...), each with attributes (pitch, loudness, getting louder or fading, speed, count) and relations
("X while Y" for overlapping events, "X then Y" for sequential ones). Every clip gets five lower-case captions that
always name the events present, so `event_f1` can score a caption model by the events its captions mention.

The corpus is written in the Clotho v2.1 layout::

    <out>/clotho_captions_<split>.csv        file_name,caption_1..caption_5
    <out>/<split>/<file_name>.wav            16 kHz mono 16-bit PCM
    <out>/metadata_<split>.jsonl             events, times, attributes and captions of each clip

for the splits `development`, `validation` and `evaluation`. A clip depends only on (seed, split, index), so the
same seed gives byte-identical files whatever the number of worker processes.

Command line::

    python -m laac.data.synthetic_corpus --out DIR --seed 0 --n-train 4000 --n-val 200 --n-test 200
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import logging as stdlib_logging
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soundfile as sf
from scipy import signal
from transformers.utils import logging

from ..audio_laac import read_audio

logger = logging.get_logger(__name__)

SAMPLING_RATE = 16000
MIN_DURATION_S = 1.0
MAX_DURATION_S = 15.0
SPLITS = ("development", "validation", "evaluation")
NUM_CAPTIONS = 5
MIN_CAPTION_WORDS = 8
MAX_CAPTION_WORDS = 20
# Shortest stretch of time one "scene" (a group of overlapping events) may occupy.
MIN_SCENE_S = 0.9
# Each event is normalised to this RMS over its active frames before its loudness gain: -20 dBFS.
EVENT_RMS = 0.1
# Loudness attribute -> gain in dB. With +-1 dB of jitter, events of one clip stay within 10 dB of each other.
LOUDNESS_GAIN_DB = {"normal": 0.0, "loud": 3.5, "quiet": -4.5}
LOUDNESS_JITTER_DB = 1.0
# Gain at the quiet end of a "getting louder" / "fading" ramp.
ENVELOPE_FLOOR_DB = -10.0
PEAK_LIMIT = 0.95
EDGE_FADE_S = 0.005


# ---------------------------------------------------------------------------------------------------------------
# Signal helpers
# ---------------------------------------------------------------------------------------------------------------


def _seconds(n_samples: int) -> float:
    return n_samples / SAMPLING_RATE


def _samples(seconds: float) -> int:
    return round(seconds * SAMPLING_RATE)


@functools.cache
def _butter(kind: str, cutoff: float | tuple[float, float], order: int = 4) -> np.ndarray:
    """Cached second-order-section Butterworth filter (designing it costs more than running it on a clip)."""
    return signal.butter(order, cutoff, btype=kind, fs=SAMPLING_RATE, output="sos")


def _filtered_noise(rng: np.random.Generator, n: int, kind: str, cutoff: float | tuple[float, float]) -> np.ndarray:
    return signal.sosfilt(_butter(kind, cutoff), rng.standard_normal(n))


def _smooth_random_envelope(rng: np.random.Generator, n: int, rate_hz: float, low: float, high: float) -> np.ndarray:
    """A slowly wandering gain between `low` and `high` (random knots at `rate_hz`, linearly interpolated)."""
    n_knots = max(2, int(_seconds(n) * rate_hz) + 2)
    knots = rng.uniform(low, high, n_knots)
    return np.interp(np.linspace(0, n_knots - 1, n), np.arange(n_knots), knots)


def _ramp_edges(x: np.ndarray, fade_s: float) -> np.ndarray:
    """Raised-cosine fade in and out so that no event starts or stops with a click."""
    n_fade = min(_samples(fade_s), len(x) // 2)
    if n_fade > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n_fade))
        x[:n_fade] *= ramp
        x[-n_fade:] *= ramp[::-1]
    return x


def _add_at(out: np.ndarray, x: np.ndarray, start: int) -> None:
    """Add `x` into `out` from sample `start`, cutting what falls past the end."""
    end = min(len(out), start + len(x))
    if end > start:
        out[start:end] += x[: end - start]


def _damped_sine(freq_hz: float, tau_s: float, length_s: float, phase: float = 0.0) -> np.ndarray:
    t = np.arange(_samples(length_s)) / SAMPLING_RATE
    return np.sin(2 * np.pi * freq_hz * t + phase) * np.exp(-t / tau_s)


def _pulse_train(f0_hz: np.ndarray) -> np.ndarray:
    """Glottal-like impulses, one per period of the (time-varying) fundamental `f0_hz`."""
    cycles = np.cumsum(f0_hz) / SAMPLING_RATE
    pulses = np.zeros_like(f0_hz)
    pulses[1:][np.diff(np.floor(cycles)) > 0] = 1.0
    return pulses


def _formant_filter(source: np.ndarray, formants_hz: Sequence[float], bandwidth_hz: float = 120.0) -> np.ndarray:
    """Sum of second-order resonators: a crude vocal tract that turns a pulse train into a vowel."""
    out = np.zeros_like(source)
    for formant in formants_hz:
        b, a = signal.iirpeak(formant, formant / bandwidth_hz, fs=SAMPLING_RATE)  # Q = centre / bandwidth
        out += signal.lfilter(b, a, source)
    return out


def _active_rms(x: np.ndarray) -> float:
    """RMS over the 20 ms frames within 20 dB of the loudest one, so sparse events (ticks, knocks) are levelled by
    how loud they sound, not diluted by their silences."""
    frame = _samples(0.02)
    n_frames = max(1, len(x) // frame)
    power = np.mean(x[: n_frames * frame].reshape(n_frames, -1) ** 2, axis=1)  # (n_frames,)
    active = power[power >= power.max() * 0.01]
    return float(np.sqrt(np.mean(active))) if active.size else 0.0


# ---------------------------------------------------------------------------------------------------------------
# Event synthesisers: (rng, n_samples, attributes) -> waveform of n_samples at an arbitrary level
# ---------------------------------------------------------------------------------------------------------------


def _place_bursts(rng: np.random.Generator, n: int, bursts: Sequence[np.ndarray], period_s: float) -> np.ndarray:
    """Place `bursts` one `period_s` apart, the whole group at a random offset that keeps it inside the segment."""
    out = np.zeros(n)
    span = _samples(period_s) * (len(bursts) - 1) + max(len(b) for b in bursts)
    start = int(rng.integers(0, max(1, n - span)))
    for i, burst in enumerate(bursts):
        _add_at(out, burst, start + i * _samples(period_s))
    return out


def _synth_beep(rng: np.random.Generator, n: int, attributes: dict[str, Any]) -> np.ndarray:
    freq = rng.uniform(1800, 2600) if attributes["pitch"] == "high" else rng.uniform(450, 750)
    on_s = rng.uniform(0.15, 0.28)
    t = np.arange(_samples(on_s)) / SAMPLING_RATE
    tone = _ramp_edges(np.sin(2 * np.pi * freq * t) + 0.15 * np.sin(4 * np.pi * freq * t), 0.005)
    return _place_bursts(rng, n, [tone] * attributes["count"], on_s + rng.uniform(0.1, 0.2))


def _synth_siren(rng: np.random.Generator, n: int, attributes: dict[str, Any]) -> np.ndarray:
    period_s = rng.uniform(0.4, 0.7) if attributes["speed"] == "fast" else rng.uniform(2.0, 3.5)
    t = np.arange(n) / SAMPLING_RATE
    centre, depth = rng.uniform(800, 1000), rng.uniform(250, 400)
    freq = centre + depth * np.sin(2 * np.pi * t / period_s + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(freq) / SAMPLING_RATE
    # Odd harmonics give the square-ish timbre of an electronic siren, unlike a pure whistle.
    return np.sin(phase) + 0.35 * np.sin(3 * phase) + 0.15 * np.sin(5 * phase)


def _synth_bell(rng: np.random.Generator, n: int, attributes: dict[str, Any]) -> np.ndarray:
    fundamental = rng.uniform(1100, 1500) if attributes["pitch"] == "high" else rng.uniform(280, 420)
    # Inharmonic partial ratios and decays of a struck bell: low partials ring longest.
    ratios = (0.5, 1.0, 1.19, 1.5, 2.0, 2.74, 3.0)
    amplitudes = (0.6, 1.0, 0.6, 0.4, 0.5, 0.25, 0.2)
    length_s = min(1.6, _seconds(n))
    strike = sum(
        a * _damped_sine(fundamental * r, 0.9 / r**0.7, length_s, rng.uniform(0, 2 * np.pi))
        for r, a in zip(ratios, amplitudes)
        if fundamental * r < 7500
    )
    return _ramp_edges(_place_bursts(rng, n, [strike] * attributes["count"], rng.uniform(0.6, 0.85)), 0.02)


def _synth_rain(rng: np.random.Generator, n: int, attributes: dict[str, Any]) -> np.ndarray:
    drops = np.zeros(n)
    n_drops = int(rng.uniform(150, 400) * _seconds(n))
    drops[rng.integers(0, n, n_drops)] = rng.uniform(0.2, 1.0, n_drops)
    pattering = signal.sosfilt(_butter("bandpass", (1500.0, 6000.0), 2), drops) * 6.0
    return pattering + 0.5 * _filtered_noise(rng, n, "bandpass", (800.0, 7500.0))


def _synth_wind(rng: np.random.Generator, n: int, attributes: dict[str, Any]) -> np.ndarray:
    rumble = _filtered_noise(rng, n, "lowpass", 500.0)
    howl = _filtered_noise(rng, n, "bandpass", (rng.uniform(250, 350), rng.uniform(450, 600)))
    return (rumble + 0.7 * howl) * _smooth_random_envelope(rng, n, 1.5, 0.2, 1.0)


def _synth_engine(rng: np.random.Generator, n: int, attributes: dict[str, Any]) -> np.ndarray:
    t = np.arange(n) / SAMPLING_RATE
    f0 = rng.uniform(28, 45) * (1 + 0.02 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLING_RATE
    harmonics = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k**0.7 for k in range(1, 13))
    return harmonics + 0.8 * _filtered_noise(rng, n, "lowpass", 400.0) * (1 + 0.5 * np.sin(phase))


def _synth_clock(rng: np.random.Generator, n: int, attributes: dict[str, Any]) -> np.ndarray:
    rate_hz = rng.uniform(3.0, 4.0) if attributes["speed"] == "fast" else rng.uniform(1.0, 1.4)
    tick = _damped_sine(rng.uniform(2800, 3400), 0.008, 0.04)
    tock = _damped_sine(rng.uniform(1700, 2100), 0.008, 0.04)
    out = np.zeros(n)
    for i, start in enumerate(np.arange(rng.uniform(0, 1 / rate_hz), _seconds(n), 1 / rate_hz)):
        _add_at(out, tick if i % 2 == 0 else tock, _samples(start))
    return out


def _synth_bird(rng: np.random.Generator, n: int, attributes: dict[str, Any]) -> np.ndarray:
    out = np.zeros(n)
    position = rng.uniform(0.0, 0.4)
    while position < _seconds(n) - 0.15:
        for _ in range(int(rng.integers(2, 6))):
            length = rng.uniform(0.04, 0.1)
            t = np.arange(_samples(length)) / SAMPLING_RATE
            low, high = rng.uniform(2500, 3500), rng.uniform(4500, 6000)
            freq = np.linspace(low, high, len(t)) if rng.random() < 0.6 else np.linspace(high, low, len(t))
            chirp = np.sin(2 * np.pi * np.cumsum(freq) / SAMPLING_RATE) * np.hanning(len(t))
            _add_at(out, chirp, _samples(position))
            position += length + rng.uniform(0.03, 0.08)
        position += rng.uniform(0.2, 0.7)
    return out


def _synth_knock(rng: np.random.Generator, n: int, attributes: dict[str, Any]) -> np.ndarray:
    period_s = rng.uniform(0.12, 0.18) if attributes["speed"] == "fast" else rng.uniform(0.3, 0.42)
    knocks = []
    for _ in range(attributes["count"]):
        body = _damped_sine(rng.uniform(120, 220), 0.03, 0.12)
        crack = signal.sosfilt(_butter("lowpass", 2500.0), rng.standard_normal(len(body))) * np.exp(
            -np.arange(len(body)) / _samples(0.006)
        )
        knocks.append(body + 2.0 * crack)
    return _place_bursts(rng, n, knocks, period_s)


def _synth_whistle(rng: np.random.Generator, n: int, attributes: dict[str, Any]) -> np.ndarray:
    out = np.zeros(n)
    low, high = (1800, 2800) if attributes["pitch"] == "high" else (800, 1300)
    position = rng.uniform(0.0, 0.2)
    while position < _seconds(n) - 0.3:
        length = min(rng.uniform(0.3, 0.9), _seconds(n) - position)
        t = np.arange(_samples(length)) / SAMPLING_RATE
        # A slide between two notes plus a 5-6 Hz vibrato: what makes it a whistle and not a beep.
        freq = np.linspace(rng.uniform(low, high), rng.uniform(low, high), len(t))
        freq *= 1 + 0.015 * np.sin(2 * np.pi * rng.uniform(5, 6.5) * t)
        note = np.sin(2 * np.pi * np.cumsum(freq) / SAMPLING_RATE)
        note += 0.05 * _filtered_noise(rng, len(t), "bandpass", (low * 0.8, high * 1.2))
        _add_at(out, _ramp_edges(note, 0.03), _samples(position))
        position += length + rng.uniform(0.05, 0.25)
    return out


def _synth_hiss(rng: np.random.Generator, n: int, attributes: dict[str, Any]) -> np.ndarray:
    hiss = _filtered_noise(rng, n, "highpass", rng.uniform(2200, 3000))
    hiss += 0.6 * _filtered_noise(rng, n, "bandpass", (5000.0, 7000.0))
    return hiss * _smooth_random_envelope(rng, n, 2.0, 0.8, 1.0)


def _synth_drum(rng: np.random.Generator, n: int, attributes: dict[str, Any]) -> np.ndarray:
    rate_hz = rng.uniform(4.0, 6.0) if attributes["speed"] == "fast" else rng.uniform(1.5, 2.5)
    t = np.arange(_samples(0.25)) / SAMPLING_RATE
    kick_freq = 50 + 110 * np.exp(-t / 0.03)  # the pitch drop of a struck membrane
    kick = np.sin(2 * np.pi * np.cumsum(kick_freq) / SAMPLING_RATE) * np.exp(-t / 0.08)
    snare = _filtered_noise(rng, len(t), "bandpass", (1000.0, 5000.0)) * np.exp(-t / 0.04) * 2.0
    snare += 0.5 * _damped_sine(200.0, 0.04, 0.25)
    out = np.zeros(n)
    for i, start in enumerate(np.arange(rng.uniform(0, 0.2), _seconds(n) - 0.05, 1 / rate_hz)):
        _add_at(out, kick if i % 2 == 0 else snare, _samples(start))
    return out


# Vowel formants (F1, F2, F3) in Hz; syllables cycle through them to sound like speech without being any.
_VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (530, 1840, 2480), (570, 840, 2410), (300, 870, 2240))


def _one_talker(rng: np.random.Generator, n: int) -> np.ndarray:
    out = np.zeros(n)
    base_f0 = rng.uniform(100, 220)
    position = rng.uniform(0.0, 0.2)
    while position < _seconds(n) - 0.1:
        length = min(rng.uniform(0.12, 0.3), _seconds(n) - position)
        m = _samples(length)
        f0 = base_f0 * np.linspace(rng.uniform(0.9, 1.15), rng.uniform(0.85, 1.1), m)
        vowel = _formant_filter(_pulse_train(f0), _VOWELS[int(rng.integers(len(_VOWELS)))])
        _add_at(out, vowel * np.hanning(m), _samples(position))
        # Short gaps between syllables, now and then a longer pause between words.
        position += length + (rng.uniform(0.02, 0.06) if rng.random() < 0.75 else rng.uniform(0.15, 0.4))
    return out


def _synth_speech(rng: np.random.Generator, n: int, attributes: dict[str, Any]) -> np.ndarray:
    return sum(_one_talker(rng, n) for _ in range(int(rng.integers(2, 4))))


def _synth_dog(rng: np.random.Generator, n: int, attributes: dict[str, Any]) -> np.ndarray:
    barks = []
    for _ in range(attributes["count"]):
        m = _samples(rng.uniform(0.12, 0.22))
        start_f0 = rng.uniform(550, 750) if attributes["pitch"] == "high" else rng.uniform(250, 360)
        f0 = start_f0 * np.linspace(1.0, 0.7, m)
        formants = (rng.uniform(900, 1300), rng.uniform(1800, 2600))
        voiced = _formant_filter(_pulse_train(f0), formants, bandwidth_hz=250.0)
        rough = _filtered_noise(rng, m, "bandpass", (600.0, 3500.0)) * 0.3
        envelope = np.minimum(1.0, np.arange(m) / _samples(0.01)) * np.exp(-np.arange(m) / (0.4 * m))
        barks.append((voiced / (np.abs(voiced).max() + 1e-9) + rough) * envelope)
    return _place_bursts(rng, n, barks, rng.uniform(0.3, 0.42))


# ---------------------------------------------------------------------------------------------------------------
# The event vocabulary: synthesiser, supported attributes and caption phrases of every event
# ---------------------------------------------------------------------------------------------------------------


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
    synth: Callable[[np.random.Generator, int, dict[str, Any]], np.ndarray]
    # Longest gap between bursts plus one burst, in seconds: bounds how many counted bursts fit a segment.
    burst_period_s: float = 0.0
    max_count: int = 1
    # Event-specific words that replace the generic attribute words, e.g. rain is "heavy", not "loud".
    attribute_words: dict[tuple[str, str], dict[str, tuple[str, ...]]] = field(default_factory=dict)


EVENTS: tuple[EventSpec, ...] = (
    EventSpec(
        name="beep",
        keywords=("beep", "beeps", "beeping", "beeper", "bleep", "bleeps"),
        clauses=(
            "a {adj}beep sounds{adv}",
            "a device beeps{adv}",
            "a {adj}beep goes off{adv}",
            "a machine is beeping{adv}",
            "an electronic {adj}beep rings out{adv}",
        ),
        nouns=(
            "a {adj}beep{adv}",
            "{adj}beeping{adv}",
            "the {adj}beeping of a machine{adv}",
            "an electronic {adj}beep{adv}",
        ),
        attributes=("pitch", "count", "loudness"),
        synth=_synth_beep,
        burst_period_s=0.5,
        max_count=5,
    ),
    EventSpec(
        name="siren",
        keywords=("siren", "sirens"),
        clauses=(
            "a {adj}siren wails{adv}",
            "a {adj}siren is blaring{adv}",
            "an {adj}emergency siren sounds{adv}",
            "a {adj}police siren goes off{adv}",
        ),
        nouns=("a {adj}siren{adv}", "the wail of a {adj}siren{adv}", "a {adj}siren wailing{adv}"),
        attributes=("speed", "envelope", "loudness"),
        synth=_synth_siren,
    ),
    EventSpec(
        name="bell",
        keywords=("bell", "bells", "chime", "chimes", "chiming"),
        clauses=(
            "a {adj}bell rings{adv}",
            "a {adj}bell is ringing{adv}",
            "a {adj}bell chimes{adv}",
            "someone rings a {adj}bell{adv}",
        ),
        nouns=("a {adj}bell ringing{adv}", "the {adj}chime of a bell{adv}", "the ringing of a {adj}bell{adv}"),
        attributes=("pitch", "count", "loudness"),
        synth=_synth_bell,
        burst_period_s=0.85,
        max_count=3,
    ),
    EventSpec(
        name="rain",
        keywords=("rain", "raining", "rainfall", "raindrops", "drizzle"),
        clauses=(
            "{adj}rain falls{adv}",
            "{adj}rain is falling{adv}",
            "it is raining{adv}",
            "{adj}rain pours down{adv}",
            "{adj}raindrops patter{adv}",
        ),
        nouns=("{adj}rain{adv}", "{adj}rainfall{adv}", "{adj}raindrops{adv}", "{adj}rain falling{adv}"),
        attributes=("loudness", "envelope"),
        synth=_synth_rain,
        attribute_words={
            ("loudness", "loud"): {"adj": ("heavy ",), "adv": (" heavily", " hard")},
            ("loudness", "quiet"): {"adj": ("light ", "gentle "), "adv": (" lightly", " gently")},
        },
    ),
    EventSpec(
        name="wind",
        keywords=("wind", "winds", "windy", "gust", "gusts", "breeze"),
        clauses=(
            "{adj}wind blows{adv}",
            "the {adj}wind is blowing{adv}",
            "{adj}wind gusts{adv}",
            "a {adj}breeze blows{adv}",
        ),
        nouns=("{adj}wind{adv}", "the {adj}wind blowing{adv}", "{adj}gusts of wind{adv}", "a {adj}breeze{adv}"),
        attributes=("loudness", "envelope"),
        synth=_synth_wind,
        attribute_words={
            ("loudness", "loud"): {"adj": ("strong ",), "adv": (" strongly", " hard")},
            ("loudness", "quiet"): {"adj": ("gentle ", "light "), "adv": (" gently", " softly")},
        },
    ),
    EventSpec(
        name="engine",
        keywords=("engine", "engines", "motor", "motors"),
        clauses=(
            "an {adj}engine hums{adv}",
            "a {adj}motor is running{adv}",
            "an {adj}engine idles{adv}",
            "a {adj}motor drones{adv}",
            "an {adj}engine is humming{adv}",
        ),
        nouns=(
            "an {adj}engine humming{adv}",
            "the hum of an {adj}engine{adv}",
            "a {adj}running motor{adv}",
            "the drone of a {adj}motor{adv}",
        ),
        attributes=("loudness", "envelope"),
        synth=_synth_engine,
    ),
    EventSpec(
        name="clock",
        keywords=("clock", "clocks", "tick", "ticks", "ticking", "tock"),
        clauses=(
            "a {adj}clock ticks{adv}",
            "a {adj}clock is ticking{adv}",
            "a {adj}clock ticks away{adv}",
            "the {adj}clock keeps ticking{adv}",
        ),
        nouns=("a {adj}clock ticking{adv}", "the {adj}ticking of a clock{adv}", "{adj}clock ticks{adv}"),
        attributes=("speed", "loudness"),
        synth=_synth_clock,
    ),
    EventSpec(
        name="bird",
        keywords=("bird", "birds", "chirp", "chirps", "chirping", "tweet", "tweeting", "songbird"),
        clauses=(
            "a {adj}bird chirps{adv}",
            "{adj}birds are chirping{adv}",
            "a {adj}bird is tweeting{adv}",
            "{adj}birds chirp{adv}",
            "a {adj}bird sings{adv}",
        ),
        nouns=(
            "{adj}birds chirping{adv}",
            "the {adj}chirping of birds{adv}",
            "{adj}bird calls{adv}",
            "a {adj}bird singing{adv}",
        ),
        attributes=("loudness", "envelope"),
        synth=_synth_bird,
    ),
    EventSpec(
        name="knock",
        keywords=("knock", "knocks", "knocking", "knocked"),
        clauses=(
            "someone knocks on a door{adv}",
            "someone is knocking{adv}",
            "a person knocks on the door{adv}",
            "{adj}knocking comes from a door{adv}",
        ),
        nouns=("{adj}knocking on a door{adv}", "a {adj}knock at the door{adv}", "someone knocking{adv}"),
        attributes=("count", "speed", "loudness"),
        synth=_synth_knock,
        burst_period_s=0.45,
        max_count=5,
    ),
    EventSpec(
        name="whistle",
        keywords=("whistle", "whistles", "whistling", "whistled"),
        clauses=(
            "someone whistles{adv}",
            "a person is whistling{adv}",
            "a {adj}whistle blows{adv}",
            "a man whistles a {adj}tune{adv}",
        ),
        nouns=(
            "a {adj}whistle{adv}",
            "someone whistling{adv}",
            "{adj}whistling{adv}",
            "the {adj}whistling of a person{adv}",
        ),
        attributes=("pitch", "loudness"),
        synth=_synth_whistle,
    ),
    EventSpec(
        name="hiss",
        keywords=("hiss", "hisses", "hissing", "steam"),
        clauses=(
            "{adj}steam hisses{adv}",
            "something hisses{adv}",
            "a {adj}hiss comes from a pipe{adv}",
            "steam is hissing{adv}",
            "a valve releases {adj}steam{adv}",
        ),
        nouns=("a {adj}hiss{adv}", "{adj}hissing steam{adv}", "the {adj}hiss of steam{adv}", "{adj}hissing{adv}"),
        attributes=("loudness", "envelope"),
        synth=_synth_hiss,
    ),
    EventSpec(
        name="drum",
        keywords=("drum", "drums", "drumming", "drummer"),
        clauses=(
            "a {adj}drum is beaten{adv}",
            "someone plays the {adj}drums{adv}",
            "a drummer plays{adv}",
            "{adj}drums are being played{adv}",
            "a {adj}drum beats{adv}",
        ),
        nouns=("{adj}drumming{adv}", "a {adj}drum beat{adv}", "the beat of a {adj}drum{adv}", "{adj}drums{adv}"),
        attributes=("speed", "loudness", "envelope"),
        synth=_synth_drum,
    ),
    EventSpec(
        name="speech",
        keywords=(
            "talk",
            "talks",
            "talking",
            "speak",
            "speaks",
            "speaking",
            "speech",
            "chatter",
            "chattering",
            "babble",
            "babbling",
            "voices",
            "conversation",
            "converse",
            "murmur",
            "murmuring",
        ),
        clauses=(
            "people are talking{adv}",
            "{adj}voices chatter{adv}",
            "a crowd is talking{adv}",
            "several people speak{adv}",
            "people chatter{adv}",
            "a group of people converse{adv}",
        ),
        nouns=(
            "{adj}voices{adv}",
            "people talking{adv}",
            "the {adj}chatter of a crowd{adv}",
            "a {adj}conversation{adv}",
            "{adj}murmuring voices{adv}",
        ),
        attributes=("loudness", "envelope"),
        synth=_synth_speech,
    ),
    EventSpec(
        name="dog",
        keywords=("dog", "dogs", "bark", "barks", "barking", "barked", "woof"),
        clauses=(
            "a {adj}dog barks{adv}",
            "a {adj}dog is barking{adv}",
            "a {adj}dog barks at something{adv}",
            "a {adj}dog starts barking{adv}",
        ),
        nouns=("a {adj}dog barking{adv}", "the barking of a {adj}dog{adv}", "{adj}dog barks{adv}"),
        attributes=("pitch", "count", "loudness"),
        synth=_synth_dog,
        burst_period_s=0.65,
        max_count=4,
        attribute_words={
            ("pitch", "high"): {"adj": ("small ", "high pitched ")},
            ("pitch", "low"): {"adj": ("big ", "large ")},
        },
    ),
)
EVENTS_BY_NAME: dict[str, EventSpec] = {spec.name: spec for spec in EVENTS}
# Event name -> caption words that identify it.
EVENT_VOCABULARY: dict[str, list[str]] = {spec.name: list(spec.keywords) for spec in EVENTS}
_KEYWORD_TO_EVENT: dict[str, str] = {word: name for name, words in EVENT_VOCABULARY.items() for word in words}

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
# Attribute values that are always set (synthesis needs them) versus defaults that are never mentioned.
_ATTRIBUTE_VALUES = {
    "pitch": (("high", "low"), (0.5, 0.5)),
    "speed": (("fast", "slow"), (0.5, 0.5)),
    "loudness": (("normal", "loud", "quiet"), (0.6, 0.2, 0.2)),
    "envelope": (("steady", "crescendo", "fade"), (0.6, 0.2, 0.2)),
}
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


def events_in_caption(caption: str) -> set[str]:
    """Names of the events whose `EVENT_VOCABULARY` words occur in `caption` (case and punctuation ignored)."""
    words = re.findall(r"[a-z]+", caption.lower())
    return {_KEYWORD_TO_EVENT[word] for word in words if word in _KEYWORD_TO_EVENT}


def event_f1(predictions: list[str], clips_events: list[set[str]]) -> dict[str, float]:
    """Micro-averaged precision, recall and F1 of the events named by predicted captions against the true events.

    Counts are summed over clips: a true positive is an event of the clip that its caption names, a false positive
    an event the caption names that is not in the clip, a false negative a clip event the caption misses.
    """
    if len(predictions) != len(clips_events):
        raise ValueError(
            f"got {len(predictions)} predictions for {len(clips_events)} clips; pass one caption per clip"
        )
    true_pos = false_pos = false_neg = 0
    for caption, truth in zip(predictions, clips_events):
        predicted, truth = events_in_caption(caption), set(truth)
        true_pos += len(predicted & truth)
        false_pos += len(predicted - truth)
        false_neg += len(truth - predicted)
    from ..evaluation.metrics import precision_recall_f1  # lazy: corpus generation itself needs no torch

    return precision_recall_f1(true_pos, false_pos, false_neg)


# ---------------------------------------------------------------------------------------------------------------
# Clip layout: duration, events, scenes and attributes
# ---------------------------------------------------------------------------------------------------------------


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
            values, probabilities = _ATTRIBUTE_VALUES[kind]
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


# ---------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------


def _envelope_gain(n: int, envelope: str) -> np.ndarray | float:
    if envelope == "steady":
        return 1.0
    ramp_db = np.linspace(ENVELOPE_FLOOR_DB, 0.0, n)
    if envelope == "fade":
        ramp_db = ramp_db[::-1]
    return 10 ** (ramp_db / 20)


def render_event(rng: np.random.Generator, event: EventInstance) -> np.ndarray:
    """Synthesise one event over its segment, levelled to EVENT_RMS times its gain."""
    n = _samples(event.end_s - event.start_s)
    x = EVENTS_BY_NAME[event.name].synth(rng, n, event.attributes)
    x = _ramp_edges(x * _envelope_gain(n, event.attributes.get("envelope", "steady")), 0.02)
    level = _active_rms(x)
    return x * (EVENT_RMS * 10 ** (event.gain_db / 20) / level) if level > 0 else x


def render_clip(rng: np.random.Generator, clip: ClipSpec) -> np.ndarray:
    """Mix a clip's events over a light noise floor; float32 with peak at most PEAK_LIMIT."""
    n = _samples(clip.duration_s)
    mix = np.zeros(n)
    for event in clip.events:
        _add_at(mix, render_event(rng, event), _samples(event.start_s))
    # Light pinkish noise floor 25-35 dB under the events, as in any real recording.
    white = rng.standard_normal(n)
    floor = signal.sosfilt(_butter("lowpass", 3000.0), white) + 0.3 * white
    floor_db = rng.uniform(-35.0, -25.0)
    mix += floor * (EVENT_RMS * 10 ** (floor_db / 20) / (np.std(floor) + 1e-12))
    mix *= 10 ** (rng.uniform(-6.0, 0.0) / 20)
    peak = np.abs(mix).max()
    if peak > PEAK_LIMIT:
        mix *= PEAK_LIMIT / peak
    return _ramp_edges(mix, EDGE_FADE_S).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Captions
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


# ---------------------------------------------------------------------------------------------------------------
# Corpus writing
# ---------------------------------------------------------------------------------------------------------------


def clip_file_name(split: str, index: int) -> str:
    return f"synth_{split}_{index:05d}.wav"


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one clip: a function of (seed, split, index) only, so worker scheduling cannot matter."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), index]))


def generate_clip(seed: int, split: str, index: int) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Audio (float32, 16 kHz), five captions and the metadata record of clip `index` of `split`."""
    rng = clip_rng(seed, split, index)
    clip = sample_clip(rng)
    captions = make_captions(rng, clip)
    audio = render_clip(rng, clip)
    metadata = {
        "file_name": clip_file_name(split, index),
        "duration": clip.duration_s,
        "events": sorted({event.name for event in clip.events}),
        "scenes": [[event.name for event in scene] for scene in clip.scenes],
        "event_details": [
            {"event": e.name, "start": e.start_s, "end": e.end_s, "attributes": e.attributes, "gain_db": e.gain_db}
            for e in clip.events
        ],
        "captions": captions,
    }
    return audio, captions, metadata


def _write_clip(job: tuple[str, int, str, int]) -> dict[str, Any]:
    out_dir, seed, split, index = job
    audio, _, metadata = generate_clip(seed, split, index)
    sf.write(os.path.join(out_dir, split, metadata["file_name"]), audio, SAMPLING_RATE, subtype="PCM_16")
    return metadata


def write_split(out_dir: str, split: str, n_clips: int, seed: int = 0, num_workers: int = 2) -> float:
    """Write `n_clips` clips of `split` in the Clotho layout under `out_dir`; returns the seconds it took."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    if n_clips < 0:
        raise ValueError(f"n_clips must be >= 0, got {n_clips}")
    start = time.perf_counter()
    os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    jobs = [(out_dir, seed, split, index) for index in range(n_clips)]
    if num_workers > 1 and n_clips > 1:
        with multiprocessing.get_context("fork").Pool(num_workers) as pool:
            records = list(pool.imap(_write_clip, jobs, chunksize=16))
    else:
        records = [_write_clip(job) for job in jobs]
    # Clotho's CSV: comma separated, minimal quoting, "\n" line ends.
    with open(os.path.join(out_dir, f"clotho_captions_{split}.csv"), "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["file_name"] + [f"caption_{i}" for i in range(1, NUM_CAPTIONS + 1)])
        writer.writerows([record["file_name"], *record["captions"]] for record in records)
    with open(os.path.join(out_dir, f"metadata_{split}.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        f.writelines(json.dumps(record, sort_keys=True) + "\n" for record in records)
    return time.perf_counter() - start


def write_corpus(out_dir: str, sizes: dict[str, int], seed: int = 0, num_workers: int = 2) -> dict[str, float]:
    """Write every split in `sizes` ({"development": 4000, ...}); returns seconds per split."""
    return {split: write_split(out_dir, split, n, seed, num_workers) for split, n in sizes.items()}


def read_metadata(out_dir: str, split: str) -> list[dict[str, Any]]:
    """The metadata records of a split, in CSV order."""
    with open(os.path.join(out_dir, f"metadata_{split}.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def as_datasets(out_dir: str, split: str) -> Any:
    """A `datasets.Dataset` view of a written split.

    Columns: file_name, audio ({"array": float32 samples, "sampling_rate": 16000}, decoded here with audio_laac
    rather than datasets' Audio feature, which would need torchcodec), caption_1..caption_5 and events (from the
    metadata file). The audio is held in memory: about 4 bytes per sample, ~350 MB for 4,000 clips of 5.5 s.
    """
    import datasets

    from .loaders import read_clotho_captions

    csv_path = os.path.join(out_dir, f"clotho_captions_{split}.csv")
    if not os.path.exists(csv_path):
        raise ValueError(f"no {csv_path}; write the split first with write_split(out_dir, {split!r}, n)")
    clips = read_clotho_captions(csv_path)
    events = {record["file_name"]: record["events"] for record in read_metadata(out_dir, split)}
    caption_columns = [f"caption_{i}" for i in range(1, NUM_CAPTIONS + 1)]
    columns: dict[str, list[Any]] = {"file_name": [], "audio": [], "events": []}
    columns.update({name: [] for name in caption_columns})
    for file_name, captions in clips.items():
        array, sampling_rate = read_audio(os.path.join(out_dir, split, file_name), mono=True)
        columns["file_name"].append(file_name)
        columns["audio"].append({"array": array, "sampling_rate": sampling_rate})
        columns["events"].append(events[file_name])
        for name, caption in zip(caption_columns, captions + [""] * (NUM_CAPTIONS - len(captions))):
            columns[name].append(caption)
    features = datasets.Features(
        {
            "file_name": datasets.Value("string"),
            "audio": {"array": datasets.List(datasets.Value("float32")), "sampling_rate": datasets.Value("int32")},
            "events": datasets.List(datasets.Value("string")),
            **{name: datasets.Value("string") for name in caption_columns},
        }
    )
    return datasets.Dataset.from_dict(columns, features=features)


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Write a Clotho-format synthetic captioning corpus.")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=4000, help="clips in the development split")
    parser.add_argument("--n-val", type=int, default=200, help="clips in the validation split")
    parser.add_argument("--n-test", type=int, default=200, help="clips in the evaluation split")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (output does not depend on it)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    # Library modules only log; the command line shows INFO messages on stderr.
    stdlib_logging.basicConfig(format="%(message)s", level=stdlib_logging.INFO)
    sizes = dict(zip(SPLITS, (args.n_train, args.n_val, args.n_test)))
    seconds = write_corpus(args.out, sizes, seed=args.seed, num_workers=args.workers)
    for split, n in sizes.items():
        logger.info(f"{split}: {n} clips in {seconds[split]:.1f} s")
    logger.info(f"wrote {sum(sizes.values())} clips to {args.out} in {sum(seconds.values()):.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
