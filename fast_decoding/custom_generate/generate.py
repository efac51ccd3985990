# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
The fast decoding loop of LAAC: an opt-in, loaded by transformers' own `custom_generate` mechanism. Stock
`generate` is the default everywhere; this loop is asked for by name:

    model.generate(**inputs, custom_generate=laac.FAST_DECODING, trust_remote_code=True)

`laac.FAST_DECODING` is the folder holding this file (`fast_decoding/`, so that loading the repository root as a
model does not install it as `model.generate`); a Hub repository with the file as `custom_generate/generate.py`
works the same way. transformers loads the file, calls `generate(model, ...)` below with the arguments of
`generate`, and this function hands the decoding step back to transformers as a callable `custom_generate`: the
model's `generate` splices the audio in, transformers prepares the generation config, lengths, special tokens,
logits processors and stopping criteria, and only the decoding loop (`_decode`) is this file's. It calls no private
method of the model: its beam selection (`_top_k_continuations` ... `_beam_search_has_unfinished`) is written
here, step for step as `GenerationMixin._beam_search`, and the equality tests pin it to the reference's ids.

It gives the token ids of the stock `GenerationMixin` path (the reference) for greedy search and beam search with the
model's generation config (beams, min/max new tokens, length penalty, early stopping, suppressed tokens, EOS), and
saves what makes the stock loop slow:

- a key/value cache preallocated once for the whole caption (`PreallocatedLayer`): each step writes one position
  in place instead of concatenating a new copy of every layer's cache;
- beams reordered in place: only the rows whose parent beam changed are copied (`index_copy_`), over the filled
  part of the cache only, where the stock loop copies every layer's whole cache each step;
- no per-step `prepare_inputs_for_generation`, attention-mask concatenation or output bookkeeping: the attention mask
  and positions are preallocated, and the decode step is one call of the text model;
- the prompt runs once per clip, not once per beam; clips whose result can no longer change leave the batch (their
  rows are dropped from the cache at sync points). Both change the row count of the matrix products: identical ids
  where a row's result does not depend on the row count (the CPU of the tests); elsewhere last-bit differences
  can swap tied hypotheses, as any change of batch composition can;
- the "all beams of all clips are finished" check reads the device once every `sync_every` steps (exact: a finished
  beam search never changes its kept hypotheses, and greedy output is cut at the step the last clip finished).

`cache_implementation="static"` selects a fixed-shape decode step instead (`StaticRowsLayer`): every row runs to the
end, the step writes at a device-side position and attends over the whole preallocated buffer (positions not yet
written masked out), and beams are reordered by a fixed-shape gather, so nothing inside the step depends on a host
value. The text model's call is then compiled as transformers' `generate` compiles static-cache decoding
(`get_compiled_call(compile_config)`: on a GPU, or anywhere with `compile_config._compile_all_devices`), which on
CUDA with the default `reduce-overhead` mode replays the step as a CUDA graph. Same ids as the reference in the tests.

Not covered, and sent to the reference with a log line: encoder-decoder text models (BART, Submission 3), sampling,
`num_return_sequences > 1`, dict outputs, streamers, user logits processors / stopping criteria, and settings named
in `NEUTRAL_SETTINGS` at other values. `fast_decoding=False` runs the reference too. `post_processor=hook` is
applied by the model's `generate` around either loop, so both return the same result.

