"""Nodes that train each claim (`convbench.claims`) and report which published figures convbench reproduces.

Each claim trains in an MLflow run of its own, nested in the `kedro run`'s run and tagged with the
claim, its recipe and data (`CLAIM_TAG`, `RECIPE_TAG`, `FINGERPRINT_TAG`): the same node functions
as `{dataset}_{architecture}` (`build_model`, `train_model`, `predict_test_set`,
`evaluate_predictions`), so the curves, checkpoints and budget work as in any run. A claim whose
finished run with the same recipe and data is in MLflow (same Kedro env) is not trained again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from convbench.claims import Claim, check_claim, check_claims
from convbench.config import RUN_RECIPE_SETTINGS
from convbench.dataset_specs import get_dataset
from convbench.merging import deep_merge
from convbench.metrics import NO_BUDGET, budget_label
from convbench.models.registry import check_files
from convbench.pipelines.reporting.nodes import to_markdown
from convbench.pipelines.training.nodes import (
    build_model,
    evaluate_predictions,
    predict_test_set,
    resolve_recipe,
    train_model,
)
from convbench.tracking import ENV_TAG, PROCESS_TAG, active_run_env, finished_runs, start_nested_run, this_process
from convbench.training.recipe import RecipeError

logger = logging.getLogger(__name__)

CLAIM_TAG = "convbench.claim"
RECIPE_TAG = "convbench.claim_recipe"
"""Hash of the claim's resolved recipe without its budget: runs of one claim with one recipe share it."""
FINGERPRINT_TAG = "convbench.claim_fingerprint"
"""Hash of the resolved recipe (budget included) and the data: a run with the same one need not train again."""
BUDGET_TAG = "convbench.claim_budget"
MACHINE_TAG = "convbench.machine"
MEASURED_METRIC = "claim.measured"

REPRODUCED, NOT_REPRODUCED, NOT_RUN = "reproduced", "not reproduced", "not run"
LONG_HOURS = 1.0
"""A full recipe estimated to train longer than this here is reported as "not run here: needs N h" until run."""


def machine() -> str:
    """The CPU model and count of this machine, and its GPUs if TensorFlow sees any."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    described = f"{cpu}, {os.cpu_count()} CPUs"
    try:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            described += f", {len(gpus)} GPU"
    except ImportError:
        pass
    return described


def claim_recipe(claim: Claim, parameters: dict[str, Any]) -> dict[str, Any]:
    """The recipe `claim` trains with: `training.<architecture>` < the dataset's overrides < the claim's
    recipe < the run env and --params (`run_recipe_settings`) < `reproduce.budget_minutes`, if set.
    A crowd-labelled dataset's claim trains with its `label_mode`, or the run's if it names none.

    Raises:
        ValueError: the claim's recipe sets a block to `{}` where the architecture's has keys (a no-op
            in a key-by-key merge, never what a claim means).
        RecipeError: the recipe breaks the recipe schema (`resolve_recipe`); each problem names the claim.
    """
    base = deep_merge(
        parameters["training"][claim.architecture], parameters.get("recipe_overrides", {}).get(claim.dataset) or {}
    )
    for key, value in claim.recipe.items():
        if value == {} and base.get(key):
            raise ValueError(
                f"claims.{claim.id}.recipe.{key} is {{}}, which merges into training.{claim.architecture}.{key} "
                f"({base[key]}) as no change: write `{key}: null` for none, or the keys to change"
            )
    recipe = deep_merge(base, dict(claim.recipe))
    run_settings = (parameters.get(RUN_RECIPE_SETTINGS) or {}).get(claim.architecture) or {}
    label_mode = claim.label_mode
    if label_mode is None and get_dataset(claim.dataset).crowd_labelled:
        label_mode = ((parameters.get("preprocessing") or {}).get(claim.dataset) or {}).get("label_mode")
    try:
        resolved = resolve_recipe(recipe, None, run_settings, label_mode=label_mode, architecture=claim.architecture)
    except RecipeError as error:  # the claim's recipe, or a run setting its recipe does not take
        raise RecipeError(
            [f"claims.{claim.id}: {problem}" for problem in error.problems], f"claims.{claim.id}"
        ) from None
    minutes = (parameters.get("reproduce") or {}).get("budget_minutes")
    if minutes:
        resolved["budget"] = {"minutes": float(minutes), "schedule": "linear"}
    return resolved


def recipe_hash(recipe: dict[str, Any]) -> str:
    """A short hash of `recipe` without its budget (`RECIPE_TAG`)."""
    unbudgeted = {key: value for key, value in recipe.items() if key != "budget"}
    return hashlib.blake2b(json.dumps(unbudgeted, sort_keys=True, default=str).encode(), digest_size=8).hexdigest()


def data_fingerprint(recipe: dict[str, Any], *arrays: np.ndarray) -> str:
    """A short hash of the recipe (budget included) and the data a claim trains and is tested on."""
    digest = hashlib.blake2b(json.dumps(recipe, sort_keys=True, default=str).encode(), digest_size=8)
    for array in arrays:
        digest.update(str((array.shape, array.dtype)).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def budget_of(recipe: dict[str, Any]) -> str:
    """The claim run's budget label: `60 min`, `5 epochs`, or `recipe`."""
    budget = recipe.get("budget") or {}
    return budget_label(budget.get("minutes"), budget.get("epochs"))


