# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
The post-corrector and its tools: the post-corrector itself (`post_corrector`: settings, FENSE detector, instruct
LLM, its own artifact `post_corrector_config.json`, the generation hook), `laac correct` on caption files
(`correct_captions`) and the offline FENSE-format error detector's training (`train_error_detector`). Checkpoints
do not carry it: a model's config names its post-corrector artifact.
"""
