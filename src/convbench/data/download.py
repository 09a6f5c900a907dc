"""Download raw data files: checksum-verified, resumable, retried and offline-aware.

Dataset facts (URLs, checksums) are not kept here; they come from the Kedro
parameters (``conf/base/parameters_ingestion.yml``) and are passed to :func:`fetch`.
Checksums use pooch's syntax: ``"md5:<hex>"``, ``"sha256:<hex>"`` or bare hex (SHA256).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pathlib
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import IO, Any

import pooch
import requests
import urllib3.exceptions
from tqdm import tqdm

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
"""Bytes read and written per step while downloading or copying."""

CONNECT_TIMEOUT_S = 10.0
"""Seconds to wait for a connection; a host that does not answer in time counts as unreachable."""

RETRY_BACKOFF_S = 0.5
"""Pause before retry number ``n`` is ``n * RETRY_BACKOFF_S`` seconds."""

PART_SUFFIX = ".part"
"""Suffix of the partial file a download is written to before it is verified."""


class DownloadError(RuntimeError):
    """A file could not be downloaded (server error, no network, missing source)."""


class ChecksumMismatchError(DownloadError):
    """A file's checksum differs from the expected one."""


class _TransientError(Exception):
    """A failure worth retrying: reset connection, timeout, HTTP 5xx or a short body."""


def fetch(
    url: str,
    known_hash: str | None,
    destination: str | os.PathLike[str],
    *,
    retries: int = 3,
    timeout: float = 30.0,
    progressbar: bool = True,
) -> pathlib.Path:
    """Return the local path of `destination`, downloading `url` there first if needed.

    An existing `destination` is used without network access when its checksum
    matches `known_hash` (or when `known_hash` is None); a mismatching one is
    left untouched and reported with :class:`ChecksumMismatchError`. A download
    goes to ``<destination>.part`` (resumed on the next call if interrupted) and
    only a verified file is moved to `destination`.

    Args:
        url: ``http(s)://`` or ``file://`` URL of the file.
        known_hash: Expected checksum in pooch's syntax, or None to skip the check.
        destination: Where the file lives locally.
        retries: Number of download attempts for transient failures (at least 1).
        timeout: Seconds to wait for the server to connect or send data.
        progressbar: Whether to show a tqdm progress bar on stderr.

    Raises:
        DownloadError: The file could not be downloaded; the message says where
            to place it by hand.
        ChecksumMismatchError: The existing or downloaded file has another checksum.
        ValueError: `known_hash` names an unknown algorithm or `retries` < 1.
    """
    _check_hash_syntax(known_hash)
    destination = pathlib.Path(destination).absolute()
    if destination.exists():
        return _use_existing(destination, known_hash, url)
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(destination)
    downloader = ResumableDownloader(retries=retries, timeout=timeout, progressbar=progressbar)
    try:
        downloader(url, part)
    except ChecksumMismatchError:
        raise
    except DownloadError as exc:
        raise DownloadError(f"{exc}. {_manual_placement_hint(destination, known_hash)}") from exc
    _verify_download(part, known_hash, url)
    os.replace(part, destination)
    logger.info("Saved %s to %s", url, destination)
    return destination


def part_path(destination: str | os.PathLike[str]) -> pathlib.Path:
    """Return the path of the partial file a download of `destination` is written to."""
    destination = pathlib.Path(destination)
    return destination.with_name(destination.name + PART_SUFFIX)


