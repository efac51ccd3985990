"""The report's system at full size on CPU, in bfloat16, through the calls a user makes.

    python benchmarks/full_shape.py --workdir /tmp/laac-full   # Submission 4: CED-Base + Q-Former + Llama 2-7B
    python benchmarks/full_shape.py --shape small              # a 0.17B text model + CED-Tiny (the test runs this)

Writes random parts in Hub format (`benchmarks/build_memory.py`: a Llama checkpoint in sharded bf16 safetensors
with Llama 2's real tokenizer, a mispeech/ced-* folder), then in a fresh process:

1. builds `LaacForConditionalGeneration.from_components(ced, llama, dtype=torch.bfloat16)` and its processor, reads
   every weight once, and reports the build's seconds and peak RSS against the weights' bytes;
2. captions one 10-s clip straight from the processor (float32 log-mel) with the generation config (beam 3, 2..30
   new tokens) through stock `generate` (the default) and the opt-in fast loop (`generate(...,
   custom_generate=laac.FAST_DECODING, trust_remote_code=True)`, reported as `fast_decoding`): seconds each, and
   whether the ids are identical;
3. runs one LoRA step as training does (`training.lora.apply_lora`, the report's r 8 on both sides; batch 2,
   10-s clips with captions, AdamW): seconds, peak RSS, the trainable parameter count (26,544,896 at full size).

The full shape needs about 16 GiB of free memory and 14 GB of free disk (none once `--workdir` holds a complete
earlier write); short of either it stops before writing anything, naming what is missing. Its figures, machine,
date and commit are in docs/performance.md. Random weights caption noise: the ids are meaningless, their equality
and the timings are not.
"""

import argparse
import functools
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from laac.benchmarks.build_memory import SHAPES, default_tokenizer, parts_written, run_fresh, write_parts

GIB = 2**30
# What each shape needs: memory for the weights plus a LoRA step's activations and optimizer state, disk for the
# written parts (text model in bf16, CED in float32).
NEEDS = {"llama2-7b": {"memory": 16 * GIB, "disk": 14 * 10**9}, "small": {"memory": 2 * GIB, "disk": 1 * 10**9}}
CLIP_SECONDS = 10.0
CAPTIONS = ["a dog barks twice while cars pass on a wet road", "rain falls on a metal roof as thunder rolls"]


