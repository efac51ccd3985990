# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
LAAC: automated audio captioning with an LLM (the Xiaomi DCASE 2024 Task 6 system).

audio -> log-mel -> CED/Dasheng encoder tokens -> windowed Q-Former (every `window_size` tokens -> 1 query) ->
linear projection -> spliced into the text decoder's input embeddings at the audio placeholder tokens of
Prompt I -> caption. One forward serves training (loss on caption tokens) and `generate()`.
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    Blip2QFormerModel,
    GenerationConfig,
    GenerationMixin,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutput, CausalLMOutputWithPast, Seq2SeqLMOutput
from transformers.utils import ModelOutput, can_return_tuple, logging

from .configuration_laac import DEFAULT_GENERATION, LaacConfig, num_windows
from .modeling_ced import CedModel, DashengModel, chunk_layout, num_freq_patches


logger = logging.get_logger(__name__)

AUDIO_TOWER_CLASSES = {"ced": CedModel, "dasheng": DashengModel}


@dataclass
class LaacAudioFeaturesOutput(ModelOutput):
    r"""
    The audio side of a batch of clips, as `LaacForConditionalGeneration.get_audio_features` returns it.

    audio_embeds (`torch.FloatTensor` of shape `(total_audio_tokens, text_hidden_size)`):
        The projected Q-Former outputs of every clip, clip after clip: the rows that replace the audio placeholder
        tokens of the prompt.
    tokens_per_clip (`torch.LongTensor` of shape `(batch_size,)`):
        Audio tokens of each clip: `LaacConfig.num_audio_tokens` of its frame count.
    encoder_hidden_states (`torch.FloatTensor` of shape `(batch_size, max_encoder_tokens, audio_hidden_size)`):
        The audio encoder's tokens, each clip's packed left-aligned in the order the Q-Former reads them
        (`config.token_order`).
    encoder_attention_mask (`torch.LongTensor` of shape `(batch_size, max_encoder_tokens)`): 1 on real tokens.
    """

    audio_embeds: Optional[torch.FloatTensor] = None
    tokens_per_clip: Optional[torch.LongTensor] = None
    encoder_hidden_states: Optional[torch.FloatTensor] = None
    encoder_attention_mask: Optional[torch.LongTensor] = None


@dataclass
class LaacCausalLMOutputWithPast(CausalLMOutputWithPast):
    r"""
    The decoder-only text model's `CausalLMOutputWithPast` (`loss`, `logits`, the key/value cache under the name
    the installed transformers gives it, `hidden_states`, `attentions`), plus:

    audio_features (`LaacAudioFeaturesOutput`, *optional*): the audio spliced into the prompt; `None` when the
        call had no `input_features` (decoding steps after the first).
    """

    audio_features: Optional[LaacAudioFeaturesOutput] = None


@dataclass
class LaacSeq2SeqLMOutput(Seq2SeqLMOutput):
    r"""
    The encoder-decoder text model's `Seq2SeqLMOutput` (BART, "Submission 3"), plus:

    audio_features (`LaacAudioFeaturesOutput`, *optional*): the audio spliced into the encoder's prompt; `None`
        when `encoder_outputs` were passed in (as `generate()` does after encoding once).
    """

    audio_features: Optional[LaacAudioFeaturesOutput] = None


def _with_audio_features(output_class: type, outputs: ModelOutput, audio_features: Any) -> ModelOutput:
    """The text model's `outputs` as `output_class` (the fields both have) with the audio features added."""
    names = {f.name for f in dataclasses.fields(output_class)}
    return output_class(**{k: v for k, v in outputs.items() if k in names}, audio_features=audio_features)


def time_major_index(num_frames: int, audio_config: Any) -> list[int]:
    """
    Permutation that turns one clip's frequency-major encoder tokens (per chunk: index f * n_t + t) into
    time-major order (per chunk: index t * n_f + f), chunk after chunk.
    """
    n_freq = num_freq_patches(audio_config)
    index, offset = [], 0
    for _, kept in chunk_layout(num_frames, audio_config):
        index += [offset + f * kept + t for t in range(kept) for f in range(n_freq)]
        offset += n_freq * kept
    return index


