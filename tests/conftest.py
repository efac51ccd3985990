"""Fixtures shared by the test modules: the public data the tests need, found in shared/, LAAC's cache, or
downloaded once (`laac.data.public_data`), and a tiny FENSE-format error detector.

Where it cannot be had, a test that needs it is skipped with the reason and how to get it; under CI it fails.
"""

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from laac.configuration_laac import PROMPT_I
from laac.correction.post_corrector import FENSE_ERROR_TYPES, BertFlatClassifier, save_echecker_checkpoint
from laac.data import public_data
from transformers import BertConfig, BertTokenizerFast

from tests.laac_tester import CAPTIONS, unavailable


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


@pytest.fixture(scope="session")
def detector_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny FENSE-format error detector (real ErrorDetector code path, random weights)."""
    folder = tmp_path_factory.mktemp("detector")
    words = sorted({w for text in CAPTIONS + [PROMPT_I] for w in text.lower().split()})
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    config = BertConfig(vocab_size=5 + len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=80)
    torch.manual_seed(0)
    save_echecker_checkpoint(BertFlatClassifier(config, len(FENSE_ERROR_TYPES)), str(folder / "echecker.ckpt"),
                             "bert-base-uncased")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    return folder