def _peak_rss() -> int:
    """VmHWM, the process's own peak (ru_maxrss would carry the parent's over fork + exec)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _clip(seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(CLIP_SECONDS * 16000)) * 0.1).astype(np.float32)


def measure(audio: str, text: str) -> dict[str, Any]:
    """The three phases above, in this process. Call in a fresh one: peak RSS counts everything it did."""
    import torch

    from laac import FAST_DECODING
    from laac.modeling_laac import LaacForConditionalGeneration
    from laac.processing_laac import LaacProcessor
    from laac.training.lora import apply_lora, count_trainable_parameters

    torch.manual_seed(0)  # the LoRA step's dropout
    result: dict[str, Any] = {"rss_before": _rss(), "threads": torch.get_num_threads()}
    start = time.perf_counter()
    model = LaacForConditionalGeneration.from_components(audio, text, dtype=torch.bfloat16)
    result["build_seconds"] = time.perf_counter() - start
    processor = LaacProcessor.from_components(audio, text, config=model.config)
    # weights memory-mapped from safetensors are resident only once read: one element per 4 KiB page reads them all
    checksum = sum(float(p.detach().reshape(-1)[:: 4096 // p.element_size()].float().sum()) for p in model.parameters())
    result["weights_finite"] = bool(np.isfinite(checksum))
    result["weights_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters())
    result["peak_rss_build"] = _peak_rss()
    result["eval_mode"] = not model.training

    inputs = processor([_clip(0)], sampling_rate=16000)
    result["audio_tokens"] = int((inputs["input_ids"] == model.config.audio_token_id).sum())
    generation = model.generation_config
    result["generation"] = {"num_beams": generation.num_beams, "min_new_tokens": generation.min_new_tokens,
                            "max_new_tokens": generation.max_new_tokens}  # fmt: skip
    loops = {
        "generate": model.generate,
        "fast_decoding": functools.partial(model.generate, custom_generate=FAST_DECODING, trust_remote_code=True),
    }
    sequences = {}
    with torch.no_grad():
        for loop in loops.values():  # first calls pay one-time costs (kernel selection, lazy imports): not timed
            loop(**inputs, max_new_tokens=2)
        for name, loop in loops.items():
            start = time.perf_counter()
            sequences[name] = loop(**inputs)
            result[f"{name}_seconds"] = time.perf_counter() - start
    prompt = inputs["input_ids"].shape[1]
    result["new_tokens"] = int(sequences["generate"].shape[1] - prompt)
    result["ids_identical"] = all(torch.equal(s, sequences["generate"]) for s in sequences.values())
    result["peak_rss_decode"] = _peak_rss()

    peft_model = apply_lora(model)
    peft_model.train()
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    result["trainable"] = count_trainable_parameters(peft_model)
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    batch = processor([_clip(1), _clip(2)], text_target=CAPTIONS, sampling_rate=16000)
    start = time.perf_counter()
    loss = peft_model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    result["lora_step_seconds"] = time.perf_counter() - start
    result["lora_loss"] = float(loss)
    result["peak_rss"] = _peak_rss()
    return result


def check_room(shape: str, workdir: Path, written: bool) -> None:
    """Stops before writing anything when memory or disk is short for `shape`, naming what is missing."""
    needs = NEEDS[shape]
    with open("/proc/meminfo") as f:
        available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    problems = []
    if available < needs["memory"]:
        problems.append(f"{available / GIB:.1f} GiB of memory available, {needs['memory'] / GIB:.0f} GiB needed")
    if not written:
        free = shutil.disk_usage(workdir).free
        if free < needs["disk"]:
            problems.append(f"{free / 1e9:.1f} GB free under {workdir}, {needs['disk'] / 1e9:.0f} GB needed")
    if problems:
        raise SystemExit(
            f"full_shape: not enough room for the {shape} shape: {'; '.join(problems)}. Free memory or disk, pass "
            "--workdir on a larger disk, or run --shape small"
        )


def run(workdir: Path, shape: str, tokenizer_gguf: Path) -> dict[str, Any]:
    """Writes the parts under `workdir` unless a previous run completed them, then measures in a fresh process."""
    check_room(shape, workdir, parts_written(workdir, shape))
    write_parts(workdir, shape, tokenizer_gguf)
    command = [sys.executable, "-m", "laac.benchmarks.full_shape", "--measure", str(workdir / "audio"), str(workdir / "text")]
    return run_fresh(command, "the measured run")


def report(shape: str, r: dict[str, Any]) -> str:
    loops = ", ".join(f"{name} {r[f'{name}_seconds']:.1f} s" for name in ("generate", "fast_decoding") if f"{name}_seconds" in r)
    return "\n".join([
        f"{shape}: bf16 weights {r['weights_bytes'] / GIB:.2f} GiB, built in {r['build_seconds']:.1f} s, peak RSS "
        f"{r['peak_rss_build'] / GIB:.2f} GiB = {r['peak_rss_build'] / r['weights_bytes']:.2f}x the weights "
        f"(before it {r['rss_before'] / GIB:.2f} GiB; eval mode: {r['eval_mode']}; {r['threads']} threads)",
        f"one {CLIP_SECONDS:.0f}-s clip, {r['audio_tokens']} audio tokens, {r['generation']}: {r['new_tokens']} new "
        f"tokens; {loops}; ids identical: {r['ids_identical']}",
        f"one LoRA step (batch 2 x {CLIP_SECONDS:.0f} s): {r['lora_step_seconds']:.1f} s, loss {r['lora_loss']:.3f}, "
        f"peak RSS {r['peak_rss'] / GIB:.2f} GiB; trainable {r['trainable']['total']:,} ({r['trainable']})",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="llama2-7b", choices=sorted(SHAPES))
    parser.add_argument("--workdir", default=None, help="keep the parts in WORKDIR/SHAPE and reuse them (default: a temp dir)")
    parser.add_argument("--tokenizer_gguf", default=None, help="Llama 2's GGUF tokenizer (default: from laac.data.public_data)")
    parser.add_argument("--measure", nargs=2, metavar=("AUDIO", "TEXT"), help=argparse.SUPPRESS)  # the fresh process
    args = parser.parse_args(argv)
    if args.measure:
        result = measure(*args.measure)
        print(json.dumps(result))
        return result
    tokenizer_gguf = Path(args.tokenizer_gguf) if args.tokenizer_gguf else default_tokenizer()
    if not tokenizer_gguf.is_file():
        raise SystemExit(f"full_shape: Llama 2's tokenizer not found at {tokenizer_gguf}; pass --tokenizer_gguf")
    if args.workdir:
        folder = Path(args.workdir) / args.shape
        folder.mkdir(parents=True, exist_ok=True)
        result = run(folder, args.shape, tokenizer_gguf)
    else:
        with tempfile.TemporaryDirectory() as folder:
            result = run(Path(folder), args.shape, tokenizer_gguf)
    result["shape"] = args.shape
    print(report(args.shape, result))
    return result


if __name__ == "__main__":
    main()
