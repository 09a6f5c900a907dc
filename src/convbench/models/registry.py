"""The one mapping from architecture names to their builders."""

from __future__ import annotations

from collections.abc import Callable

import keras

from convbench.models.resnet import build_resnet

Builder = Callable[..., keras.Model]

ARCHITECTURES: dict[str, Builder] = {
    "resnet": build_resnet,
}


def get_builder(name: str) -> Builder:
    """The builder registered as `name`; a clear error lists the known names otherwise."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"Unknown architecture {name!r}. Known architectures: {known}") from None
