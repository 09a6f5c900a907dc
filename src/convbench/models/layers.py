"""Pieces every architecture family shares: weight decay, batch norm, the classifier, input resizing."""

from __future__ import annotations

import keras
from keras import layers

PRETRAINED_BASE = "pretrained_base"
"""Name of the nested model holding a transfer model's pretrained part; fine-tuning recipes freeze it first."""


def l2(weight_decay: float) -> keras.regularizers.Regularizer | None:
    """L2 penalty equal to PyTorch-style coupled weight decay `weight_decay` (grad += wd * w)."""
    return keras.regularizers.L2(weight_decay / 2) if weight_decay else None


def conv2d(
    filters: int, kernel: int, weight_decay: float, name: str, strides: int = 1, dilation: int = 1
) -> layers.Conv2D:
    """A "same"-padded convolution without bias (batch norm follows), He-initialised, with L2 decay."""
    return layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding="same",
        dilation_rate=dilation,
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=l2(weight_decay),
        name=name,
    )


def scaled_filters(filters: int, width: float) -> int:
    """`filters` times the width multiplier `width`, rounded, at least 1."""
    return max(1, round(filters * width))


def batch_norm(name: str, momentum: float = 0.9, epsilon: float = 1e-5) -> layers.BatchNormalization:
    """Batch normalisation with PyTorch's defaults (its momentum 0.1 is 0.9 here), as CIFAR recipes use."""
    return layers.BatchNormalization(momentum=momentum, epsilon=epsilon, name=name)


def classifier(x, num_classes: int, weight_decay: float = 0.0, name: str = "predictions"):
    """The softmax layer over `num_classes`, kept in float32 under mixed precision."""
    return layers.Dense(
        num_classes,
        activation="softmax",
        kernel_regularizer=l2(weight_decay),
        dtype="float32",
        name=name,
    )(x)


def resize_to_at_least(x, min_size: int, name: str = "upsample"):
    """`x` resized (bilinear) so that its height and width are at least `min_size`; unchanged if they are.

    For architectures whose strides need a larger image than the input (e.g. MNIST's 28x28
    through five 2x2 poolings). The aspect ratio is kept.
    """
    height, width = x.shape[1], x.shape[2]
    if min(height, width) >= min_size:
        return x
    scale = min_size / min(height, width)
    return layers.Resizing(round(height * scale), round(width * scale), interpolation="bilinear", name=name)(x)
