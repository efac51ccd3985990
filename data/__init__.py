# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
Training and evaluation data: the Clotho / AudioCaps / WavCaps / manifest loaders and collators (`loaders`)
and the synthetic sound-event corpus of the demo (`synthetic_corpus`). Reads audio through the one reader of
`audio_laac`; the model files never import this package.
"""
