"""`python -m laac.cli`."""

import sys

from .main import main

sys.exit(main())
