# Copyright 2024 The LAAC authors. Licensed under the Apache License, Version 2.0.
"""Public data that LAAC's tests, demo and error-detector training use, found locally or downloaded once.

- Clotho's evaluation captions (1,045 clips x 5, Clotho's CSV format) and five of its evaluation clips (44.1-kHz
  WAV, 19-25 s), 9.4 MB in all, as the FENSE metric's public repository (blmoistawinde/fense) holds them. Clotho's
  captions and Freesound's clips keep their own licences, so LAAC does not carry them.
- Clotho v2.1's development captions (3,839 clips x 5), the CSV its Zenodo record publishes: the offline error
  detector trains on them where they can be had (`correction.train_error_detector`).
- The real Llama 2 (SentencePiece) and Llama 3 (BPE) tokenizers as GGUF vocabularies, 8.5 MB, with llama.cpp's
  reference tokenisations: published inside the `llama-cpp-python` source distribution on PyPI (76.6 MB, MIT;
  the vocabularies are Meta's). Fetched from there, so it works wherever `pip install` works; LAAC does not
  redistribute Meta's vocabularies.

Each is looked up in order: the project's `shared/` folder (`$LAAC_SHARED_DIR`, else beside the clone), then
LAAC's cache (`$LAAC_CACHE_DIR`, default `~/.cache/laac`), then downloaded into that cache (every file checked
against its sha256, written under a temporary name and renamed when complete, so an interrupted download leaves
nothing behind). Where none of this works, `DataUnavailable` says what is missing and how to get it.

    python -m laac.data.public_data            # fetch them all into the cache (what scripts/setup.sh does)
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass

from laac.cli.paths import CACHE_DIR, shared_dir

DOWNLOAD_TIMEOUT = 30.0  # seconds without an answer before a download gives up
CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """A file at `url` whose content has this sha256 (and, when known, this size in bytes), or, where its publisher
    gives only that, this md5."""

    url: str
    sha256: str | None
    size: int | None = None
    md5: str | None = None

    def __post_init__(self) -> None:
        if self.sha256 is None and self.md5 is None:
            raise ValueError(f"RemoteFile({self.url!r}) needs a sha256 or an md5 to check the download against.")


# blmoistawinde/fense at this commit: test_data/clotho_eval.csv and streamlit_demo/*.wav.
FENSE_COMMIT = "9c76bca78e14cdc33c7e6db758fa19bc0d073f09"
FENSE_RAW_URL = f"https://raw.githubusercontent.com/blmoistawinde/fense/{FENSE_COMMIT}/"
CLOTHO_CAPTIONS = "clotho_evaluation_captions.csv"
CLOTHO_CLIPS = {
    "Blade Big.wav": "38a41d36504fcc27d2cd66c5b69f905e29d862027945fd88dfb0ad5dbf1b8847",
    "Radio Fuzz for Old Radio Broadcast FF233.wav": "1b8d5fc2c2c8dc25ec54938c2a1ced41a6af44b77a0741b8f0ff72a9a0f7732f",
    "Radio Garble.wav": "d2c0428feed04a59606e68912dfc993c9c826094ac9f3da4e0a62ea6b47b6be2",
    "Santa Motor.wav": "b4ad76340c17fab3b561c22c68850f82f692ac8a4f9e3b49777cbfdb0daf92d6",
    "toy rattle 2.wav": "0c8c23a3f007fd52e08e4878b6b3919867d270261e060ef2801a1dd0acc4af4f",
}
# Clotho v2.1 on Zenodo (record 4783391), which publishes md5 checksums.
CLOTHO_DEVELOPMENT_CAPTIONS = "clotho_captions_development.csv"
CLOTHO_DEVELOPMENT = RemoteFile(
    f"https://zenodo.org/record/4783391/files/{CLOTHO_DEVELOPMENT_CAPTIONS}?download=1", None,
    md5="d4090b39ce9f2491908eebf4d5b09bae",
)
# Paths inside a Clotho folder -> (path in the FENSE repository, sha256).
CLOTHO_FILES = {
    CLOTHO_CAPTIONS: ("test_data/clotho_eval.csv", "0e116233909a57449572b2d67d4c7a2f7df5b7a88c918f3697e61f684e664e84"),
    **{f"audio/{name}": (f"streamlit_demo/{name}", sha256) for name, sha256 in CLOTHO_CLIPS.items()},
}

LLAMA_CPP_SDIST = RemoteFile(
    "https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/"
    "llama_cpp_python-0.3.36.tar.gz",
    "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
    76_589_250,
)
LLAMA_CPP_MODELS = "llama_cpp_python-0.3.36/vendor/llama.cpp/models/"
LLAMA2_TOKENIZER = "ggml-vocab-llama-spm.gguf"  # Llama 1/2 SentencePiece, 32,000 tokens
LLAMA3_TOKENIZER = "ggml-vocab-llama-bpe.gguf"  # Llama 3 BPE, 128,256 tokens + specials
# Names in the tokenizers folder -> member of the sdist.
TOKENIZER_FILES = {
    **{
        name + suffix: LLAMA_CPP_MODELS + name + suffix
        for name in (LLAMA2_TOKENIZER, LLAMA3_TOKENIZER)
        for suffix in ("", ".inp", ".out")
    },
    "LICENSE-llama.cpp": "llama_cpp_python-0.3.36/vendor/llama.cpp/LICENSE",
}
TOKENIZER_SHA256 = {
    LLAMA2_TOKENIZER: "16c3724582d59aa8bf84711894e833f916ee46a31d80e21312759c48bf8d0e69",
    LLAMA3_TOKENIZER: "97272e430d53bc7688f52d5e0ad8ea8f163ede9f1bbd1694feaa504797d5d96e",
}


class DownloadError(OSError):
    """A download that failed (no network, an HTTP error, a cut transfer, a checksum mismatch); nothing was kept."""


class DataUnavailable(FileNotFoundError):
    """Public data that is neither in a shared/ folder, nor cached, nor downloadable now; the message says how to get it."""

    def __init__(self, what: str, why: str, fix: str) -> None:
        super().__init__(f"{what} are not available ({why}). {fix}")
        self.why = why


# -- downloading ---------------------------------------------------------------------------------------------------


def download(remote: RemoteFile, target: str, timeout: float = DOWNLOAD_TIMEOUT) -> str:
    """
    `remote` saved as `target`: streamed into a temporary file beside it, its size and sha256 checked, then renamed.
    Raises `DownloadError` naming the address and what went wrong; the temporary file is always removed.
    """
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            size, digests = _stream(remote.url, out, timeout)
        expected = remote.size
        if expected is not None and size != expected:
            raise DownloadError(f"{remote.url} sent {size:,} bytes, expected {expected:,}: the transfer was cut")
        for name, published in (("sha256", remote.sha256), ("md5", remote.md5)):
            if published is not None and digests[name] != published:
                raise DownloadError(
                    f"{remote.url} has {name} {digests[name]}, expected {published}: not the published file"
                )
        os.replace(partial, target)
        return target
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _stream(url: str, out, timeout: float) -> tuple[int, dict[str, str]]:
    """Copy `url` into `out`: (bytes read, its sha256 and md5). Network and HTTP failures become `DownloadError`."""
    digest, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            announced = response.headers.get("Content-Length")
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                md5.update(chunk)
                size += len(chunk)
    except (OSError, http.client.HTTPException) as error:  # URLError, HTTPError, timeouts, IncompleteRead
        raise DownloadError(f"could not download {url}: {error}") from error
    if announced is not None and size != int(announced):
        raise DownloadError(f"{url} sent {size:,} of the {int(announced):,} bytes it announced: the transfer was cut")
    return size, {"sha256": digest.hexdigest(), "md5": md5.hexdigest()}


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# -- lookups -------------------------------------------------------------------------------------------------------


def _shared_subfolder(*parts: str) -> str | None:
    folder = shared_dir()
    return os.path.join(folder, *parts) if folder else None


def _holds(folder: str | None, names) -> bool:
    return folder is not None and all(os.path.isfile(os.path.join(folder, name)) for name in names)


def clotho_dir(allow_download: bool = True, base_url: str = FENSE_RAW_URL) -> str:
    """
    A folder in Clotho's layout holding the evaluation captions CSV and `audio/` with the five clips:
    `shared/data/clotho/`, else `$LAAC_CACHE_DIR/data/clotho/`, downloaded there (9.4 MB) when missing and
    `allow_download`. Raises `DataUnavailable` naming the ways to get it.
    """
    shared = _shared_subfolder("data", "clotho")
    if _holds(shared, CLOTHO_FILES):
        return shared
    cache = os.path.join(CACHE_DIR, "data", "clotho")
    missing = [name for name in CLOTHO_FILES if not os.path.isfile(os.path.join(cache, name))]
    if missing and allow_download:
        try:
            for name in missing:
                path, sha256 = CLOTHO_FILES[name]
                download(RemoteFile(base_url + urllib.request.pathname2url(path), sha256), os.path.join(cache, name))
            missing = []
        except DownloadError as error:
            raise _clotho_help(cache, f"the download failed: {error}") from error
    if missing:
        raise _clotho_help(cache, f"{len(missing)} of its {len(CLOTHO_FILES)} files are not cached")
    return cache


def _clotho_help(cache: str, why: str) -> DataUnavailable:
    return DataUnavailable(
        "Clotho's evaluation captions and clips", why,
        f"Get them with `python -m laac.data.public_data clotho` where the network reaches {FENSE_RAW_URL} (9.4 MB "
        f"into {cache}), or set LAAC_SHARED_DIR to a folder holding data/clotho/{CLOTHO_CAPTIONS} and "
        "data/clotho/audio/.",
    )  # fmt: skip


def clotho_captions_csv(allow_download: bool = True) -> str:
    """Clotho's evaluation captions CSV (5,225 captions), from `clotho_dir`."""
    return os.path.join(clotho_dir(allow_download), CLOTHO_CAPTIONS)


