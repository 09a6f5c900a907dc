"""`deep_merge`: how a recipe and the layers over it combine, for the config loader and training alike
(`replace_switched_blocks` brings a merge made elsewhere, Kedro's, to the same result)."""

from __future__ import annotations

import copy
from typing import Any


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` merged in, key by key at every level (neither argument is changed).

    A block that switches kind replaces the old one whole: an override whose `name` differs from
    the base block's (`schedule: {name: constant, lr: 1e-4}` over a cosine schedule, an `adam`
    optimizer over `sgd`) keeps none of the old block's keys, and so does a budget in minutes over one
    in epochs (or the other way round).
    """
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and not _switches_kind(merged[key], value):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def replace_switched_blocks(merged: dict[str, Any], base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`merged` (`base` and `overrides` merged by another hand, key by key: Kedro merges conf/<env> and
    `--params` over conf/base so) with every block that `overrides` switches to another kind replaced by
    the override whole, as `deep_merge` has it: a cosine schedule switched to a constant one keeps no
    `peak_lr`. Nothing else changes; none of the arguments is changed.
    """
    repaired = dict(merged)
    for key, value in overrides.items():
        old = base.get(key)
        if not (isinstance(value, dict) and isinstance(old, dict) and isinstance(repaired.get(key), dict)):
            continue
        if _switches_kind(old, value):
            repaired[key] = copy.deepcopy(value)
        else:
            repaired[key] = replace_switched_blocks(repaired[key], old, value)
    return repaired


def _switches_kind(base: dict[str, Any], override: dict[str, Any]) -> bool:
    if "name" in override and "name" in base and override["name"] != base["name"]:
        return True
    return any(new in override and old in base and old not in override for new, old in _EXCLUSIVE_KEYS)


_EXCLUSIVE_KEYS = (("minutes", "epochs"), ("epochs", "minutes"))
"""Keys of which a block holds one: a budget is in minutes or in epochs."""