class LaacQFormer(nn.Module):
    """
    The bridge: a BLIP-2 Q-Former run independently on non-overlapping windows of `window_size` encoder tokens,
    `queries_per_window` learned queries each, so a clip of N tokens becomes `num_windows(N) * queries` tokens.
    """

    def __init__(self, config: LaacConfig) -> None:
        super().__init__()
        self.window_size = config.window_size
        self.last_window = config.last_window
        hidden = config.qformer_config.hidden_size
        self.query_tokens = nn.Parameter(torch.zeros(1, config.queries_per_window, hidden))
        self.transformer = Blip2QFormerModel(config.qformer_config)

    def windows(self, tokens: torch.Tensor, token_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """
        (B, N, D) packed tokens + (B, N) mask -> the windows that exist, in clip order: (n_windows_total, W, D),
        their (n_windows_total, W) token mask, and the number of windows per clip.
        """
        batch, n_tokens, dim = tokens.shape
        counts = token_mask.sum(-1).tolist()
        per_clip = [num_windows(int(n), self.window_size, self.last_window) for n in counts]
        if min(per_clip) == 0:
            raise ValueError(
                f"a clip gives no audio tokens: encoder tokens per clip {counts}, but a Q-Former window needs "
                f"{self.window_size}. Pad short audio (LaacFeatureExtractor does by default, min_num_frames) or use "
                "last_window='pad'"
            )
        max_windows = max(per_clip)
        total = max_windows * self.window_size
        pad = total - n_tokens
        if pad > 0:  # room for a zero-padded last window; the mask hides the padding
            tokens = nn.functional.pad(tokens, (0, 0, 0, pad))
            token_mask = nn.functional.pad(token_mask, (0, pad))
        tokens = tokens[:, :total].reshape(batch, max_windows, self.window_size, dim)  # (B, n_win, W, D)
        token_mask = token_mask[:, :total].reshape(batch, max_windows, self.window_size)
        exists = torch.arange(max_windows, device=tokens.device)[None, :] < torch.tensor(
            per_clip, device=tokens.device
        )[:, None]  # (B, n_win): windows beyond a clip's count come only from batch padding
        return tokens[exists], token_mask[exists], per_clip

    def forward(self, tokens: torch.Tensor, token_mask: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """Returns the query outputs of every real window, flattened in clip order: (total_queries, H), counts."""
        # Blip2QFormerModel casts the windows to its own dtype (float32 under float16: _keep_in_fp32_modules)
        windows, window_mask, per_clip = self.windows(tokens, token_mask)
        queries = self.query_tokens.expand(windows.shape[0], -1, -1)
        out = self.transformer(
            query_embeds=queries, encoder_hidden_states=windows, encoder_attention_mask=window_mask
        ).last_hidden_state  # (n_windows_total, queries_per_window, H)
        n_queries = self.query_tokens.shape[1]
        return out.reshape(-1, out.shape[-1]), [n * n_queries for n in per_clip]


class LaacPreTrainedModel(PreTrainedModel):
    config_class = LaacConfig
    config: LaacConfig
    base_model_prefix = ""
    main_input_name = "input_ids"
    input_modalities = ("audio", "text")
    supports_gradient_checkpointing = True
    # Lets `attn_implementation="sdpa"` through to the parts that choose: the Q-Former and the text model (CED
    # always calls scaled_dot_product_attention).
    _supports_sdpa = True
    # The Q-Former's layers; post_init adds those of the audio tower and the text model (e.g. CedBlock,
    # LlamaDecoderLayer), whichever they are.
    _no_split_modules = ["Blip2QFormerLayer"]
    _skip_keys_device_placement = ["cache"]
    # As BLIP-2: loaded in float16 (narrow range), the Q-Former and its queries stay in float32. Tokens enter it in
    # its dtype (Blip2QFormerModel casts them) and leave in the projection's (get_audio_features).
    _keep_in_fp32_modules = ["qformer"]

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, LaacQFormer):
            init.normal_(module.query_tokens, std=self.config.qformer_config.initializer_range)


class _LaacTextEncoder:
    """
    What `generate()` calls as the encoder of an encoder-decoder text model: it splices the audio into the
    prompt embeddings, then runs the text encoder. A plain object (not a module) so it adds no parameters.
    """

    def __init__(self, model: "LaacForConditionalGeneration") -> None:
        self.model = model

    def forward(self, **kwargs: Any) -> BaseModelOutput:
        return self.model.encode_prompt(**kwargs)

    __call__ = forward


class LaacForConditionalGeneration(LaacPreTrainedModel, GenerationMixin):
    """
    Audio encoder + windowed Q-Former + projection + text decoder. `input_ids` hold Prompt I with one audio
    placeholder token per audio token (see `LaacProcessor`); the projected Q-Former outputs replace them.
    """

    # (input_features, feature_attention_mask) -> packed tokens and mask in place of the tower: set by training
    # with a frozen tower (training.audio_token_cache.AudioTokenCache); never saved
    audio_token_cache: Optional[Callable[..., tuple[torch.Tensor, torch.Tensor]]] = None

    def __init__(self, config: LaacConfig) -> None:
        super().__init__(config)
        self.audio_tower = AUDIO_TOWER_CLASSES[config.audio_config.model_type](config.audio_config)
        self.qformer = LaacQFormer(config)
        self.language_projection = nn.Linear(config.qformer_config.hidden_size, config.text_config.hidden_size)
        text_auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        self.language_model = text_auto.from_config(config.text_config)
        self.post_init()
        self.generation_config = self._default_generation_config()

    def _default_generation_config(self) -> GenerationConfig:
        """The report's decoding (beam 3, 2..30 new tokens); the audio placeholder can never be generated."""
        text = GenerationConfig.from_model_config(self.config.text_config).to_dict()
        keep = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "forced_eos_token_id")
        settings = {k: text[k] for k in keep if text.get(k) is not None}
        if settings.get("pad_token_id") is None and settings.get("eos_token_id") is not None:
            eos = settings["eos_token_id"]
            settings["pad_token_id"] = eos[0] if isinstance(eos, list) else eos
        return GenerationConfig(**settings, **DEFAULT_GENERATION, suppress_tokens=[self.config.audio_token_id])

    # -- embeddings plumbing (used by resize_token_embeddings, generate, peft) ---------------------------------

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    def get_encoder(self, modality: Optional[str] = None) -> Any:
        if self.config.is_encoder_decoder and modality is None:
            return _LaacTextEncoder(self)
        return self.audio_tower

    def get_decoder(self) -> nn.Module:
        return self.language_model.get_decoder()

    # -- audio path ----------------------------------------------------------------------------------------------

    def _clip_frames(self, input_features: torch.Tensor, feature_attention_mask: Optional[torch.Tensor]) -> list[int]:
        if feature_attention_mask is None:
            return [input_features.shape[-1]] * input_features.shape[0]
        return feature_attention_mask.long().sum(-1).tolist()

    def _order_tokens(self, tokens: torch.Tensor, frames: list[int]) -> torch.Tensor:
        """Reorder each clip's packed tokens to time-major when the config asks for it (the original: frequency)."""
        if self.config.token_order == "frequency":
            return tokens
        index = torch.zeros(tokens.shape[:2], dtype=torch.long, device=tokens.device)
        for row, n in enumerate(frames):
            perm = torch.tensor(time_major_index(n, self.config.audio_config), device=tokens.device)
            index[row, : perm.numel()] = perm
        return tokens.gather(1, index[..., None].expand_as(tokens))

    def get_audio_features(
        self, input_features: torch.Tensor, feature_attention_mask: Optional[torch.Tensor] = None
    ) -> LaacAudioFeaturesOutput:
        """
        Log-mel `(batch_size, n_mels, frames)` -> the audio tokens in the text width, clip after clip
        `(total_audio_tokens, text_hidden_size)`, with each clip's count (`LaacConfig.num_audio_tokens`) and the
        encoder tokens they come from.
        """
        # 0. the processor's float32 log-mel, in the audio tower's dtype and device (a bf16/fp16 model takes it as is)
        tower_weight = next(self.audio_tower.parameters())
        input_features = input_features.to(tower_weight.device, tower_weight.dtype)
        # 1. encoder tokens, each clip packed left-aligned in its own order
        if self.audio_token_cache is not None:
            tokens, token_mask = self.audio_token_cache(self.audio_tower, input_features, feature_attention_mask)
        else:
            encoded = self.audio_tower(input_features, feature_attention_mask=feature_attention_mask, return_dict=True)
            tokens, token_mask = encoded.last_hidden_state, encoded.attention_mask
        frames = self._clip_frames(input_features, feature_attention_mask)
        tokens = self._order_tokens(tokens, frames)  # (B, N_max, D_audio)
        # 2. Q-Former over windows of tokens
        queries, per_clip = self.qformer(tokens, token_mask)  # (total_audio_tokens, H_qformer)
        # 3. projection to the text width (the Q-Former may run in float32 under a float16 model)
        audio_embeds = self.language_projection(queries.to(self.language_projection.weight.dtype))
        return LaacAudioFeaturesOutput(
            audio_embeds=audio_embeds,
            tokens_per_clip=torch.tensor(per_clip, dtype=torch.long, device=audio_embeds.device),
            encoder_hidden_states=tokens,
            encoder_attention_mask=token_mask,
        )

    def get_placeholder_mask(
        self,
        input_ids: Optional[torch.LongTensor],
        inputs_embeds: torch.Tensor,
        audio_features: LaacAudioFeaturesOutput,
    ) -> torch.BoolTensor:
        """
        `(batch_size, seq_len, 1)` mask of the audio placeholder positions: `config.audio_token_id` in `input_ids`,
        or without them, the rows of `inputs_embeds` equal to that token's embedding. Raises a `ValueError` naming
        both counts when a clip's placeholders and its audio tokens disagree.
        """
        if input_ids is None:
            placeholder = torch.tensor(self.config.audio_token_id, device=inputs_embeds.device)
            mask = (inputs_embeds == self.get_input_embeddings()(placeholder)).all(-1)  # (B, L)
        else:
            mask = input_ids == self.config.audio_token_id  # (B, L)
        found, expected = mask.sum(-1).tolist(), audio_features.tokens_per_clip.tolist()
        if found != expected:
            raise ValueError(
                f"audio placeholder tokens per clip {found} do not match the audio tokens per clip {expected}; build "
                "the inputs with LaacProcessor (it expands the placeholder with LaacConfig.num_audio_tokens)"
            )
        return mask[..., None].to(inputs_embeds.device)

    def embed_inputs(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        input_features: Optional[torch.Tensor] = None,
        feature_attention_mask: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, Optional[LaacAudioFeaturesOutput]]:
        """
        Prompt token embeddings `(batch_size, seq_len, text_hidden_size)` with the projected audio tokens scattered
        into the placeholder positions, and the audio features (None without `input_features`).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        if input_features is None:
            if input_ids is not None and bool((input_ids == self.config.audio_token_id).any()):
                raise ValueError("input_ids contain audio placeholder tokens but no input_features were given")
            return inputs_embeds, None
        audio_features = self.get_audio_features(input_features, feature_attention_mask)
        mask = self.get_placeholder_mask(input_ids, inputs_embeds, audio_features)
        audio = audio_features.audio_embeds.to(inputs_embeds.device, inputs_embeds.dtype)
        return inputs_embeds.masked_scatter(mask, audio), audio_features

    def encode_prompt(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        input_features: Optional[torch.Tensor] = None,
        feature_attention_mask: Optional[torch.Tensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> BaseModelOutput:
        """Encoder-decoder text models only: run the text encoder over the prompt with the audio spliced in."""
        inputs_embeds, _ = self.embed_inputs(input_ids, inputs_embeds, input_features, feature_attention_mask)
        return self._encode_text(inputs_embeds, attention_mask, **kwargs)

    def _encode_text(self, inputs_embeds: torch.Tensor, attention_mask: Optional[torch.Tensor], **kwargs: Any) -> Any:
        kwargs = {k: v for k, v in kwargs.items() if k in ("output_attentions", "output_hidden_states")}
        return self.language_model.get_encoder()(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, return_dict=True, **kwargs
        )

    # -- forward ---------------------------------------------------------------------------------------------------

    @can_return_tuple
    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        input_features: Optional[torch.Tensor] = None,
        feature_attention_mask: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        labels: Optional[torch.LongTensor] = None,
        decoder_input_ids: Optional[torch.LongTensor] = None,
        decoder_attention_mask: Optional[torch.Tensor] = None,
        encoder_outputs: Optional[Union[BaseModelOutput, tuple]] = None,
        **kwargs: Any,
    ) -> Union[LaacCausalLMOutputWithPast, LaacSeq2SeqLMOutput]:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch_size, seq_len)`): the prompt (and, for a decoder-only text
            model in training, the caption), with one `audio_token_id` per audio token.
        input_features (`torch.FloatTensor` of shape `(batch_size, n_mels, frames)`): log-mel from
            `LaacFeatureExtractor`. `feature_attention_mask` (batch_size, frames) marks real frames.
        labels (`torch.LongTensor`): decoder-only: same shape as `input_ids`, -100 except on caption tokens and
            EOS; encoder-decoder: the caption token ids (the decoder inputs are derived from them).
        Other keyword arguments (`cache`, `use_cache`, `logits_to_keep`, ...) go to the text model.

        Returns `LaacCausalLMOutputWithPast` (decoder-only text model) or `LaacSeq2SeqLMOutput` (encoder-decoder).
        """
        if self.config.is_encoder_decoder:
            return self._forward_encoder_decoder(
                input_ids, input_features, feature_attention_mask, attention_mask, inputs_embeds, labels,
                decoder_input_ids, decoder_attention_mask, encoder_outputs, **kwargs,
            )  # fmt: skip
        # 1. prompt embeddings with the audio spliced in (only in the prefill step: later steps have no features)
        inputs_embeds, audio_features = self.embed_inputs(
            input_ids, inputs_embeds, input_features, feature_attention_mask
        )
        # 2. positions that skip left padding, so a padded clip decodes exactly like the clip alone
        if position_ids is None and attention_mask is not None and attention_mask.dim() == 2:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -inputs_embeds.shape[1] :]
        # 3. the text decoder (its loss shifts labels and ignores -100)
        outputs = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            labels=labels,
            return_dict=True,
            **kwargs,
        )
        return _with_audio_features(LaacCausalLMOutputWithPast, outputs, audio_features)

    def _forward_encoder_decoder(
        self,
        input_ids: Optional[torch.LongTensor],
        input_features: Optional[torch.Tensor],
        feature_attention_mask: Optional[torch.Tensor],
        attention_mask: Optional[torch.Tensor],
        inputs_embeds: Optional[torch.Tensor],
        labels: Optional[torch.LongTensor],
        decoder_input_ids: Optional[torch.LongTensor],
        decoder_attention_mask: Optional[torch.Tensor],
        encoder_outputs: Optional[Union[BaseModelOutput, tuple]],
        **kwargs: Any,
    ) -> LaacSeq2SeqLMOutput:
        """`forward` for an encoder-decoder text model: the audio goes into the encoder's prompt, once."""
        audio_features = None
        if encoder_outputs is None:  # generate() encodes once through get_encoder() and passes the result
            inputs_embeds, audio_features = self.embed_inputs(
                input_ids, inputs_embeds, input_features, feature_attention_mask
            )
            encoder_outputs = self._encode_text(inputs_embeds, attention_mask)
        outputs = self.language_model(
            encoder_outputs=encoder_outputs,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            labels=labels,
            return_dict=True,
            **kwargs,
        )
        return _with_audio_features(LaacSeq2SeqLMOutput, outputs, audio_features)

    @torch.no_grad()
    def generate(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        input_features: Optional[torch.Tensor] = None,
        feature_attention_mask: Optional[torch.Tensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        post_processor: Optional[Callable[[Any, Optional[torch.Tensor]], Any]] = None,
        **kwargs: Any,
    ) -> Any:
        """
        `GenerationMixin.generate` (beam 3, 2..30 new tokens by default). For a decoder-only text model the audio is
        encoded and spliced once, before beam search copies the prompt `num_beams` times, through the same
        `embed_inputs` that training uses; the returned sequences still start with `input_ids`.

        post_processor (callable, *optional*): called once after decoding as `post_processor(output, prompt_ids)`,
            `output` being what this call returns without it and `prompt_ids` the ids the sequences start with
            (None for an encoder-decoder text model); its result is returned. The installed package's
            `laac.correction.post_corrector.CaptionPostProcessor` decodes and post-corrects:

            hook = PostCorrector.from_pretrained(model_dir).for_tokenizer(processor.tokenizer)
            out = model.generate(**inputs, post_processor=hook)  # out.sequences: the ids generate() gives alone
        """
        if input_features is not None and not self.config.is_encoder_decoder:
            embeds, _ = self.embed_inputs(input_ids, inputs_embeds, input_features, feature_attention_mask)
            output = super().generate(input_ids=input_ids, inputs_embeds=embeds, **kwargs)
        else:
            output = super().generate(
                input_ids=input_ids,
                input_features=input_features,
                feature_attention_mask=feature_attention_mask,
                inputs_embeds=inputs_embeds,
                **kwargs,
            )
        if post_processor is None:
            return output
        return post_processor(output, None if self.config.is_encoder_decoder else input_ids)

    # -- assembly from released parts ------------------------------------------------------------------------------

    @classmethod
    def from_components(
        cls,
        audio: str,
        text: str,
        audio_token: str = "<|audio|>",
        dtype: Optional[torch.dtype] = None,
        **config_kwargs: Any,
    ) -> "LaacForConditionalGeneration":
        """
        Build a LAAC model from a pretrained audio encoder (a `mispeech/ced-*` / `mispeech/dasheng-*` id or folder)
        and a pretrained text model (a Hub id or folder, e.g. "meta-llama/Llama-2-7b-hf"); the Q-Former and the
        projection start random, and the audio placeholder token is added to the text vocabulary exactly as
        `LaacProcessor.from_components(audio, text)` adds it. The installed package's
        `laac.conversion.components.build_model` does the work (checkpoints do not carry it).

            model = LaacForConditionalGeneration.from_components("mispeech/ced-base", "meta-llama/Llama-2-7b-hf")
        """
        try:  # tooling of the installed package, not of checkpoints
            from laac.conversion.components import build_model
        except ImportError as error:
            raise ImportError(
                "from_components needs the laac package (laac.conversion.components): pip install the LAAC repository"
            ) from error
        return build_model(cls, audio, text, audio_token, dtype, **config_kwargs)


# save_pretrained copies this file (and its siblings) next to the weights; LaacConfig.auto_map lists the entry points.
LaacForConditionalGeneration.register_for_auto_class("AutoModel")

__all__ = [
    "LaacAudioFeaturesOutput",
    "LaacCausalLMOutputWithPast",
    "LaacForConditionalGeneration",
    "LaacPreTrainedModel",
    "LaacQFormer",
    "LaacSeq2SeqLMOutput",
    "time_major_index",
]