def clotho_development_captions_csv(allow_download: bool = True, remote: RemoteFile = CLOTHO_DEVELOPMENT) -> str:
    """
    Clotho v2.1's development captions CSV (3,839 clips x 5): `shared/data/clotho/clotho_captions_development.csv`,
    else `$LAAC_CACHE_DIR/data/clotho/`, downloaded there from Clotho's Zenodo record (md5-checked) when missing and
    `allow_download`. Raises `DataUnavailable` naming the ways to get it.
    """
    shared = _shared_subfolder("data", "clotho")
    if _holds(shared, [CLOTHO_DEVELOPMENT_CAPTIONS]):
        return os.path.join(shared, CLOTHO_DEVELOPMENT_CAPTIONS)
    cached = os.path.join(CACHE_DIR, "data", "clotho", CLOTHO_DEVELOPMENT_CAPTIONS)
    if os.path.isfile(cached):
        return cached
    why = "it is not cached"
    if allow_download:
        try:
            return download(remote, cached)
        except DownloadError as error:
            why = f"the download failed: {error}"
    raise DataUnavailable(
        "Clotho's development captions", why,
        f"Get them with `python -m laac.data.public_data clotho-development` where the network reaches "
        f"{remote.url} (into {os.path.dirname(cached)}), or set LAAC_SHARED_DIR to a folder holding "
        f"data/clotho/{CLOTHO_DEVELOPMENT_CAPTIONS}.",
    )  # fmt: skip


