"""The one mapping from architecture names to their builders.

Each name is a `{dataset}_{name}` pipeline and a recipe `training.<name>` in
`conf/base/parameters_training.yml`; several names may share a builder with different
hyperparameters in their recipes (`resnet` and `resnet_v2`, `mobilenet_v2` and
`mobilenet_v2_imagenet`). Adding an architecture: a builder, a line here, a recipe there and
a line in the smoke env (docs/adding_an_architecture.md).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import keras

from convbench.models.alexnet import build_alexnet
from convbench.models.densenet import build_densenet
from convbench.models.hierarchical import build_hierarchical
from convbench.models.inception import build_inception
from convbench.models.mlp import build_mlp, build_residual_mlp
from convbench.models.mobilenet import build_mobilenet_v2, require_imagenet_weights
from convbench.models.preact_resnet import build_preact_resnet
from convbench.models.resnet import build_resnet
from convbench.models.simple_cnn import build_simple_cnn
from convbench.models.vgg import build_vgg13, build_vgg16
from convbench.models.xception import build_xception

Builder = Callable[..., keras.Model]

ARCHITECTURES: dict[str, Builder] = {
    "mlp": build_mlp,
    "residual_mlp": build_residual_mlp,
    "simple_cnn": build_simple_cnn,
    "alexnet": build_alexnet,
    "vgg13": build_vgg13,
    "vgg16": build_vgg16,
    "inception": build_inception,
    "resnet": build_resnet,
    "resnet_v2": build_resnet,
    "preact_resnet": build_preact_resnet,
    "xception": build_xception,
    "densenet": build_densenet,
    "mobilenet_v2": build_mobilenet_v2,
    "mobilenet_v2_imagenet": build_mobilenet_v2,
    "hierarchical": build_hierarchical,
}


def get_builder(name: str) -> Builder:
    """The builder registered as `name`; a clear error lists the known names otherwise."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"Unknown architecture {name!r}. Known architectures: {known}") from None


FILE_CHECKS: dict[Builder, Callable[..., None]] = {build_mobilenet_v2: require_imagenet_weights}
"""Builders that read files no run downloads (pretrained weights) -> a check that they are there.

The check takes the builder's hyperparameters (the recipe's `model`, defaults filled in) and
raises FileNotFoundError with what to do; the training pipeline runs it before anything else.
"""


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
