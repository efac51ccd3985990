# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
Captioning speed of the real path, side by side in one run: audio files -> soundfile decode -> log-mel -> CED ->
Q-Former -> LLM -> text, for

  original   the original code's protocol: float32, one clip per call, the stock `generate`
  reference  the stock `generate` (transformers' beam search; the default of the pipeline and `laac caption`),
             `--batch` clips per call
  fast       the opt-in fast loop, `model.generate(..., custom_generate=laac.FAST_DECODING, trust_remote_code=True)`
             (`fast_decoding/custom_generate/generate.py`), same batches

each as clips/s over `--clips` clips, single-clip latency (median of `--latency_runs` batch-1 calls) and peak memory
(GPU: peak allocated; CPU: peak RSS above the start of the phase, sampled every 2 ms). Also printed: log-mel
extraction speed on one CPU thread (x real time), and the data path alone (decode + resample + log-mel) in
`--workers` DataLoader workers, in clips/s, beside the model's clips/s. The fast and reference token ids are
compared on every clip (`same_ids`). `fast_qualifies_as_default` says whether this run shows the fast loop at
>= 1.5x the reference's clips/s with the same ids (the rule of docs/performance.md for making it a device's default).

    python benchmarks/decode_benchmark.py --shape tiny                   # CI: seconds on a CPU
    python benchmarks/decode_benchmark.py --shape demo --batch 8         # the demo model's shape (random weights)
    python benchmarks/decode_benchmark.py --shape full --device cuda --dtype bfloat16 --batch 128 --clips 512

Weights are random (speed, not quality); random weights rarely emit EOS, so `--new_tokens N` fixes the caption
length (min = max = N new tokens) for a like-for-like step count; by default the model's generation config applies.
Prints one JSON object per line as each step ends (build, clip writing, each pass of each phase, then the best pass
of each phase), the last one the summary with the ratios.
"""

import argparse
import functools
import json
import os
import statistics
import tempfile
import threading
import time
from typing import Any, Callable

import numpy as np
import soundfile as sf
import torch

from laac import FAST_DECODING
from laac.configuration_laac import PROMPT_I, LaacConfig
from laac.modeling_laac import LaacForConditionalGeneration
from laac.processing_laac import LaacProcessor
from laac.training.tokenizer_utils import build_word_tokenizer

SAMPLING_RATE = 16000
WORDS = "a dog barks while rain falls on tin roof bell rings twice then car passes by birds chirp wind".split()
# Model shapes. "demo" mirrors demo.DemoShape (tests/test_decode_benchmark.py checks they agree).
SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {
        "audio_config": {"embed_dim": 32, "depth": 2, "num_heads": 2},
        "qformer_config": {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64},
        "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                        "num_key_value_heads": 2},
    },
    "demo": {
        "audio_config": {"embed_dim": 128, "depth": 3, "num_heads": 4},
        "qformer_config": {"hidden_size": 128, "num_attention_heads": 4, "intermediate_size": 256,
                           "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
        "text_config": {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
                        "num_key_value_heads": 4, "max_position_embeddings": 512},
        "token_order": "time",
        "last_window": "pad",
    },
    "full": {},  # Submission 4: CED-Base + Llama 2-7B (LaacConfig's defaults)
}  # fmt: skip


def build(shape: str, vocab_words: int, device: str = "cpu") -> tuple[LaacForConditionalGeneration, LaacProcessor]:
    """A random model of `shape` and its processor over a word vocabulary (padded to `vocab_words` words)."""
    extra = PROMPT_I.replace("<AcousticTokens>", " ").split() + [f"w{i}" for i in range(vocab_words)]
    tokenizer = build_word_tokenizer([" ".join(WORDS)], extra_words=extra)
    settings = {key: dict(value) if isinstance(value, dict) else value for key, value in SHAPES[shape].items()}
    text = settings.setdefault("text_config", {"model_type": "llama"})
    text.update(model_type="llama", vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    if shape == "full":
        # Llama 2-7B as LaacConfig has it (32000 tokens; ids past the word vocabulary decode to nothing)
        text.update(LaacConfig().text_config.to_dict() | {k: text[k] for k in ("bos_token_id", "eos_token_id",
                    "pad_token_id")})  # fmt: skip
    config = LaacConfig(audio_token_id=tokenizer.convert_tokens_to_ids("<|audio|>"), **settings)
    torch.manual_seed(0)
    with torch.device(device):  # built where it runs (the full shape is 27 GB in float32)
        model = LaacForConditionalGeneration(config).eval()
    return model, LaacProcessor.from_config(config, tokenizer)


def write_clips(folder: str, n: int, seconds: float, rate: int) -> list[str]:
    """`n` FLAC files of noise + a chirp, at `rate` Hz (44.1 kHz by default: the reader resamples, as in use)."""
    rng, paths = np.random.default_rng(0), []
    for i in range(n):
        t = np.arange(int(seconds * rate)) / rate
        audio = 0.3 * np.sin(2 * np.pi * (200 + 50 * i + 300 * t) * t) + 0.05 * rng.standard_normal(t.shape)
        paths.append(os.path.join(folder, f"clip{i:04d}.flac"))
        sf.write(paths[-1], audio.astype(np.float32), rate)
    return paths


class PeakMemory:
    """Peak memory of a phase: CUDA peak allocated, or on CPU the peak RSS above the phase's start (sampled)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak, self.start, self._stop = device, 0, 0, threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            self.start = self.peak = self._rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()

    @property
    def mib(self) -> float:
        return round((self.peak - self.start) / 2**20, 1)


