"""Safe access to tar archives (plain, gzip, bz2 or xz), shared by every archive reader.

:func:`read_tar_members` (and its lazy form :func:`iter_tar_members`) streams an archive once,
front to back, and returns the wanted members' bytes. Nothing is written to disk and nothing is
unpickled; every member name is checked on the way. The many ways a damaged archive fails
(``tarfile.ReadError``, ``EOFError``, ``zlib.error``...) become :class:`ArchiveFormatError`, whose
message names the archive, the member when there is one, and what was expected versus found.
"""

from __future__ import annotations

import bz2
import collections
import contextlib
import io
import lzma
import os
import queue
import re
import tarfile
import threading
import zlib
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Protocol

from isal import isal_zlib

STREAM_BUFSIZE = 1024 * 1024
"""Compressed bytes fed to the decompressor per step while streaming an archive."""

_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, isal_zlib.error, lzma.LZMAError)
"""Exceptions that mean "this archive is damaged or not an archive" while reading it."""

_DRIVE = re.compile(r"^[A-Za-z]:")


class ArchiveFormatError(ValueError):
    """An archive or one of its members is not what was expected.

    The message starts with the archive (and the member, when one is concerned) and says
    what was expected and what was found. The same parts are kept as attributes.

    Attributes:
        archive: The archive file (or another description of the data's source), if known.
        member: The member concerned, if any.
    """

    def __init__(self, message: str, *, archive: str | os.PathLike[str] | None = None, member: str | None = None):
        self.archive = archive
        self.member = member
        prefix = ""
        if archive is not None:
            prefix = os.fspath(archive) if member is None else describe_member(archive, member)
            prefix += ": "
        super().__init__(prefix + message)


class UnsafeArchiveError(ArchiveFormatError):
    """A member could escape the folder it would be extracted to.

    Raised for a member whose path is absolute or contains ``..``, and for a link (symbolic or
    hard) where a file is needed.
    """


def describe_member(archive: str | os.PathLike[str], member: str) -> str:
    """Return how messages name a member of an archive: ``<archive>, member '<member>'``."""
    return f"{os.fspath(archive)}, member {member!r}"


def check_member_name(archive: str | os.PathLike[str], name: str) -> None:
    """Raise UnsafeArchiveError if the member path `name` could escape the extraction folder.

    Used for tar and zip members alike; both ``/`` and ``\\`` count as separators.

    Raises:
        UnsafeArchiveError: `name` is absolute (``/x``, ``\\x``, ``C:x``) or has a ``..`` component.
    """
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise UnsafeArchiveError("expected a relative path, found an absolute one", archive=archive, member=name)
    if ".." in re.split(r"[/\\]", name):
        raise UnsafeArchiveError(
            "expected a path inside the archive's folder, found one containing '..'", archive=archive, member=name
        )


def read_tar_members(archive: str | os.PathLike[str], wanted: Collection[str]) -> dict[str, bytes]:
    """Return the bytes of the `wanted` members of a tar archive, read in one pass.

    The archive is streamed (plain tar or gzip/bz2/xz compressed, detected from its first
    bytes), so a ``.tar.gz`` is decompressed once, front to back, without extracting
    anything to disk. Every member name is checked, not only the wanted ones. Member names
    match with or without a leading ``./``.

    Args:
        archive: Path of the tar archive.
        wanted: Member paths inside the archive, e.g. ``"cifar-10-batches-bin/test_batch.bin"``.

    Returns:
        A mapping from each name in `wanted` (as given) to the member's bytes.

    Raises:
        UnsafeArchiveError: A member path is absolute or contains ``..``, or a wanted member
            is a symbolic or hard link.
        ArchiveFormatError: The file is not a tar archive, is truncated or corrupt (the member
            being read is named), a wanted member is missing (all missing ones are listed),
            is not a regular file or occurs twice.
        FileNotFoundError: `archive` does not exist.
    """
    return dict(iter_tar_members(archive, wanted))


