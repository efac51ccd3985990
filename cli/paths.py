# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""Default locations shared by the tools: `laac demo` writes there and `laac caption` reads from there.

A module of its own (stdlib only) so that the demo and the command line both import it and neither the other.
"""

import os
from pathlib import Path

# Where `laac demo` (issue 5) saves its model; `laac caption` uses it when no --model is given.
DEMO_MODEL_DIR = os.path.join(os.path.expanduser("~"), ".cache", "laac", "demo", "model")

# Where `train_error_detector.ensure_error_detector` caches the offline FENSE-format detector it trains once.
ERROR_DETECTOR_DIR = os.path.join(os.path.expanduser("~"), ".cache", "laac", "error_detector_minilm")


def shared_dir() -> str | None:
    """
    The project's `shared/` folder (Clotho evaluation captions, real Llama tokenizers): `$LAAC_SHARED_DIR` when
    set, else `shared/` beside the repository clone; None when neither exists.
    """
    candidates = [os.environ.get("LAAC_SHARED_DIR"), Path(__file__).resolve().parents[2] / "shared"]  # cli/ -> clone -> beside it
    return next((str(c) for c in candidates if c and os.path.isdir(c)), None)


__all__ = ["DEMO_MODEL_DIR", "ERROR_DETECTOR_DIR", "shared_dir"]
