"""CED / Dasheng encoders: parity with the original CED, chunking and batching rules, LoRA hooks, loading."""

import json

import pytest
import torch
from laac.configuration_ced import CedConfig, DashengConfig
from laac.conversion.convert_ced_original_checkpoint import convert_checkpoint
from laac.feature_extraction_laac import LaacFeatureExtractor
from laac.modeling_ced import (
    CedForAudioClassification,
    CedModel,
    DashengModel,
    ced_num_tokens,
    chunk_layout,
    dasheng_num_tokens,
)
from safetensors import safe_open
from safetensors.torch import save_file

from tests.laac_tester import CED_REFERENCE as REFERENCE
from tests.laac_tester import load_strictly, loading_problems
from tests.numerics import assert_kernel_close


@pytest.fixture(scope="module")
def reference() -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    with safe_open(str(REFERENCE), "pt") as f:
        config = json.loads(f.metadata()["config"])
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    weights = {key.removeprefix("weights."): v for key, v in tensors.items() if key.startswith("weights.")}
    return config, tensors, weights


@pytest.fixture(scope="module")
def classifier(reference) -> CedForAudioClassification:
    config, _, weights = reference
    model = CedForAudioClassification(CedConfig(**config)).eval()
    model.load_state_dict(weights, strict=True)
    return model


def _mel(frames: int, seed: int = 0) -> torch.Tensor:
    """A dB-like random mel (1, 64, frames)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, 64, frames, generator=generator) * 15 - 40


def _batch(mels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(m.shape[-1] for m in mels)
    features = torch.full((len(mels), 64, longest), 7.0)  # padding value must not matter
    mask = torch.zeros(len(mels), longest, dtype=torch.long)
    for i, mel in enumerate(mels):
        features[i, :, : mel.shape[-1]] = mel[0]
        mask[i, : mel.shape[-1]] = 1
    return features, mask


def _tiny_dasheng() -> DashengModel:
    torch.manual_seed(0)
    model = DashengModel(DashengConfig(embed_dim=32, depth=2, num_heads=4)).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        bn = model.init_bn[1]
        bn.running_mean.normal_(-40, 5)
        bn.running_var.uniform_(50, 150)
    return model


# -- parity with the original implementation ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["1s", "10s"])
def test_tokens_and_probabilities_match_original(classifier, reference, name):
    _, tensors, _ = reference
    features = LaacFeatureExtractor()(tensors[f"wave_{name}"], sampling_rate=16000)
    torch.testing.assert_close(features["input_features"][0], tensors[f"mel_{name}"], atol=1e-3, rtol=0)
    with torch.no_grad():
        out = classifier(**features)
    torch.testing.assert_close(out.last_hidden_state[0], tensors[f"tokens_{name}"], atol=1e-4, rtol=0)
    torch.testing.assert_close(out.probabilities[0], tensors[f"logits_{name}"], atol=1e-5, rtol=0)
    assert out.attention_mask.sum().item() == tensors[f"tokens_{name}"].shape[0]


def test_intermediates_match_original(classifier, reference):
    _, tensors, _ = reference
    captured = {}
    encoder = classifier.encoder
    hooks = [
        encoder.init_bn.register_forward_hook(lambda m, i, o: captured.update(bn=o[0, :, 0])),
        encoder.pos_drop.register_forward_hook(lambda m, i, o: captured.update(embed=o[0])),
        encoder.blocks[0].register_forward_hook(lambda m, i, o: captured.update(block0=o[0])),
    ]
    with torch.no_grad():
        out = classifier(tensors["mel_1s"][None], output_hidden_states=True)
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(captured["bn"], tensors["bn_1s"], atol=1e-4, rtol=0)
    torch.testing.assert_close(captured["embed"], tensors["embed_1s"], atol=1e-4, rtol=0)
    torch.testing.assert_close(captured["block0"], tensors["block0_1s"], atol=1e-4, rtol=0)
    assert len(out.hidden_states) == 3  # embeddings + 2 blocks
    torch.testing.assert_close(out.hidden_states[1][0], tensors["block0_1s"], atol=1e-4, rtol=0)


# -- length rules -----------------------------------------------------------------------------------------------


def test_token_count_helper():
    ced, dasheng = CedConfig(), DashengConfig()
    assert [ced_num_tokens(n, ced) for n in (1001, 3001, 2024, 5, 1012, 1013, 16, 15)] == [
        248,
        756,
        504,
        4,
        252,
        504,
        4,
        4,
    ]
    assert chunk_layout(2024, ced) == [(63, 63), (63, 63)]
    assert [dasheng_num_tokens(n, dasheng) for n in (1001, 3001, 1008, 1010, 2, 100)] == [250, 750, 252, 252, 1, 25]
    assert chunk_layout(1100, dasheng) == [(252, 252), (252, 23)]
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        ced_num_tokens(0, ced)


def test_exact_multiple_keeps_last_chunk(classifier):
    mel = _mel(2024)
    with torch.no_grad():
        whole = classifier.encoder(mel).last_hidden_state[0]
        second = classifier.encoder(mel[..., 1012:]).last_hidden_state[0]
    assert whole.shape == (504, 64)
    torch.testing.assert_close(whole[252:], second, atol=1e-5, rtol=0)


def test_drop_exact_multiple_chunk_switch_reproduces_the_original(classifier):
    """`drop_exact_multiple_chunk=True`: a clip of exactly k x 1012 frames (k > 1) loses its last chunk, as in the
    original code; other lengths are unaffected, and the processor's count helper agrees with the encoder."""
    config = CedConfig(drop_exact_multiple_chunk=True)
    assert [ced_num_tokens(n, config) for n in (1012, 2024, 3036, 2025, 1001)] == [252, 252, 504, 756, 248]
    mels = [_mel(2024), _mel(1500, seed=1)]
    features, mask = _batch(mels)
    classifier.encoder.config.drop_exact_multiple_chunk = True
    try:
        with torch.no_grad():
            dropped = classifier.encoder(features, feature_attention_mask=mask)
            first_chunk = classifier.encoder(mels[0][..., :1012]).last_hidden_state[0]
    finally:
        classifier.encoder.config.drop_exact_multiple_chunk = False
    assert dropped.attention_mask.sum(-1).tolist() == [252, 504]
    torch.testing.assert_close(dropped.last_hidden_state[0, :252], first_chunk, atol=1e-5, rtol=0)


