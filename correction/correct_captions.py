"""Post-correct a file of captions: CSV or JSONL in (a `caption` column/key), the same format out.

Every other column is kept; the output adds `raw_caption`, `error_prob`, `corrected` and `reason`, and `caption`
holds the final text. The flags after the files are the fields of `CorrectorSettings`. Example (offline stand-ins
for the report's FENSE detector and Llama 3 8B Instruct; SmolLM2 gets the strict answer rules):

    python -m laac.correction.correct_captions --input preds.csv --output preds_corrected.csv --corrector_model smollm2

Without a network the official FENSE checkpoint cannot be downloaded; then the offline detector of
`train_error_detector` is used (trained once into ~/.cache/laac/error_detector_minilm, minutes on 2 CPU cores).
Likewise, when the default instruct LLM (Llama 3 8B Instruct) is neither in the local Hugging Face cache nor
reachable on the Hub (one request of at most a few seconds; none under HF_HUB_OFFLINE=1), the offline stand-in
SmolLM2-135M-Instruct ("smollm2", strict answer rules) rewrites; each swap is one warning line. Another LLM that
cannot be had, or a gated repository the Hub refuses (licence not accepted, not logged in), stops at once with an
error naming the fixes.
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

from laac.correction.post_corrector import DEFAULT_CORRECTOR_MODEL, OFFLINE_CORRECTOR_MODEL, CorrectorSettings
from laac.correction.post_corrector import FENSE_CHECKPOINTS, PostCorrector, fense_checkpoint_file
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
    post_corrector: str | None = field(
        default=None,
        metadata={"help": "Settings saved by PostCorrector.save_pretrained (a folder with post_corrector_config.json) "
                  "or a LAAC model folder (its config's corrector settings); settings flags given with other than "
                  "their default values override them."},
    )


def requested_settings(flags: CorrectorSettings, post_corrector: str | None) -> CorrectorSettings:
    """The settings flags, or the settings saved at `post_corrector` with the flags that leave their defaults."""
    if post_corrector is None:
        return flags
    defaults = CorrectorSettings().to_dict()
    overrides = {name: value for name, value in flags.to_dict().items() if value != defaults[name]}
    return PostCorrector.from_pretrained(post_corrector, **overrides).settings


def offline_fallback(settings: CorrectorSettings, offline_detector_dir: str | None) -> CorrectorSettings:
    """
    The settings with a detector that can be had: the official FENSE checkpoint when it is cached or downloads,
    else the offline MiniLM detector (trained on Clotho's development captions where they could be had, else on
    Clotho-evaluation text; see train_error_detector).
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


# Seconds the Hub gets to answer the one access check made before a corrector LLM is loaded.
HUB_PROBE_TIMEOUT = 5.0
LOGIN_FIX = "log in with `hf auth login` (`huggingface-cli login` with older huggingface_hub)"


class CorrectorUnavailableError(ValueError):
    """The corrector LLM that the settings name cannot be loaded here, and no stand-in is used in its place."""


def ask_hub_for_access(model_id: str, timeout: float = HUB_PROBE_TIMEOUT) -> None:
    """
    One request, no retries, to the Hub's access check for the model `model_id` (with the local token, if any),
    which must answer within `timeout` seconds. Raises the Hugging Face Hub client's errors: `GatedRepoError`,
    `RepositoryNotFoundError` and `HfHubHTTPError` for a refusal, the HTTP library's errors without a network.
    """
    from huggingface_hub import constants, get_session
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status

    url = f"{constants.ENDPOINT}/api/models/{model_id}/auth-check"
    hf_raise_for_status(get_session().get(url, headers=build_hf_headers(), timeout=timeout))