def why_not_runnable(claim: Claim, recipe: dict[str, Any], run_label_mode: str | None) -> str | None:
    """Why `claim` cannot train in this run (a missing file, another label mode), or None."""
    if claim.label_mode is not None and claim.label_mode != run_label_mode:
        return (
            f"trained with label mode {claim.label_mode}, this run prepared {claim.dataset} with {run_label_mode}: "
            f"add --params=preprocessing.{claim.dataset}.label_mode={claim.label_mode}"
        )
    try:
        check_files(claim.architecture, recipe.get("model") or {})
    except FileNotFoundError as error:  # its first sentence: which file; `kedro run` prints how to get it
        return str(error).splitlines()[0].split(". ")[0]
    return None


def command_for(claim: Claim, budget: str = NO_BUDGET) -> str:
    """The command that trains `claim` under `budget`, a budget label such as `60 min` (the full recipe by default)."""
    params = [f"preprocessing.{claim.dataset}.label_mode={claim.label_mode}"] if claim.label_mode else []
    if budget.endswith(" min"):  # `budget_label`'s form of `reproduce.budget_minutes`
        params.append(f"reproduce.budget_minutes={budget.removesuffix(' min')}")
    return f"kedro run --pipelines=reproduce_{claim.id}" + (f" --params={','.join(params)}" if params else "")


PARAMETERS = ("claims", "training", "recipe_overrides", RUN_RECIPE_SETTINGS, "reproduce", "preprocessing")
"""The parameters the nodes read (`params:<name>`), passed in this order (after a claim's data)."""


def _by_name(*values: Any) -> dict[str, Any]:
    """The `PARAMETERS` a node received, by name."""
    return dict(zip(PARAMETERS, values, strict=True))


def check_claim_recipe(*parameter_values: Any, claim_id: str) -> None:
    """Checks claim `claim_id` and the recipe it trains with (`claim_recipe`) from the `PARAMETERS`.

    Tagged `preflight`, so a mistake in any claim of a run stops it before the first claim trains.

    Raises:
        ValueError: the claim is malformed (`check_claim`), or `RecipeError`: its recipe breaks the schema.
    """
    parameters = _by_name(*parameter_values)
    claim_recipe(check_claim(claim_id, parameters["claims"][claim_id]), parameters)


