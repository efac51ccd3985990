"""
Imports run one way only. Every module of the repository sits in one layer of `LAYERS`, lowest first, and may
import only modules of lower layers; modules that share a layer do not import each other. Function-level (lazy)
imports count like top-level ones. The order:

1. configuration_ced < configuration_laac: configurations import only configurations (and transformers' config
   classes). The CED length arithmetic that `num_audio_tokens` needs lives in configuration_ced for that reason.
2. audio_laac < feature_extraction_laac < processing_laac: the one audio reader (decode, limits, validation,
   resampling; numpy, and soundfile / soxr imported lazily), audio -> log-mel, and the processor. Like
   transformers' processors they import no model code: the audio-token count comes from the configuration's `num_audio_tokens`.
3. modeling_ced: the audio encoders.
4. modeling_laac < pipeline_laac: the model, then `pipeline("audio-captioning")`. The pipeline reaches a
   checkpoint through config.json's `custom_pipelines`, which a saved pipeline writes (transformers' custom-pipeline
   mechanism), not through an import. Layers 1-4 are the Hub files: layers 1-3 travel with every checkpoint and
   hold what loading and running the captioner needs; pipeline_laac travels when a pipeline is saved. What only the installed package offers they reach through `PACKAGE_ONLY_IMPORTS`: an import
   of a tool module inside a `try:` block, so that a checkpoint loads without the package (`from_components`
   assembles from released parts with conversion.components; the pipeline's `correct=` uses
   correction.post_corrector). Those arrows are the only ones against the order.
5. laac (the package `__init__`): registers the Auto classes and the pipeline task of an installed checkout.
   Then fast_decoding.custom_generate.generate: the opt-in fast decoding loop, a Hub file that transformers loads
   from `fast_decoding/custom_generate/generate.py` when `generate(custom_generate=FAST_DECODING)` names its
   folder; it imports no LAAC module (transformers passes the model in). It sits below `fast_decoding/`, not at the
   root: a root `custom_generate/` would replace `generate` for anyone who loads the root as a model.
   Then the sub-packages' `__init__` files (data, evaluation, training, correction, conversion, cli, demo): one
   docstring each, no imports.
6. The tools the Hub files reach lazily: conversion.text_tokenizer (the text model's tokenizer with the audio
   placeholder, a Llama 2 GGUF read as SentencePiece does) and correction.post_corrector (the post-corrector,
   FENSE detector + instruct LLM, its settings and its artifact post_corrector_config.json, and the generation
   hook that decodes and post-corrects), above correction.english (the word classes the detector's rules read and
   the clauses of a caption as written), which the corruption rules read too.
7. Libraries of the tools: conversion.components (assembly from released parts), data.loaders, evaluation.metrics,
   evaluation.report, training.audio_token_cache, training.lora, training.tokenizer_utils, cli.paths, cli.captioning
   (`laac caption`'s loop over the pipeline: error records, out-of-memory splits). None of them imports another.
   Then the synthetic corpus package
   (data.synthetic_corpus: catalogue < layout < synthesis, grammar < writer, which reads the Clotho format back
   through data.loaders; its `__init__` re-exports them), evaluation.event_f1 (event F1 of captions by the
   catalogue's words, with evaluation.metrics' F1), and data.public_data, which finds or downloads public data
   (Clotho's evaluation set, Llama tokenizers) where cli.paths says.
8. training.trainer: `LaacTrainer` / `LaacTrainingArguments` / `evaluate_model`, shared by train.py, the demo and
   the benchmarks (the role transformers' Seq2SeqTrainer plays for its example scripts). Then the error detector's
   corruption rules (correction.corruptions) and its evaluation on them (correction.detector_evaluation).
9. Scripts: train.py and the other command-line programs (`python train.py presets/...`), the `evaluate` metric.
10. Applications: first `laac correct` (correction.correct_captions, which falls back to the error detector that
    correction.train_error_detector makes when the official one cannot be downloaded, and to the offline LLM when
    the configured one cannot be had; `laac caption --correct` resolves its settings through it), then the demo
    (demo.recipe < demo.stages < demo.progress < demo.run), cli.main (with cli.caption_shards) and the benchmarks. The demo runs the training recipe through `train.main`;
    `laac demo` / `laac train` run their modules by name (runpy), which is not an import. Then
    benchmarks.caption_workers, which saves a model of decode_benchmark's shapes for `laac caption`, and
    benchmarks.demo_stages, which times demo.run's stages, and benchmarks.full_shape, which captions and trains
    on the full-size parts that benchmarks.build_memory writes. Last, the
    packages' `__main__` files (`python -m laac.cli`, `python -m laac.demo`, `python -m laac.data.synthetic_corpus`).
"""

