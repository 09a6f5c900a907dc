"""MobileNetV2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks"), two ways.

From scratch (`weights=None`): the CIFAR variant of kuangliu/pytorch-cifar (models/mobilenetv2.py,
94.43% on CIFAR-10): the paper's inverted-residual stages (t, c, n, s) with a stride-1 3x3 stem and a
stride-1 24-channel stage, so a 32x32 image ends at 4x4 before the 1x1/1280 conv and global pooling.
Like that code, and unlike the paper, every block has its 1x1 expansion (also when t = 1), blocks of
stride 1 that change the channel count add a 1x1 conv + BN projection shortcut, and activations are
ReLU. That makes 2,296,922 trainable parameters for 10 classes; the paper's network (torchvision,
keras.applications) has 2,236,682 for 10 classes (3.5 M for ImageNet's 1000): the difference is the
four projection shortcuts (59,152) and the first block's expansion (1,088).

As ImageNet transfer (`weights="imagenet"`): `keras.applications.MobileNetV2` without its top, loaded
from Keras' pretrained weights, as a nested model named `pretrained_base` that training code freezes
and unfreezes by name, behind grey-to-RGB and an upscaling to one of the pretrained input sizes.
With `alpha=1.0` and 10 classes it has the paper's 2,236,682 trainable parameters.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
from keras import layers

from convbench.models.layers import PRETRAINED_BASE, batch_norm, classifier, conv_bn, l2
from convbench.models.registration import architecture

CIFAR_STAGES = (
    # (expansion t, output channels c, blocks n, first stride s)
    (1, 16, 1, 1),
    (6, 24, 2, 1),  # stride 2 in the paper; 1 for 32x32 inputs, as in pytorch-cifar
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280

WEIGHTS = (None, "imagenet")
PRETRAINED_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
PRETRAINED_INPUT_SIZES = (96, 128, 160, 192, 224)
WEIGHTS_URL_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
IMAGENET_INPUT_SCALE = 0.5
"""Factor from z-scored pixels to the scale of MobileNetV2's ImageNet inputs, x / 127.5 - 1.

On CIFAR-10, x / 127.5 - 1 = 0.49 z - 0.02 (pixel std 0.247 * 255, mean 0.49 * 255 per channel),
so halving the z-score puts images where the pretrained batch-norm statistics expect them.
"""


def make_divisible(value: float, divisor: int = 8) -> int:
    """`value` rounded to the nearest multiple of `divisor`, never more than 10% below it (keras.applications)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def scaled_channels(alpha: float) -> tuple[int, tuple[int, ...], int]:
    """Stem, per-stage and head channel counts for width multiplier `alpha`, rounded as keras.applications does.

    The head (1x1/1280) only grows with `alpha` > 1, as in the paper.
    """
    stem = make_divisible(STEM_CHANNELS * alpha)
    stages = tuple(make_divisible(int(channels * alpha)) for _, channels, _, _ in CIFAR_STAGES)
    head = make_divisible(HEAD_CHANNELS * alpha) if alpha > 1.0 else HEAD_CHANNELS
    return stem, stages, head


def inverted_residual_block(x, filters: int, expansion: int, strides: int, weight_decay: float, name: str):
    """1x1 expansion, 3x3 depthwise (carrying the stride), linear 1x1 projection; shortcut when stride is 1.

    The shortcut is the identity when the channel count is kept and a 1x1 conv + BN otherwise (pytorch-cifar).
    """
    channels = x.shape[-1]
    y = conv_bn(x, expansion * channels, 1, weight_decay, f"{name}_expand")
    y = layers.DepthwiseConv2D(
        3,
        strides=strides,
        padding="same",
        use_bias=False,
        depthwise_initializer="he_normal",
        depthwise_regularizer=l2(weight_decay),
        name=f"{name}_depthwise_conv",
    )(y)
    y = batch_norm(f"{name}_depthwise_bn")(y)
    y = layers.Activation("relu", name=f"{name}_depthwise_relu")(y)
    y = conv_bn(y, filters, 1, weight_decay, f"{name}_project", activation=None)
    if strides != 1:
        return y
    shortcut = x
    if channels != filters:
        shortcut = conv_bn(x, filters, 1, weight_decay, f"{name}_shortcut", activation=None)
    return layers.Add(name=f"{name}_add")([shortcut, y])


def imagenet_weights_path(alpha: float, input_size: int, weights_file: str | os.PathLike | None = None) -> Path:
    """Where the ImageNet weights (no top) for `alpha` and `input_size` are read from.

    `weights_file` if given, else the file Keras itself downloads them to:
    `$KERAS_HOME/models/<name>`, or `~/.keras/models/<name>` (`/tmp/.keras/...` if the home is read-only).
    """
    if weights_file is not None:
        return Path(weights_file)
    return _keras_home() / "models" / _imagenet_weights_name(alpha, input_size)


def _keras_home() -> Path:
    if "KERAS_HOME" in os.environ:
        return Path(os.environ["KERAS_HOME"])
    home = Path.home() if os.access(Path.home(), os.W_OK) else Path("/tmp")
    return home / ".keras"


def _imagenet_weights_name(alpha: float, input_size: int) -> str:
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{input_size}_no_top.h5"


def _existing_imagenet_weights(alpha: float, input_size: int, weights_file: str | os.PathLike | None) -> Path:
    path = imagenet_weights_path(alpha, input_size, weights_file)
    if path.is_file():
        return path
    name = _imagenet_weights_name(alpha, input_size)
    raise FileNotFoundError(
        f"MobileNetV2 ImageNet weights not found at {path} (nothing is downloaded at run time). "
        f"Download {WEIGHTS_URL_BASE}{name} to {path}, or fill Keras' cache with: "
        f"python -c \"import keras; keras.applications.MobileNetV2(weights='imagenet', include_top=False, "
        f'alpha={float(alpha)}, input_shape=({input_size}, {input_size}, 3))"'
    )


