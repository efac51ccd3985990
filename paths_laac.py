# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""Default locations shared by the tools: `laac demo` writes there and `laac caption` reads from there.

A module of its own (stdlib only) so that the demo and the command line both import it and neither the other.
"""

import os

# Where `laac demo` (issue 5) saves its model; `laac caption` uses it when no --model is given.
DEMO_MODEL_DIR = os.path.join(os.path.expanduser("~"), ".cache", "laac", "demo", "model")

__all__ = ["DEMO_MODEL_DIR"]