def hub_model_problem(model_id: str) -> str | None:
    """
    Why the causal LM `model_id` cannot be loaded now, or None when it can: a local folder or file, the offline
    alias, a Hub id in the local Hugging Face cache, or one the Hub gives access to (`ask_hub_for_access`: one
    request that waits at most `HUB_PROBE_TIMEOUT` seconds; none under HF_HUB_OFFLINE).
    Raises `CorrectorUnavailableError`, naming the fixes, when the Hub refuses access (a gated repository whose
    licence this machine's account has not accepted, no token) or has no such model, and for a path that does not
    exist.
    """
    if model_id == OFFLINE_CORRECTOR_MODEL or os.path.exists(model_id):
        return None
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    fixes = f"pass --corrector_model with a local folder, a .gguf file or {OFFLINE_CORRECTOR_MODEL} (offline stand-in)"
    try:
        validate_repo_id(model_id)
        is_hub_id = not model_id.endswith(".gguf")
    except HFValidationError:
        is_hub_id = False
    if not is_hub_id:
        raise CorrectorUnavailableError(
            f"corrector model {model_id!r} is neither a local file or folder nor a Hugging Face Hub id; {fixes}"
        )
    if isinstance(try_to_load_from_cache(model_id, "config.json"), str):
        return None
    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache"
    try:
        ask_hub_for_access(model_id, HUB_PROBE_TIMEOUT)
    except HfHubHTTPError as error:
        status = getattr(error.response, "status_code", None)
        if isinstance(error, GatedRepoError) or status in (401, 403):
            what = (
                f"{model_id} is a gated repository this machine has no access to"
                if isinstance(error, GatedRepoError)
                else f"the Hugging Face Hub refuses access to {model_id} (it is gated or private, or the token is "
                "not valid)"
            )
            raise CorrectorUnavailableError(
                f"{what} (HTTP {status}): accept its licence on https://huggingface.co/{model_id} and {LOGIN_FIX}, "
                f"or pass --corrector_model {OFFLINE_CORRECTOR_MODEL} (the offline stand-in)"
            ) from error
        if isinstance(error, RepositoryNotFoundError):
            raise CorrectorUnavailableError(f"no model {model_id!r} on the Hugging Face Hub; {fixes}") from error
        return f"the Hugging Face Hub answered HTTP {status}"
    except Exception as error:  # noqa: BLE001  no network, a proxy, a timeout: the HTTP library's own error types
        return f"the Hugging Face Hub cannot be reached: {error or type(error).__name__}"
    return None


def corrector_fallback(settings: CorrectorSettings) -> CorrectorSettings:
    """
    The settings with an instruct LLM that can be had, decided at once (`hub_model_problem`): the one named when it
    can be loaded. When it cannot, the default Llama 3 8B Instruct is replaced by the offline stand-in
    SmolLM2-135M-Instruct (its answer rules follow: strict unless `answer_rules` names others), said in one warning
    line; any other model stops with `CorrectorUnavailableError`, naming `--corrector_model smollm2`.
    """
    if settings.mode == "never":
        return settings
    problem = hub_model_problem(settings.corrector_model)
    if problem is None:
        return settings
    if settings.corrector_model != DEFAULT_CORRECTOR_MODEL:
        raise CorrectorUnavailableError(
            f"the corrector LLM {settings.corrector_model} cannot be loaded ({problem}); pass --corrector_model with "
            f"a local folder, a .gguf file or {OFFLINE_CORRECTOR_MODEL} (offline stand-in)"
        )
    fallback = CorrectorSettings.from_dict(settings.to_dict(), corrector_model=OFFLINE_CORRECTOR_MODEL)
    rules = "strict" if fallback.answer_rules == "auto" else fallback.answer_rules
    logger.warning(
        "The corrector LLM %s cannot be loaded (%s); using the offline stand-in %s (SmolLM2-135M-Instruct, %s "
        "answer rules).",
        settings.corrector_model, problem, OFFLINE_CORRECTOR_MODEL, rules,
    )  # fmt: skip
    return fallback


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
    settings = requested_settings(settings, args.post_corrector)
    post_corrector = PostCorrector.from_settings(
        available_settings(settings, args.offline_detector_dir), device=args.device
    )
    rows = correct_rows(read_rows(args.input), post_corrector, args.caption_column)
    write_rows(args.output, rows)
    reasons = dict(Counter(row["reason"] for row in rows))
    logger.warning("Wrote %d captions to %s; reasons: %s", len(rows), args.output, reasons)
    return rows


if __name__ == "__main__":
    try:
        main()
    except CorrectorUnavailableError as error:  # the message names the fixes; a traceback would only bury them
        sys.exit(f"laac correct: error: {error}")
