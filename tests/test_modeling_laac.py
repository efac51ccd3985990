"""Behaviour of the LAAC model on tiny random configs: shapes, loss, masks, generation, variants, errors."""

import dataclasses
import math

import pytest
import torch
from laac.configuration_laac import LaacConfig, num_audio_tokens
from laac.correction.post_corrector import CorrectorSettings
from laac.modeling_laac import (
    LaacAudioFeaturesOutput,
    LaacCausalLMOutputWithPast,
    LaacForConditionalGeneration,
    LaacSeq2SeqLMOutput,
    time_major_index,
)
from transformers.modeling_outputs import CausalLMOutputWithPast

from tests.laac_tester import CAPTIONS, caption_loss_fn, make_audio, tiny_config, tiny_model, tiny_processor
from tests.numerics import assert_same_captions


@pytest.fixture(scope="module")
def llama_setup():
    config = tiny_config("llama")
    return config, tiny_model(config), tiny_processor(config)


def _batch(processor, seconds=(1.0, 3.0, 12.0), captions=None):
    clips = [make_audio(s, seed=i) for i, s in enumerate(seconds)]
    return processor(clips, text_target=captions, sampling_rate=16000)


def test_default_config_is_submission_4():
    config = LaacConfig()
    assert (config.audio_config.model_type, config.audio_config.embed_dim, config.audio_config.depth) == ("ced", 768, 12)
    assert config.qformer_config.num_hidden_layers == 2 and config.qformer_config.cross_attention_frequency == 1
    assert config.qformer_config.encoder_hidden_size == 768
    assert config.text_config.model_type == "llama" and config.text_config.hidden_size == 4096
    assert (config.window_size, config.queries_per_window, config.token_order, config.last_window) == (
        17, 1, "frequency", "drop")
    assert config.prompt_template == "Describe the detail of this audio:<AcousticTokens>\n---\nDetailed: "
    # the post-corrector is its own artifact: the config names one (None: the report's settings), never its settings
    assert config.post_corrector is None
    report = CorrectorSettings()
    assert (report.threshold, report.corrector_model) == (0.9, "meta-llama/Meta-Llama-3-8B-Instruct")
    assert report.system_prompt == (
        "You are a language specialist who can revise the sentence to make it more correct and idiomatic! "
        "You should follow the below format: rain is falling on a tin roof ==> rain is falling on the tin roof"
    )
    for forbidden in ("learning_rate", "output_dir", "device", "corrector", "threshold", "batch_size"):
        assert forbidden not in config.to_dict()


@pytest.mark.parametrize(
    ("text", "text_layers"),
    [("llama", {"LlamaDecoderLayer"}), ("bart", {"BartEncoderLayer", "BartDecoderLayer"})],
)
def test_no_split_modules_come_from_the_parts(text, text_layers):
    """device_map / FSDP units: the Q-Former's layer, plus whatever the audio tower and the text model declare."""
    model = tiny_model(tiny_config(text, audio="dasheng" if text == "bart" else "ced"))
    assert set(model._no_split_modules) == {"Blip2QFormerLayer", "CedBlock", *text_layers}


def test_config_saved_with_corrector_settings_keeps_them_as_its_post_corrector():
    """Configs written before the post-corrector was its own artifact held its settings under `corrector`."""
    config = LaacConfig(corrector={"threshold": 0.5})
    assert config.post_corrector == {"threshold": 0.5} and "corrector" not in config.to_dict()
    assert LaacConfig(post_corrector="org/post-corrector").post_corrector == "org/post-corrector"
    with pytest.raises(ValueError, match="post_corrector must be the folder or Hub id"):
        LaacConfig(post_corrector=0.5)


@pytest.mark.parametrize("seconds,tokens", [(10, 14), (30, 44), (1, 1), (20, 29)])
def test_length_helper_matches_report(seconds, tokens):
    frames = 1 + seconds * 16000 // 160
    assert LaacConfig().num_audio_tokens(frames) == tokens


def test_length_helper_pad_mode_and_queries():
    config = LaacConfig()
    # 10 s: 248 encoder tokens = 14 full windows + 10 tokens: padded -> 15 windows, 2 queries each -> 30
    assert num_audio_tokens(1001, config.audio_config, 17, 2, "pad") == 30
    assert num_audio_tokens(1001, config.audio_config, 17, 2, "drop") == 28


