"""LaacProcessor: prompt expansion, labels, caption normalisation and the bad-input errors."""

import csv
import json

import numpy as np
import pytest
import torch
from laac.configuration_laac import PROMPT_I
from laac.processing_laac import LaacProcessor, fense_normalize_caption, normalize_caption_target

from tests.laac_tester import make_audio, tiny_config, tiny_processor, tiny_tokenizer


@pytest.fixture(scope="module")
def processor():
    return tiny_processor(tiny_config())


def test_prompt_i_expanded_with_counted_audio_tokens(processor):
    batch = processor([make_audio(10.0)], sampling_rate=16000)
    ids = batch["input_ids"][0].tolist()
    assert ids.count(processor.audio_token_id) == 14  # 10 s -> 248 CED tokens -> 14 windows
    text = processor.tokenizer.decode(ids)
    assert text.startswith("<s> describe the detail of this audio :") and text.rstrip().endswith("detailed :")


def test_labels_cover_caption_and_eos_only(processor):
    batch = processor([make_audio(2.0)], text_target=["A Dog, barks!"], sampling_rate=16000)
    labels = batch["labels"][0]
    caption_ids = labels[labels != -100].tolist()
    assert processor.tokenizer.decode(caption_ids[:-1]) == "a dog barks"
    assert caption_ids[-1] == processor.tokenizer.eos_token_id
    # the caption continues the prompt: input_ids end with the labelled tokens
    assert batch["input_ids"][0, -len(caption_ids):].tolist() == caption_ids


def test_padding_is_the_tokenizers_and_labels_mark_only_captions(processor):
    """Rows of different lengths: the tokenizer pads on the left with its pad token; labels are -100 up to each
    row's caption, whose ids (and EOS) end the row."""
    captions = ["a dog barks", "rain falls while a dog barks"]
    batch = processor([make_audio(1.0), make_audio(6.0, 1)], text_target=captions, sampling_rate=16000)
    tokenizer, mask = processor.tokenizer, batch["attention_mask"]
    assert (batch["input_ids"][mask == 0] == tokenizer.pad_token_id).all() and mask[0, 0] == 0 and mask[:, -1].all()
    for row, caption in enumerate(captions):
        alone = processor([make_audio([1.0, 6.0][row], row)], text_target=[caption], sampling_rate=16000)
        length = int(mask[row].sum())
        assert batch["input_ids"][row, -length:].tolist() == alone["input_ids"][0].tolist()
        assert batch["labels"][row, -length:].tolist() == alone["labels"][0].tolist()
        assert (batch["labels"][row, :-length] == -100).all()
        labelled = alone["labels"][0][alone["labels"][0] != -100].tolist()
        assert tokenizer.decode(labelled[:-1]) == caption and labelled[-1] == tokenizer.eos_token_id


def test_a_tokenizer_without_pad_token_pads_with_eos():
    tokenizer = tiny_tokenizer()
    tokenizer.pad_token = None
    processor = LaacProcessor.from_config(tiny_config(), tokenizer)
    batch = processor([make_audio(1.0), make_audio(3.0, 1)], sampling_rate=16000)
    assert tokenizer.pad_token == tokenizer.eos_token
    assert (batch["input_ids"][batch["attention_mask"] == 0] == tokenizer.eos_token_id).all()


def test_caption_normalization_is_a_saved_choice(processor, tmp_path):
    """Targets are the original code's by default (`caption_normalization="original"`, in processor_config.json);
    None keeps captions as given; `normalize=` overrides it for one call; other values are refused."""
    clip, caption = [make_audio(2.0)], ["Rain, on a Roof!"]

    def target(proc, **kwargs):
        labels = proc(clip, text_target=caption, sampling_rate=16000, **kwargs)["labels"][0]
        return proc.tokenizer.decode(labels[labels != -100][:-1])

    assert processor.caption_normalization == "original" and target(processor) == "rain on a roof"
    as_given = LaacProcessor.from_config(tiny_config(), tiny_tokenizer())
    as_given.caption_normalization = None
    assert target(as_given) == target(processor, normalize=False) != "rain on a roof"
    assert target(as_given, normalize=True) == "rain on a roof"
    as_given.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "processor_config.json").read_text())["caption_normalization"] is None
    assert LaacProcessor.from_pretrained(tmp_path).caption_normalization is None
    with pytest.raises(ValueError, match="caption_normalization='lower' is not one of"):
        LaacProcessor(processor.feature_extractor, processor.tokenizer, caption_normalization="lower")


