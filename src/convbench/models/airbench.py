"""airbench94: the fast CIFAR-10 network of Jordan (2024), "94% on CIFAR-10 in 3.29 seconds on a single GPU".

A VGG-style net of about 2 M parameters:

    2x2 patch whitening (frozen, from the training images) -> GELU
    -> 3 blocks of [conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU], widths 64/256/256
    -> global max-pool -> linear (no bias) -> x 1/9 -> softmax

The first layer is a 2x2 "valid" convolution whose 24 filters are the eigenvectors of the
training images' 2x2x3 patch covariance, scaled by 1/sqrt(eigenvalue + eps), and their negatives
(so GELU keeps both signs). It is set from the data by `init_whitening` before training (the
training pipeline calls it with the normalised training split, see `@architecture(data_init=...)`)
and stays frozen, so every later layer sees decorrelated, unit-variance patch features.
Batch norm keeps its scale fixed at 1 (only the shift is learnt) with PyTorch momentum 0.6, as in
the reference. Written from the paper's description; the reference code (KellerJordan/airbench)
was read for its hyperparameters.

Differences from the reference, on purpose: the whitening bias is not trained (the layer is
frozen whole), biases get no separate learning-rate multiplier, and flips are random rather than
alternating between epochs. With `widths=(64, 256, 256)` the network has 1,971,328 trainable
parameters on 32x32x3 with 10 classes (the frozen whitening kernel adds 288).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers

from convbench.models.layers import batch_norm, conv2d, l2
from convbench.models.registration import architecture

WHITENING_LAYER = "whiten"
PATCH_SIZE = 2
WHITENING_EPS = 5e-4
"""Added to each eigenvalue before the 1/sqrt scaling (the reference's value), so near-zero directions stay bounded."""
MAX_WHITENING_PATCHES = 2_000_000
"""Patches used to estimate the covariance: a random sample of this many when the images hold more."""


def whitening_filters(images: np.ndarray, eps: float = WHITENING_EPS, seed: int = 0) -> np.ndarray:
    """The frozen first layer's kernel [2, 2, C, 4C] from float images [N, H, W, C].

    The first 2C filters are the eigenvectors of the 2x2xC patch covariance divided by
    sqrt(eigenvalue + eps), largest eigenvalue first; the last 2C are their negatives.
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4 or images.shape[1] < PATCH_SIZE or images.shape[2] < PATCH_SIZE:
        raise ValueError(f"Whitening needs images [N, H>=2, W>=2, C]. Received shape {images.shape}")
    patches = patch_vectors(images)
    if len(patches) > MAX_WHITENING_PATCHES:
        patches = patches[np.random.default_rng(seed).choice(len(patches), MAX_WHITENING_PATCHES, replace=False)]
    centred = patches - patches.mean(axis=0)
    covariance = centred.T @ centred / max(1, len(centred) - 1)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    scaled = eigenvectors[:, order] / np.sqrt(np.maximum(eigenvalues[order], 0.0) + eps)
    channels = images.shape[-1]
    kernel = scaled.reshape(PATCH_SIZE, PATCH_SIZE, channels, -1)
    return np.concatenate([kernel, -kernel], axis=-1).astype(np.float32)


def patch_vectors(images: np.ndarray) -> np.ndarray:
    """Every 2x2 patch (stride 1) of `images` [N, H, W, C] as a row of length 4C, in (row, column, channel) order."""
    n, height, width, channels = images.shape
    windows = np.lib.stride_tricks.sliding_window_view(images, (PATCH_SIZE, PATCH_SIZE), axis=(1, 2))
    # windows: [N, H-1, W-1, C, 2, 2] -> [N, H-1, W-1, 2, 2, C]
    windows = np.moveaxis(windows, 3, -1)
    return windows.reshape(n * (height - 1) * (width - 1), PATCH_SIZE * PATCH_SIZE * channels)


def init_whitening(model: keras.Model, images: np.ndarray) -> None:
    """Set the frozen whitening layer of `model` from normalised training images [N, H, W, C]."""
    layer = model.get_layer(WHITENING_LAYER)
    layer.set_weights([whitening_filters(images)])


def _batch_norm(name: str, momentum: float) -> layers.BatchNormalization:
    return batch_norm(name, momentum, epsilon=1e-12, scale=False)


def conv_group(x, filters: int, weight_decay: float, bn_momentum: float, name: str):
    """conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU."""
    x = conv2d(filters, 3, weight_decay, f"{name}_conv1")(x)
    x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    x = _batch_norm(f"{name}_bn1", bn_momentum)(x)
    x = layers.Activation("gelu", name=f"{name}_gelu1")(x)
    x = conv2d(filters, 3, weight_decay, f"{name}_conv2")(x)
    x = _batch_norm(f"{name}_bn2", bn_momentum)(x)
    return layers.Activation("gelu", name=f"{name}_gelu2")(x)


@architecture("airbench", data_init=init_whitening)
def build_airbench(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    widths: Sequence[int] = (64, 256, 256),
    weight_decay: float = 0.0,
    bn_momentum: float = 0.4,
    logit_scale: float = 1 / 9,
    name: str | None = None,
) -> keras.Model:
    """airbench94 for images of `input_shape`: float input, softmax over `num_classes`.

    Args:
        widths: Filters of the three conv groups (64/256/256 in the paper).
        weight_decay: PyTorch-style coupled decay on the trainable kernels (L2 of weight_decay / 2).
        bn_momentum: Keras' batch-norm momentum (0.4 = PyTorch's 0.6 of the reference).
        logit_scale: Multiplier on the logits before the softmax (1/9 in the reference).
    """
    widths = tuple(widths)
    if len(widths) != 3 or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
        raise ValueError(f"widths must be three positive integers. Received: widths={widths!r}")
    if not logit_scale > 0:
        raise ValueError(f"logit_scale must be positive. Received: logit_scale={logit_scale!r}")
    channels = input_shape[-1]
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = layers.Conv2D(
        2 * PATCH_SIZE * PATCH_SIZE * channels,  # the 2*2*C eigenvectors and their negatives
        PATCH_SIZE,
        padding="valid",
        use_bias=False,
        trainable=False,
        name=WHITENING_LAYER,
    )(inputs)
    x = layers.Activation("gelu", name="whiten_gelu")(x)
    for index, width in enumerate(widths, start=1):
        x = conv_group(x, width, weight_decay, bn_momentum, f"group{index}")
    x = layers.GlobalMaxPooling2D(name="global_pool")(x)
    x = layers.Dense(num_classes, use_bias=False, kernel_regularizer=l2(weight_decay), name="head")(x)
    x = layers.Rescaling(logit_scale, name="logit_scale")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name or "airbench")
