# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""Demo report: a metrics table (Markdown + JSON) and a static HTML page with one card per captioned clip.

Each card shows the clip's log-mel spectrogram (the model's own front end, drawn as a PNG with pillow), an
audio player, the references, the generated caption (raw and corrected when the post-corrector ran) and the true
versus predicted sound events. The page uses no external resources, so it opens from disk anywhere.
"""

import html
import io
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import soundfile as sf
from transformers.utils import logging

from ..audio_laac import read_audio, resample
from ..feature_extraction_laac import LaacFeatureExtractor

logger = logging.get_logger(__name__)

# a viridis-like ramp (dark purple -> teal -> yellow), 10 RGB stops linearly interpolated: ordered in lightness
VIRIDIS_STOPS = np.array(
    [
        [68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
        [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37],
    ],
    dtype=np.float64,
)  # fmt: skip
MEL_ROW_PIXELS = 2  # 64 mel bands -> a 128-px-high image
MAX_IMAGE_COLUMNS = 1000  # longer clips are averaged down in time so a page of long files stays light
METRIC_LABELS = {"bleu_1": "BLEU-1", "bleu_4": "BLEU-4", "rouge_l": "ROUGE-L", "meteor": "METEOR", "cider_d": "CIDEr-D", "spice": "SPICE", "spider": "SPIDEr"}
METRIC_LABELS |= {"fense": "FENSE", "event_f1": "event F1", "event_precision": "event P", "event_recall": "event R"}
REQUIRED_CLIP_KEYS = ("file_name", "audio_path", "caption")
CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222;background:#fafafa}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #bbb;padding:.3em .7em;text-align:right}
th:first-child,td:first-child{text-align:left}.card{background:#fff;border:1px solid #ccc;border-radius:6px;
padding:1em;margin:1em 0}.card img{width:100%;height:128px;image-rendering:pixelated;display:block}
.caption{font-size:1.15em;font-weight:600}.raw{color:#777;text-decoration:line-through}
.ev{display:inline-block;border-radius:3px;padding:0 .4em;margin:.1em}.correct{background:#cde8cd}
.missed{background:#f3c6c6}.extra{background:#d6d9f5}.neutral{background:#e4e4e4}.meta{color:#666;font-size:.9em}
"""


def _colormap(values: np.ndarray) -> np.ndarray:
    """values in [0, 1], any shape -> uint8 RGB of shape (*values.shape, 3) through the viridis ramp."""
    positions = np.linspace(0.0, 1.0, len(VIRIDIS_STOPS))
    channels = [np.interp(values, positions, VIRIDIS_STOPS[:, c]) for c in range(3)]
    return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode a (height, width, 3) uint8 array as an 8-bit RGB PNG (with pillow)."""
    from PIL import Image

    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected a (height, width, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def spectrogram_image(audio: np.ndarray, sampling_rate: int, extractor: LaacFeatureExtractor) -> np.ndarray:
    """Audio -> (64 * MEL_ROW_PIXELS, columns, 3) uint8 viridis log-mel image, low frequencies at the bottom."""
    mel = extractor(audio, sampling_rate=sampling_rate, return_tensors="np")["input_features"][0]  # (n_mels, T)
    stride = -(-mel.shape[1] // MAX_IMAGE_COLUMNS)
    if stride > 1:  # average groups of `stride` frames; the tail is padded with the clip's floor
        pad = stride * -(-mel.shape[1] // stride) - mel.shape[1]
        mel = np.pad(mel, ((0, 0), (0, pad)), constant_values=mel.min()).reshape(mel.shape[0], -1, stride).mean(-1)
    low, high = float(mel.min()), float(mel.max())
    scaled = (mel - low) / max(high - low, 1e-6)
    image = np.repeat(scaled[::-1], MEL_ROW_PIXELS, axis=0)  # row 0 of the mel is the lowest band: draw it last
    return _colormap(image)


def _copy_audio(audio_path: Path, target: Path) -> None:
    """Hard-link (or copy) a wav; other formats are transcoded to 16-kHz 16-bit wav so every browser plays them."""
    target.unlink(missing_ok=True)
    if audio_path.suffix.lower() == ".wav":
        try:
            os.link(audio_path, target)
        except OSError:  # another filesystem, or links unsupported
            shutil.copyfile(audio_path, target)
        return
    audio, rate = read_audio(audio_path)  # (frames, channels)
    audio = resample(audio, rate, 16000)
    sf.write(target, np.clip(audio, -1.0, 1.0), 16000, subtype="PCM_16")


def _unique_stems(clips: Sequence[dict[str, Any]]) -> list[str]:
    """File stems for the copied audio and images; repeated names (same stem in two folders) get a suffix."""
    stems, seen = [], set()
    for clip in clips:
        stem, index = Path(clip["file_name"]).stem or "clip", 1
        while stem in seen:
            stem, index = f"{Path(clip['file_name']).stem}_{index}", index + 1
        seen.add(stem)
        stems.append(stem)
    return stems


def _metric_names(metrics: dict[str, dict[str, float | None]]) -> list[str]:
    """Union of the systems' metric names, in first-seen order."""
    return list(dict.fromkeys(name for values in metrics.values() for name in values))


