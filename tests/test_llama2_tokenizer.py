"""Llama 2's own tokenizer (GGUF vocabulary, `laac.data.public_data`) through Submission 4's text path, on a real Clotho caption."""

import csv
import json

import pytest
import soundfile as sf
import torch
from laac.configuration_ced import CedConfig
from laac.configuration_laac import LaacConfig
from laac.feature_extraction_laac import LaacFeatureExtractor
from laac.modeling_ced import CedForAudioClassification
from laac.modeling_laac import LaacForConditionalGeneration
from laac.processing_laac import (
    IGNORE_INDEX,
    LaacProcessor,
    adds_dummy_prefix,
    normalize_caption_target,
)
from laac.conversion.text_tokenizer import llama_tokenizer_from_gguf, load_text_tokenizer

from laac.data.public_data import CLOTHO_CAPTIONS, LLAMA2_TOKENIZER

CLIP = "Santa Motor.wav"
# normalize_caption_target of its caption_1, "A machine whines and squeals while rhythmically punching or stamping.",
# in Llama 2's SentencePiece pieces: ▁a ▁machine ▁wh ines ▁and ▁s que als ▁while ▁rh ythm ically ▁p unch ing
# ▁or ▁stamp ing ▁ (the final "▁" is the space the full stop leaves)
CAPTION_IDS = [
    263, 4933, 377, 1475, 322, 269, 802, 1338, 1550, 18178, 29265, 1711, 282, 3322, 292, 470, 25214, 292, 29871
]  # fmt: skip
# <s> "Describe the detail of this audio:" (README of shared/tokenizers), then after the audio tokens
# "\n---\nDetailed: " on its own: ▁ <0x0A> --- <0x0A> D etailed : ▁ (the original code's ids; "separate") ...
PROMPT_HEAD = [1, 20355, 915, 278, 9493, 310, 445, 10348, 29901]
PROMPT_TAIL = {
    "separate": [29871, 13, 5634, 13, 29928, 11881, 29901, 29871],
    # ... or "\n---\nDetailed:" as the Hub tokenizer of Llama 2 splits one text after a special token, the trailing
    # space left to the caption's "▁a" ("joint")
    "joint": [29871, 13, 5634, 13, 29928, 11881, 29901],
}
UNK, EOS, AUDIO = 0, 2, 32000


@pytest.fixture(scope="module")
def llama2_gguf(llama_tokenizers):
    return llama_tokenizers / LLAMA2_TOKENIZER


@pytest.fixture(scope="module")
def parts(tmp_path_factory, llama2_gguf):
    """A folder that holds only Llama 2's tokenizer files (as meta-llama/Llama-2-7b-hf has them) and a tiny CED."""
    root = tmp_path_factory.mktemp("llama2")
    llama_tokenizer_from_gguf(str(llama2_gguf)).save_pretrained(root / "llama2")
    torch.manual_seed(0)
    CedForAudioClassification(CedConfig(embed_dim=32, depth=2, num_heads=2)).save_pretrained(root / "ced")
    processor = LaacProcessor.from_components(str(root / "ced"), str(root / "llama2"))
    return root, processor


@pytest.fixture(scope="module")
def clotho_example(clotho_dir):
    with open(clotho_dir / CLOTHO_CAPTIONS, newline="", encoding="utf-8") as f:
        row = next(r for r in csv.DictReader(f) if r["file_name"] == CLIP)
    audio, rate = sf.read(clotho_dir / "audio" / CLIP, dtype="float32")
    return audio, rate, row["caption_1"]


def _reference_cases(gguf):
    texts = (gguf.parent / (gguf.name + ".inp")).read_text(encoding="utf-8")
    ids = (gguf.parent / (gguf.name + ".out")).read_text(encoding="utf-8")
    texts = texts.split("\n__ggml_vocab_test__\n")[:-1]  # the file ends with a separator
    ids = [[int(i) for i in line.split()] for line in ids.split("\n")[: len(texts)]]
    return list(zip(texts, ids))


@pytest.fixture(scope="module")
def gguf_processor(parts, llama2_gguf):
    """`from_components` given the bare `.gguf` file as the text model's tokenizer (no folder written)."""
    return LaacProcessor.from_components(str(parts[0] / "ced"), str(llama2_gguf))