Measured gains and the rule for making it a device's default: docs/performance.md. Like the model's own Hub files,
this file imports only torch and transformers.
"""

import functools
from typing import Any, Optional

import torch
from transformers import GenerationConfig
from transformers.cache_utils import Cache, DynamicLayer
from transformers.generation.logits_process import LogitsProcessorList
from transformers.generation.stopping_criteria import StoppingCriteriaList
from transformers.utils import logging

logger = logging.get_logger(__name__)

# Generation settings the fast loop does not implement, with the value that leaves decoding as it implements it;
# a call with another value goes to the reference. Logits processors and stopping criteria need no entry: transformers
# prepares them for both loops alike.
NEUTRAL_SETTINGS = {
    "do_sample": False, "num_return_sequences": 1, "num_beam_groups": 1, "return_dict_in_generate": False,
    "output_scores": False, "output_logits": False, "output_attentions": False, "output_hidden_states": False,
    "cache_implementation": None, "prefill_chunk_size": None, "low_memory": None, "compile_config": None,
    "use_cache": True, "is_assistant": False, "stop_strings": None, "token_healing": False,
}  # fmt: skip
# Arguments of `generate` other than generation settings that the fast loop accepts (anything else goes to the
# reference): the model's inputs, the post-processing hook the model's `generate` applies, and the tokenizer (used only
# by settings that go to the reference).
SUPPORTED_ARGUMENTS = frozenset(
    {"attention_mask", "use_cache", "input_features", "feature_attention_mask", "inputs_embeds", "post_processor",
     "tokenizer"}
)  # fmt: skip
# Steps between two reads of the "everything finished" flag (one host sync each).
DEFAULT_SYNC_EVERY = 4


class PreallocatedLayer(DynamicLayer):
    """
    One layer's key/value cache in buffers allocated once for `max_length` positions: `update` writes the new
    positions in place and returns views of the filled part, so attention sees exactly the tensors a growing cache
    holds. `reorder_cache` copies only the rows whose beam changed.
    """

    def __init__(self, max_length: int, repeat: int = 1) -> None:
        super().__init__()
        self.max_length = max_length
        self.repeat = repeat  # rows per row of the first update (the prompt, encoded once per clip, not per beam)
        self.length = 0
        self.key_buffer: Optional[torch.Tensor] = None
        self.value_buffer: Optional[torch.Tensor] = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        rows, heads, length, dim = key_states.shape
        self.device = key_states.device
        shape = (rows * self.repeat, heads, self.max_length, dim)  # (rows x beams, kv_heads, max_len, head_dim)
        self.key_buffer, self.value_buffer = key_states.new_empty(shape), value_states.new_empty(shape)
        for buffer, states in ((self.key_buffer, key_states), (self.value_buffer, value_states)):
            buffer.view(rows, self.repeat, *shape[1:])[:, :, :, :length].copy_(states[:, None])  # each row per beam
        self.length = length
        self.keys, self.values = self.key_buffer[:, :, :length], self.value_buffer[:, :, :length]
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if not self.is_initialized:  # the prompt: attention runs on it as given, the cache keeps a copy per beam
            self.lazy_initialization(key_states, value_states)
            return key_states, value_states
        start, end = self.length, self.length + key_states.shape[-2]
        if end > self.max_length:
            raise ValueError(f"the preallocated cache holds {self.max_length} positions, step {end} exceeds it")
        self.key_buffer[:, :, start:end].copy_(key_states)
        self.value_buffer[:, :, start:end].copy_(value_states)
        self.length = end
        self.keys, self.values = self.key_buffer[:, :, :end], self.value_buffer[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return self.max_length

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """In place: rows whose parent beam is another row take its filled positions; the other rows stay."""
        self.move_rows(*moved_rows(beam_idx))

    def move_rows(self, moved: torch.Tensor, parents: torch.Tensor) -> None:
        """Rows `moved` take the filled positions of rows `parents` (`index_copy_`, the filled part only)."""
        if self.length == 0 or moved.numel() == 0:
            return
        for buffer in (self.key_buffer, self.value_buffer):
            filled = buffer[:, :, : self.length]
            filled.index_copy_(0, moved, filled.index_select(0, parents))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only the rows `indices` (finished clips leave the batch): one copy, at a sync point."""
        if self.is_initialized:
            self.key_buffer, self.value_buffer = self.key_buffer[indices], self.value_buffer[indices]
            self.keys, self.values = self.key_buffer[:, :, : self.length], self.value_buffer[:, :, : self.length]


