"""Tests for convbench.data.download against a local HTTP server and file:// URLs (no internet)."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import logging
import random
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pooch
import pytest
import requests
from tqdm import tqdm

from convbench.data import download
from convbench.data.download import ChecksumMismatchError, DownloadError, fetch, part_path

DATA = random.Random(0).randbytes(300_000)
HALF = len(DATA) // 2
MD5 = f"md5:{hashlib.md5(DATA).hexdigest()}"
SHA256 = f"sha256:{hashlib.sha256(DATA).hexdigest()}"
WRONG_MD5 = f"md5:{hashlib.md5(b'something else').hexdigest()}"


@dataclasses.dataclass
class Behaviour:
    """How the test server answers, and what it has seen."""

    data: bytes = DATA
    status: int | None = None  # answer every request with this error status
    fail_first: int = 0  # answer the first N requests with HTTP 500
    truncate_first: int = 0  # cut the body of the first N served responses...
    truncate_at: int = 0  # ...after this many bytes (Content-Length stays the full size)
    ignore_range: bool = False  # answer 200 with the whole file even when asked for a range
    ranges: list[str | None] = dataclasses.field(default_factory=list)  # Range header per request
    truncated: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class Handler(http.server.BaseHTTPRequestHandler):
    """Serve `Behaviour.data` with Range support and configurable failures."""

    server: TestServer

    def do_GET(self) -> None:
        behaviour = self.server.behaviour
        with behaviour.lock:
            behaviour.ranges.append(self.headers.get("Range"))
            number = len(behaviour.ranges)
        if behaviour.status is not None:
            self.send_error(behaviour.status)
        elif number <= behaviour.fail_first:
            self.send_error(500)
        else:
            self._send_data(behaviour)

    def do_HEAD(self) -> None:
        status = self.server.behaviour.status or 200
        self.send_response(status)
        self.send_header("Content-Length", str(len(self.server.behaviour.data)))
        self.end_headers()

    def _send_data(self, behaviour: Behaviour) -> None:
        data, start = behaviour.data, 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match and not behaviour.ignore_range:
            start = int(match[1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if behaviour.truncated < behaviour.truncate_first:
            behaviour.truncated += 1
            body = body[: behaviour.truncate_at]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


class TestServer(http.server.ThreadingHTTPServer):
    """A local HTTP server whose answers a test can configure."""

    __test__ = False  # not a test class
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.behaviour = Behaviour()
        self.url = f"http://127.0.0.1:{self.server_address[1]}/cifar-10-binary.tar.gz"


@pytest.fixture(autouse=True)
def _fast_offline_friendly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make retries quick and keep proxy settings from redirecting requests to 127.0.0.1."""
    monkeypatch.setattr(download, "RETRY_BACKOFF_S", 0.01)
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[TestServer]:
    """Run a TestServer in a background thread for the duration of a test."""
    srv = TestServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


@pytest.fixture
def dest(tmp_path):
    """Where the downloaded file goes."""
    return tmp_path / "data" / "01_raw" / "cifar-10-binary.tar.gz"


