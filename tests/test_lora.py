"""LoRA through peft: what trains, what stays frozen, merging, and the full-shape parameter count."""

import pytest
import torch
from laac.configuration_laac import LaacConfig
from laac.training.lora import (
    LaacLoraArguments,
    apply_lora,
    count_trainable_parameters,
    lora_arguments_from_adapter,
    merge_lora,
)
from laac.modeling_laac import LaacForConditionalGeneration

from tests.laac_tester import CAPTIONS, make_audio, tiny_config, tiny_model, tiny_processor


def _batch(processor):
    return processor([make_audio(2.0, 0), make_audio(4.0, 1)], text_target=CAPTIONS[:2], sampling_rate=16000)


def test_only_adapters_qformer_and_projection_train():
    config = tiny_config()
    model, processor = tiny_model(config), tiny_processor(config)
    frozen_before = {k: v.clone() for k, v in model.state_dict().items()}
    peft_model = apply_lora(model)
    peft_model.train()
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable, "nothing to train"
    for name in trainable:
        assert "lora_" in name or ".qformer." in name or ".language_projection." in name, name
    assert any("audio_tower" in n and "q_proj.lora_A" in n for n in trainable)
    assert any("audio_tower" in n and "v_proj.lora_B" in n for n in trainable)
    assert not any("k_proj.lora" in n for n in trainable)
    assert any("language_model" in n and "q_proj.lora_A" in n for n in trainable)

    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    loss = peft_model(**_batch(processor)).loss
    loss.backward()
    for name, param in peft_model.named_parameters():
        assert (param.grad is not None) == param.requires_grad or "lora_dropout" in name, name
    optimizer.step()
    # base weights unchanged (compare through the unwrapped names)
    base = peft_model.get_base_model()
    tower = base.audio_tower.blocks[0].attn
    torch.testing.assert_close(
        torch.cat([tower.q_proj.base_layer.weight, tower.k_proj.weight, tower.v_proj.base_layer.weight]),
        frozen_before["audio_tower.blocks.0.attn.qkv.weight"],
    )
    torch.testing.assert_close(
        base.language_model.model.layers[0].mlp.up_proj.weight,
        frozen_before["language_model.model.layers.0.mlp.up_proj.weight"],
    )


def test_per_side_switches():
    config = tiny_config()
    peft_model = apply_lora(tiny_model(config), LaacLoraArguments(lora_audio=False))
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert not any("audio_tower" in n for n in names) and any("language_model" in n for n in names)
    peft_model = apply_lora(tiny_model(config), LaacLoraArguments(lora_text=False))
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert not any("language_model" in n for n in names) and any("audio_tower" in n for n in names)


def test_merge_equals_unmerged_and_restores_checkpoint_layout():
    config = tiny_config()
    model, processor = tiny_model(config), tiny_processor(config)
    keys_before = set(model.state_dict())
    peft_model = apply_lora(model)
    # make the adapters non-trivial (lora_B starts at zero)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.1)
    peft_model.eval()
    batch = _batch(processor)
    with torch.no_grad():
        unmerged = peft_model(**batch).logits
    merged = merge_lora(peft_model).eval()
    assert type(merged) is LaacForConditionalGeneration
    assert set(merged.state_dict()) == keys_before  # fused qkv again, no peft names
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, unmerged, atol=1e-5, rtol=1e-4)


def test_full_submission_4_trainable_count_matches_original():
    """Built on the meta device: Q-Former 18.9M, projection 3.15M, LLM LoRA 4.19M, CED LoRA 0.29M = 26.5M."""
    with torch.device("meta"):
        model = LaacForConditionalGeneration(LaacConfig())
    counts = count_trainable_parameters(apply_lora(model))
    assert counts["qformer"] == 18_905_856
    assert counts["language_projection"] == 768 * 4096 + 4096
    assert counts["text_lora"] == 32 * 2 * (4096 * 8 + 8 * 4096)
    assert counts["audio_lora"] == 12 * 2 * (768 * 8 + 8 * 768)
    assert counts["other"] == 0
    assert counts["total"] == pytest.approx(26.5e6, rel=0.01)


@pytest.mark.parametrize("audio_batchnorm", ["frozen", "update"])
def test_continued_adapters_keep_the_full_shape_trainable_count(tmp_path, audio_batchnorm):
    """Stage 2 wraps the model with stage 1's own adapter settings: 26,544,896 trainable at full shape (meta)."""
    with torch.device("meta"):
        stage1 = apply_lora(LaacForConditionalGeneration(LaacConfig()), LaacLoraArguments(audio_batchnorm=audio_batchnorm))
    stage1.peft_config["default"].save_pretrained(str(tmp_path))  # adapter_config.json, as stage 1 saves it
    arguments = lora_arguments_from_adapter(str(tmp_path))
    assert (arguments.lora_r, arguments.lora_alpha, arguments.audio_batchnorm) == (8, 32, audio_batchnorm)
    with torch.device("meta"):
        stage2 = apply_lora(LaacForConditionalGeneration(LaacConfig()), arguments)
    assert count_trainable_parameters(stage2)["total"] == count_trainable_parameters(stage1)["total"] == 26_544_896


def test_batchnorm_statistics_frozen_or_updating():
    """CED's input BatchNorm: frozen statistics by default; "update" normalises by the batch and moves them (0.01)."""
    config = tiny_config()
    features = torch.randn(2, config.audio_config.n_mels, 200) * 5 + 3  # (B, n_mels, T), far from the stats
    for mode in ("frozen", "update"):
        model = tiny_model(config)
        tower = model.audio_tower
        tower.set_batchnorm_statistics(mode)
        model.train()
        before = tower.init_bn.running_mean.clone()
        tower(features)
        moved = (tower.init_bn.running_mean - before).abs().max().item()
        if mode == "frozen":
            assert not tower.init_bn.training and moved == 0.0
        else:
            assert tower.init_bn.training and tower.init_bn.momentum == 0.01
            batch_mean = features.mean(dim=(0, 2))  # the BatchNorm input is the mel (B, n_mels, 1, T)
            torch.testing.assert_close(tower.init_bn.running_mean, 0.99 * before + 0.01 * batch_mean)
        model.eval()
        assert not tower.init_bn.training  # evaluation always uses the running statistics
    with pytest.raises(ValueError, match="frozen"):
        tower.set_batchnorm_statistics("learned")
    # with updating statistics, LoRA training saves init_bn (its statistics) but keeps its affine frozen
    peft_model = apply_lora(tiny_model(config), LaacLoraArguments(audio_batchnorm="update"))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad and "init_bn" in n]
    assert trainable == [] and "audio_tower.init_bn" in peft_model.peft_config["default"].modules_to_save
