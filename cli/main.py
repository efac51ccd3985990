# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
`laac`: the LAAC command line.

    laac caption --model MODEL_DIR --output captions.jsonl recordings/ "more/**/*.flac"
    laac caption --resume --output captions.jsonl recordings/     # after an interruption: only what is missing
    laac train CONFIG.yaml | laac evaluate ... | laac correct ... | laac demo | laac bench --model MODEL_DIR

`laac COMMAND --help` explains each command.
"""

import argparse
import csv
import glob
import io
import json
import os
import runpy
import sys
import time
from collections.abc import Sequence
from typing import Any

from ..audio_laac import AUDIO_EXTENSIONS, MAX_CHANNELS, MAX_DURATION_SECONDS, MAX_SAMPLING_RATE, MIN_SAMPLING_RATE
from .paths import DEMO_MODEL_DIR

OUTPUT_FORMATS = (".jsonl", ".csv", ".srt")
AUTO_WORKERS_FROM = 16  # inputs from which `laac caption` reads audio in a DataLoader worker by default
MAX_WORKERS = 1  # transformers' ChunkPipeline reads its inputs in at most one DataLoader worker
CSV_COLUMNS = ("path", "start", "end", "caption", "raw_caption", "error_prob", "error")
# Commands run as `python -m <module> ARGS...` (their own parsers and --help).
DELEGATED = {
    "train": ("laac.train", "train a LAAC model (HF Trainer; `laac train --help`)"),
    "evaluate": ("laac.evaluation.evaluate_captions", "score captions with the DCASE 2024 metrics"),
    "correct": ("laac.correction.correct_captions", "post-correct captions in a CSV/JSONL file with the error detector + LLM"),
    "demo": ("laac.demo.run", "the small offline demo (its model is saved to ~/.cache/laac/demo/model)"),
}
EPILOG = f"""examples:
  laac caption --model ./my-laac --output captions.jsonl ./recordings
  laac caption --resume --output captions.jsonl ./recordings     # continue an interrupted run
  laac caption --output long.srt --segment-seconds 10 meeting.flac
