"""The fast decoding loop (custom_generate/generate.py): the reference's token ids, in-place cache, shipping."""

import json
import textwrap

import laac  # noqa: F401  registers the LAAC classes and the task
import pytest
import torch
from laac.custom_generate import generate as fast
from laac.generation_laac import CUSTOM_GENERATE_FILE
from laac.modeling_laac import LaacForConditionalGeneration
from transformers import pipeline

from tests.laac_tester import make_audio, run_without_laac, save_tiny_model, tiny_config, tiny_model, tiny_processor

# batch compositions: one clip, mixed lengths (left padding, a sub-second clip), a larger batch
CLIP_SECONDS = [(2.0,), (1.0, 3.0, 12.0), (2.0, 6.0, 0.5, 4.0, 9.0)]
SETTINGS = [
    {},  # the model's generation config: beam 3, 2..30 new tokens, the placeholder suppressed
    {"num_beams": 1},
    {"num_beams": 1, "max_new_tokens": 5},
    {"min_new_tokens": 12},
    {"num_beams": 4, "length_penalty": 0.5},
    {"early_stopping": True, "max_new_tokens": 9},
    {"num_beams": 2, "length_penalty": -1.0, "early_stopping": "never"},
]


@pytest.fixture(scope="module")
def setup():
    config = tiny_config("llama")
    return config, tiny_model(config), tiny_processor(config)


def _inputs(processor, seconds):
    return processor([make_audio(s, seed=i) for i, s in enumerate(seconds)], sampling_rate=16000)


