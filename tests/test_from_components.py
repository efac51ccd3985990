"""Assembling LAAC from released parts, exercised on locally written folders in the released formats."""

import pytest
import torch
from laac.configuration_ced import CedConfig
from laac.modeling_ced import CedForAudioClassification
from laac.modeling_laac import LaacForConditionalGeneration
from laac.processing_laac import LaacProcessor
from transformers import LlamaConfig, LlamaForCausalLM

from tests.laac_tester import CAPTIONS, make_audio, tiny_tokenizer


@pytest.fixture(scope="module")
def released_parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("released")
    torch.manual_seed(0)
    # a mispeech/ced-* style folder: CedForAudioClassification weights (encoder.* + outputlayer.*)
    ced = CedForAudioClassification(CedConfig(embed_dim=32, depth=2, num_heads=2))
    ced.save_pretrained(root / "ced")
    # a meta-llama/* style folder: causal LM + its tokenizer, which knows nothing of audio
    tokenizer = tiny_tokenizer(audio_token="<unused>")
    llama = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2))
    llama.save_pretrained(root / "llama")
    tokenizer.save_pretrained(root / "llama")
    return root, ced, llama, tokenizer


def test_from_components_loads_both_parts(released_parts):
    root, ced, llama, tokenizer = released_parts
    model = LaacForConditionalGeneration.from_components(
        str(root / "ced"), str(root / "llama"), qformer_config={"hidden_size": 32, "num_attention_heads": 2,
                                                                 "intermediate_size": 64})
    processor = LaacProcessor.from_components(str(root / "ced"), str(root / "llama"), config=model.config)
    assert model.config.audio_token_id == processor.audio_token_id == len(tokenizer)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer) + 1
    for key, value in ced.encoder.state_dict().items():
        torch.testing.assert_close(model.audio_tower.state_dict()[key], value, rtol=0, atol=0)
    for key, value in llama.state_dict().items():
        if key != "model.embed_tokens.weight" and key != "lm_head.weight":
            torch.testing.assert_close(model.language_model.state_dict()[key], value, rtol=0, atol=0)
    torch.testing.assert_close(model.get_input_embeddings().weight[: len(tokenizer)], llama.model.embed_tokens.weight)
    batch = processor([make_audio(2.0), make_audio(5.0, 1)], text_target=CAPTIONS[:2], sampling_rate=16000)
    assert torch.isfinite(model(**batch).loss)


def test_processor_from_components_default_layout(released_parts):
    root, *_ = released_parts
    processor = LaacProcessor.from_components(str(root / "ced"), str(root / "llama"))
    assert processor.num_audio_tokens(1001) == 14
    assert processor.tokenizer.padding_side == "left" and processor.tokenizer.pad_token is not None


def test_wrong_audio_folder_is_named(released_parts, tmp_path):
    root, *_ = released_parts
    with pytest.raises(ValueError, match="expected one of"):
        LaacForConditionalGeneration.from_components(str(root / "llama"), str(root / "llama"))
