"""Pieces every architecture family shares: weight decay, convolutions, batch norm, the classifier, input resizing."""

from __future__ import annotations

import keras
from keras import layers

PRETRAINED_BASE = "pretrained_base"
"""Name of the nested model holding a transfer model's pretrained part; fine-tuning recipes freeze it first."""


def l2(weight_decay: float) -> keras.regularizers.Regularizer | None:
    """L2 penalty equal to PyTorch-style coupled weight decay `weight_decay` (grad += wd * w)."""
    return keras.regularizers.L2(weight_decay / 2) if weight_decay else None


def conv2d(
    filters: int,
    kernel: int,
    weight_decay: float,
    name: str,
    strides: int = 1,
    dilation: int = 1,
    *,
    use_bias: bool = False,
) -> layers.Conv2D:
    """A "same"-padded convolution, He-initialised, with L2 decay; without bias (batch norm follows) by default.

    `use_bias=True` keeps the bias, as the papers that put batch norm after a biased convolution do
    (AlexNet, GoogLeNet and VGG in their CIFAR versions).
    """
    return layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding="same",
        dilation_rate=dilation,
        use_bias=use_bias,
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


def bn_activation(x, name: str, activation: str = "relu"):
    """`x` through `batch_norm` and `activation`, named `{name}_bn` and `{name}_{activation}`: the
    pre-activation order of ResNet v2, DenseNet and the course's ELU network (`conv_bn` is the other order)."""
    x = batch_norm(f"{name}_bn")(x)
    return layers.Activation(activation, name=f"{name}_{activation}")(x)


def conv_bn(
    x,
    filters: int,
    kernel: int,
    weight_decay: float,
    name: str,
    *,
    strides: int = 1,
    dilation: int = 1,
    activation: str | None = "relu",
    use_bias: bool = False,
    conv_name: str | None = None,
):
    """`x` through a `conv2d`, `batch_norm` and, unless `activation` is None, that activation.

    The layers are named `{name}_conv`, `{name}_bn` and `{name}_{activation}` (`{name}_relu` by
    default); `conv_name` names the convolution otherwise (AlexNet's and VGG's are named `name`
    itself). Saved models and the tests find layers by these names: keep them when refactoring.

    Args:
        x: The input tensor.
        filters: Output channels.
        kernel: Kernel size.
        weight_decay: PyTorch-style coupled decay on the kernel (see `l2`).
        name: Prefix of the layer names.
        strides: Convolution strides.
        dilation: Convolution dilation rate.
        activation: A Keras activation name, or None for a linear output (before a residual addition).
        use_bias: Whether the convolution has a bias (see `conv2d`).
        conv_name: The convolution's name, if not `{name}_conv`.
    """
    x = conv2d(filters, kernel, weight_decay, conv_name or f"{name}_conv", strides, dilation, use_bias=use_bias)(x)
    x = batch_norm(f"{name}_bn")(x)
    if activation is None:
        return x
    return layers.Activation(activation, name=f"{name}_{activation}")(x)


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