def test_short_clip_pads_with_zeros_after_batchnorm(classifier):
    bn = classifier.encoder.init_bn
    # frames holding this value become exactly 0 after the BatchNorm, i.e. what padding after the norm gives
    zero_after_bn = bn.running_mean - bn.bias * torch.sqrt(bn.running_var + bn.eps) / bn.weight
    short = _mel(5)
    padded = torch.cat([short, zero_after_bn[None, :, None].expand(1, 64, 11)], dim=-1)
    with torch.no_grad():
        out_short = classifier.encoder(short)
        out_padded = classifier.encoder(padded)
    assert out_short.last_hidden_state.shape == (1, 4, 64)
    torch.testing.assert_close(out_short.last_hidden_state, out_padded.last_hidden_state, atol=1e-4, rtol=0)


@pytest.mark.parametrize("lengths", [[1100, 300, 7], [2024, 1012, 1500], [120, 64, 200]])
def test_ced_batch_equals_alone(classifier, lengths):
    mels = [_mel(n, seed=i) for i, n in enumerate(lengths)]
    features, mask = _batch(mels)
    with torch.no_grad():
        batched = classifier(features, feature_attention_mask=mask)
        alone = [classifier(mel) for mel in mels]
    counts = [ced_num_tokens(n, classifier.config) for n in lengths]
    assert batched.attention_mask.sum(-1).tolist() == counts
    assert batched.last_hidden_state.shape[1] == max(counts)
    for i, single in enumerate(alone):
        torch.testing.assert_close(
            batched.last_hidden_state[i, : counts[i]],
            single.last_hidden_state[0],
            atol=1e-5,
            rtol=0,
        )
        torch.testing.assert_close(batched.probabilities[i], single.probabilities[0], atol=1e-5, rtol=0)
        assert torch.all(batched.last_hidden_state[i, counts[i] :] == 0)


