# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
Converters from original checkpoints to this repository's format (`convert_ced_original_checkpoint`: the
CED `.pt` files of the original authors -> a CedForAudioClassification folder).
"""