def llama_tokenizers_dir(allow_download: bool = True, sdist: RemoteFile = LLAMA_CPP_SDIST) -> str:
    """
    A folder holding the Llama 2 and Llama 3 GGUF vocabularies (`LLAMA2_TOKENIZER`, `LLAMA3_TOKENIZER`) and their
    reference tokenisations: `shared/tokenizers/`, else `$LAAC_CACHE_DIR/tokenizers/`, extracted there from the
    `llama-cpp-python` sdist on PyPI (a 76.6-MB download, removed afterwards) when missing and `allow_download`.
    Load one with `AutoTokenizer.from_pretrained(folder, gguf_file=LLAMA2_TOKENIZER)`.
    """
    shared = _shared_subfolder("tokenizers")
    if _holds(shared, TOKENIZER_SHA256):
        return shared
    cache = os.path.join(CACHE_DIR, "tokenizers")
    if _holds(cache, TOKENIZER_FILES):
        return cache
    if not allow_download:
        raise _tokenizers_help(cache, "they are not cached")
    try:
        _extract_tokenizers(sdist, cache)
    except DownloadError as error:
        raise _tokenizers_help(cache, f"the download failed: {error}") from error
    return cache


def _tokenizers_help(cache: str, why: str) -> DataUnavailable:
    return DataUnavailable(
        "The Llama 2 / Llama 3 tokenizers", why,
        f"Get them with `python -m laac.data.public_data tokenizers` where PyPI is reachable ({LLAMA_CPP_SDIST.url}, "
        f"76.6 MB, 8.5 MB kept in {cache}), or set LAAC_SHARED_DIR to a folder holding tokenizers/{LLAMA2_TOKENIZER} "
        f"and tokenizers/{LLAMA3_TOKENIZER}.",
    )  # fmt: skip


def _extract_tokenizers(sdist: RemoteFile, cache: str) -> None:
    """The sdist downloaded into a temporary folder, `TOKENIZER_FILES` taken out of it into `cache`, checked."""
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".sdist.") as scratch:
        archive = download(sdist, os.path.join(scratch, os.path.basename(sdist.url)))
        with tarfile.open(archive, "r:gz") as tar:
            for name, member in TOKENIZER_FILES.items():
                source = tar.extractfile(member)
                if source is None:
                    raise DownloadError(f"{sdist.url} has no file {member}")
                with source, open(os.path.join(scratch, name), "wb") as out:
                    shutil.copyfileobj(source, out)
        for name, sha256 in TOKENIZER_SHA256.items():
            if _sha256(os.path.join(scratch, name)) != sha256:
                raise DownloadError(f"{name} in {sdist.url} is not the published vocabulary (sha256 differs)")
        for name in TOKENIZER_FILES:  # a folder counts as complete only when it holds every file
            os.replace(os.path.join(scratch, name), os.path.join(cache, name))


def main(argv: list[str] | None = None) -> int:
    """
    `python -m laac.data.public_data [clotho] [clotho-development] [tokenizers]`: fetch them (all by default); print
    where each is.
    """
    lookups = {"clotho": clotho_dir, "clotho-development": clotho_development_captions_csv,
               "tokenizers": llama_tokenizers_dir}  # fmt: skip
    wanted = (sys.argv[1:] if argv is None else argv) or list(lookups)
    unknown = [name for name in wanted if name not in lookups]
    if unknown:
        print(f"unknown data {unknown}: choose from {sorted(lookups)}", file=sys.stderr)
        return 2
    failed = 0
    for name in wanted:
        try:
            print(f"{name}: {lookups[name]()}")
        except DataUnavailable as error:
            print(f"{name}: {error}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