def test_max_pooling_head(reference, classifier):
    config, _, weights = reference
    model = CedForAudioClassification(CedConfig(**{**config, "pooling": "max"})).eval()
    model.load_state_dict(weights, strict=True)  # the same weights: pooling adds none
    lengths = [1100, 300, 64]
    mels = [_mel(n, seed=i) for i, n in enumerate(lengths)]
    features, mask = _batch(mels)
    with torch.no_grad():
        batched = model(features, feature_attention_mask=mask)
        alone = [model(mel) for mel in mels]
        mean_pooled = classifier(features, feature_attention_mask=mask)
    counts = batched.attention_mask.sum(-1).tolist()
    for i, single in enumerate(alone):
        # the clip's logit of each class is its largest token logit, over all of the clip's chunks
        token_logits = model.outputlayer(batched.last_hidden_state[i, : counts[i]])
        torch.testing.assert_close(batched.logits[i], token_logits.max(0).values, atol=1e-5, rtol=0)
        torch.testing.assert_close(batched.logits[i], single.logits[0], atol=1e-5, rtol=0)
    assert not torch.allclose(batched.logits, mean_pooled.logits)
    with pytest.raises(ValueError, match="pooling 'attention' is not one of"):
        CedConfig(**{**config, "pooling": "attention"})


def test_dasheng_batch_equals_alone_and_shapes():
    model = _tiny_dasheng()
    assert model.time_pos_embed.shape == (
        1,
        32,
        1,
        252,
    ) and model.freq_pos_embed.shape == (1, 32, 1, 1)
    lengths = [1100, 101, 2]
    mels = [_mel(n, seed=i) for i, n in enumerate(lengths)]
    features, mask = _batch(mels)
    with torch.no_grad():
        batched = model(features, feature_attention_mask=mask)
        alone = [model(mel).last_hidden_state[0] for mel in mels]
    assert batched.attention_mask.sum(-1).tolist() == [
        275,
        25,
        1,
    ]  # 25 tokens per second
    for i, single in enumerate(alone):
        torch.testing.assert_close(batched.last_hidden_state[i, : single.shape[0]], single, atol=1e-5, rtol=0)
    with torch.no_grad():
        assert model(_mel(1001)).last_hidden_state.shape == (1, 250, 32)


def test_dasheng_keys_and_presets():
    keys = set(_tiny_dasheng().state_dict())
    assert {
        "init_bn.1.weight",
        "init_bn.1.running_var",
        "patch_embed.proj.weight",
        "blocks.1.attn.qkv.weight",
    } <= keys
    big = DashengConfig(name="dasheng-0.6B")
    assert (big.embed_dim, big.depth, big.num_heads) == (1280, 32, 16)
    nested = DashengConfig(
        name="dasheng-base",
        encoder_kwargs={"embed_dim": 64, "depth": 2, "num_heads": 4},
    )
    assert (
        nested.embed_dim,
        nested.depth,
        nested.patch_size,
        nested.target_length,
    ) == (64, 2, [64, 4], 1008)


# -- training behaviour -------------------------------------------------------------------------------------------


def test_batchnorm_frozen_in_train_mode(reference):
    config, _, weights = reference
    model = CedForAudioClassification(CedConfig(**config))
    model.load_state_dict(weights)
    model.train()
    assert model.training and model.encoder.training and not model.encoder.init_bn.training
    before = model.encoder.init_bn.running_mean.clone()
    features, mask = _batch([_mel(1100), _mel(50, 1)])
    out = model(features, feature_attention_mask=mask, labels=torch.zeros(2, 527))
    out.loss.backward()
    assert torch.equal(model.encoder.init_bn.running_mean, before)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.encoder.init_bn.weight.grad is not None  # affine BN weights still train
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(features, feature_attention_mask=mask).logits, out.logits.detach())