def reproduce_claim(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    class_names: list[str],
    train_indices: np.ndarray,
    val_indices: np.ndarray,
    test_indices: np.ndarray,
    normalization: dict[str, Any],
    checkpoint_dir: Path,
    *parameter_values: Any,
    claim_id: str,
) -> dict[str, Any]:
    """Trains and evaluates `claim_id` in its own nested MLflow run, unless a finished run of it with the
    same recipe and data exists (then its figures are reused), or it cannot run here (then why).

    `parameter_values` are the `PARAMETERS`, in their order.

    Returns:
        `claim`, `status` (`measured`, `reused` or `not run`), and for a run: `run_id`,
        `experiment_id`, `measured`, `budget`, `epochs`, `epoch_fraction`, `training_minutes`,
        `machine`; for no run: `reason`.
    """
    parameters = _by_name(*parameter_values)
    claim = check_claim(claim_id, parameters["claims"][claim_id])
    recipe = claim_recipe(claim, parameters)
    run_label_mode = ((parameters.get("preprocessing") or {}).get(claim.dataset) or {}).get("label_mode")
    reason = why_not_runnable(claim, recipe, run_label_mode)
    if reason:
        logger.warning("Claim %s is not run: %s", claim.id, reason)
        return {"claim": claim.id, "status": NOT_RUN, "budget": budget_of(recipe), "reason": reason}
    fingerprint = data_fingerprint(recipe, train_images, train_labels, train_indices, val_indices, test_indices)
    env = active_run_env() or "base"
    earlier = _finished_claim_runs(claim.id, env, {FINGERPRINT_TAG: fingerprint})
    if earlier:
        logger.info("Claim %s: reusing finished run %s (same recipe and data)", claim.id, earlier[0].info.run_id)
        return {**_result_of(earlier[0]), "status": "reused"}
    tags = {
        CLAIM_TAG: claim.id,
        RECIPE_TAG: recipe_hash(recipe),
        FINGERPRINT_TAG: fingerprint,
        BUDGET_TAG: budget_of(recipe),
        MACHINE_TAG: machine(),
        ENV_TAG: env,
        PROCESS_TAG: this_process(),
    }
    with start_nested_run(f"claim_{claim.id}", tags) as run:
        mlflow.log_dict(recipe, "recipe.json")
        model = build_model(
            train_images, train_indices, class_names, normalization, recipe, claim.architecture, claim.dataset
        )
        model, history, summary = train_model(
            model, train_images, train_labels, train_indices, val_indices, class_names, recipe, checkpoint_dir,
            claim.architecture,
        )  # fmt: skip
        probabilities, tta = predict_test_set(model, test_images, test_indices, recipe)
        _, evaluation = evaluate_predictions(probabilities, tta, test_labels, test_indices, class_names)
        figures = {**evaluation["metrics"], "val_accuracy": (history.get("val_accuracy") or [math.nan])[-1]}
        measured = figures.get(claim.metric, math.nan)
        mlflow.log_metrics(
            {
                MEASURED_METRIC: measured,
                **{name: float(value) for name, value in figures.items()},
                "epochs": float(summary["epochs"]),
                "training_minutes": summary["this_run_time_s"] / 60,
                **({"epoch_fraction": summary["epoch_fraction"]} if "epoch_fraction" in summary else {}),
            }
        )
    return {**_result_of(mlflow.get_run(run.info.run_id)), "status": "measured"}


def _finished_claim_runs(claim_id: str, env: str, tags: dict[str, str]) -> list[Any]:
    """Finished claim runs of the active experiment (or of every experiment without one), latest first."""
    active = mlflow.active_run()
    experiment_ids = [active.info.experiment_id] if active else [e.experiment_id for e in mlflow.search_experiments()]
    runs = []
    for experiment_id in experiment_ids:
        runs += [
            run
            for run in finished_runs(experiment_id, env)
            if run.data.tags.get(CLAIM_TAG) == claim_id
            and all(run.data.tags.get(key) == value for key, value in tags.items())
        ]
    return sorted(runs, key=lambda run: run.info.start_time, reverse=True)


def _result_of(run: Any) -> dict[str, Any]:
    metrics, tags = run.data.metrics, run.data.tags
    return {
        "claim": tags[CLAIM_TAG],
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "measured": metrics.get(MEASURED_METRIC, math.nan),
        "budget": tags.get(BUDGET_TAG, "recipe"),
        "epochs": metrics.get("epochs", math.nan),
        "epoch_fraction": metrics.get("epoch_fraction", math.nan),
        "training_minutes": metrics.get("training_minutes", math.nan),
        "machine": tags.get(MACHINE_TAG, ""),
    }


REPORT_COLUMNS = (
    "claim",
    "dataset",
    "architecture",
    "metric",
    "published",
    "measured",
    "difference",
    "verdict",
    "budget",
    "epochs",
    "training_minutes",
    "machine",
    "run",
    "why",
    "command",
    "source",
)


