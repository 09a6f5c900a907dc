"""Nodes of `<dataset>_<architecture>_search`: trials of an Optuna study, then its report."""

from __future__ import annotations

import functools
import logging
import math
import shutil
import warnings
from pathlib import Path
from typing import Any

import keras
import matplotlib.pyplot as plt
import mlflow
import numpy as np
import optuna
import pandas as pd
from matplotlib.figure import Figure
from optuna.trial import TrialState

from convbench.metrics import to_mlflow_metrics
from convbench.pipelines.reporting.nodes import to_markdown
from convbench.pipelines.training.nodes import build_model
from convbench.runner import on_every_worker, on_placed_device
from convbench.search.space import Dimension, as_overrides, as_params_option, check_space, parse_space, with_values
from convbench.search.study import (
    HEARTBEATS_PER_STALE_PERIOD,
    RETRY_OF_ATTR,
    claim_trial,
    heartbeat,
    make_pruner,
    make_sampler,
    open_study,
    redacted,
    storage_url,
    tell_once,
)
from convbench.tracking import PROCESS_TAG, RunLink, active_run_link, in_run, start_nested_run, this_process
from convbench.training.callbacks import TrainingInterrupted
from convbench.training.fit import fit

logger = logging.getLogger(__name__)

OBJECTIVE = "val_accuracy"
"""What a trial maximises and reports to the pruner each epoch: the validation split's accuracy."""

STATE_TAG = "optuna.state"
"""Tag of a trial's MLflow run: COMPLETE, PRUNED or FAIL."""

TRIAL_TAG = "optuna.trial_number"
STUDY_TAG = "optuna.study"

DEFAULT_TRIAL_BUDGET = {"epochs": 10}


class TrialReporter(keras.callbacks.Callback):
    """Reports each epoch's validation accuracy to the trial, and prunes it.

    Raises `optuna.TrialPruned` at the end of an epoch the pruner judges hopeless.
    """

    def __init__(self, trial: optuna.Trial) -> None:
        super().__init__()
        self.trial = trial

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = float((logs or {}).get(OBJECTIVE, float("nan")))
        if math.isfinite(value):
            self.trial.report(value, step=epoch + 1)
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"trial {self.trial.number} pruned after epoch {epoch + 1} ({OBJECTIVE} {value:.4f})"
            )


def study_settings(search: dict[str, Any], search_dir: Path, dataset: str, architecture: str) -> dict[str, Any]:
    """Where the study lives and how many trials it runs, from `search` (conf/base/parameters_search.yml)."""
    return {
        "storage": storage_url(search.get("storage"), Path(search_dir) / "optuna.db"),
        "study_name": search.get("study_name") or f"{dataset}_{architecture}",
        "n_trials": int(search["n_trials"]),
        "trial_budget": dict(search.get("trial_budget") or DEFAULT_TRIAL_BUDGET),
        "stale_after_s": float(search.get("stale_after_s", 1800)),
    }


def run_search(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    train_indices: np.ndarray,
    val_indices: np.ndarray,
    class_names: list[str],
    normalization: dict[str, Any],
    recipe: dict[str, Any],
    search: dict[str, Any],
    search_dir: Path,
    architecture: str,
    dataset: str,
) -> dict[str, Any]:
    """Runs trials of the study until it has `search.n_trials` finished or running ones; what this run did.

    Each trial samples `search.spaces.<architecture>` (TPE), trains the recipe with those values
    under `search.trial_budget` (e.g. `{epochs: 10}`: the schedule ends there), and is pruned
    when its validation accuracy trails (`search.pruner`). Each is a nested MLflow run of this
    run, with its values as parameters, its curves and its state. Several workers (processes,
    machines) may run the same study at once; a killed one's trial is failed and tried again
    (see `convbench.search.study`). Under `convbench.runner.DaskRunner` every Dask worker is
    such a search worker (one per device where a worker spreads its work over several devices), so a
    cluster of n workers trains n trials at once.

    Returns:
        `storage` (the URL), `study_name`, and `trials`: the numbers and states of this run's trials.
    """
    dimensions = parse_space(architecture, (search.get("spaces") or {}).get(architecture))
    check_space(dimensions, recipe, architecture)
    settings = study_settings(search, search_dir, dataset, architecture)
    logger.info(
        "Study %s in %s: %d trials of %s, budget %s per trial",
        settings["study_name"],
        redacted(settings["storage"]),
        settings["n_trials"],
        architecture,
        settings["trial_budget"],
    )
    worker = functools.partial(
        _search_worker,
        dimensions=dimensions,
        recipe=recipe,
        search=search,
        settings=settings,
        search_dir=Path(search_dir),
        run_link=active_run_link(),
        architecture=architecture,
        dataset=dataset,
    )
    data = (train_images, train_labels, train_indices, val_indices, class_names, normalization)
    # Under the DaskRunner: one search worker per Dask worker (or per device of a worker that spreads its work)
    on_cluster = on_every_worker(worker, data)
    ran = [trial for trials in on_cluster for trial in trials] if on_cluster is not None else worker(0, data)
    logger.info("Study %s is complete: this run ran %d trials", settings["study_name"], len(ran))
    return {"storage": settings["storage"], "study_name": settings["study_name"], "trials": ran}


