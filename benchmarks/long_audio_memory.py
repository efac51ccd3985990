"""
Peak memory of captioning long recordings: is it flat in the recording's length?

Writes a 1-hour and a 4-hour 16 kHz mono 16-bit WAV (tones over noise, in a temporary folder), then, each in a
fresh process, runs the real path on each file and prints the process's peak RSS:

- `caption`: `pipeline("audio-captioning")` over the file, in 30-s segments (a tiny random LAAC model, greedy, so
  the figure is the reader's and the front end's, not a large model's);
- `features`: the same file through `audio_laac.iter_segments` + `LaacFeatureExtractor` segment by segment;
- `whole` (not run by default): the whole file decoded into one float32 array and given to `LaacFeatureExtractor`
  in one call, which computes the STFT in 60-s chunks (`MEL_CHUNK_FRAMES`); here memory grows with the length
  (the samples, their reflect-padded copy and the mel), and the figure shows what the front end adds to it.

    python -m laac.benchmarks.long_audio_memory                 # 1 h and 4 h
    python -m laac.benchmarks.long_audio_memory --hours 1 2 4   # other lengths
    python -m laac.benchmarks.long_audio_memory --hours 1 --modes whole   # one array, chunked STFT

One JSON line per (file, mode): hours, file MB, peak RSS MiB, RSS before the file was opened, seconds.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

RATE = 16000
BLOCK_SECONDS = 60


def write_recording(path: str, hours: float, seed: int = 0) -> None:
    """A long 16 kHz mono PCM_16 WAV written minute by minute: a tone that changes each minute, over noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(BLOCK_SECONDS * RATE) / RATE
    with sf.SoundFile(path, "w", samplerate=RATE, channels=1, subtype="PCM_16", format="WAV") as out:
        for minute in range(round(hours * 60)):
            tone = 0.3 * np.sin(2 * np.pi * (200 + 37 * (minute % 40)) * t)
            out.write((tone + 0.02 * rng.standard_normal(t.size)).astype(np.float32))


def tiny_checkpoint(folder: str) -> None:
    """A tiny random LAAC model and its processor (hidden 32, 2 layers), saved to `folder`."""
    import torch

    from laac import LaacConfig, LaacForConditionalGeneration, LaacProcessor
    from laac.configuration_laac import PROMPT_I
    from laac.training.tokenizer_utils import build_word_tokenizer

    words = "a dog barks while rain falls on the roof and wind blows".split()
    tokenizer = build_word_tokenizer([" ".join(words)], extra_words=PROMPT_I.replace("<AcousticTokens>", " ").split())
    config = LaacConfig(
        audio_config={"model_type": "ced", "embed_dim": 32, "depth": 2, "num_heads": 2},
        qformer_config={"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64},
        text_config={
            "model_type": "llama", "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
        },
        audio_token_id=4,
    )  # fmt: skip
    torch.manual_seed(0)
    LaacForConditionalGeneration(config).eval().save_pretrained(folder)
    LaacProcessor.from_config(config, tokenizer).save_pretrained(folder)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(path: str, mode: str, model_dir: str) -> dict:
    """Run one mode over one file in this process; returns the figures."""
    from transformers import pipeline

    import laac  # noqa: F401  registers the pipeline task
    from laac.audio_laac import AudioLimits, iter_segments

    captioner = pipeline("audio-captioning", model=model_dir)
    captioner(np.zeros(RATE, np.float32), sampling_rate=RATE, num_beams=1, max_new_tokens=3)  # warm-up
    before = peak_rss_mib()
    start = time.perf_counter()
    if mode == "caption":
        record = captioner(path, num_beams=1, max_new_tokens=3)
        segments = len(record.get("segments", [])) or 1
    elif mode == "whole":
        audio, rate = sf.read(path, dtype="float32")
        captioner.processor.feature_extractor(audio, sampling_rate=rate, return_tensors="np")
        segments = 1
    else:
        extractor = captioner.processor.feature_extractor
        segments = 0
        for audio, rate, _, _, _ in iter_segments(path, 30.0, 30.0, AudioLimits()):
            extractor.clip_log_mel(audio, rate)  # what the pipeline does per segment
            segments += 1
    return {
        "mode": mode, "segments": segments, "peak_rss_mib": round(peak_rss_mib(), 1),
        "rss_before_file_mib": round(before, 1), "seconds": round(time.perf_counter() - start, 1),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--modes", nargs="+", default=["features", "caption"], choices=["features", "caption", "whole"])
    parser.add_argument("--child", nargs=3, metavar=("PATH", "MODE", "MODEL_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(*args.child)))
        return 0
    with tempfile.TemporaryDirectory(prefix="laac-long-audio-") as folder:
        model_dir = os.path.join(folder, "model")
        tiny_checkpoint(model_dir)
        for hours in args.hours:
            path = os.path.join(folder, f"{hours:g}h.wav")
            write_recording(path, hours)
            for mode in args.modes:  # a fresh process each: ru_maxrss is a high-water mark
                child = [sys.executable, "-m", "laac.benchmarks.long_audio_memory", "--child", path, mode, model_dir]
                result = subprocess.run(child, capture_output=True, text=True, check=True)
                figures = json.loads(result.stdout.strip().splitlines()[-1])
                size = round(os.path.getsize(path) / 1e6)
                print(json.dumps({"hours": hours, "file_mb": size, **figures}), flush=True)
            os.remove(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
