"""train.py on a tiny model: SIGKILL + resume equals an uninterrupted run, evaluation, export, Hub upload, DDP."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from laac.data.loaders import load_clotho
from laac.modeling_laac import LaacForConditionalGeneration
from laac.processing_laac import LaacProcessor
from laac.data.synthetic_corpus import write_corpus
from laac.train import (
    ModelArguments,
    build_model_and_processor,
    evaluate_model,
    last_complete_checkpoint,
    parse_args,
    push_export,
    warmup_steps_for,
)
from safetensors import safe_open
from transformers import TrainerCallback

from tests.laac_tester import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_PY = os.path.join(REPO, "train.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    write_corpus(str(root / "corpus"), {"development": 6, "validation": 3}, seed=0, num_workers=1)
    tiny_config().to_json_file(str(root / "tiny.json"))
    return root


def _args(root, output_dir, *extra):
    corpus = root / "corpus"
    return [
        "--config_name", str(root / "tiny.json"),
        "--train_sources", f"clotho:csv={corpus}/clotho_captions_development.csv,audio_dir={corpus}/development",
        "--output_dir", str(output_dir),
        "--do_train", "--per_device_train_batch_size", "4", "--max_train_seconds", "2",
        "--learning_rate", "3e-3", "--warmup_epochs", "0.3", "--lr_scheduler_type", "cosine",
        "--logging_steps", "1", "--seed", "7", "--report_to", "none", "--disable_tqdm", "true",
        *extra,
    ]  # fmt: skip


def _eval_args(root):
    corpus = root / "corpus"
    source = f"clotho:csv={corpus}/clotho_captions_validation.csv,audio_dir={corpus}/validation"
    return ["--eval_sources", source, "--eval_metrics", "bleu_1,cider_d", "--generation_max_new_tokens", "8"]


def _losses(output_dir):
    with open(os.path.join(output_dir, "trainer_state.json")) as f:
        history = json.load(f)["log_history"]
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


@pytest.fixture(scope="module")
def runs(setup):
    """A run SIGKILLed after its first checkpoint and resumed, and the same run uninterrupted (+ eval, export)."""
    from laac.train import main

    killed, straight = setup / "killed", setup / "straight"
    common = ["--max_steps", "12", "--save_steps", "3"]
    process = subprocess.Popen(
        [sys.executable, TRAIN_PY, *_args(setup, killed, *common)],
        env=ENV, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while last_complete_checkpoint(str(killed)) is None and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    stderr = process.communicate()[1]
    assert process.returncode == -signal.SIGKILL, f"the run ended before it was killed:\n{stderr[-3000:]}"
    checkpoint = last_complete_checkpoint(str(killed))
    main(_args(setup, killed, *common, "--resume_from_checkpoint", "last"))
    export = setup / "export"
    results = main(_args(setup, straight, *common, *_eval_args(setup), "--do_eval", "--export_dir", str(export)))
    return {"killed": killed, "straight": straight, "checkpoint": checkpoint, "export": export, "results": results}


def test_sigkill_then_resume_continues_the_same_loss_curve(runs):
    resumed, straight = _losses(runs["killed"]), _losses(runs["straight"])
    assert sorted(straight) == list(range(1, 13)) and sorted(resumed) == sorted(straight)
    assert int(runs["checkpoint"].rsplit("-", 1)[1]) < 12  # the resume really restarted mid-run
    for step in straight:
        assert resumed[step] == pytest.approx(straight[step], rel=1e-5, abs=1e-6), step
    assert straight[12] < straight[1]  # and it trains


def test_checkpoints_hold_only_trained_tensors(runs):
    checkpoint = runs["checkpoint"]
    files = set(os.listdir(checkpoint))
    assert {"adapter_model.safetensors", "optimizer.pt", "rng_state.pth", "trainer_state.json"} <= files
    assert "model.safetensors" not in files
    with safe_open(os.path.join(checkpoint, "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert all("lora_" in k or ".qformer." in k or ".language_projection." in k for k in keys), keys
    assert any("audio_tower" in k and "lora_A" in k for k in keys) and any("language_model" in k for k in keys)


def test_evaluation_writes_metrics_and_the_export_loads_without_peft(runs, setup):
    straight, export = runs["straight"], runs["export"]
    assert torch.isfinite(torch.tensor(runs["results"]["eval"]["eval_loss"]))
    with open(straight / "eval_metrics_step_12.json") as f:
        scores = json.load(f)
    assert scores["num_clips"] == 3 and set(scores["metrics"]) == {"bleu_1", "cider_d", "unavailable"}
    with open(straight / "eval_predictions_step_12.json") as f:
        predictions = json.load(f)
    assert [len(p["references"]) for p in predictions] == [5, 5, 5]
    # the scores are those of the written predictions
    from laac.evaluation.metrics import compute_dcase_metrics

    again = compute_dcase_metrics([p["prediction"] for p in predictions], [p["references"] for p in predictions],
                                  metrics=["bleu_1", "cider_d"])  # fmt: skip
    assert again["bleu_1"] == pytest.approx(scores["metrics"]["bleu_1"]) and again["cider_d"] == pytest.approx(scores["metrics"]["cider_d"])

    files = set(os.listdir(export))
    expected = {"config.json", "generation_config.json", "model.safetensors", "README.md", "processor_config.json"}
    expected |= {"tokenizer.json", "configuration_laac.py", "modeling_laac.py", "processing_laac.py"}
    expected |= {"feature_extraction_laac.py", "configuration_ced.py", "modeling_ced.py", "pipeline_laac.py"}
    assert expected <= files and not any(name.startswith("adapter_") for name in files)
    card = (export / "README.md").read_text()
    assert "| cider_d |" in card and "| loss |" in card and "warm-up" in card and "clotho:csv=" in card

    # the merged export generates what the LoRA-wrapped model generated at the last evaluation
    model = LaacForConditionalGeneration.from_pretrained(export)
    processor = LaacProcessor.from_pretrained(export)
    clips = load_clotho(f"{setup}/corpus/clotho_captions_validation.csv", f"{setup}/corpus/validation")
    result = evaluate_model(model, processor, clips, generation_kwargs={"max_new_tokens": 8}, metrics=None)
    assert [p["prediction"] for p in result.predictions] == [p["prediction"] for p in predictions]

    script = textwrap.dedent(
        """
        import json, sys
        sys.modules["laac"] = None
        sys.modules["peft"] = None  # the export must not need peft (or the laac package)
        import soundfile as sf
        from transformers import AutoModel, AutoProcessor
        model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)
        audio, rate = sf.read(sys.argv[2], dtype="float32")
        inputs = processor([audio], sampling_rate=rate)
        print(json.dumps(processor.decode_captions(model.generate(**inputs, max_new_tokens=8), inputs["input_ids"])))
        """
    )
    wav = f"{setup}/corpus/validation/{predictions[0]['id']}"
    out = subprocess.run(
        [sys.executable, "-c", script, str(export), wav],
        check=False,
        env=ENV,
        cwd=setup,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [predictions[0]["prediction"]]


def test_evaluate_only_mode_and_hub_upload(runs, setup, monkeypatch):
    from laac.train import main

    output_dir = setup / "eval_only"
    argv = ["--model_name_or_path", str(runs["export"]), "--output_dir", str(output_dir), "--do_eval"]
    results = main([*argv, *_eval_args(setup), "--report_to", "none"])
    with open(runs["straight"] / "eval_metrics_step_12.json") as f:
        trained = json.load(f)["metrics"]
    assert results["eval"]["eval_cider_d"] == pytest.approx(trained["cider_d"])
    assert (output_dir / "eval_metrics_step_0.json").exists()

    import huggingface_hub

    calls = {}
    monkeypatch.setattr(
        huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: calls.setdefault("repo", repo_id)
    )
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda self, **kw: calls.setdefault("upload", kw))
    push_export(str(runs["export"]), "someone/laac-tiny")
    assert calls["repo"] == "someone/laac-tiny" and calls["upload"]["folder_path"] == str(runs["export"])
    assert "adapter_config.json" in calls["upload"]["delete_patterns"]


def test_config_file_with_flag_overrides_and_warmup(setup):
    _, data_args, lora_args, training_args = parse_args(
        [os.path.join(REPO, "presets", "finetune.yaml"), "--output_dir", str(setup / "x"), "--lora_r", "4"]
    )
    assert training_args.learning_rate == 5e-6 and training_args.num_train_epochs == 20
    assert training_args.per_device_train_batch_size == 10 and training_args.weight_decay == 1e-6
    assert training_args.remove_unused_columns is False and lora_args.lora_r == 4
    assert data_args.train_sources[0]["kind"] == "clotho"
    assert data_args.max_train_seconds == 10.0  # the report's crop; the original code's Clotho config used 30 s
    crop_30 = parse_args([os.path.join(REPO, "presets", "finetune.yaml"), "--max_train_seconds", "30"])[1]
    assert crop_30.max_train_seconds == 30.0
    # 0.3 epoch of Clotho development (3839 clips x 5 captions) at batch 10: ceil(0.3 * 1920) steps
    assert warmup_steps_for(training_args, 3839 * 5) == 576
    _, _, _, pretrain = parse_args([os.path.join(REPO, "presets", "pretrain.yaml"), "--output_dir", str(setup / "y")])
    assert (pretrain.learning_rate, pretrain.per_device_train_batch_size, pretrain.num_train_epochs) == (5e-5, 48, 10)
    assert pretrain.lr_scheduler_type == "cosine" and pretrain.max_grad_norm == 1.0
    with pytest.raises(ValueError, match="unknown keys"):
        bad = setup / "bad.yaml"
        bad.write_text("learning_rat: 1.0\n")
        parse_args([str(bad)])


def test_prompt_tokenization_flag_sets_the_processor(tmp_path):
    config_path = tmp_path / "config.json"
    tiny_config().to_json_file(config_path)
    captions = ["a dog barks", "rain falls on a roof"]
    _, default = build_model_and_processor(ModelArguments(config_name=str(config_path)), captions)
    assert default.prompt_tokenization == "joint"  # a word-level tokenizer of the captions
    args = ModelArguments(config_name=str(config_path), prompt_tokenization="separate")
    assert build_model_and_processor(args, captions)[1].prompt_tokenization == "separate"
    with pytest.raises(ValueError, match="prompt_tokenization='both' is not one of"):
        build_model_and_processor(ModelArguments(config_name=str(config_path), prompt_tokenization="both"), captions)


DDP_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, os, sys
    from transformers import TrainerCallback
    from laac.train import main

    class TrainedWeightsHash(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):
            digest = hashlib.sha256()
            for name, param in sorted(model.named_parameters()):
                if param.requires_grad:
                    digest.update(name.encode() + param.detach().cpu().numpy().tobytes())
            record = {"hash": digest.hexdigest(), "world_size": args.world_size, "steps": state.global_step}
            with open(os.path.join(args.output_dir, f"rank{os.environ['RANK']}.json"), "w") as f:
                json.dump(record, f)

    main(sys.argv[1:], callbacks=[TrainedWeightsHash()])
    """
)


