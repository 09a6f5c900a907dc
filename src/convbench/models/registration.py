"""The `@architecture` decorator: how a builder module names the architectures it builds.

    from convbench.models.registration import architecture

    @architecture("resnet", "resnet_v2")
    def build_resnet(input_shape, num_classes, *, depth=20, ...) -> keras.Model: ...

The decorator only marks the builder; `convbench.models.registry` imports every module of
`convbench.models` and collects the marked builders into `ARCHITECTURES`. It lives apart from
the registry so that a builder module imports it without importing every other builder (no
import cycle, whichever module is imported first).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import keras

Builder = Callable[..., "keras.Model"]
"""`build_<name>(input_shape, num_classes, **hyperparameters) -> keras.Model`."""

FileCheck = Callable[..., None]
"""Takes a builder's hyperparameters (defaults filled in); raises FileNotFoundError saying what to fetch."""

DataInit = Callable[["keras.Model", Any], None]
"""Takes the built model and the normalised training images (float32 [N, H, W, C]); sets weights from them."""

_B = TypeVar("_B", bound=Callable[..., Any])

_MARK = "convbench_architecture"
"""Attribute of a builder holding its `Registration`."""


@dataclass(frozen=True)
class Registration:
    """What `@architecture` records on a builder."""

    names: tuple[str, ...]
    """The architecture names (each a `{dataset}_{name}` pipeline and a recipe `training.<name>`)."""
    file_check: FileCheck | None = None
    """Check for files the builder reads but no run downloads (pretrained weights), or None."""
    data_init: DataInit | None = None
    """Sets weights of the built model from the training images (airbench's whitening layer), or None."""


def architecture(
    *names: str, file_check: FileCheck | None = None, data_init: DataInit | None = None
) -> Callable[[_B], _B]:
    """Register the decorated builder function under `names`; it is returned unchanged.

    Several names may share one builder, each with its own recipe (`resnet` and `resnet_v2`).
    `file_check`, for builders that read files no run downloads (pretrained weights), takes the
    builder's hyperparameters (the recipe's `model`, builder defaults filled in) and raises
    FileNotFoundError saying what to fetch; the training pipeline runs it before anything else.
    `data_init`, for builders with layers set from the data (airbench's patch whitening), takes the
    built model and the normalised training split; the training pipeline calls it after building,
    with the images it reads through the catalog. A name registered by two builders is refused
    when the registry collects them.

    Raises:
        ValueError: No names, a name that is not a Python identifier, or a name given twice.
        TypeError: `file_check` or `data_init` is not callable, the decorated object is not a function, or the
            function is already registered (give all its names in one `@architecture(...)`).
    """
    if not names:
        raise ValueError("@architecture needs at least one name.")
    for name in names:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"Architecture names must be Python identifiers (e.g. 'resnet_v2'). Received: {name!r}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"@architecture got the same name more than once: {', '.join(repeated)}")
    for option, value in (("file_check", file_check), ("data_init", data_init)):
        if value is not None and not callable(value):
            raise TypeError(f"{option} must be callable or None. Received: {value!r}")

    def register(builder: _B) -> _B:
        if not inspect.isfunction(builder):
            raise TypeError(f"@architecture decorates builder functions. Received: {builder!r}")
        existing = registration(builder)
        if existing is not None:
            raise TypeError(
                f"{qualified_name(builder)} is already registered as {', '.join(existing.names)}; "
                "give all its names in one @architecture(...)."
            )
        setattr(builder, _MARK, Registration(tuple(names), file_check, data_init))
        return builder

    return register


def registration(builder: object) -> Registration | None:
    """The `Registration` `@architecture` put on `builder`, or None if it is not a registered builder."""
    if not inspect.isfunction(builder):
        return None
    mark = getattr(builder, _MARK, None)
    return mark if isinstance(mark, Registration) else None


def qualified_name(builder: Callable[..., Any]) -> str:
    """`module.function`, as error messages name a builder."""
    return f"{builder.__module__}.{builder.__qualname__}"
