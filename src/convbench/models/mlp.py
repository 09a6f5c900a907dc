"""Fully connected baselines: the course's plain MLP and a residual MLP of dense blocks.

`mlp` is the course baseline, Flatten -> 3 x Dense(64, relu) -> softmax: 59,210 parameters on
28x28x1 with 10 classes, 205,642 on 32x32x3 (all trainable). The functional model built here is
the same network as the course's `keras.Sequential` form (tests/models/test_mlp.py shows it).

`residual_mlp` stacks dense residual blocks after a Dense stem:

    Flatten -> Dense(units, relu) stem
            -> per block: Add([Dense(units) skip projection, layers_per_block x (Dense-BN-ReLU-Dropout)])
            -> softmax

Its reference figures on MNIST (28x28x1, 10 classes, units=128) are totals, batch-norm moving
statistics included: 1 block of 2 layers 152,330 (151,818 trainable), one 1-layer and one
3-layer block 202,890, and "10 blocks" 441,226. The structure above reproduces the first two
exactly: stem 100,480 + classifier 1,290, then per block 16,512 (projection) + 17,024 per layer
(Dense 16,512 + BN 512, of which 256 non-trainable). Those two figures fix, for 128 units, a
per-block cost of one Dense plus one Dense-BN per layer, and a default of 2 layers per block; no
such structure gives exactly 441,226 for ten equal blocks (it would need 10.24 layers in all).
Ten 1-layer blocks give 437,130, within 1% of it, and the tests check that reading. The search
over alternatives (batch norm on the stem, on the projection, after the addition, before the
classifier; with or without projections; 64 to 256 units; 1 to 4 layers per block) found no
structure that fits all three and agrees with Dense-BN-ReLU-Dropout layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from convbench.models.layers import batch_norm, classifier, l2
from convbench.models.registration import architecture


def _check_positive(**values: int) -> None:
    for parameter, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{parameter} must be a positive integer. Received: {parameter}={value!r}")


def _check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")


def _dense(units: int, weight_decay: float, name: str, activation: str | None = None) -> layers.Dense:
    return layers.Dense(units, activation=activation, kernel_regularizer=l2(weight_decay), name=name)


@architecture("mlp")
def build_mlp(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    units: int = 64,
    hidden_layers: int = 3,
    dropout: float = 0.0,
    weight_decay: float = 0.0,
    name: str | None = None,
) -> keras.Model:
    """The course's MLP baseline: flattened pixels through `hidden_layers` ReLU layers of `units`, then softmax.

    `dropout` (after each hidden layer) is off by default, as in the course.
    """
    _check_positive(units=units, hidden_layers=hidden_layers)
    _check_dropout(dropout)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = layers.Flatten(name="flatten")(inputs)
    for index in range(1, hidden_layers + 1):
        x = _dense(units, weight_decay, f"hidden{index}", activation="relu")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"hidden{index}_dropout")(x)
    outputs = classifier(x, num_classes, weight_decay)
    return keras.Model(inputs, outputs, name=name or "mlp")


def layers_in_each_block(blocks: int, layers_per_block: int | Sequence[int]) -> list[int]:
    """The number of Dense-BN-ReLU-Dropout layers in each of `blocks` blocks.

    `layers_per_block` is one count for every block, or a list with one count per block.
    """
    _check_positive(blocks=blocks)
    if isinstance(layers_per_block, Sequence):
        counts = list(layers_per_block)
        if len(counts) != blocks:
            raise ValueError(
                f"layers_per_block must give one count per block. Received: blocks={blocks}, "
                f"layers_per_block={layers_per_block!r}"
            )
    else:
        counts = [layers_per_block] * blocks
    for count in counts:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"Each block needs at least one layer. Received: layers_per_block={layers_per_block!r}")
    return counts


def dense_residual_block(x, units: int, layer_count: int, dropout: float, weight_decay: float, name: str):
    """`layer_count` Dense-BN-ReLU-Dropout layers added to a linear Dense projection of the block's input."""
    skip = _dense(units, weight_decay, f"{name}_projection")(x)
    for index in range(1, layer_count + 1):
        x = _dense(units, weight_decay, f"{name}_{index}_dense")(x)
        x = batch_norm(f"{name}_{index}_bn")(x)
        x = layers.Activation("relu", name=f"{name}_{index}_relu")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"{name}_{index}_dropout")(x)
    return layers.Add(name=f"{name}_add")([skip, x])


@architecture("residual_mlp")
def build_residual_mlp(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    blocks: int = 1,
    layers_per_block: int | Sequence[int] = 2,
    units: int = 128,
    dropout: float = 0.2,
    weight_decay: float = 0.0,
    name: str | None = None,
) -> keras.Model:
    """An MLP of `blocks` dense residual blocks of `units` after a Dense stem, then softmax.

    `layers_per_block` is an int for every block or a list of one count per block, e.g.
    `blocks=2, layers_per_block=[1, 3]`. The defaults are the course's single block of two layers.
    """
    counts = layers_in_each_block(blocks, layers_per_block)
    _check_positive(units=units)
    _check_dropout(dropout)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = layers.Flatten(name="flatten")(inputs)
    x = _dense(units, weight_decay, "stem_dense", activation="relu")(x)
    for block, layer_count in enumerate(counts, start=1):
        x = dense_residual_block(x, units, layer_count, dropout, weight_decay, f"block{block}")
    outputs = classifier(x, num_classes, weight_decay)
    return keras.Model(inputs, outputs, name=name or "residual_mlp")
