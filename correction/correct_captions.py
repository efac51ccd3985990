"""Post-correct a file of captions: CSV or JSONL in (a `caption` column/key), the same format out.

Every other column is kept; the output adds `raw_caption`, `error_prob`, `corrected` and `reason`, and `caption`
holds the final text. The flags after the files are the fields of `CorrectorSettings`. Example (offline stand-ins
for the report's FENSE detector and Llama 3 8B Instruct; SmolLM2 gets the strict answer rules):

    python -m laac.correction.correct_captions --input preds.csv --output preds_corrected.csv --corrector_model smollm2

Without a network the official FENSE checkpoint cannot be downloaded; then the offline detector of
`train_error_detector` is used (trained once into ~/.cache/laac/error_detector_minilm, minutes on 2 CPU cores).
Likewise, when the instruct LLM (Llama 3 8B Instruct by default) is neither local nor reachable on the Hugging Face
Hub, the offline stand-in SmolLM2-135M-Instruct ("smollm2", strict answer rules) rewrites; each swap is one
warning line. A gated repository the Hub refuses stops at once, naming both fixes.
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

from laac.configuration_laac import OFFLINE_CORRECTOR_MODEL, CorrectorSettings
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


def hub_model_problem(model_id: str) -> str | None:
    """
    Why the causal LM `model_id` cannot be loaded now, or None when it can: a local folder or file, the offline
    alias, a Hub id in the local Hugging Face cache, or one the Hub answers for (one quick request, no retries).
    Raises ValueError, naming the fixes, for a gated repository this machine has no access to.
    """
    if model_id == OFFLINE_CORRECTOR_MODEL or os.path.exists(model_id):
        return None
    from huggingface_hub import auth_check, constants, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if isinstance(try_to_load_from_cache(model_id, "config.json"), str):
        return None
    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache"
    try:
        auth_check(model_id)
    except GatedRepoError as error:
        raise ValueError(
            f"{model_id} is a gated repository this machine has no access to: accept its licence on "
            f"https://huggingface.co/{model_id} and log in (`hf auth login`), or pass --corrector_model "
            f"{OFFLINE_CORRECTOR_MODEL} (the offline stand-in)"
        ) from error
    except RepositoryNotFoundError as error:
        raise ValueError(
            f"no model {model_id!r} on the Hugging Face Hub: pass --corrector_model with a Hub id, a local folder, a "
            f".gguf file or {OFFLINE_CORRECTOR_MODEL}"
        ) from error
    except Exception as error:  # noqa: BLE001  no network, a proxy, a timeout: the Hub client's own error types
        return f"the Hugging Face Hub cannot be reached: {error}"
    return None


def corrector_fallback(settings: CorrectorSettings) -> CorrectorSettings:
    """
    The settings with an instruct LLM that can be had: the one named when `hub_model_problem` finds none, else the
    offline stand-in SmolLM2-135M-Instruct (its answer rules follow: strict under "auto"), said in one warning line.
    """
    if settings.mode == "never":
        return settings
    problem = hub_model_problem(settings.corrector_model)
    if problem is None:
        return settings
    logger.warning(
        "The corrector LLM %s cannot be loaded (%s); using the offline stand-in %s (SmolLM2-135M-Instruct).",
        settings.corrector_model, problem, OFFLINE_CORRECTOR_MODEL,
    )  # fmt: skip
    return CorrectorSettings.from_dict(settings.to_dict(), corrector_model=OFFLINE_CORRECTOR_MODEL)


def available_settings(settings: CorrectorSettings, offline_detector_dir: str | None = None) -> CorrectorSettings:
    """`settings` with a detector and an LLM that can be had here (`offline_fallback`, `corrector_fallback`)."""
    return corrector_fallback(offline_fallback(settings, offline_detector_dir))


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
        available_settings(settings, args.offline_detector_dir), device=args.device
    )
    rows = correct_rows(read_rows(args.input), post_corrector, args.caption_column)
    write_rows(args.output, rows)
    reasons = dict(Counter(row["reason"] for row in rows))
    logger.warning("Wrote %d captions to %s; reasons: %s", len(rows), args.output, reasons)
    return rows


if __name__ == "__main__":
    main()
