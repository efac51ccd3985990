# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
Training throughput of the real pipeline: wav files -> `load_manifest` -> `CaptionExamples` -> `LaacDataCollator`
(soundfile, random crops, log-mel, prompt) -> `LaacTrainer` (stock Trainer loop, AdamW, clipping, LoRA).

    python benchmarks/train_benchmark.py                    # tiny shape (test config) on CPU
    python benchmarks/train_benchmark.py --shape small      # the embedded-demo shape (~4.4M parameters)
    python benchmarks/train_benchmark.py --full --batch 48  # Submission 4 (CED-Base + Llama 2-7B), random weights, GPU
    python benchmarks/train_benchmark.py --shape small --recipe demo --bf16 --batch 64 --unique_clips 64 \
        [--attn_implementation eager] [--cache_features] [--cache_audio_tokens]   # the demo's CPU speed-ups

Prints one JSON line: samples/s over the timed steps (after `--warmup` untimed steps), peak host RSS and, on a
GPU, peak allocated memory. Weights are random: this measures speed and memory, not quality.
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from typing import Any

import datasets
import numpy as np
import torch
from transformers import TrainerCallback

from laac.configuration_laac import PROMPT_I, LaacConfig
from laac.data.loaders import CaptionExamples, LaacDataCollator, load_manifest
from laac.feature_extraction_laac import LaacFeatureExtractor
from laac.training.lora import LaacLoraArguments, apply_lora, count_trainable_parameters
from laac.modeling_laac import LaacForConditionalGeneration
from laac.processing_laac import LaacProcessor
from laac.training.tokenizer_utils import build_word_tokenizer
from laac.training.trainer import LaacTrainer, LaacTrainingArguments, enable_audio_token_cache, set_attn_implementation

CAPTIONS = [
    "a dog barks while rain falls on a tin roof",
    "a bell rings twice and then a car passes by slowly",
    "birds chirp and wind blows through the trees nearby",
    "an engine hums as people talk quietly in the background",
]
SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {
        "audio_config": {"embed_dim": 32, "depth": 2, "num_heads": 2},
        "qformer_config": {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64},
        "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4},
    },
    "small": {  # SPEC: the embedded-demo calibration shape
        "audio_config": {"embed_dim": 128, "depth": 3, "num_heads": 4},
        "qformer_config": {"hidden_size": 128, "num_attention_heads": 4, "intermediate_size": 512},
        "text_config": {
            "hidden_size": 256,
            "intermediate_size": 688,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
        },
    },
    # Submission 4: CED-Base -> Q-Former 768 x 2 -> Llama 2-7B (the LaacConfig defaults)
    "full": {"audio_config": {}, "qformer_config": {}, "text_config": {}},
}


