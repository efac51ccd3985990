"""Data loaders and the collator: real Clotho rows, AudioCaps/WavCaps/manifest/datasets formats, crops, errors."""

import csv
import json
import os

import datasets
import numpy as np
import pytest
import soundfile as sf
import torch
from laac.data.loaders import (
    AudioReadError,
    CaptionExamples,
    LaacDataCollator,
    audiocaps_file_stems,
    load_audiocaps,
    load_clotho,
    load_hf_dataset,
    load_manifest,
    load_sources,
    load_wavcaps,
    parse_source_spec,
    read_audio,
    read_clotho_captions,
)

from laac.data.public_data import CLOTHO_CAPTIONS, CLOTHO_CLIPS

from tests.laac_tester import make_audio, tiny_config, tiny_processor
from tests.numerics import assert_log_mel_close

REAL_FILES = sorted(CLOTHO_CLIPS)


@pytest.fixture(scope="module")
def clotho_files(clotho_dir) -> tuple[str, str]:
    """(the captions CSV, the audio folder) of the five real Clotho evaluation clips."""
    return str(clotho_dir / CLOTHO_CAPTIONS), str(clotho_dir / "audio")


@pytest.fixture(scope="module")
def clotho(clotho_files):
    return load_clotho(*clotho_files, missing_audio="skip")


@pytest.fixture(scope="module")
def processor():
    return tiny_processor(tiny_config())


def _write_wav(path, seconds, rate=16000, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, make_audio(seconds, seed, rate), rate, subtype="PCM_16")
    return str(path)


def test_clotho_real_rows(clotho, clotho_files):
    csv_path, audio_dir = clotho_files
    assert sorted(clotho["id"]) == REAL_FILES
    with open(csv_path, encoding="utf-8", newline="") as f:
        rows = {row["file_name"]: row for row in csv.DictReader(f)}
    for clip in clotho:
        assert clip["captions"] == [rows[clip["id"]][f"caption_{i}"] for i in range(1, 6)]
        assert clip["audio"]["path"] == os.path.join(audio_dir, clip["id"]) and clip["source"] == "clotho"
    # training: one example per caption; generation: one per clip with all five as references
    train, evaluation = CaptionExamples(clotho, per_caption=True), CaptionExamples(clotho, per_caption=False)
    assert len(train) == 25 and len(evaluation) == 5
    assert [train[i]["caption"] for i in range(5)] == clotho[0]["captions"]
    assert evaluation[3]["references"] == clotho[3]["captions"]


