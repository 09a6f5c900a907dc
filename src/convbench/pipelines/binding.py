"""Binds per-instance constants (dataset and architecture names) into node functions."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial, update_wrapper
from typing import Any


def bind(func: Callable[..., Any], **constants: Any) -> Callable[..., Any]:
    """`func` with keyword arguments fixed, keeping its name and docstring for Kedro and kedro-viz."""
    return update_wrapper(partial(func, **constants), func)
