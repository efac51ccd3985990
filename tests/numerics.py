"""
Tolerances of the test suite, with the reason for each (docs/architecture.md, "Tolerances in the tests", says the same).

Exactness holds where the same kernels run on the same data: a state dict after a save/load round trip, the same
model called twice on the same batch, token ids from one process and one batch shape, data pipelines that only
copy or slice. Elsewhere the float results of correct code legitimately differ by a few units in the last place:

- two model instances: weights loaded from a safetensors file are memory-mapped at the file's offsets (16-byte
  aligned), weights built in memory are 64-byte aligned, and on AVX2 CPUs (AMD EPYC here) the GEMM kernels take a
  different path for unaligned operands, which sums in another order. Measured: CED probabilities differ by
  1.2e-7 in 163 of 527 outputs, and become bit-identical once the loaded weights are copied into aligned memory;
- different batch compositions or processes: other shapes pick other blockings, other thread counts split work
  differently.

Those comparisons use float32's own tolerance (torch.testing's defaults for float32: 1.3e-6 relative plus 1e-5
absolute): wide enough for reordered float32 sums through a few layers, six orders of magnitude narrower than any
real bug (`test_tolerances_catch_a_changed_weight` shows a single weight changed by 1e-3 failing it).
"""

from typing import Any

import torch

# outputs of a model (hidden states, logits, probabilities) computed by two instances, batches or processes
FP32_KERNELS = {"rtol": 1.3e-6, "atol": 1e-5}
# log-mel features (dB, values around -100..+40) computed by two extractor instances, two read paths or two machines
# (stored inputs made on an AMD EPYC, recomputed on an Intel Xeon: at most 1.05e-4 dB apart, 7 of 25,728 above 5e-5)
LOG_MEL_DB = {"rtol": 0.0, "atol": 3e-4}


def assert_kernel_close(actual: torch.Tensor, expected: torch.Tensor, **overrides: Any) -> None:
    """Equal up to float32 summation order (see the module docstring); a wrong weight or a mixed batch fails."""
    torch.testing.assert_close(actual, expected, **{**FP32_KERNELS, **overrides})


def assert_log_mel_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, **LOG_MEL_DB)


# Captions decoded from different batch compositions or processes: beam search compares summed log-probabilities,
# so a float32 difference of ~1e-6 can only swap two hypotheses whose scores tie to about that. Equal captions, or
# two that the model scores within TIE_NATS (mean log-likelihood per token) of each other, pass.
TIE_NATS = 1e-4


def assert_same_captions(got: list[str], expected: list[str], caption_loss: Any) -> None:
    """`caption_loss(index, caption)`: the model's mean negative log-likelihood of `caption` for clip `index`."""
    assert len(got) == len(expected), (got, expected)
    for index, (first, second) in enumerate(zip(got, expected)):
        if first != second:
            gap = abs(caption_loss(index, first) - caption_loss(index, second))
            assert gap < TIE_NATS, f"clip {index}: {first!r} != {second!r}; scores differ by {gap:.2e} (not a tie)"