import ast
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "laac"  # setup.cfg: package_dir laac = . (the repository root is the package)
SKIPPED_DIRS = {"tests", "build", "dist", "outputs", "runs", "__pycache__"}

LAYERS: tuple[tuple[str, ...], ...] = (
    ("configuration_ced",),
    ("configuration_laac",),
    ("audio_laac",),
    ("feature_extraction_laac",),
    ("processing_laac",),
    ("modeling_ced",),
    ("modeling_laac",),
    ("pipeline_laac",),
    ("laac",),
    ("cli", "conversion", "correction", "data", "demo", "evaluation", "training"),  # sub-package docstrings
    ("fast_decoding",),
    ("correction.english",),
    ("conversion.text_tokenizer", "correction.post_corrector"),
    (
        "conversion.components",
        "cli.caption_shards",
        "cli.captioning",
        "cli.paths",
        "data.loaders",
        "evaluation.metrics",
        "evaluation.report",
        "training.audio_token_cache",
        "training.lora",
        "training.tokenizer_utils",
    ),
    # the synthetic corpus: its event catalogue (and which events a caption names), clip layouts, the sounds and the
    # captions of a layout, the writer; the package re-exports them; event F1 scores captions by the catalogue
    ("data.synthetic_corpus.catalogue", "data.public_data"),
    ("data.synthetic_corpus.layout",),
    ("data.synthetic_corpus.synthesis", "data.synthetic_corpus.grammar"),
    ("data.synthetic_corpus.writer", "evaluation.event_f1"),
    ("data.synthetic_corpus",),
    ("training.trainer",),
    # the error detector's corruption rules, then its evaluation on them (both below its training script)
    ("correction.corruptions",),
    ("correction.detector_evaluation",),
    (
        "conversion.convert_ced_original_checkpoint",
        "conversion.convert_gguf_causal_lm",
        "evaluation.evaluate_captions",
        "metrics.dcase_aac.dcase_aac",
        "train",
        "correction.train_error_detector",
    ),
    ("correction.correct_captions",),  # `laac correct`; `laac caption --correct` resolves its settings through it
    # the demo: its recipes, its stages, its progress lines and estimates, then the run that strings them together
    ("demo.recipe",),
    ("demo.stages",),
    ("demo.progress",),
    ("benchmarks", "cli.main", "demo.run"),  # "benchmarks": every module under benchmarks/
    # caption_workers times `laac caption` on a model that decode_benchmark builds; demo_stages times demo.run's stages
    # full_shape runs the build that build_memory writes parts for, then captions and trains on it
    ("benchmarks.caption_workers", "benchmarks.demo_stages", "benchmarks.full_shape"),
    ("cli.__main__", "demo.__main__", "data.synthetic_corpus.__main__"),
)
HUB_FILES = [name for layer in LAYERS[: LAYERS.index(("laac",))] for name in layer]
# A Hub file's import of a tool that only the installed package has, inside a `try:` block (see the docstring)
PACKAGE_ONLY_IMPORTS = {
    ("modeling_laac", "conversion.components"),
    ("processing_laac", "conversion.components"),
    ("pipeline_laac", "correction.post_corrector"),
}
# transformers reads it from <folder>/custom_generate/ when generate(custom_generate=<folder>) names the folder
SUBFOLDER_HUB_FILES = ["fast_decoding.custom_generate.generate"]
CONFIGURATIONS = [name for name in HUB_FILES if name.startswith("configuration_")]


