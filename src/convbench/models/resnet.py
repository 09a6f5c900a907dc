"""ResNet for CIFAR-sized inputs (He et al. 2016, "Deep Residual Learning", section 4.2).

Three stages of `n` basic blocks with 16, 32 and 64 filters; depth = 6n + 2.
ResNet-20 (n=3) has 0.27 M parameters, ResNet-56 (n=9) 0.85 M, ResNet-110 (n=18) 1.7 M.
Shortcuts that change shape are, as in the paper's CIFAR experiments, parameter-free
(option A: subsample by 2 and zero-pad the new channels), or a strided 1x1 conv + BN
(option B, `shortcut="projection"`). Parameter counts above are trainable parameters with
option A, the figure the paper and PyTorch report.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from convbench.models.layers import batch_norm, classifier, l2

STAGE_FILTERS = (16, 32, 64)


def _conv(filters: int, kernel: int, strides: int, weight_decay: float, name: str):
    return layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=l2(weight_decay),
        name=name,
    )


SHORTCUTS = ("identity", "projection")


def identity_shortcut(x, filters: int, strides: int, name: str):
    """Option A: keep every `strides`-th pixel and zero-pad channels up to `filters`, no trainable weights.

    Written as a frozen 1x1 convolution whose kernel is an identity matrix padded with zeros,
    so saved models load without custom code.
    """
    channels = x.shape[-1]
    kernel = np.eye(channels, filters, dtype="float32").reshape(1, 1, channels, filters)
    return layers.Conv2D(
        filters,
        1,
        strides=strides,
        use_bias=False,
        trainable=False,
        kernel_initializer=keras.initializers.Constant(kernel),
        name=f"{name}_0_identity",
    )(x)


def basic_block(x, filters: int, strides: int, weight_decay: float, name: str, shortcut: str = "identity"):
    """Two 3x3 conv-BN layers plus a shortcut, activation after the addition (v1)."""
    residual_input = x
    if strides != 1 or x.shape[-1] != filters:
        if shortcut == "identity":
            residual_input = identity_shortcut(x, filters, strides, name)
        else:
            residual_input = _conv(filters, 1, strides, weight_decay, f"{name}_0_conv")(x)
            residual_input = batch_norm(f"{name}_0_bn")(residual_input)
    x = _conv(filters, 3, strides, weight_decay, f"{name}_1_conv")(x)
    x = batch_norm(f"{name}_1_bn")(x)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = _conv(filters, 3, 1, weight_decay, f"{name}_2_conv")(x)
    x = batch_norm(f"{name}_2_bn")(x)
    x = layers.Add(name=f"{name}_add")([residual_input, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def blocks_per_stage(depth: int) -> int:
    """Number of basic blocks per stage for a ResNet v1 of `depth` layers (6n + 2)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"ResNet v1 depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110, ...). Received: depth={depth}")
    return (depth - 2) // 6


def build_resnet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    depth: int = 20,
    weight_decay: float = 0.0,
    shortcut: str = "identity",
    name: str | None = None,
) -> keras.Model:
    """ResNet v1 for CIFAR: `depth` = 6n + 2 layers, float input, softmax over `num_classes`.

    `weight_decay` is PyTorch-style coupled decay, applied as an L2 penalty on kernels.
    """
    n = blocks_per_stage(depth)
    if shortcut not in SHORTCUTS:
        raise ValueError(f"shortcut must be one of {SHORTCUTS}. Received: shortcut={shortcut!r}")
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = _conv(STAGE_FILTERS[0], 3, 1, weight_decay, "stem_conv")(inputs)
    x = batch_norm("stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    for stage, filters in enumerate(STAGE_FILTERS, start=1):
        for block in range(1, n + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            x = basic_block(x, filters, strides, weight_decay, f"stage{stage}_block{block}", shortcut)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = classifier(x, num_classes, weight_decay)
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}")
