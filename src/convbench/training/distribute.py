"""One training on every GPU of a machine: the recipe's `distribute` block, its strategy and its scaling rule.

A recipe's `distribute` is `null` (the default: no strategy, one device, as before) or

    distribute: {strategy: mirrored, devices: null | ["/gpu:0", "/gpu:1"], scale: linear | none}

- `strategy: mirrored` is `tf.distribute.MirroredStrategy`: one replica of the model per device,
  each batch split across them, gradients all-reduced (summed) before every step, so each step is
  the step one device would take on the whole batch. Keras 3 on TensorFlow trains a model built
  under `strategy.scope()` this way with a plain `model.fit` on a `tf.data` dataset.
- `devices`: the devices to mirror on; `null` = TensorFlow's default (every GPU of the machine,
  or the CPU when it has none).
- `scale` (how the recipe's numbers are read, `distributed_recipe`):
  - `linear` (default): `batch_size` and `eval_batch_size` are per replica, so the global batch
    is `batch_size x replicas`, and every learning rate of the schedule (and of a `fine_tuning`
    schedule) is multiplied by the number of replicas: the linear scaling rule of Goyal et al.
    2017, "Accurate, Large Minibatch SGD". A recipe tuned on one GPU keeps each GPU's load.
  - `none`: `batch_size` is the global batch, split across the replicas, and the learning rates
    are unchanged: the same training as on one device, only faster.

`distributed_recipe` is the one place the scaling happens. `resolve_recipe` applies it, so the
recipe saved with the model (`recipe.json`, logged to MLflow) holds the global batch sizes and the
learning rates really used, and its `distribute` block gains `replicas` and `learning_rate_factor`;
`fit` applies it again, which does nothing to a recipe that has `replicas` (it only checks that this
machine gives the same number), and scales a recipe given to `fit` directly.

The strategy is created once per `(strategy, devices)` and cached (`strategy_for`): variables
created under one `MirroredStrategy` cannot be used under another, so building (`build_model`),
compiling, fitting, the budget calibration and loading a checkpoint must all enter the same
instance's scope (`scope`).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
from collections.abc import Iterator
from typing import Any

import keras
import tensorflow as tf

from convbench.training.recipe import LEARNING_RATE_KEYS, STRATEGIES, RecipeError, check_block

logger = logging.getLogger(__name__)

APPLIED = ("replicas", "learning_rate_factor")
"""The keys `distributed_recipe` adds, recording the scaling it applied (`replicas` marks it as done)."""


def check_distribute(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """The `distribute` block with its defaults filled in (`devices: null`, `scale: linear`), or None for none.

    The rules are the recipe schema's (`convbench.training.recipe.Distribute`).

    Raises:
        RecipeError: not a mapping, an unknown key, strategy, scale, or a bad device list; or a Keras
            backend other than TensorFlow, whose strategies these are.
    """
    checked = check_block("distribute", config)
    if checked is None:
        return None
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RecipeError(
            [
                f"distribute.strategy {checked.strategy!r} is TensorFlow's; this run's Keras backend is "
                f"{backend!r}: run it with KERAS_BACKEND=tensorflow, or without `distribute`"
            ],
            "distribute",
        )
    filled = {
        "strategy": checked.strategy,
        "devices": list(checked.devices) if checked.devices else None,
        "scale": checked.scale,
    }
    return filled | {key: config[key] for key in APPLIED if key in config}


@functools.cache
def _cached_strategy(name: str, devices: tuple[str, ...] | None) -> tf.distribute.Strategy:
    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices=list(devices) if devices else None)
    else:  # check_distribute lets no other name through
        raise ValueError(f"Unknown distribute strategy {name!r}; known: {', '.join(STRATEGIES)}")
    logger.info(
        "Distribute: %s strategy on %d replica(s): %s",
        name,
        strategy.num_replicas_in_sync,
        ", ".join(strategy.extended.worker_devices),
    )
    return strategy


def strategy_for(config: dict[str, Any] | None) -> tf.distribute.Strategy | None:
    """The strategy of a `distribute` block, one instance per `(strategy, devices)`; None for none."""
    checked = check_distribute(config)
    if checked is None:
        return None
    devices = tuple(checked["devices"]) if checked["devices"] else None
    return _cached_strategy(checked["strategy"], devices)


def replicas(config: dict[str, Any] | None) -> int:
    """The number of replicas a `distribute` block trains on (1 for none)."""
    strategy = strategy_for(config)
    return int(strategy.num_replicas_in_sync) if strategy else 1


@contextlib.contextmanager
def scope(config: dict[str, Any] | None) -> Iterator[tf.distribute.Strategy | None]:
    """The scope of the block's strategy (nothing for none): build, compile, fit and load models in it."""
    strategy = strategy_for(config)
    if strategy is None:
        yield None
        return
    with strategy.scope():
        yield strategy