# -- the import graph ------------------------------------------------------------------------------------------------


def module_name(path: Path) -> str:
    """Dotted name below the package: configuration_laac, benchmarks.train_benchmark; the root __init__ is "laac"."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) or PACKAGE


@lru_cache(maxsize=1)
def repository_modules() -> dict[str, Path]:
    """Every Python module of the repository except the tests, by `module_name`."""
    modules = {}
    for path in sorted(REPO.rglob("*.py")):
        dirs = path.relative_to(REPO).parts[:-1]
        if any(d in SKIPPED_DIRS or d.startswith(".") or d.endswith(".egg-info") for d in dirs):
            continue
        modules[module_name(path)] = path
    return modules


def _full(name: str) -> str:
    return PACKAGE if name == PACKAGE else f"{PACKAGE}.{name}"


def _short(full: str) -> str:
    return PACKAGE if full == PACKAGE else full.removeprefix(f"{PACKAGE}.")


def _known(full: str) -> str | None:
    """The repository module that a dotted `laac...` name refers to (its longest module prefix), or None."""
    modules = repository_modules()
    parts = full.split(".")
    for end in range(len(parts), 0, -1):
        name = _short(".".join(parts[:end]))
        if name in modules:
            return name
    return None


def _import_targets(node: ast.AST, importer: str) -> list[str]:
    """Dotted `laac...` names one import statement of module `importer` brings in."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        package = _full(importer).split(".")
        if repository_modules()[importer].name != "__init__.py":
            package.pop()  # a module's package is its parent; a package's is itself
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    elif node.module and node.module.split(".")[0] == PACKAGE:
        base = node.module
    else:
        return []
    # `from laac import cli` names a module; `from .configuration_laac import LaacConfig` names a member
    return [f"{base}.{alias.name}" if _known(f"{base}.{alias.name}") else base for alias in node.names]


@lru_cache(maxsize=1)
def import_arrows() -> list[tuple[str, str, int]]:
    """(importer, imported, line) for every import of a repository module, at any depth of the file."""
    arrows = []
    for name, path in repository_modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for target in _import_targets(node, name):
                imported = _known(target)
                if imported is not None and imported != name:
                    arrows.append((name, imported, node.lineno))
    return sorted(set(arrows))  # `from .x import a, b` is one arrow


def layer_of(name: str) -> int | None:
    """Index of the layer holding `name` (an exact entry, else the deepest package entry above it)."""
    best, best_length = None, -1
    for index, layer in enumerate(LAYERS):
        for entry in layer:
            if (name == entry or name.startswith(entry + ".")) and len(entry) > best_length:
                best, best_length = index, len(entry)
    return best