def _reference_forbidden(monkeypatch):
    """Inside the fast loop the reference must not run (it would make any comparison pass)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the fast loop fell back to the reference")

    monkeypatch.setattr(LaacForConditionalGeneration, "generate", refuse)


@pytest.mark.parametrize("seconds", CLIP_SECONDS, ids=lambda s: f"{len(s)}clips")
@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "model")
def test_fast_loop_gives_the_reference_token_ids(setup, seconds, settings, monkeypatch):
    config, model, processor = setup
    inputs = _inputs(processor, seconds)
    reference = model.generate(**inputs, **settings)
    _reference_forbidden(monkeypatch)
    for sync_every in (1, 4):
        got = fast.generate(model, **inputs, **settings, sync_every=sync_every)
        assert got.tolist() == reference.tolist(), (sync_every, got.tolist(), reference.tolist())
    # the fixed-shape step (every row runs, attention over the whole buffer): the same ids here too
    got = fast.generate(model, **inputs, **settings, cache_implementation="static")
    assert got.tolist() == reference.tolist(), ("static", got.tolist(), reference.tolist())


def test_the_test_set_covers_clips_that_end_early_and_min_new_tokens(setup):
    """The equality above covers EOS before the longest clip, and min_new_tokens holding EOS back."""
    config, model, processor = setup
    inputs = _inputs(processor, CLIP_SECONDS[1])
    prompt, eos = inputs["input_ids"].shape[1], config.text_config.eos_token_id
    new = model.generate(**inputs)[:, prompt:]
    ends = [row.index(eos) + 1 if eos in row else len(row) for row in new.tolist()]
    assert min(ends) < new.shape[1], ends  # some clip finished before the batch did
    held = model.generate(**inputs, min_new_tokens=12)[:, prompt:]
    assert not bool((held[:, :12] == eos).any()) and held.shape[1] >= 12


def test_unsupported_calls_go_to_the_reference(setup):
    config, model, processor = setup
    inputs = _inputs(processor, (2.0, 5.0))
    calls = []
    original = LaacForConditionalGeneration.generate

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("num_return_sequences"))
        return original(self, *args, **kwargs)

    LaacForConditionalGeneration.generate = spy
    try:
        pairs = fast.generate(model, **inputs, num_return_sequences=2)
        fast.generate(model, **inputs, fast_decoding=False)
        fast.generate(model, **inputs)
    finally:
        LaacForConditionalGeneration.generate = original
    assert calls == [2, None], calls  # the third call ran the fast loop
    assert pairs.shape[0] == 4


def test_encoder_decoder_text_model_uses_the_reference():
    config = tiny_config("bart")
    model, processor = tiny_model(config), tiny_processor(config)
    inputs = _inputs(processor, (2.0, 4.0))
    assert fast.generate(model, **inputs).tolist() == model.generate(**inputs).tolist()


def test_cache_is_written_in_place_and_reordered_row_by_row():
    layer = fast.PreallocatedLayer(max_length=6, repeat=2)
    prompt = torch.arange(2 * 1 * 3 * 2, dtype=torch.float).view(2, 1, 3, 2)  # (clips, heads, length, dim)
    keys, _ = layer.update(prompt, -prompt)
    assert keys is prompt and layer.get_seq_length() == 3  # attention sees the prompt as given
    pointer = layer.key_buffer.data_ptr()
    torch.testing.assert_close(layer.keys, prompt.repeat_interleave(2, dim=0), rtol=0, atol=0)
    step = torch.full((4, 1, 1, 2), 7.0)
    keys, values = layer.update(step, -step)
    assert keys.shape == (4, 1, 4, 2) and layer.key_buffer.data_ptr() == pointer
    expected = keys.clone().index_select(0, torch.tensor([1, 1, 2, 3]))
    layer.reorder_cache(torch.tensor([1, 1, 2, 3]))
    assert layer.key_buffer.data_ptr() == pointer
    torch.testing.assert_close(layer.keys, expected, rtol=0, atol=0)
    torch.testing.assert_close(layer.values, -expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="holds 6 positions"):
        layer.update(torch.zeros(4, 1, 3, 2), torch.zeros(4, 1, 3, 2))


def test_static_layer_writes_at_its_position_and_keeps_its_buffers():
    position = torch.tensor(3)
    layer = fast.StaticRowsLayer(max_length=6, repeat=2, position=position)
    prompt = torch.arange(2 * 1 * 3 * 2, dtype=torch.float).view(2, 1, 3, 2)
    keys, _ = layer.update(prompt, -prompt)
    assert keys is prompt  # attention sees the prompt as given; the buffers hold it once per beam, zeros after it
    pointer = layer.key_buffer.data_ptr()
    assert not layer.key_buffer[:, :, 3:].any() and not layer.value_buffer[:, :, 3:].any()
    step = torch.full((4, 1, 1, 2), 7.0)
    keys, values = layer.update(step, -step)
    assert keys.shape == (4, 1, 6, 2) and keys.data_ptr() == pointer  # the whole buffer, every step the same shape
    torch.testing.assert_close(keys[:, :, 3], step[:, :, 0], rtol=0, atol=0)
    assert not keys[:, :, 4:].any()
    expected = keys[:, :, :4].index_select(0, torch.tensor([1, 1, 2, 0]))
    layer.reorder_rows(torch.tensor([1, 1, 2, 0]), 4)
    assert layer.key_buffer.data_ptr() == pointer
    torch.testing.assert_close(layer.key_buffer[:, :, :4], expected, rtol=0, atol=0)
    torch.testing.assert_close(layer.value_buffer[:, :, :4], -expected, rtol=0, atol=0)


def test_the_static_step_is_captured_whole_and_replayed(setup, monkeypatch):
    """
    torch.compile with fullgraph=True (it raises at any graph break) captures the text model's fixed-shape step:
    one graph per batch shape, replayed at every step and by the next call, with the reference's ids. The "eager"
    backend checks the capture without code generation (inductor on CPU gave the same ids, compiling ~1 minute).
    """
    from transformers.generation.configuration_utils import CompileConfig

    config, model, processor = setup
    inputs = _inputs(processor, CLIP_SECONDS[1])
    reference = model.generate(**inputs)
    compile_config = CompileConfig(fullgraph=True, dynamic=False, backend="eager", mode=None)
    compile_config._compile_all_devices = True  # transformers compiles on GPUs only, unless told so
    _reference_forbidden(monkeypatch)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    for _ in range(2):
        got = fast.generate(model, **inputs, cache_implementation="static", compile_config=compile_config)
        assert got.tolist() == reference.tolist()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    assert not torch._dynamo.utils.counters["graph_break"]
    del model.language_model._compiled_call  # later tests get the plain model back


def test_pipeline_defaults_to_the_fast_loop(tmp_path, monkeypatch):
    folder = save_tiny_model(tmp_path / "model")
    assert (folder / CUSTOM_GENERATE_FILE).is_file()
    captioner = pipeline("audio-captioning", model=str(folder), device="cpu")
    clips = [make_audio(s, seed=i) for i, s in enumerate((1.0, 7.0, 3.0))]
    reference = captioner(clips, sampling_rate=16000, batch_size=3, fast_decoding=False)
    _reference_forbidden(monkeypatch)
    assert captioner(clips, sampling_rate=16000, batch_size=3) == reference


REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["laac"] = None  # everything comes from the folder
    import numpy as np
    from transformers import AutoModel, AutoProcessor
    folder = sys.argv[1]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    source = model.generate.func.__module__
    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(int(s * 16000))).astype(np.float32) for s in (1.5, 8.0, 0.7)]
    inputs = processor(clips, sampling_rate=16000)
    ids = {name: model.generate(**inputs, **kw).tolist() for name, kw in
           [("fast", {}), ("reference", {"fast_decoding": False}), ("fast_greedy", {"num_beams": 1}),
            ("reference_greedy", {"num_beams": 1, "fast_decoding": False})]}
    ids["class_reference"] = type(model).generate(model, **inputs).tolist()
    print(json.dumps({"source": source, "ids": ids}))
    """
)


