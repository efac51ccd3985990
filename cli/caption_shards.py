# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
Data-parallel `laac caption` over the processes a launcher starts (`torchrun`, `accelerate launch`): each process
captions every N-th input that is not yet in the output into its own part file, then rank 0 appends the parts to
the one output, so every input appears exactly once; a killed run resumes from the output and the parts.

The launcher's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) is all it reads; the processes only
synchronise through a gloo process group (barriers and two sums), so it runs on CPUs and GPUs alike.
"""

import csv
import json
import os
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class World:
    """This process's place among the launched ones (1 process without a launcher)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> "World":
        rank, size, local = (int(os.environ.get(name, default)) for name, default in
                             (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)))  # fmt: skip
        return cls(rank, size, local)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def device(self, requested: str, cuda_available: bool) -> str:
        """`auto`: this process's GPU (cuda:LOCAL_RANK) when there are GPUs, else cpu; anything else as given."""
        if requested != "auto":
            return requested
        return f"cuda:{self.local_rank}" if cuda_available else "cpu"


def part_path(output: str, world: World, rank: int | None = None) -> str:
    """The part file of `rank` (default: this process) beside `output`: `out.jsonl` -> `out.part1-of-2.jsonl`."""
    stem, extension = os.path.splitext(output)
    return f"{stem}.part{world.rank if rank is None else rank}-of-{world.size}{extension}"


def start(world: World) -> None:
    """Join the launcher's process group (gloo: CPU tensors only, for barriers and sums)."""
    import torch.distributed as dist

    if world.distributed and not dist.is_initialized():
        dist.init_process_group("gloo")


def barrier(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()


def total(world: World, values: list[float]) -> list[float]:
    """`values` summed over the processes."""
    if not world.distributed:
        return list(values)
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def smallest(world: World, value: int) -> int:
    """The smallest of the processes' `value`s (the batch size every process settled on or below)."""
    if not world.distributed:
        return value
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


def finish(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        dist.destroy_process_group()


def my_share(todo: list[Any], world: World) -> list[Any]:
    """Every `world.size`-th item, from this rank's offset: the shards are disjoint and cover `todo`."""
    return todo[world.rank :: world.size]


def done_in_parts(output: str, world: World, done_paths: Callable[[str], set[str]]) -> set[str]:
    """Inputs already in any part file of a run with this many processes (a killed distributed run)."""
    done: set[str] = set()
    for rank in range(world.size):
        path = part_path(output, world, rank)
        if os.path.exists(path) and os.path.getsize(path) > 0:
            done |= done_paths(path)
    return done


def merge_parts(output: str, world: World, existing: set[str]) -> None:
    """
    Rank 0: append the parts' complete records to `output`, except inputs it already holds (`existing`: a merge
    cut short by a kill), with the CSV header once; then delete the parts.
    """
    is_csv = output.lower().endswith(".csv")
    with open(output, "ab") as target:
        for rank in range(world.size):
            path = part_path(output, world, rank)
            if not os.path.exists(path):
                continue
            with open(path, "rb") as handle:
                data = handle.read()
            text = data[: data.rfind(b"\n") + 1].decode("utf-8")  # a partial last line (a killed process) is dropped
            header, lines = _split(text, is_csv)
            if is_csv and header and target.tell() == 0:
                target.write(header.encode("utf-8"))
            target.write("".join(line for path_, line in lines if path_ not in existing).encode("utf-8"))
    for rank in range(world.size):
        if os.path.exists(path := part_path(output, world, rank)):
            os.remove(path)


def _split(text: str, is_csv: bool) -> tuple[str, list[tuple[str, str]]]:
    """(CSV header line or "", [(input path, record line)]) of a part file's text."""
    lines = text.splitlines(keepends=True)
    if not is_csv:
        return "", [(json.loads(line)["path"], line) for line in lines if line.strip()]
    rows = list(csv.reader(lines))  # one physical line per row: captions are single lines
    return (lines[0] if lines else ""), [(row[0], line) for row, line in zip(rows[1:], lines[1:]) if row]
