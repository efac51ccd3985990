#!/usr/bin/env bash
# The GPU measurements in one command, about 4-5 minutes on one H100/H200:
#   bash benchmarks/gpu_check.sh 2>&1 | tee gpu_check.log
# Random weights at the report's shape (CED-Base + Llama 2-7B, bf16): speed and memory, not quality. Each step
# prints JSON lines; the last line of each benchmark is its summary. Record card, command and figures in
# docs/performance.md. Targets: >= 350 clips/s beam 3 on 10-s clips (whole path) and >= 3x the reference batched
# path in the same run; single-clip greedy <= 120 ms; LoRA training >= 150 samples/s at batch 48, <= 40 GB peak.
# Stock generate is the default; the opt-in fast loop (generate(..., custom_generate=laac.FAST_DECODING)) becomes
# this card's default only where steps 1 and 2 print "fast_qualifies_as_default": true (>= 1.5x, same ids).
set -uo pipefail  # a failed or timed-out step is reported and the next one still runs
cd "$(dirname "$0")/.."
export PYTHONPATH="$(cd .. && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # the checkout is the package `laac`
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"

# 1. whole path, beam 3, 10-s clips: original protocol (fp32, batch 1, 8 clips), reference (stock generate), fast
#    (the opt-in loop) and fast with the compiled fixed-shape step (`--static`: CUDA graphs through torch.compile's reduce-overhead mode) at batch 128.
#    20 new tokens per caption (random weights rarely emit EOS).
timeout 150 python benchmarks/decode_benchmark.py --shape full --device cuda --dtype bfloat16 --batch 128 \
    --clips 512 --original_clips 8 --new_tokens 20 --latency_runs 3 --workers 8 --static || echo "step 1 failed: $?"

# 2. single-clip greedy latency (bf16, batch 1), the opt-in fast loop against stock generate.
timeout 60 python benchmarks/decode_benchmark.py --shape full --device cuda --dtype bfloat16 --batch 1 \
    --clips 4 --num_beams 1 --new_tokens 20 --latency_runs 5 --workers 0 --skip_original --static || echo "step 2 failed: $?"

# 3. LoRA training with CED-Base in the loop, batch 48 (samples/s, peak memory).
timeout 90 python benchmarks/train_benchmark.py --full --batch 48 --steps 8 --warmup 2 --workers 8 || echo "step 3 failed: $?"