def test_read_clotho_captions(tmp_path, clotho_files):
    """The one Clotho reader: real rows in file order, empty cells skipped, bad files refused by name."""
    csv_path = clotho_files[0]
    captions = read_clotho_captions(csv_path)
    with open(csv_path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(captions) == [row["file_name"] for row in rows] and len(captions) == 1045
    assert captions[rows[7]["file_name"]] == [rows[7][f"caption_{i}"] for i in range(1, 6)]
    short = tmp_path / "short.csv"
    short.write_text("file_name,caption_1,caption_2,caption_3\na.wav,a dog barks,,rain falls\nb.wav,,,\n")
    assert read_clotho_captions(short) == {"a.wav": ["a dog barks", "rain falls"], "b.wav": []}
    short.write_text("\ufefffile_name,caption_1\na.wav,a dog barks\n", encoding="utf-8")  # saved with a BOM
    assert read_clotho_captions(short) == {"a.wav": ["a dog barks"]}
    (tmp_path / "bad.csv").write_text("name,caption\na.wav,a dog barks\n")
    with pytest.raises(ValueError, match=r"columns \['name', 'caption'\]; expected file_name, caption_1"):
        read_clotho_captions(tmp_path / "bad.csv")
    (tmp_path / "twice.csv").write_text("file_name,caption_1\na.wav,a dog\nb.wav,a cat\na.wav,a cow\n")
    with pytest.raises(ValueError, match=r"twice.csv:4 lists 'a.wav' a second time"):
        read_clotho_captions(tmp_path / "twice.csv")


def test_clotho_missing_audio_names_row_and_path(clotho_files):
    csv_path, audio_dir = clotho_files
    with pytest.raises(AudioReadError, match=r"row 0 \(id 'Santa Motor.wav'\).*nowhere/Santa Motor.wav.*1045 rows"):
        load_clotho(csv_path, "/nowhere")
    with pytest.raises(ValueError, match="missing_audio"):
        load_clotho(csv_path, audio_dir, missing_audio="ignore")


def test_eval_collation_is_the_first_seconds_and_deterministic(clotho, processor):
    examples = list(CaptionExamples(clotho, per_caption=False))[:2]
    collator = LaacDataCollator(processor, max_seconds=4.0, train=False)
    first, second = collator(examples), collator(examples)
    torch.testing.assert_close(first["input_features"], second["input_features"], rtol=0, atol=0)
    full, rate = sf.read(examples[0]["audio"]["path"], dtype="float32")
    assert rate == 44100
    expected = processor([full[: 4 * rate]], text_target=[examples[0]["caption"]], sampling_rate=rate)
    assert_log_mel_close(first["input_features"][:1], expected["input_features"])  # another read and resample path
    assert first["feature_attention_mask"].sum(-1).tolist() == [401, 401]  # 4 s at 16 kHz: 1 + 64000 // 160
    # whole clips when max_seconds is None: a 20.6-s clip keeps all of it
    whole = LaacDataCollator(processor, max_seconds=None, train=False, with_labels=False)(examples[:1])
    assert whole["feature_attention_mask"].sum().item() == 1 + round(len(full) * 16000 / 44100) // 160
    assert "labels" not in whole


def test_train_crops_are_random_windows_of_the_clip(clotho):
    example = CaptionExamples(clotho)[0]
    full, rate = sf.read(example["audio"]["path"], dtype="float32")
    torch.manual_seed(0)
    crops = [read_audio(example, 3.0, random_crop=True)[0] for _ in range(4)]
    starts = set()
    for crop in crops:
        assert crop.shape == (3 * rate,)
        candidates = np.flatnonzero(full[: len(full) - len(crop) + 1] == crop[0])
        matches = [s for s in candidates if np.array_equal(full[s : s + 64], crop[:64])]
        assert matches and np.array_equal(full[matches[0] : matches[0] + len(crop)], crop)
        starts.add(matches[0])
    assert len(starts) > 1, "random crops never moved"
    short = read_audio(example, 60.0, random_crop=True)[0]  # longer than the clip: the whole clip, uncropped
    assert np.array_equal(short, full)


def test_feature_cache_gives_the_same_batches_and_keeps_only_whole_clips(tmp_path, processor):
    paths = [_write_wav(tmp_path / "short.wav", 1.5, seed=1), _write_wav(tmp_path / "long.wav", 6.0, rate=22050)]
    examples = [
        {"row": i, "id": os.path.basename(p), "audio": {"path": p, "bytes": None}, "caption": f"a dog barks {i}"}
        for i, p in enumerate(paths)
    ]
    cached = LaacDataCollator(processor, max_seconds=4.0, train=True, cache_features=True)
    plain = LaacDataCollator(processor, max_seconds=4.0, train=True)
    for _ in range(2):  # the second epoch takes the short clip from the cache
        torch.manual_seed(0)
        with_cache = cached(examples)
        torch.manual_seed(0)
        without = plain(examples)
        assert with_cache.keys() == without.keys()
        for key in without:
            torch.testing.assert_close(with_cache[key], without[key], rtol=0, atol=0)
    assert list(cached.feature_cache) == [(paths[0], "short.wav")]  # the 6-s clip is cropped anew each time
    # silence (the blind baseline) goes through the cache too: one log-mel per length, shared by clips of that length
    other = _write_wav(tmp_path / "other.wav", 1.5, seed=2)
    examples.append({"row": 2, "id": "other.wav", "audio": {"path": other, "bytes": None}, "caption": "rain"})
    silent = LaacDataCollator(processor, max_seconds=4.0, train=False, silence=True, cache_features=True)
    batch = silent(examples[:1])
    reference = processor([np.zeros(24000, dtype=np.float32)], text_target=[examples[0]["caption"]], sampling_rate=16000)
    torch.testing.assert_close(batch["input_features"], reference["input_features"], rtol=0, atol=0)
    silent(examples)
    long_silence = processor.feature_extractor(np.zeros(4 * 22050, dtype=np.float32), sampling_rate=22050)
    frames = int(long_silence["feature_attention_mask"].sum())
    np.testing.assert_array_equal(silent._log_mel(examples[1]), long_silence["input_features"][0, :, :frames])
    assert set(silent.feature_cache) == {
        ("silence", (24000,), 16000), ("silence", (4 * 22050,), 22050),
        ("silence", paths[0], "short.wav"), ("silence", other, "other.wav"),
    }  # fmt: skip
    shared = silent.feature_cache
    assert shared[("silence", paths[0], "short.wav")] is shared[("silence", other, "other.wav")]
    # a cache holding the clips' own log-mels (passed in, as the demo passes its tagger's): silence stays silence
    given = LaacDataCollator(
        processor, max_seconds=4.0, train=False, silence=True, cache_features=True, feature_cache=dict(cached.feature_cache)
    )  # fmt: skip
    torch.testing.assert_close(given(examples[:1])["input_features"], reference["input_features"], rtol=0, atol=0)
    heard = LaacDataCollator(processor, max_seconds=4.0, train=False, cache_features=True, feature_cache=shared)
    assert heard._log_mel(examples[0]) is not shared[("silence", paths[0], "short.wav")]  # and a clip stays a clip


def test_unreadable_file_names_row_and_path(tmp_path, processor):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    example = {"row": 7, "id": "broken", "audio": {"path": str(bad), "bytes": None}, "caption": "a dog barks"}
    with pytest.raises(AudioReadError, match=rf"row 7 \(id 'broken'\) at {bad}"):
        LaacDataCollator(processor, train=True)([example])


def test_audiocaps_groups_rows_and_finds_file_names(tmp_path):
    audio_dir = tmp_path / "audiocaps"
    _write_wav(audio_dir / "Yabc_30.flac", 1.0)  # AudioSet-style prefix
    _write_wav(audio_dir / "sub" / "xyz_0.000_10.000.wav", 1.0, seed=1)  # ytid_start_end, in a subfolder
    rows = [
        {"audiocap_id": "1", "youtube_id": "abc", "start_time": "30", "caption": "A dog barks."},
        {"audiocap_id": "2", "youtube_id": "abc", "start_time": "30", "caption": "A dog is barking"},
        {"audiocap_id": "3", "youtube_id": "xyz", "start_time": "0", "caption": "Wind blows"},
        {"audiocap_id": "4", "youtube_id": "gone", "start_time": "5", "caption": "Rain"},
    ]
    csv_path = tmp_path / "train.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(AudioReadError, match=r"row 2 \(id 'gone_5'\)"):
        load_audiocaps(str(csv_path), str(audio_dir))
    clips = load_audiocaps(str(csv_path), str(audio_dir), missing_audio="skip")
    assert clips["id"] == ["abc_30", "xyz_0"]
    assert clips["captions"] == [["A dog barks.", "A dog is barking"], ["Wind blows"]]
    assert [os.path.basename(a["path"]) for a in clips["audio"]] == ["Yabc_30.flac", "xyz_0.000_10.000.wav"]
    assert audiocaps_file_stems("abc", "30", "1")[:2] == ["abc_30", "Yabc_30"]


def test_wavcaps_with_exclusion_list(tmp_path):
    audio_dir = tmp_path / "fsd"
    for name in ("101.flac", "102.flac", "103.flac"):
        _write_wav(audio_dir / name, 0.5)
    entries = [
        {"id": "101", "file_name": "UK Mello.wav", "caption": "Music plays.", "audio": "wav_path"},
        {"id": "102", "file_name": "x.wav", "caption": "A door creaks.", "audio": "wav_path"},
        {"id": "103", "file_name": "y.wav", "caption": "Birds sing.", "audio": "wav_path"},
    ]
    json_path = tmp_path / "fsd_final.json"
    json_path.write_text(json.dumps({"num_captions_per_audio": 1, "data": entries}))
    blacklist = tmp_path / "blacklist.json"
    blacklist.write_text(json.dumps({"FreeSound": ["102"], "SoundBible": ["101"]}))
    clips = load_wavcaps(str(json_path), str(audio_dir), source="FreeSound", exclude=str(blacklist))
    assert clips["id"] == ["101", "103"] and clips["captions"] == [["Music plays."], ["Birds sing."]]
    assert set(clips["source"]) == {"wavcaps/FreeSound"}
    text_list = tmp_path / "exclude.txt"
    text_list.write_text("101\n103\n")
    assert load_wavcaps(str(json_path), str(audio_dir), exclude=str(text_list))["id"] == ["102"]


def test_manifest_jsonl_and_csv(tmp_path):
    _write_wav(tmp_path / "a.wav", 0.5)
    _write_wav(tmp_path / "b.wav", 0.5, seed=1)
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"audio": "a.wav", "caption": "one"},
                {"audio": "b.wav", "caption": ["two", "three"]},
                {"audio": "a.wav", "caption": "four"},
            ]
        )
    )
    clips = load_manifest(str(jsonl))
    assert clips["id"] == ["a.wav", "b.wav"] and clips["captions"] == [["one", "four"], ["two", "three"]]
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("path,text\na.wav,hello\nmissing.wav,bye\n")
    with pytest.raises(AudioReadError, match="row 1.*missing.wav"):
        load_manifest(str(csv_path), audio_column="path", caption_column="text")


