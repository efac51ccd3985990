# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""Default locations shared by the tools: `laac demo` writes there and `laac caption` reads from there.

A module of its own (stdlib only) so that the demo and the command line both import it and neither the other.
"""

import os
from pathlib import Path

# LAAC's cache: `$LAAC_CACHE_DIR`, default ~/.cache/laac (downloaded public data, the demo's model, the offline
# error detector, converted text models).
CACHE_DIR = os.environ.get("LAAC_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "laac")

# Where `laac demo` saves its model; `laac caption` uses it when no --model is given.
DEMO_MODEL_DIR = os.path.join(CACHE_DIR, "demo", "model")

# Where `train_error_detector.ensure_error_detector` caches the offline FENSE-format detector it trains once.
ERROR_DETECTOR_DIR = os.path.join(CACHE_DIR, "error_detector_minilm")


def shared_dir() -> str | None:
    """
    The project's `shared/` folder (reference vectors, Clotho evaluation clips and captions, real Llama
    tokenizers): `$LAAC_SHARED_DIR` when set, else `shared/` beside the repository clone, or, for a git worktree,
    beside the main clone it belongs to; None when none of these exists. The one lookup: the tests, the benchmarks
    and the tools all call it.
    """
    clone = Path(__file__).resolve().parents[1]  # cli/ -> the repository root (the package `laac`)
    candidates = [os.environ.get("LAAC_SHARED_DIR"), clone.parent / "shared"]
    main_clone = _main_clone_of_worktree(clone)
    if main_clone is not None:
        candidates.append(main_clone.parent / "shared")
    return next((str(c) for c in candidates if c and os.path.isdir(c)), None)


def _main_clone_of_worktree(clone: Path) -> Path | None:
    """
    The main clone a git worktree belongs to, else None. A worktree's `.git` is a file `gitdir: <main>/.git/
    worktrees/<name>`, whose `commondir` file leads back to `<main>/.git`.
    """
    git = clone / ".git"
    if not git.is_file():
        return None  # a clone (a .git folder), an installed copy (none), or no git at all
    text = git.read_text(encoding="utf-8").strip()
    if not text.startswith("gitdir:"):
        return None
    gitdir = clone / text.removeprefix("gitdir:").strip()
    commondir = gitdir / "commondir"
    if not commondir.is_file():
        return None  # a submodule's git folder: no main clone to look beside
    return (gitdir / commondir.read_text(encoding="utf-8").strip()).resolve().parent


__all__ = ["CACHE_DIR", "DEMO_MODEL_DIR", "ERROR_DETECTOR_DIR", "shared_dir"]
