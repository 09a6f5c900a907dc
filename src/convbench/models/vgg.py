"""VGG networks (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale Image Recognition").

Both are stacks of stages of 3x3 convolutions, each stage closed by 2x2 max pooling:

- `vgg16`: the CIFAR VGG16 of kuangliu/pytorch-cifar (92.64 % on CIFAR-10): stages of 64x2, 128x2,
  256x3, 512x3 and 512x3 Conv(bias)-BN-ReLU layers, then a single softmax layer on the flattened
  1x1x512 map. 14,728,266 trainable parameters on 32x32x3 with 10 classes, as in PyTorch.
- `vgg13`: the VGG13 of FERPlus (Barsoum et al. 2016, "Training Deep Networks for Facial Expression
  Recognition with Crowd-Sourced Label Distribution"; microsoft/FERPlus src/models.py) for 64x64
  grey faces: stages of 64x2, 128x2, 256x3 and 256x3 Conv(bias)-ReLU layers without BN, each stage
  followed by dropout 0.25, then two ReLU layers of 1024 units each followed by dropout 0.5, and the
  softmax. 8,757,704 trainable parameters on 64x64x1 with 8 classes.
"""

from __future__ import annotations

import keras
from keras import layers

from convbench.models.alexnet import check_positive, check_rate
from convbench.models.layers import classifier, conv_bn, l2, resize_to_at_least
from convbench.models.registration import architecture

VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
"""(filters, convolutions) per stage: configuration "D" of the paper, as in pytorch-cifar."""

FERPLUS_VGG13_STAGES = ((64, 2), (128, 2), (256, 3), (256, 3))
"""(filters, convolutions) per stage of FERPlus's VGG13 (10 convolutions + 3 dense layers)."""


def vgg_stage(
    x,
    filters: int,
    convolutions: int,
    *,
    use_batch_norm: bool,
    dropout: float,
    weight_decay: float,
    name: str,
):
    """`convolutions` 3x3 Conv(bias)[-BN]-ReLU layers, 2x2 max pooling, then dropout (skipped at rate 0)."""
    for index in range(1, convolutions + 1):
        conv_name = f"{name}_conv{index}"
        if use_batch_norm:
            x = conv_bn(x, filters, 3, weight_decay, conv_name, use_bias=True, conv_name=conv_name)
        else:
            x = layers.Conv2D(filters, 3, padding="same", kernel_regularizer=l2(weight_decay), name=conv_name)(x)
            x = layers.Activation("relu", name=f"{conv_name}_relu")(x)
    x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def vgg_features(
    x,
    stages: tuple[tuple[int, int], ...],
    *,
    use_batch_norm: bool,
    dropout: float = 0.0,
    weight_decay: float = 0.0,
):
    """The convolutional part of a VGG: one `vgg_stage` per (filters, convolutions) in `stages`."""
    for index, (filters, convolutions) in enumerate(stages, start=1):
        x = vgg_stage(
            x,
            filters,
            convolutions,
            use_batch_norm=use_batch_norm,
            dropout=dropout,
            weight_decay=weight_decay,
            name=f"stage{index}",
        )
    return x


def resize_to(x, size: int, name: str = "resize"):
    """`x` resized (bilinear) to `size` x `size`; unchanged if it already is."""
    if tuple(x.shape[1:3]) == (size, size):
        return x
    return layers.Resizing(size, size, interpolation="bilinear", name=name)(x)


@architecture("vgg13")
def build_vgg13(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    input_size: int = 64,
    conv_dropout: float = 0.25,
    dropout: float = 0.5,
    fc_units: int = 1024,
    weight_decay: float = 0.0,
    name: str | None = None,
) -> keras.Model:
    """FERPlus VGG13: 10 convolutions in four pooled stages, two ReLU layers of `fc_units`, softmax.

    Images of any other size (FER2013's 48x48, CIFAR's 32x32, MNIST's 28x28) are resized to
    `input_size` x `input_size` inside the model, the resolution the network was designed for.

    Args:
        input_shape: Height, width and channels of the float input images.
        num_classes: Number of classes of the softmax output.
        input_size: Side of the square image the convolutions see; at least 16 for four poolings.
        conv_dropout: Dropout rate after each convolutional stage; 0 leaves those layers out.
        dropout: Dropout rate after each hidden fully connected layer; 0 leaves those layers out.
        fc_units: Width of the two hidden fully connected layers.
        weight_decay: PyTorch-style coupled decay, applied as an L2 penalty on kernels.
        name: Model name; "vgg13" if not given.
    """
    min_size = 2 ** len(FERPLUS_VGG13_STAGES)
    if input_size < min_size:
        raise ValueError(f"input_size must be at least {min_size} for four poolings. Received: input_size={input_size}")
    check_rate(conv_dropout, "conv_dropout")
    check_rate(dropout, "dropout")
    check_positive(fc_units, "fc_units")
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = resize_to(inputs, input_size)
    x = vgg_features(x, FERPLUS_VGG13_STAGES, use_batch_norm=False, dropout=conv_dropout, weight_decay=weight_decay)
    x = layers.Flatten(name="flatten")(x)
    for index in (1, 2):
        x = layers.Dense(fc_units, activation="relu", kernel_regularizer=l2(weight_decay), name=f"fc{index}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"fc{index}_dropout")(x)
    outputs = classifier(x, num_classes, weight_decay)
    return keras.Model(inputs, outputs, name=name or "vgg13")


@architecture("vgg16")
def build_vgg16(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    weight_decay: float = 0.0,
    name: str | None = None,
) -> keras.Model:
    """CIFAR VGG16 with BN (pytorch-cifar): 13 convolutions in five pooled stages and one softmax layer.

    The five poolings need at least 32x32: smaller inputs (MNIST's 28x28) are upsampled to 32x32
    inside the model. 48x48 inputs reach the classifier as a 1x1 map, like 32x32 ones.

    Args:
        input_shape: Height, width and channels of the float input images.
        num_classes: Number of classes of the softmax output.
        weight_decay: PyTorch-style coupled decay, applied as an L2 penalty on kernels.
        name: Model name; "vgg16" if not given.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = resize_to_at_least(inputs, 32)
    x = vgg_features(x, VGG16_STAGES, use_batch_norm=True, weight_decay=weight_decay)
    x = layers.Flatten(name="flatten")(x)
    outputs = classifier(x, num_classes, weight_decay)
    return keras.Model(inputs, outputs, name=name or "vgg16")