def test_unfuse_and_fuse_qkv_keep_outputs(classifier):
    mel = _mel(300)
    original_keys = set(classifier.state_dict())
    original = {key: value.clone() for key, value in classifier.state_dict().items()}
    with torch.no_grad():
        fused = classifier.encoder(mel).last_hidden_state
        classifier.encoder.unfuse_qkv()
        keys = set(classifier.state_dict())
        unfused = classifier.encoder(mel).last_hidden_state
        classifier.encoder.fuse_qkv()
        refused = classifier.encoder(mel).last_hidden_state
    assert "encoder.blocks.0.attn.q_proj.weight" in keys and "encoder.blocks.0.attn.qkv.weight" not in keys
    torch.testing.assert_close(unfused, fused, atol=1e-6, rtol=0)
    # splitting and re-fusing only copies: every weight comes back bit for bit; the outputs are computed from new
    # tensors (another allocation), so they are compared at float32 kernel tolerance
    assert all(torch.equal(value, original[key]) for key, value in classifier.state_dict().items())
    assert_kernel_close(refused, fused)
    assert set(classifier.state_dict()) == original_keys


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    model = CedModel(CedConfig(embed_dim=32, depth=2, num_heads=4)).train()
    features, mask = _batch([_mel(1100), _mel(40, 1)])

    def gradients() -> list[torch.Tensor]:
        model.zero_grad()
        model(features, feature_attention_mask=mask).last_hidden_state.square().sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = gradients()
    model.gradient_checkpointing_enable()
    for with_checkpointing, without in zip(gradients(), plain):
        torch.testing.assert_close(with_checkpointing, without)


