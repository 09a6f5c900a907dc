"""Batch-wise image augmentation that runs inside the compiled train step, on the device."""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from convbench.training.recipe import ALTERNATING, check_block


@keras.saving.register_keras_serializable(package="convbench")
class RandomPadCrop(layers.Layer):
    """Pads each image by `padding` pixels and crops it back at a random offset.

    The standard CIFAR augmentation (He et al. 2016): every image of the batch gets its own
    offset, drawn uniformly from the (2p+1)^2 possible ones. Identity at inference.
    `mode` fills the border with zeros (`constant`, He et al.) or by reflection (`reflect`, airbench).
    """

    def __init__(self, padding: int = 4, seed: int | None = None, mode: str = "constant", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_block("augmentation", {"pad_mode": mode})  # the recipe's pad_mode rule
        self.padding = padding
        self.seed = seed
        self.mode = mode
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training or not self.padding:
            return images
        span = 2 * self.padding + 1
        batch = ops.shape(images)[0]
        offset_y = keras.random.randint((batch,), 0, span, seed=self.seed_generator, dtype="int32")
        offset_x = keras.random.randint((batch,), 0, span, seed=self.seed_generator, dtype="int32")
        return crop_windows(pad_images(images, self.padding, self.mode), offset_y, offset_x, ops.shape(images)[1:3])

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": self.padding, "seed": self.seed, "mode": self.mode}


def pad_images(images, padding: int, mode: str = "constant"):
    """[B, H, W, C] images padded by `padding` pixels on each side, with zeros or by reflection."""
    return ops.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]], mode=mode)


def crop_windows(padded, offset_y, offset_x, size: tuple[int, int]):
    """The [H, W] window of each padded image whose top-left corner is at (offset_y[i], offset_x[i]).

    One gather of pixels from the flattened batch: as fast as TensorFlow's own batched gather, and
    several times faster than `take_along_axis` along each axis (benchmarks/README.md)."""
    height, width = size
    batch, padded_height, padded_width, channels = ops.shape(padded)
    offset_y, offset_x = ops.convert_to_tensor(offset_y, "int32"), ops.convert_to_tensor(offset_x, "int32")
    rows = offset_y[:, None] + ops.arange(height, dtype="int32")[None, :]
    cols = offset_x[:, None] + ops.arange(width, dtype="int32")[None, :]
    first_pixel = ops.arange(batch, dtype="int32") * (padded_height * padded_width)
    pixels = first_pixel[:, None, None] + rows[:, :, None] * padded_width + cols[:, None, :]
    windows = ops.take(ops.reshape(padded, (-1, channels)), ops.reshape(pixels, (-1,)), axis=0)
    return ops.reshape(windows, (-1, height, width, channels))


def augmentation_layers(augmentation: dict[str, Any], seed: int | None) -> list[layers.Layer]:
    """The layers an augmentation recipe asks for, e.g. `{pad_crop: 4, pad_mode: reflect, horizontal_flip: true}`."""
    checked = check_block("augmentation", augmentation)
    steps: list[layers.Layer] = []
    if checked is None:
        return steps
    if checked.pad_crop:
        steps.append(RandomPadCrop(int(checked.pad_crop), seed=seed, mode=checked.pad_mode, name="random_pad_crop"))
    if checked.horizontal_flip is True:  # `alternating` flips are the input pipeline's (`alternates_flips`)
        steps.append(layers.RandomFlip("horizontal", seed=seed, name="random_flip"))
    return steps


def alternates_flips(recipe: dict[str, Any]) -> bool:
    """Whether the recipe mirrors each image in every other epoch (`horizontal_flip: alternating`)."""
    return ((recipe.get("augmentation") or {}).get("horizontal_flip")) == ALTERNATING


def with_augmentation(model: keras.Model, augmentation: dict[str, Any], seed: int | None = None) -> keras.Model:
    """The model used for fitting: augmentation (training only) followed by `model`.

    `model` itself stays free of augmentation, so what is saved and served is the plain model.
    """
    steps = augmentation_layers(augmentation or {}, seed)
    inputs = keras.Input(shape=model.input_shape[1:], dtype=model.input.dtype, name="image")
    x = inputs
    if steps:
        x = layers.Identity(dtype="float32", name="to_float")(x)
        for step in steps:
            x = step(x)
        x = layers.Identity(dtype=model.input.dtype, name="to_input_dtype")(x)
    outputs = model(x)
    return keras.Model(inputs, outputs, name=f"{model.name}_training")
