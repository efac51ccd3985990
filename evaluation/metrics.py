# Copyright 2024 The LAAC Authors. Licensed under the Apache License, Version 2.0.
"""DCASE 2024 Task 6 caption metrics on top of aac-metrics 0.5.4, usable offline.

The DCASE 2024 set is BLEU-1..4, ROUGE-L, METEOR, CIDEr-D, SPICE, SPIDEr, SPIDEr-FL, Sentence-BERT similarity and
FENSE. aac-metrics computes all of them, but it expects its own download layout, refuses Java > 13 and fetches the
FENSE/SBERT models from the internet on first use. This module:

- builds the aac-metrics cache layout from the jars that the `pycocoevalcap` 1.2 wheel ships (METEOR 1.5 with its
  paraphrase table, Stanford CoreNLP 3.4.1 for the PTB tokenizer, SPICE 1.0 and its libraries);
- lifts the Java version ceiling only for the duration of our own calls (no edit of site-packages);
- computes a metric only when everything it needs is on disk and reports the others *by name* in
  `result["unavailable"]` (metric -> reason); a missing metric is never scored as 0.

Scores are floats on aac-metrics' scale (BLEU/METEOR/ROUGE-L/SPICE/SBERT/FENSE in [0, 1] or [-1, 1], CIDEr-D and
SPIDEr in [0, 10] and [0, 5.5]); multiply by 100 to compare with the tables of the DCASE reports.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from transformers.utils import logging


logger = logging.get_logger(__name__)

DCASE2024_METRICS: tuple[str, ...] = (
    "bleu_1",
    "bleu_2",
    "bleu_3",
    "bleu_4",
    "rouge_l",
    "meteor",
    "cider_d",
    "spice",
    "spider",
    "spider_fl",
    "sbert_sim",
    "fense",
)
# "fer" (fluency error rate of the FENSE detector) is not a DCASE ranking metric but may be asked for by name.
SUPPORTED_METRICS: tuple[str, ...] = DCASE2024_METRICS + ("fer",)

# What each metric needs besides the PTB tokenizer; composite metrics inherit their parts' needs.
_JAVA_METRICS = ("meteor", "spice", "spider", "spider_fl")
_SPICE_METRICS = ("spice", "spider", "spider_fl")
_SBERT_METRICS = ("sbert_sim", "fense")
_ECHECKER_METRICS = ("fer", "fense", "spider_fl")

DEFAULT_CACHE_DIR = Path("~/.cache/laac").expanduser()
DEFAULT_SBERT_MODEL = "paraphrase-TinyBERT-L6-v2"
DEFAULT_ECHECKER_NAME = "echecker_clotho_audiocaps_base"
SPICE_CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")

# Layout that aac-metrics 0.5.4 expects under `cache_path` (see aac_metrics.functional.meteor/spice and
# aac_metrics.utils.tokenization): relative destination -> relative source inside the pycocoevalcap package.
_PYCOCOEVALCAP_LAYOUT: dict[str, str] = {
    "aac-metrics/meteor/meteor-1.5.jar": "meteor/meteor-1.5.jar",
    # METEOR looks for its paraphrase table in data/ next to the jar.
    "aac-metrics/meteor/data/paraphrase-en.gz": "meteor/data/paraphrase-en.gz",
    "aac-metrics/stanford_nlp/stanford-corenlp-3.4.1.jar": "tokenizer/stanford-corenlp-3.4.1.jar",
    "aac-metrics/spice/spice-1.0.jar": "spice/spice-1.0.jar",
}


# --------------------------------------------------------------------------------------------------------------------
# Environment: cache layout, Java, models
# --------------------------------------------------------------------------------------------------------------------
def _pycocoevalcap_dir() -> Path:
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("pycocoevalcap is not installed; run `pip install pycocoevalcap==1.2` (it ships the jars).")
    return Path(next(iter(spec.submodule_search_locations)))


def _link(src: Path, dst: Path) -> None:
    """Symlink `src` to `dst` unless `dst` already exists (a user's aac-metrics download wins)."""
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink():  # dangling link left by a moved environment
        dst.unlink()
    try:
        dst.symlink_to(src)
    except OSError:  # filesystems without symlinks
        shutil.copy2(src, dst)


def prepare_cache_dir(cache_dir: str | Path | None = None, spice_corenlp_dir: str | Path | None = None) -> Path:
    """Create (idempotently) the aac-metrics jar layout under `cache_dir` from the pycocoevalcap jars.

    Args:
        cache_dir: Directory given to aac-metrics as `cache_path`; files go under `<cache_dir>/aac-metrics/`.
            Defaults to `~/.cache/laac`.
        spice_corenlp_dir: Optional folder holding `stanford-corenlp-3.6.0.jar` and
            `stanford-corenlp-3.6.0-models.jar`, the two SPICE dependencies that no package registry carries.

    Returns:
        The resolved cache directory, to pass as `cache_path` to aac-metrics.
    """
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else DEFAULT_CACHE_DIR
    source = _pycocoevalcap_dir()
    for dst, src in _PYCOCOEVALCAP_LAYOUT.items():
        if (source / src).is_file():
            _link(source / src, cache_dir / dst)
    spice_dir = cache_dir / "aac-metrics" / "spice"
    for jar in sorted((source / "spice" / "lib").glob("*.jar")):
        _link(jar, spice_dir / "lib" / jar.name)
    if spice_corenlp_dir is not None:
        for name in SPICE_CORENLP_JARS:
            if (Path(spice_corenlp_dir) / name).is_file():
                _link(Path(spice_corenlp_dir).resolve() / name, spice_dir / "lib" / name)
    (spice_dir / "cache").mkdir(parents=True, exist_ok=True)
    return cache_dir


def java_major_version(java_path: str | Path | None = None) -> int:
    """Return the major version of the Java executable (8 for "1.8.0_x", 17 for "17.0.15").

    Asked once per executable and process: `java -version` starts a JVM (0.7 s on 2 CPU cores), and one scoring
    asked three times.

    Raises:
        ValueError: if the executable cannot be run.
    """
    from aac_metrics.utils.globals import _get_java_path

    return _java_major_version(str(_get_java_path(java_path)))


@functools.lru_cache(maxsize=None)
def _java_major_version(java_path: str) -> int:
    from aac_metrics.utils.checks import _get_java_version
    from packaging.version import Version

    version = Version(_get_java_version(java_path))
    # Java <= 8 numbers itself 1.MAJOR.MINOR.
    return version.minor if version.major == 1 else version.major


@contextlib.contextmanager
def _java_version_allowed(major: int) -> Iterator[None]:
    """Let aac-metrics accept Java `major` while the block runs.

    aac-metrics 0.5.4 refuses any Java above 13 through `check_java_path`, which reads the module constant
    `MAX_JAVA_MAJOR_VERSION` at call time. METEOR 1.5 and CoreNLP 3.4.1 run fine on Java 17, so the ceiling is
    raised for our calls only and restored afterwards; nothing in site-packages is edited.
    """
    from aac_metrics.utils import checks

    previous = checks.MAX_JAVA_MAJOR_VERSION
    checks.MAX_JAVA_MAJOR_VERSION = max(previous, major)
    try:
        yield
    finally:
        checks.MAX_JAVA_MAJOR_VERSION = previous


def _resolve_sbert_model(sbert_model: str | Path | None) -> str | None:
    """Return a local directory for the Sentence-BERT model, or None when it is not on disk."""
    name = str(sbert_model) if sbert_model is not None else DEFAULT_SBERT_MODEL
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    repo_id = name if "/" in name else f"sentence-transformers/{name}"
    return _cached_hub_dir(repo_id, "modules.json")


def _cached_hub_dir(repo_id: str, filename: str) -> str | None:
    """Local snapshot folder of `repo_id` in the HF cache, without any network access."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(repo_id, filename)
    except HFValidationError:  # a filesystem path that does not exist, not a hub name
        return None
    return str(Path(cached).parent) if isinstance(cached, str) else None


def _resolve_echecker(echecker_path: str | Path | None) -> Path | None:
    """Return the FENSE error-detector checkpoint path, or None when it is not on disk."""
    if echecker_path is not None:
        path = Path(echecker_path).expanduser()
    else:
        # Same default location as aac-metrics / fense: $FENSE_DATA or <torch hub>/fense_data.
        data_home = os.environ.get("FENSE_DATA", os.path.join(torch.hub.get_dir(), "fense_data"))
        path = Path(data_home).expanduser() / f"{DEFAULT_ECHECKER_NAME}.ckpt"
    return path if path.is_file() else None


def _resolve_echecker_base(echecker_base_model: str | Path | None) -> str | None:
    """Local folder of the BERT the echecker was fine-tuned from (bert-base-uncased: config + tokenizer)."""
    name = str(echecker_base_model) if echecker_base_model is not None else "bert-base-uncased"
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    return _cached_hub_dir(name, "config.json") or _cached_hub_dir(f"google-bert/{name}", "config.json")


@dataclass(frozen=True)
class MetricResources:
    """
    What the metrics run with: programs, caches, models and the device. Every field is optional; `None` takes the
    default named beside it.

    Args:
        resources: Java, caches, models and device the metrics run with (`MetricResources`); its fields may also
            be given as keywords (`java_path=...`), which override `resources`.
    """

    java_path: str | Path | None = None
    cache_dir: str | Path | None = None
    sbert_model: str | Path | None = None
    echecker_path: str | Path | None = None
    echecker_base_model: str | Path | None = None
    spice_corenlp_dir: str | Path | None = None
    device: str | torch.device | None = None

    @classmethod
    def of(cls, resources: MetricResources | None = None, **overrides: Any) -> MetricResources:
        """`resources` (default: all defaults) with `overrides` (field names) set; an unknown name is a TypeError."""
        unknown = sorted(set(overrides) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"unknown metric resources {unknown}; expected some of {[f.name for f in fields(cls)]}")
        return replace(resources or cls(), **overrides)


def available_metrics(resources: MetricResources | None = None, **overrides: Any) -> dict[str, str | None]:
    """Report which DCASE metrics can run on this machine with `resources` (`MetricResources`, or its fields as
    keywords).

    Returns:
        A dict `metric name -> None` when the metric can run, or `-> reason` (a sentence saying what is missing
        and how to provide it) when it cannot. The PTB tokenizer used by every metric counts as a requirement of
        all of them.
    """
    res = MetricResources.of(resources, **overrides)
    reasons: dict[str, str | None] = dict.fromkeys(SUPPORTED_METRICS)
    java_reason = _java_problem(res.java_path)
    cache = prepare_cache_dir(res.cache_dir, res.spice_corenlp_dir)
    ptb_jar = cache / "aac-metrics" / "stanford_nlp" / "stanford-corenlp-3.4.1.jar"
    if java_reason is None and not ptb_jar.is_file():
        java_reason = f"PTB tokenizer jar missing at {ptb_jar}; install pycocoevalcap==1.2"
    if java_reason is not None:
        # Tokenisation precedes every metric, so nothing runs without it.
        return dict.fromkeys(SUPPORTED_METRICS, java_reason)
    spice_reason = _spice_problem(cache)
    sbert_reason = None
    if _resolve_sbert_model(res.sbert_model) is None:
        sbert_reason = (
            f"Sentence-BERT model {res.sbert_model or DEFAULT_SBERT_MODEL!r} not found on disk; "
            "pass sbert_model=/path/to/paraphrase-TinyBERT-L6-v2"
        )
    echecker_reason = _echecker_problem(res.echecker_path, res.echecker_base_model)
    for metric in SUPPORTED_METRICS:
        needs = [
            spice_reason if metric in _SPICE_METRICS else None,
            sbert_reason if metric in _SBERT_METRICS else None,
            echecker_reason if metric in _ECHECKER_METRICS else None,
        ]
        reasons[metric] = "; ".join(reason for reason in needs if reason) or None
    return reasons


def _java_problem(java_path: str | Path | None) -> str | None:
    try:
        major = java_major_version(java_path)
    except ValueError as err:
        return f"Java not runnable ({err}); install Java >= 8 or pass java_path="
    return None if major >= 8 else f"Java {major} is too old; METEOR/PTB/SPICE need Java >= 8"


def _spice_problem(cache: Path) -> str | None:
    from aac_metrics.functional.spice import check_spice_install

    try:
        check_spice_install(str(cache))
    except (FileNotFoundError, NotADirectoryError) as err:
        logger.info(f"SPICE install check failed: {err}")
        return f"SPICE needs {' and '.join(SPICE_CORENLP_JARS)}; pass spice_corenlp_dir= a folder holding them"
    return None


def _echecker_problem(echecker_path: str | Path | None, echecker_base_model: str | Path | None) -> str | None:
    if _resolve_echecker(echecker_path) is None:
        where = echecker_path or f"$FENSE_DATA or {torch.hub.get_dir()}/fense_data"
        return f"FENSE error detector {DEFAULT_ECHECKER_NAME}.ckpt not found ({where}); pass echecker_path="
    if _resolve_echecker_base(echecker_base_model) is None:
        return "bert-base-uncased (the echecker's backbone and tokenizer) not found on disk; pass echecker_base_model="
    return None


# --------------------------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------------------------
def _check_inputs(predictions: Any, references: Any) -> None:
    if not isinstance(predictions, (list, tuple)) or not isinstance(references, (list, tuple)):
        raise ValueError(
            f"expected predictions: list[str] and references: list[list[str]], got "
            f"{type(predictions).__name__} and {type(references).__name__}"
        )
    if len(predictions) != len(references):
        raise ValueError(
            f"got {len(predictions)} predictions but {len(references)} reference lists; pass one list of "
            "references per prediction"
        )
    for i, prediction in enumerate(predictions):
        if not isinstance(prediction, str):
            raise ValueError(f"prediction {i} is {type(prediction).__name__} ({prediction!r}); expected a str")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or not isinstance(refs, (list, tuple)):
            raise ValueError(f"references[{i}] is {type(refs).__name__}; expected a list of reference strings")
        if len(refs) == 0:
            raise ValueError(f"references[{i}] is empty; every prediction needs at least one reference caption")
        for j, ref in enumerate(refs):
            if not isinstance(ref, str):
                raise ValueError(f"references[{i}][{j}] is {type(ref).__name__} ({ref!r}); expected a str")


def _resolve_metric_names(metrics: str | Iterable[str] | None) -> list[str]:
    if metrics is None or metrics == "dcase2024":
        return list(DCASE2024_METRICS)
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [name for name in names if name not in SUPPORTED_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(SUPPORTED_METRICS)} or 'dcase2024'")
    return list(dict.fromkeys(names))


def ptb_tokenize(
    predictions: list[str],
    references: list[list[str]],
    java_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[list[str], list[list[str]]]:
    """Lower-case and PTB-tokenise captions the way the DCASE evaluation does (punctuation removed).

    Predictions and references go through one JVM call, since each call pays a JVM start-up of a few seconds.
    """
    from aac_metrics.utils.tokenization import preprocess_mult_sents

    cache_path = str(prepare_cache_dir(cache_dir))
    # Newlines would shift the tokenizer's line-per-sentence output.
    joined = [[" ".join(p.split())] for p in predictions] + [[" ".join(r.split()) for r in refs] for refs in references]
    with _java_version_allowed(java_major_version(java_path)):
        tokenized = preprocess_mult_sents(joined, cache_path=cache_path, java_path=java_path)
    return [sents[0] for sents in tokenized[: len(predictions)]], tokenized[len(predictions) :]


def load_echecker(
    echecker_path: str | Path, echecker_base_model: str | Path, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, Any]:
    """The FENSE error detector's classifier and tokenizer for aac-metrics' `fer`, from local files only.

    Loaded by the repository's one FENSE checker loader (`correction.post_corrector.load_error_detector`, which the
    post-corrector uses too): the classifier has aac-metrics' `BERTFlatClassifier` layout and call signature. The
    backbone's config and tokenizer come from `echecker_base_model`, a local folder (aac-metrics would download
    the name stored in the checkpoint).
    """
    from ..correction.post_corrector import load_error_detector

    base = str(echecker_base_model)
    detector = load_error_detector(str(echecker_path), tokenizer_path=base, encoder_config=base, device=device)
    return detector.classifier, detector.tokenizer


def _check_corpus_size(metrics: list[str], num_clips: int) -> None:
    corpus_level = sorted(set(metrics) & {"cider_d", "spider", "spider_fl"})
    if corpus_level and num_clips < 2:
        raise ValueError(
            f"{corpus_level} are corpus metrics (CIDEr-D's IDF weights come from the references of all clips): got "
            f"{num_clips} prediction; score at least 2 clips, or leave them out with metrics=[...]"
        )


def compute_dcase_metrics(
    predictions: list[str],
    references: list[list[str]],
    metrics: str | Iterable[str] | None = "dcase2024",
    resources: MetricResources | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Score captions with the DCASE 2024 Task 6 metrics (aac-metrics 0.5.4, PTB-tokenised as in the challenge).

    Args:
        predictions: One caption per clip.
        references: For each clip, its human reference captions (Clotho has 5).
        metrics: "dcase2024" (default: BLEU-1..4, ROUGE-L, METEOR, CIDEr-D, SPICE, SPIDEr, SPIDEr-FL, SBERT-sim,
            FENSE) or an iterable of names from `SUPPORTED_METRICS`.
        resources: Java, caches, models and device the metrics run with (`MetricResources`); its fields may also
            be given as keywords (`java_path=...`), which override `resources`.

    Returns:
        `{metric: float}` for every requested metric that could run, plus `"unavailable": {metric: reason}` for
        the ones whose files or programs are missing (never scored as 0).

    Raises:
        ValueError: on mismatched lengths, empty reference lists, non-string entries or unknown metric names.
    """
    _check_inputs(predictions, references)
    names = _resolve_metric_names(metrics)
    res = MetricResources.of(resources, **overrides)
    availability = available_metrics(res)
    unavailable = {name: availability[name] for name in names if availability[name] is not None}
    runnable = [name for name in names if name not in unavailable]
    _check_corpus_size(runnable, len(predictions))
    result: dict[str, Any] = {}
    if runnable:
        cache_path = str(prepare_cache_dir(res.cache_dir, res.spice_corenlp_dir))
        with _java_version_allowed(java_major_version(res.java_path)):
            candidates, mult_refs = ptb_tokenize(list(predictions), [list(r) for r in references], res.java_path, cache_path)
            corpus = _score(candidates, mult_refs, runnable, cache_path, res)
        result = {name: float(corpus[name]) for name in runnable}
    for name, reason in unavailable.items():
        logger.warning(f"{name} not computed: {reason}")
    result["unavailable"] = unavailable
    return result