def build_reproduction_report(
    claims: dict[str, Any],
    training: dict[str, Any],
    recipe_overrides: dict[str, Any],
    run_recipe_settings: dict[str, Any],
    reproduce: dict[str, Any] | None,
    preprocessing: dict[str, Any],
    *results: dict[str, Any],
) -> tuple[pd.DataFrame, str, Figure]:
    """One row per claim and budget: published, measured, difference and verdict.

    For every claim of `claims:`: its full recipe's row, measured in this run (`results`) or in the
    latest finished claim run of the same recipe in MLflow (same Kedro env; KILLED and FAILED runs
    never count), else "not run" with why and the command; and a row per budget it was trained
    under (`reproduce.budget_minutes`), measured likewise. Where `reproduce.earlier_report` names an
    earlier report's CSV, its measured rows fill the claims and budgets that neither this run nor
    MLflow has, marked as carried over (`earlier_results`). A measurement reproduces the claim when
    it is at most the claim's `tolerance` below the published figure.

    Returns:
        The report (`REPORT_COLUMNS`), the same as Markdown, and a bar chart of it.
    """
    parameters = _by_name(claims, training, recipe_overrides, run_recipe_settings, reproduce, preprocessing)
    claims = check_claims(claims)
    settings = parameters.get("reproduce") or {}
    ui_url = str(settings.get("ui_url") or "http://127.0.0.1:5000").rstrip("/")
    env = active_run_env() or "base"
    this_run = {result["claim"]: result for result in results}
    earlier = earlier_results(settings.get("earlier_report"))
    rows = []
    for claim in claims.values():
        recipe = claim_recipe(claim, {**parameters, "reproduce": {}})
        runs_by_budget: dict[str, dict[str, Any]] = {}
        for run in _finished_claim_runs(claim.id, env, {RECIPE_TAG: recipe_hash(recipe)}):
            runs_by_budget.setdefault(run.data.tags.get(BUDGET_TAG, "recipe"), _result_of(run))
        current = this_run.get(claim.id)
        if current and current["status"] != NOT_RUN:
            runs_by_budget[current["budget"]] = current
        for budget, result in earlier.get(claim.id, {}).items():
            runs_by_budget.setdefault(budget, result)
        budgets = ["recipe", *sorted(budget for budget in runs_by_budget if budget != "recipe")]
        for budget in budgets:
            result = runs_by_budget.get(budget)
            if result is None:
                rows.append(_not_run_row(claim, recipe, current))
            else:
                rows.append(_measured_row(claim, result, ui_url))
    table = pd.DataFrame(rows, columns=list(REPORT_COLUMNS))
    return table, report_markdown(table), plot_reproduction(table)


EARLIER_COLUMNS = ("claim", "measured", "verdict", "budget", "epochs", "training_minutes", "machine", "run")
"""The columns of an earlier report that `earlier_results` reads."""


def earlier_results(path: str | os.PathLike | None) -> dict[str, dict[str, dict[str, Any]]]:
    """The measured rows of an earlier report's CSV (`reproduction.csv`, e.g. the one committed in
    benchmarks/results/), as results by claim and budget; {} for no path.

    An earlier report is how measurements survive a new MLflow store (another machine, a fresh clone).
    Its rows carry no recipe fingerprint: carry one over only while the claim's recipe is unchanged.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: a column of `EARLIER_COLUMNS` is missing, or a measured row has no number.
    """
    if not path:
        return {}
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reproduce.earlier_report: no file at {path} (an earlier reproduction.csv)")
    table = pd.read_csv(path, dtype={"budget": str})
    missing = [column for column in EARLIER_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"{path}: not a reproduction report, it lacks the columns {missing}")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for line, row in zip(range(2, len(table) + 2), table.itertuples(index=False), strict=True):
        if row.verdict == NOT_RUN:
            continue
        if _missing(row.measured):
            raise ValueError(f"{path}, line {line}: claim {row.claim!r} is {row.verdict!r} but has no measured value")
        results.setdefault(row.claim, {})[str(row.budget)] = {
            "claim": row.claim,
            "measured": float(row.measured),
            "budget": str(row.budget),
            "epochs": float(row.epochs),
            "training_minutes": float(row.training_minutes),
            "machine": "" if _missing(row.machine) else str(row.machine),
            "run": "" if _missing(row.run) else str(row.run),
            "carried_from": str(path),
        }
    return results


def _base_row(claim: Claim) -> dict[str, Any]:
    return {
        "claim": claim.id,
        "dataset": claim.dataset,
        "architecture": claim.architecture,
        "metric": claim.metric,
        "published": claim.published,
        "source": claim.source,
        "command": command_for(claim),
    }


def _measured_row(claim: Claim, result: dict[str, Any], ui_url: str) -> dict[str, Any]:
    measured = float(result["measured"])
    verdict = REPRODUCED if measured >= claim.published - claim.tolerance - 1e-12 else NOT_REPRODUCED
    epochs = result.get("epochs", math.nan)
    fraction = result.get("epoch_fraction", math.nan)
    return {
        **_base_row(claim),
        "measured": measured,
        "difference": measured - claim.published,
        "verdict": verdict,
        "budget": result["budget"],
        "command": command_for(claim, result["budget"]),
        "epochs": fraction if not math.isnan(fraction) else epochs,
        "training_minutes": result.get("training_minutes", math.nan),
        "machine": result.get("machine", ""),
        "run": result["run"] if "carried_from" in result else _run_url(ui_url, result),
        "why": _joined(claim.note, _carried(result)),
    }