def build(shape: str, device: str, bf16_weights: bool) -> tuple[LaacForConditionalGeneration, LaacProcessor]:
    tokenizer = build_word_tokenizer(CAPTIONS, extra_words=PROMPT_I.replace("<AcousticTokens>", " ").split())
    spec = SHAPES[shape]
    text = {**spec["text_config"], "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    if shape != "full":
        text["vocab_size"] = len(tokenizer)  # full keeps Llama 2's 32001: the word ids are a subset
    config = LaacConfig(
        audio_config=spec["audio_config"], qformer_config=spec["qformer_config"], text_config=text, audio_token_id=4
    )
    processor = LaacProcessor(
        LaacFeatureExtractor(), tokenizer, prompt_template=config.prompt_template,
        audio_token_layout=config.audio_token_layout(),
    )  # fmt: skip
    if bf16_weights:
        # 7B random weights: build in bf16 directly on the GPU (fp32 on the CPU would take 28 GB and minutes);
        # the trained parts (Q-Former, projection; LoRA via peft) are kept in fp32 for AdamW
        with torch.device(device):
            torch.set_default_dtype(torch.bfloat16)
            model = LaacForConditionalGeneration(config)
            torch.set_default_dtype(torch.float32)
        model.audio_tower.init_bn.float()  # fp32 features meet fp32 BatchNorm statistics (CPU rejects mixed)
        model.qformer.float()
        model.language_projection.float()
        return model, processor
    return LaacForConditionalGeneration(config), processor


def write_clips(folder: str, n: int, seconds: float) -> str:
    """`n` noise clips of `seconds` at 16 kHz and a JSONL manifest with one caption each."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    with open(os.path.join(folder, "manifest.jsonl"), "w") as f:
        for i in range(n):
            name = f"clip_{i:04d}.wav"
            audio = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
            sf.write(os.path.join(folder, name), audio, 16000, subtype="PCM_16")
            f.write(json.dumps({"audio": name, "caption": CAPTIONS[i % len(CAPTIONS)]}) + "\n")
    return os.path.join(folder, "manifest.jsonl")


class InMemoryExamples(torch.utils.data.Dataset):
    """`--in_memory`: noise arrays instead of files (measures the model and the processor without file reads)."""

    def __init__(self, n: int, seconds: float) -> None:
        rng = np.random.default_rng(0)
        self.audio = [(0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32) for _ in range(min(n, 64))]
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"audio": self.audio[i % len(self.audio)], "caption": CAPTIONS[i % len(CAPTIONS)]}


def in_memory_collator(processor: LaacProcessor) -> Any:
    def collate(examples: list[dict[str, Any]]) -> Any:
        audio, text = [e["audio"] for e in examples], [e["caption"] for e in examples]
        return processor(audio, text_target=text, sampling_rate=16000)

    return collate


class StepTimer(TrainerCallback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--full", action="store_true", help="the Submission-4 shape on a GPU (= --shape full)")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length = crop length")
    parser.add_argument("--workers", type=int, default=0, help="dataloader workers")
    parser.add_argument("--activation_checkpointing", action="store_true")
    parser.add_argument("--in_memory", action="store_true", help="arrays in memory instead of wav files")
    parser.add_argument("--bf16_weights", action="store_true", help="frozen weights in bf16 (always with --full)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on CPU too (GPUs get it when supported)")
    parser.add_argument(
        "--recipe", choices=["lora", "demo"], default="lora",
        help="lora: the report's LoRA; demo: every weight trains but the frozen audio tower (laac demo)",
    )  # fmt: skip
    parser.add_argument("--attn_implementation", choices=["sdpa", "eager"], help="Q-Former and text model kernels")
    parser.add_argument("--cache_features", action="store_true", help="train.py --cache_features")
    parser.add_argument("--cache_audio_tokens", action="store_true", help="train.py --cache_audio_tokens (demo)")
    parser.add_argument("--unique_clips", type=int, help="distinct wav files, cycled (default: one per sample)")
    args = parser.parse_args(argv)
    args.shape = "full" if args.full else args.shape
    return args


def trainable_model(args: argparse.Namespace, device: str) -> tuple[torch.nn.Module, LaacProcessor]:
    """The benchmarked model: the report's LoRA, or the demo's recipe (all but the frozen tower trains)."""
    torch.manual_seed(0)
    model, processor = build(args.shape, device, bf16_weights=args.shape == "full" or args.bf16_weights)
    if args.attn_implementation:
        set_attn_implementation(model, args.attn_implementation)
    if args.recipe == "demo":
        peft_model = model.requires_grad_(True)
        model.audio_tower.requires_grad_(False)
    else:
        peft_model = apply_lora(model, LaacLoraArguments())
    if args.cache_audio_tokens:
        enable_audio_token_cache(peft_model)
    return peft_model, processor


def training_data(args: argparse.Namespace, processor: LaacProcessor, folder: str) -> tuple[Any, Any]:
    """(dataset, collator): wav files read by the real collator, or arrays held in memory."""
    n_clips = args.batch * (args.steps + args.warmup)
    if args.in_memory:
        return InMemoryExamples(n_clips, args.seconds), in_memory_collator(processor)
    clips = load_manifest(write_clips(folder, min(n_clips, args.unique_clips or 512), args.seconds))
    repeats = -(-n_clips // len(clips))
    dataset = CaptionExamples(datasets.concatenate_datasets([clips] * repeats), seed=0)
    return dataset, LaacDataCollator(processor, args.seconds, train=True, cache_features=args.cache_features)


def benchmark_arguments(args: argparse.Namespace, folder: str, cuda: bool) -> LaacTrainingArguments:
    # transformers < 5.20 calls it gradient_checkpointing
    fields = LaacTrainingArguments.__dataclass_fields__
    name = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    checkpointing = {name: True} if args.activation_checkpointing else {}
    return LaacTrainingArguments(
        output_dir=os.path.join(folder, "out"), max_steps=args.steps + args.warmup,
        per_device_train_batch_size=args.batch, learning_rate=5e-5, weight_decay=1e-6, max_grad_norm=1.0,
        lr_scheduler_type="cosine", save_strategy="no", logging_steps=10**6, report_to="none",
        disable_tqdm=True, dataloader_num_workers=args.workers, use_cpu=not cuda,
        **checkpointing, dataloader_pin_memory=cuda, bf16=args.bf16,
    )  # fmt: skip


def summary(args: argparse.Namespace, model: torch.nn.Module, bf16: bool, times: list[float]) -> dict[str, Any]:
    """The printed figures: samples/s over the timed steps, parameters, peak memory."""
    cuda = torch.cuda.is_available()
    timed = times[args.warmup - 1 :] if args.warmup > 0 else times
    seconds = timed[-1] - timed[0]
    result = {
        "shape": args.shape,
        "device": torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)",
        "bf16": bf16,
        "batch": args.batch,
        "clip_seconds": args.seconds,
        "data": "in memory" if args.in_memory else "wav files",
        "recipe": args.recipe,
        "attn_implementation": args.attn_implementation or "sdpa",
        "cache_features": args.cache_features,
        "cache_audio_tokens": args.cache_audio_tokens,
        "timed_steps": len(timed) - 1,
        "samples_per_second": round(args.batch * (len(timed) - 1) / seconds, 2),
        "seconds_per_step": round(seconds / (len(timed) - 1), 4),
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": count_trainable_parameters(model)["total"],
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
    }
    if cuda:
        result["peak_gpu_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    if args.shape == "full" and not cuda:
        sys.exit("--full needs a CUDA GPU (a 7B model with random weights); use --shape tiny/small on a CPU")
    peft_model, processor = trainable_model(args, "cuda" if cuda else "cpu")
    with tempfile.TemporaryDirectory() as folder:
        dataset, collator = training_data(args, processor, folder)
        training_args = benchmark_arguments(args, folder, cuda)
        timer = StepTimer()
        trainer = LaacTrainer(
            model=peft_model, args=training_args, train_dataset=dataset, data_collator=collator, callbacks=[timer],
        )  # fmt: skip
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    result = summary(args, peft_model, training_args.bf16, timer.times)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
