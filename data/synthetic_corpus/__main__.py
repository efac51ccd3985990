"""`python -m laac.data.synthetic_corpus --out DIR ...`: write a synthetic corpus (see the package docstring)."""

from .writer import main

raise SystemExit(main())