def _score(
    candidates: list[str],
    mult_refs: list[list[str]],
    names: Sequence[str],
    cache_path: str,
    resources: MetricResources,
) -> dict[str, torch.Tensor]:
    """Run each aac-metrics family once and combine composites from the per-sentence outputs."""
    from aac_metrics.functional import bleu, cider_d, fer, meteor, rouge_l, sbert_sim, spice
    from aac_metrics.functional.fense import _fense_from_outputs
    from aac_metrics.functional.spider import _spider_from_outputs
    from aac_metrics.functional.spider_fl import _spider_fl_from_outputs
    from aac_metrics.utils.globals import _get_device

    wanted = set(names)
    java_path = resources.java_path
    device = _get_device(resources.device if resources.device is not None else "cuda_if_available")
    corpus: dict[str, torch.Tensor] = {}
    if wanted & {"bleu_1", "bleu_2", "bleu_3", "bleu_4"}:
        bleu_corpus, _ = bleu(candidates, mult_refs, n=4, return_1_to_n=True)
        corpus |= {f"bleu_{k + 1}": score for k, score in enumerate(bleu_corpus["bleu_1_to_4"])}
    if "rouge_l" in wanted:
        corpus |= rouge_l(candidates, mult_refs)[0]
    if "meteor" in wanted:
        corpus |= meteor(candidates, mult_refs, cache_path=cache_path, java_path=java_path)[0]
    outs: dict[str, tuple[dict, dict]] = {}
    if wanted & {"cider_d", "spider", "spider_fl"}:
        outs["cider_d"] = cider_d(candidates, mult_refs)
    if wanted & {"spice", "spider", "spider_fl"}:
        outs["spice"] = spice(candidates, mult_refs, cache_path=cache_path, java_path=java_path)
    if wanted & {"spider", "spider_fl"}:
        outs["spider"] = _spider_from_outputs(outs["cider_d"], outs["spice"])
    if wanted & {"sbert_sim", "fense"}:
        sbert = _resolve_sbert_model(resources.sbert_model)
        outs["sbert_sim"] = sbert_sim(candidates, mult_refs, sbert_model=sbert, device=device)
    if wanted & {"fer", "fense", "spider_fl"}:
        echecker, tokenizer = load_echecker(
            _resolve_echecker(resources.echecker_path), _resolve_echecker_base(resources.echecker_base_model), device=device
        )
        outs["fer"] = fer(candidates, echecker=echecker, echecker_tokenizer=tokenizer, device=device)
    if "fense" in wanted:
        outs["fense"] = _fense_from_outputs(outs["sbert_sim"], outs["fer"])
    if "spider_fl" in wanted:
        outs["spider_fl"] = _spider_fl_from_outputs(outs["spider"], outs["fer"])
    for family in outs.values():
        corpus |= family[0]
    return corpus


# --------------------------------------------------------------------------------------------------------------------
# Detection scores
# --------------------------------------------------------------------------------------------------------------------
def precision_recall_f1(true_positives: float, false_positives: float, false_negatives: float) -> dict[str, float]:
    """Precision, recall and F1 from detection counts; a ratio whose denominator is 0 is 0.0 (nothing to score).

    The one F1 of the repository: event F1 of captions (`evaluation.event_f1`) and the error detector's scores
    (`train_error_detector.binary_scores`) both count, then call this.

        >>> precision_recall_f1(4, 1, 1)
        {'precision': 0.8, 'recall': 0.8, 'f1': 0.8}
    """
    predicted, actual = true_positives + false_positives, true_positives + false_negatives
    precision = true_positives / predicted if predicted else 0.0
    recall = true_positives / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}
