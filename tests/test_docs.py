"""
The README and docs/ cite only what exists, and no file of the repository narrates the project's history.

What counts as a citation, in README.md and docs/*.md:
- a repository path: a token whose first folder is a top-level folder of the repository (`benchmarks/x.py`,
  `docs/offline.md`, `tests/fixtures/ced_reference/`), a bare `*.py` / `*.sh` / `*.md` file name, or a markdown
  link target; `tests/test_x.py::test_name` also names a test function of that file. Paths under a variable or
  the home folder (`$LAAC_SHARED_DIR/data/clotho/`, `~/.cache/laac`) and placeholders (`path/to/...`, `out/...`)
  are not repository paths;
- a LAAC name: a code span that is one dotted name (optionally called, `train.main(argv)`) starting at `laac`, at a
  module or sub-package of the repository (`correction.correct_captions.available_settings`), or at a name one of
  its modules defines (`LaacForConditionalGeneration.from_components`); every `laac.x.y` inside a code span or
  block; a lone `Laac*` / `Ced*` / `Dasheng*` identifier; and the `from laac... import` lines of python blocks.
  Each must resolve by import + getattr. Dotted names starting elsewhere (`model.generate`, `torch.testing`) are
  variables or other libraries and are not checked.
"""

import ast
import dataclasses
import importlib
import inspect
import os
import re
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "laac"  # setup.cfg: package_dir laac = .
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
HISTORY_SUFFIXES = {".md", ".py", ".sh", ".cfg", ".toml", ".yaml", ".yml"}
HISTORY = re.compile(r"\b(?:session|issue)s?[ -]#?\d+", re.IGNORECASE)
NOT_SOURCE_DIRS = {"__pycache__", "build", "dist", "outputs", "runs", "site-packages", "node_modules"}

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`([^`]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
# A path-like token, not inside a longer path or after a variable, the home folder or a scheme.
PATH_TOKEN = re.compile(r"(?<![\w./~$:\\-])([A-Za-z_][\w.-]*(?:/[\w.-]+)*/?)(?:::(\w+))?")
BARE_FILE = re.compile(r"^[\w-]+\.(?:py|sh|md)$")
DOTTED = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?:\(.*\))?$", re.DOTALL)
LAAC_DOTTED = re.compile(r"(?<![\w.])laac(?:\.[A-Za-z_]\w*)+")
HUB_FILE_NAME = re.compile(r"^\w+_(?:laac|ced)$")  # `trainer_laac.X` is a LAAC name even where no such file exists
OWN_CLASS = re.compile(r"^(?:Laac|Ced|Dasheng)\w*$")
# `train.py`, `config.json`: file names, not dotted names.
FILE_SUFFIXES = {"py", "md", "sh", "json", "jsonl", "yaml", "yml", "csv", "txt", "gguf", "pt", "ckpt", "safetensors",
                 "html", "wav", "flac", "mp3", "ogg", "srt", "toml", "cfg"}


# -- the repository --------------------------------------------------------------------------------------------------


def _is_source_dir(folder: Path) -> bool:
    """False for hidden, generated and installed folders (.git, __pycache__, *.egg-info, a virtual environment)."""
    name = folder.name
    generated = name.startswith(".") or name in NOT_SOURCE_DIRS or name.endswith(".egg-info")
    return not (generated or (folder / "pyvenv.cfg").exists())


@lru_cache(maxsize=1)
def repository_files() -> tuple[Path, ...]:
    """The repository's files, relative to it, outside hidden, generated and installed folders."""
    files = []
    for folder, subfolders, names in os.walk(REPO):
        subfolders[:] = sorted(d for d in subfolders if _is_source_dir(Path(folder) / d))
        files.extend((Path(folder) / name).relative_to(REPO) for name in sorted(names))
    return tuple(files)


@lru_cache(maxsize=1)
def top_level_folders() -> frozenset[str]:
    return frozenset(path.parts[0] for path in repository_files() if len(path.parts) > 1)


@lru_cache(maxsize=1)
def file_names() -> frozenset[str]:
    """Base names of the repository's files (what a bare `name.py` may cite)."""
    return frozenset(path.name for path in repository_files())


@lru_cache(maxsize=1)
def modules() -> dict[str, Path]:
    """The repository's Python modules (tests excluded) by dotted name below `laac`: `modeling_laac`, `data.loaders`."""
    found = {}
    for relative in repository_files():
        if relative.suffix != ".py" or relative.parts[0] == "tests":
            continue
        parts = list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts:
            found[".".join(parts)] = REPO / relative
    return found