def test_hf_datasets_and_mixing(tmp_path, clotho, processor, clotho_files):
    # decoded arrays (as synthetic_corpus.as_datasets makes) and an Audio column over files; no torchcodec needed
    arrays = datasets.Dataset.from_dict(
        {
            "audio": [{"array": make_audio(1.0, 0).tolist(), "sampling_rate": 16000}],
            "caption_1": ["a bell rings"],
            "caption_2": ["a bell is ringing"],
            "key": ["clip-0"],
        }
    )
    from_arrays = load_hf_dataset(arrays, caption_column=["caption_1", "caption_2"], id_column="key", source="arrays")
    assert from_arrays[0]["captions"] == ["a bell rings", "a bell is ringing"] and from_arrays[0]["id"] == "clip-0"
    samples, rate = read_audio({"audio": from_arrays[0]["audio"]}, None, random_crop=False)
    assert rate == 16000
    np.testing.assert_allclose(samples, make_audio(1.0, 0), atol=2e-6)  # 24-bit FLAC round trip
    folder = tmp_path / "ds"
    files = datasets.Dataset.from_dict({"sound": [_write_wav(tmp_path / "c.wav", 1.0)], "text": ["rain falls"]})
    files.cast_column("sound", datasets.Audio()).save_to_disk(str(folder))
    from_disk = load_hf_dataset(str(folder), audio_column="sound", caption_column="text")
    assert from_disk[0]["audio"]["path"].endswith("c.wav") and from_disk[0]["captions"] == ["rain falls"]

    spec = {"kind": "clotho", "csv": clotho_files[0], "audio_dir": clotho_files[1], "missing_audio": "skip", "limit": 2}
    mixed = datasets.concatenate_datasets([load_sources([spec]), from_arrays])
    assert mixed["source"] == ["clotho", "clotho", "arrays"]
    # one batch with 44.1 kHz files and 16 kHz FLAC bytes
    examples = [CaptionExamples(mixed)[i] for i in (0, 10)]
    batch = LaacDataCollator(processor, max_seconds=2.0, train=False)(examples)
    assert batch["feature_attention_mask"].sum(-1).tolist() == [201, 101]
    assert set(batch) == {"input_features", "feature_attention_mask", "input_ids", "attention_mask", "labels"}


