"""Published results as data: the claims `kedro run --pipelines=reproduce` trains and checks.

A claim is one figure someone published (a course notebook, a paper) for an architecture on a
dataset, with the recipe that gave it, as an entry of `claims:` in the parameters
(conf/base/parameters_reproduce.yml; a user adds their own in conf/local)::

    claims:
      mnist_mlp:
        dataset: mnist
        architecture: mlp
        recipe: {epochs: 20, early_stopping: null}   # merged over training.mlp
        metric: test_accuracy
        published: 0.9689
        source: "course notebook: Keras MLP on MNIST"

`check_claims` refuses an unknown dataset, architecture, metric or key, naming the claim; the
pipeline registry builds `reproduce_<id>` for every claim any env declares (`declared_claims`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convbench.config import every_env_parameters
from convbench.dataset_specs import DATASETS, get_dataset

CLAIMS_KEY = "claims"
"""Top-level parameter holding every claim by id."""

CLAIM_METRICS = ("test_accuracy", "test_top5_accuracy", "test_tta_accuracy", "val_accuracy")
"""What a claim may compare: a test metric of `evaluate_predictions`, or the last epoch's validation
accuracy where the published figure was selected on a validation split."""

DEFAULT_TOLERANCE = 0.01
"""A claim is reproduced when the measured figure is at most this far below the published one (1 point)."""

CLAIM_ID = re.compile(r"^[a-z][a-z0-9_]*$")
"""Claim ids are pipeline and namespace names: lower case, digits and underscores."""

REQUIRED_KEYS = ("dataset", "architecture", "metric", "published", "source")
OPTIONAL_KEYS = ("recipe", "tolerance", "label_mode", "hours_here", "note")


@dataclass(frozen=True)
class Claim:
    """One published figure and how to train for it.

    Attributes:
        id: The claim's name: pipeline `reproduce_<id>`.
        dataset, architecture: Names in the dataset and model registries.
        metric: One of `CLAIM_METRICS`.
        published: The published figure, as a fraction (0.9689 for 96.89%).
        source: Where it was published.
        recipe: Overrides of `training.<architecture>` (the published recipe in this project's terms).
        tolerance: How far below `published` a measurement may fall and still reproduce it.
        label_mode: Crowd-labelled datasets: the label mode the figure was trained with (it must
            be the run's `preprocessing.<dataset>.label_mode`).
        hours_here: Estimated hours of the full recipe's training on the project's 2-core CPU
            reference machine; over an hour, the report's full-recipe row says so when not run.
        note: Anything a reader should know about the match (what differs from the original).
    """

    id: str
    dataset: str
    architecture: str
    metric: str
    published: float
    source: str
    recipe: Mapping[str, Any] = field(default_factory=dict)
    tolerance: float = DEFAULT_TOLERANCE
    label_mode: str | None = None
    hours_here: float | None = None
    note: str = ""


def check_claim(claim_id: str, entry: Any) -> Claim:
    """`entry` (one item of `claims:`) as a `Claim`.

    Raises:
        ValueError: A bad id, a missing or unknown key, an unknown dataset, architecture or metric,
            or a published figure or tolerance outside [0, 1]; the message names the claim.
    """
    from convbench.models.registry import ARCHITECTURES

    where = f"Claim {claim_id!r} (claims.{claim_id})"
    if not CLAIM_ID.match(str(claim_id)):
        raise ValueError(f"{where}: a claim id is lower case letters, digits and underscores, starting with a letter")
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} must be a mapping with {', '.join(REQUIRED_KEYS)}. Received: {entry!r}")
    missing = [key for key in REQUIRED_KEYS if entry.get(key) is None]
    unknown = sorted(set(entry) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if missing or unknown:
        problems = [f"missing {', '.join(missing)}"] if missing else []
        problems += [f"unknown keys {', '.join(unknown)}"] if unknown else []
        raise ValueError(
            f"{where}: {'; '.join(problems)}. A claim takes {', '.join(REQUIRED_KEYS)} and optionally "
            f"{', '.join(OPTIONAL_KEYS)}"
        )
    if entry["dataset"] not in DATASETS:
        raise ValueError(f"{where}: unknown dataset {entry['dataset']!r}. Known datasets: {', '.join(DATASETS)}")
    if entry["architecture"] not in ARCHITECTURES:
        raise ValueError(
            f"{where}: unknown architecture {entry['architecture']!r}. Known architectures: {', '.join(ARCHITECTURES)}"
        )
    if entry["metric"] not in CLAIM_METRICS:
        raise ValueError(f"{where}: unknown metric {entry['metric']!r}. Known metrics: {', '.join(CLAIM_METRICS)}")
    for key in ("published", "tolerance"):
        value = entry.get(key, DEFAULT_TOLERANCE)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{where}: {key} is a fraction in [0, 1] (0.9689 for 96.89%). Received: {value!r}")
    if entry.get("recipe") is not None and not isinstance(entry["recipe"], Mapping):
        raise ValueError(
            f"{where}: recipe is a mapping of training.<architecture> overrides. Received: {entry['recipe']!r}"
        )
    if entry.get("label_mode") is not None and not get_dataset(entry["dataset"]).crowd_labelled:
        raise ValueError(f"{where}: label_mode applies to crowd-labelled datasets only, not {entry['dataset']!r}")
    return Claim(
        id=str(claim_id),
        dataset=entry["dataset"],
        architecture=entry["architecture"],
        metric=entry["metric"],
        published=float(entry["published"]),
        source=str(entry["source"]),
        recipe=dict(entry.get("recipe") or {}),
        tolerance=float(entry.get("tolerance", DEFAULT_TOLERANCE)),
        label_mode=entry.get("label_mode"),
        hours_here=None if entry.get("hours_here") is None else float(entry["hours_here"]),
        note=str(entry.get("note") or ""),
    )


def check_claims(claims: Mapping[str, Any] | None) -> dict[str, Claim]:
    """Every entry of `claims:` checked (`check_claim`), in the order given."""
    return {claim_id: check_claim(claim_id, entry) for claim_id, entry in (claims or {}).items()}


def declared_claims(conf_source: str | Path) -> dict[str, str]:
    """The claims any env's parameter files under `conf_source` declare, id -> dataset, in file order
    (those naming a known dataset; `check_claims` reports the others when the run reads them).

    Every env is read, so `reproduce_<id>` exists whichever `--env` a run picks (as for image
    folders, `convbench.config.declared_image_folders`); the run's own parameters decide the rest.
    """
    ids: dict[str, str] = {}
    for loaded in every_env_parameters(conf_source):
        claims = loaded.get(CLAIMS_KEY)
        for claim_id, entry in claims.items() if isinstance(claims, dict) else ():
            dataset = entry.get("dataset") if isinstance(entry, dict) else None
            if CLAIM_ID.match(str(claim_id)) and dataset in DATASETS:
                ids[str(claim_id)] = dataset
    return ids
