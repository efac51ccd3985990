"""The synthetic corpus's sounds: numpy/scipy synthesisers of every event and the clip mixer.

Each synthesiser takes the clip's random generator, a length in samples and the event's attributes (pitch, speed,
count, ...) and returns float64 samples; `render_clip` levels, shapes and mixes a clip's events over a noise floor.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import signal

from .catalogue import EVENTS_BY_NAME
from .layout import SAMPLING_RATE, ClipSpec, EventInstance

# Each event is normalised to this RMS over its active frames before its loudness gain: -20 dBFS.
EVENT_RMS = 0.1
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


# The synthesiser of each catalogue entry's "synth" name (data/synthetic_corpus/events.json).
SYNTHESISERS: dict[str, Callable[[np.random.Generator, int, dict[str, Any]], np.ndarray]] = {
    name.removeprefix("_synth_"): function for name, function in dict(globals()).items() if name.startswith("_synth_")
}


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
    x = SYNTHESISERS[EVENTS_BY_NAME[event.name].synth](rng, n, event.attributes)
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
