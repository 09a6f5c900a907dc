"""The one mapping from architecture names to their builders, collected from the builder modules.

A builder registers itself with the `@architecture(...)` decorator of
`convbench.models.registration`; importing this module imports every module of the
`convbench.models` package (`discover`) and collects the registered builders into
`ARCHITECTURES`. Each name is a `{dataset}_{name}` pipeline and a recipe `training.<name>` in
`conf/base/parameters_training.yml`; several names may share a builder with different
hyperparameters in their recipes (`resnet` and `resnet_v2`, `mobilenet_v2` and
`mobilenet_v2_imagenet`).

Adding an architecture is two edits: a module `src/convbench/models/<module>.py` with a
builder decorated `@architecture("<name>")`, and the recipe `training.<name>`. Nothing here
changes, unless the new family should be listed elsewhere than last (`MODULE_ORDER`).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Sequence
from typing import Any

from convbench.models.registration import Builder, DataInit, FileCheck, qualified_name, registration

MODULE_ORDER = (
    "mlp",
    "simple_cnn",
    "alexnet",
    "vgg",
    "inception",
    "resnet",
    "preact_resnet",
    "xception",
    "densenet",
    "mobilenet",
    "hierarchical",
    "airbench",
)
"""The order of `ARCHITECTURES` (pipelines, leaderboard, docs): by module, as listed here.

The course baselines first, then the families by date of publication, the course's own module
last; modules not listed follow in alphabetical order. Within a module, builders come in the
order the module defines them, and the names of one builder in the order `@architecture` gives them.
"""


def discover(package: str, module_order: Sequence[str] = ()) -> dict[str, Builder]:
    """Import every module of `package` and map each name registered with `@architecture` to its builder.

    Modules come in `module_order`, then the others by name (see `MODULE_ORDER`); a builder counts
    in the module that defines it, not in those that import it.

    Raises:
        ValueError: A name registered by two builders (both are named), or `module_order` naming a
            module `package` does not have.
    """
    modules = sorted(info.name for info in pkgutil.iter_modules(importlib.import_module(package).__path__))
    missing = [name for name in module_order if name not in modules]
    if missing:
        raise ValueError(f"The module order names modules {package} does not have: {', '.join(missing)}")
    ordered = [*module_order, *(name for name in modules if name not in module_order)]
    architectures: dict[str, Builder] = {}
    for module_name in ordered:
        module = importlib.import_module(f"{package}.{module_name}")
        for builder in vars(module).values():
            found = registration(builder)
            if found is None or builder.__module__ != module.__name__:
                continue
            for name in found.names:
                if name in architectures:
                    raise ValueError(
                        f"Architecture {name!r} is registered twice: by {qualified_name(architectures[name])} "
                        f"and by {qualified_name(builder)}"
                    )
                architectures[name] = builder
    return architectures


ARCHITECTURES: dict[str, Builder] = discover("convbench.models", MODULE_ORDER)
"""Architecture name -> builder, in `MODULE_ORDER`."""

FILE_CHECKS: dict[Builder, FileCheck] = {
    builder: found.file_check
    for builder in ARCHITECTURES.values()
    if (found := registration(builder)) is not None and found.file_check is not None
}
"""Builders that read files no run downloads (pretrained weights) -> a check that they are there.

Given by `@architecture(..., file_check=...)`. The check takes the builder's hyperparameters (the
recipe's `model`, defaults filled in) and raises FileNotFoundError with what to do; the training
pipeline runs it before anything else.
"""


DATA_INITS: dict[Builder, DataInit] = {
    builder: found.data_init
    for builder in ARCHITECTURES.values()
    if (found := registration(builder)) is not None and found.data_init is not None
}
"""Builders with layers set from the training images -> the function that sets them (`@architecture(data_init=...)`)."""


def get_builder(name: str) -> Builder:
    """The builder registered as `name`; a clear error lists the known names otherwise."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"Unknown architecture {name!r}. Known architectures: {known}") from None


def hyperparameters(name: str) -> tuple[str, ...] | None:
    """The hyperparameters architecture `name`'s builder takes (its keyword-only parameters: a recipe's
    `model` keys), or None when it takes any keyword (`**kwargs`)."""
    parameters = inspect.signature(get_builder(name)).parameters.values()
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return None
    return tuple(parameter.name for parameter in parameters if parameter.kind is inspect.Parameter.KEYWORD_ONLY)


def needs_files(name: str) -> bool:
    """Whether architecture `name`'s builder may read files a run cannot fetch (see `FILE_CHECKS`)."""
    return get_builder(name) in FILE_CHECKS


def check_files(name: str, hyperparameters: dict[str, Any]) -> None:
    """Run the `FILE_CHECKS` entry of `name`'s builder on `hyperparameters` (with the builder's defaults)."""
    builder = get_builder(name)
    check = FILE_CHECKS.get(builder)
    if check is None:
        return
    defaults = {
        parameter.name: parameter.default
        for parameter in inspect.signature(builder).parameters.values()
        if parameter.default is not inspect.Parameter.empty
    }
    check(**{**defaults, **hyperparameters})


def data_init(name: str) -> DataInit | None:
    """The function that sets architecture `name`'s data-dependent weights, or None (see `DATA_INITS`)."""
    return DATA_INITS.get(get_builder(name))