def test_fense_normalize_caption():
    """FENSE's detector cleaning: lower-case, punctuation deleted, single spaces."""
    assert fense_normalize_caption("Rain-drops fall, on a tin roof!") == "raindrops fall on a tin roof"
    assert fense_normalize_caption("a dog's bark") == "a dogs bark"
    assert fense_normalize_caption("  A Dog barks; then, a CAR passes-by.  ") == "a dog barks then a car passesby"
    assert fense_normalize_caption("someone's footsteps") == "someones footsteps"
    assert fense_normalize_caption("2 Cars pass at 10:30, then 3.") == "2 cars pass at 1030 then 3"
    assert fense_normalize_caption("  birds \t chirp\n\n loudly   ") == "birds chirp loudly"
    assert fense_normalize_caption("snake_case stays") == "snake_case stays"  # `_` is a word character, as in FENSE
    assert fense_normalize_caption("?!...") == ""


def test_normalize_caption_target():
    """The original code's targets: marks become spaces; hyphens, apostrophes and the final space stay."""
    assert normalize_caption_target("Rain-drops fall, on a tin roof!") == "rain-drops fall on a tin roof "
    assert normalize_caption_target("a dog's bark") == "a dog's bark"
    assert normalize_caption_target("A Dog barks ; then , a CAR passes-by .") == "a dog barks then a car passes-by "
    # each pair of spaces becomes one space once, as in the original: a run of marks can leave two
    assert normalize_caption_target('He said "hi" (twice) | a * b') == "he said hi  twice  a  b"
    assert normalize_caption_target("2 Cars pass at 10:30, then 3.") == "2 cars pass at 10 30 then 3 "


REAL_CAPTIONS = {  # Clotho evaluation captions -> (training target, FENSE detector input)
    ("Radio Garble.wav", 2): (
        "communication with a walkie-talkie with a lot of static ",
        "communication with a walkietalkie with a lot of static",
    ),
    ("Kauai Sunrise.wav", 5): (
        "birds chirping a rooster crowing and wind blowing in the background ",
        "birds chirping a rooster crowing and wind blowing in the background",
    ),
    ("Blackbird 252.wav", 4): (
        "the bird chirped an interesting tune with two chirps and a long sequence of vocalizations ",
        "the bird chirped an interesting tune with two chirps and a long sequence of vocalizations",
    ),
    ("Blade Big.wav", 5): (
        "the metallic clang of swords and knives striking one another",
        "the metallic clang of swords and knives striking one another",
    ),
}


def test_target_and_detector_cleaning_of_real_clotho_captions(clotho_csv):
    with open(clotho_csv, newline="", encoding="utf-8") as f:
        rows = {row["file_name"]: row for row in csv.DictReader(f)}
    for (clip, index), (target, detector_input) in REAL_CAPTIONS.items():
        caption = rows[clip][f"caption_{index}"]
        assert normalize_caption_target(caption) == target, caption
        assert fense_normalize_caption(caption) == detector_input, caption


def test_word_level_tokenizer_keeps_joint_ids(processor):
    """The demo's word-level tokenizer has no "▁" prefix: its prompt and caption ids stay the joint ones."""
    assert processor.prompt_tokenization == "joint"
    batch = processor([make_audio(2.0)], text_target=["A dog barks."], sampling_rate=16000)
    n_audio = int((batch["input_ids"] == processor.audio_token_id).sum())
    prompt = ["<s>", "describe", "the", "detail", "of", "this", "audio", ":"] + ["<|audio|>"] * n_audio
    prompt += ["-", "-", "-", "detailed", ":"]
    tokens = processor.tokenizer.convert_ids_to_tokens(batch["input_ids"][0].tolist())
    assert n_audio == 2 and tokens == prompt + ["a", "dog", "barks", "</s>"]
    generation = processor([make_audio(2.0)], sampling_rate=16000)["input_ids"][0].tolist()
    assert processor.tokenizer.convert_ids_to_tokens(generation) == prompt


def test_prompt_tokenization_is_checked(processor):
    with pytest.raises(ValueError, match="prompt_tokenization='split' is not one of"):
        LaacProcessor(processor.feature_extractor, processor.tokenizer, prompt_tokenization="split")


