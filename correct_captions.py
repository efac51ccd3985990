"""Post-correct a file of captions: CSV or JSONL in (a `caption` column/key), the same format out.

Every other column is kept; the output adds `raw_caption`, `error_prob`, `corrected` and `reason`, and `caption`
holds the final text. Example (offline stand-ins for the report's FENSE detector and Llama 3 8B Instruct):

    python -m laac.correct_captions --input preds.csv --output preds_corrected.csv \
        --detector outputs/error_detector_minilm --corrector_model smollm2
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from transformers import HfArgumentParser
from transformers.utils import logging

from laac.corrector_laac import (
    CORRECTION_SYSTEM_PROMPT,
    DEFAULT_CORRECTOR_MODEL,
    DEFAULT_DETECTOR,
    DEFAULT_ERROR_THRESHOLD,
    PostCorrector,
)


logger = logging.get_logger(__name__)

ADDED_COLUMNS = ("raw_caption", "error_prob", "corrected", "reason")


@dataclass
class CorrectCaptionsArguments:
    input: str = field(metadata={"help": "CSV or JSONL file with a `caption` column/key."})
    output: str = field(metadata={"help": "Where to write; same format as the input (by extension)."})
    caption_column: str = field(default="caption")
    detector: str = field(default=DEFAULT_DETECTOR, metadata={"help": "echecker .ckpt, folder, FENSE name or Hub id."})
    detector_tokenizer: str | None = field(default=None, metadata={"help": "Local tokenizer for the detector."})
    detector_config: str | None = field(default=None, metadata={"help": "Local encoder config for the detector."})
    corrector_model: str = field(default=DEFAULT_CORRECTOR_MODEL, metadata={"help": "Hub id, folder, .gguf, smollm2."})
    threshold: float = field(default=DEFAULT_ERROR_THRESHOLD, metadata={"help": "Rewrite when error_prob > this."})
    mode: str = field(default="auto", metadata={"help": "auto | always | never."})
    batch_size: int = field(default=8)
    max_new_tokens: int = field(default=40)
    system_prompt: str = field(default=CORRECTION_SYSTEM_PROMPT)
    device: str | None = field(default=None)


def _is_jsonl(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in (".jsonl", ".json")


def read_rows(path: str) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as handle:
        if _is_jsonl(path):
            return [json.loads(line) for line in handle if line.strip()]
        return list(csv.DictReader(handle))


def write_rows(path: str, rows: list[dict[str, Any]]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        if _is_jsonl(path):
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            return
        columns = list(dict.fromkeys(key for row in rows for key in row))
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def correct_rows(rows: list[dict[str, Any]], post_corrector: PostCorrector, caption_column: str) -> list[dict]:
    """Rows with the final caption in `caption_column` and the post-corrector's record fields added."""
    if rows and caption_column not in rows[0]:
        raise ValueError(
            f"no {caption_column!r} column in the input (columns: {list(rows[0])}); set --caption_column."
        )
    records = post_corrector([row.get(caption_column) for row in rows])
    return [
        {**row, caption_column: record["caption"], **{key: record[key] for key in ADDED_COLUMNS}}
        for row, record in zip(rows, records)
    ]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = HfArgumentParser(CorrectCaptionsArguments)
    (args,) = parser.parse_args_into_dataclasses(args=sys.argv[1:] if argv is None else argv)
    post_corrector = PostCorrector.from_settings(
        {
            "mode": args.mode,
            "threshold": args.threshold,
            "detector": args.detector,
            "detector_tokenizer": args.detector_tokenizer,
            "detector_config": args.detector_config,
            "corrector_model": args.corrector_model,
            "system_prompt": args.system_prompt,
            "max_new_tokens": args.max_new_tokens,
            "batch_size": args.batch_size,
            "device": args.device,
        }
    )
    rows = correct_rows(read_rows(args.input), post_corrector, args.caption_column)
    write_rows(args.output, rows)
    reasons = dict(Counter(row["reason"] for row in rows))
    logger.warning("Wrote %d captions to %s; reasons: %s", len(rows), args.output, reasons)
    return rows


if __name__ == "__main__":
    main()
