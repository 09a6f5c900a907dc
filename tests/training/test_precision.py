"""`mixed_precision` and `jit_compile` recipe knobs: the policy the layers are built with, the float32
softmax, loss scaling for float16 only."""

import keras
import numpy as np
import pytest
from tiny_training import RECIPE, tiny_data

from convbench.models.precision import building_with, dtype_policy
from convbench.pipelines.training.nodes import build_model
from convbench.training.compiling import compile_for_training

STATISTICS = {"mean": [128.0] * 3, "std": [64.0] * 3}


def built(architecture: str, mixed_precision: str | None, model: dict) -> keras.Model:
    images, _ = tiny_data(8, 0)
    recipe = {"model": model, "mixed_precision": mixed_precision}
    return build_model(images, np.arange(8), ["a", "b", "c"], STATISTICS, recipe, architecture)


def test_the_recipe_values_map_to_keras_policies_and_anything_else_is_refused():
    assert dtype_policy(None) == "float32"
    assert dtype_policy("bfloat16") == "mixed_bfloat16" and dtype_policy("float16") == "mixed_float16"
    with pytest.raises(ValueError, match="mixed_precision must be one of bfloat16, float16 or null"):
        dtype_policy("float8")


def test_the_global_policy_is_restored_even_when_the_builder_fails():
    inside = []

    def failing_build():
        with building_with("bfloat16"):
            inside.append(keras.config.dtype_policy().name)
            raise RuntimeError("builder failed")

    with pytest.raises(RuntimeError, match="builder failed"):
        failing_build()
    assert inside == ["mixed_bfloat16"] and keras.config.dtype_policy().name == "float32"


def every_layer(model: keras.Model):
    """The model's layers, and those of the models nested in it."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from every_layer(layer)


@pytest.mark.parametrize(("architecture", "model"), [("resnet", {"depth": 8}), ("airbench", {"widths": [8, 16, 16]})])
def test_a_mixed_model_computes_in_16_bits_keeps_float32_weights_and_a_float32_softmax(architecture, model):
    mixed = built(architecture, "bfloat16", model)
    convolutions = [layer for layer in every_layer(mixed) if isinstance(layer, keras.layers.Conv2D)]
    assert convolutions and all(layer.compute_dtype == "bfloat16" for layer in convolutions)
    assert all(variable.dtype == "float32" for variable in mixed.weights)
    assert mixed.outputs[0].dtype == "float32"
    probabilities = mixed.predict(tiny_data(4, 1)[0], verbose=0)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert keras.config.dtype_policy().name == "float32"  # the next model builds in float32 again
    plain = built(architecture, None, model)
    assert all(layer.compute_dtype == "float32" for layer in every_layer(plain) if layer.weights)


@pytest.mark.parametrize(("mixed_precision", "scaled"), [("float16", True), ("bfloat16", False), (None, False)])
def test_only_float16_trains_with_loss_scaling(mixed_precision, scaled):
    recipe = {**RECIPE, "mixed_precision": mixed_precision, "jit_compile": False}
    model = built("resnet", mixed_precision, {"depth": 8})
    training_model = compile_for_training(model, recipe, steps_per_epoch=2)
    assert isinstance(training_model.optimizer, keras.optimizers.LossScaleOptimizer) is scaled
    images, labels = tiny_data(32, 0)
    loss, *_ = training_model.train_on_batch(images, keras.utils.to_categorical(labels, 3))
    assert np.isfinite(loss)
