"""AlexNet for CIFAR-sized inputs (Krizhevsky et al. 2012, "ImageNet Classification with Deep Convolutional
Neural Networks"), with batch normalisation after every convolution.

The paper's five convolutions keep their kernel sizes and widths (11x11/96, 5x5/256, 3x3/384,
3x3/384, 3x3/256) and its two fully connected layers of 4096 units; only the strides shrink for a
32x32 image: the first convolution has stride 2 (not 4) and 2x2 max pooling follows the first,
second and fifth, so 32 -> 16 -> 8 -> 4 -> 2. Each convolution keeps its bias and is followed by
BN and ReLU; dropout 0.5 precedes each fully connected layer, as in the paper.

On 32x32x3 with 10 classes that is 24,770,634 trainable parameters (the "about 25 M" of CIFAR
AlexNets; the ImageNet original has 61 M, 38 M of them in its first fully connected layer).
Nearly all are in the fully connected layers (21.0 M), whose input is the flattened 2x2x256
map: larger inputs give a larger map and more parameters (48x48 -> 3x3x256). The 64-192-384-256-256
variant of PyTorch CIFAR collections (torchvision's widths) has 23.3 M.
"""

from __future__ import annotations

import keras
from keras import layers

from convbench.models.layers import classifier, conv_bn, l2, resize_to_at_least
from convbench.models.registration import architecture

CONV_LAYERS = ((96, 11), (256, 5), (384, 3), (384, 3), (256, 3))
"""(filters, kernel size) of the five convolutions, as in the paper."""
POOL_AFTER = (1, 2, 5)
MIN_INPUT_SIZE = 32


def check_rate(value: float, parameter: str) -> None:
    """Raise ValueError unless `value` is a dropout rate in [0, 1)."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{parameter} must be in [0, 1). Received: {parameter}={value}")


def check_positive(value: int, parameter: str) -> None:
    """Raise ValueError unless `value` is a positive integer."""
    if value < 1:
        raise ValueError(f"{parameter} must be a positive integer. Received: {parameter}={value}")


def dropout_dense_relu(x, units: int, dropout: float, weight_decay: float, name: str):
    """Dropout (skipped at rate 0), then a ReLU fully connected layer of `units`."""
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.Dense(units, activation="relu", kernel_regularizer=l2(weight_decay), name=name)(x)


@architecture("alexnet")
def build_alexnet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    dropout: float = 0.5,
    fc_units: int = 4096,
    weight_decay: float = 0.0,
    name: str | None = None,
) -> keras.Model:
    """AlexNet with BN for small images: five convolutions, two fully connected layers of `fc_units`, softmax.

    Inputs smaller than 32x32 (MNIST's 28x28) are upsampled to 32x32 inside the model, so they
    reach the fully connected layers as the same 2x2 map as CIFAR images.

    Args:
        input_shape: Height, width and channels of the float input images.
        num_classes: Number of classes of the softmax output.
        dropout: Dropout rate before each fully connected layer; 0 leaves the dropout layers out.
        fc_units: Width of the two hidden fully connected layers.
        weight_decay: PyTorch-style coupled decay, applied as an L2 penalty on kernels.
        name: Model name; "alexnet" if not given.
    """
    check_rate(dropout, "dropout")
    check_positive(fc_units, "fc_units")
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = resize_to_at_least(inputs, MIN_INPUT_SIZE)
    for index, (filters, kernel_size) in enumerate(CONV_LAYERS, start=1):
        strides = 2 if index == 1 else 1
        x = conv_bn(
            x,
            filters,
            kernel_size,
            weight_decay,
            f"conv{index}",
            strides=strides,
            use_bias=True,
            conv_name=f"conv{index}",
        )
        if index in POOL_AFTER:
            x = layers.MaxPooling2D(2, name=f"pool{index}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = dropout_dense_relu(x, fc_units, dropout, weight_decay, "fc1")
    x = dropout_dense_relu(x, fc_units, dropout, weight_decay, "fc2")
    outputs = classifier(x, num_classes, weight_decay)
    return keras.Model(inputs, outputs, name=name or "alexnet")