@lru_cache(maxsize=1)
def defined_names() -> dict[str, list[str]]:
    """Top-level class, function and constant names of the repository's modules -> the modules defining them."""
    index: dict[str, list[str]] = {}
    for module, path in modules().items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                names = [node.name]
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name)]
            else:
                continue
            for name in names:
                index.setdefault(name, []).append(module)
    return index


def has_attribute(obj: object, name: str) -> bool:
    """`hasattr`, or for a LAAC class an attribute its methods set on instances (`self.name = ...`)."""
    if hasattr(obj, name):
        return True
    if not inspect.isclass(obj):
        return False
    if dataclasses.is_dataclass(obj) and name in {field.name for field in dataclasses.fields(obj)}:
        return True
    assigned = re.compile(rf"\bself\.{re.escape(name)}\s*(?::[^=\n]+)?=(?!=)")
    for klass in obj.__mro__:
        if klass.__module__.split(".")[0] == PACKAGE:
            try:
                if assigned.search(inspect.getsource(klass)):
                    return True
            except (OSError, TypeError):  # no source to read
                continue
    return False


def resolve(dotted: str) -> str | None:
    """None when `laac.`-rooted `dotted` imports and getattr's to an object; else what is missing."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is not None and module_name.startswith(error.name):
                continue  # not a module: try a shorter prefix and getattr the rest
            return f"importing {module_name} fails: {error}"
        except ImportError as error:
            return f"importing {module_name} fails: {error}"
        for index, attribute in enumerate(parts[cut:], start=cut):
            if not has_attribute(obj, attribute):
                return f"{'.'.join(parts[:index])} has no attribute {attribute!r}"
            obj = getattr(obj, attribute, None)
        return None
    return f"no module {parts[0]!r}"


def laac_candidates(dotted: str) -> list[str] | None:
    """The `laac.`-rooted names `dotted` may mean, or None when it does not start at a LAAC name."""
    root = dotted.partition(".")[0]
    if root == PACKAGE:
        return [dotted]
    if root in modules() or root in top_level_folders() or HUB_FILE_NAME.match(root):
        return [f"{PACKAGE}.{dotted}"]
    if root[:1].isupper() and root in defined_names():  # a class or constant (a function's name may be a library's)
        return [f"{PACKAGE}.{module}.{dotted}" for module in defined_names()[root]]
    return None


def name_problem(dotted: str) -> str | None:
    """None when `dotted` is not a LAAC name or resolves; else why it does not."""
    candidates = laac_candidates(dotted)
    if candidates is None:
        return None
    problems = [resolve(candidate) for candidate in candidates]
    return None if None in problems else "; ".join(problems)


# -- citations in markdown -------------------------------------------------------------------------------------------


def split_markdown(text: str) -> tuple[list[tuple[str, str]], str]:
    """(language, body) of each fenced block, and the text outside them."""
    blocks = [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]
    return blocks, FENCE.sub("\n", text)


def path_citations(text: str) -> set[tuple[str, str | None]]:
    """(path, test function or None) of every repository path `text` cites."""
    cited = set()
    for match in PATH_TOKEN.finditer(text):
        path, test = match.group(1).rstrip("."), match.group(2)
        first = path.split("/")[0]
        if ("/" in path and first in top_level_folders()) or BARE_FILE.match(path):
            cited.add((path, test))
    return cited


def path_problem(path: str, test: str | None) -> str | None:
    if "/" not in path:
        return None if path in file_names() else f"no file named {path} in the repository"
    target = REPO / path
    if not target.exists():
        return f"{path} does not exist"
    if test is not None:
        tree = ast.parse(target.read_text(encoding="utf-8"))
        if test not in {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}:
            return f"{path} defines no {test}"
    return None


def citation_problems(text: str, where: Path) -> list[str]:
    """Every citation of markdown `text` (a file in folder `where`) that does not exist or resolve."""
    blocks, prose = split_markdown(text)
    spans = [" ".join(span.split()) for span in CODE_SPAN.findall(prose)]
    problems = []

    for path, test in sorted(path_citations(text), key=str):
        problems.append(path_problem(path, test))
    for target in LINK.findall(prose):
        if "://" not in target and not target.startswith("#"):
            file = target.split("#")[0]
            if not (where / file).exists():
                problems.append(f"link target {target} does not exist")

    names = set()
    for span in spans:
        match = DOTTED.match(span)
        if match and match.group(1).rpartition(".")[2] not in FILE_SUFFIXES:
            names.add(match.group(1))
        elif OWN_CLASS.match(span) and span not in defined_names():
            problems.append(f"{span} is defined by no module of the repository")
    for code in spans + [body for _, body in blocks]:
        names.update(LAAC_DOTTED.findall(code))
    for language, body in blocks:
        if language != "python":
            continue
        try:
            tree = ast.parse(body)
        except SyntaxError as error:
            problems.append(f"a python block does not parse: {error}")
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == PACKAGE:
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE)
    problems.extend(f"`{name}`: {problem}" for name in sorted(names) if (problem := name_problem(name)))
    return [problem for problem in problems if problem]


# -- the tests -------------------------------------------------------------------------------------------------------


def imports_this_checkout() -> None:
    """Names resolve against the `laac` that imports: it must be this checkout, not another one installed."""
    package = importlib.import_module(PACKAGE)
    assert Path(package.__file__).resolve().parent == REPO, (
        f"laac imports from {package.__file__}, not from {REPO}: install this checkout (pip install -e .) or put a "
        "folder with a `laac` link to it first on PYTHONPATH"
    )


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_cited_paths_and_names_exist(document: Path):
    imports_this_checkout()
    problems = citation_problems(document.read_text(encoding="utf-8"), document.parent)
    assert not problems, f"{document.relative_to(REPO)} cites what does not exist:\n" + "\n".join(problems)


def test_the_check_finds_what_is_missing():
    """Each kind of citation fails when what it names is missing, and passes on what exists."""
    imports_this_checkout()
    missing = """