def test_saved_checkpoint_carries_the_fast_loop_to_a_fresh_process(tmp_path):
    folder = save_tiny_model(tmp_path / "model")
    result = run_without_laac(REMOTE_SCRIPT, [str(folder)], tmp_path, OMP_NUM_THREADS="1")
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["source"].startswith("transformers_modules") and report["source"].endswith("custom_generate.generate")
    ids = report["ids"]
    assert ids["fast"] == ids["reference"] == ids["class_reference"]
    assert ids["fast_greedy"] == ids["reference_greedy"]


def test_fast_generate_without_the_file_is_generate(setup, monkeypatch):
    """Model code saved before the fast loop existed: fast_generate is plain generate."""
    config, model, processor = setup
    inputs = _inputs(processor, (2.0,))
    model = tiny_model(config)
    monkeypatch.setattr("laac.generation_laac.custom_generate_source", lambda: None)
    assert model.fast_generate(**inputs).tolist() == model.generate(**inputs).tolist()
    assert "_custom_generate" not in vars(model)


@pytest.mark.parametrize("settings", [{}, {"num_beams": 1}], ids=["beam3", "greedy"])
def test_finished_clips_leave_the_batch(setup, settings, monkeypatch):
    """Rows of finished clips stop running (fewer rows per step) and the ids stay the reference's."""
    config, model, processor = setup
    inputs = _inputs(processor, CLIP_SECONDS[2])
    reference = model.generate(**inputs, **settings)
    rows, original = [], fast._Decoding._logits
    monkeypatch.setattr(
        fast._Decoding, "_logits", lambda self, m, e, *a: rows.append(e.shape[0]) or original(self, m, e, *a)
    )
    got = fast.generate(model, **inputs, **settings, sync_every=1)
    assert got.tolist() == reference.tolist()
    beams = model.generation_config.num_beams if not settings else 1
    assert rows[0] == 5 and rows[1] == 5 * beams and min(rows[1:]) < 5 * beams, rows
