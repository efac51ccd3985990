"""Peak memory and time of `LaacForConditionalGeneration.from_components` from full-size parts on disk.

    python benchmarks/build_memory.py                   # Llama-2-7B-shaped text model (bf16, ~13.5 GB) + CED-Base
    python benchmarks/build_memory.py --shape small     # a 0.17B text model + CED-Tiny (the CI test runs this)

Writes a random checkpoint of the shape in Hub format (sharded bf16 safetensors, one shard per decoder layer, each
written and freed before the next, so the writer never holds the model) with Llama 2's tokenizer (its GGUF
vocabulary, from `laac.data.public_data`), and a random CED folder as mispeech/ced-* holds it (float32). Then builds the model in bf16 in a
fresh process, reads every weight once (weights memory-mapped from safetensors are resident only once read), and
prints the process's peak RSS (VmHWM) against the bytes of the built model's weights, and the build's seconds.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig

from laac.configuration_ced import CedConfig
from laac.data.public_data import LLAMA2_TOKENIZER, llama_tokenizers_dir
from laac.modeling_ced import CedForAudioClassification
from laac.training.tokenizer_utils import llama_tokenizer_from_gguf

SHAPES: dict[str, dict[str, Any]] = {
    "llama2-7b": {
        "text": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32},
        "audio": "ced-base",
    },
    "small": {
        "text": {"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 8, "num_attention_heads": 16},
        "audio": "ced-tiny",
    },
}
LLAMA2_VOCAB = 32000

# What the measured process runs: the build alone, after its imports, with RSS before and at peak.
BUILD = """
import json, resource, sys, time
import torch
from laac.modeling_laac import LaacForConditionalGeneration
# modules the build imports lazily: loaded before the first reading, so the growth counts data, not code
import gguf, transformers.models.llama.modeling_llama, transformers.models.llama.tokenization_llama  # noqa
from transformers import AutoConfig, AutoTokenizer  # noqa
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
def peak():  # VmHWM, not ru_maxrss: Linux carries the parent's peak over fork + exec into ru_maxrss
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
before = rss()
start = time.perf_counter()
model = LaacForConditionalGeneration.from_components(sys.argv[1], sys.argv[2], dtype=torch.bfloat16)
seconds = time.perf_counter() - start
peak_build = peak()
# Weights loaded from safetensors may stay memory-mapped and only become resident when read: read every one, so
# the peak counts the whole model in memory, as training or captioning holds it.
# One element per 4 KiB page is enough to fault every page in, without a float32 copy of a 0.5 GB matrix.
checksum = sum(float(p.detach().reshape(-1)[:: 4096 // p.element_size()].float().sum()) for p in model.parameters())
weights = sum(p.numel() * p.element_size() for p in model.parameters())
embeddings = {id(m.weight): m.weight for m in (model.get_input_embeddings(), model.get_output_embeddings())}
resized = sum(w.numel() * w.element_size() for w in embeddings.values())
print(json.dumps({"seconds": seconds, "rss_before": before, "peak_rss_build": peak_build, "peak_rss": peak(),
                  "weights_bytes": weights, "embedding_bytes": resized,
                  "text_vocab": model.get_input_embeddings().weight.shape[0],
                  "dtype": str(model.language_model.dtype), "checksum_finite": checksum == checksum}))
"""


def _random(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.empty(shape, dtype=torch.bfloat16).normal_(std=0.02)


def _layer_tensors(config: LlamaConfig, index: int) -> dict[str, torch.Tensor]:
    """One decoder layer's tensors in the names and shapes of a Llama checkpoint, random bf16."""
    hidden, inner = config.hidden_size, config.intermediate_size
    kv = config.num_key_value_heads * (hidden // config.num_attention_heads)
    shapes = {
        "self_attn.q_proj.weight": (hidden, hidden), "self_attn.k_proj.weight": (kv, hidden),
        "self_attn.v_proj.weight": (kv, hidden), "self_attn.o_proj.weight": (hidden, hidden),
        "mlp.gate_proj.weight": (inner, hidden), "mlp.up_proj.weight": (inner, hidden),
        "mlp.down_proj.weight": (hidden, inner),
    }  # fmt: skip
    tensors = {f"model.layers.{index}.{k}": _random(s) for k, s in shapes.items()}
    for norm in ("input_layernorm", "post_attention_layernorm"):
        tensors[f"model.layers.{index}.{norm}.weight"] = torch.ones(hidden, dtype=torch.bfloat16)
    return tensors


def write_text_model(folder: Path, shape: dict[str, Any], tokenizer_gguf: Path) -> None:
    """A Llama checkpoint of `shape` in Hub format, one shard per layer (+ one for embeddings and head)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = LlamaConfig(vocab_size=LLAMA2_VOCAB, num_key_value_heads=shape["num_attention_heads"], **shape)
    config.save_pretrained(folder)
    llama_tokenizer_from_gguf(str(tokenizer_gguf)).save_pretrained(folder)
    count = config.num_hidden_layers + 1
    shards = [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]
    weight_map, total = {}, 0
    for index, shard in enumerate(shards):
        if index < config.num_hidden_layers:
            tensors = _layer_tensors(config, index)
        else:
            embed = (LLAMA2_VOCAB, config.hidden_size)
            tensors = {
                "model.embed_tokens.weight": _random(embed),
                "lm_head.weight": _random(embed),
                "model.norm.weight": torch.ones(config.hidden_size, dtype=torch.bfloat16),
            }
        save_file(tensors, str(folder / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, shard))
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        del tensors
    index_file = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index_file, indent=2))


def write_audio_model(folder: Path, name: str) -> None:
    """A random CED of the preset `name`, saved as a mispeech/ced-* folder (float32)."""
    torch.manual_seed(0)
    CedForAudioClassification(CedConfig(name=name)).save_pretrained(folder)


def run_fresh(command: list[str], what: str) -> dict[str, Any]:
    """Runs `command` in a fresh process (the laac of this checkout first, no Hub access) and returns the JSON object
    its last line of output holds; a failure is a RuntimeError naming `what` failed."""
    repo_parent = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join([repo_parent, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(audio: Path, text: Path) -> dict[str, Any]:
    """Runs the build in a fresh process (the laac of this checkout) and returns its figures."""
    return run_fresh([sys.executable, "-c", BUILD, str(audio), str(text)], "the build")


def parts_written(workdir: Path, shape_name: str) -> bool:
    """Whether an earlier run completed the parts of `shape_name` under `workdir`."""
    done = workdir / "written"
    return done.exists() and done.read_text() == shape_name


def write_parts(workdir: Path, shape_name: str, tokenizer_gguf: Path) -> None:
    """The text and audio folders of `shape_name` under `workdir`, unless an earlier run completed them."""
    if parts_written(workdir, shape_name):
        return
    write_text_model(workdir / "text", SHAPES[shape_name]["text"], tokenizer_gguf)
    write_audio_model(workdir / "audio", SHAPES[shape_name]["audio"])
    (workdir / "written").write_text(shape_name)


def build_and_measure(workdir: Path, shape_name: str, tokenizer_gguf: Path) -> dict[str, Any]:
    """Writes the two folders under `workdir` unless a previous run completed them, then measures the build."""
    write_parts(workdir, shape_name, tokenizer_gguf)
    return measure(workdir / "audio", workdir / "text")


def default_tokenizer() -> Path:
    """Llama 2's GGUF vocabulary, from shared/ or LAAC's cache, downloaded once (as the tests find it)."""
    return Path(llama_tokenizers_dir()) / LLAMA2_TOKENIZER


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="llama2-7b", choices=sorted(SHAPES))
    parser.add_argument(
        "--workdir", default=None, help="keep the checkpoints in WORKDIR/SHAPE and reuse them (default: a temp dir)"
    )
    parser.add_argument(
        "--tokenizer_gguf", default=None, help=f"Llama 2's GGUF tokenizer (default: {LLAMA2_TOKENIZER} from laac.data.public_data)"
    )
    args = parser.parse_args(argv)
    tokenizer_gguf = Path(args.tokenizer_gguf) if args.tokenizer_gguf else default_tokenizer()
    if not tokenizer_gguf.is_file():
        raise FileNotFoundError(f"Llama 2's tokenizer not found at {tokenizer_gguf}; pass --tokenizer_gguf")
    if args.workdir:  # kept: a second run measures again without writing 13.5 GB again
        result = build_and_measure(Path(args.workdir) / args.shape, args.shape, tokenizer_gguf)
    else:
        with tempfile.TemporaryDirectory() as workdir:
            result = build_and_measure(Path(workdir), args.shape, tokenizer_gguf)
    result["shape"] = args.shape
    result["peak_over_weights"] = result["peak_rss"] / result["weights_bytes"]
    gib = 2**30
    print(
        f"{args.shape}: weights {result['weights_bytes'] / gib:.2f} GiB ({result['dtype']}, text vocabulary "
        f"{result['text_vocab']}); peak RSS with every weight read {result['peak_rss'] / gib:.2f} GiB = "
        f"{result['peak_over_weights']:.3f}x the weights (during the build {result['peak_rss_build'] / gib:.2f} GiB, "
        f"before it {result['rss_before'] / gib:.2f} GiB); build {result['seconds']:.1f} s"
    )
    return result


if __name__ == "__main__":
    main()