def _search_worker(
    index: int,
    data: tuple,
    *,
    dimensions: list[Dimension],
    recipe: dict[str, Any],
    search: dict[str, Any],
    settings: dict[str, Any],
    search_dir: Path,
    run_link: RunLink | None,
    architecture: str,
    dataset: str,
) -> list[dict[str, Any]]:
    """Claims and trains trials until the study is full; the numbers and states of those it ran.

    Worker `index` seeds its sampler with `search.sampler.seed + index`, so workers that start at once
    do not draw the same first points. Its trials are nested runs of `run_link`'s run.
    """
    train_images, train_labels, train_indices, val_indices, class_names, normalization = data
    budget = settings["trial_budget"]
    study = open_study(
        settings["storage"],
        settings["study_name"],
        make_sampler(search.get("sampler"), stream=index),
        make_pruner(search.get("pruner"), int(budget.get("epochs") or recipe["epochs"])),
    )
    train = (train_images[train_indices], train_labels[train_indices])
    val = (train_images[val_indices], train_labels[val_indices])
    ran = []

    def claim_and_train() -> None:
        with on_placed_device():  # the device the DaskRunner gave this search worker, if any
            while (
                trial := claim_trial(study, settings["storage"], settings["n_trials"], settings["stale_after_s"])
            ) is not None:
                values = {dimension.key: dimension.suggest(trial) for dimension in dimensions}
                trial_recipe = {**with_values(recipe, values), "budget": budget}
                with heartbeat(trial, settings["stale_after_s"] / HEARTBEATS_PER_STALE_PERIOD):
                    state = _run_trial(
                        study,
                        trial,
                        values,
                        trial_recipe,
                        data=(train_images, train_indices, class_names, normalization, train, val),
                        checkpoint=search_dir / "trials" / settings["study_name"] / f"{trial.number:05d}",
                        architecture=architecture,
                        dataset=dataset,
                    )
                ran.append({"number": trial.number, "state": state})

    in_run(run_link, claim_and_train)
    return ran


def _run_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    values: dict[str, Any],
    recipe: dict[str, Any],
    data: tuple,
    checkpoint: Path,
    architecture: str,
    dataset: str,
) -> str:
    """Trains one trial in its own nested MLflow run and tells the study how it ended; the state's name."""
    train_images, train_indices, class_names, normalization, train, val = data
    tags = {
        STUDY_TAG: study.study_name,
        TRIAL_TAG: str(trial.number),
        PROCESS_TAG: this_process(),
        STATE_TAG: "RUNNING",
    }
    retry_of = trial.user_attrs.get(RETRY_OF_ATTR)
    if retry_of is not None:
        tags["optuna.retry_of"] = str(retry_of)
    start_nested_run(f"{dataset}_{architecture}_trial_{trial.number}", tags)
    status, state = "FAILED", "FAIL"
    try:
        trial.set_user_attr("mlflow_run_id", mlflow.active_run().info.run_id)
        mlflow.log_params(values)
        mlflow.log_dict(recipe, f"{dataset}_{architecture}/recipe.json")
        keras.backend.clear_session()
        model = build_model(train_images, train_indices, class_names, normalization, recipe, architecture, dataset)
        _, history, summary = fit(
            model, train, val, len(class_names), recipe, checkpoint, architecture, callbacks=[TrialReporter(trial)]
        )
        value = float(history[OBJECTIVE][-1])
        counted = tell_once(study, trial, value, state=TrialState.COMPLETE)
        mlflow.log_metrics(
            {f"{architecture}.trial_{OBJECTIVE}": value, f"{architecture}.trial_epochs": summary["epochs"]}
        )
        logger.info("Trial %d: %s %.4f with %s", trial.number, OBJECTIVE, value, values)
        status, state = "FINISHED", "COMPLETE" if counted else "FAIL"
    except optuna.TrialPruned as pruned:
        counted = tell_once(study, trial, state=TrialState.PRUNED)
        logger.info("%s", pruned)
        status, state = "FINISHED", "PRUNED" if counted else "FAIL"
    except TrainingInterrupted:  # SIGTERM / Ctrl-C: the rerun tries the same values again
        if tell_once(study, trial, state=TrialState.FAIL):  # else the worker that failed it queued it again
            study.enqueue_trial(values, user_attrs={RETRY_OF_ATTR: trial.number}, skip_if_exists=False)
        status, state = "KILLED", "FAIL"
        raise
    except BaseException:
        tell_once(study, trial, state=TrialState.FAIL)
        raise
    finally:
        shutil.rmtree(checkpoint, ignore_errors=True)
        mlflow.set_tag(STATE_TAG, state)
        mlflow.end_run(status)
    return state


