"""Stand-ins for Keras' cached ImageNet weight files: random weights in the same HDF5 format and file name."""

from __future__ import annotations

from pathlib import Path

import h5py
import keras
import numpy as np
from keras.src.legacy.saving import legacy_h5_format

from convbench.models.mobilenet import imagenet_weights_path


def write_mobilenet_v2_weights(path: Path, alpha: float = 0.35, input_size: int = 96, seed: int = 0) -> Path:
    """A MobileNetV2 no-top weights file at `path` with random weights (BN statistics included)."""
    source = keras.applications.MobileNetV2(
        weights=None, include_top=False, alpha=alpha, input_shape=(input_size, input_size, 3)
    )
    rng = np.random.default_rng(seed)
    source.set_weights([np.abs(rng.normal(size=w.shape)).astype("float32") + 0.1 for w in source.get_weights()])
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, source)
    return path


def fill_keras_cache(keras_home: Path, alpha: float = 1.0, input_size: int = 96) -> Path:
    """The stand-in file where a run with `KERAS_HOME=keras_home` looks for Keras' ImageNet weights."""
    import os

    previous = os.environ.get("KERAS_HOME")
    os.environ["KERAS_HOME"] = str(keras_home)
    try:
        target = imagenet_weights_path(alpha, input_size)
    finally:
        if previous is None:
            del os.environ["KERAS_HOME"]
        else:
            os.environ["KERAS_HOME"] = previous
    return write_mobilenet_v2_weights(target, alpha, input_size)
