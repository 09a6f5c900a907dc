"""A read-only Kedro dataset whose value is a local path taken from the catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError


class PathDataset(AbstractDataset[None, Path]):
    """Loads as the `pathlib.Path` it is configured with; it cannot be saved.

    Gives a node a place on disk it manages itself (e.g. training checkpoints)
    while the location stays in the catalog, where a user can move it.
    """

    def __init__(self, *, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> Path:
        return self._path

    def save(self, data: None) -> None:
        raise DatasetError(f"PathDataset is read-only; cannot save to {self._path}")

    def _exists(self) -> bool:
        return True

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