# -- the captioning path -----------------------------------------------------------------------------------------


def caption_files(
    model: Any, processor: LaacProcessor, paths: list[str], batch: int, generate: Callable, settings: dict
) -> tuple[list[str], list[list[int]]]:
    """Decode, resample, log-mel, generate and detokenize `paths`, `batch` files per call: captions and new ids."""
    captions, ids = [], []
    for start in range(0, len(paths), batch):
        decoded = [sf.read(path, dtype="float32") for path in paths[start : start + batch]]
        inputs = processor([audio for audio, _ in decoded], sampling_rate=decoded[0][1])
        inputs = {key: value.to(model.device) for key, value in inputs.items()}
        sequences = generate(**inputs, **settings)
        captions += processor.decode_captions(sequences, inputs["input_ids"])
        ids += sequences[:, inputs["input_ids"].shape[1] :].tolist()
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    return captions, ids


def timed_pass(
    model: Any, processor: LaacProcessor, paths: list[str], batch: int, generate: Callable, settings: dict,
    latency_runs: int,
) -> dict[str, Any]:  # fmt: skip
    """One timed pass over `paths`, then the batch-1 latency of one clip (median of `latency_runs` calls)."""
    with PeakMemory(model.device) as memory:
        start = time.perf_counter()
        captions, ids = caption_files(model, processor, paths, batch, generate, settings)
        elapsed = time.perf_counter() - start
    latencies = []
    for _ in range(latency_runs):
        start = time.perf_counter()
        caption_files(model, processor, paths[:1], 1, generate, settings)
        latencies.append(time.perf_counter() - start)
    return {
        "batch": batch, "clips": len(paths), "clips_per_s": round(len(paths) / elapsed, 3),
        "latency_ms": round(1000 * statistics.median(latencies), 1), "peak_mib": memory.mib,
        "new_tokens_mean": round(statistics.mean(len(row) for row in ids), 1), "ids": ids, "example": captions[0],
    }  # fmt: skip


# -- the data path -----------------------------------------------------------------------------------------------


class DecodedClips(torch.utils.data.Dataset):
    """Decode + resample + log-mel of one file per item: what DataLoader workers do ahead of the model."""

    def __init__(self, paths: list[str], processor: LaacProcessor) -> None:
        self.paths, self.feature_extractor = paths, processor.feature_extractor

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        audio, rate = sf.read(self.paths[index], dtype="float32")
        return self.feature_extractor(audio, sampling_rate=rate, return_tensors="pt")["input_features"][0]


def data_path_speed(paths: list[str], processor: LaacProcessor, workers: int) -> dict[str, Any]:
    """Clips/s of the data path alone in `workers` DataLoader workers (0: in this process), one thread each."""
    loader = torch.utils.data.DataLoader(
        DecodedClips(paths, processor), batch_size=None, num_workers=workers,
        worker_init_fn=lambda _: torch.set_num_threads(1),
    )  # fmt: skip
    items = iter(loader)
    next(items)  # worker start-up is not the steady rate
    start = time.perf_counter()
    count = sum(1 for _ in items)
    clips_per_s = count / (time.perf_counter() - start)
    return {"phase": "data_path", "workers": workers, "clips_per_s": round(clips_per_s, 2),
            "clips_per_s_per_worker": round(clips_per_s / max(workers, 1), 2)}  # fmt: skip