def _run_url(ui_url: str, result: dict[str, Any]) -> str:
    return f"{ui_url}/#/experiments/{result['experiment_id']}/runs/{result['run_id']}"


def _carried(result: dict[str, Any]) -> str:
    source = result.get("carried_from")
    return f"carried over from {source}: its MLflow run is not in this store" if source else ""


def _joined(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def _not_run_row(claim: Claim, recipe: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
    """A claim's full-recipe row without a measurement. Why: this run's reason for not training it
    (`current`), else a missing file, else its hours; a claim outside this run is never blamed on
    this run's label mode."""
    why = (current or {}).get("reason") or why_not_runnable(claim, recipe, claim.label_mode)
    if not why and claim.hours_here and claim.hours_here > LONG_HOURS:
        why = f"not run here: needs about {claim.hours_here:g} h of training on the 2-core CPU"
    return {
        **_base_row(claim),
        "measured": math.nan,
        "difference": math.nan,
        "verdict": NOT_RUN,
        "budget": "recipe",
        "epochs": recipe.get("epochs", math.nan),
        "training_minutes": math.nan,
        "machine": "",
        "run": "",
        "why": why or "no finished run of this recipe yet",
    }


def report_markdown(table: pd.DataFrame) -> str:
    """The report as Markdown: figures in %, the difference in points, the run as a link."""
    shown = table.copy()
    for column in ("published", "measured"):
        shown[column] = [f"{value * 100:.2f}%" if not _missing(value) else "" for value in shown[column]]
    shown["difference"] = [f"{value * 100:+.2f}" if not _missing(value) else "" for value in shown["difference"]]
    shown["epochs"] = [f"{value:g}" if not _missing(value) else "" for value in shown["epochs"]]
    shown["training_minutes"] = [f"{value:.1f}" if not _missing(value) else "" for value in shown["training_minutes"]]
    shown["run"] = [f"[{url.rsplit('/', 1)[-1][:8]}]({url})" if url else "" for url in shown["run"]]
    shown["command"] = [f"`{command}`" for command in shown["command"]]
    columns = ["claim", "metric", "published", "measured", "difference", "verdict", "budget", "epochs",
               "training_minutes", "run", "why", "command"]  # fmt: skip
    counts = table["verdict"].value_counts()
    summary = ", ".join(f"{counts.get(verdict, 0)} {verdict}" for verdict in (REPRODUCED, NOT_REPRODUCED, NOT_RUN))
    machines = sorted({name for name in table["machine"] if name})
    lines = [f"Claims: {summary}. Difference = measured - published, in points.\n"]
    if machines:
        lines.append(f"Measured on: {'; '.join(machines)}.\n")
    return "\n".join(lines) + "\n" + to_markdown(shown[columns])


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


VERDICT_COLOURS = {REPRODUCED: "tab:green", NOT_REPRODUCED: "tab:red", NOT_RUN: "lightgrey"}


def plot_reproduction(table: pd.DataFrame) -> Figure:
    """Measured (bars, coloured by verdict) against published (black marks) for every row."""
    ordered = table.iloc[::-1].reset_index(drop=True)
    figure = Figure(figsize=(11, max(3.0, 0.42 * len(ordered) + 1.5)))
    axis = figure.subplots()
    positions = np.arange(len(ordered))
    measured = [0.0 if _missing(value) else value * 100 for value in ordered["measured"]]
    axis.barh(positions, measured, color=[VERDICT_COLOURS[verdict] for verdict in ordered["verdict"]])
    axis.scatter(ordered["published"] * 100, positions, marker="|", s=300, color="black", label="published", zorder=3)
    labels = [
        f"{row.claim} ({row.budget})" if row.budget != "recipe" else row.claim
        for row in ordered.itertuples(index=False)
    ]
    axis.set_yticks(positions, labels)
    for position, row in zip(positions, ordered.itertuples(index=False)):
        text = row.verdict if _missing(row.measured) else f"{row.measured * 100:.2f}% ({row.verdict})"
        axis.text(max(measured[position], 1.0), position, f" {text}", va="center", fontsize=8)
    axis.set_xlim(0, 125)
    axis.set_xlabel("accuracy (%): the claim's metric")
    axis.set_title("Published results reproduced by convbench")
    axis.legend(loc="lower right")
    axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return figure
