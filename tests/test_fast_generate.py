"""
The opt-in fast decoding loop (fast_decoding/custom_generate/generate.py), always reached the way users reach it:
`model.generate(..., custom_generate=FAST_DECODING, trust_remote_code=True)`, loaded by transformers. It gives the
reference's token ids; stock generate stays the default of a saved checkpoint and of the pipeline.
"""

import functools
import json
import re
import shutil
import sys
import textwrap
from pathlib import Path

import laac  # noqa: F401  registers the LAAC classes and the task
import pytest
import torch
from laac import FAST_DECODING
from transformers import pipeline
from transformers.generation.utils import GenerationMixin

from tests.laac_tester import make_audio, run_without_laac, save_tiny_model, tiny_config, tiny_model, tiny_processor

OPT_IN = {"custom_generate": FAST_DECODING, "trust_remote_code": True}
LOOP_FILE = Path(FAST_DECODING) / "custom_generate" / "generate.py"

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


@pytest.fixture(scope="module")
def fast(setup):
    """The loop's module as transformers loads it for `custom_generate=FAST_DECODING` (the one the calls run)."""
    _, model, _ = setup
    return sys.modules[model.load_custom_generate(FAST_DECODING, trust_remote_code=True).__module__]


def _inputs(processor, seconds):
    return processor([make_audio(s, seed=i) for i, s in enumerate(seconds)], sampling_rate=16000)


def _reference_loops(monkeypatch, refuse: bool) -> list[str]:
    """
    Watch (or forbid: a fallback would make any comparison pass) transformers' own decoding loops; the wrappers keep
    their signatures, which transformers reads to route `custom_generate` arguments. Returns the loops that ran.
    """
    ran = []
    for name in ("_sample", "_beam_search"):
        original = getattr(GenerationMixin, name)

        @functools.wraps(original)
        def watched(*args, _name=name, _original=original, **kwargs):
            if refuse:
                raise AssertionError(f"the fast loop fell back to the reference ({_name})")
            ran.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(GenerationMixin, name, watched)
    return ran


@pytest.mark.parametrize("seconds", CLIP_SECONDS, ids=lambda s: f"{len(s)}clips")
@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "model")
def test_fast_loop_gives_the_reference_token_ids(setup, seconds, settings, monkeypatch):
    config, model, processor = setup
    inputs = _inputs(processor, seconds)
    reference = model.generate(**inputs, **settings)
    _reference_loops(monkeypatch, refuse=True)
    for sync_every in (1, 4):
        got = model.generate(**inputs, **settings, **OPT_IN, sync_every=sync_every)
        assert got.tolist() == reference.tolist(), (sync_every, got.tolist(), reference.tolist())
    # the fixed-shape step (every row runs, attention over the whole buffer): the same ids here too
    got = model.generate(**inputs, **settings, **OPT_IN, cache_implementation="static")
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


def test_unsupported_calls_go_to_the_reference(setup, monkeypatch):
    config, model, processor = setup
    inputs = _inputs(processor, (2.0, 5.0))
    ran = _reference_loops(monkeypatch, refuse=False)
    pairs = model.generate(**inputs, **OPT_IN, num_return_sequences=2)
    assert ran == ["_beam_search"] and pairs.shape[0] == 4
    model.generate(**inputs, **OPT_IN, fast_decoding=False)
    assert ran == ["_beam_search"] * 2
    model.generate(**inputs, **OPT_IN)
    assert ran == ["_beam_search"] * 2  # the third call ran the fast loop
    model.generate(**inputs)
    assert ran == ["_beam_search"] * 3  # without the opt-in: stock generate


def test_encoder_decoder_text_model_uses_the_reference():
    config = tiny_config("bart")
    model, processor = tiny_model(config), tiny_processor(config)
    inputs = _inputs(processor, (2.0, 4.0))
    assert model.generate(**inputs, **OPT_IN).tolist() == model.generate(**inputs).tolist()


def test_the_loop_calls_no_private_method_of_the_model():
    """The loop reaches the model through public methods only (`model._x` anywhere in the file is a failure)."""
    source = LOOP_FILE.read_text(encoding="utf-8")
    assert "model.language_model(" in source and "model.get_input_embeddings()" in source  # the reader reads it
    assert not re.findall(r"\bmodel\._\w+", source)


def test_cache_is_written_in_place_and_reordered_row_by_row(fast):
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