def test_lora_on_unfused_q_and_v():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    encoder = CedModel(CedConfig(embed_dim=32, depth=2, num_heads=4))
    mel = _mel(200)
    with torch.no_grad():
        expected = encoder(mel).last_hidden_state
    encoder.unfuse_qkv()
    lora = get_peft_model(encoder, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    trainable = [name for name, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert sum(".q_proj." in name for name in trainable) == 4 and not any("k_proj" in n for n in trainable)
    with torch.no_grad():
        torch.testing.assert_close(lora(input_features=mel).last_hidden_state, expected, atol=1e-6, rtol=0)


# -- saving and loading -------------------------------------------------------------------------------------------


def test_save_and_load_round_trip(classifier, tmp_path):
    classifier.save_pretrained(tmp_path)
    loaded = load_strictly(CedForAudioClassification, tmp_path).eval()
    encoder_only = load_strictly(CedModel, tmp_path).eval()
    mel = _mel(400)
    with torch.no_grad():
        expected = classifier(mel)
        # weights: bit for bit; outputs: another instance (memory-mapped weights), float32 kernel tolerance
        for key, value in classifier.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
        assert_kernel_close(loaded(mel).probabilities, expected.probabilities)
        assert_kernel_close(encoder_only(mel).last_hidden_state, expected.last_hidden_state)


def test_tolerances_catch_a_changed_weight(classifier, tmp_path):
    """The float32 kernel tolerance of the round trip above still fails on a real bug: one weight off by 1e-3."""
    classifier.save_pretrained(tmp_path)
    broken = load_strictly(CedForAudioClassification, tmp_path).eval()
    with torch.no_grad():
        broken.encoder.blocks[0].attn.qkv.weight[0, 0] += 1e-3
        expected = classifier(_mel(400))
        with pytest.raises(AssertionError, match="Tensor-likes are not close"):
            assert_kernel_close(broken(_mel(400)).last_hidden_state, expected.last_hidden_state)


def test_loads_mispeech_format_folder(reference, tmp_path):
    _config, tensors, weights = reference
    mispeech_config = {
        "architectures": ["CedForAudioClassification"],
        "model_type": "ced",
        "name": "ced-base",
        "attn_drop_rate": 0.0,
        "depth": 2,
        "drop_path_rate": 0.0,
        "drop_rate": 0.0,
        "embed_dim": 64,
        "eval_avg": "mean",
        "mlp_ratio": 4.0,
        "num_heads": 4,
        "outputdim": 527,
        "patch_size": 16,
        "patch_stride": 16,
        "pooling": "mean",
        "qkv_bias": True,
        "target_length": 1012,
        "center": True,
        "f_max": 8000,
        "f_min": 0,
        "hop_size": 160,
        "n_fft": 512,
        "n_mels": 64,
        "pad_last": True,
        "win_size": 512,
    }
    (tmp_path / "config.json").write_text(json.dumps(mispeech_config))
    save_file(
        {k: v.contiguous() for k, v in weights.items()},
        str(tmp_path / "model.safetensors"),
    )
    model = load_strictly(CedForAudioClassification, tmp_path).eval()
    assert model.config.embed_dim == 64  # explicit fields win over the "ced-base" preset name
    with torch.no_grad():
        probabilities = model(tensors["mel_10s"][None]).probabilities[0]
    torch.testing.assert_close(probabilities, tensors["logits_10s"], atol=1e-5, rtol=0)


def test_bad_checkpoint_tensor_is_named(reference, tmp_path):
    config, _, weights = reference
    CedConfig(**config).save_pretrained(tmp_path)
    broken = {k: v.contiguous() for k, v in weights.items()}
    broken["encoder.norm.weight"] = torch.ones(63)
    save_file(broken, str(tmp_path / "model.safetensors"))
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):  # transformers refuses a mis-shaped tensor
        CedForAudioClassification.from_pretrained(tmp_path)
    _, problems = loading_problems(CedForAudioClassification, tmp_path, ignore_mismatched_sizes=True)
    assert problems == {"mismatched_keys": ["encoder.norm.weight"]}
    del broken["encoder.norm.weight"]
    save_file(broken, str(tmp_path / "model.safetensors"))
    assert loading_problems(CedForAudioClassification, tmp_path)[1] == {"missing_keys": ["encoder.norm.weight"]}


def test_convert_original_checkpoint(reference, tmp_path):
    _config, tensors, weights = reference
    original = {}
    for key, value in weights.items():  # back to the original AudioTransformer layout
        key = key.removeprefix("encoder.").replace("init_bn.", "init_bn.1.")
        original[key] = value
    original["front_end.0.mel_scale.fb"] = torch.zeros(257, 64)
    original["front_end.0.spectrogram.window"] = torch.hann_window(512)
    torch.save(original, tmp_path / "ced.pt")
    convert_checkpoint(str(tmp_path / "ced.pt"), str(tmp_path / "hf"), num_heads=4)
    model = load_strictly(CedForAudioClassification, tmp_path / "hf").eval()
    assert (model.config.embed_dim, model.config.depth, model.config.outputdim) == (
        64,
        2,
        527,
    )
    with torch.no_grad():
        probabilities = model(tensors["mel_1s"][None]).probabilities[0]
    torch.testing.assert_close(probabilities, tensors["logits_1s"], atol=1e-5, rtol=0)


def test_convert_original_dasheng_dump(tmp_path):
    model = _tiny_dasheng()
    state = {key: value for key, value in model.state_dict().items()}
    torch.save(
        {"model": state, "config": {"num_heads": 4, "target_length": 1008}},
        tmp_path / "dasheng.pt",
    )
    convert_checkpoint(str(tmp_path / "dasheng.pt"), str(tmp_path / "hf"), model_type="dasheng")
    loaded = load_strictly(DashengModel, tmp_path / "hf").eval()
    assert loaded.config.num_heads == 4 and loaded.config.patch_size == [64, 4]
    mel = _mel(500)
    with torch.no_grad():
        assert_kernel_close(loaded(mel).last_hidden_state, model(mel).last_hidden_state)
