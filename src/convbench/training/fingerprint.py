"""What makes two trainings the same, as a short hash: a checkpoint or a budget plan is kept per fingerprint."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import keras
import numpy as np


def fingerprint(recipe: dict[str, Any], model: keras.Model, *arrays: np.ndarray) -> str:
    """A short hash of what makes two trainings the same: recipe, model (normalisation included), data."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(json.dumps(recipe, sort_keys=True, default=str).encode())
    digest.update(model.to_json().encode())
    for array in arrays:
        digest.update(str((array.shape, array.dtype)).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()
