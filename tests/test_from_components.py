"""Assembling LAAC from released parts, exercised on locally written folders in the released formats."""

import numpy as np
import pytest
import torch
from laac.configuration_ced import CedConfig
from laac.configuration_laac import LaacConfig
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


def test_from_components_returns_a_model_in_eval_mode(released_parts):
    """As from_pretrained: dropout off, so the same clip captioned twice gives the same ids."""
    root, *_ = released_parts
    model = LaacForConditionalGeneration.from_components(
        str(root / "ced"), str(root / "llama"), qformer_config={"hidden_size": 32, "num_attention_heads": 2,
                                                                 "intermediate_size": 64, "hidden_dropout_prob": 0.5})
    processor = LaacProcessor.from_components(str(root / "ced"), str(root / "llama"), config=model.config)
    assert not any(module.training for module in model.modules())
    inputs = processor([make_audio(3.0)], sampling_rate=16000)
    first = model.generate(**inputs, num_beams=1, do_sample=False, max_new_tokens=8)
    assert torch.equal(model.generate(**inputs, num_beams=1, do_sample=False, max_new_tokens=8), first)
    embeds = [model.get_audio_features(inputs["input_features"]).audio_embeds for _ in range(2)]
    torch.testing.assert_close(embeds[0], embeds[1], rtol=0, atol=0)


def test_processor_from_components_default_layout(released_parts):
    root, *_ = released_parts
    processor = LaacProcessor.from_components(str(root / "ced"), str(root / "llama"))
    assert processor.num_audio_tokens(1001) == 14
    assert processor.tokenizer.padding_side == "left" and processor.tokenizer.pad_token is not None


def test_wrong_audio_folder_is_named(released_parts, tmp_path):
    root, *_ = released_parts
    with pytest.raises(ValueError, match="expected one of"):
        LaacForConditionalGeneration.from_components(str(root / "llama"), str(root / "llama"))


def test_from_components_holds_the_loaded_text_model_once(released_parts, monkeypatch):
    """The loaded modules become the model's own (no second random text model is built and copied into)."""
    root, *_ = released_parts
    built = []
    original = LlamaForCausalLM.__init__

    def counting_init(self, config):
        original(self, config)
        built.append(next(self.parameters()).device.type)

    monkeypatch.setattr(LlamaForCausalLM, "__init__", counting_init)
    model = LaacForConditionalGeneration.from_components(
        str(root / "ced"), str(root / "llama"), qformer_config={"hidden_size": 32, "num_attention_heads": 2,
                                                                 "intermediate_size": 64})
    # from_pretrained builds on the meta device and loads into it; LAAC's own text model stays empty (meta) and is
    # replaced by the loaded one: no text model is ever allocated a second time
    assert built == ["meta", "meta"], f"text models built on: {built}"
    assert all(p.device.type == "cpu" for p in model.parameters())
    qformer = dict(model.qformer.named_parameters())
    assert all(torch.isfinite(p).all() for p in qformer.values())
    assert 0.005 < float(model.language_projection.weight.detach().std()) < 0.05  # _init_weights ran (std 0.02)
    assert torch.equal(qformer["transformer.layernorm.weight"], torch.ones(32))


def _copy_without(source, target, names):
    import shutil

    shutil.copytree(source, target, ignore=lambda _, files: [f for f in files if f in names])
    return str(target)


def test_text_folder_without_a_tokenizer_is_named(released_parts, tmp_path):
    root, *_ = released_parts
    text = _copy_without(root / "llama", tmp_path / "weights_only", {"tokenizer.json", "tokenizer_config.json"})
    for build in (LaacForConditionalGeneration.from_components, LaacProcessor.from_components):
        with pytest.raises(ValueError, match=f"(?s)no tokenizer could be loaded from {text}.*tokenizer files"):
            build(str(root / "ced"), text)


def test_tokenizer_that_has_the_audio_token_elsewhere_is_named(released_parts, tmp_path):
    root, *_ = released_parts
    text = _copy_without(root / "llama", tmp_path / "taken", {"tokenizer.json", "tokenizer_config.json"})
    tiny_tokenizer().save_pretrained(text)  # "<|audio|>" is its id 4, an id of the text vocabulary
    for build in (LaacForConditionalGeneration.from_components, LaacProcessor.from_components):
        taken = f"tokenizer of {text} already has '<\\|audio\\|>' as token id 4.*audio_token="
        with pytest.raises(ValueError, match=taken):
            build(str(root / "ced"), text)
    # the fix the message gives works
    processor = LaacProcessor.from_components(str(root / "ced"), text, audio_token="<|laac_audio|>")
    assert processor.audio_token_id == len(processor.tokenizer) - 1


