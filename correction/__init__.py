# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
The post-corrector's tools: `laac correct` on caption files (`correct_captions`) and the offline FENSE-format
error detector's training (`train_error_detector`). The corrector itself is a model file (corrector_laac) because
checkpoints carry it.
"""
