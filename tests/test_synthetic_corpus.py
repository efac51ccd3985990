"""Tests of the synthetic Clotho-like corpus: format, determinism, captions versus events, audio, event F1."""

import csv
import filecmp
import os
import re

import numpy as np
import pytest
import soundfile as sf
from laac.evaluation.event_f1 import event_f1
from laac.data.synthetic_corpus import (
    EVENT_VOCABULARY,
    EVENTS,
    LOUDNESS_GAIN_DB,
    LOUDNESS_JITTER_DB,
    MAX_CAPTION_WORDS,
    MIN_CAPTION_WORDS,
    PEAK_LIMIT,
    SAMPLING_RATE,
    EventInstance,
    as_datasets,
    events_in_caption,
    main,
    read_metadata,
    render_event,
    sample_clip,
    sample_duration,
)

SIZES = {"development": 12, "validation": 4, "evaluation": 4}
CLOTHO_HEADER = ["file_name", "caption_1", "caption_2", "caption_3", "caption_4", "caption_5"]


def _write(out_dir: str, seed: int, workers: int) -> str:
    argv = ["--out", out_dir, "--seed", str(seed), "--workers", str(workers)]
    argv += ["--n-train", "12", "--n-val", "4", "--n-test", "4"]
    assert main(argv) == 0
    return out_dir


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _write(str(tmp_path_factory.mktemp("corpus")), seed=0, workers=2)


def _all_files(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)