See `benchmarks/no_such_benchmark.py`, docs/no_such_page.md, `tests/test_ced.py::test_no_such_test`,
`no_such_script.sh`, [a link](no_such_target.md), `laac.data.no_such_module`, `modeling_laac.NoSuchClass`,
`LaacForConditionalGeneration.no_such_method(x)`, `LaacNoSuchModel`, `trainer_laac.LaacTrainer` (`train.py:13`),
and `python -m laac.cli.no_such_command`.

```python
from laac.training.lora import no_such_function
```
"""
    problems = "\n".join(citation_problems(missing, REPO / "docs"))
    for name in ("benchmarks/no_such_benchmark.py", "docs/no_such_page.md", "test_no_such_test", "no_such_script.sh",
                 "no_such_target.md", "no_such_module", "NoSuchClass", "no_such_method", "LaacNoSuchModel",
                 "no_such_command", "no_such_function", "trainer_laac"):
        assert name in problems, f"{name} was not reported:\n{problems}"
    present = """
See `benchmarks/param_count.py`, docs/offline.md, `tests/test_ced.py::test_tolerances_catch_a_changed_weight`,
`train.py`, `tests/fixtures/ced_reference/`, `laac.data.public_data`, `correction.correct_captions.available_settings`,
`LaacForConditionalGeneration.from_components(parts)`, `LaacProcessor`, `python -m laac.cli.main caption`, and
what is not LAAC's: `model.generate`, `torch.testing`, `$LAAC_SHARED_DIR/data/clotho/`, `path/to/laac-checkpoint`.

```python
from laac.training.lora import apply_lora, merge_lora
```
"""
    assert citation_problems(present, REPO / "docs") == []


def test_no_file_narrates_history():
    """History lives in git: no document, comment or docstring says "session <number>" or "issue <number>"."""
    found = []
    for relative in repository_files():
        if relative.suffix in HISTORY_SUFFIXES:
            text = (REPO / relative).read_text(encoding="utf-8", errors="replace")
            for number, line in enumerate(text.splitlines(), 1):
                if HISTORY.search(line):
                    found.append(f"{relative}:{number}: {line.strip()}")
    assert not found, "state the fact without its history:\n" + "\n".join(found)


def test_the_history_check_finds_narration():
    # the examples are built from parts, so that this file does not itself say what it forbids
    assert HISTORY.search("measured in Session " + "22") and HISTORY.search("(issue " + "12)")
    assert HISTORY.search("the issue" + "-11 redesign") and HISTORY.search("sessions " + "20 and 21")
    assert not HISTORY.search("the test session") and not HISTORY.search("an HTTP session reused 3 times")