def iter_tar_members(archive: str | os.PathLike[str], wanted: Collection[str]) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, bytes)`` for each wanted member, in archive order, as it is read.

    The lazy form of :func:`read_tar_members` (same checks, same errors), for callers that
    process one member while the next is being decompressed. The checks that need the
    whole archive (missing members, a truncated compressed stream) run after the last
    member has been yielded, so a caller must exhaust the iterator before trusting the data.

    Args:
        archive: Path of the tar archive.
        wanted: Member paths inside the archive.

    Yields:
        ``(name, data)``: a name from `wanted` (as given) and the member's bytes.
    """
    archive = Path(archive)
    by_key = {_normalise(name): name for name in wanted}
    found: dict[str, str] = {}
    seen: list[str] = []
    current: str | None = None  # the member whose data is being read, if any
    with archive.open("rb") as raw:
        try:
            with _open_tar_stream(raw) as (tar, stream):
                for info in tar:
                    check_member_name(archive, info.name)
                    seen.append(info.name)
                    name = by_key.get(_normalise(info.name))
                    if name is None:
                        continue
                    _check_wanted_type(archive, info)
                    if name in found:
                        raise ArchiveFormatError(
                            f"expected one member named {name!r}, found it twice "
                            f"(as {found[name]!r} and {info.name!r})",
                            archive=archive,
                            member=info.name,
                        )
                    current = info.name
                    data = _read_member(tar, info)
                    current = None
                    if len(data) != info.size:
                        raise ArchiveFormatError(
                            f"expected {info.size:,} bytes of data, found {len(data):,}: the archive is truncated",
                            archive=archive,
                            member=info.name,
                        )
                    found[name] = info.name
                    yield name, data
                _check_stream_complete(archive, stream)
        except ArchiveFormatError:
            raise
        except _ARCHIVE_ERRORS as exc:
            raise _damaged(archive, current, exc, after=seen[-1] if seen else None) from exc
    missing = [name for name in by_key.values() if name not in found]
    if missing:
        listed = ", ".join(seen[:20]) + (f" ... ({len(seen)} in all)" if len(seen) > 20 else "")
        raise ArchiveFormatError(
            f"expected member(s) {', '.join(missing)} but they are missing; "
            f"the archive holds: {listed or 'no members'}",
            archive=archive,
        )


GZIP_MAGIC = b"\x1f\x8b"
"""First bytes of a gzip stream."""


class _Decompressor(Protocol):
    """What :class:`_InflatingStream` needs of a decompressor (zlib-, bz2- and lzma-style objects)."""

    eof: bool

    def decompress(self, data: bytes) -> bytes: ...


def _decompressor_for(magic: bytes) -> _Decompressor | None:
    """Return a decompressor for a stream starting with `magic`, or None for an uncompressed one.

    Gzip is recognised by its two magic bytes and inflated with ISA-L; bz2 and xz (or
    legacy ``.lzma``) by the same first bytes as tarfile's ``"r|*"`` mode.
    """
    if magic.startswith(GZIP_MAGIC):
        return isal_zlib.decompressobj(16 + isal_zlib.MAX_WBITS)
    if magic[0:3] == b"BZh" and magic[4:10] == b"1AY&SY":
        return bz2.BZ2Decompressor()
    if magic.startswith((b"\x5d\x00\x00\x80", b"\xfd7zXZ")):
        return lzma.LZMADecompressor()
    return None


class _InflatingStream:
    """A compressed stream decompressed on a background thread, read forward like a file.

    ISA-L, bz2 and lzma release the GIL, so decompressing overlaps with reading tar headers
    and decoding records. Reads copy the decompressed bytes once; `seek` only skips forward,
    which is all a front-to-back tar reader needs. Like tarfile's own stream it ends quietly
    where the input ends; :attr:`complete` then tells whether the compressed stream was.
    The gzip CRC and size are checked.

    Why not ``isal.igzip_threaded`` (python-isal 1.9.1), which threads gzip inflation too: its
    reader cannot seek, so tarfile must read it in stream mode (``"r|"``, more copies), which
    made parsing the full-size CIFAR-10 archive about 1.15x as slow (benchmarks/README.md);
    and it raises at a truncation up to a 1 MiB block early, so errors could no longer name
    the member where an archive breaks off.
    """

    _DONE = None

    def __init__(self, raw, decompressor: _Decompressor) -> None:
        self._decompressor = decompressor
        self._inflated: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._chunks: collections.deque[memoryview] = collections.deque()
        self._buffered = 0
        self._position = 0
        self._error: BaseException | None = None
        self._finished = False
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._inflate, args=(raw,), name="archive-inflate", daemon=True)
        self._worker.start()

    @property
    def complete(self) -> bool:
        """Whether the decompressor has seen the end-of-stream marker (so far)."""
        return self._decompressor.eof

    def _inflate(self, raw) -> None:
        try:
            while not self._decompressor.eof and not self._stop.is_set():
                compressed = raw.read(STREAM_BUFSIZE)
                if not compressed:
                    break
                try:
                    inflated = self._decompressor.decompress(compressed)
                except (OSError, lzma.LZMAError) as exc:  # how bz2 and lzma report corrupt data
                    raise tarfile.ReadError("invalid compressed data") from exc
                self._put(inflated)
        except BaseException as exc:  # handed to the reading thread
            self._error = exc
        finally:
            self._put(self._DONE)

    def _put(self, item: bytes | None) -> None:
        while not self._stop.is_set():
            try:
                self._inflated.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _fill(self, size: int) -> None:
        while not self._finished and (size < 0 or self._buffered < size):
            chunk = self._inflated.get()
            if chunk is self._DONE:
                self._finished = True
                if self._error is not None:
                    raise self._error
            elif chunk:
                self._chunks.append(memoryview(chunk))
                self._buffered += len(chunk)

    def _take(self, size: int) -> list[memoryview]:
        self._fill(size)
        size = self._buffered if size < 0 else min(size, self._buffered)
        pieces, wanted = [], size
        while wanted:
            chunk = self._chunks.popleft()
            if len(chunk) > wanted:
                self._chunks.appendleft(chunk[wanted:])
                chunk = chunk[:wanted]
            pieces.append(chunk)
            wanted -= len(chunk)
        self._buffered -= size
        self._position += size
        return pieces

    def read(self, size: int = -1) -> bytes:
        pieces = self._take(size)
        return pieces[0].tobytes() if len(pieces) == 1 else b"".join(pieces)

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset if whence == 0 else self._position + offset
        if whence not in (0, 1) or target < self._position:
            raise io.UnsupportedOperation("this gzip stream only seeks forward")
        while self._position < target and self._take(min(target - self._position, STREAM_BUFSIZE)):
            pass
        return self._position

    def close(self) -> None:
        self._stop.set()
        self._worker.join()


@contextlib.contextmanager
def _open_tar_stream(raw) -> Iterator[tuple[tarfile.TarFile, _InflatingStream | None]]:
    """A tar reader over `raw`, and the stream decompressing it (None for an uncompressed tar)."""
    magic = raw.read(10)
    raw.seek(0)
    decompressor = _decompressor_for(magic)
    if decompressor is None:
        with tarfile.open(fileobj=raw, mode="r|", bufsize=STREAM_BUFSIZE) as tar:
            yield tar, None
        return
    stream = _InflatingStream(raw, decompressor)
    try:
        with tarfile.open(fileobj=stream, mode="r:") as tar:
            yield tar, stream
    finally:
        stream.close()


def _normalise(name: str) -> str:
    """Return a member name without ``.`` components, empty components or a trailing slash."""
    return "/".join(part for part in name.split("/") if part not in ("", "."))


def _check_wanted_type(archive: Path, info: tarfile.TarInfo) -> None:
    """Raise if a wanted member is not a regular file (links are unsafe, others wrong)."""
    if info.issym() or info.islnk():
        raise UnsafeArchiveError(
            f"expected a regular file, found a {_kind(info)} to {info.linkname!r}", archive=archive, member=info.name
        )
    if not info.isreg():
        raise ArchiveFormatError(f"expected a regular file, found a {_kind(info)}", archive=archive, member=info.name)


def _kind(info: tarfile.TarInfo) -> str:
    """Return a word for the member's type."""
    if info.issym():
        return "symbolic link"
    if info.islnk():
        return "hard link"
    if info.isdir():
        return "folder"
    if info.isreg():
        return "regular file"
    if info.isfifo():
        return "FIFO"
    if info.ischr() or info.isblk():
        return "device file"
    return f"member of tar type {info.type!r}"