def _read_rows(corpus: str, split: str) -> list[list[str]]:
    with open(os.path.join(corpus, f"clotho_captions_{split}.csv"), encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def test_same_seed_gives_byte_identical_files_whatever_the_workers(corpus, tmp_path):
    again = _write(str(tmp_path / "again"), seed=0, workers=1)
    files = _all_files(corpus)
    assert files == _all_files(again)
    assert len([f for f in files if f.endswith(".wav")]) == sum(SIZES.values())
    _, mismatch, errors = filecmp.cmpfiles(corpus, again, files, shallow=False)
    assert mismatch == [] and errors == []


def test_other_seed_gives_other_clips(corpus, tmp_path):
    other = _write(str(tmp_path / "other"), seed=1, workers=1)
    name = "development/synth_development_00000.wav"
    assert not filecmp.cmp(os.path.join(corpus, name), os.path.join(other, name), shallow=False)
    assert _read_rows(corpus, "development")[1:] != _read_rows(other, "development")[1:]


@pytest.mark.parametrize("split", list(SIZES))
def test_csv_has_clotho_layout_and_caption_style(corpus, split):
    with open(os.path.join(corpus, f"clotho_captions_{split}.csv"), "rb") as f:
        raw = f.read()
    assert b"\r" not in raw and raw.endswith(b"\n")  # Clotho's CSV ends lines with "\n"
    rows = _read_rows(corpus, split)
    assert rows[0] == CLOTHO_HEADER
    assert len(rows) == 1 + SIZES[split]
    for row in rows[1:]:
        assert len(row) == 6 and os.path.isfile(os.path.join(corpus, split, row[0]))
        captions = row[1:]
        assert len(set(captions)) == 5
        for caption in captions:
            assert re.fullmatch(r"[a-z]+( [a-z]+)*", caption), caption
            assert MIN_CAPTION_WORDS <= len(caption.split()) <= MAX_CAPTION_WORDS, caption


@pytest.mark.parametrize("split", list(SIZES))
def test_every_caption_names_exactly_the_clip_events(corpus, split):
    records = read_metadata(corpus, split)
    rows = _read_rows(corpus, split)[1:]
    assert [r["file_name"] for r in records] == [row[0] for row in rows]
    for record, row in zip(records, rows):
        assert 1 <= len(record["events"]) <= 3
        assert record["captions"] == row[1:]
        for caption in row[1:]:
            assert events_in_caption(caption) == set(record["events"]), caption


@pytest.mark.parametrize("split", list(SIZES))
def test_wavs_are_16k_mono_pcm16_in_range_and_unclipped(corpus, split):
    for record in read_metadata(corpus, split):
        path = os.path.join(corpus, split, record["file_name"])
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (SAMPLING_RATE, 1, "PCM_16")
        assert 1.0 <= info.duration <= 15.0
        assert info.duration == pytest.approx(record["duration"], abs=1e-3)
        audio, _ = sf.read(path)
        assert 1e-3 < np.abs(audio).max() <= PEAK_LIMIT + 1e-4
        for event in record["event_details"]:
            assert 0.0 <= event["start"] < event["end"] <= record["duration"] + 1e-6


def test_durations_are_weighted_toward_two_to_eight_seconds():
    rng = np.random.default_rng(0)
    durations = np.array([sample_duration(rng) for _ in range(2000)])
    assert durations.min() >= 1.0 and durations.max() <= 15.0
    assert 0.72 < np.mean((durations >= 2.0) & (durations <= 8.0)) < 0.88
    assert np.mean(durations > 8.0) > 0.05 and np.mean(durations < 2.0) > 0.03


def test_events_of_a_clip_are_mixed_within_ten_db_and_relations_fit_the_clip():
    rng = np.random.default_rng(3)
    spread_limit = max(LOUDNESS_GAIN_DB.values()) - min(LOUDNESS_GAIN_DB.values()) + 2 * LOUDNESS_JITTER_DB
    assert spread_limit <= 10.0
    n_sequential = 0
    for _ in range(500):
        clip = sample_clip(rng)
        gains = [event.gain_db for event in clip.events]
        assert max(gains) - min(gains) <= spread_limit
        assert len({event.name for event in clip.events}) == len(clip.events)
        assert clip.scenes[-1][0].end_s == pytest.approx(clip.duration_s, abs=1e-2)
        n_sequential += len(clip.scenes) > 1
    assert 100 < n_sequential < 400  # both "while" and "then" relations are common


def test_vocabulary_words_are_unique_and_every_phrase_names_its_own_event():
    words = [word for keywords in EVENT_VOCABULARY.values() for word in keywords]
    assert len(words) == len(set(words))
    assert len(EVENT_VOCABULARY) == 14
    for spec in EVENTS:
        for template in spec.clauses + spec.nouns:
            assert events_in_caption(template.format(adj="", adv="")) == {spec.name}, template


def test_events_in_caption():
    assert events_in_caption("A Dog is barking, then the clock ticks!") == {"dog", "clock"}
    assert events_in_caption("steam hisses while people are talking") == {"hiss", "speech"}
    assert events_in_caption("a car passes by on a wet road") == set()


def test_event_f1_on_handmade_cases():
    predictions = ["a dog barks while rain falls", "a bell rings", "birds chirp and a siren wails"]
    truth = [{"dog", "rain"}, {"bell", "clock"}, {"bird"}]
    # tp = 2 + 1 + 1, fp = 1 (siren), fn = 1 (clock)
    assert event_f1(predictions, truth) == pytest.approx({"precision": 0.8, "recall": 0.8, "f1": 0.8})
    scores = event_f1(["a dog barks", "silence"], [{"dog", "wind"}, {"engine"}])  # tp 1, fp 0, fn 2
    assert scores == pytest.approx({"precision": 1.0, "recall": 1 / 3, "f1": 0.5})
    assert event_f1(["nothing at all"], [{"dog"}]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    with pytest.raises(ValueError, match="2 predictions for 1 clips"):
        event_f1(["a", "b"], [{"dog"}])


@pytest.mark.parametrize("name, count", [("beep", 3), ("dog", 2), ("beep", 5)])
def test_counted_events_have_that_many_bursts(name, count):
    attributes = {"pitch": "high", "count": count, "loudness": "normal"}
    x = render_event(np.random.default_rng(0), EventInstance(name, 0.0, 3.0, attributes, 0.0))
    frame = SAMPLING_RATE // 100
    energy = np.sqrt(np.mean(x[: len(x) // frame * frame].reshape(-1, frame) ** 2, axis=1))  # (n_frames,)
    active = energy > 0.1 * energy.max()
    onsets = np.sum(active[1:] & ~active[:-1]) + active[0]
    assert onsets == count


def test_loudness_and_envelope_attributes_change_the_level():
    def render(loudness: str, envelope: str, gain_db: float) -> np.ndarray:
        event = EventInstance("hiss", 0.0, 2.0, {"loudness": loudness, "envelope": envelope}, gain_db)
        return render_event(np.random.default_rng(0), event)

    def rms_db(x: np.ndarray) -> float:
        return 20 * np.log10(np.sqrt(np.mean(x**2)))

    loud, quiet = render("loud", "steady", 3.5), render("quiet", "steady", -4.5)
    assert rms_db(loud) - rms_db(quiet) == pytest.approx(8.0, abs=0.5)
    rising, falling = render("normal", "crescendo", 0.0), render("normal", "fade", 0.0)
    quarter = len(rising) // 4
    assert rms_db(rising[-quarter:]) - rms_db(rising[:quarter]) > 6.0
    assert rms_db(falling[:quarter]) - rms_db(falling[-quarter:]) > 6.0


def test_datasets_view(corpus):
    dataset = as_datasets(corpus, "validation")
    assert len(dataset) == SIZES["validation"]
    assert set(dataset.column_names) == set(CLOTHO_HEADER) | {"audio", "events"}
    rows = _read_rows(corpus, "validation")[1:]
    item = dataset[1]
    assert item["file_name"] == rows[1][0] and item["caption_3"] == rows[1][3]
    assert item["audio"]["sampling_rate"] == SAMPLING_RATE
    expected, _ = sf.read(os.path.join(corpus, "validation", rows[1][0]), dtype="float32")
    np.testing.assert_array_equal(np.asarray(item["audio"]["array"], dtype=np.float32), expected)
    assert set(item["events"]) == events_in_caption(item["caption_1"])
    with pytest.raises(ValueError, match="write the split first"):
        as_datasets(corpus, "missing")
