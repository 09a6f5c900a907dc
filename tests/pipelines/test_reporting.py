import os
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from convbench.pipelines.reporting.nodes import (
    metrics_table,
    per_class_table,
    plot_confusion_matrix,
    plot_learning_curves,
    plot_sample_predictions,
    to_markdown,
)

RUN = {"dataset": "cifar10", "architecture": "resnet"}
HISTORY = {"loss": [2.0, 1.5], "accuracy": [0.3, 0.5], "val_loss": [1.8, 1.6], "val_accuracy": [0.35, 0.45]}
EVALUATION = {
    "metrics": {"test_loss": 1.7, "test_accuracy": 0.42},
    "per_class_accuracy": {"cat": 0.5, "dog": 1 / 3},
    "confusion_matrix": [[1, 1], [2, 1]],
    "class_names": ["cat", "dog"],
}
SUMMARY = {"parameters": 269722, "epochs": 2, "wall_time_s": 12.5, "train_images_per_s": 812.3}


def png_bytes(figure: Figure, tmp_path) -> int:
    path = tmp_path / "figure.png"
    figure.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path.stat().st_size


def test_metrics_table_takes_final_epoch_test_metrics_and_run_facts():
    table, markdown, summary = metrics_table(HISTORY, SUMMARY, EVALUATION, RUN)
    row = table.iloc[0]
    assert (row["dataset"], row["architecture"], row["epochs"], row["parameters"]) == ("cifar10", "resnet", 2, 269722)
    assert (row["train_loss"], row["val_accuracy"], row["test_accuracy"]) == (1.5, 0.45, 0.42)
    lines = markdown.splitlines()
    assert lines[0].startswith("| dataset | architecture | parameters | epochs |")
    assert "| cifar10 | resnet | 269,722 | 2 | 1.5 | 0.5000 |" in lines[2]
    assert summary == {
        "parameters": {"value": 269722.0, "step": 0},
        "epochs": {"value": 2.0, "step": 0},
        "wall_time_s": {"value": 12.5, "step": 0},
        "train_images_per_s": {"value": 812.3, "step": 0},
    }


def test_a_budgeted_trainings_budget_and_overrun_are_logged_and_an_unbudgeted_one_logs_none():
    budgeted = SUMMARY | {"budget_minutes": 10.0, "budget_overrun_s": 3.5, "planned_epochs": 2}
    table, _, summary = metrics_table(HISTORY, budgeted, EVALUATION, RUN)
    assert summary["budget_minutes"] == {"value": 10.0, "step": 0}
    assert summary["budget_overrun_s"] == {"value": 3.5, "step": 0} and "budget_epochs" not in summary
    assert table.iloc[0]["budget_minutes"] == 10.0 and "budget_epochs" not in table
    plain, _, unbudgeted = metrics_table(HISTORY, SUMMARY, EVALUATION, RUN)
    assert not {"budget_minutes", "budget_epochs", "budget_overrun_s"} & (set(unbudgeted) | set(plain.columns))


def test_a_fraction_of_an_epoch_is_logged_for_the_leaderboard_to_show():
    fraction = SUMMARY | {"budget_minutes": 5.0, "budget_overrun_s": 0.0, "epoch_fraction": 0.4}
    table, _, summary = metrics_table(HISTORY, fraction, EVALUATION, RUN)
    assert summary["epoch_fraction"] == {"value": 0.4, "step": 0} and table.iloc[0]["epoch_fraction"] == 0.4


def test_markdown_marks_missing_values():
    assert "n/a" in to_markdown(pd.DataFrame([{"x": float("nan")}]))


def test_per_class_table_has_accuracy_and_support():
    table = per_class_table(EVALUATION)
    assert table.to_dict("list") == {
        "class": ["cat", "dog"],
        "test_accuracy": [0.5, pytest.approx(1 / 3)],
        "support": [2, 3],
    }


def report_figures() -> list[Figure]:
    """The learning curves, the confusion matrix and the sample predictions of one run."""
    images = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(20) % 2
    probabilities = np.tile([[0.8, 0.2]], (20, 1)).astype(np.float32)
    return [
        plot_learning_curves(HISTORY, RUN),
        plot_confusion_matrix(EVALUATION, RUN),
        plot_sample_predictions(images, labels, np.arange(20), probabilities, ["cat", "dog"], RUN),
    ]


def test_figures_render_to_non_empty_pngs(tmp_path):
    figures = report_figures()
    for figure in figures:
        assert png_bytes(figure, tmp_path) > 5000
    sample_axes = [axis for axis in figures[2].axes if axis.images]
    assert len(sample_axes) == 16
    titles = [axis.get_title() for axis in sample_axes]
    assert titles[0] == "true: cat\npred: cat (80%)" and titles[1].startswith("true: dog\npred: cat")


def test_figures_are_not_registered_with_pyplot():
    """Figures are `Figure` objects of their own: none stays open in pyplot's registry after it is saved."""
    plt.close("all")
    figures = report_figures()
    assert plt.get_fignums() == []
    assert all(figure.canvas.manager is None for figure in figures)


def test_the_figure_modules_neither_import_pyplot_nor_pick_a_backend():
    """Importing them leaves the user's backend (MPLBACKEND) alone: no `matplotlib.use(...)` at import."""
    code = (
        "import sys, matplotlib\n"
        "import convbench.pipelines.reporting.nodes, convbench.pipelines.leaderboard.nodes\n"
        "import convbench.pipelines.predict.nodes\n"
        "print('matplotlib.pyplot' in sys.modules, matplotlib.get_backend())"
    )
    env = {**os.environ, "MPLBACKEND": "svg"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert result.stdout.split()[-2:] == ["False", "svg"]
