"""The course's simple CNN: three stages of two 3x3 Conv-ELU-BN layers, max pooling and growing dropout.

Filters 32/64/128, dropout 0.2/0.3/0.4, L2 on the convolution kernels, Flatten -> softmax: the
widely copied Keras CIFAR-10 network (A. Kumar, "Achieving 90% accuracy in Object Recognition
Task on CIFAR-10 Dataset with Keras: Convolutional Neural Networks", appliedmachinelearning
blog, 2018), about 90% test accuracy there with augmentation. On 32x32x3 with 10 classes it has
309,290 parameters, 308,394 trainable (the 896 others are batch-norm moving statistics).

The course wrote its penalty as Keras' `l2(1e-4)`; this project's `weight_decay` is PyTorch-style
coupled decay, applied as L2(weight_decay / 2), so the default 2e-4 is that same penalty. As in
the course, the classifier carries none. Pooling floors odd sizes (28 -> 14 -> 7 -> 3), so MNIST
and FER2013 inputs need no resizing.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from convbench.models.layers import batch_norm, classifier, l2
from convbench.models.registration import architecture


def conv_elu_bn(x, filters: int, weight_decay: float, name: str):
    """A 3x3 'same' convolution, ELU, then batch norm (the course's order)."""
    x = layers.Conv2D(filters, 3, padding="same", kernel_regularizer=l2(weight_decay), name=f"{name}_conv")(x)
    x = layers.Activation("elu", name=f"{name}_elu")(x)
    return batch_norm(f"{name}_bn")(x)


def _check_stages(filters: Sequence[int], dropout: Sequence[float]) -> None:
    if not filters or any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in filters):
        raise ValueError(f"filters must be a non-empty list of positive integers. Received: filters={filters!r}")
    if len(dropout) != len(filters):
        raise ValueError(
            f"dropout must give one rate per stage. Received: filters={list(filters)}, dropout={list(dropout)}"
        )
    if any(not 0.0 <= rate < 1.0 for rate in dropout):
        raise ValueError(f"dropout rates must be in [0, 1). Received: dropout={list(dropout)}")


@architecture("simple_cnn")
def build_simple_cnn(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    filters: Sequence[int] = (32, 64, 128),
    dropout: Sequence[float] = (0.2, 0.3, 0.4),
    weight_decay: float = 2e-4,
    name: str | None = None,
) -> keras.Model:
    """The course's simple CNN: one stage per entry of `filters`, each two Conv-ELU-BN, 2x2 max pool, dropout.

    `dropout` gives each stage's rate. `weight_decay` (PyTorch-style, on the convolution kernels)
    defaults to the course's Keras `l2(1e-4)`.
    """
    _check_stages(filters, dropout)
    if min(input_shape[:2]) < 2 ** len(filters):
        raise ValueError(f"input_shape={tuple(input_shape)} is too small for {len(filters)} 2x2 poolings.")
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = inputs
    for stage, (stage_filters, rate) in enumerate(zip(filters, dropout), start=1):
        x = conv_elu_bn(x, stage_filters, weight_decay, f"stage{stage}_1")
        x = conv_elu_bn(x, stage_filters, weight_decay, f"stage{stage}_2")
        x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
        x = layers.Dropout(rate, name=f"stage{stage}_dropout")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = classifier(x, num_classes)
    return keras.Model(inputs, outputs, name=name or "simple_cnn")