@pytest.mark.parametrize("source", ["folder", "bare_gguf"])
def test_tokenizer_reproduces_llama_cpp_reference_tokenisations(parts, gguf_processor, llama2_gguf, source):
    tokenizer = (parts[1] if source == "folder" else gguf_processor).tokenizer
    cases = _reference_cases(llama2_gguf)
    assert len(cases) == 46
    wrong = [(text, want, tokenizer(text, add_special_tokens=False)["input_ids"]) for text, want in cases]
    wrong = [case for case in wrong if case[1] != case[2]]
    assert not wrong, f"{len(wrong)} of {len(cases)} differ, e.g. {wrong[:3]}"
    for text, want in cases:  # and the ids decode back to the text
        assert tokenizer.decode(want) == text


def test_tokenizer_only_folder_gives_submission_4_vocabulary(parts):
    root, processor = parts
    assert sorted(p.name for p in (root / "llama2").iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    tokenizer = processor.tokenizer
    assert processor.audio_token_id == AUDIO == LaacConfig().audio_token_id
    assert len(tokenizer) == 32001 == LaacConfig().text_config.vocab_size
    assert (tokenizer.pad_token, tokenizer.pad_token_id) == ("<unk>", UNK)
    assert tokenizer.padding_side == "left"


def test_bare_gguf_gives_the_folders_processor(parts, gguf_processor):
    """The bare `.gguf` path of from_components: the same vocabulary, audio token, pad token and ids as the folder."""
    folder_tokenizer, tokenizer = parts[1].tokenizer, gguf_processor.tokenizer
    assert gguf_processor.audio_token_id == AUDIO and len(tokenizer) == 32001
    assert (tokenizer.pad_token_id, tokenizer.padding_side) == (UNK, "left")
    text = " Describe the detail of this audio:\n---\nDetailed:  a dog  barks "
    assert tokenizer(text)["input_ids"] == folder_tokenizer(text)["input_ids"]


def test_llama2_defaults_to_the_original_codes_ids(parts, gguf_processor):
    assert adds_dummy_prefix(parts[1].tokenizer)
    assert parts[1].prompt_tokenization == gguf_processor.prompt_tokenization == "separate"


def test_llama3_byte_level_tokenizer_defaults_to_joint(llama_tokenizers):
    tokenizer = load_text_tokenizer(str(llama_tokenizers / "ggml-vocab-llama-bpe.gguf"))
    assert not adds_dummy_prefix(tokenizer)
    processor = LaacProcessor(LaacFeatureExtractor(), tokenizer)
    assert processor.prompt_tokenization == "joint"


@pytest.fixture
def processor_in_mode(parts, request):
    """The folder's processor switched to one prompt tokenization for the test, then switched back."""
    processor = parts[1]
    processor.prompt_tokenization = request.param
    yield processor
    processor.prompt_tokenization = "separate"


@pytest.mark.parametrize("processor_in_mode", ["separate", "joint"], indirect=True)
def test_prompt_and_a_real_clotho_caption(processor_in_mode, clotho_example):
    processor, mode = processor_in_mode, processor_in_mode.prompt_tokenization
    audio, rate, caption = clotho_example
    training = processor([audio], text_target=[caption], sampling_rate=rate)
    generation = processor([audio], sampling_rate=rate)
    n_audio = processor.num_audio_tokens(int(training["feature_attention_mask"].sum()))
    assert n_audio == 44  # a 25-s clip: 3 CED chunks
    prompt = PROMPT_HEAD + [AUDIO] * n_audio + PROMPT_TAIL[mode]
    assert training["input_ids"][0].tolist() == prompt + CAPTION_IDS + [EOS]
    assert training["labels"][0].tolist() == [IGNORE_INDEX] * len(prompt) + CAPTION_IDS + [EOS]
    # generation is conditioned on exactly the ids training saw before the caption
    assert generation["input_ids"][0].tolist() == prompt
    assert UNK not in training["labels"][0].tolist()  # the pad token is never a caption target
    # a decoded caption is the target without its trailing space, with no special token left
    sequences = torch.tensor([prompt + CAPTION_IDS + [EOS, UNK, UNK]])
    captions = processor.decode_captions(sequences, generation["input_ids"])
    assert captions == ["a machine whines and squeals while rhythmically punching or stamping"]
    assert normalize_caption_target(caption) == captions[0] + " "


def test_clotho_targets_end_in_a_lone_space_piece(parts, clotho_csv):
    """The original's targets of Clotho's 5,225 evaluation captions: 4,467 end in "▁ </s>" with Llama 2."""
    with open(clotho_csv, newline="", encoding="utf-8") as f:
        captions = [row[f"caption_{i}"] for row in csv.DictReader(f) for i in range(1, 6)]
    targets = [normalize_caption_target(caption) for caption in captions]
    ids = parts[1].tokenizer(targets, add_special_tokens=False)["input_ids"]
    assert len(captions) == 5225
    assert sum(row[-1] == 29871 for row in ids) == 4467
    assert sum(target.endswith(" ") for target in targets) == 4467


def test_processor_config_saved_without_the_setting_loads_as_joint(parts, clotho_example, tmp_path):
    """A checkpoint saved before prompt_tokenization existed keeps the ids its model was trained on."""
    processor = parts[1]
    processor.save_pretrained(tmp_path)
    config_path = tmp_path / "processor_config.json"
    saved = json.loads(config_path.read_text())
    assert saved["prompt_tokenization"] == "separate"
    assert LaacProcessor.from_pretrained(tmp_path).prompt_tokenization == "separate"
    del saved["prompt_tokenization"]
    config_path.write_text(json.dumps(saved))
    old = LaacProcessor.from_pretrained(tmp_path)
    assert old.prompt_tokenization == "joint"
    assert LaacProcessor.from_pretrained(tmp_path, prompt_tokenization="separate").prompt_tokenization == "separate"
    audio, rate, _ = clotho_example
    ids = old([audio], sampling_rate=rate)["input_ids"][0].tolist()
    assert ids[-len(PROMPT_TAIL["joint"]) - 1 :] == [AUDIO] + PROMPT_TAIL["joint"]


def test_padding_two_captions_keeps_targets_and_prompt_ends(parts, clotho_example):
    processor = parts[1]
    audio, rate, _ = clotho_example
    batch = processor([audio, audio[: rate * 3]], text_target=["a dog barks", "rain"], sampling_rate=rate)
    labels, ids, mask = batch["labels"], batch["input_ids"], batch["attention_mask"]
    assert (ids[mask == 0] == UNK).all() and (labels[mask == 0] == IGNORE_INDEX).all()
    rain = processor.tokenizer.convert_tokens_to_ids("▁rain")
    assert labels[1][labels[1] != IGNORE_INDEX].tolist() == [rain, EOS] and rain != UNK


def test_llama2_vocabulary_through_a_tiny_model(parts, clotho_example):
    """The whole text path with Llama 2's ids: a tiny random model of 32,001 tokens trains a step and generates."""
    root, processor = parts
    audio, rate, caption = clotho_example
    config = LaacConfig(
        audio_config={"model_type": "ced", "embed_dim": 32, "depth": 2, "num_heads": 2},
        qformer_config={"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64},
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 2, "bos_token_id": 1, "eos_token_id": 2},
    )  # fmt: skip
    torch.manual_seed(0)
    model = LaacForConditionalGeneration(config)
    assert config.audio_token_id == processor.audio_token_id
    loss = model(**processor([audio], text_target=[caption], sampling_rate=rate)).loss
    loss.backward()
    assert torch.isfinite(loss) and abs(float(loss.detach()) - torch.log(torch.tensor(32001.0))) < 1.0  # untrained: ~ln V
    inputs = processor([audio], sampling_rate=rate)
    sequences = model.eval().generate(**inputs, max_new_tokens=5, min_new_tokens=5, num_beams=1, do_sample=False)
    new = sequences[0, inputs["input_ids"].shape[1] :].tolist()
    assert len(new) == 5 and AUDIO not in new
    (text,) = processor.decode_captions(sequences, inputs["input_ids"])
    assert text == " ".join(processor.tokenizer.decode(new, skip_special_tokens=True).split())
