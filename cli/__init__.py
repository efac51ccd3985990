# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""
The `laac` command line (`main`: caption, evaluate, correct, train, demo, bench) and the default paths it
shares with the demo (`paths`).
"""
