# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""The demo's stages after the corpus: the encoder pretrained as a tagger, the captioner trained with train.py (or
SmolLM2 under LoRA), evaluation, the fresh-process reload and the post-correction check."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import datasets
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.utils import logging

from ..configuration_laac import AUDIO_PLACEHOLDER, PROMPT_I
from ..data.loaders import feature_cache_key, read_audio
from ..feature_extraction_laac import LaacFeatureExtractor
from ..evaluation.event_f1 import event_f1
from ..evaluation.metrics import precision_recall_f1
from ..modeling_ced import CedForAudioClassification
from ..modeling_laac import LaacForConditionalGeneration
from ..cli.paths import ERROR_DETECTOR_DIR
from ..processing_laac import LaacProcessor
from ..data.synthetic_corpus import events_in_caption, read_metadata
from ..training.tokenizer_utils import build_word_tokenizer

from .recipe import EVENT_NAMES, DemoShape, fast_bf16

if TYPE_CHECKING:
    from ..correction.post_corrector import PostCorrector

logger = logging.get_logger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# Stage 2: the encoder pretrained as an event tagger
# ----------------------------------------------------------------------------------------------------------------


def tagging_examples(corpus_dir: str, split: str) -> datasets.Dataset:
    """Clips of a synthetic split with multi-hot event targets and their durations (for length-grouped batches)."""
    rows = []
    for i, record in enumerate(read_metadata(corpus_dir, split)):
        target = [0.0] * len(EVENT_NAMES)
        for name in record["events"]:
            target[EVENT_NAMES.index(name)] = 1.0
        path = os.path.join(corpus_dir, split, record["file_name"])
        rows.append({"row": i, "id": record["file_name"], "audio": {"path": path}, "labels": target,
                     "length": record["duration"]})  # fmt: skip
    return datasets.Dataset.from_list(rows)


def split_log_mels(examples: datasets.Dataset, extractor: LaacFeatureExtractor) -> list[torch.Tensor]:
    """Each clip's whole log-mel (n_mels, frames), computed once: the tagger sees every clip about ten times."""
    mels = []
    for example in examples:
        audio, rate = read_audio(example, max_seconds=None, random_crop=False)
        features = extractor(audio, sampling_rate=rate, return_tensors="pt")
        mels.append(features["input_features"][0, :, : int(features["feature_attention_mask"].sum())])
    return mels


def set_mel_statistics(model: CedForAudioClassification, mels: list[torch.Tensor]) -> None:
    """
    CED's input BatchNorm keeps fixed statistics (the released models': AudioSet's mel mean and variance per bin).
    A tagger trained from scratch gets the corpus's, so its patches see standardised input from the first step.
    """
    frames = sum(mel.shape[-1] for mel in mels)
    mean = sum(mel.double().sum(-1) for mel in mels) / frames
    variance = sum(((mel.double() - mean[:, None]) ** 2).sum(-1) for mel in mels) / (frames - 1)
    model.encoder.init_bn.running_mean.copy_(mean.float())
    model.encoder.init_bn.running_var.copy_(variance.float())


@dataclass
class TaggingCollator:
    """Batches of cached log-mels, in training a random `max_frames` window of the longer ones, with their targets."""

    mels: list[torch.Tensor]
    extractor: LaacFeatureExtractor  # pads the batch as it pads any batch of log-mels
    max_frames: int | None = 1000  # 10 s
    train: bool = True

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        windows = []
        for example in examples:
            mel = self.mels[example["row"]]
            if self.train and self.max_frames and mel.shape[-1] > self.max_frames:
                start = int(torch.randint(0, mel.shape[-1] - self.max_frames + 1, ()))
                mel = mel[:, start : start + self.max_frames]
            windows.append(mel)
        labels = torch.tensor([example["labels"] for example in examples])
        return {**self.extractor.pad_log_mels(windows), "labels": labels}