def moved_rows(beam_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows whose parent beam is another row, and those parents (one host sync: the count of moved rows)."""
    moved = torch.nonzero(beam_idx != torch.arange(len(beam_idx), device=beam_idx.device)).flatten()
    return moved, beam_idx[moved]


def preallocated_cache(num_layers: int, max_length: int, repeat: int = 1) -> Cache:
    """A cache of `PreallocatedLayer`s; the prompt's rows are stored `repeat` times (once per beam)."""
    return Cache(layers=[PreallocatedLayer(max_length, repeat) for _ in range(num_layers)])


class StaticRowsLayer(PreallocatedLayer):
    """
    A `PreallocatedLayer` with fixed shapes, for a decode step that `torch.compile` and CUDA graphs can capture
    (`cache_implementation="static"`): a step writes at `position` (a device tensor shared by the layers, so no
    Python number changes between steps) and attention sees the whole `max_length` buffer, the positions not yet
    written masked out. The buffers are zeroed (a masked position must hold a finite number) and keep their
    addresses for the whole caption, as transformers' `StaticLayer`.
    """

    is_compileable = True

    def __init__(self, max_length: int, repeat: int, position: torch.Tensor) -> None:
        super().__init__(max_length, repeat)
        self.position = position

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        for buffer in (self.key_buffer, self.value_buffer):
            buffer[:, :, self.length :].zero_()
            if not torch.compiler.is_compiling():
                torch._dynamo.mark_static_address(buffer)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if not self.is_initialized:
            return super().update(key_states, value_states)
        self.key_buffer.index_copy_(2, self.position.view(1), key_states)
        self.value_buffer.index_copy_(2, self.position.view(1), value_states)
        return self.key_buffer, self.value_buffer

    def reorder_rows(self, beam_idx: torch.Tensor, length: int) -> None:
        """Every row takes its parent's filled positions: a fixed-shape gather, no host sync (no row count)."""
        for buffer in (self.key_buffer, self.value_buffer):
            filled = buffer[:, :, :length]
            filled.copy_(filled.index_select(0, beam_idx))


def static_cache(num_layers: int, max_length: int, repeat: int, position: torch.Tensor) -> Cache:
    """A cache of `StaticRowsLayer`s that write at `position`."""
    return Cache(layers=[StaticRowsLayer(max_length, repeat, position) for _ in range(num_layers)])


# -- entry point ---------------------------------------------------------------------------------------------------


class _NotCovered(Exception):
    """Raised by `_decode` (before any decoding) when the prepared settings need the reference loop."""


def generate(
    model: Any,
    input_ids: Optional[torch.LongTensor] = None,
    generation_config: Optional[GenerationConfig] = None,
    fast_decoding: bool = True,
    sync_every: int = DEFAULT_SYNC_EVERY,
    **kwargs: Any,
) -> Any:
    """
    What `model.generate(..., custom_generate=<folder holding this file>, trust_remote_code=True)` runs: the same
    arguments and the same token ids as the reference (prompt followed by the new tokens, padded with
    `pad_token_id`). The model's own `generate` runs with `_decode` as transformers' callable `custom_generate`, so
    that transformers prepares everything and this file only decodes; calls the loop does not cover, and
    `fast_decoding=False`, run the model's `generate` unchanged.
    """
    arguments = {key: value for key, value in kwargs.items() if value is not None}
    arguments.update(input_ids=input_ids, generation_config=generation_config)
    reason = _fallback_reason(model, input_ids, arguments, fast_decoding)
    if reason is None:
        try:
            decode = functools.partial(_decode, sync_every=max(1, sync_every))
            return type(model).generate(model, **arguments, custom_generate=decode)
        except _NotCovered as not_covered:
            reason = str(not_covered)
    logger.info(f"LAAC fast decoding: using the reference generate ({reason})")
    return type(model).generate(model, **arguments)


def _fallback_reason(
    model: Any, input_ids: Optional[torch.Tensor], arguments: dict, fast_decoding: bool
) -> Optional[str]:
    """Why this call must run the reference, judged on its arguments (`_decode` judges the prepared settings)."""
    if not fast_decoding:
        return "fast_decoding=False"
    if model.config.is_encoder_decoder:
        return "encoder-decoder text model"
    if input_ids is None:
        return "no input_ids"
    if "max_length" in arguments or "min_length" in arguments:
        return "lengths given as max_length/min_length (the fast loop takes max_new_tokens/min_new_tokens)"
    settings, inputs = GenerationConfig(), ("input_ids", "generation_config")
    extra = sorted(
        key for key in arguments if key not in SUPPORTED_ARGUMENTS and key not in inputs and not hasattr(settings, key)
    )
    return f"arguments {extra}" if extra else None


def _unsupported_setting(config: GenerationConfig) -> Optional[str]:
    """Why the prepared generation config needs the reference loop, or None."""
    if config.max_new_tokens is None:
        return "no max_new_tokens"
    unsupported = sorted(
        key
        for key, value in NEUTRAL_SETTINGS.items()
        if getattr(config, key, value) not in (value, None) and not _selects_the_static_step(config, key)
    )
    if unsupported:
        return f"settings {unsupported}"
    if not config.use_cache:
        return "use_cache=False"
    return None


def _selects_the_static_step(config: GenerationConfig, key: str) -> bool:
    """`cache_implementation="static"`, with its optional `compile_config`, selects the fixed-shape decode step."""
    return config.cache_implementation == "static" and key in ("cache_implementation", "compile_config")


@torch.no_grad()
def _decode(
    model: Any,
    input_ids: torch.LongTensor,
    logits_processor: LogitsProcessorList,
    stopping_criteria: StoppingCriteriaList,
    generation_config: GenerationConfig,
    sync_every: int = DEFAULT_SYNC_EVERY,
    **model_kwargs: Any,
) -> torch.LongTensor:
    """
    The decoding loop that transformers' `generate` calls in place of its own (`custom_generate` as a callable), with
    its prepared config, processors and stopping criteria. `input_ids`, `inputs_embeds` and `attention_mask` arrive
    expanded to one row per beam (`repeat_interleave`); the loop keeps one row per clip for the prompt.
    """
    reason = _unsupported_setting(generation_config)
    if reason is not None:
        raise _NotCovered(reason)
    beams = generation_config.num_beams
    embeds = model_kwargs.get("inputs_embeds")
    if embeds is None:  # a prompt without audio: the model's generate passed the ids alone
        embeds = model.get_input_embeddings()(input_ids)
    mask = model_kwargs.get("attention_mask")  # None when transformers found no padding
    if mask is None:
        mask = input_ids.new_ones(input_ids.shape)
    prompt = embeds[::beams], mask[::beams]  # one row per clip: (batch, P, H), (batch, P)
    state = _Decoding(model, input_ids, generation_config, logits_processor, stopping_criteria, *prompt)
    if beams == 1:
        return _greedy(model, state, sync_every)
    return _beam_search(model, state, sync_every)


def _text_model_call(model: Any, config: GenerationConfig) -> Any:
    """
    What runs the fixed-shape step: the text model's call compiled as transformers' `generate` compiles its static
    cache decoding (`get_compiled_call(compile_config)`, on a GPU or with `compile_config._compile_all_devices`;
    `disable_compile=True` prevents it), else the plain call.
    """
    text_model = model.language_model
    on_accelerator = model.get_input_embeddings().weight.device.type in ("cuda", "xpu")
    all_devices = config.compile_config is not None and config.compile_config._compile_all_devices
    if config.disable_compile or not (on_accelerator or all_devices):
        return text_model
    return text_model.get_compiled_call(config.compile_config)


# -- preparation -----------------------------------------------------------------------------------------------------


class _Decoding:
    """What both loops share: settings, processors, the preallocated cache, mask and positions of every row."""

    def __init__(
        self,
        model: Any,
        input_ids: torch.Tensor,
        config: GenerationConfig,
        logits_processor: LogitsProcessorList,
        stopping_criteria: StoppingCriteriaList,
        embeds: torch.Tensor,
        prompt_mask: torch.Tensor,
    ) -> None:
        device = model.get_input_embeddings().weight.device
        # 1. what transformers prepared: settings, lengths, logits processors, stopping criteria; rows = batch x beams
        self.config, self.num_beams = config, config.num_beams
        self.logits_processor, self.stopping_criteria = logits_processor, stopping_criteria
        self.input_ids = input_ids.to(device)  # (rows, P)
        self.batch_size = self.input_ids.shape[0] // self.num_beams
        self.prompt_length, self.max_length = self.input_ids.shape[1], config.max_length
        # 2. the prompt once per clip: embeddings with the audio spliced in (batch, P, H) and its mask (batch, P)
        self.embeds, self.prompt_mask = embeds.to(device), prompt_mask.to(device)
        prompt_mask = self.prompt_mask.repeat_interleave(self.num_beams, dim=0)
        self.attention_mask = prompt_mask.new_ones(prompt_mask.shape[0], self.max_length)  # grown by views, no cat
        self.attention_mask[:, : self.prompt_length] = prompt_mask
        self.prompt_positions = prompt_mask.long().sum(-1, keepdim=True) - 1  # (rows, 1): last prompt position
        # 3. the cache: preallocated for the whole caption, or fixed-shape for a compiled step
        layers, beams = model.config.text_config.num_hidden_layers, self.num_beams
        self.static = config.cache_implementation == "static"  # the fixed-shape step (`_static_step`)
        if self.static:
            self.position = torch.tensor(self.prompt_length, device=device)  # where the next step writes
            self.filled = self.prompt_length  # the same on the host, counted (never read from the device)
            self.cache = static_cache(layers, self.max_length, beams, self.position)
            self.visible = self._additive_mask(prompt_mask, self.embeds.dtype)
            self.text_model_call = _text_model_call(model, config)
        else:
            self.cache = preallocated_cache(layers, self.max_length, beams)
        # rows the text model still runs on: a finished clip's rows leave (`keep_clips`); the others get local indices
        self.active = torch.arange(prompt_mask.shape[0], device=device)
        self.local_of_row = self.active.clone()
        self.step_mask, self.step_positions = self.attention_mask, self.prompt_positions

    def prefill(self, model: Any) -> torch.Tensor:
        """
        The prompt through the text model once per clip (the reference runs it once per beam, on equal rows):
        float32 next-token logits (rows, vocab), repeated for each beam.
        """
        positions = (self.prompt_mask.long().cumsum(-1) - 1).clamp(min=0)  # skip left padding, as the model does
        logits = self._logits(model, self.embeds, self.prompt_mask, positions)
        return logits.repeat_interleave(self.num_beams, dim=0)

    def step(self, model: Any, tokens: torch.Tensor, length: int) -> torch.Tensor:
        """
        One new token per row; `length` = tokens in the sequence so far, `tokens` the last one of each row. Rows of
        finished clips are not run: their logits are zeros (the reference's result no longer depends on them).
        """
        if self.static:
            return self._static_step(model, tokens)
        compact = len(self.active) < len(tokens)
        embeds = model.get_input_embeddings()((tokens[self.active] if compact else tokens)[:, None])  # (active, 1, H)
        positions = self.step_positions + (length - self.prompt_length)
        logits = self._logits(model, embeds, self.step_mask[:, :length], positions)
        if not compact:
            return logits
        return logits.new_zeros(len(tokens), logits.shape[-1]).index_copy_(0, self.active, logits)

    def _additive_mask(self, prompt_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(rows, 1, 1, max_length): 0 where attention may look (the prompt's tokens), the dtype's minimum elsewhere."""
        visible = prompt_mask.new_zeros(prompt_mask.shape[0], self.max_length, dtype=torch.bool)
        visible[:, : self.prompt_length] = prompt_mask.bool()
        blocked = torch.zeros(visible.shape, dtype=dtype, device=visible.device)
        return blocked.masked_fill_(~visible, torch.finfo(dtype).min)[:, None, None, :]

    def _static_step(self, model: Any, tokens: torch.Tensor) -> torch.Tensor:
        """
        The fixed-shape step: every row runs (finished clips stay in the batch), the new position is unmasked and
        written in place, and the text model sees the same shapes at every step, so its compiled call replays.
        """
        self.visible.index_fill_(3, self.position.view(1), 0.0)
        embeds = model.get_input_embeddings()(tokens[:, None])
        positions = self.step_positions + (self.position + 1 - self.prompt_length)
        outputs = self.text_model_call(
            inputs_embeds=embeds, attention_mask=self.visible, position_ids=positions, cache=self.cache,
            use_cache=True, return_dict=True,
        )  # fmt: skip
        self.position.add_(1)
        self.filled += 1
        return outputs.logits[:, -1].to(copy=True, dtype=torch.float32)  # a copy: a CUDA graph reuses its outputs

    def keep_clips(self, clip_done: list[bool]) -> None:
        """Stop running the text model on the rows of finished clips (called at sync points, on host values)."""
        if self.static:  # fixed shapes: the rows stay
            return
        beams = self.num_beams
        rows = [clip * beams + beam for clip, done in enumerate(clip_done) if not done for beam in range(beams)]
        if len(rows) == len(self.active):
            return
        rows = torch.tensor(rows, dtype=torch.long, device=self.active.device)
        local = self.local_of_row[rows]  # their places in the current compact cache, mask and positions
        self.cache.batch_select_indices(local)
        self.step_mask, self.step_positions = self.step_mask[local], self.step_positions[local]
        places = torch.arange(len(rows), device=rows.device)
        self.local_of_row = torch.full_like(self.local_of_row, -1).index_copy_(0, rows, places)
        self.active = rows

    def reorder(self, beam_idx: torch.Tensor) -> None:
        """Beam reordering of the cache (global row indices), on the rows still running."""
        if self.static:
            for layer in self.cache.layers:
                layer.reorder_rows(beam_idx, self.filled)
            return
        if len(self.active) < len(beam_idx):
            beam_idx = self.local_of_row[beam_idx[self.active]]
        moved, parents = moved_rows(beam_idx)  # once for all layers
        for layer in self.cache.layers:
            layer.move_rows(moved, parents)

    def _logits(self, model: Any, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        outputs = model.language_model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, cache=self.cache, use_cache=True,
            return_dict=True,
        )  # fmt: skip
        return outputs.logits[:, -1].to(copy=True, dtype=torch.float32)


# -- greedy ----------------------------------------------------------------------------------------------------------


@torch.no_grad()
def _greedy(model: Any, state: _Decoding, sync_every: int) -> torch.LongTensor:
    """Greedy search as `GenerationMixin._sample` without sampling; cut where the reference stops."""
    pad = state.config._pad_token_tensor
    has_eos = any(hasattr(criteria, "eos_token_id") for criteria in state.stopping_criteria)
    sequences = state.input_ids.new_zeros(state.input_ids.shape[0], state.max_length)
    sequences[:, : state.prompt_length] = state.input_ids
    unfinished = torch.ones(sequences.shape[0], dtype=torch.long, device=sequences.device)
    stop_length = torch.zeros((), dtype=torch.long, device=sequences.device)  # 0 while some row runs
    length, logits = state.prompt_length, state.prefill(model)
    while True:
        next_tokens = torch.argmax(state.logits_processor(sequences[:, :length], logits), dim=-1)
        if has_eos:
            next_tokens = next_tokens * unfinished + pad * (1 - unfinished)
        sequences[:, length] = next_tokens
        length += 1
        unfinished = unfinished & ~state.stopping_criteria(sequences[:, :length], None)
        # the length at which the reference stops: the first step after which no row runs (kept on the device)
        stop_length = torch.where((stop_length == 0) & ~unfinished.bool().any(), length, stop_length)
        if length >= state.max_length or (length - state.prompt_length) % sync_every == 0:
            stop, *running = torch.cat([stop_length[None], unfinished]).tolist()  # one host sync every k steps
            if stop or length >= state.max_length:
                return sequences[:, : stop or length]
            state.keep_clips([not row for row in running])
        logits = state.step(model, next_tokens, length)


# -- beam search -----------------------------------------------------------------------------------------------------


class _Beams:
    """The beam-search state of `GenerationMixin._beam_search`, same tensors and shapes: (batch, beams, ...)."""

    def __init__(self, state: _Decoding) -> None:
        batch, beams, device = state.batch_size, state.num_beams, state.input_ids.device
        eos = state.config._eos_token_tensor
        self.beams_to_keep = max(2, 1 + (eos.shape[0] if eos is not None else 0)) * beams
        self.top_num_beam_mask = torch.arange(self.beams_to_keep, device=device) < beams
        pad = state.config._pad_token_tensor
        # the reference's fill value, operator precedence included: a pad id of 0 counts as missing
        fill = int(pad or eos[0]) if eos is not None else -1
        self.running_sequences = torch.full((batch, beams, state.max_length), fill, dtype=torch.int64, device=device)
        self.running_sequences[:, :, : state.prompt_length] = state.input_ids.view(batch, beams, -1)
        self.sequences = self.running_sequences.clone()
        self.running_beam_scores = torch.zeros((batch, beams), dtype=torch.float, device=device)
        self.running_beam_scores[:, 1:] = -1e9  # only the first beam's tokens count at the first step
        self.beam_scores = torch.full((batch, beams), -1e9, dtype=torch.float, device=device)
        self.is_sent_finished = torch.zeros((batch, beams), dtype=torch.bool, device=device)
        self.improvable = torch.ones((batch, 1), dtype=torch.bool, device=device)
        generated = state.max_length - state.prompt_length
        self.running_beam_indices = torch.full((batch, beams, generated), -1, dtype=torch.int32, device=device)
        self.beam_indices = self.running_beam_indices.clone()
        self.stopped = torch.zeros((), dtype=torch.bool, device=device)  # the reference's loop has ended
        self.clip_done = torch.zeros(batch, dtype=torch.bool, device=device)


@torch.no_grad()
def _beam_search(model: Any, state: _Decoding, sync_every: int) -> torch.LongTensor:
    """Beam search with `GenerationMixin`'s own selection steps; the cache is reordered in place."""
    beams, length, logits = _Beams(state), state.prompt_length, state.prefill(model)
    while True:
        _beam_step(model, state, beams, logits, length)
        length += 1
        at_end = length >= state.max_length
        if at_end or (length - state.prompt_length) % sync_every == 0:
            stopped, *clip_done = torch.cat([beams.stopped[None], beams.clip_done]).tolist()  # one host sync
            if at_end or stopped:
                return _beam_output(state, beams)
            state.keep_clips(clip_done)
        tokens = beams.running_sequences[:, :, length - 1].reshape(-1)
        logits = state.step(model, tokens, length)


def _beam_step(model: Any, state: _Decoding, beams: _Beams, logits: torch.Tensor, length: int) -> None:
    """One step of `GenerationMixin._beam_search` (its parts c-g); after the reference would stop, a no-op."""
    batch, num_beams, config, prompt = state.batch_size, state.num_beams, state.config, state.prompt_length
    flat_running = beams.running_sequences[:, :, :length].reshape(batch * num_beams, length)
    log_probs = state.logits_processor(flat_running, torch.nn.functional.log_softmax(logits, dim=-1))
    log_probs = (log_probs.view(batch, num_beams, -1) + beams.running_beam_scores[:, :, None]).view(batch, -1)
    topk_log_probs, topk_sequences, topk_beam_indices = _top_k_continuations(
        log_probs, beams.running_sequences, beams.running_beam_indices, length, prompt, beams.beams_to_keep, num_beams
    )
    hits = state.stopping_criteria(topk_sequences[:, :, : length + 1].reshape(-1, length + 1), None)
    hits = hits.view(batch, beams.beams_to_keep)
    beams.running_sequences, beams.running_beam_scores, beams.running_beam_indices = _running_beams(
        topk_log_probs, topk_sequences, topk_beam_indices, hits, num_beams
    )
    finished = _update_finished_beams(beams, topk_sequences, topk_log_probs, topk_beam_indices, hits, length, state)
    # steps after the reference's last one (the stop flag is read only every `sync_every` steps) change nothing kept
    old = (beams.sequences, beams.beam_scores, beams.beam_indices, beams.is_sent_finished)
    beams.sequences, beams.beam_scores, beams.beam_indices, beams.is_sent_finished = (
        torch.where(beams.stopped, before, after) for before, after in zip(old, finished)
    )
    state.reorder(beams.running_beam_indices[..., length - prompt].reshape(-1).long())
    beams.improvable = _early_stop_heuristic(beams, length + 1, state)
    unfinished = _beam_search_has_unfinished(beams, hits, config.early_stopping)
    beams.stopped = beams.stopped | ~unfinished
    # a clip is finished when the reference can no longer change its kept hypotheses: no improvement possible, or
    # (early_stopping=True) all its beams done; from then on its logits do not matter and its rows stop running
    full = beams.is_sent_finished.all(-1) & (config.early_stopping is True)
    beams.clip_done = ~beams.improvable[:, 0] | full | beams.stopped


# -- beam selection, step for step as GenerationMixin._beam_search's helpers (greedy selection, no sampling) ----------


def _gather_beams(tensor: torch.Tensor, beam_indices: torch.Tensor) -> torch.Tensor:
    """The beams `beam_indices` (batch, k) of `tensor` (batch, beams, ...)."""
    while beam_indices.dim() < tensor.dim():
        beam_indices = beam_indices.unsqueeze(-1)
    return torch.take_along_dim(tensor, beam_indices, dim=1)


def _top_k_continuations(
    log_probs: torch.Tensor,
    running_sequences: torch.Tensor,
    running_beam_indices: torch.Tensor,
    length: int,
    prompt_length: int,
    beams_to_keep: int,
    num_beams: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The `beams_to_keep` best continuations over all beams of a clip; log_probs: (batch, beams x vocab)."""
    topk_log_probs, topk_indices = torch.topk(log_probs, k=beams_to_keep)
    vocab_size = log_probs.shape[-1] // num_beams
    topk_current_beams = topk_indices // vocab_size  # (batch, beams_to_keep): the beam each continuation extends
    topk_beam_indices = _gather_beams(running_beam_indices, topk_current_beams)
    topk_sequences = _gather_beams(running_sequences, topk_current_beams)
    topk_sequences[:, :, length] = topk_indices % vocab_size
    batch_offset = torch.arange(log_probs.shape[0], device=log_probs.device).view(-1, 1) * num_beams
    topk_beam_indices[:, :, length - prompt_length] = topk_current_beams + batch_offset  # global row of the parent
    return topk_log_probs, topk_sequences, topk_beam_indices


def _running_beams(
    topk_log_probs: torch.Tensor,
    topk_sequences: torch.Tensor,
    topk_beam_indices: torch.Tensor,
    hits: torch.Tensor,
    num_beams: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The best `num_beams` continuations that did not just stop: the beams of the next step."""
    running_log_probs = topk_log_probs + hits.to(torch.float32) * -1.0e9
    best = torch.topk(running_log_probs, k=num_beams)[1]
    return (
        _gather_beams(topk_sequences, best), _gather_beams(running_log_probs, best),
        _gather_beams(topk_beam_indices, best),
    )  # fmt: skip


def _update_finished_beams(
    beams: _Beams,
    topk_sequences: torch.Tensor,
    topk_log_probs: torch.Tensor,
    topk_beam_indices: torch.Tensor,
    hits: torch.Tensor,
    length: int,
    state: _Decoding,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kept finished hypotheses, merged with the top `num_beams` continuations that just stopped."""
    config, num_beams = state.config, state.num_beams
    just_finished = hits & beams.top_num_beam_mask[None, :]
    scores = topk_log_probs / ((length + 1 - state.prompt_length) ** config.length_penalty)
    full = torch.all(beams.is_sent_finished, dim=-1, keepdim=True) & (config.early_stopping is True)
    scores += full.to(torch.float32) * -1.0e9  # no new hypothesis once a clip's beams are all done (early_stopping)
    scores += (~beams.improvable).to(torch.float32) * -1.0e9  # nor once none can improve
    scores += (~just_finished) * -1.0e9  # running continuations cannot be kept as finished
    merged = (
        torch.cat((beams.sequences, topk_sequences), dim=1), torch.cat((beams.beam_scores, scores), dim=1),
        torch.cat((beams.beam_indices, topk_beam_indices), dim=1),
        torch.cat((beams.is_sent_finished, just_finished), dim=1),
    )  # fmt: skip
    best = torch.topk(merged[1], k=num_beams)[1]
    sequences, beam_scores, beam_indices, is_sent_finished = (_gather_beams(t, best) for t in merged)
    return sequences, beam_scores, beam_indices, is_sent_finished


def _early_stop_heuristic(beams: _Beams, length: int, state: _Decoding) -> torch.Tensor:
    """(batch, 1): can a running beam of the clip still beat its worst kept hypothesis (the reference's heuristic)."""
    config, prompt = state.config, state.prompt_length
    if config.early_stopping == "never" and config.length_penalty > 0.0:
        best_length = state.max_length - prompt
    else:
        best_length = length - prompt
    best_running = beams.running_beam_scores[:, :1] / (best_length**config.length_penalty)
    worst_kept = torch.where(
        beams.is_sent_finished, torch.min(beams.beam_scores, dim=1, keepdim=True)[0], -1.0e9
    )
    return beams.improvable & torch.any(best_running > worst_kept, dim=-1, keepdim=True)


def _beam_search_has_unfinished(beams: _Beams, hits: torch.Tensor, early_stopping: Any) -> torch.Tensor:
    """The reference's loop condition: improvement possible, an open beam, a continuation that did not stop."""
    improvement_possible = torch.any(beams.improvable)
    exists_open_beam = ~(torch.all(beams.is_sent_finished) & (early_stopping is True))
    valid_continuations = ~torch.all(hits)
    return improvement_possible & exists_open_beam & valid_continuations


def _beam_output(state: _Decoding, beams: _Beams) -> torch.LongTensor:
    """The best hypothesis of each clip, cut to the longest generated length (the reference's step 5)."""
    sequences, beam_indices = beams.sequences[:, 0], beams.beam_indices[:, 0]  # (batch, max_length), (batch, new)
    generated = int((beam_indices + 1).bool().sum(dim=1).max())
    return sequences[:, : state.prompt_length + generated]