def test_ddp_two_cpu_processes_agree(setup):
    script = setup / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    output_dir = setup / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    # --use_cpu: without it, accelerate does not start a process group on a machine without GPUs (gloo on CPU)
    extra = ["--num_train_epochs", "1", "--per_device_train_batch_size", "2", "--save_strategy", "no", "--use_cpu"]
    args = _args(setup, output_dir, *extra)
    out = subprocess.run(
        [*command, *args], check=False, env=ENV, cwd=REPO, capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr[-4000:]
    ranks = [json.loads((output_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    # 30 caption examples, 2 per device on 2 ranks: 8 steps (one process would take 15); same weights on both
    assert ranks[0]["steps"] == ranks[1]["steps"] == 8
    assert ranks[0]["hash"] == ranks[1]["hash"]
    assert ranks[0]["hash"] != hashlib.sha256().hexdigest()


def test_full_finetune_trains_every_weight_without_peft(setup):
    """--full_finetune (models trained from scratch, like the demo): no LoRA wrapper, every weight moves."""
    from laac.train import main

    out = setup / "full"
    main(_args(setup, out, "--max_steps", "2", "--full_finetune", "true", "--save_strategy", "no"))
    trained = LaacForConditionalGeneration.from_pretrained(str(out))
    assert not (out / "adapter_model.safetensors").exists()
    from transformers import set_seed

    set_seed(7)  # train.py builds the random model right after set_seed(--seed 7)
    initial = LaacForConditionalGeneration(trained.config).state_dict()
    still = {name for name, param in trained.named_parameters() if torch.equal(param, initial[name])}
    # Every weight trained, but the Q-Former's self-attention query/key: with one query per window the softmax
    # runs over a single key and is 1 whatever they are, so they get no gradient (in the report's model too).
    no_gradient = {
        f"qformer.transformer.encoder.layer.{i}.attention.attention.{p}.{t}"
        for i in range(2) for p in ("query", "key") for t in ("weight", "bias")
    }  # fmt: skip
    assert still == no_gradient, still ^ no_gradient
    torch.testing.assert_close(trained.audio_tower.init_bn.running_mean, initial["audio_tower.init_bn.running_mean"])


def test_full_finetune_with_a_frozen_audio_tower(setup):
    from transformers import set_seed

    from laac.train import main

    out = setup / "frozen_audio"
    args = ["--max_steps", "2", "--full_finetune", "true", "--freeze_audio_tower", "true", "--save_strategy", "no"]
    main(_args(setup, out, *args))
    trained = LaacForConditionalGeneration.from_pretrained(str(out))
    set_seed(7)
    initial = LaacForConditionalGeneration(trained.config).state_dict()
    for name, param in trained.named_parameters():
        assert torch.equal(param, initial[name]) == name.startswith("audio_tower.") or "attention.attention" in name


def test_group_by_length_uses_audio_durations(setup):
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from laac.data.loaders import CaptionExamples, LaacDataCollator
    from laac.train import LaacTrainer, LaacTrainingArguments

    corpus = setup / "corpus"
    clips = load_clotho(f"{corpus}/clotho_captions_development.csv", f"{corpus}/development")
    examples = CaptionExamples(clips, seed=0)
    config = tiny_config()
    args = LaacTrainingArguments(
        output_dir=str(setup / "sampler"), train_sampling_strategy="group_by_length", per_device_train_batch_size=5,
        use_cpu=True, report_to=[],
    )  # fmt: skip
    trainer = LaacTrainer(
        model=LaacForConditionalGeneration(config), args=args, train_dataset=examples,
        data_collator=LaacDataCollator(None, max_seconds=4.0),
    )  # fmt: skip
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, LengthGroupedSampler)
    assert sampler.lengths == examples.lengths(4.0) and max(sampler.lengths) <= 4.0
    assert sorted(sampler) == list(range(len(examples)))


def test_attn_implementation_flag_switches_kernels_not_results(setup):
    from transformers import set_seed

    from laac.train import ModelArguments, build_model_and_processor
    from tests.laac_tester import make_audio

    captions = [c for clip in load_clotho(
        f"{setup}/corpus/clotho_captions_development.csv", f"{setup}/corpus/development"
    )["captions"] for c in clip]  # fmt: skip
    losses = {}
    for implementation in ("sdpa", "eager"):
        set_seed(0)
        model_args = ModelArguments(config_name=str(setup / "tiny.json"), attn_implementation=implementation)
        model, processor = build_model_and_processor(model_args, captions)
        assert model.language_model.config._attn_implementation == implementation
        assert model.qformer.transformer.config._attn_implementation == implementation
        batch = processor(
            audio=[make_audio(3.0), make_audio(1.5, seed=1)], text_target=captions[:2], sampling_rate=16000,
            return_tensors="pt",
        )  # fmt: skip
        losses[implementation] = model.eval()(**batch).loss
    torch.testing.assert_close(losses["eager"], losses["sdpa"], atol=1e-5, rtol=1e-5)


def test_audio_token_cache_is_exact_and_encodes_each_clip_once(setup):
    from laac.training.audio_token_cache import AudioTokenCache
    from laac.train import enable_audio_token_cache
    from tests.laac_tester import make_audio, tiny_model, tiny_processor

    config = tiny_config()
    model, processor = tiny_model(config), tiny_processor(config)
    model.audio_tower.requires_grad_(False)
    clips = [make_audio(3.0), make_audio(1.5, seed=1), make_audio(2.0, seed=2)]
    batch = processor(audio=clips, text_target=["a dog barks", "rain falls", "a bell rings"], sampling_rate=16000)
    reference = model(**batch).loss
    calls = []
    model.audio_tower.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    enable_audio_token_cache(model)
    assert isinstance(model.audio_token_cache, AudioTokenCache)
    first = model(**batch).loss
    torch.testing.assert_close(first, reference, atol=1e-6, rtol=1e-6)
    # a new batch with one clip seen before: only the new clip is encoded
    again = processor(audio=clips[1:] + [make_audio(2.5, seed=3)], text_target=["a", "b", "c"], sampling_rate=16000)
    model(**again)
    assert calls == [3, 1] and len(model.audio_token_cache.tokens) == 4
    # a new clip twice in one batch (two of its captions): encoded once, and both rows get its tokens
    twice = processor(audio=[make_audio(1.0, seed=4)] * 2 + clips[:1], text_target=["a", "b", "c"], sampling_rate=16000)
    tokens, mask = model.audio_token_cache(model.audio_tower, twice["input_features"], twice["feature_attention_mask"])
    assert calls == [3, 1, 1] and len(model.audio_token_cache.tokens) == 5
    torch.testing.assert_close(tokens[0], tokens[1], rtol=0, atol=0)
    tower = model.audio_tower.eval()
    direct = tower(twice["input_features"][:1], feature_attention_mask=twice["feature_attention_mask"][:1])
    torch.testing.assert_close(tokens[0, : int(mask[0].sum())], direct.last_hidden_state[0], atol=1e-6, rtol=1e-6)
    assert "audio_token_cache" not in str(model.state_dict().keys())
    model.audio_tower.blocks[0].requires_grad_(True)
    with pytest.raises(ValueError, match="--cache_audio_tokens needs a frozen audio tower, but .* parameters train"):
        enable_audio_token_cache(model)
    with pytest.raises(ValueError, match="AudioTokenCache needs a frozen audio tower"):
        model(**batch)


def test_audio_token_cache_keys_follow_the_log_mel_content(monkeypatch):
    """Equal log-mels share a key (whatever their memory layout), one changed value or frame does not, with xxHash
    and with the BLAKE2b fallback."""
    from laac.training import audio_token_cache
    from laac.training.audio_token_cache import AudioTokenCache

    mel = torch.randn(64, 300)
    changed = mel.clone()
    changed[10, 200] += 1e-3
    keys = {}
    for xxhash_present in (True, False):
        if not xxhash_present:
            monkeypatch.setattr(audio_token_cache, "xxhash", None)
        key = AudioTokenCache._key(mel)
        assert AudioTokenCache._key(mel.t().contiguous().t()) == key  # same values, column-major in memory
        assert AudioTokenCache._key(changed) != key and AudioTokenCache._key(mel[:, :-1]) != key
        keys[xxhash_present] = key
    assert keys[True] != keys[False]  # the fallback really hashed with another function


def test_train_benchmark_demo_recipe_with_caches_runs_the_real_loop():
    """The benchmark behind the README's CPU speed-up figures runs the Trainer loop with every option on."""
    from laac.benchmarks.train_benchmark import main as benchmark

    result = benchmark([
        "--recipe", "demo", "--steps", "3", "--warmup", "1", "--batch", "4", "--seconds", "2", "--unique_clips", "4",
        "--attn_implementation", "eager", "--cache_features", "--cache_audio_tokens",
    ])  # fmt: skip
    assert result["timed_steps"] == 3
    assert result["samples_per_second"] == pytest.approx(4 / result["seconds_per_step"], rel=0.01)  # batch 4
    assert result["cache_audio_tokens"] and result["attn_implementation"] == "eager"
    assert result["trainable_parameters"] < result["total_parameters"]  # the audio tower stays frozen


def test_last_complete_checkpoint_skips_a_cut_trainer_state(tmp_path):
    """A SIGKILL while the Trainer writes trainer_state.json leaves it empty or cut: that checkpoint is not resumed."""
    for step, text in [(3, '{"global_step": 3}'), (6, '{"global_step": 6}'), (9, ""), (12, '{"global_st')]:
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(text)
    (tmp_path / "checkpoint-15").mkdir()  # no state at all
    assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-6")


class AdapterAtStart(TrainerCallback):
    """Records the adapter tensors (peft's saved names) when training begins and after the first step."""

    def __init__(self):
        self.at_start, self.after_first = None, None

    def _adapter(self, model):
        from peft import get_peft_model_state_dict

        return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.at_start = self._adapter(model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.after_first is None:
            self.after_first = self._adapter(model)


def test_stage_2_continues_stage_1_adapters(runs, setup):
    """finetune.yaml's default: stage 1's adapters (export/adapter) on the same base, unmerged, and they train on."""
    from laac.train import main
    from safetensors.torch import load_file

    adapter = runs["export"] / "adapter"
    saved = load_file(str(adapter / "adapter_model.safetensors"))
    assert any("lora_A" in k for k in saved) and any(".qformer." in k for k in saved)
    record = AdapterAtStart()
    # no warm-up: its first step has learning rate 0, and this run has one step
    main(_args(setup, setup / "stage2", "--max_steps", "1", "--save_strategy", "no", "--warmup_epochs", "0",
               "--adapter_name_or_path", str(adapter)), callbacks=[record])  # fmt: skip
    assert set(record.at_start) == set(saved)
    for name, value in saved.items():  # the first step starts from stage 1's values, LoRA B included (not zeros)
        torch.testing.assert_close(record.at_start[name], value, rtol=0, atol=0, msg=name)
    assert any(not torch.equal(record.after_first[k], saved[k]) for k in saved if "lora_B" in k)  # they train on

    fresh = AdapterAtStart()
    main(_args(setup, setup / "stage2_fresh", "--max_steps", "1", "--save_strategy", "no", "--adapter_name_or_path",
               str(adapter), "--continue_adapters", "false"), callbacks=[fresh])  # fmt: skip
    lora_b = [k for k in fresh.at_start if "lora_B" in k]
    assert lora_b and all(not fresh.at_start[k].any() for k in lora_b)  # the switch: fresh adapters start at zero
    # the Q-Former and projection are stage 1's either way (merged into the model, then trained in full)
    qformer = next(k for k in saved if ".qformer." in k)
    torch.testing.assert_close(fresh.at_start[qformer], saved[qformer], rtol=0, atol=0)


def test_warmup_epochs_become_the_runs_warmup_steps(setup):
    """--warmup_epochs reaches the scheduler: 0.3 epoch of 6 clips x 5 captions at batch 4 is ceil(0.3 * 8) = 3."""
    from laac.train import main

    seen = {}

    class Capture(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            seen["warmup_steps"] = args.warmup_steps

    main(_args(setup, setup / "warmup", "--max_steps", "1"), callbacks=[Capture()])
    assert seen["warmup_steps"] == 3


def test_a_given_feature_cache_needs_cache_features(tmp_path):
    """train.main(..., feature_cache=...) without --cache_features would silently ignore the log-mels: refused."""
    from laac.train import build_trainer

    _, data_args, _, training_args = parse_args(["--output_dir", str(tmp_path), "--report_to", "none"])
    with pytest.raises(ValueError, match="feature_cache .* --cache_features is false; pass --cache_features true"):
        build_trainer(None, None, data_args, training_args, (None, None), [], feature_cache={})