def require_imagenet_weights(
    *, weights: str | None, alpha: float, input_size: int, weights_file: str | os.PathLike | None, **_: object
) -> None:
    """Check, before any training, that the ImageNet weights a recipe asks for are on disk.

    Takes `build_mobilenet_v2`'s hyperparameters (the others are ignored); nothing to check
    without `weights: imagenet`.

    Raises:
        FileNotFoundError: The weights file is missing; the message says where to put it and how.
    """
    if weights == "imagenet":
        _existing_imagenet_weights(alpha, input_size, weights_file)


def _check_hyperparameters(weights: str | None, alpha: float, input_size: int, dropout: float, weights_file) -> None:
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}. Received: weights={weights!r}")
    if alpha <= 0:
        raise ValueError(f"alpha must be positive. Received: alpha={alpha}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")
    if weights is None:
        if weights_file is not None:
            raise ValueError(
                f"weights_file is only read with weights='imagenet'. Received: weights_file={weights_file}"
            )
        return
    if alpha not in PRETRAINED_ALPHAS:
        raise ValueError(f"ImageNet weights exist for alpha in {PRETRAINED_ALPHAS}. Received: alpha={alpha}")
    if input_size not in PRETRAINED_INPUT_SIZES:
        raise ValueError(
            f"ImageNet weights exist for input_size in {PRETRAINED_INPUT_SIZES}. Received: input_size={input_size}"
        )


def _head(x, num_classes: int, dropout: float, weight_decay: float):
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    return classifier(x, num_classes, weight_decay)


def _scratch_features(inputs, alpha: float, weight_decay: float):
    stem, stage_channels, head = scaled_channels(alpha)
    x = conv_bn(inputs, stem, 3, weight_decay, "stem")
    for stage, ((expansion, _, blocks, first_strides), filters) in enumerate(zip(CIFAR_STAGES, stage_channels), 1):
        for block in range(1, blocks + 1):
            strides = first_strides if block == 1 else 1
            x = inverted_residual_block(x, filters, expansion, strides, weight_decay, f"stage{stage}_block{block}")
    return conv_bn(x, head, 1, weight_decay, "head")


def _as_rgb(x):
    channels = x.shape[-1]
    if channels == 3:
        return x
    if channels == 1:
        return layers.Concatenate(name="grey_to_rgb")([x, x, x])
    raise ValueError(f"ImageNet weights need 1 (grey) or 3 (RGB) input channels. Received: input_shape[-1]={channels}")


def _pretrained_features(inputs, alpha: float, input_size: int, weights_file):
    path = _existing_imagenet_weights(alpha, input_size, weights_file)
    x = _as_rgb(inputs)
    if tuple(x.shape[1:3]) != (input_size, input_size):
        x = layers.Resizing(input_size, input_size, interpolation="bilinear", name="upsample")(x)
    x = layers.Rescaling(IMAGENET_INPUT_SCALE, name="imagenet_scale")(x)
    base = keras.applications.MobileNetV2(
        input_shape=(input_size, input_size, 3),
        alpha=alpha,
        include_top=False,
        weights=str(path),
        name=PRETRAINED_BASE,
    )
    return base(x)


@architecture("mobilenet_v2", "mobilenet_v2_imagenet", file_check=require_imagenet_weights)
def build_mobilenet_v2(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    alpha: float = 1.0,
    weights: str | None = None,
    weights_file: str | os.PathLike | None = None,
    input_size: int = 96,
    dropout: float = 0.2,
    weight_decay: float = 0.0,
    name: str | None = None,
) -> keras.Model:
    """MobileNetV2 with width multiplier `alpha`, float input, softmax over `num_classes`.

    `weights=None`: the CIFAR variant of pytorch-cifar, trained from scratch. Works on any input of at
    least 8x8 (three stride-2 stages, "same" padding: 28x28 ends at 4x4, 48x48 at 6x6), no resizing.

    `weights="imagenet"`: the Keras application, without top, as the nested model `pretrained_base`,
    its weights read from `weights_file` or Keras' cache (see `imagenet_weights_path`; never downloaded:
    FileNotFoundError if missing). `alpha` must be one of `PRETRAINED_ALPHAS` and `input_size` one of
    `PRETRAINED_INPUT_SIZES`; grey images are repeated to RGB and every image is resized (bilinear) to
    `input_size` x `input_size` inside the model. The input is expected z-scored (the wrapper does it)
    and is halved, which puts CIFAR-10 within 2% of the x / 127.5 - 1 scaling the weights were trained
    with (other datasets roughly there). Frozen (`pretrained_base.trainable = False`), the base's batch
    norms use their ImageNet statistics; when a fine-tuning recipe unfreezes the base,
    `convbench.training.fit` keeps its batch norms frozen (a nested `training=False` would not:
    Keras 3 `fit` overrides it, keras-team/keras#20285). `weight_decay`
    reaches only the new classifier.

    Both: global average pooling, dropout with rate `dropout` (none at 0; pytorch-cifar has none),
    softmax. `weight_decay` is PyTorch-style coupled decay, applied as an L2 penalty on kernels.
    """
    _check_hyperparameters(weights, alpha, input_size, dropout, weights_file)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    if weights is None:
        features = _scratch_features(inputs, alpha, weight_decay)
        default_name = "mobilenet_v2"
    else:
        features = _pretrained_features(inputs, alpha, input_size, weights_file)
        default_name = "mobilenet_v2_imagenet"
    outputs = _head(features, num_classes, dropout, weight_decay)
    return keras.Model(inputs, outputs, name=name or default_name)