Run `laac COMMAND --help` for the options of each command. Without --model, `laac caption` uses the demo model
in {DEMO_MODEL_DIR} (build it with `laac demo`).
"""


# -- inputs --------------------------------------------------------------------------------------------------------


def expand_inputs(patterns: Sequence[str]) -> list[tuple[str, str | None]]:
    """
    (path, error or None) per input: files as given (missing ones too, they get an error record), folders searched
    recursively for audio files, glob patterns expanded (`**` recursive). Sorted within a folder or pattern,
    duplicates dropped.
    """
    found: dict[str, str | None] = {}
    for pattern in patterns:
        if os.path.isdir(pattern):
            paths = sorted(
                os.path.join(root, name)
                for root, _, names in os.walk(pattern)
                for name in names
                if name.lower().endswith(AUDIO_EXTENSIONS)
            )
            if not paths:
                found.setdefault(os.path.normpath(pattern), "no audio files in this folder")
        elif not os.path.lexists(pattern) and glob.has_magic(pattern):
            paths = sorted(path for path in glob.glob(pattern, recursive=True) if not os.path.isdir(path))
            if not paths:
                found.setdefault(pattern, "no file matches this pattern")
        else:
            paths = [pattern]
        for path in paths:
            found.setdefault(os.path.normpath(path), None)
    return list(found.items())


# -- outputs -------------------------------------------------------------------------------------------------------


def _single_line(text: str) -> str:
    return " ".join(str(text).split())


def _csv_rows(record: dict) -> list[list[Any]]:
    def row(path: str, start: Any, end: Any, item: dict) -> list[Any]:
        return [path, start, end, item.get("caption", ""), item.get("raw_caption", ""),
                "" if item.get("error_prob") is None else item["error_prob"], item.get("error", "")]

    rows = [row(record["path"], "", "", record)]
    rows += [row(record["path"], s["start"], s["end"], s) for s in record.get("segments", [])]
    return rows


def _srt_time(seconds: float) -> str:
    millis = round(seconds * 1000)
    return f"{millis // 3_600_000:02d}:{millis // 60_000 % 60:02d}:{millis // 1000 % 60:02d},{millis % 1000:03d}"


def srt_text(record: dict, duration: float) -> str:
    """SubRip cues: one per segment, or one over the whole clip."""
    cues = record.get("segments") or [{"start": 0.0, "end": duration, "caption": record["caption"]}]
    return "".join(
        f"{number}\n{_srt_time(cue['start'])} --> {_srt_time(cue['end'])}\n{cue['caption']}\n\n"
        for number, cue in enumerate(cues, start=1)
    )


class RecordWriter:
    """
    Appends one record per input to a .jsonl or .csv file (or JSON lines to stdout), each as ONE unbuffered
    write, so a run killed at any moment leaves whole records and at most one partial last line, which
    `done_paths` drops before a resumed run appends.
    """

    def __init__(self, path: str | None, resume: bool, overwrite: bool) -> None:
        self.path = path
        self.kind = os.path.splitext(path)[1].lower() if path else ".jsonl"
        if self.kind not in (".jsonl", ".csv"):
            raise ValueError(f"cannot stream records to {path!r}; use an output ending in .jsonl or .csv")
        self.done: set[str] = set()
        exists = bool(path) and os.path.exists(path) and os.path.getsize(path) > 0
        if exists and not (resume or overwrite):
            raise ValueError(f"{path} exists; pass --resume to continue it or --overwrite to replace it")
        if exists and resume:
            self.done = done_paths(path)
        if path is None:
            self.stream = None
            return
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.stream = open(path, "ab" if resume else "wb", buffering=0)  # noqa: SIM115  closed by close()
        if self.kind == ".csv" and self.stream.tell() == 0:
            self._write(self._csv([list(CSV_COLUMNS)]))

    @staticmethod
    def _csv(rows: list[list[Any]]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        return buffer.getvalue()

    def _write(self, text: str) -> None:
        data = text.encode("utf-8")
        if self.stream is None:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        written = 0
        while written < len(data):  # FileIO.write may write less than asked
            written += self.stream.write(data[written:])

    def write(self, record: dict) -> None:
        if self.kind == ".csv":
            self._write(self._csv(_csv_rows(record)))
        else:
            self._write(json.dumps(record, ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()


def done_paths(path: str) -> set[str]:
    """Inputs already in a .jsonl/.csv output (captioned or failed). A partial last line (a killed run) is cut off."""
    with open(path, "rb") as handle:
        data = handle.read()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(len(complete))
    text = complete.decode("utf-8")
    if path.lower().endswith(".csv"):
        return {row["path"] for row in csv.DictReader(io.StringIO(text)) if row.get("path")}
    done = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                done.add(json.loads(line)["path"])
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ValueError(f"{path} line {number} is not a LAAC record ({error}); is it the right file?") from error
    return done


# -- caption -------------------------------------------------------------------------------------------------------


def _load_pipeline(args: argparse.Namespace) -> Any:
    model = args.model
    if model is None:
        if not os.path.isdir(DEMO_MODEL_DIR):
            raise ValueError(
                f"no --model given and no demo model in {DEMO_MODEL_DIR}. Pass --model with a folder saved by "
                "LaacForConditionalGeneration.save_pretrained + LaacProcessor.save_pretrained, or build the demo "
                "model with `laac demo`"
            )
        model = DEMO_MODEL_DIR
    import laac  # noqa: F401  registers the LAAC classes and the "audio-captioning" task
    import torch
    from transformers import pipeline

    dtype = getattr(torch, args.dtype) if args.dtype != "auto" else "auto"
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    captioner = pipeline("audio-captioning", model=model, device=device, dtype=dtype)
    if args.correct is not None:
        args.correct = _post_correction(args.correct, captioner.model.config.post_corrector)
    return captioner


def _post_correction(correct: Any, model_post_corrector: Any) -> Any:
    """
    --correct (True or a gate mode), parsed once, as the model's post-corrector settings with a detector and an instruct
    LLM this machine can load: the configured ones, else their offline stand-ins, each swap said in one warning line.
    """
    from ..correction.post_corrector import PostCorrection
    from ..correction.correct_captions import available_settings

    request = PostCorrection.parse(correct, model_post_corrector)
    return PostCorrection(settings=available_settings(request.settings), device=request.device)


def _caption_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"segment_seconds": args.segment_seconds, "hop_seconds": args.hop_seconds}
    if args.hop_seconds is None:
        kwargs["hop_seconds"] = args.segment_seconds
    if args.correct is not None:
        kwargs["correct"] = args.correct
    if args.num_beams is not None:
        kwargs["num_beams"] = args.num_beams
    if args.static_cache:
        kwargs["cache_implementation"] = "static"
    if args.fast_decoding:
        kwargs["fast_decoding"] = True
    limits = ("max_duration_seconds", "max_channels", "min_sampling_rate", "max_sampling_rate")
    kwargs.update({name: getattr(args, name) for name in limits if getattr(args, name) is not None})
    return kwargs


def _limits(args: argparse.Namespace) -> Any:
    from ..audio_laac import AudioLimits

    return AudioLimits.from_kwargs({k: v for k, v in _caption_kwargs(args).items() if k in AudioLimits.FIELDS})


def _progress(total: int, quiet: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="clip", desc="captioning", disable=quiet, file=sys.stderr, dynamic_ncols=True)


def run_caption(args: argparse.Namespace) -> int:
    """Caption every input; prints the run's summary (a JSON line on stderr); returns the number of failed inputs."""
    from .caption_shards import World

    world = World.from_environment()
    if world.distributed:  # torchrun / accelerate launch: data-parallel
        return run_caption_sharded(args, world)
    failures, summary = caption_inputs(args)
    if summary is not None:
        print(json.dumps({"processes": 1, **summary}), file=sys.stderr)
    return failures


