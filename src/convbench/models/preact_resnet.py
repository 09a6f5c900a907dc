"""The course's pre-activation residual network: a small ResNet with ELU, after He et al. 2016b.

Identity Mappings in Deep Residual Networks (He et al. 2016b) moves batch norm and the
activation in front of each convolution; the course's network does so with ELU (Clevert et
al. 2016) instead of ReLU. A 3x3 stem conv to 16 channels, three stages of `blocks_per_stage`
blocks of (BN-ELU-conv3x3) x 2 with 16, 32 and 64 filters, an identity skip (a strided 1x1
projection where the shape changes, taken from the pre-activated input), a final BN-ELU,
global average pooling and softmax. Depth = 6 * blocks_per_stage + 2 weighted layers; the
default (3 blocks, depth 20) has 272,282 trainable parameters on CIFAR-10 (bias-free
convolutions, each followed by batch norm). No published reference figure.

The course regularises every kernel with `keras.regularizers.l2(1e-4)`; in this project's
convention (`weight_decay` is PyTorch-style coupled decay, an L2 penalty of weight_decay / 2)
that is `weight_decay=2e-4`, the default here.

Stages 2 and 3 halve the input's size, so 28x28 and 48x48 inputs need no resizing.
"""

from __future__ import annotations

import keras
from keras import layers

from convbench.models.layers import bn_activation, classifier, conv2d
from convbench.models.registration import architecture

STAGE_FILTERS = (16, 32, 64)

COURSE_WEIGHT_DECAY = 2e-4
"""The course's Keras `l2(1e-4)` expressed as coupled weight decay (L2 factor = weight_decay / 2)."""


def preact_block(x, filters: int, strides: int, weight_decay: float, name: str):
    """(BN-ELU-conv3x3) x 2 plus the input, or its 1x1 projection when the block changes shape."""
    activated = bn_activation(x, f"{name}_1", activation="elu")
    residual_input = x
    if strides != 1 or x.shape[-1] != filters:
        residual_input = conv2d(filters, 1, weight_decay, f"{name}_0_conv", strides=strides)(activated)
    y = conv2d(filters, 3, weight_decay, f"{name}_1_conv", strides=strides)(activated)
    y = bn_activation(y, f"{name}_2", activation="elu")
    y = conv2d(filters, 3, weight_decay, f"{name}_2_conv", strides=1)(y)
    return layers.Add(name=f"{name}_add")([residual_input, y])


@architecture("preact_resnet")
def build_preact_resnet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    blocks_per_stage: int = 3,
    weight_decay: float = COURSE_WEIGHT_DECAY,
    name: str | None = None,
) -> keras.Model:
    """The course's pre-activation ResNet with ELU, float input, softmax over `num_classes`.

    Args:
        input_shape: (height, width, channels) of the float images.
        num_classes: Number of classes.
        blocks_per_stage: Residual blocks in each of the three stages (depth = 6 * blocks + 2).
        weight_decay: PyTorch-style coupled decay, an L2 penalty on kernels; the default 2e-4
            is the course's Keras `l2(1e-4)`.
        name: Model name; default "preact_resnet{depth}".
    """
    if blocks_per_stage < 1:
        raise ValueError(f"blocks_per_stage must be at least 1. Received: blocks_per_stage={blocks_per_stage}")
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = conv2d(STAGE_FILTERS[0], 3, weight_decay, "stem_conv", strides=1)(inputs)
    for stage, filters in enumerate(STAGE_FILTERS, start=1):
        for block in range(1, blocks_per_stage + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            x = preact_block(x, filters, strides, weight_decay, f"stage{stage}_block{block}")
    x = bn_activation(x, "post", activation="elu")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = classifier(x, num_classes, weight_decay)
    return keras.Model(inputs, outputs, name=name or f"preact_resnet{6 * blocks_per_stage + 2}")
