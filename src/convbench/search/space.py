"""Search spaces: what `search.spaces.<architecture>` declares, sampled by Optuna and merged into a recipe.

A space maps a recipe key, dotted (`model.weight_decay`, `label_smoothing`, `batch_size`), to its
range in Optuna's own terms: `{low, high}` (floats; `log: true` for a log scale, `step` for a
grid), `{low, high, type: int}` or `{choices: [...]}`. One key is not a recipe key:
`learning_rate`, the peak learning rate of whatever schedule the recipe has (cosine and
triangular `peak_lr`, constant `lr`, piecewise: every value scaled so the largest is it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from convbench.training.optimizers import LEARNING_RATE_KEYS
from convbench.training.recipe import check_recipe

LEARNING_RATE = "learning_rate"
"""The virtual key for the schedule's peak learning rate (see the module docstring)."""


@dataclass(frozen=True)
class Dimension:
    """One searched recipe key and its range."""

    key: str
    kind: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial) -> Any:
        """This dimension's value for an Optuna trial (the parameter is named `key`)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)

    def extremes(self) -> tuple[Any, ...]:
        """The values a trial may take at the edges of this range: each choice, or `low` and `high`."""
        if self.kind == "categorical":
            return self.choices
        if self.kind == "int":
            return int(self.low), int(self.high)
        return self.low, self.high


def parse_space(architecture: str, space: dict[str, Any] | None) -> list[Dimension]:
    """The dimensions of `search.spaces.<architecture>`, checked.

    Raises:
        ValueError: no space for the architecture, or a range that names what is wrong with it.
    """
    if not space:
        raise ValueError(
            f"No search space for {architecture!r}: add `search.spaces.{architecture}` to "
            "conf/base/parameters_search.yml (or conf/local), e.g. `learning_rate: {low: 0.01, high: 0.3, log: true}`."
        )
    return [_dimension(architecture, key, spec) for key, spec in space.items()]


def _dimension(architecture: str, key: str, spec: Any) -> Dimension:
    where = f"search.spaces.{architecture}.{key}"
    if not isinstance(spec, dict):
        raise ValueError(f"{where} must be {{low, high}} or {{choices: [...]}}; received {spec!r}")
    unknown = set(spec) - {"low", "high", "log", "step", "type", "choices"}
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {sorted(unknown)}; allowed: low, high, log, step, type, choices")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list | tuple) or not choices:
            raise ValueError(f"{where}.choices must be a non-empty list; received {choices!r}")
        return Dimension(key, "categorical", choices=tuple(choices))
    if "low" not in spec or "high" not in spec:
        raise ValueError(f"{where} needs `low` and `high` (or `choices`); received {spec!r}")
    kind = spec.get("type", "float")
    if kind not in ("float", "int"):
        raise ValueError(f"{where}.type must be float or int; received {kind!r}")
    low, high = float(spec["low"]), float(spec["high"])
    log = bool(spec.get("log", False))
    if not low < high:
        raise ValueError(f"{where}: low ({low:g}) must be below high ({high:g})")
    if log and low <= 0:
        raise ValueError(f"{where}: a log scale needs low > 0; received low={low:g}")
    if log and spec.get("step") is not None:
        raise ValueError(f"{where}: Optuna takes either `log` or `step`, not both")
    return Dimension(key, kind, low=low, high=high, log=log, step=spec.get("step"))


def check_space(dimensions: list[Dimension], recipe: dict[str, Any], architecture: str) -> None:
    """Refuses a space that a trial's recipe could break: each dimension's `extremes` are set in
    `recipe` one at a time and checked against the recipe schema, before any trial trains.

    Raises:
        ValueError: naming `search.spaces.<architecture>.<key>`, the value and what the recipe key takes.
    """
    where = f"search.spaces.{architecture}"
    for dimension in dimensions:
        for value in dimension.extremes():
            try:
                check_recipe(with_values(recipe, {dimension.key: value}), architecture=architecture)
            except ValueError as error:  # RecipeError is one
                raise ValueError(
                    f"{where}.{dimension.key} reaches {value!r}, which the recipe refuses: {error}"
                ) from error


def with_values(recipe: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """`recipe` with each searched value set at its dotted key (`recipe` itself is not changed).

    Raises:
        ValueError: a key whose parent block the recipe does not have (a typo, or a builder
            without that hyperparameter would fail much later).
    """
    merged = copy.deepcopy(recipe)
    for key, value in values.items():
        if key == LEARNING_RATE:
            merged["schedule"] = with_peak_learning_rate(merged.get("schedule") or {}, float(value))
            continue
        *parents, leaf = key.split(".")
        block = merged
        for depth, parent in enumerate(parents):
            if not isinstance(block.get(parent), dict):
                raise ValueError(
                    f"Searched key {key!r}: the recipe has no block {'.'.join(parents[: depth + 1])!r} "
                    f"(its keys: {sorted(block)})"
                )
            block = block[parent]
        block[leaf] = value
    return merged


def with_peak_learning_rate(schedule: dict[str, Any], learning_rate: float) -> dict[str, Any]:
    """`schedule` with its peak learning rate set to `learning_rate` (see the module docstring)."""
    key = next((key for key in LEARNING_RATE_KEYS if key in schedule), None)
    if key is None:
        raise ValueError(
            f"`learning_rate` cannot be searched for a schedule named {schedule.get('name')!r}: search its own key instead"
        )
    if key != "values":
        return {**schedule, key: learning_rate}
    peak = max(float(value) for value in schedule["values"])
    return {**schedule, "values": [float(value) * learning_rate / peak for value in schedule["values"]]}


def as_overrides(values: dict[str, Any], architecture: str, recipe: dict[str, Any]) -> dict[str, Any]:
    """The searched values as a parameters file a user can put in conf/local (nested, `training.<architecture>`)."""
    nested: dict[str, Any] = {}
    for key, value in values.items():
        if key == LEARNING_RATE:
            schedule = recipe["schedule"]
            peaked = with_peak_learning_rate(schedule, float(value))
            nested["schedule"] = {key: new for key, new in peaked.items() if schedule.get(key) != new}
            continue
        *parents, leaf = key.split(".")
        block = nested
        for parent in parents:
            block = block.setdefault(parent, {})
        block[leaf] = value
    return {"training": {architecture: nested}}


def as_params_option(values: dict[str, Any], architecture: str, recipe: dict[str, Any]) -> str:
    """The searched values as a `kedro run --params=...` option (lists, such as piecewise values, are left
    to the YAML file)."""
    flat = _flatten(as_overrides(values, architecture, recipe))
    return "--params=" + ",".join(f"{key}={value}" for key, value in flat.items() if not isinstance(value, list))


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat
