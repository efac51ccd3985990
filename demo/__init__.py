# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
`laac demo`: the embedded default end to end on a synthetic corpus (corpus, encoder pretraining, captioner,
evaluation, blind baseline, fresh-process reload, post-correction, report). `python -m laac.demo` runs it.
"""