def report_search(
    summary: dict[str, Any], recipe: dict[str, Any], search: dict[str, Any], architecture: str, dataset: str
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any], str, Figure, Figure, Figure, dict[str, Any]]:
    """The study as it stands: every trial, the best trial's recipe, and its plots.

    Returns:
        The trials table; the best trial's whole recipe (JSON) and its searched values as a
        parameters file for conf/local (YAML); a Markdown report; the optimisation history,
        parameter importances and parallel coordinates (PNG); and the search's MLflow metrics
        (`search.best_val_accuracy`, `search.trials_<state>`).
    """
    study = optuna.load_study(study_name=summary["study_name"], storage=summary["storage"])
    trials = trials_table(study)
    counts = {state.name: int((trials["state"] == state.name).sum()) for state in TrialState}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ValueError(
            f"Study {study.study_name!r} has no complete trial yet (trials by state: {counts}): "
            "widen the search space or raise search.trial_budget, then rerun the same command."
        )
    best = study.best_trial
    best_recipe = with_values(recipe, best.params)
    best_params = as_overrides(best.params, architecture, recipe)
    option = as_params_option(best.params, architecture, recipe)
    metrics = {f"search.trials_{state.lower()}": float(count) for state, count in counts.items() if count}
    metrics["search.best_val_accuracy"] = float(best.value)
    report = "\n".join(
        [
            f"# Search: {architecture} on {dataset}",
            "",
            f"Study `{study.study_name}` in `{redacted(summary['storage'])}`, each trial trained with budget "
            f"`{search.get('trial_budget') or DEFAULT_TRIAL_BUDGET}` and maximising {OBJECTIVE}.",
            f"Trials by state: {', '.join(f'{state} {count}' for state, count in counts.items() if count)}.",
            "",
            f"Best: trial {best.number}, {OBJECTIVE} {best.value:.4f}, with {best.params}.",
            "",
            "Train it with the whole recipe, either with",
            "",
            f"    kedro run --pipelines={dataset}_{architecture} {option}",
            "",
            f"or by copying `best_params.yml` to `conf/local/parameters_search_best_{architecture}.yml`.",
            "",
            "## Trials",
            "",
            to_markdown(trials.drop(columns=["mlflow_run_id", "worker"])),
        ]
    )
    history_plot, importance_plot, parallel_plot = search_plots(study)
    return (
        trials,
        best_recipe,
        best_params,
        report,
        history_plot,
        importance_plot,
        parallel_plot,
        to_mlflow_metrics(metrics),
    )


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value, its parameters, epochs reported, seconds, worker and MLflow run."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        duration = trial.duration.total_seconds() if trial.duration else float("nan")
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                OBJECTIVE: trial.value if trial.value is not None else float("nan"),
                **{f"param.{key}": value for key, value in trial.params.items()},
                "epochs": len(trial.intermediate_values),
                "seconds": duration,
                "retry_of": trial.user_attrs.get(RETRY_OF_ATTR, ""),
                "worker": trial.user_attrs.get(PROCESS_TAG, ""),
                "mlflow_run_id": trial.user_attrs.get("mlflow_run_id", ""),
            }
        )
    return pd.DataFrame(rows)


def search_plots(study: optuna.Study) -> tuple[Figure, Figure, Figure]:
    """Optuna's optimisation history, parameter importances and parallel coordinates, as figures."""
    from optuna.visualization import matplotlib as optuna_plots

    figures = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for title, plot in (
            ("Optimisation history", optuna_plots.plot_optimization_history),
            ("Parameter importances", optuna_plots.plot_param_importances),
            ("Parallel coordinates", optuna_plots.plot_parallel_coordinate),
        ):
            try:
                axes = plot(study)
                figure = np.ravel(axes)[0].get_figure()
                figure.suptitle(f"{title}: {study.study_name}")
            except (ValueError, RuntimeError, ZeroDivisionError) as error:  # e.g. importances of one complete trial
                figure = Figure(figsize=(6, 3))
                figure.text(0.5, 0.5, f"{title}: not available yet\n({error})", ha="center", va="center", wrap=True)
            figure.set_size_inches(9, 5)
            figure.tight_layout()
            plt.close(figure)  # saved through the catalog; not kept in pyplot's registry
            figures.append(figure)
    return tuple(figures)
