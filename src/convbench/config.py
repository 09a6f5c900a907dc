"""The parameters of a run, in layers: recipe < dataset overrides < run env (conf/local, conf/smoke) < --params.

Kedro merges conf/base, the run env and `--params` into one dictionary, which loses what a dataset's
overrides must give way to. `ConvbenchConfigLoader` adds what the dataset specs
(`convbench.dataset_specs`) contribute and keeps the run's own settings apart:

- `preprocessing.<dataset>`: the spec's defaults (seed, val_size, label_mode) under whatever conf/
  and `--params` set;
- `recipe_overrides.<dataset>`: the spec's overrides (MNIST: no flips), which conf/ may change;
- `run_recipe_settings.<architecture>`: what the run env (smoke's shrink included) and `--params` set
  in `training.<architecture>`, so that `resolve_recipe` applies them after the dataset's overrides;
- `training.budget` (e.g. `--params=training.budget.minutes=10`) is the whole run's training
  budget: it joins every recipe's run settings, unless the run env or `--params` gives that
  recipe its own `budget` (see `convbench.training.budget`);
- `smoke: true` (conf/smoke) shrinks every recipe and dataset in code (`smoke_layer`), so no
  architecture or dataset can be forgotten there; the run env and `--params` still win over it;
- a recipe block the run env or `--params` switches to another kind (`schedule: {name: constant, ...}`
  over conf/base's cosine one) is replaced whole, as `convbench.merging.deep_merge` has it, where
  Kedro's key-by-key merge would keep the old kind's keys (`peak_lr` in a constant schedule).

Only the standard library, OmegaConf and Kedro's loader are imported: hooks and `kedro --help` stay light.
"""

from __future__ import annotations

import copy
import fnmatch
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader
from omegaconf import OmegaConf

from convbench.dataset_specs import DATASETS, IMAGE_FOLDER, IMAGE_FOLDER_DEFAULTS, declare_image_folder
from convbench.merging import deep_merge, replace_switched_blocks

SMOKE_RECIPE: dict[str, Any] = {"epochs": 1, "batch_size": 64, "eval_batch_size": 256}
"""What the smoke env changes in every recipe; a recipe's own `smoke:` block adds model sizes."""

RUN_BUDGET = "budget"
"""Key under `training` of the budget every recipe of the run gets (not a recipe itself)."""

RUN_RECIPE_SETTINGS = "run_recipe_settings"
"""Parameter holding, per architecture, the recipe values the run env and `--params` set."""


class DeprecatedParameterWarning(FutureWarning):
    """A parameter was renamed; the old name still works for now."""


