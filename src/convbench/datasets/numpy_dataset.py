"""A Kedro dataset for one NumPy array in a `.npy` file, never pickled."""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
import numpy as np
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)

from convbench.atomic import write_atomically


class NumpyDataset(AbstractVersionedDataset[np.ndarray, np.ndarray]):
    """Loads and saves a NumPy array as `.npy` with `allow_pickle=False`.

    Object arrays are refused on save, so nothing this dataset writes or reads
    can execute code. `load_args: {mmap_mode: r}` memory-maps large arrays.

    Saving is atomic on local disks: the array goes to `.<name>.partial` beside the target, is
    flushed to disk, and replaces the target by one rename; a killed run or a full disk leaves
    the previous file whole. A file that does not hold a whole array (truncated, not `.npy`)
    fails to load with its path and the way to rebuild it.

    Example catalog entry::

        "{dataset}.{split}_images":
          type: convbench.datasets.NumpyDataset
          filepath: data/02_intermediate/{dataset}/{split}_images.npy
    """

    def __init__(
        self,
        *,
        filepath: str,
        load_args: dict[str, Any] | None = None,
        version: Version | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(filepath, version)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **(credentials or {}), **(fs_args or {}))
        self._load_args = dict(load_args or {})
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )

    def load(self) -> np.ndarray:
        path = get_filepath_str(self._get_load_path(), self._protocol)
        try:
            if self._protocol == "file" and self._load_args.get("mmap_mode"):
                return np.load(path, allow_pickle=False, **self._load_args)
            with self._fs.open(path, mode="rb") as stream:
                return np.load(stream, allow_pickle=False)
        except (ValueError, EOFError, OSError) as error:
            if isinstance(error, FileNotFoundError):
                raise
            raise DatasetError(
                f"{path} is not a whole .npy array ({error}). It is an intermediate file: delete it and "
                "rerun the pipeline that writes it (`kedro run --pipelines=<dataset>_ingestion` for "
                "02_intermediate, `<dataset>_preprocessing` for 05_model_input)."
            ) from error

    def save(self, data: np.ndarray) -> None:
        array = np.asarray(data)
        if array.dtype.hasobject:
            raise DatasetError(
                f"NumpyDataset stores plain arrays only (no pickling); "
                f"received dtype={array.dtype} for {self._filepath}"
            )
        path = get_filepath_str(self._get_save_path(), self._protocol)
        self._fs.makedirs(str(PurePosixPath(path).parent), exist_ok=True)
        if self._protocol == "file":
            write_atomically(Path(path), lambda stream: np.save(stream, array, allow_pickle=False), array.nbytes)
        else:  # object stores replace an object whole on upload
            with self._fs.open(path, mode="wb") as stream:
                np.save(stream, array, allow_pickle=False)
        self._invalidate_cache()

    def _exists(self) -> bool:
        path = get_filepath_str(self._get_load_path(), self._protocol)
        return self._fs.exists(path)

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": self._filepath,
            "protocol": self._protocol,
            "load_args": deepcopy(self._load_args),
            "version": self._version,
        }

    def _invalidate_cache(self) -> None:
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))