def _format_value(value: float | None) -> str:
    """Scores on a 0-1 scale are shown x100; integers are counts and shown as they are; None (unavailable) is n/a."""
    if value is None:
        return "n/a"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(value)
    return f"{100.0 * float(value):.1f}"


def _table_rows(metrics: dict[str, dict[str, float | None]]) -> tuple[list[str], list[list[str]]]:
    """Header and body cells of the metrics table (system names first)."""
    names = _metric_names(metrics)
    header = ["system"] + [METRIC_LABELS.get(name, name) for name in names]
    body = [[system] + [_format_value(values.get(name)) for name in names] for system, values in metrics.items()]
    return header, body


def _md_text(text: str) -> str:
    """Markdown renders inline HTML: escape it so a caption shows as text there too."""
    return html.escape(str(text), quote=False)


def _markdown(title: str, metrics: dict[str, dict[str, float | None]], notes: Sequence[str], clips: list) -> str:
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(_md_text(cell).replace("|", "\\|") for cell in cells) + " |"

    header, body = _table_rows(metrics)
    lines = [f"# {title}", "", "Scores x100 (0-1 metrics); n/a = not computed.", "", row(header)]
    lines += [row(["---"] * len(header))] + [row(cells) for cells in body] + [""]
    lines += [f"- {_md_text(note)}" for note in notes] + ([""] if notes else [])
    lines += ["## Captions", ""] + [f"- {_md_text(c['file_name'])}: {_md_text(c['caption'])}" for c in clips]
    return "\n".join(lines) + "\n"


def _html_table(metrics: dict[str, dict[str, float | None]]) -> str:
    header, body = _table_rows(metrics)
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _events_html(true_events: Sequence[str], predicted: Sequence[str]) -> str:
    """Correct (in both), missed (true only) and extra (predicted only) events; no marking without ground truth."""
    if not true_events:
        tags = [("neutral", "", event) for event in predicted]
    else:
        tags = [("correct" if e in predicted else "missed", "\u2713 " if e in predicted else "\u2717 ", e)
                for e in true_events]  # fmt: skip
        tags += [("extra", "+ ", event) for event in predicted if event not in true_events]
    spans = "".join(f'<span class="ev {kind}">{mark}{html.escape(event)}</span>' for kind, mark, event in tags)
    return f'<p class="events">events: {spans or "<em>none</em>"}</p>'


def _caption_html(clip: dict[str, Any]) -> str:
    parts = [f'<p class="caption">{html.escape(clip["caption"])}</p>']
    probability = clip.get("error_prob")
    if clip.get("raw_caption") is not None and clip.get("raw_caption") != clip["caption"]:
        parts.append(f'<p class="meta">raw: <span class="raw">{html.escape(clip["raw_caption"])}</span></p>')
    if probability is not None:
        state = "corrected" if clip.get("corrected") else "kept"
        parts.append(f'<p class="meta">error probability {float(probability):.2f} ({state})</p>')
    for segment in clip.get("segments") or []:
        start, end = float(segment["start"]), float(segment["end"])
        parts.append(f'<p class="meta">{start:.1f}-{end:.1f} s: {html.escape(segment["caption"])}</p>')
    return "".join(parts)


