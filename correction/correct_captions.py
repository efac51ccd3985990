"""Post-correct a file of captions: CSV or JSONL in (a `caption` column/key), the same format out.

Every other column is kept; the output adds `raw_caption`, `error_prob`, `corrected` and `reason`, and `caption`
holds the final text. The flags after the files are the fields of `CorrectorSettings`. Example (offline stand-ins
for the report's FENSE detector and Llama 3 8B Instruct; SmolLM2 gets the strict answer rules):

    python -m laac.correction.correct_captions --input preds.csv --output preds_corrected.csv --corrector_model smollm2

Without a network the official FENSE checkpoint cannot be downloaded; then the offline detector of
`train_error_detector` is used (trained once into ~/.cache/laac/error_detector_minilm, minutes on 2 CPU cores).
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

from laac.configuration_laac import CorrectorSettings
from laac.corrector_laac import FENSE_CHECKPOINTS, PostCorrector, fense_checkpoint_file
from laac.correction.train_error_detector import ensure_error_detector


logger = logging.get_logger(__name__)

ADDED_COLUMNS = ("raw_caption", "error_prob", "corrected", "reason")


@dataclass
class CorrectCaptionsArguments:
    """The files; the post-corrector's own settings are the fields of `CorrectorSettings` (parsed alongside)."""

    input: str = field(metadata={"help": "CSV or JSONL file with a `caption` column/key."})
    output: str = field(metadata={"help": "Where to write; same format as the input (by extension)."})
    caption_column: str = field(default="caption")
    offline_detector_dir: str | None = field(
        default=None,
        metadata={"help": "Where the offline detector is cached (trained once) when the official FENSE checkpoint "
                  "cannot be downloaded; default ~/.cache/laac/error_detector_minilm."},
    )
    device: str | None = field(default=None)


def offline_fallback(settings: CorrectorSettings, offline_detector_dir: str | None) -> CorrectorSettings:
    """
    The settings with a detector that can be had: the official FENSE checkpoint when it is cached or downloads,
    else the offline MiniLM detector (trained on Clotho-evaluation text; see train_error_detector).
    """
    if settings.mode != "auto" or settings.detector not in FENSE_CHECKPOINTS:
        return settings
    try:
        fense_checkpoint_file(settings.detector)
        return settings
    except OSError as error:  # urllib's URLError and socket errors are OSErrors
        detector = ensure_error_detector(offline_detector_dir)
        logger.warning(
            "The official FENSE detector %s cannot be downloaded (%s); using the offline detector in %s.",
            settings.detector, error, detector,
        )  # fmt: skip
        return CorrectorSettings.from_dict(settings.to_dict(), detector=detector, detector_tokenizer=None,
                                           detector_config=None)


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
    parser = HfArgumentParser((CorrectCaptionsArguments, CorrectorSettings))
    args, settings = parser.parse_args_into_dataclasses(args=sys.argv[1:] if argv is None else argv)
    post_corrector = PostCorrector.from_settings(
        offline_fallback(settings, args.offline_detector_dir), device=args.device
    )
    rows = correct_rows(read_rows(args.input), post_corrector, args.caption_column)
    write_rows(args.output, rows)
    reasons = dict(Counter(row["reason"] for row in rows))
    logger.warning("Wrote %d captions to %s; reasons: %s", len(rows), args.output, reasons)
    return rows


if __name__ == "__main__":
    main()
