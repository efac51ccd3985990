# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
How `laac caption` runs `pipeline("audio-captioning")` over many files: `caption_records` yields one record per
input, in input order, as soon as the pipeline has captioned it (the pipeline streams a generator's records), so a
killed run keeps what was written and `--resume` continues. The pipeline raises on bad input and when the device
runs out of memory; here, where these are handled:

- A batch that runs out of device memory is retried from the first unfinished input at half its size, which the
  rest of the run keeps (`BatchSizes`); a segment that does not fit alone becomes its input's error record.
- An input that cannot be captioned becomes one error record (`{"error": reason}`) and the others go on. An
  `AudioInputError` names its file; an error that names no pending file (a model error, bytes or arrays, or an
  error raised in the DataLoader worker, which arrives without its attributes) is found by captioning the inputs
  it may come from one segment at a time in this process, where the failing input is the first unfinished one.
- A `PostCorrectionError` (the corrector's settings or models) is no input's fault: it stops the run.
"""

import os
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.utils import logging

from ..audio_laac import AudioInputError
from ..correction.post_corrector import PostCorrectionError

logger = logging.get_logger(__name__)


@dataclass
class BatchSizes:
    """
    The batch size of one run: the `requested` one and the `current` one, which an out-of-memory error halves for
    the failed batch and every later one (`current` at the end is the size the run settled on).
    """

    requested: int
    current: int = 0
    out_of_memory_errors: int = 0

    def __post_init__(self) -> None:
        if self.requested < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.requested}")
        self.current = self.current or self.requested

    def shrink(self, failed: int) -> None:
        """After an out-of-memory error at a batch of `failed` segments: half of it, from now on."""
        self.out_of_memory_errors += 1
        half = (failed + 1) // 2
        if half < self.current:
            logger.warning(f"out of memory at batch size {failed}: retrying in batches of {half}")
            self.current = half


def caption_records(
    captioner: Any, inputs: Sequence[Any], sizes: BatchSizes, num_workers: int = 0, **call_kwargs: Any
) -> Iterator[tuple[int, dict]]:
    """
    `(input index, record)` for every input, in input order: the pipeline's record, or `{"error": reason}`.
    `sizes` is shrunk by out-of-memory errors; `call_kwargs` go to every pipeline call.
    """
    pending = deque(range(len(inputs)))
    failures: dict[int, dict] = {}  # error records, each yielded when the inputs before it are
    narrowed = None  # (inputs, batch size, workers) of a re-run that finds the input an error came from
    while pending:
        count, batch_size, workers = narrowed or (len(pending), sizes.current, num_workers)
        window = [pending[i] for i in range(min(count, len(pending)))]
        records = captioner((inputs[i] for i in window), batch_size=batch_size, num_workers=workers, **call_kwargs)
        try:
            for record in records:
                yield pending.popleft(), record
                yield from _due(failures, pending)
            narrowed = None
            continue
        except PostCorrectionError:
            raise
        except (ValueError, RuntimeError) as error:  # AudioInputError, torch.OutOfMemoryError are among them
            out_of_memory = isinstance(error, torch.OutOfMemoryError)
            failed, reason = _input_at_fault(error, inputs, window, pending[0], batch_size, workers)
        records = None  # the failed batch's tensors go before the allocator's cache is emptied
        if failed is not None:
            pending.remove(failed)
            failures[failed] = {"error": reason}
            narrowed = None
            yield from _due(failures, pending)
        elif out_of_memory:  # at a batch of more than one segment
            _free_accelerator_memory(captioner.device)
            sizes.shrink(batch_size)
            narrowed = None
        else:  # the failing batch held segments of at most the first batch_size + 1 pending inputs: read them in
            # this process (a worker's error arrives without its attributes), then one segment at a time
            narrowed = (batch_size + 1, batch_size, 0) if workers else (batch_size + 1, 1, 0)
    if sizes.current < sizes.requested:
        logger.warning(f"settled on batch size {sizes.current} (asked {sizes.requested}): out of memory above it")


def _input_at_fault(
    error: Exception, inputs: Sequence[Any], window: list[int], first: int, batch_size: int, workers: int
) -> tuple[int | None, str]:
    """
    The input `error` comes from, if that is known, and the reason for its record. Known: the file an
    `AudioInputError` names, or with one segment per batch read in this process, the `first` pending input (every
    input before it has its record). Out of memory with more than one segment is no input's fault (None).
    """
    if isinstance(error, torch.OutOfMemoryError):
        return (first if batch_size == 1 else None), f"out of memory with this segment alone: {_one_line(error)}"
    reason = str(error) if isinstance(error, AudioInputError) else f"captioning failed: {_one_line(error)}"
    path = getattr(error, "path", None)
    named = (i for i in window if isinstance(inputs[i], (str, os.PathLike)) and os.fspath(inputs[i]) == path)
    failed = next(named, None) if path is not None else None
    if failed is None and batch_size == 1 and workers == 0:
        failed = first
    return failed, reason


def _due(failures: dict[int, dict], pending: deque) -> Iterator[tuple[int, dict]]:
    """The error records of inputs before the first pending one (all of them when none is pending)."""
    for index in sorted(failures):
        if pending and index > pending[0]:
            return
        yield index, failures.pop(index)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _free_accelerator_memory(device: torch.device) -> None:
    """After an out-of-memory error: give the allocator's cached blocks back before the retry."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type != "cpu" and hasattr(torch, "accelerator"):  # torch >= 2.6: mps, xpu, ...
        torch.accelerator.empty_cache()


__all__ = ["BatchSizes", "caption_records"]
