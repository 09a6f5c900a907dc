"""Optimisers and learning-rate schedules from a recipe, counted in epochs."""

from __future__ import annotations

from typing import Any

import keras

SCHEDULES = ("cosine", "piecewise", "constant")


def learning_rate_schedule(schedule: dict[str, Any], epochs: int, steps_per_epoch: int):
    """A Keras schedule (stepped per batch) from e.g. `{name: cosine, peak_lr: 0.1, warmup_epochs: 2}`.

    - cosine: linear warm-up from 0 to `peak_lr`, then cosine decay to `final_lr_fraction * peak_lr`.
    - piecewise: `values[i]` until epoch `boundaries[i]` (He et al.: 0.1, /10 at epochs 82 and 123).
    - constant: `lr` throughout.
    """
    name = schedule.get("name")
    total_steps = max(1, epochs * steps_per_epoch)
    if name == "cosine":
        warmup_steps = int(schedule.get("warmup_epochs", 0) * steps_per_epoch)
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup_steps else float(schedule["peak_lr"]),
            decay_steps=max(1, total_steps - warmup_steps),
            alpha=float(schedule.get("final_lr_fraction", 0.0)),
            warmup_target=float(schedule["peak_lr"]) if warmup_steps else None,
            warmup_steps=warmup_steps,
        )
    if name == "piecewise":
        boundaries = [int(epoch * steps_per_epoch) for epoch in schedule["boundaries"]]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, [float(v) for v in schedule["values"]])
    if name == "constant":
        return float(schedule["lr"])
    raise ValueError(f"Unknown learning-rate schedule {name!r}; known: {', '.join(SCHEDULES)}. Received: {schedule}")


def make_optimizer(optimizer: dict[str, Any], learning_rate) -> keras.optimizers.Optimizer:
    """SGD (momentum, Nesterov) or Adam/AdamW from e.g. `{name: sgd, momentum: 0.9, nesterov: true}`."""
    options = {key: value for key, value in optimizer.items() if key != "name"}
    name = optimizer.get("name", "sgd")
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, **options)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate, **options)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=learning_rate, **options)
    raise ValueError(f"Unknown optimizer {name!r}; known: sgd, adam, adamw. Received: {optimizer}")
