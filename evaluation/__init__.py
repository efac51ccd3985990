# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
Scoring: the DCASE metrics (`metrics`: BLEU, METEOR, ROUGE-L, CIDEr-D, SPICE, SPIDEr, FENSE through
aac-metrics), `laac evaluate` (`evaluate_captions`) and the demo's HTML/Markdown report (`report`).
"""
