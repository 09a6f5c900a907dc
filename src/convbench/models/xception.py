"""Xception for CIFAR-sized inputs (Chollet 2017, "Xception: Deep Learning with Depthwise Separable Convolutions").

Same layers and filter counts as the paper's Figure 5 and keras.applications.Xception: an entry
flow (two 3x3 convs with 32 and 64 filters, then three residual blocks of two separable convs with
128, 256 and 728 filters, each with a 1x1 conv + BN shortcut), a middle flow of `middle_blocks`
(8) residual blocks of three ReLU-SeparableConv(728)-BN, an exit flow (a residual block with 728
and 1024 filters, then separable convs with 1536 and 2048 filters, each followed by BN and ReLU),
global average pooling and the classifier. Convolutions have no biases.

Adapted to 32x32 (the ImageNet network downsamples 32x, which would leave 1x1 pixel before the
middle flow): the first conv has stride 1 (not 2) and 'same' padding, as does the second (the
original pads neither), and the third entry block keeps the resolution (unstrided 1x1 shortcut,
3x3 max pooling with stride 1), as in weiaicunzai/pytorch-cifar100's CIFAR Xception. So a 32x32
image is downsampled 8x, not 32x: entry flow at 32, 16, 8 pixels, middle flow at 8x8, exit flow
at 4x4 (28x28: middle 7x7, exit 4x4; 48x48: middle 12x12, exit 6x6). No input is resized.

Strides and padding change no weights: with the default configuration the model has exactly the
weights of keras.applications.Xception without its top (20,861,480 parameters, 20,806,952
trainable) plus the classifier: 20,827,442 trainable parameters on 32x32x3 images and 10 classes
(the paper reports 22.8 M with the 1000-class ImageNet classifier).
"""

from __future__ import annotations

import keras
from keras import layers

from convbench.models.layers import batch_norm, classifier, conv_bn, l2, scaled_filters
from convbench.models.registration import architecture

STEM_FILTERS = (32, 64)
ENTRY_BLOCKS = ((128, 2), (256, 2), (728, 1))
"""(filters, strides) of the entry-flow residual blocks; the third is unstrided for 32x32 inputs."""
MIDDLE_FILTERS = 728
EXIT_BLOCK_FILTERS = (728, 1024)
EXIT_FILTERS = (1536, 2048)


def separable_conv_bn(x, filters: int, weight_decay: float, name: str):
    """A 3x3 depthwise separable convolution without bias, then batch norm (`conv_bn` with a separable conv)."""
    x = layers.SeparableConv2D(
        filters,
        3,
        padding="same",
        use_bias=False,
        depthwise_initializer="he_normal",
        pointwise_initializer="he_normal",
        depthwise_regularizer=l2(weight_decay),
        pointwise_regularizer=l2(weight_decay),
        name=name,
    )(x)
    return batch_norm(f"{name}_bn")(x)


def downsampling_block(
    x, filters: tuple[int, int], strides: int, weight_decay: float, name: str, relu_first: bool = True
):
    """Two separable convs and 3x3 max pooling, plus a 1x1 conv + BN shortcut (entry and exit flows).

    `relu_first` is False for the first block, whose input has just been through a ReLU.
    """
    shortcut = conv_bn(x, filters[-1], 1, weight_decay, f"{name}_shortcut", strides=strides, activation=None)
    for index, block_filters in enumerate(filters, start=1):
        if relu_first or index > 1:
            x = layers.Activation("relu", name=f"{name}_sepconv{index}_relu")(x)
        x = separable_conv_bn(x, block_filters, weight_decay, f"{name}_sepconv{index}")
    x = layers.MaxPooling2D(3, strides=strides, padding="same", name=f"{name}_pool")(x)
    return layers.Add(name=f"{name}_add")([x, shortcut])


def middle_block(x, filters: int, weight_decay: float, name: str):
    """Three ReLU-SeparableConv-BN with an identity shortcut."""
    shortcut = x
    for index in range(1, 4):
        x = layers.Activation("relu", name=f"{name}_sepconv{index}_relu")(x)
        x = separable_conv_bn(x, filters, weight_decay, f"{name}_sepconv{index}")
    return layers.Add(name=f"{name}_add")([x, shortcut])


@architecture("xception")
def build_xception(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    middle_blocks: int = 8,
    width: float = 1.0,
    weight_decay: float = 0.0,
    name: str | None = None,
) -> keras.Model:
    """Xception adapted to CIFAR-sized images (8x downsampling): float input, softmax over `num_classes`.

    Args:
        input_shape: Image shape (height, width, channels).
        num_classes: Number of classes.
        middle_blocks: Number of middle-flow residual blocks (8 in the paper; 0 leaves entry and exit flows).
        width: Multiplier on every filter count (1.0 is Xception; each count is rounded, at least 1).
        weight_decay: PyTorch-style coupled decay, applied as an L2 penalty on kernels
            (depthwise and pointwise kernels alike).
        name: Model name; "xception" by default.
    """
    if isinstance(middle_blocks, bool) or not isinstance(middle_blocks, int) or middle_blocks < 0:
        raise ValueError(f"middle_blocks must be a non-negative integer. Received: middle_blocks={middle_blocks!r}")
    if not width > 0:
        raise ValueError(f"width must be positive. Received: width={width}")

    def scaled(filters: int) -> int:
        return scaled_filters(filters, width)

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = inputs
    for index, filters in enumerate(STEM_FILTERS, start=1):
        x = conv_bn(x, scaled(filters), 3, weight_decay, f"entry_conv{index}")
    for index, (filters, strides) in enumerate(ENTRY_BLOCKS, start=1):
        x = downsampling_block(
            x, (scaled(filters),) * 2, strides, weight_decay, f"entry_block{index}", relu_first=index > 1
        )
    for index in range(1, middle_blocks + 1):
        x = middle_block(x, scaled(MIDDLE_FILTERS), weight_decay, f"middle_block{index}")
    x = downsampling_block(x, tuple(map(scaled, EXIT_BLOCK_FILTERS)), 2, weight_decay, "exit_block")
    for index, filters in enumerate(EXIT_FILTERS, start=1):
        x = separable_conv_bn(x, scaled(filters), weight_decay, f"exit_sepconv{index}")
        x = layers.Activation("relu", name=f"exit_sepconv{index}_relu")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = classifier(x, num_classes, weight_decay)
    return keras.Model(inputs, outputs, name=name or "xception")
