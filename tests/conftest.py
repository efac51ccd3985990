"""Fixtures for public data the tests need: found in shared/, LAAC's cache, or downloaded once (`laac.data.public_data`).

Where it cannot be had, a test that needs it is skipped with the reason and how to get it; under CI it fails.
"""

from collections.abc import Callable
from pathlib import Path

import pytest
from laac.data import public_data

from tests.laac_tester import unavailable


def _found_or_unavailable(lookup: Callable[[], str]) -> Path:
    """The folder `lookup` finds or downloads; where it cannot, the test is skipped (failed under CI) with its reason."""
    try:
        return Path(lookup())
    except public_data.DataUnavailable as error:
        unavailable(str(error))


@pytest.fixture(scope="session")
def clotho_dir() -> Path:
    """Clotho's evaluation captions CSV and audio/ with five real evaluation clips (Clotho's layout)."""
    return _found_or_unavailable(public_data.clotho_dir)


@pytest.fixture(scope="session")
def clotho_csv(clotho_dir: Path) -> Path:
    return clotho_dir / public_data.CLOTHO_CAPTIONS


@pytest.fixture(scope="session")
def llama_tokenizers() -> Path:
    """The folder with the real Llama 2 / Llama 3 GGUF vocabularies and llama.cpp's reference tokenisations."""
    return _found_or_unavailable(public_data.llama_tokenizers_dir)
