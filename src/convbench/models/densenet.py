"""DenseNet-BC for CIFAR-sized inputs (Huang et al. 2017, "Densely Connected Convolutional Networks").

A 3x3 stem conv to 2k channels (k = `growth_rate`), three dense blocks of (depth - 4) / 6
bottleneck layers each (BN-ReLU-conv1x1 to 4k, BN-ReLU-conv3x3 to k, concatenated to the
layer's input), separated by transitions (BN-ReLU-conv1x1 to `compression` x channels,
2x2 average pooling), and a final BN-ReLU, global average pooling and softmax. With
`dropout`, each convolution of the dense layers and transitions is followed by dropout, as in
the paper's runs without data augmentation.

DenseNet-BC L=100, k=12 has 0.8 M parameters (Table 2): 769,162 trainable on CIFAR-10, as in
the PyTorch reference; L=250, k=24 15.3 M; L=190, k=40 25.6 M.

The two transitions halve the input's size twice, so 28x28 (-> 7x7) and 48x48 inputs need no
resizing.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from convbench.models.layers import bn_activation, classifier, conv2d
from convbench.models.registration import architecture

NUM_BLOCKS = 3
BOTTLENECK_WIDTH = 4
"""The 1x1 conv of a bottleneck layer outputs this many times `growth_rate` channels."""


def _bn_reluconv2d(x, filters: int, kernel: int, dropout: float, weight_decay: float, name: str):
    x = bn_activation(x, name)
    x = conv2d(filters, kernel, weight_decay, f"{name}_conv")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def bottleneck_layer(x, growth_rate: int, dropout: float, weight_decay: float, name: str):
    """`x` with `growth_rate` new feature maps (BN-ReLU-conv1x1 to 4k, BN-ReLU-conv3x3 to k) concatenated."""
    y = _bn_reluconv2d(x, BOTTLENECK_WIDTH * growth_rate, 1, dropout, weight_decay, f"{name}_1")
    y = _bn_reluconv2d(y, growth_rate, 3, dropout, weight_decay, f"{name}_2")
    return layers.Concatenate(name=f"{name}_concat")([x, y])


def transition(x, compression: float, dropout: float, weight_decay: float, name: str):
    """BN-ReLU-conv1x1 to floor(`compression` x channels), then 2x2 average pooling."""
    filters = math.floor(compression * x.shape[-1])
    x = _bn_reluconv2d(x, filters, 1, dropout, weight_decay, name)
    return layers.AveragePooling2D(2, name=f"{name}_pool")(x)


def layers_per_block(depth: int) -> int:
    """Bottleneck layers in each of the three dense blocks of a DenseNet-BC of `depth` layers: (depth - 4) / 6."""
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(
            f"DenseNet-BC depth must be 6n+4 with n >= 1 (40, 100, 190, 250, ...). Received: depth={depth}"
        )
    return (depth - 4) // 6


def _check_hyperparameters(growth_rate: int, compression: float, dropout: float) -> None:
    if growth_rate < 1:
        raise ValueError(f"growth_rate must be at least 1. Received: growth_rate={growth_rate}")
    if not 0 < compression <= 1:
        raise ValueError(f"compression must be in (0, 1]. Received: compression={compression}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")


@architecture("densenet")
def build_densenet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    depth: int = 100,
    growth_rate: int = 12,
    compression: float = 0.5,
    dropout: float = 0.0,
    weight_decay: float = 0.0,
    name: str | None = None,
) -> keras.Model:
    """DenseNet-BC for CIFAR, float input, softmax over `num_classes`.

    Args:
        input_shape: (height, width, channels) of the float images.
        num_classes: Number of classes.
        depth: Weighted layers, 6n + 4: n bottleneck layers (two convs each) per dense block.
        growth_rate: Feature maps each bottleneck layer adds (k).
        compression: Fraction of the channels each transition keeps (theta).
        dropout: Dropout rate after each convolution but the stem; the paper uses 0.2 only
            without data augmentation.
        weight_decay: PyTorch-style coupled decay, applied as an L2 penalty on kernels.
        name: Model name; default "densenet_bc{depth}_k{growth_rate}".
    """
    n = layers_per_block(depth)
    _check_hyperparameters(growth_rate, compression, dropout)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = conv2d(2 * growth_rate, 3, weight_decay, "stem_conv")(inputs)
    for block in range(1, NUM_BLOCKS + 1):
        for layer in range(1, n + 1):
            x = bottleneck_layer(x, growth_rate, dropout, weight_decay, f"block{block}_layer{layer}")
        if block < NUM_BLOCKS:
            x = transition(x, compression, dropout, weight_decay, f"transition{block}")
    x = bn_activation(x, "post")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = classifier(x, num_classes, weight_decay)
    return keras.Model(inputs, outputs, name=name or f"densenet_bc{depth}_k{growth_rate}")