def test_static_layer_writes_at_its_position_and_keeps_its_buffers(fast):
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
    _reference_loops(monkeypatch, refuse=True)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    for _ in range(2):
        got = model.generate(**inputs, **OPT_IN, cache_implementation="static", compile_config=compile_config)
        assert got.tolist() == reference.tolist()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    assert not torch._dynamo.utils.counters["graph_break"]
    del model.language_model._compiled_call  # later tests get the plain model back


def test_pipeline_runs_stock_generate_and_fast_decoding_on_request(tmp_path, monkeypatch):
    folder = save_tiny_model(tmp_path / "model")
    assert not (folder / "custom_generate").exists()  # a saved checkpoint does not make the loop its default
    captioner = pipeline("audio-captioning", model=str(folder), device="cpu")
    clips = [make_audio(s, seed=i) for i, s in enumerate((1.0, 7.0, 3.0))]
    ran = _reference_loops(monkeypatch, refuse=False)
    reference = captioner(clips, sampling_rate=16000, batch_size=3)
    assert ran == ["_beam_search"]
    monkeypatch.undo()
    _reference_loops(monkeypatch, refuse=True)
    assert captioner(clips, sampling_rate=16000, batch_size=3, fast_decoding=True) == reference
    assert captioner(clips, sampling_rate=16000, batch_size=3, fast_decoding=FAST_DECODING) == reference


REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["laac"] = None  # everything comes from the folders
    import numpy as np
    from transformers import AutoModel, AutoProcessor
    folder, loop, carrying = sys.argv[1:4]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(int(s * 16000))).astype(np.float32) for s in (1.5, 8.0, 0.7)]
    inputs = processor(clips, sampling_rate=16000)
    opt_in = {"custom_generate": loop, "trust_remote_code": True}
    ids = {name: model.generate(**inputs, **kw).tolist() for name, kw in
           [("stock", {}), ("fast", opt_in), ("stock_greedy", {"num_beams": 1}),
            ("fast_greedy", {"num_beams": 1, **opt_in})]}
    carrier = AutoModel.from_pretrained(carrying, trust_remote_code=True).eval()
    ids["carried"] = carrier.generate(**inputs).tolist()
    sources = {"default": type(model.generate).__name__, "carried": carrier.generate.func.__module__}
    print(json.dumps({"sources": sources, "ids": ids}))
    """
)


def test_fresh_process_gets_stock_generate_and_the_loop_on_request(tmp_path):
    """
    Without the package: a saved checkpoint's `generate` is stock; `custom_generate=<folder>` runs the loop; a
    checkpoint that carries `custom_generate/generate.py` (as earlier versions saved them) gets it as `generate`.
    All give the same ids.
    """
    folder = save_tiny_model(tmp_path / "model")
    carrying = tmp_path / "carrying"
    shutil.copytree(folder, carrying)
    shutil.copytree(Path(FAST_DECODING) / "custom_generate", carrying / "custom_generate")
    result = run_without_laac(REMOTE_SCRIPT, [str(folder), FAST_DECODING, str(carrying)], tmp_path, OMP_NUM_THREADS="1")
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["sources"]["default"] == "method"  # the class's generate, not a loaded function
    assert report["sources"]["carried"].startswith("transformers_modules")
    assert report["sources"]["carried"].endswith("custom_generate.generate")
    ids = report["ids"]
    assert ids["fast"] == ids["stock"] == ids["carried"]
    assert ids["fast_greedy"] == ids["stock_greedy"]


@pytest.mark.parametrize("settings", [{}, {"num_beams": 1}], ids=["beam3", "greedy"])
def test_finished_clips_leave_the_batch(setup, fast, settings, monkeypatch):
    """Rows of finished clips stop running (fewer rows per step) and the ids stay the reference's."""
    config, model, processor = setup
    inputs = _inputs(processor, CLIP_SECONDS[2])
    reference = model.generate(**inputs, **settings)
    rows, original = [], fast._Decoding._logits
    monkeypatch.setattr(
        fast._Decoding, "_logits", lambda self, m, e, *a: rows.append(e.shape[0]) or original(self, m, e, *a)
    )
    got = model.generate(**inputs, **settings, **OPT_IN, sync_every=1)
    assert got.tolist() == reference.tolist()
    beams = model.generation_config.num_beams if not settings else 1
    assert rows[0] == 5 and rows[1] == 5 * beams and min(rows[1:]) < 5 * beams, rows