def find_cycle(arrows: list[tuple[str, str, int]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search over the module graph)."""
    graph: dict[str, set[str]] = {}
    for importer, imported, _ in arrows:
        graph.setdefault(importer, set()).add(imported)
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


# -- the rules -------------------------------------------------------------------------------------------------------


def test_the_graph_is_read():
    """The parser sees the arrows this file is about (a parser that finds nothing would pass every rule)."""
    arrows = {(a, b) for a, b, _ in import_arrows()}
    assert ("modeling_laac", "configuration_laac") in arrows  # relative, top level
    assert ("cli.main", "correction.post_corrector") in arrows  # relative, inside a function
    assert ("train", "training.trainer") in arrows  # absolute, from a script
    assert ("benchmarks.long_audio_memory", "laac") in arrows  # the package itself, inside a function
    assert ("benchmarks.train_benchmark", "training.trainer") in arrows


def test_the_model_stops_at_token_ids():
    """modeling_laac imports neither the processor nor the post-corrector: generate() only calls the hook it gets."""
    imported = {b for a, b, _ in import_arrows() if a == "modeling_laac"}
    assert "configuration_laac" in imported  # the parser reads this file
    assert not imported & {"processing_laac", "feature_extraction_laac", "correction.post_corrector", "pipeline_laac"}


def test_every_module_has_a_layer():
    modules = repository_modules()
    unplaced = sorted(name for name in modules if layer_of(name) is None)
    assert not unplaced, f"modules missing from LAYERS in {__file__}: {unplaced}; place each one in the order"
    entries = {entry for layer in LAYERS for entry in layer}
    stale = sorted(e for e in entries if not any(name == e or name.startswith(e + ".") for name in modules))
    assert not stale, f"LAYERS names modules that do not exist: {stale}"


def layered_arrows() -> list[tuple[str, str, int]]:
    """Every import arrow but the Hub files' package-only ones (`PACKAGE_ONLY_IMPORTS`)."""
    return [arrow for arrow in import_arrows() if arrow[:2] not in PACKAGE_ONLY_IMPORTS]


def test_imports_follow_the_layer_order():
    modules = repository_modules()
    wrong = [
        f"{modules[importer].relative_to(REPO)}:{line}: {importer} imports {imported}, which is not below it"
        for importer, imported, line in layered_arrows()
        if layer_of(imported) >= layer_of(importer)
    ]
    assert not wrong, "imports against the order of LAYERS (see this file's docstring):\n" + "\n".join(wrong)


def test_package_only_imports_sit_in_try_blocks():
    """A Hub file reaches a tool only inside a `try:` (transformers skips it, so checkpoints load without laac)."""
    found = {arrow[:2] for arrow in import_arrows() if arrow[0] in HUB_FILES and arrow[1] not in HUB_FILES}
    assert found == PACKAGE_ONLY_IMPORTS, found
    for importer, tool in PACKAGE_ONLY_IMPORTS:
        path = repository_modules()[importer]
        unguarded = [line for package, line in _absolute_imports_outside_try(path) if package == PACKAGE]
        assert not unguarded, f"{path.name}:{unguarded} imports {PACKAGE} outside a try block"
        assert f"{PACKAGE}.{tool}" in path.read_text(), (importer, tool)


def test_no_import_cycles():
    cycle = find_cycle(layered_arrows())
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_find_cycle_finds_cycles():
    assert find_cycle([("a", "b", 1), ("b", "c", 1), ("c", "a", 1)]) == ["a", "b", "c", "a"]
    assert find_cycle([("a", "b", 1), ("a", "c", 1), ("b", "c", 1)]) is None


def test_configurations_import_only_configurations():
    wrong = [(a, b) for a, b, _ in import_arrows() if a in CONFIGURATIONS and b not in CONFIGURATIONS]
    assert not wrong, f"a configuration imports non-configuration modules: {wrong}"


def _absolute_imports_outside_try(path: Path) -> list[tuple[str, int]]:
    """(top-level package, line) of every absolute import that is not inside a `try:` block."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    guarded = {id(node) for t in ast.walk(tree) if isinstance(t, ast.Try) for s in t.body for node in ast.walk(s)}
    found = []
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.append((node.module.split(".")[0], node.lineno))
    return found


# What every user of a checkpoint has: the standard library, torch, transformers and what transformers installs
CHECKPOINT_USER_PACKAGES = set(sys.stdlib_module_names) | {
    "torch", "transformers", "numpy", "tokenizers", "huggingface_hub"
}  # fmt: skip


def _check_checkpoint_imports(path: Path) -> None:
    for package, line in _absolute_imports_outside_try(path):
        assert importlib.util.find_spec(package) is not None, f"{path.name}:{line}: {package} is not installed"
        assert package in CHECKPOINT_USER_PACKAGES, (
            f"{path.name}:{line} imports {package} outside a try block: transformers then refuses the checkpoint's "
            "remote code where it is not installed; import it in a try block with a fallback"
        )


@pytest.mark.parametrize("name", HUB_FILES)
def test_hub_files_import_only_siblings_and_installed_packages(name):
    """transformers refuses remote code with an absolute import that is not installed (unless it sits in a try)."""
    path = repository_modules()[name]
    assert path.parent == REPO, f"{name} must stand flat at the repository root: save_pretrained copies it flat"
    for package, line in _absolute_imports_outside_try(path):
        assert package != PACKAGE, f"{path.name}:{line} imports {PACKAGE} absolutely; import siblings relatively"
    _check_checkpoint_imports(path)


@pytest.mark.parametrize("name", SUBFOLDER_HUB_FILES)
def test_subfolder_hub_files_import_only_installed_packages(name):
    path = repository_modules()[name]
    assert not [arrow for arrow in import_arrows() if arrow[0] == name], f"{name} must import no LAAC module"
    _check_checkpoint_imports(path)


def test_the_root_carries_no_decoding_loop():
    """Loading the repository root as a model keeps stock generate: the fast loop is an opt-in in its own folder."""
    assert not (REPO / "custom_generate").exists()
    assert (REPO / "fast_decoding" / "custom_generate" / "generate.py").is_file()


LIGHT_CONFIG_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import checkpoint.configuration_laac as configuration
    configuration.LaacConfig()
    print(json.dumps(sorted(name for name in sys.modules if name.startswith(("checkpoint", "transformers.")))))
    """
)