class ResumableDownloader:
    """Pooch-compatible downloader that resumes partial files and retries transient failures.

    Calling it downloads `url` into `output_file`; when `output_file` already
    holds bytes, only the rest is requested (HTTP ``Range``) and appended. A
    server without range support makes it start over. ``file://`` URLs are
    copied. It checks no checksum: that is the caller's job (pooch or :func:`fetch`).

    Args:
        retries: Number of download attempts for transient failures (at least 1).
        timeout: Seconds to wait for the server to connect or send data.
        progressbar: Whether to show a tqdm progress bar on stderr.
        session: The ``requests.Session`` that sends the HTTP requests (one with its own
            transport adapters, proxies or authentication); None sends each request
            through ``requests.get`` / ``requests.head``.
    """

    def __init__(
        self,
        *,
        retries: int = 3,
        timeout: float = 30.0,
        progressbar: bool = True,
        session: requests.Session | None = None,
    ):
        if retries < 1:
            raise ValueError(f"retries must be at least 1, got {retries}")
        self.retries = retries
        self.timeout = timeout
        self.progressbar = progressbar
        self.session = session

    def __call__(
        self,
        url: str,
        output_file: str | os.PathLike[str],
        pooch_obj: pooch.Pooch | None = None,
        check_only: bool = False,
    ) -> bool | None:
        """Download `url` into `output_file`, or with `check_only` say whether `url` is reachable."""
        if check_only:
            return self._is_available(url)
        output_file = pathlib.Path(output_file)
        if _is_file_url(url):
            self._copy_local(url, output_file)
        else:
            self._download_http(url, output_file)
        return None

    def _is_available(self, url: str) -> bool:
        """Return whether `url` exists, without downloading it."""
        if _is_file_url(url):
            return _file_url_path(url).is_file()
        try:
            response = self._http().head(url, allow_redirects=True, timeout=(CONNECT_TIMEOUT_S, self.timeout))
        except requests.RequestException:
            return False
        return response.ok

    def _copy_local(self, url: str, output_file: pathlib.Path) -> None:
        """Copy the file a ``file://`` URL names into `output_file`."""
        source = _file_url_path(url)
        try:
            with source.open("rb") as src, output_file.open("wb") as dst:
                size = os.fstat(src.fileno()).st_size
                with self._progress(output_file, total=size, initial=0) as bar:
                    _copy_chunks(iter(lambda: src.read(CHUNK_SIZE), b""), dst, bar)
        except OSError as exc:
            raise DownloadError(f"Could not copy {url} ({exc.strerror or exc})") from exc

    def _download_http(self, url: str, output_file: pathlib.Path) -> None:
        """Download over HTTP(S), retrying transient failures and resuming each time."""
        for attempt in range(1, self.retries + 1):
            try:
                self._attempt(url, output_file)
                return
            except requests.ConnectionError as exc:
                reason = _unreachable_reason(exc)
                if reason is not None and attempt == 1:
                    raise DownloadError(f"Could not download {url} ({reason})") from exc
                failure: Exception = exc
            except (requests.RequestException, _TransientError) as exc:
                failure = exc
            self._log_failure(url, attempt, failure)
            if attempt == self.retries:
                raise DownloadError(
                    f"Could not download {url} after {self.retries} attempt(s) ({_describe(failure)})"
                ) from failure
            time.sleep(RETRY_BACKOFF_S * attempt)

    def _log_failure(self, url: str, attempt: int, failure: Exception) -> None:
        """Log a failed attempt and whether another one follows."""
        left = self.retries - attempt
        logger.warning(
            "Download attempt %d/%d of %s failed (%s)%s",
            attempt,
            self.retries,
            url,
            _describe(failure),
            f"; retrying ({left} left)" if left else "",
        )

    def _attempt(self, url: str, output_file: pathlib.Path) -> None:
        """Make one request and write its body, appending to `output_file` when resuming."""
        offset = output_file.stat().st_size if output_file.exists() else 0
        with self._request(url, offset) as response:
            offset = _resume_offset(response, offset, output_file)
            expected = _content_length(response)
            total = offset + expected if expected is not None else None
            with (
                output_file.open("ab" if offset else "wb") as dst,
                self._progress(output_file, total=total, initial=offset) as bar,
            ):
                received = _copy_chunks(response.iter_content(CHUNK_SIZE), dst, bar)
        if expected is not None and received < expected:
            raise _TransientError(f"connection closed after {received} of {expected} bytes")

    def _request(self, url: str, offset: int) -> requests.Response:
        """Send the GET request, asking for the bytes from `offset` on; raise on HTTP errors."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        # Identity encoding keeps Content-Length and byte offsets about the file itself.
        headers["Accept-Encoding"] = "identity"
        response = self._http().get(url, headers=headers, stream=True, timeout=(CONNECT_TIMEOUT_S, self.timeout))
        if response.status_code == 416 and offset:
            response.close()
            logger.info("Server rejected resuming %s at byte %d; starting over", url, offset)
            return self._request(url, 0)
        if response.status_code >= 500:
            response.close()
            raise _TransientError(f"HTTP {response.status_code} {response.reason}")
        if response.status_code >= 400:
            response.close()
            raise DownloadError(f"Could not download {url} (HTTP {response.status_code} {response.reason})")
        return response

    def _http(self) -> Any:
        """Return what sends the requests: the session, or the requests module (a new session each)."""
        return requests if self.session is None else self.session

    def _progress(self, output_file: pathlib.Path, *, total: int | None, initial: int) -> tqdm:
        """Return a byte-counting progress bar on stderr (disabled unless `progressbar`)."""
        name = output_file.name.removesuffix(PART_SUFFIX)
        return tqdm(
            total=total,
            initial=initial,
            unit="B",
            unit_scale=True,
            desc=name,
            file=sys.stderr,
            disable=not self.progressbar,
        )


def _resume_offset(response: requests.Response, offset: int, output_file: pathlib.Path) -> int:
    """Return where the body of `response` goes in `output_file` (0 means start over)."""
    if not offset:
        return 0
    if response.status_code == 206 and _content_range_start(response) == offset:
        logger.info("Resuming download of %s at byte %d", output_file.name, offset)
        return offset
    if response.status_code == 206:
        response.close()
        raise _TransientError(f"server sent an unexpected range ({response.headers.get('Content-Range')})")
    logger.info("Server does not support resuming; downloading %s from the start", output_file.name)
    return 0


def _content_range_start(response: requests.Response) -> int | None:
    """Return the first byte position of a ``Content-Range: bytes a-b/n`` header."""
    value = response.headers.get("Content-Range", "")
    unit, _, spec = value.partition(" ")
    start = spec.partition("-")[0]
    return int(start) if unit == "bytes" and start.isdigit() else None


def _content_length(response: requests.Response) -> int | None:
    """Return the body size the server announced, if any."""
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


def _copy_chunks(chunks: Iterator[bytes], dst: IO[bytes], bar: tqdm) -> int:
    """Write `chunks` to `dst` as they arrive and return how many bytes were written."""
    written = 0
    for chunk in chunks:
        dst.write(chunk)
        dst.flush()
        written += len(chunk)
        bar.update(len(chunk))
    return written


def _unreachable_reason(exc: BaseException) -> str | None:
    """Return why the host could not be reached at all, or None if it was reached."""
    errors = list(_causes(exc))
    for kind, reason in (
        (urllib3.exceptions.NameResolutionError, "host not found"),
        (ConnectionRefusedError, "connection refused"),
        (urllib3.exceptions.NewConnectionError, "host unreachable"),
        (urllib3.exceptions.ConnectTimeoutError, "no answer to the connection attempt"),
    ):
        if any(isinstance(error, kind) for error in errors):
            return reason
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """Yield `exc` and every exception it wraps (causes, contexts, urllib3 reasons, args)."""
    pending: list[Any] = [exc]
    seen: set[int] = set()
    while pending:
        error = pending.pop()
        if not isinstance(error, BaseException) or id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        pending.extend([error.__cause__, error.__context__, getattr(error, "reason", None), *error.args])


def _describe(failure: Exception) -> str:
    """Return a short human-readable description of a failed attempt."""
    if isinstance(failure, requests.Timeout):
        return "timed out"
    if isinstance(failure, requests.RequestException):
        return f"{type(failure).__name__}: {failure}"
    return str(failure)


def _is_file_url(url: str) -> bool:
    """Return whether `url` is a ``file://`` URL."""
    return urllib.parse.urlparse(url).scheme == "file"