def test_forward_shapes_and_caption_only_loss(llama_setup):
    config, model, processor = llama_setup
    batch = _batch(processor, captions=CAPTIONS[:3])
    out = model(**batch)
    assert out.logits.shape[:2] == batch["input_ids"].shape
    assert out.logits.shape[-1] == config.text_config.vocab_size
    assert torch.isfinite(out.loss)
    # loss only where labels are set: caption tokens + EOS
    labels = batch["labels"]
    assert bool((labels[batch["input_ids"] == config.audio_token_id] == -100).all())
    n_caption = [len(processor.tokenizer(c, add_special_tokens=False).input_ids) + 1 for c in CAPTIONS[:3]]
    assert (labels != -100).sum(-1).tolist() == n_caption
    # the same loss computed by hand from the logits
    logits, target = out.logits[:, :-1], labels[:, 1:]
    manual = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
    torch.testing.assert_close(out.loss, manual)


def test_processor_and_model_agree_on_token_counts(llama_setup):
    config, model, processor = llama_setup
    for seconds in (0.01, 0.5, 1.0, 10.12, 10.121, 25.0):
        batch = _batch(processor, seconds=(seconds,))
        frames = int(batch["feature_attention_mask"].sum())
        features = model.get_audio_features(batch["input_features"], batch["feature_attention_mask"])
        per_clip = features.tokens_per_clip.tolist()
        placeholders = int((batch["input_ids"] == config.audio_token_id).sum())
        assert per_clip == [placeholders] == [config.num_audio_tokens(frames)] == [processor.num_audio_tokens(frames)]


def test_batch_equals_alone(llama_setup):
    config, model, processor = llama_setup
    seconds = (1.0, 3.0, 12.0)
    batch = _batch(processor, seconds=seconds, captions=CAPTIONS[:3])
    with torch.no_grad():
        batched = model(**batch).logits
        generated = model.generate(**{k: v for k, v in batch.items() if k != "labels"})
    clips, captions_alone = [make_audio(s, seed=i) for i, s in enumerate(seconds)], []
    for i, clip in enumerate(clips):
        alone = processor([clip], text_target=[CAPTIONS[i]], sampling_rate=16000)
        n = alone["input_ids"].shape[1]
        with torch.no_grad():
            logits = model(**alone).logits[0]
            gen = model.generate(**{k: v for k, v in alone.items() if k != "labels"})
        torch.testing.assert_close(batched[i, -n:], logits, atol=1e-4, rtol=1e-4)
        captions_alone += processor.decode_captions(gen, alone["input_ids"])
    captions_batched = processor.decode_captions(generated, batch["input_ids"])
    assert_same_captions(captions_batched, captions_alone, caption_loss_fn(model, processor, clips))


def test_caption_tie_tolerance_rejects_different_captions(llama_setup):
    """The tie rule of batch-vs-alone caption comparisons passes equal captions and fails on a real difference."""
    config, model, processor = llama_setup
    caption_loss = caption_loss_fn(model, processor, [make_audio(2.0, seed=0)])
    assert_same_captions(["a dog barks"], ["a dog barks"], caption_loss)
    with pytest.raises(AssertionError, match="not a tie"):
        assert_same_captions(["a dog barks"], ["rain falls on a roof"], caption_loss)


def test_generate_lengths_and_clean_captions(llama_setup):
    config, model, processor = llama_setup
    batch = _batch(processor, seconds=(2.0, 4.0))
    batch.pop("labels", None)
    assert model.generation_config.num_beams == 3
    assert (model.generation_config.max_new_tokens, model.generation_config.min_new_tokens) == (30, 2)
    out = model.generate(**batch)
    new = out[:, batch["input_ids"].shape[1] :]
    assert 2 <= new.shape[1] <= 30
    assert not bool((new == config.audio_token_id).any()), "the placeholder must never be generated"
    captions = processor.decode_captions(out, batch["input_ids"])
    special = set(processor.tokenizer.all_special_tokens)
    for caption in captions:
        assert not any(token in caption for token in special)
    short = model.generate(**batch, max_new_tokens=3, min_new_tokens=3, num_beams=1)
    assert short.shape[1] == batch["input_ids"].shape[1] + 3


