"""airbench94: the fast CIFAR-10 network of Jordan (2024), "94% on CIFAR-10 in 3.29 seconds on a single GPU".

A VGG-style net of about 2 M parameters:

    2x2 patch whitening (frozen, from the training images) -> GELU
    -> 3 blocks of [conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU], widths 64/256/256
    -> global max-pool -> linear (no bias) -> x 1/9 -> softmax

The first layer is a 2x2 "valid" convolution whose 24 filters are the eigenvectors of the
training images' 2x2x3 patch covariance, scaled by 1/sqrt(eigenvalue + eps), and their negatives
(so GELU keeps both signs). It is set from the data by `init_whitening` before training (the
training pipeline calls it with the normalised training split, see `@architecture(data_init=...)`)
and stays frozen, so every later layer sees decorrelated, unit-variance patch features.
Batch norm keeps its scale fixed at 1 (only the shift is learnt) with momentum 0.6, as in the
reference. Written from the paper's description; the reference code (KellerJordan/airbench) was
read for its hyperparameters and initialisation.

As in the reference:
- the 3x3 convolutions start as PyTorch's default uniform init with their first filters set to
  the identity (`DiracUniform`), and the head as PyTorch's default uniform init; with batch norm
  after each convolution, the weights' scale sets the effective learning rate, so He init would
  train the same recipe at a sixth of the reference's step size;
- the batch-norm shifts learn `bias_lr_multiplier` (64) times faster than the other weights, at
  the same weight decay (`ScaledBias`, a reparametrisation: SGD needs no per-variable rates);
- the whitening layer has a learnt bias.

Differences from the reference, on purpose: the whitening bias trains throughout (the reference
freezes it after 3 epochs, 1 epoch there costs 0.08 points; `model.whiten_bias_epochs: 3` gives the
reference's), and flips are random rather than alternating between epochs (the recipe's
`augmentation.horizontal_flip: alternating` gives the reference's). Tried on the validation split at a
10-minute budget in bfloat16, alternating flips gave +0.06 points with TTA and the frozen bias -0.02
more, within one seed's noise, so the recipe keeps neither (benchmarks/README.md, "Recipe tries on the
validation split"). With `widths=(64, 256, 256)` the network has 1,971,352 trainable
parameters on 32x32x3 with 10 classes (the frozen whitening kernel adds 288).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers

from convbench.models.layers import l2
from convbench.models.registration import architecture

WHITENING_LAYER = "whiten"
PATCH_SIZE = 2
WHITENING_EPS = 5e-4
"""Added to each eigenvalue before the 1/sqrt scaling (the reference's value), so near-zero directions stay bounded."""
MAX_WHITENING_PATCHES = 2_000_000
"""Patches used to estimate the covariance: a random sample of this many when the images hold more."""


def whitening_filters(images: np.ndarray, eps: float = WHITENING_EPS, seed: int = 0) -> np.ndarray:
    """The frozen first layer's kernel [2, 2, C, 4C] from float images [N, H, W, C].

    The first 2C filters are the eigenvectors of the 2x2xC patch covariance divided by
    sqrt(eigenvalue + eps), largest eigenvalue first; the last 2C are their negatives.
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4 or images.shape[1] < PATCH_SIZE or images.shape[2] < PATCH_SIZE:
        raise ValueError(f"Whitening needs images [N, H>=2, W>=2, C]. Received shape {images.shape}")
    patches = patch_vectors(images)
    if len(patches) > MAX_WHITENING_PATCHES:
        patches = patches[np.random.default_rng(seed).choice(len(patches), MAX_WHITENING_PATCHES, replace=False)]
    centred = patches - patches.mean(axis=0)
    covariance = centred.T @ centred / max(1, len(centred) - 1)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    scaled = eigenvectors[:, order] / np.sqrt(np.maximum(eigenvalues[order], 0.0) + eps)
    channels = images.shape[-1]
    kernel = scaled.reshape(PATCH_SIZE, PATCH_SIZE, channels, -1)
    return np.concatenate([kernel, -kernel], axis=-1).astype(np.float32)


def patch_vectors(images: np.ndarray) -> np.ndarray:
    """Every 2x2 patch (stride 1) of `images` [N, H, W, C] as a row of length 4C, in (row, column, channel) order."""
    n, height, width, channels = images.shape
    windows = np.lib.stride_tricks.sliding_window_view(images, (PATCH_SIZE, PATCH_SIZE), axis=(1, 2))
    # windows: [N, H-1, W-1, C, 2, 2] -> [N, H-1, W-1, 2, 2, C]
    windows = np.moveaxis(windows, 3, -1)
    return windows.reshape(n * (height - 1) * (width - 1), PATCH_SIZE * PATCH_SIZE * channels)


def init_whitening(model: keras.Model, images: np.ndarray) -> None:
    """Set the frozen whitening layer of `model` from normalised training images [N, H, W, C]."""
    layer = model.get_layer(WHITENING_LAYER)
    layer.set_weights([whitening_filters(images)])


def pytorch_uniform(seed: int | None = None) -> keras.initializers.Initializer:
    """PyTorch's default init of convolution and linear weights: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return keras.initializers.VarianceScaling(1 / 3, mode="fan_in", distribution="uniform", seed=seed)


@keras.saving.register_keras_serializable(package="convbench")
class DiracUniform(keras.initializers.Initializer):
    """`pytorch_uniform` for a conv kernel [kh, kw, in, out], whose first min(in, out) filters are the identity.

    Filter i of those passes input channel i through unchanged (1 at the kernel's centre, 0
    elsewhere), as `torch.nn.init.dirac_` on the reference's first filters.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def __call__(self, shape, dtype=None):
        kernel_h, kernel_w, channels_in, channels_out = shape
        weights = pytorch_uniform(self.seed)(shape, dtype=dtype)
        kept = min(channels_in, channels_out)
        identity = np.zeros(shape, dtype=np.float32)
        identity[kernel_h // 2, kernel_w // 2, np.arange(kept), np.arange(kept)] = 1.0
        is_identity_filter = np.zeros(shape, dtype=bool)
        is_identity_filter[..., :kept] = True
        return keras.ops.where(is_identity_filter, keras.ops.cast(identity, weights.dtype), weights)

    def get_config(self) -> dict:
        return {"seed": self.seed}


@keras.saving.register_keras_serializable(package="convbench")
class ScaledBias(layers.Layer):
    """Adds a learnt per-channel shift `sqrt(lr_multiplier) * b`; the optimiser updates `b`.

    Under SGD (with or without momentum) the shift then moves `lr_multiplier` times as fast as a
    plain bias would, while the L2 penalty `weight_decay` on `b` shrinks the shift at the same
    per-step rate as every other weight: airbench's 64x learning rate for batch-norm biases,
    which PyTorch gives through a parameter group and Keras' single-rate optimisers cannot.

    With `learns_for_epochs=N`, `b` learns in the first N epochs and is frozen after them (no
    gradient, no penalty; `EpochSchedules` calls `learn_in_epoch` and zeroes its momentum).
    """

    def __init__(
        self, lr_multiplier: float = 1.0, weight_decay: float = 0.0, learns_for_epochs: int | None = None, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        if not lr_multiplier > 0:
            raise ValueError(f"lr_multiplier must be positive. Received: lr_multiplier={lr_multiplier!r}")
        whole = isinstance(learns_for_epochs, int) and not isinstance(learns_for_epochs, bool)
        if learns_for_epochs is not None and not (whole and learns_for_epochs >= 0):
            raise ValueError(
                f"learns_for_epochs must be a whole number >= 0 or None. Received: learns_for_epochs={learns_for_epochs!r}"
            )
        self.lr_multiplier = float(lr_multiplier)
        self.weight_decay = float(weight_decay)
        self.learns_for_epochs = learns_for_epochs

    def build(self, input_shape) -> None:
        if self.learns_for_epochs is not None:
            # 1 while `b` learns, 0 once frozen; an integer, so no weight average (lookahead) touches it
            self.learning = self.add_weight(
                shape=(), initializer="ones", dtype="int32", trainable=False, name="learning"
            )
        self._l2 = l2(self.weight_decay)
        gated = self._l2 is not None and self.learns_for_epochs is not None
        self.bias = self.add_weight(
            shape=(input_shape[-1],),
            initializer="zeros",
            regularizer=self._gated_penalty if gated else self._l2,
            name="bias",
        )

    def _gated_penalty(self, bias):
        """The L2 penalty on `b` while it learns; none once it is frozen (its gradient is then zero too)."""
        penalty = self._l2(bias)
        return keras.ops.cast(self.learning, penalty.dtype) * penalty

    def learn_in_epoch(self, epoch: int) -> list[keras.Variable]:
        """Lets `b` learn in `epoch` (0-based, within the training phase) if it comes before
        `learns_for_epochs`, else freezes it; returns `[b]` when this call froze it, else `[]`."""
        if self.learns_for_epochs is None:
            return []
        was_learning = int(keras.ops.convert_to_numpy(self.learning.value)) == 1
        learns = epoch < self.learns_for_epochs
        self.learning.assign(int(learns))
        return [self.bias] if was_learning and not learns else []

    def call(self, inputs):
        bias = self.bias
        if self.learns_for_epochs is not None:  # the value of `b`, with its gradient times `learning`
            learning = keras.ops.cast(self.learning, bias.dtype)
            bias = learning * bias + (1 - learning) * keras.ops.stop_gradient(bias)
        return inputs + keras.ops.cast(float(np.sqrt(self.lr_multiplier)) * bias, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "lr_multiplier": self.lr_multiplier,
            "weight_decay": self.weight_decay,
            "learns_for_epochs": self.learns_for_epochs,
        }


def _batch_norm(x, name: str, momentum: float, bias_lr_multiplier: float, weight_decay: float):
    """Batch norm without scale, its shift learnt by a `ScaledBias` named `{name}_shift`."""
    x = layers.BatchNormalization(momentum=momentum, epsilon=1e-12, center=False, scale=False, name=name)(x)
    return ScaledBias(bias_lr_multiplier, weight_decay, name=f"{name}_shift")(x)


def _conv3x3(filters: int, weight_decay: float, name: str) -> layers.Conv2D:
    return layers.Conv2D(
        filters,
        3,
        padding="same",
        use_bias=False,
        kernel_initializer=DiracUniform(),
        kernel_regularizer=l2(weight_decay),
        name=name,
    )


def conv_group(x, filters: int, weight_decay: float, bn_momentum: float, bias_lr_multiplier: float, name: str):
    """conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU."""
    x = _conv3x3(filters, weight_decay, f"{name}_conv1")(x)
    x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    x = _batch_norm(x, f"{name}_bn1", bn_momentum, bias_lr_multiplier, weight_decay)
    x = layers.Activation("gelu", name=f"{name}_gelu1")(x)
    x = _conv3x3(filters, weight_decay, f"{name}_conv2")(x)
    x = _batch_norm(x, f"{name}_bn2", bn_momentum, bias_lr_multiplier, weight_decay)
    return layers.Activation("gelu", name=f"{name}_gelu2")(x)


@architecture("airbench", data_init=init_whitening)
def build_airbench(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    widths: Sequence[int] = (64, 256, 256),
    weight_decay: float = 0.0,
    bn_momentum: float = 0.6,
    bias_lr_multiplier: float = 64.0,
    logit_scale: float = 1 / 9,
    whiten_bias_epochs: int | None = None,
    name: str | None = None,
) -> keras.Model:
    """airbench94 for images of `input_shape`: float input, softmax over `num_classes`.

    Args:
        widths: Filters of the three conv groups (64/256/256 in the paper).
        weight_decay: PyTorch-style coupled decay on the trainable kernels (L2 of weight_decay / 2).
        bn_momentum: Keras' batch-norm momentum: moving = momentum * moving + (1 - momentum) * batch
            (0.6, the reference's `batchnorm_momentum`, which it hands PyTorch as 1 - 0.6).
        bias_lr_multiplier: How much faster the batch-norm shifts learn than the other weights (64).
        logit_scale: Multiplier on the logits before the softmax (1/9 in the reference).
        whiten_bias_epochs: The whitening bias learns in this many first epochs, then stays frozen
            (3 in the reference; `fit` applies it, `EpochSchedules`); None: it learns throughout.
    """
    widths = tuple(widths)
    if len(widths) != 3 or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
        raise ValueError(f"widths must be three positive integers. Received: widths={widths!r}")
    if not logit_scale > 0:
        raise ValueError(f"logit_scale must be positive. Received: logit_scale={logit_scale!r}")
    channels = input_shape[-1]
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = layers.Conv2D(
        2 * PATCH_SIZE * PATCH_SIZE * channels,  # the 2*2*C eigenvectors and their negatives
        PATCH_SIZE,
        padding="valid",
        use_bias=False,
        trainable=False,
        name=WHITENING_LAYER,
    )(inputs)
    x = ScaledBias(weight_decay=weight_decay, learns_for_epochs=whiten_bias_epochs, name=f"{WHITENING_LAYER}_bias")(x)
    x = layers.Activation("gelu", name="whiten_gelu")(x)
    for index, width in enumerate(widths, start=1):
        x = conv_group(x, width, weight_decay, bn_momentum, bias_lr_multiplier, f"group{index}")
    x = layers.GlobalMaxPooling2D(name="global_pool")(x)
    x = layers.Dense(
        num_classes,
        use_bias=False,
        kernel_initializer=pytorch_uniform(),
        kernel_regularizer=l2(weight_decay),
        name="head",
    )(x)
    x = layers.Rescaling(logit_scale, name="logit_scale")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name or "airbench")