def _read_member(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    """Return a regular member's bytes with a single read (no buffering layer in between)."""
    member = tar.extractfile(info)
    assert member is not None, "regular members always have a file object"
    # ExFileObject is an io.BufferedReader; reading its raw object directly saves a copy.
    return member.raw.read(info.size)


def _check_stream_complete(archive: Path, stream: _InflatingStream | None) -> None:
    """Raise if a compressed archive ended before its compressed stream did.

    tarfile stops iterating quietly when a stream ends in the middle of a header, which
    would make a truncated archive look complete; reading to the end and asking the
    decompressor whether it saw the end-of-stream marker catches that. (A truncated plain,
    uncompressed tar is caught only if a wanted member is cut or missing.)
    """
    if stream is None:
        return
    while stream.read(STREAM_BUFSIZE):
        pass
    if not stream.complete:
        raise ArchiveFormatError(
            "expected a complete compressed stream, found it cut short: the archive is truncated "
            "(an interrupted download?)",
            archive=archive,
        )


def _damaged(archive: Path, member: str | None, exc: BaseException, *, after: str | None = None) -> ArchiveFormatError:
    """Return the ArchiveFormatError for a low-level read failure `exc`.

    Args:
        archive: The archive being read.
        member: The member whose data was being read, if any.
        exc: The low-level error.
        after: The last member header read successfully, if any.
    """
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if member is not None:
        what = "expected the member's complete data, but the archive is truncated or corrupt"
    elif after is not None:
        what = f"expected another member header or the end of the archive after member {after!r}, but it is truncated or corrupt"
    else:
        what = "expected a complete tar archive (plain, gzip, bz2 or xz compressed), but it is not one or is truncated"
    return ArchiveFormatError(f"{what} ({detail})", archive=archive, member=member)
