"""A CNN built from one user-defined module, stage by stage: edges -> shapes -> parts -> objects.

The course's "own module" exercise, and the worked example for adding an architecture: write a
module function, then a builder that stacks it. Each of the four stages is one
`hierarchical_module` with twice the filters of the stage before and, through the 2x2 pooling
between stages, twice its reach in pixels; global average pooling and softmax follow. The idea
of learning a hierarchy of features, from edges to object parts, is that of Zeiler & Fergus
(2014), "Visualizing and Understanding Convolutional Networks"; the module mixes Inception-style
parallel branches (Szegedy et al. 2015) with a dilated convolution (Yu & Koltun 2016) and a
residual link (He et al. 2016).

With `base_filters=32` (stages of 32/64/128/256 filters) the model has 589,082 trainable
parameters on 32x32x3 with 10 classes. Pooling floors odd sizes (28 -> 14 -> 7 -> 3), so MNIST
and FER2013 inputs need no resizing.
"""

from __future__ import annotations

import keras
from keras import layers

from convbench.models.layers import classifier, conv_bn
from convbench.models.registration import architecture

STAGES = ("edges", "shapes", "parts", "objects")


def hierarchical_module(x, filters: int, name: str, weight_decay: float = 0.0):
    """One stage: the input seen at three reaches, fused to `filters` channels and added to the input.

    The branches are a 1x1 convolution (each pixel's features mixed), a 3x3 (a local pattern)
    and a 3x3 dilated by 2 (a pattern spread over 5x5). A 1x1 convolution fuses them; the
    residual link carries the input through, projected by a 1x1 convolution when its width differs.
    """
    branches = [
        conv_bn(x, filters // 2, 1, weight_decay, f"{name}_pointwise"),
        conv_bn(x, filters // 2, 3, weight_decay, f"{name}_local"),
        conv_bn(x, filters // 2, 3, weight_decay, f"{name}_context", dilation=2),
    ]
    merged = layers.Concatenate(name=f"{name}_concat")(branches)
    fused = conv_bn(merged, filters, 1, weight_decay, f"{name}_fuse", activation=None)
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = conv_bn(x, filters, 1, weight_decay, f"{name}_shortcut", activation=None)
    x = layers.Add(name=f"{name}_add")([shortcut, fused])
    return layers.Activation("relu", name=f"{name}_out")(x)


@architecture("hierarchical")
def build_hierarchical(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    base_filters: int = 32,
    weight_decay: float = 0.0,
    dropout: float = 0.0,
    name: str | None = None,
) -> keras.Model:
    """Four `hierarchical_module` stages (edges, shapes, parts, objects) of doubling width, then softmax.

    `base_filters` is the width of the first stage; `dropout` applies before the classifier;
    `weight_decay` is PyTorch-style coupled decay on every kernel.
    """
    if isinstance(base_filters, bool) or not isinstance(base_filters, int) or base_filters < 2:
        raise ValueError(f"base_filters must be an integer >= 2. Received: base_filters={base_filters!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = inputs
    for index, stage in enumerate(STAGES):
        if index:
            x = layers.MaxPooling2D(2, name=f"{stage}_downsample")(x)
        x = hierarchical_module(x, base_filters * 2**index, stage, weight_decay)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = classifier(x, num_classes, weight_decay)
    return keras.Model(inputs, outputs, name=name or "hierarchical")