def mel_speed(processor: LaacProcessor, seconds: float, repeats: int) -> dict[str, Any]:
    """Log-mel extraction alone on one CPU thread, in x real time (16 kHz input, no resampling)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    audio = (0.1 * np.random.default_rng(1).standard_normal(int(seconds * SAMPLING_RATE))).astype(np.float32)
    extractor = processor.feature_extractor
    extractor(audio, sampling_rate=SAMPLING_RATE)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        extractor(audio, sampling_rate=SAMPLING_RATE)
    elapsed = time.perf_counter() - start
    torch.set_num_threads(threads)
    x_real_time = round(repeats * seconds / elapsed, 1)
    return {"phase": "log_mel_one_thread", "clip_seconds": seconds, "x_real_time": x_real_time}


# -- main ----------------------------------------------------------------------------------------------------------


def report(result: dict[str, Any]) -> dict[str, Any]:
    """Print `result` (token ids left out) as one JSON line at once: a run stopped by a time limit keeps its lines."""
    print(json.dumps({key: value for key, value in result.items() if key != "ids"}), flush=True)
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--device", default="auto", help="auto (cuda when there is one), cpu, cuda, cuda:1")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                        help="weights of the batched phases (the original protocol is always float32)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--original_clips", type=int, help="clips of the batch-1 original protocol (default --clips)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--file_rate", type=int, default=44100, help="sampling rate of the written files")
    parser.add_argument("--num_beams", type=int, default=None, help="default: the model's (3)")
    parser.add_argument("--new_tokens", type=int, default=None, help="fix min = max new tokens (default: 2..30)")
    parser.add_argument("--vocab_words", type=int, default=64,
                        help="extra words in the vocabulary (tiny/demo; full keeps Llama 2's 32001 tokens)")
    parser.add_argument("--latency_runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the data-path phase")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the model phases")
    parser.add_argument("--skip_original", action="store_true")
    parser.add_argument(
        "--static", action="store_true",
        help="add the fast loop's fixed-shape step (cache_implementation='static'), compiled on a GPU as transformers "
        "compiles its static-cache decoding (each batch shape compiles once, in the warm-up)",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=1, help="interleaved passes per phase, the best kept")
    return parser.parse_args(argv)


# The fast loop becomes a device's default only at this speed-up over stock generate (docs/performance.md)
DEFAULT_RULE = 1.5


def generation_settings(args: argparse.Namespace) -> dict[str, Any]:
    settings = {} if args.num_beams is None else {"num_beams": args.num_beams}
    if args.new_tokens is not None:
        settings.update(min_new_tokens=args.new_tokens, max_new_tokens=args.new_tokens)
    return settings


def run_phases(args: argparse.Namespace, model: Any, processor: LaacProcessor, paths: list[str]) -> list[dict]:
    """
    The captioning phases side by side on the same files, interleaved `--repeats` times (each phase keeps its best
    pass: on a shared machine the other jobs' load only ever slows a pass down).
    """
    settings, dtype = generation_settings(args), getattr(torch, args.dtype)
    reference = model.generate  # stock generate: the default
    fast = functools.partial(model.generate, custom_generate=FAST_DECODING, trust_remote_code=True)  # the opt-in
    phases = [("reference", args.batch, reference, paths, dtype), ("fast", args.batch, fast, paths, dtype)]
    if args.static:
        phases.append(("static", args.batch, functools.partial(fast, cache_implementation="static"), paths, dtype))
    if not args.skip_original:  # float32, one clip per call
        phases.insert(0, ("original", 1, reference, paths[: args.original_clips or args.clips], torch.float32))
    best: dict[str, dict] = {}
    for repeat in range(args.repeats):
        for name, batch, generate, files, phase_dtype in phases:
            model.to(phase_dtype)
            if repeat == 0:  # warm-up (kernels, allocator)
                caption_files(model, processor, files[:batch], batch, generate, settings)
            result = timed_pass(model, processor, files, batch, generate, settings, args.latency_runs)
            result = {"phase": name, **result}
            report({**result, "pass": repeat + 1})
            if name not in best or result["clips_per_s"] > best[name]["clips_per_s"]:
                best[name] = {**result, "latency_ms": min(result["latency_ms"], best.get(name, result)["latency_ms"])}
    return [best[name] for name, *_ in phases]


def summarize(args: argparse.Namespace, model: Any, results: list[dict], extra: list[dict]) -> dict[str, Any]:
    phases = {result["phase"]: result for result in results}
    fast, reference = phases["fast"], phases["reference"]
    summary = {
        "shape": args.shape, "device": str(model.device), "dtype": args.dtype, "threads": torch.get_num_threads(),
        "batch": args.batch, "clip_seconds": args.seconds, "generation": generation_settings(args) or "model default",
        "same_ids": fast["ids"] == reference["ids"],
        "fast_over_reference": round(fast["clips_per_s"] / reference["clips_per_s"], 2),
        "fast_latency_over_reference": round(fast["latency_ms"] / reference["latency_ms"], 2),
    }  # fmt: skip
    summary["fast_qualifies_as_default"] = summary["same_ids"] and summary["fast_over_reference"] >= DEFAULT_RULE
    if "static" in phases:
        summary["static_same_ids"] = phases["static"]["ids"] == reference["ids"]
        summary["static_over_reference"] = round(phases["static"]["clips_per_s"] / reference["clips_per_s"], 2)
        summary["static_latency_over_reference"] = round(phases["static"]["latency_ms"] / reference["latency_ms"], 2)
    if "original" in phases:
        summary["fast_over_original"] = round(fast["clips_per_s"] / phases["original"]["clips_per_s"], 2)
    for item in extra:
        summary[item["phase"]] = {k: v for k, v in item.items() if k != "phase"}
    if torch.cuda.is_available() and model.device.type == "cuda":
        summary["card"] = torch.cuda.get_device_name(model.device)
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, processor = build(args.shape, args.vocab_words, device)
    report({"phase": "build", "seconds": round(time.perf_counter() - start, 1), "device": str(model.device)})
    with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
        start = time.perf_counter()
        paths = write_clips(folder, args.clips, args.seconds, args.file_rate)
        report({"phase": "write_clips", "clips": len(paths), "seconds": round(time.perf_counter() - start, 1)})
        extra = [report(mel_speed(processor, args.seconds, 20)), report(data_path_speed(paths, processor, args.workers))]
        results = run_phases(args, model, processor, paths)
    for result in results:
        report(result)
    summary = summarize(args, model, results, extra)
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