def caption_inputs(args: argparse.Namespace) -> tuple[int, dict[str, Any] | None]:
    """
    Caption every input not yet in the output: (failed inputs, summary of the run: inputs, failed, seconds,
    clips/s, the batch size asked for and the one it settled on after out-of-memory errors, DataLoader workers).
    The summary is None for an .srt output.
    """
    from .captioning import BatchSizes

    inputs = expand_inputs(args.paths)
    if args.output and args.output.lower().endswith(".srt"):
        return _run_srt(args, inputs), None
    start = time.perf_counter()
    sizes = BatchSizes(args.batch_size)
    writer = RecordWriter(args.output, args.resume, args.overwrite)
    failures, workers = 0, 0
    try:
        todo = [(path, error) for path, error in inputs if path not in writer.done]
        for path, error in todo:  # known before any decoding: no model time spent on them
            if error is not None:
                writer.write({"path": path, "error": error})
                failures += 1
        paths = [path for path, error in todo if error is None]
        if args.resume and len(todo) < len(inputs):
            print(f"resuming: {len(inputs) - len(todo)} of {len(inputs)} inputs are already in {args.output}",
                  file=sys.stderr)
        if paths:
            captioner = _load_pipeline(args)
            workers = num_workers(args, len(paths), captioner.device.type)
            failures += _caption_paths(captioner, paths, writer, sizes, workers, args)
    finally:
        writer.close()
    seconds = time.perf_counter() - start
    return failures, {"inputs": len(todo), "failed": failures, "seconds": round(seconds, 2),
                      "clips_per_s": round(len(todo) / max(seconds, 1e-9), 3), "batch_size": args.batch_size,
                      "settled_batch_size": sizes.current, "num_workers": workers}  # fmt: skip


def _caption_paths(
    captioner: Any, paths: list[str], writer: RecordWriter, sizes: Any, workers: int, args: Any
) -> int:
    """Write one record per path as it is captioned (or fails); returns the failures."""
    from .captioning import caption_records

    failures = 0
    with _progress(len(paths), args.quiet) as bar:
        for index, record in caption_records(captioner, paths, sizes, workers, **_caption_kwargs(args)):
            writer.write({"path": paths[index], **record})
            failures += "error" in record
            bar.update(1)
            bar.set_postfix(failed=failures, refresh=False)
    return failures


