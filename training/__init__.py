# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
What training adds on top of the model files: LoRA on both sides (`lora`), the Trainer subclass and its
arguments (`trainer`, shared by train.py, the demo and the benchmarks), and the tokenizers the tools build
(`tokenizer_utils`: the word-level one of the tiny configurations, Llama 2's from its GGUF vocabulary).
"""