def _closed_port() -> int:
    """Return a local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_fresh_download(server, dest):
    result = fetch(server.url, MD5, dest, progressbar=False)

    assert result == dest
    assert dest.read_bytes() == DATA
    assert not part_path(dest).exists()
    assert server.behaviour.ranges == [None]


def test_fresh_download_with_bare_sha256(server, dest):
    fetch(server.url, SHA256.removeprefix("sha256:").upper(), dest, progressbar=False)

    assert dest.read_bytes() == DATA


def test_existing_file_with_right_hash_makes_no_request(server, dest):
    dest.parent.mkdir(parents=True)
    dest.write_bytes(DATA)

    assert fetch(server.url, MD5, dest, progressbar=False) == dest
    assert server.behaviour.ranges == []


def test_existing_file_with_right_hash_needs_no_network(dest):
    dest.parent.mkdir(parents=True)
    dest.write_bytes(DATA)

    assert fetch(f"http://127.0.0.1:{_closed_port()}/x", SHA256, dest) == dest


def test_existing_file_with_wrong_hash_is_reported_and_left_alone(server, dest):
    dest.parent.mkdir(parents=True)
    dest.write_bytes(DATA)

    with pytest.raises(ChecksumMismatchError) as raised:
        fetch(server.url, WRONG_MD5, dest, progressbar=False)

    message = str(raised.value)
    assert str(dest) in message
    assert WRONG_MD5 in message
    assert MD5 in message
    assert "source.known_hash" in message
    assert dest.read_bytes() == DATA
    assert server.behaviour.ranges == []


def test_downloaded_file_with_wrong_hash_is_discarded(server, dest):
    with pytest.raises(ChecksumMismatchError) as raised:
        fetch(server.url, WRONG_MD5, dest, progressbar=False)

    message = str(raised.value)
    assert server.url in message
    assert WRONG_MD5 in message
    assert MD5 in message
    assert not dest.exists()
    assert not part_path(dest).exists()


def test_resumes_from_part_file(server, dest):
    dest.parent.mkdir(parents=True)
    part_path(dest).write_bytes(DATA[:HALF])

    fetch(server.url, MD5, dest, progressbar=False)

    assert server.behaviour.ranges == [f"bytes={HALF}-"]
    assert dest.read_bytes() == DATA
    assert not part_path(dest).exists()


def test_restarts_when_server_ignores_range(server, dest):
    server.behaviour.ignore_range = True
    dest.parent.mkdir(parents=True)
    part_path(dest).write_bytes(b"stale" * 1000)

    fetch(server.url, MD5, dest, progressbar=False)

    assert server.behaviour.ranges == ["bytes=5000-"]
    assert dest.read_bytes() == DATA


def test_restarts_when_part_file_is_too_long(server, dest):
    dest.parent.mkdir(parents=True)
    part_path(dest).write_bytes(DATA + b"extra")

    fetch(server.url, MD5, dest, progressbar=False)

    assert server.behaviour.ranges == [f"bytes={len(DATA) + 5}-", None]
    assert dest.read_bytes() == DATA


def test_retries_transient_server_errors(server, dest):
    server.behaviour.fail_first = 2

    fetch(server.url, MD5, dest, retries=3, progressbar=False)

    assert len(server.behaviour.ranges) == 3
    assert dest.read_bytes() == DATA


def test_gives_up_after_the_last_attempt(server, dest):
    server.behaviour.fail_first = 2

    with pytest.raises(DownloadError) as raised:
        fetch(server.url, MD5, dest, retries=1, progressbar=False)

    assert not isinstance(raised.value, ChecksumMismatchError)
    assert "500" in str(raised.value)
    assert len(server.behaviour.ranges) == 1
    assert not dest.exists()


def test_truncated_body_is_resumed(server, dest, monkeypatch):
    # Bytes of the chunk being read when the connection drops are lost, so use
    # chunks small enough for some to arrive whole before the cut.
    monkeypatch.setattr(download, "CHUNK_SIZE", 16_384)
    server.behaviour.truncate_first = 1
    server.behaviour.truncate_at = 100_000

    fetch(server.url, MD5, dest, progressbar=False)

    first, second = server.behaviour.ranges
    resumed_at = int(re.fullmatch(r"bytes=(\d+)-", second)[1])
    assert first is None
    assert 0 < resumed_at <= 100_000
    assert dest.read_bytes() == DATA


def test_client_error_is_not_retried(server, dest):
    server.behaviour.status = 404

    with pytest.raises(DownloadError) as raised:
        fetch(server.url, MD5, dest, progressbar=False)

    assert server.url in str(raised.value)
    assert "404" in str(raised.value)
    assert len(server.behaviour.ranges) == 1
    assert not dest.exists()


class CountingAdapter(requests.adapters.HTTPAdapter):
    """A transport adapter that records the URL of every request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def send(self, request: requests.PreparedRequest, *args: object, **kwargs: object) -> requests.Response:
        self.sent.append(request.url)
        return super().send(request, *args, **kwargs)