def recipes(parameters: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The recipes in `training` (every dict under it but the run's `budget`, by architecture)."""
    return {
        name: value
        for name, value in (parameters.get("training") or {}).items()
        if isinstance(value, dict) and name != RUN_BUDGET
    }


def smoke_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """The smoke env's changes to `recipe`: one short epoch (and fine-tuning epoch), no warm-up, its `smoke:` sizes."""
    shrink: dict[str, Any] = dict(SMOKE_RECIPE)
    if "warmup_epochs" in (recipe.get("schedule") or {}):
        shrink["schedule"] = {"warmup_epochs": 0}
    if recipe.get("fine_tuning"):
        shrink["fine_tuning"] = {"epochs": 1}
    return deep_merge(shrink, recipe.get("smoke") or {})


def smoke_layer(parameters: dict[str, Any]) -> dict[str, Any]:
    """The smoke env's changes to every recipe and every dataset's preprocessing (`subset`)."""
    return {
        "training": {name: smoke_recipe(recipe) for name, recipe in recipes(parameters).items()},
        "preprocessing": {name: {"subset": dict(spec.smoke_subset)} for name, spec in DATASETS.items()},
    }


def _migrate_label_mode(parameters: dict[str, Any], run_layer: dict[str, Any]) -> None:
    """`training.label_mode` (before 0.2) -> `preprocessing.<dataset>.label_mode` of every crowd-labelled dataset."""
    label_mode = (parameters.get("training") or {}).pop("label_mode", None)
    (run_layer.get("training") or {}).pop("label_mode", None)
    if label_mode is None:
        return
    crowd = [name for name, spec in DATASETS.items() if spec.crowd_labelled]
    warnings.warn(
        f"training.label_mode is deprecated: use {', '.join(f'preprocessing.{name}.label_mode' for name in crowd)} "
        f"(e.g. --params=preprocessing.ferplus.label_mode={label_mode}).",
        DeprecatedParameterWarning,
        stacklevel=3,
    )
    for name in crowd:
        if "label_mode" not in ((run_layer.get("preprocessing") or {}).get(name) or {}):
            parameters.setdefault("preprocessing", {}).setdefault(name, {})["label_mode"] = label_mode


def resolve_parameters(
    parameters: dict[str, Any], run_layer: dict[str, Any], base_layer: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Kedro's merged parameters with the dataset specs' layers added (see the module docstring).

    Args:
        parameters: conf/base, the run env and `--params`, merged by Kedro.
        run_layer: The run env's parameters and `--params` alone, merged.
        base_layer: conf/base's parameters alone: where the run switches a recipe's block to another kind
            (`schedule: {name: constant, lr: 1e-3}` over a cosine one), the block is replaced whole, as
            `deep_merge` does, instead of keeping the old kind's keys as Kedro's key-by-key merge would.
    """
    parameters, run_layer = copy.deepcopy(parameters), copy.deepcopy(run_layer)
    _replace_switched_blocks(parameters, base_layer or {}, run_layer)
    _migrate_label_mode(parameters, run_layer)
    spec_layer = {
        "preprocessing": {name: spec.preprocessing_defaults() for name, spec in DATASETS.items()},
        "recipe_overrides": {name: copy.deepcopy(dict(spec.recipe_overrides)) for name, spec in DATASETS.items()},
        "ingestion": {
            **{name: {"options": {}} for name, spec in DATASETS.items() if spec.source_format == "parser"},
            **{
                name: dict(IMAGE_FOLDER_DEFAULTS)
                for name, spec in DATASETS.items()
                if spec.source_format == IMAGE_FOLDER
            },
        },
    }
    parameters = deep_merge(spec_layer, parameters)
    _describe_image_folders(parameters)
    if parameters.get("smoke"):
        run_layer = deep_merge(smoke_layer(parameters), run_layer)
        parameters = deep_merge(parameters, run_layer)
    for recipe in recipes(parameters).values():
        recipe.pop("smoke", None)
    run_budget = (parameters.get("training") or {}).pop(RUN_BUDGET, None)
    run_recipes = recipes(run_layer)
    parameters[RUN_RECIPE_SETTINGS] = {
        name: _with_run_budget(run_recipes.get(name, {}), run_budget) for name in recipes(parameters)
    }
    return parameters


def _replace_switched_blocks(parameters: dict[str, Any], base_layer: dict[str, Any], run_layer: dict[str, Any]) -> None:
    """Every recipe's blocks that the run layer switches to another kind, replaced whole (in place)."""
    base_recipes, run_recipes = recipes(base_layer), recipes(run_layer)
    for name, recipe in recipes(parameters).items():
        if name in base_recipes and name in run_recipes:
            parameters["training"][name] = replace_switched_blocks(recipe, base_recipes[name], run_recipes[name])


def _describe_image_folders(parameters: dict[str, Any]) -> None:
    """`ingestion.<name>.source` of every declared image folder, from its `path`: what the dataset card
    names as the data's source (a `file://` URL and the folder)."""
    for name, block in (parameters.get("ingestion") or {}).items():
        if not isinstance(block, dict) or block.get("format") != IMAGE_FOLDER:
            continue
        if not block.get("path"):
            raise ValueError(
                f"ingestion.{name} declares an image folder without its `path`: "
                f"ingestion.{name}: {{format: image_folder, path: data/01_raw/{name}}}"
            )
        folder = Path(str(block["path"]))
        block.setdefault("source", {"url": folder.resolve().as_uri(), "destination": str(folder)})


PARAMETER_PATTERNS = ("parameters*", "parameters*/**", "**/parameters*")
"""Kedro's default patterns of parameter files, under each env folder of conf/."""


def every_env_parameters(
    conf_source: str | Path, patterns: tuple[str, ...] = PARAMETER_PATTERNS
) -> Iterator[dict[str, Any]]:
    """The contents of every parameter file of every env folder under `conf_source`, in path order,
    unresolved (for what must be known before a run picks its env: pipelines to register)."""
    root = Path(conf_source)
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.suffix not in {".yml", ".yaml", ".json"} or len(relative.parts) < 2:
            continue
        inside_env = str(Path(*relative.parts[1:]))
        if not any(fnmatch.fnmatch(inside_env, pattern) for pattern in patterns):
            continue
        loaded = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
        if isinstance(loaded, dict):
            yield loaded


def declared_image_folders(conf_source: str | Path, patterns: tuple[str, ...] = PARAMETER_PATTERNS) -> list[str]:
    """Declares (`convbench.dataset_specs.declare_image_folder`) every image folder the parameter files of
    any env under `conf_source` declare as `ingestion.<name>: {format: image_folder, ...}`; their names.

    Every env is read, so `<name>_*` pipelines exist whichever `--env` a run picks; the run's own
    parameters still decide what it reads (an env without the declaration fails at its first node).
    """
    names: list[str] = []
    for loaded in every_env_parameters(conf_source, patterns):
        for name, block in (loaded.get("ingestion") or {}).items():
            if isinstance(block, dict) and block.get("format") == IMAGE_FOLDER and name not in names:
                declare_image_folder(name)
                names.append(name)
    return names


def _with_run_budget(settings: dict[str, Any], run_budget: dict[str, Any] | None) -> dict[str, Any]:
    """A recipe's run settings with the run's budget, unless they hold a budget of their own."""
    if not run_budget or "budget" in settings:
        return settings
    return {**settings, "budget": copy.deepcopy(run_budget)}


class ConvbenchConfigLoader(OmegaConfigLoader):
    """Kedro's `OmegaConfigLoader`, whose `parameters` also hold the dataset specs' layers (`resolve_parameters`),
    the image folders declared in them included (`declared_image_folders`)."""

    def __init__(self, conf_source: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(conf_source, *args, **kwargs)
        declared_image_folders(self.conf_source, tuple(self.config_patterns["parameters"]))

    def __getitem__(self, key: str) -> dict[str, Any]:
        config = super().__getitem__(key)
        if key != "parameters":
            return config
        run_layer = deep_merge(self._run_env_parameters(), self.runtime_params or {})
        return resolve_parameters(config, run_layer, self._env_parameters(self.base_env, resolve=False))

    def _run_env_parameters(self) -> dict[str, Any]:
        """The parameter files of the run env (conf/local, conf/smoke) alone, merged."""
        run_env = self.env or self.default_run_env
        if not run_env or run_env == self.base_env:
            return {}
        return self._env_parameters(run_env)

    def _env_parameters(self, env: str, resolve: bool = True) -> dict[str, Any]:
        """The parameter files of one env folder alone, merged (`resolve=False`: interpolations left as written)."""
        if not env or not (Path(self.conf_source) / env).is_dir():
            return {}
        folder = Path(self.conf_source) / env
        patterns = self.config_patterns["parameters"]
        files = sorted(
            path
            for path in folder.rglob("*")
            if path.suffix in {".yml", ".yaml", ".json"}
            and any(fnmatch.fnmatch(str(path.relative_to(folder)), pattern) for pattern in patterns)
        )
        merged: dict[str, Any] = {}
        for path in files:
            loaded = OmegaConf.to_container(OmegaConf.load(path), resolve=resolve) or {}
            merged = deep_merge(merged, loaded)
        return merged