def num_workers(args: argparse.Namespace, inputs: int, device_type: str) -> int:
    """
    --num-workers (at most `MAX_WORKERS`: the pipeline's DataLoader reads in one worker), or by default: none when
    the model runs on the CPU (the worker would take the cores it computes on) or for fewer than
    `AUTO_WORKERS_FROM` inputs (starting it costs more than it saves); else one when this process's share of the
    CPUs (launched processes split them) leaves one to the main process.
    """
    if args.num_workers is not None:
        if args.num_workers < 0:
            raise ValueError(f"--num-workers must be >= 0, got {args.num_workers}")
        return min(args.num_workers, MAX_WORKERS)
    if device_type == "cpu" or inputs < AUTO_WORKERS_FROM:
        return 0
    processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(MAX_WORKERS, cpus // processes - 1))


def run_caption_sharded(args: argparse.Namespace, world: Any) -> int:
    """
    One of N launched processes: caption this rank's share of the inputs not yet in --output into a part file
    (through `caption_inputs`, so resume and error records work as in one process); rank 0 then appends the parts to
    --output and prints the total throughput. Returns the failures of all ranks on rank 0, 0 on the others.
    """
    import torch

    from . import caption_shards as shards

    if not args.output or args.output.lower().endswith(".srt"):
        raise ValueError(f"{world.size} processes need --output ending in .jsonl or .csv (one output for all)")
    if os.path.exists(args.output) and os.path.getsize(args.output) > 0 and not (args.resume or args.overwrite):
        raise ValueError(f"{args.output} exists; pass --resume to continue it or --overwrite to replace it")
    shards.start(world)
    if args.overwrite and world.rank == 0:
        for path in [args.output] + [shards.part_path(args.output, world, rank) for rank in range(world.size)]:
            if os.path.exists(path):
                os.remove(path)
    shards.barrier(world)  # everyone reads what is done before anyone writes
    done = done_paths(args.output) if os.path.exists(args.output) and os.path.getsize(args.output) > 0 else set()
    done |= shards.done_in_parts(args.output, world, done_paths)
    shards.barrier(world)
    share = shards.my_share([path for path, _ in expand_inputs(args.paths) if path not in done], world)
    start = time.perf_counter()
    part = argparse.Namespace(**{**vars(args), "paths": share, "output": shards.part_path(args.output, world),
                                 "resume": True, "overwrite": False, "quiet": args.quiet or world.rank > 0,
                                 "device": world.device(args.device, torch.cuda.is_available())})  # fmt: skip
    failures, summary = caption_inputs(part) if share else (0, None)
    shards.barrier(world)
    clips, failures = shards.total(world, [len(share), failures])
    settled = shards.smallest(world, summary["settled_batch_size"] if summary else args.batch_size)
    if world.rank == 0:
        seconds = time.perf_counter() - start
        shards.merge_parts(args.output, world, done)
        print(json.dumps({"processes": world.size, "inputs": int(clips), "failed": int(failures),
                          "seconds": round(seconds, 2), "clips_per_s": round(clips / max(seconds, 1e-9), 3),
                          "batch_size": args.batch_size, "settled_batch_size": settled}),
              file=sys.stderr)  # fmt: skip
    shards.barrier(world)  # no rank exits (and ends the launch) before the merge
    shards.finish(world)
    return int(failures) if world.rank == 0 else 0


def _run_srt(args: argparse.Namespace, inputs: list[tuple[str, str | None]]) -> int:
    """SubRip is a per-recording format: exactly one input, written at once when it is captioned."""
    if len(inputs) != 1:
        raise ValueError(f"an .srt output takes exactly one audio file, got {len(inputs)}; use .jsonl or .csv")
    (path, error), target = inputs[0], args.output
    if os.path.exists(target) and os.path.getsize(target) > 0 and not args.overwrite:
        if args.resume:
            return 0
        raise ValueError(f"{target} exists; pass --resume to keep it or --overwrite to replace it")
    if error is None:
        from .captioning import BatchSizes, caption_records

        captioner = _load_pipeline(args)
        _, record = next(caption_records(captioner, [path], BatchSizes(args.batch_size), **_caption_kwargs(args)))
        error = record.get("error")
    if error is not None:
        print(f"{path}: {error}", file=sys.stderr)
        return 1
    from ..audio_laac import AudioFile

    with AudioFile(path, _limits(args)) as audio_file:  # the header only: it was captioned, so it is within limits
        duration = audio_file.frames / audio_file.sampling_rate
    temporary = f"{target}.partial"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(srt_text(record, duration))
    os.replace(temporary, target)  # atomic: a killed run leaves no half-written subtitles
    return 0


def add_caption_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "caption",
        help="caption audio files, folders and globs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Caption audio files (wav/flac/ogg/mp3/... any rate, any channels). Folders are searched recursively; "
            "quote globs (\"data/**/*.wav\") to let laac expand them.\n\n"
            "Output: .jsonl (one JSON object per file: path, caption[, segments][, raw_caption, error_prob]), .csv "
            "(one row per file, then one per segment), or .srt (one file only). Without --output, JSON lines go to "
            "stdout. Records are written as files finish, so a killed run keeps everything done so far; rerun with "
            "--resume to caption only what is missing (files with an error record count as done: delete their "
            "lines to retry).\n\n"
            "A file that cannot be captioned (missing, unreadable, truncated, empty, NaN/Inf samples, or over a "
            "limit: a header claiming a rate outside 1 kHz..768 kHz, more than 12 hours or more than 32 channels; "
            "checked from the header before decoding) gets one error record and the run goes on. Exit status: the "
            "number of failed files (at most 255), 0 if none.\n\n"
            "Recordings longer than --segment-seconds are captioned per segment (start/end times) plus an overall "
            "caption: the caption most segments got, ties going to the loudest segment.\n\n"
            "A batch that runs out of device memory is split in halves and retried, and the following batches keep "
            "the smaller size; a segment that does not fit alone gets an error record. The run ends with one JSON "
            "line on stderr: inputs, failed, seconds, clips_per_s, batch_size, settled_batch_size, num_workers."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="audio files, folders or glob patterns")
    parser.add_argument("--model", "-m", help=f"LAAC model folder (default: the demo model in {DEMO_MODEL_DIR})")
    parser.add_argument("--output", "-o", help="output file: .jsonl, .csv or .srt (default: JSON lines on stdout)")
    parser.add_argument("--resume", action="store_true", help="skip the files already in --output and append")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--batch-size", "-b", type=int, default=8,
                        help="segments per model call (default: 8); halved while the device runs out of memory")
    parser.add_argument("--num-workers", "-j", type=int, default=None,
                        help="1: a DataLoader worker reads, decodes, resamples and log-mels the audio while the model "
                        f"runs (the pipeline uses at most {MAX_WORKERS}); 0 reads in the main process (default: on a "
                        f"GPU 1 from {AUTO_WORKERS_FROM} inputs on, when a CPU is left to the main process; on the "
                        "CPU 0)")
    parser.add_argument("--device", "-d", default="auto",
                        help="torch device: auto (the GPU when there is one, else cpu), cpu, cuda, cuda:1")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                        help="model weights dtype (default: as saved)")
    parser.add_argument("--correct", nargs="?", const=True, choices=("auto", "always", "never"),
                        help="post-correct captions in generate() (settings from the model config; optional gate "
                        "mode): records keep raw_caption beside the corrected caption, with error_prob and corrected")
    parser.add_argument("--segment-seconds", type=float, default=30.0,
                        help="longer audio is captioned per segment of this length (default: 30)")
    parser.add_argument("--hop-seconds", type=float, default=None,
                        help="distance between segment starts (default: --segment-seconds, no overlap)")
    parser.add_argument("--num-beams", type=int, default=None, help="beam size (default: the model's, 3)")
    parser.add_argument("--fast-decoding", action="store_true",
                        help="decode with the opt-in fast loop (fast_decoding/custom_generate/generate.py, same ids "
                        "as stock generate; see docs/performance.md) instead of transformers' generate")
    parser.add_argument("--static-cache", action="store_true",
                        help="decode with a static cache (cache_implementation='static'; with --fast-decoding, the "
                        "loop's fixed-shape step), compiled on a GPU (CUDA graphs); one compilation per batch shape")
    parser.add_argument("--max-duration-seconds", type=float, default=None,
                        help=f"refuse longer inputs (default: the model's, normally {MAX_DURATION_SECONDS:g} = 12 h)")
    parser.add_argument("--max-channels", type=int, default=None,
                        help=f"refuse inputs with more channels (default: {MAX_CHANNELS})")
    parser.add_argument("--min-sampling-rate", type=float, default=None,
                        help=f"refuse lower rates as not audio (default: {MIN_SAMPLING_RATE} Hz)")
    parser.add_argument("--max-sampling-rate", type=float, default=None,
                        help=f"refuse higher rates (default: {MAX_SAMPLING_RATE} Hz)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


# -- bench ---------------------------------------------------------------------------------------------------------


def add_bench_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure captioning speed on synthetic audio",
        description="Caption --clips synthetic noise clips of --seconds at each --batch-sizes and print one JSON "
        "line per batch size: clips/s and real-time factor (audio seconds per wall-clock second).",
    )
    parser.add_argument("--model", "-m", help=f"LAAC model folder (default: {DEMO_MODEL_DIR})")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--device", "-d", default="auto", help="auto (the GPU when there is one), cpu, cuda, ...")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    parser.add_argument("--num-beams", type=int, default=None)