def test_short_and_long_clips(processor):
    batch = processor([make_audio(0.01), make_audio(31.0, 1)], sampling_rate=16000)
    counts = (batch["input_ids"] == processor.audio_token_id).sum(-1).tolist()
    assert counts[0] >= 1  # a 10-ms clip is padded with silence to one window
    assert counts[1] == processor.num_audio_tokens(1 + 31 * 16000 // 160)


def test_other_rates_and_channels(processor):
    clip = make_audio(2.0, rate=44100)
    stereo = np.stack([clip, clip])
    a = processor([clip], sampling_rate=44100)["input_features"]
    b = processor([stereo], sampling_rate=44100)["input_features"]
    torch.testing.assert_close(a, b)
    pcm16 = (clip * 32767).astype(np.int16)
    c = processor([pcm16], sampling_rate=44100)["input_features"]
    torch.testing.assert_close(a, c, atol=0.05, rtol=0)


@pytest.mark.parametrize(
    "audio,kwargs,message",
    [
        (np.zeros(0, dtype=np.float32), {}, "empty"),
        (np.full(16000, np.nan, dtype=np.float32), {}, "NaN"),
        (np.full(16000, np.inf, dtype=np.float32), {}, "Inf"),
        (make_audio(1.0, rate=44100), {"sampling_rate": 44100, "resample": False}, "expected 16000 Hz audio, got 44100"),
    ],
)
def test_bad_audio_raises_value_error_naming_it(processor, audio, kwargs, message):
    kwargs.setdefault("sampling_rate", 16000)
    with pytest.raises(ValueError, match=message):
        processor([audio], **kwargs)


def test_bad_prompt_and_caption_count(processor):
    with pytest.raises(ValueError, match=r"audio token .<\|audio\|>. exactly once"):
        processor([make_audio(1.0)], sampling_rate=16000, text="Describe this audio:")
    with pytest.raises(ValueError, match="got 2 audio clips but 1 captions"):
        processor([make_audio(1.0), make_audio(2.0)], text_target=["one caption"], sampling_rate=16000)
    with pytest.raises(ValueError, match="got 2 audio clips but 3 prompts"):
        processor([make_audio(1.0), make_audio(2.0)], text=["<|audio|> a:"] * 3, sampling_rate=16000)


def test_text_is_the_prompt_and_text_target_the_captions(processor):
    """The transformers convention: `text` is the model's text input (the prompt, holding the audio token once),
    captions are `text_target`."""
    clips = [make_audio(1.0), make_audio(2.0, 1)]
    custom = processor(clips, text="this audio: <|audio|> detailed:", sampling_rate=16000)
    decoded = processor.tokenizer.decode(custom["input_ids"][1], skip_special_tokens=True)
    assert decoded.split() == ["this", "audio", ":", "detailed", ":"], decoded
    n_audio = [processor.num_audio_tokens(n) for n in custom["feature_attention_mask"].sum(-1).tolist()]
    assert (custom["input_ids"] == processor.audio_token_id).sum(-1).tolist() == n_audio
    per_clip = processor(clips, text=["<|audio|> audio:", "<|audio|> detailed:"], sampling_rate=16000)
    words = [processor.tokenizer.decode(ids, skip_special_tokens=True).split() for ids in per_clip["input_ids"]]
    assert words == [["audio", ":"], ["detailed", ":"]]
    # captions given as `text`, the old habit, are refused with the fix in the message
    with pytest.raises(ValueError, match="text_target="):
        processor(clips, text=["a dog barks", "rain falls"], sampling_rate=16000)
    with pytest.raises(ValueError, match="exactly once"):
        processor(clips, text="<|audio|> and <|audio|>:", sampling_rate=16000)
    # the old keyword still works, with a FutureWarning, and means the same as text=
    with pytest.warns(FutureWarning, match="pass the prompt as text="):
        old = processor(clips, prompt="this audio: <|audio|> detailed:", sampling_rate=16000)
    assert torch.equal(old["input_ids"], custom["input_ids"])
    with pytest.raises(ValueError, match="not both"):
        processor(clips, text="<|audio|>", prompt="<|audio|>", sampling_rate=16000)


def test_report_marker_in_a_prompt_is_read_as_the_audio_token(processor):
    """The report's `<AcousticTokens>` (how earlier versions wrote prompts) still works, with a FutureWarning."""
    clips = [make_audio(1.0), make_audio(2.0, 1)]
    with pytest.warns(FutureWarning, match="write the audio token '<\\|audio\\|>'"):
        old = processor(clips, text="this audio: <AcousticTokens> detailed:", sampling_rate=16000)
    assert torch.equal(old["input_ids"], processor(clips, text="this audio: <|audio|> detailed:", sampling_rate=16000)["input_ids"])
    # the configured prompt: Prompt I with the audio token, whatever form the config holds
    assert processor.prompt_template == "Describe the detail of this audio:<|audio|>\n---\nDetailed: "
    assert tiny_config().prompt_template == PROMPT_I and "<AcousticTokens>" in PROMPT_I