def _clip_card(clip: dict[str, Any], stem: str, seconds: float) -> str:
    name = html.escape(clip["file_name"])
    references = "".join(f"<li>{html.escape(reference)}</li>" for reference in clip.get("references") or [])
    references_html = (
        f"<details open><summary>references</summary><ol>{references}</ol></details>" if references else ""
    )
    return (
        f'<div class="card" id="{html.escape(stem, quote=True)}"><h3>{name}</h3>'
        f'<img src="spectrograms/{quote(stem)}.png" alt="log-mel spectrogram of {name}">'
        f'<p class="meta">{seconds:.1f} s; log-mel, 0-8 kHz from bottom to top</p>'
        f'<audio controls preload="metadata" src="audio/{quote(stem)}.wav"></audio>'
        f"{_caption_html(clip)}"
        f"{_events_html(clip.get('events') or [], clip.get('predicted_events') or [])}{references_html}</div>"
    )


def _validate_clips(clips: Sequence[dict[str, Any]]) -> None:
    for index, clip in enumerate(clips):
        missing = [key for key in REQUIRED_CLIP_KEYS if key not in clip]
        if missing:
            raise ValueError(f"clip {index} lacks the keys {missing}; every clip needs {list(REQUIRED_CLIP_KEYS)}")
        if not Path(clip["audio_path"]).is_file():
            raise ValueError(f"clip {index} audio_path {clip['audio_path']!r} is not a file; pass the clip's audio")


def write_report(
    out_dir: str,
    clips: list[dict[str, Any]],
    metrics: dict[str, dict[str, float | None]],
    title: str = "LAAC demo report",
    notes: Sequence[str] = (),
) -> dict[str, str]:
    """
    Write `report.md`, `metrics.json` and `index.html` (plus `spectrograms/*.png` and `audio/*.wav`) to `out_dir`.

    Args:
        clips: one dict per clip with `file_name`, `audio_path` and `caption`; optional `references`, `raw_caption`,
            `error_prob`, `corrected`, `events` (true), `predicted_events` and `segments` ({start, end, caption}).
        metrics: {system: {metric: value}}; floats are 0-1 scores shown x100, ints are counts, None shows n/a.
        notes: lines shown under the metrics table.

    Returns:
        {"html": ..., "markdown": ..., "metrics": ...} paths of the written files.
    """
    _validate_clips(clips)
    out = Path(out_dir)
    (out / "spectrograms").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(exist_ok=True)
    extractor = LaacFeatureExtractor()
    stems = _unique_stems(clips)
    durations = []
    for clip, stem in zip(clips, stems):
        audio, rate = read_audio(clip["audio_path"], mono=True)
        durations.append(len(audio) / rate)
        (out / "spectrograms" / f"{stem}.png").write_bytes(png_bytes(spectrogram_image(audio, rate, extractor)))
        _copy_audio(Path(clip["audio_path"]), out / "audio" / f"{stem}.wav")

    paths = {"html": out / "index.html", "markdown": out / "report.md", "metrics": out / "metrics.json"}
    paths["metrics"].write_text(json.dumps(metrics, indent=2, default=float) + "\n", encoding="utf-8")
    paths["markdown"].write_text(_markdown(title, metrics, notes, clips), encoding="utf-8")
    notes_html = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<p class="meta">Scores x100 (0-1 metrics); n/a = not computed.</p>{_html_table(metrics)}'
        f"<ul>{notes_html}</ul><h2>Clips ({len(clips)})</h2>"
        + "\n".join(_clip_card(*card) for card in zip(clips, stems, durations))
        + "</body></html>\n"
    )
    paths["html"].write_text(page, encoding="utf-8")
    logger.info(f"wrote the report of {len(clips)} clips to {out}")
    return {key: str(path) for key, path in paths.items()}


__all__ = ["png_bytes", "spectrogram_image", "write_report"]
