"""`python -m laac.demo`."""

import sys

from .run import main

sys.exit(main())