def test_configuration_files_load_alone_and_light(tmp_path):
    """Copied alone into a checkpoint-like package, the configurations build a LaacConfig without model code."""
    package = tmp_path / "checkpoint"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in CONFIGURATIONS:
        (package / f"{name}.py").write_bytes((REPO / f"{name}.py").read_bytes())
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", LIGHT_CONFIG_SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert {f"checkpoint.{name}" for name in CONFIGURATIONS} <= loaded
    # model code of any architecture (auto.modeling_auto is only the name tables AutoConfig loads)
    model_code = {n for n in loaded if n.startswith("transformers.models.") and ".modeling_" in n and ".auto." not in n}
    heavy = sorted((loaded & {"transformers.modeling_utils", "transformers.pipelines"}) | model_code)
    assert not heavy, f"the configuration pulls in model or pipeline code: {heavy}"


CHECKOUT_UNDER_ANOTHER_NAME_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import laac, main  # pytest >= 8 imports a test root's __init__.py under the folder's name
    from transformers import AutoConfig
    from transformers.pipelines import PIPELINE_REGISTRY
    task = PIPELINE_REGISTRY.check_task("audio-captioning")[1]
    print(json.dumps({
        "main_modules": sorted(name for name in sys.modules if name.startswith("main.")),
        "main_names": sorted(name for name in vars(main) if not name.startswith("__")),
        "config": AutoConfig.for_model("laac").__class__.__module__,
        "pipeline": task["impl"].__module__,
    }))
    """
)


def test_the_checkout_under_another_folder_name_defines_nothing(tmp_path):
    """A clone in a folder called `main` (CI's) imported as `main` beside `laac`: no second copy of any class."""
    (tmp_path / "main").symlink_to(REPO, target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", CHECKOUT_UNDER_ANOTHER_NAME_SCRIPT],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {"main_modules": [], "main_names": [], "config": "laac.configuration_laac",
                     "pipeline": "laac.pipeline_laac"}  # fmt: skip


def test_no_test_module_imports_another():
    """Shared fixtures live in tests/conftest.py and shared helpers in tests/laac_tester.py (and its siblings that
    are not test modules): a test module importing another would run that module's fixtures and tests twice."""
    tests = REPO / "tests"
    wrong = []
    for path in sorted(tests.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            wrong += [f"{path.name}:{node.lineno} imports {name}" for name in names if name.startswith("tests.test_")]
    assert not wrong, "\n".join(wrong)