def pretrain_encoder(
    corpus_dir: str,
    out_dir: str,
    shape: DemoShape,
    steps: int,
    seed: int,
    progress: TrainerCallback | None = None,
    feature_cache: dict | None = None,
) -> dict[str, float]:
    """
    Train the small CED as a 14-event tagger with the stock Trainer; save it in the mispeech folder format. Max
    pooling over tokens: a mean over a clip's tokens dilutes short events (a single beep, a knock) below what this
    small model learns in minutes (calibration: beep F1 0.2 with the mean, 0.84 with the max). `feature_cache`
    receives the development clips' log-mels for the captioner (`LaacDataCollator.feature_cache`): computing them
    again took 18 s of its first epoch (3,000 clips, 2 threads).
    """
    set_seed(seed)
    model = CedForAudioClassification(shape.audio_config())
    extractor = LaacFeatureExtractor()
    examples = tagging_examples(corpus_dir, "development")
    args = TrainingArguments(
        output_dir=os.path.join(out_dir, "runs"),
        max_steps=steps,
        per_device_train_batch_size=32,
        learning_rate=shape.tagger_learning_rate,
        weight_decay=1e-2,
        warmup_steps=max(1, steps // 10),
        lr_scheduler_type="cosine",
        max_grad_norm=1.0,
        bf16=fast_bf16(),
        use_cpu=not torch.cuda.is_available(),
        logging_steps=max(1, steps // 10),
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        seed=seed,
        train_sampling_strategy="group_by_length",  # clips of similar duration batch together: little padding
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    mels = split_log_mels(examples, extractor)
    if feature_cache is not None:
        feature_cache.update(captioner_log_mels(examples, mels))
    set_mel_statistics(model, mels)
    collator = TaggingCollator(mels, extractor)
    callbacks = [progress] if progress is not None else None
    Trainer(model=model, args=args, train_dataset=examples, data_collator=collator, callbacks=callbacks).train()
    model.save_pretrained(out_dir)
    return tagging_f1(model, corpus_dir, "validation")


@torch.no_grad()
def tagging_f1(model: CedForAudioClassification, corpus_dir: str, split: str) -> dict[str, float]:
    """Micro F1 of the tagger's events (probability > 0.5) on a split, whole clips."""
    model.eval()
    examples = tagging_examples(corpus_dir, split)
    extractor = LaacFeatureExtractor()
    collator = TaggingCollator(split_log_mels(examples, extractor), extractor, train=False)
    true_pos = false_pos = false_neg = 0
    for start in range(0, len(examples), 32):
        batch = collator([examples[i] for i in range(start, min(start + 32, len(examples)))])
        labels = batch.pop("labels").bool()
        predicted = model(**batch).probabilities > 0.5
        true_pos += int((predicted & labels).sum())
        false_pos += int((predicted & ~labels).sum())
        false_neg += int((~predicted & labels).sum())
    return {"tagging_f1": precision_recall_f1(true_pos, false_pos, false_neg)["f1"]}


# ----------------------------------------------------------------------------------------------------------------
# Stage 3: the captioner, trained with train.py
# ----------------------------------------------------------------------------------------------------------------


def build_initial_model(corpus_dir: str, encoder_dir: str, out_dir: str, shape: DemoShape, seed: int) -> str:
    """
    A LAAC folder to start training from: the pretrained tagger's encoder, a random Q-Former and a random small
    Llama over a word vocabulary of the training captions (+ Prompt I), with its processor.
    """
    set_seed(seed)
    captions = [c for record in read_metadata(corpus_dir, "development") for c in record["captions"]]
    tokenizer = build_word_tokenizer(captions, extra_words=PROMPT_I.replace(AUDIO_PLACEHOLDER, " ").split())
    config = shape.config(
        vocab_size=len(tokenizer),
        audio_token_id=tokenizer.convert_tokens_to_ids("<|audio|>"),
        bos=tokenizer.bos_token_id,
        eos=tokenizer.eos_token_id,
        pad=tokenizer.pad_token_id,
    )
    model = LaacForConditionalGeneration(config)
    encoder = CedForAudioClassification.from_pretrained(encoder_dir)
    model.audio_tower.load_state_dict(encoder.encoder.state_dict())
    processor = LaacProcessor.from_config(config, tokenizer)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


# The captioner reads clips whole up to this length (the corpus's clips are 1-15 s)
CAPTION_MAX_SECONDS = 15.0


def captioner_log_mels(examples: datasets.Dataset, mels: list[torch.Tensor]) -> dict[tuple, Any]:
    """The tagger's log-mels of the clips the captioner reads whole, keyed as its collator keys them."""
    return {
        feature_cache_key(example): mel.numpy()
        for example, mel in zip(examples, mels)
        if example["length"] <= CAPTION_MAX_SECONDS
    }


def clotho_source(corpus_dir: str, split: str) -> str:
    return f"clotho:csv={corpus_dir}/clotho_captions_{split}.csv,audio_dir={corpus_dir}/{split}"


def train_captioner(
    corpus_dir: str,
    init_dir: str,
    out_dir: str,
    shape: DemoShape,
    steps: int,
    seed: int,
    silence: bool = False,
    callbacks: list[TrainerCallback] | None = None,
    feature_cache: dict | None = None,
) -> str:
    """
    Train the small captioner with train.py: the pretrained encoder stays frozen (twice the steps per second, and
    better captions per step than fine-tuning it in calibration), everything else trains. Whole clips (the
    corpus's longest is 15 s): a crop would cut scenes that the captions still name, and whole clips are what
    evaluation sees. `feature_cache`: the clips' log-mels from the tagger stage. Returns the export.
    """
    model_args = ["--model_name_or_path", init_dir, "--full_finetune", "true", "--freeze_audio_tower", "true"]
    return run_train_py(
        corpus_dir, model_args, out_dir, steps, shape.baseline_batch_size if silence else shape.caption_batch_size,
        shape.baseline_learning_rate if silence else shape.caption_learning_rate, seed, silence,
        callbacks, feature_cache=feature_cache,
    )  # fmt: skip


def run_train_py(
    corpus_dir: str,
    model_args: list[str],
    out_dir: str,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    silence: bool = False,
    callbacks: list[TrainerCallback] | None = None,
    use_cpu: bool = True,
    frozen_audio: bool = True,
    scheduler: str = "cosine",
    feature_cache: dict | None = None,
) -> str:
    """train.py on the corpus's development split with the demo's schedule, for the model `model_args` name."""
    from ..train import main as train_main

    export_dir = os.path.join(out_dir, "export")
    train_main([
        *model_args,
        "--train_sources", clotho_source(corpus_dir, "development"),
        "--output_dir", out_dir, "--export_dir", export_dir, "--do_train",
        "--silence_audio", str(silence).lower(),
        "--max_steps", str(steps), "--per_device_train_batch_size", str(batch_size),
        "--max_train_seconds", str(CAPTION_MAX_SECONDS), "--cache_features", "true",
        "--cache_audio_tokens", str(frozen_audio).lower(),
        "--learning_rate", str(learning_rate), "--weight_decay", "0.01", "--warmup_steps", "0.1",
        "--lr_scheduler_type", scheduler, "--max_grad_norm", "1.0", "--bf16", str(fast_bf16()).lower(),
        "--use_cpu", str(use_cpu).lower(),
        "--save_strategy", "no", "--logging_steps", str(max(1, steps // 10)), "--report_to", "none",
        "--seed", str(seed), "--dataloader_num_workers", "0", "--disable_tqdm", "true",
        "--train_sampling_strategy", "group_by_length", "--attn_implementation", "eager",
    ], callbacks=callbacks, feature_cache=feature_cache)  # fmt: skip
    return export_dir


# ----------------------------------------------------------------------------------------------------------------
# Stage 3 on a real pretrained LLM (`laac demo --text-model smollm2`): the report's recipe in miniature
# ----------------------------------------------------------------------------------------------------------------


def pretrained_text_model_args(encoder_dir: str, llm_dir: str, shape: DemoShape) -> list[str]:
    """train.py arguments that build LAAC from the encoder folder and an LLM folder with LoRA on both sides."""
    qformer = shape.config(vocab_size=2, audio_token_id=1, bos=0, eos=0, pad=0).qformer_config.to_dict()
    overrides = {
        "token_order": shape.token_order,
        "last_window": shape.last_window,
        "qformer_config": {key: qformer[key] for key in ("hidden_size", "num_attention_heads", "intermediate_size",
                                                         "hidden_dropout_prob", "attention_probs_dropout_prob")},
    }  # fmt: skip
    return [
        "--audio_encoder", encoder_dir, "--text_model", llm_dir, "--config_overrides", json.dumps(overrides),
        "--lora_text", "true", "--lora_audio", "true", "--lora_r", "8", "--lora_alpha", "32",
    ]  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Stage 5-7: evaluation, the fresh-process reload, post-correction, the report
# ----------------------------------------------------------------------------------------------------------------

REPORTED_METRICS = ["bleu_1", "bleu_4", "rouge_l", "meteor", "cider_d"]

FRESH_PROCESS_SCRIPT = """
import json, sys
sys.modules["laac"] = None  # prove the folder alone suffices: the laac package cannot be imported here
from transformers import pipeline
model_dir, out_path, *paths = sys.argv[1:]
captioner = pipeline("audio-captioning", model=model_dir, trust_remote_code=True)
results = captioner(paths, batch_size=16)
with open(out_path, "w", encoding="utf-8") as f:
    json.dump([{"path": p, **r} for p, r in zip(paths, results)], f)
"""


def evaluate_export(export_dir: str, corpus_dir: str, split: str, silence: bool = False) -> tuple[list, dict]:
    """Beam-3 captions of a split by an exported model, DCASE metrics and the event F1 of the captions."""
    from ..data.loaders import load_clotho
    from ..training.trainer import evaluate_model

    model = LaacForConditionalGeneration.from_pretrained(export_dir).eval()
    processor = LaacProcessor.from_pretrained(export_dir)
    clips = load_clotho(f"{corpus_dir}/clotho_captions_{split}.csv", f"{corpus_dir}/{split}")
    result = evaluate_model(model, processor, clips, batch_size=32, metrics=REPORTED_METRICS, silence=silence)
    events = {record["file_name"]: set(record["events"]) for record in read_metadata(corpus_dir, split)}
    scores = event_f1([p["prediction"] for p in result.predictions], [events[p["id"]] for p in result.predictions])
    metrics = {name: result.metrics.get(name) for name in REPORTED_METRICS}
    metrics.update(event_f1=scores["f1"], event_precision=scores["precision"], event_recall=scores["recall"])
    return result.predictions, metrics


def caption_in_fresh_process(model_dir: str, paths: list[str], out_path: str) -> list[dict]:
    """`pipeline("audio-captioning", trust_remote_code=True)` in a new Python where `laac` is not importable."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_SCRIPT, model_dir, out_path, *paths],
        check=True, env=env, cwd=os.path.dirname(out_path),
    )  # fmt: skip
    with open(out_path, encoding="utf-8") as f:
        return json.load(f)


# The report's error detector (FENSE's checkpoint trained on Clotho and AudioCaps), used where it can be downloaded.
FENSE_DETECTOR = "echecker_clotho_audiocaps_base"


@dataclass(frozen=True)
class DetectorChoice:
    """The error detector of the post-correction stage, chosen before any training, and the report's line on it."""

    detector: str | None  # a folder or FENSE checkpoint name; None: the demo runs without post-correction
    note: str
    train: bool = False  # the offline detector is trained on Clotho's captions at the start of the stage


def choose_detector(detector: str | None, no_correction: bool = False) -> DetectorChoice:
    """
    In order: the detector given (`--detector`); the offline one cached in ~/.cache/laac/error_detector_minilm
    (`scripts/setup.sh` trains it); FENSE's own (the report's), downloaded where the network allows; the offline one
    trained in the stage where Clotho's captions can be had (`laac.data.public_data`); else none, and the demo
    runs without post-correction, saying why. A `--detector` that does not exist stops the demo at once.
    """
    from ..correction.train_error_detector import needs_training

    if no_correction:
        return DetectorChoice(None, "post-correction: skipped (--no-correction)")
    if detector:
        if not os.path.exists(detector):
            raise SystemExit(
                f"laac demo: --detector {detector!r} does not exist: pass a FENSE-format error detector (a folder "
                "with echecker.ckpt, or the .ckpt file), leave --detector out to use the default, or --no-correction"
            )
        return DetectorChoice(detector, f"error detector: {detector} (given)")
    if not needs_training():
        return DetectorChoice(ERROR_DETECTOR_DIR, f"error detector: the offline one in {ERROR_DETECTOR_DIR}")
    reasons = [f"none cached in {ERROR_DETECTOR_DIR}"]
    from ..correction.post_corrector import fense_checkpoint_file

    try:
        fense_checkpoint_file(FENSE_DETECTOR)
        return DetectorChoice(FENSE_DETECTOR, f"error detector: FENSE's {FENSE_DETECTOR} (the report's)")
    except OSError as error:
        reasons.append(f"FENSE's {FENSE_DETECTOR} cannot be downloaded ({error})")
    from ..data.public_data import DataUnavailable, clotho_captions_csv

    try:
        csv = clotho_captions_csv()
        return DetectorChoice(
            ERROR_DETECTOR_DIR,
            f"error detector: the offline one, trained in this run (on Clotho's development captions where they can "
            f"be had, else on {csv})",
            train=True,
        )
    except DataUnavailable as error:
        reasons.append(f"Clotho's captions to train one cannot be had ({error.why})")
    return DetectorChoice(
        None,
        "post-correction: skipped, no error detector can be had here: " + "; ".join(reasons) + ". To post-correct, "
        "run scripts/setup.sh where the network reaches GitHub (it trains the offline detector), or pass --detector",
    )


def error_detector(choice: DetectorChoice) -> str:
    """The chosen detector's folder or name; the offline one trained first when the choice says so."""
    if not choice.train:
        return choice.detector
    from ..correction.train_error_detector import ensure_error_detector

    return ensure_error_detector()


def post_corrector(detector_dir: str) -> "PostCorrector":
    """
    The report's gate: captions with error probability > 0.9 go to the instruct LLM (offline: SmolLM2, with the
    strict answer rules of the "smollm2" alias). SmolLM2 loads from its converted folder (`scripts/setup.sh` makes
    it once): reading the GGUF file took ~40 s of the stage on every run, the folder loads in about a second. The
    flagged captions go to it 32 at a time: a greedy step on a CPU costs about as much for 24 captions as for 8
    (reading the weights is the cost), so 24 corrupted captions took 15-16 s in one batch against 30.5 s in batches
    of 8 (the default), with the same rewrites.
    """
    from ..conversion.convert_gguf_causal_lm import smollm2_folder
    from ..correction.post_corrector import PostCorrector

    return PostCorrector(
        detector=detector_dir, corrector=smollm2_folder(), threshold=0.9, answer_rules="strict", batch_size=32
    )


def corrupted_references(corpus_dir: str, split: str, count: int, seed: int) -> tuple[list[str], dict[str, list[str]]]:
    """
    The first reference caption of `count` held-out clips, and copies of them with one error each, as the
    detector's held-out table makes them (`held_out_corruptions`): per error kind (tails, cut endings, dangling
    clauses, repeated words, events and adverbs, removed conjunctions and verbs) at FENSE's position and anywhere,
    and two mixtures.
    """
    from ..correction.detector_evaluation import held_out_corruptions

    clean = [record["captions"][0] for record in read_metadata(corpus_dir, split)[:count]]
    return clean, held_out_corruptions(clean, seed)


def summarize_correction(records: list[dict], threshold: float) -> dict[str, int]:
    flagged = sum(r["error_prob"] is not None and r["error_prob"] > threshold for r in records)
    return {"captions": len(records), "flagged": flagged, "rewritten": sum(bool(r["corrected"]) for r in records)}


def correction_check(
    corrector: "PostCorrector", corpus_dir: str, split: str, count: int, rewrite: int, seed: int
) -> dict[str, Any]:
    """
    What the corrector does to captions known to be wrong: the detector's ROC-AUC, precision and recall at its
    threshold per error kind and position on `count` clean references against their corruptions (`kinds`; the
    top-level figures are the "mixture (random)" row: one kind per caption, anywhere), and how many of the first
    `rewrite` of that mixture get rewritten (the LLM is the slow part).
    """
    from ..correction.detector_evaluation import score_detector

    clean, corrupted = corrupted_references(corpus_dir, split, count, seed)
    kinds = score_detector(corrector.detector, clean, corrupted, corrector.threshold)
    mixture = kinds["mixture (random)"]
    records = corrector(corrupted["mixture (random)"][:rewrite])
    return {
        "precision": mixture["precision"],
        "recall": mixture["recall"],
        "clean_flagged": mixture["clean_flagged"],
        "kinds": kinds,
        "corrupted": summarize_correction(records, corrector.threshold),
        "examples": [
            {key: record[key] for key in ("raw_caption", "caption", "error_prob", "corrected")}
            for record in records
            if record["corrected"]
        ][:5],
    }


def correction_notes(check: dict[str, Any], count: int) -> list[str]:
    """The report's lines on `correction_check`: the mixture's figures, one line per error kind, the rewrites."""
    kinds = check["kinds"]
    lines = [
        f"detector on {count} held-out references and corruptions of them, one error each, anywhere (threshold "
        f"0.9): precision {check['precision']:.3f}, recall {check['recall']:.3f} ({check['clean_flagged']} of the "
        f"{count} clean references flagged); corrector on the first {check['corrupted']['captions']} corrupted: "
        f"{check['corrupted']['flagged']} flagged, {check['corrupted']['rewritten']} rewritten"
    ]
    for kind in dict.fromkeys(name.split(" (")[0] for name in kinds):
        rows = [(position, kinds.get(f"{kind} ({position})")) for position in ("fense", "random")]
        rows = [(position, row) for position, row in rows if row is not None]
        lines.append(f"detector, {kind}: " + "; ".join(
            f"{'at FENSE position' if position == 'fense' else 'anywhere'}: ROC-AUC {row['roc_auc']:.3f}, precision "
            f"{row['precision']:.3f}, recall {row['recall']:.3f} ({row['positives']} corrupted)"
            for position, row in rows
        ))  # fmt: skip
    lines.extend(
        f"rewrite: '{e['raw_caption']}' -> '{e['caption']}' (error probability {e['error_prob']:.2f})"
        for e in check["examples"]
    )
    return lines


def clip_cards(predictions: list[dict], corpus_dir: str, split: str, limit: int) -> list[dict]:
    """The report's per-clip records for the first `limit` held-out clips."""
    metadata = {record["file_name"]: record for record in read_metadata(corpus_dir, split)}
    cards = []
    for prediction in predictions[:limit]:
        record = metadata[prediction["id"]]
        cards.append({
            "file_name": prediction["id"],
            "audio_path": os.path.join(corpus_dir, split, prediction["id"]),
            "references": prediction["references"],
            "caption": prediction["prediction"],
            "events": record["events"],
            "predicted_events": sorted(events_in_caption(prediction["prediction"])),
        })  # fmt: skip
    return cards