def test_placeholder_mismatch_raises(llama_setup):
    config, model, processor = llama_setup
    batch = _batch(processor, seconds=(3.0,))
    ids = batch["input_ids"].clone()
    ids[0, (ids[0] == config.audio_token_id).nonzero()[0]] = 5  # one placeholder fewer
    with pytest.raises(ValueError, match=r"placeholder tokens per clip \[\d+\] do not match the audio tokens per clip"):
        model(input_ids=ids, attention_mask=batch["attention_mask"], input_features=batch["input_features"],
              feature_attention_mask=batch["feature_attention_mask"])
    with pytest.raises(ValueError, match="no input_features"):
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])


def test_too_short_for_one_window_raises(llama_setup):
    config, model, processor = llama_setup
    mel = torch.randn(1, 64, 20)  # 1 time patch = 4 tokens < 17
    with pytest.raises(ValueError, match="no audio tokens"):
        model.get_audio_features(mel)
    with pytest.raises(ValueError, match=r"expected input_features of shape \(batch, 64, frames\)"):
        model.get_audio_features(torch.randn(1, 40, 200))


def test_bart_variant_trains_and_generates():
    config = tiny_config("bart")
    assert config.is_encoder_decoder
    model, processor = tiny_model(config), tiny_processor(config)
    batch = _batch(processor, seconds=(1.0, 5.0), captions=CAPTIONS[:2])
    out = model(**batch)
    assert isinstance(out, LaacSeq2SeqLMOutput)
    assert out.audio_features.tokens_per_clip.tolist() == [config.num_audio_tokens(101), config.num_audio_tokens(501)]
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.qformer.query_tokens.grad is not None and model.audio_tower.blocks[0].attn.qkv.weight.grad is not None
    batch.pop("labels")
    generated = model.generate(**batch, max_new_tokens=5)
    assert generated.shape[0] == 2 and 2 <= generated.shape[1] <= 6
    alone = processor([make_audio(1.0, seed=0)], sampling_rate=16000)
    assert processor.decode_captions(model.generate(**alone, max_new_tokens=5)) == processor.decode_captions(
        generated[:1]
    )


def test_dasheng_variant():
    config = tiny_config("llama", audio="dasheng")
    model, processor = tiny_model(config), tiny_processor(config)
    batch = _batch(processor, seconds=(2.0, 10.0), captions=CAPTIONS[:2])
    assert config.num_audio_tokens(1001) == 250 // 17  # 25 tokens/s
    assert torch.isfinite(model(**batch).loss)


def test_time_major_order_and_padded_last_window():
    config = tiny_config("llama", token_order="time", last_window="pad")
    model, processor = tiny_model(config), tiny_processor(config)
    batch = _batch(processor, seconds=(1.0, 12.0), captions=CAPTIONS[:2])
    assert torch.isfinite(model(**batch).loss)
    frames = 1 + 12 * 16000 // 160
    assert config.num_audio_tokens(frames) == math.ceil(2 * 252 / 17)
    # the permutation: frequency-major f * n_t + t -> time-major t * n_f + f, chunk by chunk
    index = time_major_index(101, config.audio_config)  # 6 time patches x 4 frequency patches
    assert index[:5] == [0, 6, 12, 18, 1] and sorted(index) == list(range(24))


def test_sdpa_masks_padding_in_qformer_pad_mode():
    """A zero-padded last window is masked: its output does not depend on the padding's values."""
    config = tiny_config("llama", last_window="pad")
    model = tiny_model(config)
    tokens = torch.randn(1, 20, 32)
    mask = torch.ones(1, 20, dtype=torch.long)
    out1, counts = model.qformer(tokens, mask)
    padded = torch.cat([tokens, torch.randn(1, 7, 32)], 1)
    out2, _ = model.qformer(padded, torch.cat([mask, torch.zeros(1, 7, dtype=torch.long)], 1))
    assert counts == [2]
    torch.testing.assert_close(out1, out2)


def test_generate_encodes_audio_once_and_matches_per_step_path(llama_setup):
    """generate() splices the audio before beam expansion; the result equals splicing inside forward's prefill."""
    config, model, processor = llama_setup
    batch = _batch(processor, seconds=(2.0, 6.0))
    calls = []
    hook = model.audio_tower.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        fast = model.generate(**batch)
    finally:
        hook.remove()
    assert calls == [2], calls  # once, on the 2 clips, not on 2 x num_beams
    from transformers import GenerationMixin

    reference = GenerationMixin.generate(model, **batch)
    assert fast.tolist() == reference.tolist()


