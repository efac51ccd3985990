"""Tests of the demo report: written files, escaping, spectrogram PNGs, metrics table, and the page in Chromium."""

import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from laac.evaluation.report import MEL_ROW_PIXELS, VIRIDIS_STOPS, png_bytes, write_report

from tests.laac_tester import unavailable

RATE = 16000
EVIL_CAPTION = "<script>alert(1)</script> a dog & a cat"
METRICS = {
    "LAAC": {"bleu_4": 0.2134, "meteor": 0.3, "cider_d": 0.9, "spice": None, "event_f1": 0.91, "n_clips": 3},
    "blind baseline (silence)": {"bleu_4": 0.05, "meteor": 0.1, "cider_d": 0.12, "spice": None, "event_f1": 0.2},
}
BROWSER_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def read_png(data: bytes) -> np.ndarray:
    """Decode a PNG (ours, or Chromium's screenshot) with pillow -> (H, W, C) uint8."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], list[dict]]:
    source = tmp_path_factory.mktemp("clips")
    sf.write(source / "low hum.wav", _tone(200.0, 1.0), RATE)
    sf.write(source / "high_beep.wav", _tone(6000.0, 0.5), RATE)
    sf.write(source / "user.flac", np.stack([_tone(440.0, 0.3)] * 2, axis=1), 22050)  # stereo, 22.05 kHz
    clips = [
        {"file_name": "low hum.wav", "audio_path": str(source / "low hum.wav"), "references": ["a low engine hum"] * 5,
         "caption": "an engine hums at a low pitch", "raw_caption": "an engine engine hums", "error_prob": 0.83,
         "corrected": True, "events": ["engine hum", "rain"], "predicted_events": ["engine hum", "siren"]},
        {"file_name": "high_beep.wav", "audio_path": str(source / "high_beep.wav"), "references": ["beeps"],
         "caption": EVIL_CAPTION, "error_prob": 0.1, "corrected": False, "events": ["beep"],
         "predicted_events": ["beep"], "segments": [{"start": 0.0, "end": 0.5, "caption": "a beep"}]},
        {"file_name": "user.flac", "audio_path": str(source / "user.flac"), "references": [],
         "caption": "a tone plays", "error_prob": None, "corrected": False, "events": [], "predicted_events": ["beep"]},
    ]  # fmt: skip
    paths = write_report(str(tmp_path_factory.mktemp("report")), clips, METRICS, notes=["trained <1 min"])
    return paths, clips


def test_files_written_and_metrics_round_trip(report: tuple[dict[str, str], list[dict]]) -> None:
    paths, _ = report
    assert sorted(paths) == ["html", "markdown", "metrics"]
    assert all(Path(path).is_file() for path in paths.values())
    assert json.loads(Path(paths["metrics"]).read_text()) == METRICS
    out = Path(paths["html"]).parent
    assert sorted(p.name for p in (out / "audio").iterdir()) == ["high_beep.wav", "low hum.wav", "user.wav"]
    assert sorted(p.name for p in (out / "spectrograms").iterdir()) == ["high_beep.png", "low hum.png", "user.png"]
    transcoded, rate = sf.read(out / "audio" / "user.wav", dtype="int16")
    assert rate == RATE and transcoded.shape == (round(4800 * RATE / 22050), 2)  # resampled, stereo kept
    assert sf.info(str(out / "audio" / "user.wav")).subtype == "PCM_16"


def test_metric_table_values(report: tuple[dict[str, str], list[dict]]) -> None:
    paths, _ = report
    markdown = Path(paths["markdown"]).read_text()
    assert "| system | BLEU-4 | METEOR | CIDEr-D | SPICE | event F1 | n_clips |" in markdown
    assert "| LAAC | 21.3 | 30.0 | 90.0 | n/a | 91.0 | 3 |" in markdown
    assert "| blind baseline (silence) | 5.0 | 10.0 | 12.0 | n/a | 20.0 | n/a |" in markdown
    assert "- trained &lt;1 min" in markdown and "&lt;script&gt;" in markdown


def test_html_escapes_text_and_marks_events(report: tuple[dict[str, str], list[dict]]) -> None:
    page = Path(report[0]["html"]).read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; a dog &amp; a cat" in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from outside
    assert 'src="audio/low%20hum.wav"' in page and 'src="spectrograms/low%20hum.png"' in page
    assert '<span class="ev correct">\u2713 engine hum</span>' in page
    assert '<span class="ev missed">\u2717 rain</span>' in page and '<span class="ev extra">+ siren</span>' in page
    assert '<span class="ev neutral">beep</span>' in page  # user file: no ground truth, no marking
    assert "error probability 0.83 (corrected)" in page and "an engine engine hums" in page
    assert "0.0-0.5 s: a beep" in page and page.count("<li>a low engine hum</li>") == 5


def test_spectrogram_png(report: tuple[dict[str, str], list[dict]]) -> None:
    out = Path(report[0]["html"]).parent / "spectrograms"
    low, high = (read_png((out / f"{name}.png").read_bytes()) for name in ("low hum", "high_beep"))
    assert low.shape == (64 * MEL_ROW_PIXELS, 1 + RATE // 160, 3) and high.shape == (64 * MEL_ROW_PIXELS, 80, 3)
    for image, low_frequency in ((low, True), (high, False)):
        brightest_row = int(image[:, image.shape[1] // 2].astype(int).sum(axis=1).argmax())
        # low frequencies are drawn at the bottom: a 200 Hz hum peaks low in the image, a 6 kHz beep near the top
        assert (brightest_row > 0.8 * image.shape[0]) if low_frequency else (brightest_row < 0.3 * image.shape[0])
        assert np.abs(image[brightest_row, image.shape[1] // 2].astype(int) - VIRIDIS_STOPS[-1]).max() <= 2


def test_png_bytes_round_trip_and_errors() -> None:
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(read_png(png_bytes(image)), image)
    with pytest.raises(ValueError, match=r"\(height, width, 3\) uint8"):
        png_bytes(image.astype(np.float32))


def test_missing_audio_raises(tmp_path: Path) -> None:
    clip = {"file_name": "x.wav", "audio_path": str(tmp_path / "absent.wav"), "caption": "c"}
    with pytest.raises(ValueError, match="absent.wav' is not a file"):
        write_report(str(tmp_path / "out"), [clip], METRICS)
    with pytest.raises(ValueError, match=r"lacks the keys \['caption'\]"):
        write_report(str(tmp_path / "out"), [{"file_name": "x", "audio_path": "y"}], METRICS)


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        unavailable("the report's browser test needs Chromium: install it (Debian: apt-get install chromium)")
    return binary


def _run_browser(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [binary, *BROWSER_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=True)


def test_page_in_headless_chromium(report: tuple[dict[str, str], list[dict]], tmp_path: Path) -> None:
    binary = _chromium()
    paths, clips = report
    url = Path(paths["html"]).resolve().as_uri()
    dom = _run_browser(binary, tmp_path / "profile", "--dump-dom", url).stdout
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and "<script>alert" not in dom
    assert all(
        clip["caption"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in dom for clip in clips
    )
    assert dom.count("<img ") == 3 and dom.count("<audio ") == 3 and "<td>n/a</td>" in dom

    screenshot = tmp_path / "page.png"
    _run_browser(binary, tmp_path / "profile", f"--screenshot={screenshot}", "--window-size=1200,2000", url)
    pixels = read_png(screenshot.read_bytes())
    assert pixels.shape[:2] == (2000, 1200)
    # the spectrograms were decoded and drawn: the page shows viridis' dark purple floor and yellow peaks
    for colour in (VIRIDIS_STOPS[0], VIRIDIS_STOPS[-1]):
        assert (np.abs(pixels[..., :3].astype(int) - colour).max(axis=-1) <= 12).sum() > 500
