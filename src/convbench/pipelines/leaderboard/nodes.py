"""The leaderboard of one dataset: this run's architectures plus the latest earlier run of every other."""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from convbench.metrics import (
    BUDGET_METRICS,
    HISTORY_COLUMNS,
    HISTORY_METRICS,
    NO_BUDGET,
    RANKING_METRIC,
    SIZE_METRICS,
    SPEED_METRICS,
    budget_label,
    history_column,
    is_test_metric,
    metrics_by_architecture,
    order_test_metrics,
)
from convbench.pipelines.reporting.nodes import to_markdown
from convbench.tracking import active_run_env, current_backend, finished_runs, run_backend

logger = logging.getLogger(__name__)

RUN_COLUMNS = ("run_name", "run_id", "started")
"""Where each row comes from: this run or an earlier MLflow run of the same dataset."""


def build_leaderboard(*metrics_tables: pd.DataFrame, dataset: str) -> tuple[pd.DataFrame, str, Figure]:
    """Ranks every architecture trained on `dataset`: the tables of this run, then earlier MLflow runs.

    An architecture trained in this run is shown with this run's results; any other
    architecture with its latest finished run in the active MLflow run's experiment and Kedro
    env (smoke runs never mix with real ones), so pipelines run one by one still compare. Each row
    names the Keras backend it trained under. Rows are ranked by test accuracy; every `test_*`
    metric found in the tables or the runs is a column.

    Args:
        metrics_tables: One-row metrics tables of the architectures trained in this run.
        dataset: The dataset's name, for titles.

    Returns:
        The leaderboard, the same as Markdown, and a bar chart of test accuracy.
    """
    active = mlflow.active_run()
    current = pd.concat(list(metrics_tables), ignore_index=True) if metrics_tables else pd.DataFrame()
    if not current.empty:
        current = current.assign(
            run_name=active.info.run_name if active else "this run",
            run_id=active.info.run_id if active else "",
            started=_date(active.info.start_time) if active else "",
            backend=current_backend(),
        )
    earlier = pd.DataFrame()
    if active is not None:
        earlier = earlier_runs(active.info.experiment_id, exclude_run_id=active.info.run_id, env=active_run_env())
    board = rank(current, earlier)
    if board.empty:
        raise ValueError(
            f"No results for {dataset!r} yet: train an architecture first, "
            f"e.g. `kedro run --pipelines={dataset}_resnet`, or run `kedro run --pipelines={dataset}`."
        )
    return board, to_markdown(board.drop(columns=["run_id"])), plot_leaderboard(board, dataset)


def rank(current: pd.DataFrame, earlier: pd.DataFrame) -> pd.DataFrame:
    """`current` rows plus `earlier` rows of architectures not in `current`, ranked at equal budget.

    Rows are grouped by their training `budget` (`10 min`, `20 epochs`, or `recipe` for none), the
    group of the best row first; within a group the best test accuracy comes first and `rank`
    counts from 1, so architectures are only ranked against others trained with the same budget.

    Columns: `rank`, `architecture`, `budget`, the Keras `backend` (speeds differ between backends),
    size, the last epoch's curves, every test metric either frame holds (`test_accuracy` first, then
    by name; one no row has a value of is dropped), time and speed, the fraction of an epoch and the
    budget overrun if any row has one, and where the row comes from (`RUN_COLUMNS`).
    """
    if not earlier.empty and not current.empty:
        earlier = earlier[~earlier["architecture"].isin(current["architecture"])]
    frames = [frame for frame in (current, earlier) if not frame.empty]
    if not frames:
        return pd.DataFrame()
    board = pd.concat(frames, ignore_index=True)
    board["budget"] = [
        budget_label(row.get("budget_minutes"), row.get("budget_epochs")) for row in board.to_dict("records")
    ]
    tests = [c for c in order_test_metrics(board.columns) if c == RANKING_METRIC or board[c].notna().any()]
    overrun = [name for name in ("epoch_fraction", "budget_overrun_s") if name in board and board[name].notna().any()]
    columns = [
        "architecture",
        "budget",
        "backend",
        *SIZE_METRICS,
        *HISTORY_COLUMNS,
        *tests,
        *SPEED_METRICS,
        *overrun,
        *RUN_COLUMNS,
    ]
    board = board[[c for c in columns if c in board]]
    board = board.sort_values(RANKING_METRIC, ascending=False, kind="stable", na_position="last")
    group_order = {budget: index for index, budget in enumerate(dict.fromkeys(board["budget"]))}
    board = board.sort_values("budget", key=lambda budgets: budgets.map(group_order), kind="stable")
    board.insert(0, "rank", board.groupby("budget", sort=False).cumcount() + 1)
    return board.reset_index(drop=True)