def test_generate_hook_sees_the_ids_and_leaves_the_checkpoint_alone(llama_setup):
    config, model, processor = llama_setup
    keys = set(model.state_dict())
    inputs = processor([make_audio(1.0), make_audio(2.0, seed=1)], sampling_rate=16000)
    ids = model.generate(**inputs, num_beams=1, max_new_tokens=4)
    seen = []
    result = model.generate(
        **inputs, num_beams=1, max_new_tokens=4, post_processor=lambda output, prompt: seen.append((output, prompt)) or 7
    )
    assert result == 7 and len(seen) == 1
    assert torch.equal(seen[0][0], ids) and torch.equal(seen[0][1], inputs["input_ids"])
    assert set(model.state_dict()) == keys


# the cache field of transformers' CausalLMOutputWithPast: "cache" in recent versions, "past_key_values" before
CACHE_FIELD = next(f.name for f in dataclasses.fields(CausalLMOutputWithPast) if f.name in ("cache", "past_key_values"))


def test_forward_returns_loss_logits_cache_and_audio_features(llama_setup):
    config, model, processor = llama_setup
    batch = _batch(processor, seconds=(1.0, 12.0), captions=CAPTIONS[:2])
    with torch.no_grad():
        out = model(**batch, use_cache=True)
    assert isinstance(out, LaacCausalLMOutputWithPast)
    assert torch.isfinite(out.loss) and out.logits.shape[:2] == batch["input_ids"].shape
    assert out[CACHE_FIELD] is not None  # what generate() carries to the next step
    features = out.audio_features
    assert isinstance(features, LaacAudioFeaturesOutput)
    frames = batch["feature_attention_mask"].sum(-1).tolist()
    assert features.tokens_per_clip.tolist() == [config.num_audio_tokens(n) for n in frames]
    assert features.audio_embeds.shape == (sum(features.tokens_per_clip.tolist()), config.text_config.hidden_size)
    assert features.encoder_hidden_states.shape[:2] == features.encoder_attention_mask.shape
    # the audio rows are exactly what replaced the placeholders
    embeds, _ = model.embed_inputs(batch["input_ids"], None, batch["input_features"], batch["feature_attention_mask"])
    torch.testing.assert_close(embeds[batch["input_ids"] == config.audio_token_id], features.audio_embeds)
    with torch.no_grad():
        as_tuple = model(**batch, return_dict=False)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], out.loss)


def test_placeholder_mask_from_ids_or_embeddings(llama_setup):
    config, model, processor = llama_setup
    batch = _batch(processor, seconds=(1.0, 6.0))
    features = model.get_audio_features(batch["input_features"], batch["feature_attention_mask"])
    embeds = model.get_input_embeddings()(batch["input_ids"])
    from_ids = model.get_placeholder_mask(batch["input_ids"], embeds, features)
    assert from_ids.shape == (*batch["input_ids"].shape, 1) and from_ids.dtype == torch.bool
    assert from_ids[..., 0].sum(-1).tolist() == features.tokens_per_clip.tolist()
    assert torch.equal(model.get_placeholder_mask(None, embeds, features), from_ids)
    # so inputs_embeds work in place of input_ids, audio included
    inputs = {k: v for k, v in batch.items() if k != "input_ids"}
    with torch.no_grad():
        torch.testing.assert_close(model(inputs_embeds=embeds, **inputs).logits, model(**batch).logits)
    fewer = LaacAudioFeaturesOutput(tokens_per_clip=features.tokens_per_clip - 1)
    with pytest.raises(ValueError, match=r"placeholder tokens per clip \[\d+, \d+\] do not match"):
        model.get_placeholder_mask(batch["input_ids"], embeds, fewer)


def test_float16_loading_keeps_the_qformer_in_float32(llama_setup, tmp_path):
    config, model, processor = llama_setup
    model.save_pretrained(tmp_path)
    half = LaacForConditionalGeneration.from_pretrained(tmp_path, dtype=torch.float16).eval()
    assert {p.dtype for p in half.qformer.parameters()} == {torch.float32}
    assert half.language_model.get_input_embeddings().weight.dtype == torch.float16
    assert half.language_projection.weight.dtype == torch.float16
    batch = _batch(processor, seconds=(2.0,))
    batch["input_features"] = batch["input_features"].half()
    with torch.no_grad():
        features = half.get_audio_features(batch["input_features"], batch["feature_attention_mask"])
        logits = half(**batch).logits
    assert features.audio_embeds.dtype == torch.float16 and logits.dtype == torch.float16
    assert bool(torch.isfinite(logits).all())
