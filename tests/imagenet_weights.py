"""Stand-ins for Keras' cached ImageNet weight files: random weights in the same HDF5 format and file name."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import keras
import numpy as np

from convbench.models.mobilenet import imagenet_weights_path


def write_mobilenet_v2_weights(path: Path, alpha: float = 0.35, input_size: int = 96, seed: int = 0) -> Path:
    """A MobileNetV2 no-top weights file at `path` with random weights (BN statistics included)."""
    source = keras.applications.MobileNetV2(
        weights=None, include_top=False, alpha=alpha, input_shape=(input_size, input_size, 3)
    )
    rng = np.random.default_rng(seed)
    source.set_weights([np.abs(rng.normal(size=w.shape)).astype("float32") + 0.1 for w in source.get_weights()])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_legacy_h5_weights(source, path)
    return path


def write_legacy_h5_weights(model: keras.Model, path: Path) -> Path:
    """`model`'s weights at `path` in the legacy HDF5 layout of the keras-applications files, written with h5py.

    The layout `Model.load_weights` reads from a `.h5` file (topological loading): the root's
    `layer_names` attribute lists every layer in order; each layer has a group of that name whose
    `weight_names` attribute lists its weights, trainable first, then non-trainable (a BN's moving
    statistics), each a dataset `<layer>/<weight>:0` in that group; layers without weights
    have an empty list. Keras matches layers with weights to the file's, in order.
    """
    with h5py.File(path, "w") as file:
        file.attrs["layer_names"] = np.array([layer.name for layer in model.layers], dtype="S")
        file.attrs["backend"] = np.bytes_(keras.backend.backend())
        file.attrs["keras_version"] = np.bytes_(keras.__version__)
        for layer in model.layers:
            group = file.create_group(layer.name)
            variables = layer.trainable_weights + layer.non_trainable_weights
            names = [f"{layer.name}/{variable.name}:0" for variable in variables]
            group.attrs["weight_names"] = np.array(names, dtype="S")
            for name, variable in zip(names, variables):
                group.create_dataset(name, data=keras.ops.convert_to_numpy(variable))
    return path


def fill_keras_cache(keras_home: Path, alpha: float = 1.0, input_size: int = 96) -> Path:
    """The stand-in file where a run with `KERAS_HOME=keras_home` looks for Keras' ImageNet weights."""
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
