"""ResNet for CIFAR-sized inputs, v1 (He et al. 2016a) and v2 (He et al. 2016b).

v1, "Deep Residual Learning for Image Recognition", section 4.2: three stages of `n` basic
blocks with 16, 32 and 64 filters; depth = 6n + 2. ResNet-20 (n=3) has 0.27 M parameters,
ResNet-56 (n=9) 0.85 M, ResNet-110 (n=18) 1.7 M. Shortcuts that change shape are, as in the
paper's CIFAR experiments, parameter-free (option A: subsample by 2 and zero-pad the new
channels), or a strided 1x1 conv + BN (option B, `shortcut="projection"`). Parameter counts
above are trainable parameters with option A, the figure the paper and PyTorch report.

v2, "Identity Mappings in Deep Residual Networks": pre-activation bottleneck blocks
(BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1), three stages of `n` blocks going
16 -> 64, 64 -> 128 and 128 -> 256 channels (bottleneck widths 16, 32, 64), depth = 9n + 2,
a 1x1 projection shortcut (no BN) in the first block of each stage and a final BN-ReLU before
pooling, as in the paper's Torch code (KaimingHe/resnet-1k-layers). ResNet-164 (n=18) has
1.7 M parameters (Table 3); 1,703,258 here, with bias-free convolutions as in the PyTorch
ports. The Keras example "cifar10_resnet" v2 widens the bottlenecks of stages 2 and 3 to 64
and 128 and so has more parameters at the same depth.

Both versions keep the input's size through stage 1 and halve it in stages 2 and 3, so
28x28 and 48x48 inputs need no resizing.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from convbench.models.layers import bn_activation, classifier, conv2d, conv_bn
from convbench.models.registration import architecture

STAGE_FILTERS = (16, 32, 64)
"""Filters of the three stages: the basic blocks' width (v1), the bottlenecks' width (v2)."""

BOTTLENECK_EXPANSION = 4
"""A v2 block outputs this many times its bottleneck width."""

LAYERS_PER_BLOCK = {1: 2, 2: 3}
"""Weighted layers per block: depth = 3 stages * n blocks * this + stem + classifier."""


SHORTCUTS = ("identity", "projection")
DEFAULT_SHORTCUT = {1: "identity", 2: "projection"}
"""The shortcut each paper uses on CIFAR when a block changes shape."""


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
            residual_input = conv_bn(x, filters, 1, weight_decay, f"{name}_0", strides=strides, activation=None)
    x = conv_bn(x, filters, 3, weight_decay, f"{name}_1", strides=strides)
    x = conv_bn(x, filters, 3, weight_decay, f"{name}_2", activation=None)
    x = layers.Add(name=f"{name}_add")([residual_input, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def preact_bottleneck_block(
    x,
    filters: int,
    strides: int,
    weight_decay: float,
    name: str,
    shortcut: str = "projection",
    preactivated: bool = False,
):
    """Pre-activation bottleneck (v2): BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1 to 4x `filters`, plus `x`.

    When the block changes shape, its shortcut (a 1x1 conv, or option A) starts from the
    pre-activated input, shared with the residual branch, as in the paper's code.
    `preactivated`: `x` already went through BN-ReLU (the stem's), so the block adds none.
    """
    out_filters = BOTTLENECK_EXPANSION * filters
    activated = x if preactivated else bn_activation(x, f"{name}_1")
    residual_input = x
    if strides != 1 or x.shape[-1] != out_filters:
        if shortcut == "identity":
            residual_input = identity_shortcut(activated, out_filters, strides, name)
        else:
            residual_input = conv2d(out_filters, 1, weight_decay, f"{name}_0_conv", strides=strides)(activated)
    y = conv2d(filters, 1, weight_decay, f"{name}_1_conv", strides=1)(activated)
    y = bn_activation(y, f"{name}_2")
    y = conv2d(filters, 3, weight_decay, f"{name}_2_conv", strides=strides)(y)
    y = bn_activation(y, f"{name}_3")
    y = conv2d(out_filters, 1, weight_decay, f"{name}_3_conv", strides=1)(y)
    return layers.Add(name=f"{name}_add")([residual_input, y])


def _check_version(version: int) -> None:
    if version not in LAYERS_PER_BLOCK:
        raise ValueError(f"ResNet version must be one of {tuple(LAYERS_PER_BLOCK)}. Received: version={version!r}")


def blocks_per_stage(depth: int, version: int = 1) -> int:
    """Number of blocks per stage for a ResNet of `depth` layers: 6n + 2 (v1, basic), 9n + 2 (v2, bottleneck)."""
    _check_version(version)
    layers_per_stage = 3 * LAYERS_PER_BLOCK[version]
    if depth < layers_per_stage + 2 or (depth - 2) % layers_per_stage:
        examples = {1: "20, 32, 44, 56, 110", 2: "29, 56, 110, 164, 1001"}[version]
        raise ValueError(
            f"ResNet v{version} depth must be {layers_per_stage}n+2 with n >= 1 ({examples}, ...). "
            f"Received: depth={depth}"
        )
    return (depth - 2) // layers_per_stage


def _stem(inputs, weight_decay: float):
    return conv_bn(inputs, STAGE_FILTERS[0], 3, weight_decay, "stem")


def _v1_stages(x, n: int, weight_decay: float, shortcut: str):
    for stage, filters in enumerate(STAGE_FILTERS, start=1):
        for block in range(1, n + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            x = basic_block(x, filters, strides, weight_decay, f"stage{stage}_block{block}", shortcut)
    return x


def _v2_stages(x, n: int, weight_decay: float, shortcut: str):
    for stage, filters in enumerate(STAGE_FILTERS, start=1):
        for block in range(1, n + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            preactivated = stage == 1 and block == 1
            x = preact_bottleneck_block(
                x, filters, strides, weight_decay, f"stage{stage}_block{block}", shortcut, preactivated
            )
    return bn_activation(x, "post")


@architecture("resnet", "resnet_v2")
def build_resnet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    depth: int = 20,
    version: int = 1,
    weight_decay: float = 0.0,
    shortcut: str | None = None,
    name: str | None = None,
) -> keras.Model:
    """ResNet for CIFAR, float input, softmax over `num_classes`.

    Args:
        input_shape: (height, width, channels) of the float images.
        num_classes: Number of classes.
        depth: Weighted layers: 6n + 2 for v1 (20, 32, 44, 56, 110), 9n + 2 for v2 (29, 56, 110, 164).
        version: 1, post-activation basic blocks (He et al. 2016a); 2, pre-activation
            bottleneck blocks (He et al. 2016b).
        weight_decay: PyTorch-style coupled decay, applied as an L2 penalty on kernels.
        shortcut: For blocks that change shape: "identity" (option A, parameter-free) or
            "projection" (1x1 conv; + BN in v1). Default: the paper's choice, identity for v1,
            projection for v2.
        name: Model name; default "resnet{depth}" (v1) or "resnet{depth}v2".
    """
    n = blocks_per_stage(depth, version)
    shortcut = shortcut or DEFAULT_SHORTCUT[version]
    if shortcut not in SHORTCUTS:
        raise ValueError(f"shortcut must be one of {SHORTCUTS}. Received: shortcut={shortcut!r}")
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = _stem(inputs, weight_decay)
    x = _v1_stages(x, n, weight_decay, shortcut) if version == 1 else _v2_stages(x, n, weight_decay, shortcut)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = classifier(x, num_classes, weight_decay)
    default_name = f"resnet{depth}" if version == 1 else f"resnet{depth}v2"
    return keras.Model(inputs, outputs, name=name or default_name)