def run_bench(args: argparse.Namespace) -> int:
    import numpy as np

    captioner = _load_pipeline(args)
    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(int(args.seconds * 16000))).astype(np.float32) for _ in range(args.clips)]
    kwargs = {} if args.num_beams is None else {"num_beams": args.num_beams}
    captioner(clips[:1], sampling_rate=16000, **kwargs)  # warm-up
    for batch_size in args.batch_sizes:
        start = time.perf_counter()
        captioner(clips, sampling_rate=16000, batch_size=batch_size, **kwargs)
        elapsed = time.perf_counter() - start
        result = {"batch_size": batch_size, "clips": args.clips, "clip_seconds": args.seconds,
                  "device": str(captioner.device),
                  "clips_per_s": round(args.clips / elapsed, 3),
                  "realtime_factor": round(args.clips * args.seconds / elapsed, 2)}
        print(json.dumps(result), flush=True)
    return 0


# -- entry point ---------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="laac",
        description="LAAC: automated audio captioning (CED audio encoder -> Q-Former -> LLM).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_caption_parser(subparsers)
    add_bench_parser(subparsers)
    for name, (_, help_text) in DELEGATED.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def run_delegated(command: str, argv: list[str]) -> int:
    """Run `python -m <module> argv` in this process, so each command keeps its own parser and --help."""
    import importlib.util

    module = DELEGATED[command][0]
    if importlib.util.find_spec(module) is None:
        raise ValueError(f"`laac {command}` needs {module}, which this installation does not have (yet)")
    saved = sys.argv
    sys.argv = [f"laac {command}", *argv]
    try:
        runpy.run_module(module, run_name="__main__")
    except SystemExit as done:  # sys.exit(message) prints the message and exits with 1, as Python itself does
        code = done.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    except OSError as error:  # a file that cannot be read or written, a download that failed: its message says which
        print(f"laac {command}: error: {error}", file=sys.stderr)
        return 1
    finally:
        sys.argv = saved
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] in DELEGATED:
        try:
            return run_delegated(argv[0], argv[1:])
        except ValueError as error:
            parser.exit(2, f"laac: error: {error}\n")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        failures = run_caption(args) if args.command == "caption" else run_bench(args)
    except (ValueError, OSError) as error:  # OSError: a file or download that failed (its message says which)
        parser.exit(2, f"laac {args.command}: error: {error}\n")
    return min(failures, 255)


if __name__ == "__main__":
    sys.exit(main())