def test_source_specs():
    assert parse_source_spec("clotho:csv=a.csv,audio_dir=d") == {"kind": "clotho", "csv": "a.csv", "audio_dir": "d"}
    assert parse_source_spec('{"kind": "hf", "path": "x"}') == {"kind": "hf", "path": "x"}
    with pytest.raises(ValueError, match="kind 'nope'"):
        parse_source_spec("nope:x=1")


def test_seeded_crops_depend_on_seed_epoch_and_index_only(clotho):
    examples = CaptionExamples(clotho, per_caption=True, seed=3)
    first = read_audio(examples[0], 2.0, random_crop=True)[0]
    torch.manual_seed(123)  # the global generator plays no part
    assert np.array_equal(read_audio(examples[0], 2.0, random_crop=True)[0], first)
    examples.set_epoch(1)
    assert examples[0]["crop_seed"] == (3, 1, 0)
    assert not np.array_equal(read_audio(examples[0], 2.0, random_crop=True)[0], first)
    assert "crop_seed" not in CaptionExamples(clotho)[0]


def test_lengths_from_headers_for_length_grouped_batches(tmp_path):
    paths = [_write_wav(tmp_path / f"{i}.wav", seconds) for i, seconds in enumerate((1.0, 12.0, 3.5))]
    rows = [{"audio": p, "caption": f"caption {i}"} for i, p in enumerate(paths)]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = CaptionExamples(load_manifest(str(manifest)))
    assert examples.lengths() == pytest.approx([1.0, 12.0, 3.5])
    assert examples.lengths(max_seconds=10.0) == pytest.approx([1.0, 10.0, 3.5])