def distributed_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe with the batch sizes and learning rates its `distribute` block implies (the one scaling rule).

    With `scale: linear` and N replicas: `batch_size`, `eval_batch_size` (and a `fine_tuning`
    block's own ones) are multiplied by N, the global batches; so is every learning rate of
    `schedule` and of `fine_tuning.schedule` (`peak_lr`, `lr`, piecewise `values`). With
    `scale: none` the batch sizes are already global and nothing is multiplied. Either way the
    `distribute` block gains `replicas: N` and `learning_rate_factor`, so the saved recipe says what
    was used.

    A recipe without `distribute` (or `distribute: null`) is returned as it is, and so is one
    already scaled (its block has `replicas`), after checking that this machine gives as many.

    Raises:
        ValueError: a bad `distribute` block (`check_distribute`), or a recipe scaled for another
            number of replicas than this machine's strategy has.
    """
    config = check_distribute(recipe.get("distribute"))
    if config is None:
        return recipe
    count = replicas(config)
    if "replicas" in config:
        if int(config["replicas"]) != count:
            raise ValueError(
                f"The recipe was scaled for {config['replicas']} replicas (distribute: {config!r}), but its strategy "
                f"has {count} here: resolve the recipe again (remove `replicas` and `learning_rate_factor`)."
            )
        return recipe
    factor = count if config["scale"] == "linear" else 1
    scaled = copy.deepcopy(recipe)
    _scale_block(scaled, factor)
    if isinstance(scaled.get("fine_tuning"), dict):
        _scale_block(scaled["fine_tuning"], factor)
    if int(scaled["batch_size"]) % count:
        logger.warning(
            "The global batch of %d does not split evenly across %d replicas: they get unequal batches.",
            scaled["batch_size"],
            count,
        )
    scaled["distribute"] = config | {"replicas": count, "learning_rate_factor": factor}
    return scaled


def warn_if_uneven(examples: int, recipe: dict[str, Any]) -> None:
    """Logs a warning when an epoch's last batch of `examples` does not split evenly across the replicas.

    Keras averages the loss within each replica, then over the replicas, so replicas with unequal
    batches weigh their images unequally (one with none, as a last batch of 1 image on 2 replicas
    leaves, halves that step's gradient): such a step differs from the same batch on one device.
    """
    count = int((recipe.get("distribute") or {}).get("replicas", 1))
    last = examples % int(recipe["batch_size"])
    if count > 1 and last % count:
        logger.warning(
            "The last batch of each epoch (%d of %d images) does not split evenly across %d replicas: "
            "that step weighs its images unequally, unlike one device (batch_size %d).",
            last,
            examples,
            count,
            recipe["batch_size"],
        )


def _scale_block(block: dict[str, Any], factor: int) -> None:
    """Multiplies a recipe's (or fine_tuning block's) batch sizes and schedule learning rates by `factor`, in place."""
    for key in ("batch_size", "eval_batch_size"):
        if block.get(key) is not None:
            block[key] = int(block[key]) * factor
    schedule = block.get("schedule")
    if not isinstance(schedule, dict):
        return
    for key in LEARNING_RATE_KEYS:
        if key not in schedule:
            continue
        value = schedule[key]
        schedule[key] = [float(v) * factor for v in value] if isinstance(value, list | tuple) else float(value) * factor


def check_built_under(model: keras.Model, config: dict[str, Any] | None) -> None:
    """Raises ValueError if `model`'s variables were not created under the block's strategy (or one was used for none).

    A model must be built in `scope(config)` (`build_model` does) to train under that strategy.
    """
    strategy = strategy_for(config)
    variables = [variable.value for variable in model.variables[:1]]
    if not variables:
        return
    built_under = isinstance(variables[0], tf.distribute.DistributedValues)
    if strategy is None:
        if built_under:
            raise ValueError(
                f"Model {model.name!r} was built under a tf.distribute strategy, but the recipe has "
                "distribute: null. Build it with the recipe that trains it (build_model)."
            )
        return
    if not strategy.extended.variable_created_in_scope(variables[0]):
        raise ValueError(
            f"Model {model.name!r} was not built under the recipe's strategy (distribute: {config!r}): "
            "build it inside convbench.training.distribute.scope(recipe['distribute']), as build_model does."
        )
