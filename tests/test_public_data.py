"""Public data found or downloaded (`laac.data.public_data`), against a local HTTP server on 127.0.0.1."""

import hashlib
import io
import os
import tarfile
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from laac.data import public_data
from laac.data.public_data import DataUnavailable, DownloadError, RemoteFile, download

from tests import laac_tester

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class Handler(BaseHTTPRequestHandler):
    """Serves `server.files` by path; /cut/<path> announces the whole file and stops halfway; anything else: 404."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = urllib.parse.unquote(self.path.lstrip("/"))
        cut = path.startswith("cut/")
        body = self.server.files.get(path.removeprefix("cut/"))
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if cut else body)
        if cut:
            self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.files = {"payload.bin": PAYLOAD}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _url(server: ThreadingHTTPServer, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/{path}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def no_shared_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's machine: LAAC_SHARED_DIR is an empty folder and LAAC's cache is empty; returns the cache."""
    (tmp_path / "empty_shared").mkdir()
    monkeypatch.setattr(public_data, "shared_dir", lambda: str(tmp_path / "empty_shared"))
    monkeypatch.setattr(public_data, "CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_a_download_is_checked_and_renamed_into_place(server, tmp_path):
    target = tmp_path / "data" / "payload.bin"
    remote = RemoteFile(_url(server, "payload.bin"), _sha256(PAYLOAD), len(PAYLOAD))
    assert download(remote, str(target)) == str(target)
    assert target.read_bytes() == PAYLOAD and _leftovers(tmp_path / "data") == ["payload.bin"]


@pytest.mark.parametrize(
    "path, sha256, message",
    [
        ("missing.bin", None, r"could not download http://127\.0\.0\.1:\d+/missing\.bin: HTTP Error 404"),
        ("cut/payload.bin", None, r"sent 524,288 of the 1,048,576 bytes it announced: the transfer was cut"),
        ("payload.bin", "0" * 64, r"has sha256 [0-9a-f]{64}, expected 0{64}: not the published file"),
    ],
)
def test_a_failed_download_says_why_and_leaves_nothing_behind(server, tmp_path, path, sha256, message):
    target = tmp_path / "data" / "payload.bin"
    with pytest.raises(DownloadError, match=message):
        download(RemoteFile(_url(server, path), sha256 or _sha256(PAYLOAD)), str(target), timeout=10)
    assert _leftovers(tmp_path / "data") == []  # no half-written file, no temporary file


def test_an_unreachable_address_is_a_download_error(tmp_path):
    with pytest.raises(DownloadError, match="could not download http://127.0.0.1:9/x"):
        download(RemoteFile("http://127.0.0.1:9/x", "0" * 64), str(tmp_path / "x"), timeout=5)
    assert _leftovers(tmp_path) == []


def test_clotho_is_downloaded_once_into_the_cache(server, no_shared_data, clotho_dir):
    """An empty LAAC_SHARED_DIR (a partial copy, a mistake) falls through to the cache, filled from the public source."""
    server.files = {
        path: (clotho_dir / name).read_bytes() for name, (path, _) in public_data.CLOTHO_FILES.items()
    }
    base = _url(server, "")
    folder = public_data.clotho_dir(base_url=base)
    assert folder == str(no_shared_data / "data" / "clotho")
    assert sorted(_leftovers(Path(folder) / "audio")) == sorted(public_data.CLOTHO_CLIPS)
    server.files = {}  # cached now: no second download
    assert public_data.clotho_dir(base_url=base) == folder
    assert public_data.clotho_captions_csv(allow_download=False) == os.path.join(folder, public_data.CLOTHO_CAPTIONS)


def test_clotho_development_captions_are_md5_checked_and_cached(server, no_shared_data, tmp_path):
    """Zenodo publishes md5 checksums only: the development captions are checked against the md5 of the record."""
    captions = b"file_name,caption_1\nclip.wav,a dog barks and a car passes\n"
    server.files = {"dev.csv": captions}
    published = RemoteFile(_url(server, "dev.csv"), None, md5=hashlib.md5(captions).hexdigest())
    cached = no_shared_data / "data" / "clotho" / public_data.CLOTHO_DEVELOPMENT_CAPTIONS
    assert public_data.clotho_development_captions_csv(remote=published) == str(cached)
    assert cached.read_bytes() == captions
    server.files = {}  # cached now: no second download
    assert public_data.clotho_development_captions_csv(allow_download=False) == str(cached)
    cached.unlink()
    with pytest.raises(DataUnavailable) as error:
        public_data.clotho_development_captions_csv(remote=RemoteFile(published.url, None, md5="0" * 32))
    assert "not available (the download failed" in str(error.value) and "clotho-development" in str(error.value)
    assert _leftovers(no_shared_data / "data" / "clotho") == []
    shared = tmp_path / "empty_shared" / "data" / "clotho"
    shared.mkdir(parents=True)
    (shared / public_data.CLOTHO_DEVELOPMENT_CAPTIONS).write_bytes(captions)  # a shared/ folder comes first
    assert public_data.clotho_development_captions_csv(allow_download=False) == str(
        shared / public_data.CLOTHO_DEVELOPMENT_CAPTIONS
    )


def test_a_remote_file_needs_a_checksum():
    with pytest.raises(ValueError, match="needs a sha256 or an md5"):
        RemoteFile("https://example.org/x", None)


def test_clotho_that_cannot_be_had_names_how_to_get_it(server, no_shared_data):
    with pytest.raises(DataUnavailable) as error:
        public_data.clotho_dir(base_url=_url(server, "nothing/"))
    assert "the download failed" in error.value.why and "HTTP Error 404" in error.value.why
    message = str(error.value)
    assert "python -m laac.data.public_data clotho" in message and "LAAC_SHARED_DIR" in message
    assert _leftovers(no_shared_data / "data" / "clotho") == []
    with pytest.raises(DataUnavailable, match="6 of its 6 files are not cached"):
        public_data.clotho_dir(allow_download=False)


def _sdist(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_tokenizers_are_taken_out_of_the_sdist(server, no_shared_data, llama_tokenizers):
    members = {member: (llama_tokenizers / name).read_bytes() for name, member in public_data.TOKENIZER_FILES.items()}
    archive = _sdist({**members, "llama_cpp_python-0.3.36/setup.py": b"# not needed\n"})
    server.files = {"sdist.tar.gz": archive}
    sdist = RemoteFile(_url(server, "sdist.tar.gz"), _sha256(archive), len(archive))
    folder = Path(public_data.llama_tokenizers_dir(sdist=sdist))
    assert folder == no_shared_data / "tokenizers"
    assert _leftovers(folder) == sorted(public_data.TOKENIZER_FILES)  # the sdist itself is gone
    for name in public_data.TOKENIZER_FILES:
        assert (folder / name).read_bytes() == (llama_tokenizers / name).read_bytes()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=public_data.LLAMA2_TOKENIZER)
    assert tokenizer("Describe the detail of this audio:")["input_ids"] == [1, 20355, 915, 278, 9493, 310, 445, 10348, 29901]


def test_a_wrong_vocabulary_in_the_sdist_is_refused(server, no_shared_data, llama_tokenizers):
    members = {member: (llama_tokenizers / name).read_bytes() for name, member in public_data.TOKENIZER_FILES.items()}
    members[public_data.TOKENIZER_FILES[public_data.LLAMA3_TOKENIZER]] = b"not a vocabulary"
    archive = _sdist(members)
    server.files = {"sdist.tar.gz": archive}
    sdist = RemoteFile(_url(server, "sdist.tar.gz"), _sha256(archive))
    with pytest.raises(DataUnavailable, match="ggml-vocab-llama-bpe.gguf in .* is not the published vocabulary"):
        public_data.llama_tokenizers_dir(sdist=sdist)
    assert _leftovers(no_shared_data / "tokenizers") == []  # nothing kept: a later call downloads again
    cut = RemoteFile(_url(server, "cut/sdist.tar.gz"), _sha256(archive))
    with pytest.raises(DataUnavailable, match="the transfer was cut.*Get them with `python -m laac.data.public_data"):
        public_data.llama_tokenizers_dir(sdist=cut)
    assert _leftovers(no_shared_data / "tokenizers") == []


def test_missing_data_skips_with_its_reason_but_fails_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="get it like this"):
        laac_tester.unavailable("no data here: get it like this")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="get it like this .*CI=true"):
        laac_tester.unavailable("no data here: get it like this")


def test_the_command_fetches_and_reports_each(monkeypatch, capsys):
    monkeypatch.setattr(public_data, "clotho_dir", lambda: "/cache/clotho")
    monkeypatch.setattr(public_data, "clotho_development_captions_csv", lambda: "/cache/clotho/development.csv")
    monkeypatch.setattr(
        public_data, "llama_tokenizers_dir", lambda: (_ for _ in ()).throw(DataUnavailable("X", "offline", "Fix."))
    )
    assert public_data.main([]) == 1
    captured = capsys.readouterr()
    assert "clotho: /cache/clotho" in captured.out and "clotho-development: /cache/clotho/dev" in captured.out
    assert "tokenizers: X are not available (offline). Fix." in captured.err
    assert public_data.main(["clotho"]) == 0
    assert public_data.main(["audio"]) == 2 and "unknown data ['audio']" in capsys.readouterr().err
