"""Optimisers and learning-rate schedules from a recipe, counted in epochs.

The blocks' keys, allowed values and defaults are the recipe schema's (`convbench.training.recipe`).
"""

from __future__ import annotations

from typing import Any

import keras

from convbench.training.recipe import LEARNING_RATE_KEYS, SCHEDULES, Constant, Cosine, Piecewise, check_block

__all__ = ["LEARNING_RATE_KEYS", "SCHEDULES", "PiecewiseLinear", "learning_rate_schedule", "make_optimizer"]


@keras.saving.register_keras_serializable(package="convbench")
class PiecewiseLinear(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate linear between `(step, value)` points, constant after the last one."""

    def __init__(self, steps: list[float], values: list[float]):
        if len(steps) != len(values) or len(steps) < 2 or list(steps) != sorted(steps):
            raise ValueError(
                f"PiecewiseLinear needs >= 2 increasing steps, one value each. Received: {steps}, {values}"
            )
        self.steps = [float(step) for step in steps]
        self.values = [float(value) for value in values]

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        rate = keras.ops.convert_to_tensor(self.values[-1], "float32")
        for (start, end), (low, high) in zip(
            zip(self.steps[:-1], self.steps[1:]), zip(self.values[:-1], self.values[1:]), strict=True
        ):
            fraction = keras.ops.clip((step - start) / max(end - start, 1e-9), 0.0, 1.0)
            inside = keras.ops.logical_and(step >= start, step < end)
            rate = keras.ops.where(inside, low + (high - low) * fraction, rate)
        return keras.ops.where(step < self.steps[0], self.values[0], rate)

    def get_config(self) -> dict[str, Any]:
        return {"steps": self.steps, "values": self.values}


def learning_rate_schedule(schedule: dict[str, Any], epochs: int, steps_per_epoch: int):
    """A Keras schedule (stepped per batch) from e.g. `{name: cosine, peak_lr: 0.1, warmup_epochs: 2}`.

    - cosine: linear warm-up from 0 to `peak_lr`, then cosine decay to `final_lr_fraction * peak_lr`.
    - piecewise: `values[i]` until epoch `boundaries[i]` (He et al.: 0.1, /10 at epochs 82 and 123).
    - constant: `lr` throughout.
    - triangular: linear from `start_fraction * peak_lr` to `peak_lr` at `peak_fraction` of the
      steps, then linear to `final_lr_fraction * peak_lr` at the last step (airbench's schedule).
    """
    checked = check_block("schedule", schedule)
    total_steps = max(1, epochs * steps_per_epoch)
    if isinstance(checked, Cosine):
        warmup_steps = int(checked.warmup_epochs * steps_per_epoch)
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup_steps else float(checked.peak_lr),
            decay_steps=max(1, total_steps - warmup_steps),
            alpha=float(checked.final_lr_fraction),
            warmup_target=float(checked.peak_lr) if warmup_steps else None,
            warmup_steps=warmup_steps,
        )
    if isinstance(checked, Piecewise):
        boundaries = [int(epoch * steps_per_epoch) for epoch in checked.boundaries]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, [float(v) for v in checked.values])
    if isinstance(checked, Constant):
        return float(checked.lr)
    peak = float(checked.peak_lr)  # triangular
    peak_step = float(checked.peak_fraction) * total_steps
    return PiecewiseLinear(
        [0.0, peak_step, float(total_steps - 1) if total_steps > 1 else 1.0],
        [peak * float(checked.start_fraction), peak, peak * float(checked.final_lr_fraction)],
    )


def make_optimizer(
    optimizer: dict[str, Any], learning_rate, ema: dict[str, Any] | None = None
) -> keras.optimizers.Optimizer:
    """SGD (momentum, Nesterov) or Adam/AdamW from e.g. `{name: sgd, momentum: 0.9, nesterov: true}`.

    With `ema: {decay: d}` the optimiser keeps an exponential moving average of the trainable
    weights (after each step: `average = d * average + (1 - d) * weight`, starting from the weights
    after the first step), and `fit` replaces the weights by their average when it ends, so the
    model is evaluated and saved with the averaged weights (Keras' `use_ema`).
    """
    name = check_block("optimizer", optimizer).name
    options = {key: value for key, value in optimizer.items() if key != "name"}
    if ema:
        options |= {"use_ema": True, "ema_momentum": float(check_block("ema", ema).decay)}
    optimizer_class = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW}
    return optimizer_class[name](learning_rate=learning_rate, **options)
