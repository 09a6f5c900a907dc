"""GoogLeNet (Inception v1) for CIFAR-sized inputs, as in kuangliu/pytorch-cifar (models/googlenet.py).

Szegedy et al. 2015, "Going Deeper with Convolutions". The CIFAR variant replaces the ImageNet
stem (7x7/2 conv, pooling, 3x3 conv, pooling: 4x downsampling) by one 3x3 conv with 192 filters
at full resolution, drops the auxiliary classifiers and dropout, and puts batch norm after every
convolution. Each Inception module concatenates four branches of conv-BN-ReLU: a 1x1 conv; a 1x1
reduction then a 3x3 conv; a 1x1 reduction then two 3x3 convs (in place of the paper's 5x5); a
3x3/1 max pooling then a 1x1 projection. Modules 3a, 3b, a 3x3/2 max pooling, 4a-4e, a 3x3/2 max
pooling, 5a, 5b, global average pooling and the classifier follow the stem, so a 32x32 image is
seen at 32, 16 and 8 pixels; 28x28 at 28, 14, 7; 48x48 at 48, 24, 12. No input is resized.

Convolutions have biases, as pytorch-cifar's do: the full-width model has 6,166,250 trainable
parameters for 10 classes (pytorch-cifar: 6.17 M; the ImageNet GoogLeNet has about 6.8 M).
"""

from __future__ import annotations

from typing import NamedTuple

import keras
from keras import layers

from convbench.models.layers import classifier, conv_bn, scaled_filters
from convbench.models.registration import architecture


class InceptionFilters(NamedTuple):
    """Filter counts of one Inception module, in the paper's Table 1 order."""

    conv1x1: int
    reduce3x3: int
    conv3x3: int
    reduce_double3x3: int
    double3x3: int
    pool_projection: int

    @property
    def output_channels(self) -> int:
        return self.conv1x1 + self.conv3x3 + self.double3x3 + self.pool_projection


STEM_FILTERS = 192
STAGES: tuple[tuple[tuple[str, InceptionFilters], ...], ...] = (
    (
        ("inception3a", InceptionFilters(64, 96, 128, 16, 32, 32)),
        ("inception3b", InceptionFilters(128, 128, 192, 32, 96, 64)),
    ),
    (
        ("inception4a", InceptionFilters(192, 96, 208, 16, 48, 64)),
        ("inception4b", InceptionFilters(160, 112, 224, 24, 64, 64)),
        ("inception4c", InceptionFilters(128, 128, 256, 24, 64, 64)),
        ("inception4d", InceptionFilters(112, 144, 288, 32, 64, 64)),
        ("inception4e", InceptionFilters(256, 160, 320, 32, 128, 128)),
    ),
    (
        ("inception5a", InceptionFilters(256, 160, 320, 32, 128, 128)),
        ("inception5b", InceptionFilters(384, 192, 384, 48, 128, 128)),
    ),
)
"""The three stages of GoogLeNet (Table 1 of the paper), separated by 3x3/2 max pooling."""


def inception_module(x, filters: InceptionFilters, weight_decay: float, name: str):
    """The four Inception branches on `x`, concatenated along channels."""
    branch1x1 = conv_bn(x, filters.conv1x1, 1, weight_decay, f"{name}_1x1", use_bias=True)

    branch3x3 = conv_bn(x, filters.reduce3x3, 1, weight_decay, f"{name}_3x3_reduce", use_bias=True)
    branch3x3 = conv_bn(branch3x3, filters.conv3x3, 3, weight_decay, f"{name}_3x3", use_bias=True)

    branch_double3x3 = conv_bn(x, filters.reduce_double3x3, 1, weight_decay, f"{name}_double3x3_reduce", use_bias=True)
    branch_double3x3 = conv_bn(
        branch_double3x3, filters.double3x3, 3, weight_decay, f"{name}_double3x3_1", use_bias=True
    )
    branch_double3x3 = conv_bn(
        branch_double3x3, filters.double3x3, 3, weight_decay, f"{name}_double3x3_2", use_bias=True
    )

    branch_pool = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    branch_pool = conv_bn(branch_pool, filters.pool_projection, 1, weight_decay, f"{name}_pool_proj", use_bias=True)

    return layers.Concatenate(name=f"{name}_concat")([branch1x1, branch3x3, branch_double3x3, branch_pool])


@architecture("inception")
def build_inception(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    width: float = 1.0,
    weight_decay: float = 0.0,
    name: str | None = None,
) -> keras.Model:
    """GoogLeNet for CIFAR (pytorch-cifar's variant): float input, softmax over `num_classes`.

    Args:
        input_shape: Image shape (height, width, channels).
        num_classes: Number of classes.
        width: Multiplier on every filter count (1.0 is GoogLeNet; each count is rounded, at least 1).
        weight_decay: PyTorch-style coupled decay, applied as an L2 penalty on kernels.
        name: Model name; "inception" by default.
    """
    if not width > 0:
        raise ValueError(f"width must be positive. Received: width={width}")
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = conv_bn(inputs, scaled_filters(STEM_FILTERS, width), 3, weight_decay, "stem", use_bias=True)
    for stage, modules in enumerate(STAGES):
        if stage > 0:
            x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool{stage + 2}")(x)
        for module_name, filters in modules:
            module_filters = InceptionFilters(*(scaled_filters(count, width) for count in filters))
            x = inception_module(x, module_filters, weight_decay, module_name)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = classifier(x, num_classes, weight_decay)
    return keras.Model(inputs, outputs, name=name or "inception")