def test_unreachable_host_fails_fast_with_manual_instructions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pauses = []
    monkeypatch.setattr(download.time, "sleep", pauses.append)
    url = f"http://127.0.0.1:{_closed_port()}/cifar-10-binary.tar.gz"

    with pytest.raises(DownloadError) as raised:
        fetch(url, MD5, "data/01_raw/cifar-10-binary.tar.gz", retries=10, timeout=2, progressbar=False)

    message = str(raised.value)
    assert pauses == []  # no back-off: offline fails at once
    assert url in message
    assert "connection refused" in message
    assert str(tmp_path / "data" / "01_raw" / "cifar-10-binary.tar.gz") in message
    assert MD5 in message

    # The same downloader fetch uses, its requests counted through a session: one try only.
    adapter = CountingAdapter()
    with requests.Session() as session:
        session.mount("http://", adapter)
        downloader = download.ResumableDownloader(retries=10, timeout=2, progressbar=False, session=session)
        with pytest.raises(DownloadError, match="connection refused"):
            downloader(url, tmp_path / "cifar-10-binary.tar.gz.part")
    assert adapter.sent == [url] and pauses == []


def test_downloader_sends_its_requests_through_the_given_session(server, tmp_path):
    adapter = CountingAdapter()
    with requests.Session() as session:
        session.mount("http://", adapter)
        downloader = download.ResumableDownloader(progressbar=False, session=session)
        downloader(server.url, tmp_path / "file.bin")
        assert downloader(server.url, None, None, check_only=True) is True

    assert (tmp_path / "file.bin").read_bytes() == DATA
    assert adapter.sent == [server.url, server.url]


def test_file_url(tmp_path, dest):
    source = tmp_path / "mirror" / "cifar-10-binary.tar.gz"
    source.parent.mkdir()
    source.write_bytes(DATA)

    assert fetch(source.as_uri(), MD5, dest, progressbar=False).read_bytes() == DATA

    other = tmp_path / "other" / "copy.bin"
    with pytest.raises(ChecksumMismatchError):
        fetch(source.as_uri(), WRONG_MD5, other, progressbar=False)
    assert not other.exists()


def test_missing_file_url(tmp_path, dest):
    url = (tmp_path / "missing.bin").as_uri()

    with pytest.raises(DownloadError) as raised:
        fetch(url, MD5, dest, progressbar=False)

    assert url in str(raised.value)
    assert str(dest) in str(raised.value)


def test_without_known_hash_logs_the_checksum(server, dest, caplog):
    with caplog.at_level(logging.WARNING, logger=download.__name__):
        fetch(server.url, None, dest, progressbar=False)

    assert dest.read_bytes() == DATA
    assert SHA256 in caplog.text


def test_unknown_hash_algorithm_is_rejected_before_downloading(server, dest):
    with pytest.raises(ValueError, match="nohash"):
        fetch(server.url, "nohash:abc", dest, progressbar=False)
    assert server.behaviour.ranges == []


@pytest.mark.parametrize("progressbar", [True, False])
def test_progress_bar(server, dest, capfd, progressbar):
    fetch(server.url, MD5, dest, progressbar=progressbar)

    err = capfd.readouterr().err
    if progressbar:
        size = tqdm.format_sizeof(len(DATA))
        assert f"{size}/{size}" in err
        assert dest.name in err
    else:
        assert err == ""


def test_downloader_works_with_pooch(server, tmp_path):
    downloader = download.ResumableDownloader(progressbar=False)

    path = pooch.retrieve(server.url, MD5, fname="file.bin", path=tmp_path, downloader=downloader)

    assert Path(path).read_bytes() == DATA
    assert downloader(server.url, None, None, check_only=True) is True
    server.behaviour.status = 404
    assert downloader(server.url, None, None, check_only=True) is False