def test_vocabulary_that_cannot_take_one_more_token_is_named(released_parts, tmp_path):
    root, _, _, tokenizer = released_parts
    small = LaacConfig(audio_config={"model_type": "ced", "embed_dim": 32, "depth": 2, "num_heads": 2},
                       text_config={"vocab_size": len(tokenizer)})  # fmt: skip
    with pytest.raises(ValueError, match=f"vocabulary of the model \\({len(tokenizer)} tokens\\) cannot take one more"):
        LaacProcessor.from_components(str(root / "ced"), str(root / "llama"), config=small)
    wrong_id = LaacConfig(audio_config=small.audio_config, text_config={"vocab_size": len(tokenizer) + 1},
                          audio_token_id=3)  # fmt: skip
    with pytest.raises(ValueError, match=f"gives the audio token id {len(tokenizer)}, but .* expects audio_token_id 3"):
        LaacProcessor.from_components(str(root / "ced"), str(root / "llama"), config=wrong_id)
    # a tokenizer larger than the model's embeddings
    text = _copy_without(root / "llama", tmp_path / "bigger", {"tokenizer.json", "tokenizer_config.json"})
    bigger = tiny_tokenizer(audio_token="<unused>")
    bigger.add_tokens(["extra1", "extra2"])
    bigger.save_pretrained(text)
    with pytest.raises(ValueError, match=f"tokenizer of {text} has {len(bigger)} tokens but .* {len(tokenizer)} rows"):
        LaacForConditionalGeneration.from_components(str(root / "ced"), text)


def test_text_model_whose_embeddings_cannot_grow_is_named(released_parts, monkeypatch):
    root, *_ = released_parts

    def no_embeddings(self):
        raise NotImplementedError

    monkeypatch.setattr(LlamaForCausalLM, "get_input_embeddings", no_embeddings)
    with pytest.raises(ValueError, match=f"text model of {root / 'llama'} .* cannot take one more token"):
        LaacForConditionalGeneration.from_components(str(root / "ced"), str(root / "llama"))


def test_gguf_that_is_not_a_tokenizer_is_named(released_parts, tmp_path):
    gguf = pytest.importorskip("gguf")  # a test extra (setup.cfg)
    root, *_ = released_parts
    writer = gguf.GGUFWriter(str(tmp_path / "weights.gguf"), "llama")
    writer.add_block_count(1)
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((4, 4), np.float32))
    writer.write_header_to_file(), writer.write_kv_data_to_file(), writer.write_tensors_to_file(), writer.close()
    (tmp_path / "text.gguf").write_text("tokenizer.ggml.model = llama\n")  # not even a GGUF file
    for name in ("weights.gguf", "text.gguf"):
        path = str(tmp_path / name)
        with pytest.raises(ValueError, match=f"(?s)no tokenizer could be loaded from {path} .*holds a tokenizer"):
            LaacProcessor.from_components(str(root / "ced"), path)


def test_build_memory_benchmark_small_shape(tmp_path, llama_tokenizers):
    """benchmarks/build_memory.py at a small shape: the build holds the weights once, plus the grown embeddings."""
    from laac.benchmarks.build_memory import main
    from laac.data.public_data import LLAMA2_TOKENIZER

    tokenizer = str(llama_tokenizers / LLAMA2_TOKENIZER)
    result = main(["--shape", "small", "--workdir", str(tmp_path), "--tokenizer_gguf", tokenizer])
    assert result["text_vocab"] == 32001 and result["dtype"] == "torch.bfloat16" and result["checksum_finite"]
    # Growing the vocabulary by the audio token replaces the embedding and output matrices by copies one row
    # longer; the memory-mapped originals stay resident until their shard is unmapped. Everything else is held once.
    grown = result["peak_rss"] - result["rss_before"] - result["embedding_bytes"]
    # The 1.25x target is the 7B shape's (measured there: 1.10x). At this 0.36 GB shape the allocator's and the
    # page cache's fixed share is larger: measured 1.16-1.26x across runs on one machine. The former code, which
    # built a second random text model, grows by 2.16x here; 1.5x separates the two with margin on both sides.
    assert grown <= 1.5 * result["weights_bytes"], result