def _file_url_path(url: str) -> pathlib.Path:
    """Return the local path a ``file://`` URL names."""
    return pathlib.Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))


def _check_hash_syntax(known_hash: str | None) -> None:
    """Raise ValueError when `known_hash` names an algorithm hashlib cannot compute."""
    if known_hash is None:
        return
    algorithm = _hash_algorithm(known_hash)
    if algorithm not in hashlib.algorithms_available:
        raise ValueError(f"Unknown hash algorithm {algorithm!r} in known_hash {known_hash!r}")


def _hash_algorithm(known_hash: str) -> str:
    """Return the algorithm a checksum in pooch's syntax names: the part before ``:``, else sha256."""
    return known_hash.split(":")[0].lower() if ":" in known_hash else "sha256"


def _checksum(path: pathlib.Path, known_hash: str) -> str:
    """Return the checksum of `path` in the syntax of `known_hash` ("alg:hex")."""
    algorithm = _hash_algorithm(known_hash)
    return f"{algorithm}:{pooch.file_hash(str(path), alg=algorithm)}"


def _same_digest(checksum: str, known_hash: str) -> bool:
    """Return whether two checksums in pooch's syntax hold the same digest (case-insensitive)."""
    return checksum.split(":")[-1].lower() == known_hash.split(":")[-1].lower()


def _use_existing(destination: pathlib.Path, known_hash: str | None, url: str) -> pathlib.Path:
    """Return `destination` if its checksum is right; never touch it otherwise."""
    if known_hash is None:
        logger.warning("Using %s without checking it: no known_hash is configured", destination)
        return destination
    actual = _checksum(destination, known_hash)
    if _same_digest(actual, known_hash):
        logger.info("Using %s (checksum verified)", destination)
        return destination
    raise ChecksumMismatchError(
        f"{destination} exists but its checksum does not match: expected {known_hash}, "
        f"got {actual}. The file was left untouched. "
        f"Delete it to download it again from {url}, or correct the source.known_hash "
        "parameter if the file is the right one."
    )


def _verify_download(part: pathlib.Path, known_hash: str | None, url: str) -> None:
    """Check a finished download; remove it and raise if its checksum is wrong."""
    if known_hash is None:
        logger.warning(
            "Downloaded %s without checking it: no known_hash is configured. "
            "Its checksum is %s; set the source.known_hash parameter to it.",
            url,
            f"sha256:{pooch.file_hash(str(part))}",
        )
        return
    actual = _checksum(part, known_hash)
    if _same_digest(actual, known_hash):
        return
    part.unlink()
    raise ChecksumMismatchError(
        f"Checksum mismatch for the file downloaded from {url}: expected {known_hash}, "
        f"got {actual}. The download was discarded; check the URL and the "
        "source.known_hash parameter."
    )


def _manual_placement_hint(destination: pathlib.Path, known_hash: str | None) -> str:
    """Return advice on placing the file by hand when it cannot be downloaded."""
    checksum = f" ({known_hash})" if known_hash else ""
    return (
        f"If this machine is offline, download the file elsewhere and place it at "
        f"{destination}{checksum}; it will be used without network access."
    )
