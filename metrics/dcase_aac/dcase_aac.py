# Copyright 2024 The LAAC Authors. Licensed under the Apache License, Version 2.0.
"""`evaluate` wrapper of the DCASE 2024 Task 6 caption metrics (`laac.evaluation.metrics`, aac-metrics 0.5.4).

Usage:
    >>> import evaluate
    >>> metric = evaluate.load("/path/to/laac/metrics/dcase_aac")
    >>> metric.compute(predictions=["rain falls"], references=[["rain is falling hard on a surface"]])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import evaluate

from laac.evaluation.metrics import MetricResources, compute_dcase_metrics


_DESCRIPTION = """\
The DCASE 2024 Task 6 (automated audio captioning) metric set: BLEU-1..4, ROUGE-L, METEOR, CIDEr-D, SPICE, SPIDEr,
SPIDEr-FL, Sentence-BERT similarity and FENSE, computed with aac-metrics 0.5.4 after PTB tokenisation. Metrics whose
jars or models are not on disk are listed by name, with the reason, under "unavailable" and are never scored as 0.
"""

_CITATION = """\
@inproceedings{labbe2023aac_metrics,
  title = {Is my automatic audio captioning system so bad? SPIDEr-max: a metric to consider several caption candidates},
  author = {Labb{\\'e}, Etienne and Pellegrini, Thomas and Pinquier, Julien},
  booktitle = {DCASE 2022 Workshop},
  year = {2022}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of str, one caption per audio clip.
    references: list of list of str, the reference captions of each clip (Clotho has 5).
    metrics: "dcase2024" (default) or a list of names among bleu_1..bleu_4, rouge_l, meteor, cider_d, spice,
        spider, spider_fl, sbert_sim, fense, fer.
    java_path, cache_dir, sbert_model, echecker_path, echecker_base_model, spice_corenlp_dir, device: see
        `laac.evaluation.metrics.compute_dcase_metrics`.
Returns:
    dict metric -> float (aac-metrics scale: CIDEr-D in [0, 10], the others mostly in [0, 1]) and
    "unavailable": dict metric -> reason.
Examples:
    >>> metric = evaluate.load("metrics/dcase_aac")
    >>> out = metric.compute(predictions=["a man is speaking"], references=[["a man speaks.", "someone speaks."]],
    ...                      metrics=["bleu_1", "cider_d"])
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class DcaseAac(evaluate.Metric):
    """DCASE 2024 audio-captioning metrics (thin wrapper; the logic lives in `laac.evaluation.metrics`)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
            reference_urls=["https://github.com/Labbeti/aac-metrics", "https://dcase.community/challenge2024/"],
        )

    def _compute(
        self,
        predictions: list[str],
        references: list[list[str]],
        metrics: str | list[str] = "dcase2024",
        java_path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        sbert_model: str | Path | None = None,
        echecker_path: str | Path | None = None,
        echecker_base_model: str | Path | None = None,
        spice_corenlp_dir: str | Path | None = None,
        device: str | None = None,
    ) -> dict[str, Any]:
        resources = MetricResources(
            java_path=java_path, cache_dir=cache_dir, sbert_model=sbert_model, echecker_path=echecker_path,
            echecker_base_model=echecker_base_model, spice_corenlp_dir=spice_corenlp_dir, device=device,
        )  # fmt: skip
        return compute_dcase_metrics(list(predictions), [list(refs) for refs in references], metrics, resources)