def earlier_runs(experiment_id: str, exclude_run_id: str | None = None, env: str | None = None) -> pd.DataFrame:
    """One row per architecture: its results in the latest finished run of the experiment that trained it.

    An architecture counts as trained in a run when the run holds `<architecture>.test_accuracy`.
    Columns are those of a metrics table (NaN where the run did not log the metric), with every
    `<architecture>.test_*` metric the run holds. With `env`, only runs of that Kedro env
    (tag `convbench.env`) count.
    """
    rows: dict[str, dict[str, Any]] = {}
    for run in finished_runs(experiment_id, env):
        if run.info.run_id == exclude_run_id:
            continue
        for architecture, metrics in metrics_by_architecture(run.data.metrics).items():
            if RANKING_METRIC not in metrics or architecture in rows:
                continue
            rows[architecture] = {
                "architecture": architecture,
                "backend": run_backend(run),
                **{name: metrics.get(name, math.nan) for name in SIZE_METRICS},
                **{history_column(name): metrics.get(name, math.nan) for name in HISTORY_METRICS},
                **{name: value for name, value in metrics.items() if is_test_metric(name)},
                **{name: metrics.get(name, math.nan) for name in SPEED_METRICS},
                **{name: metrics.get(name, math.nan) for name in BUDGET_METRICS},
                "run_name": run.info.run_name,
                "run_id": run.info.run_id,
                "started": _date(run.info.start_time),
            }
    frame = pd.DataFrame(list(rows.values()))
    for column in SIZE_METRICS:
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame


def _date(milliseconds: int | None) -> str:
    if milliseconds is None:
        return ""
    return dt.datetime.fromtimestamp(milliseconds / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")


def plot_leaderboard(board: pd.DataFrame, dataset: str) -> Figure:
    """Test accuracy per architecture (bars, best on top), and accuracy against parameters."""
    ordered = board.iloc[::-1]
    height = max(3.0, 0.45 * len(board) + 1.5)
    figure = Figure(figsize=(13, height))
    bars, scatter = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    accuracy = ordered[RANKING_METRIC].astype(float).to_numpy() * 100
    positions = np.arange(len(ordered))
    bars.barh(positions, accuracy, color="tab:blue")
    bars.set_yticks(positions, ordered["architecture"])
    for position, value, row in zip(positions, accuracy, ordered.itertuples(index=False)):
        speed = getattr(row, "train_images_per_s", math.nan)
        budget = "" if row.budget == NO_BUDGET else f", budget {row.budget}"
        note = f" {value:.2f}%  ({_millions(row.parameters)} params, {speed:,.0f} img/s{budget})"
        bars.text(value, position, note, va="center", fontsize=8)
    bars.set_xlim(0, 115)
    bars.set_xlabel("test accuracy (%)")
    bars.set_title("Test accuracy")
    bars.grid(axis="x", alpha=0.3)

    parameters = ordered["parameters"].astype(float).to_numpy()
    scatter.scatter(parameters, accuracy, color="tab:orange")
    for x, y, name in zip(parameters, accuracy, ordered["architecture"]):
        scatter.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if np.nanmin(parameters) > 0:
        scatter.set_xscale("log")
    scatter.set_xlabel("trainable parameters")
    scatter.set_ylabel("test accuracy (%)")
    scatter.set_title("Accuracy against size")
    scatter.grid(alpha=0.3)
    figure.suptitle(f"{dataset} leaderboard")
    figure.tight_layout()
    return figure


def _millions(parameters: Any) -> str:
    if parameters is None or pd.isna(parameters):
        return "?"
    return f"{float(parameters) / 1e6:.2f} M"
