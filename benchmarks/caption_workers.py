# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
`laac caption` over a folder of generated clips, reading the audio in the main process (--num-workers 0) against
reading, decoding, resampling and log-melling it in the pipeline's DataLoader worker: seconds and clips/s per worker count,
the passes interleaved (`--repeats`, the best kept) so that a machine's changing load hits every setting alike, and
whether every run wrote the same records.

    python benchmarks/caption_workers.py --shape demo --clips 40 --workers 0 1 --repeats 2

The model is a random one of `decode_benchmark`'s shapes, saved to a temporary folder; each run is a fresh
`python -m laac.cli.main caption` process. The figures compared are those of its summary line (from expanding the
inputs to the last record, model loading included); `wall_s` adds starting Python and importing the libraries.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from laac.benchmarks.decode_benchmark import SHAPES, build, write_clips


def caption_run(model: str, inputs: str, output: str, workers: int, batch: int) -> dict[str, Any]:
    """One `laac caption` process over `inputs` (folder or file): its summary line, wall seconds, records by path."""
    if os.path.exists(output):
        os.remove(output)
    command = [sys.executable, "-m", "laac.cli.main", "caption", "-q", "-m", model, "-b", str(batch),
               "-j", str(workers), "-o", output, inputs]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    lines = [line for line in done.stderr.splitlines() if line.startswith('{"processes"')]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"laac caption failed ({done.returncode}):\n{done.stderr[-3000:]}")
    with open(output, encoding="utf-8") as handle:
        records = {record["path"]: record for record in map(json.loads, handle)}
    return {"summary": json.loads(lines[-1]), "wall_s": wall, "records": records}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--file_rate", type=int, default=44100, help="sampling rate of the written FLAC files")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        model_dir, clips = os.path.join(folder, "model"), os.path.join(folder, "clips")
        model, processor = build(args.shape, 64)
        model.save_pretrained(model_dir)
        processor.save_pretrained(model_dir)
        os.makedirs(clips)
        paths = write_clips(clips, args.clips, args.seconds, args.file_rate)
        one = caption_run(model_dir, paths[0], os.path.join(folder, "one.jsonl"), 0, args.batch)
        print(json.dumps({"phase": "one_clip", "wall_s": round(one["wall_s"], 2), "summary": one["summary"]}))
        best: dict[int, dict[str, Any]] = {}
        for _ in range(args.repeats):
            for workers in args.workers:
                run = caption_run(model_dir, clips, os.path.join(folder, f"out{workers}.jsonl"), workers, args.batch)
                if workers not in best or run["summary"]["seconds"] < best[workers]["summary"]["seconds"]:
                    best[workers] = run
    for workers, run in best.items():
        print(json.dumps({"phase": "caption", "workers": workers, "wall_s": round(run["wall_s"], 2),
                          "summary": run["summary"]}))  # fmt: skip
    baseline = best[args.workers[0]]
    summary = {
        "shape": args.shape, "clips": args.clips, "seconds": args.seconds, "batch": args.batch,
        "clips_per_s": {workers: run["summary"]["clips_per_s"] for workers, run in best.items()},
        "same_records": all(run["records"] == baseline["records"] for run in best.values()),
    }  # fmt: skip
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
