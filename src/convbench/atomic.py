"""Atomic file writes: a killed process or a full disk never leaves a half-written file in place."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


class DiskFullError(OSError):
    """The disk filled while writing `path`; the message names the path and the bytes needed."""


def partial_path(path: Path) -> Path:
    """Where `path` is written before it is renamed into place: hidden, same folder, same suffix
    (`model.keras` -> `.model.partial.keras`, which Keras' `save` accepts)."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def write_atomically(path: Path, write: Callable[[BinaryIO], object], size_hint: int | None = None) -> None:
    """Calls `write(stream)` on a temporary file beside `path`, flushes it to disk, then renames it over `path`.

    Until the rename, `path` keeps its previous content (or stays absent); the rename is atomic on
    POSIX file systems. On any failure the temporary file is removed.

    Raises:
        DiskFullError: no space left on the device (ENOSPC or EDQUOT), naming `path`, the bytes the
            write needed (`size_hint`, or what was written when it failed) and the bytes free.
    """
    path = Path(path)
    partial = partial_path(path)
    try:
        with open(partial, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        replace_into_place(partial, path)
    except BaseException as error:
        written = partial.stat().st_size if partial.exists() else 0
        full = isinstance(error, OSError) and is_disk_full(error, path.parent, (size_hint or 0) - written)
        partial.unlink(missing_ok=True)
        if full:
            raise disk_full(path, size_hint or written, error) from error
        raise


def is_disk_full(error: OSError, folder: Path, bytes_left: int) -> bool:
    """Whether `error`, raised while writing in `folder`, means the disk is full.

    ENOSPC and EDQUOT say so; NumPy's `tofile` raises a bare `OSError("N requested and M written")`,
    so an error without errno counts as a full disk when less space is free than was left to write.
    """
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return error.errno is None and bytes_left > 0 and shutil.disk_usage(folder).free < bytes_left


def replace_into_place(partial: Path, path: Path) -> None:
    """Renames the finished `partial` over `path` (one atomic step; a seam the tests kill at)."""
    os.replace(partial, path)


def disk_full(path: Path, needed: int, error: OSError) -> DiskFullError:
    """The `DiskFullError` for a write of `needed` bytes to `path` that failed with `error`."""
    free = shutil.disk_usage(path.parent if path.parent.exists() else Path.cwd()).free
    return DiskFullError(
        errno.ENOSPC,
        f"No space left on the device while writing {path}: it needs about {needed:,} bytes and "
        f"{free:,} are free. The previous version of the file, if any, is untouched. Free some space "
        "(or point globals.data_root at a larger disk) and rerun the same command.",
        str(path),
    )
