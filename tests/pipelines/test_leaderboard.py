import math

import keras
import mlflow
import pandas as pd
import pytest

from convbench.metrics import HISTORY_COLUMNS, SUMMARY_METRICS
from convbench.pipelines.leaderboard.nodes import RUN_COLUMNS, build_leaderboard, earlier_runs, plot_leaderboard, rank
from convbench.pipelines.reporting.nodes import metrics_table


def table(
    architecture: str,
    test_accuracy: float,
    parameters: int = 1000,
    top5: float | None = None,
    budget: dict | None = None,
    **test_metrics: float,
) -> pd.DataFrame:
    """A metrics table as the reporting pipeline writes it, for one architecture (`budget`: its summary's budget)."""
    history = {"loss": [1.0, 0.5], "accuracy": [0.5, 0.8], "val_loss": [1.1, 0.7], "val_accuracy": [0.4, 0.7]}
    metrics = {"test_loss": 0.8, "test_accuracy": test_accuracy}
    if top5 is not None:
        metrics["test_top5_accuracy"] = top5
    metrics |= test_metrics  # e.g. test_macro_f1=0.5: a metric only evaluate_predictions knows
    summary = {"parameters": parameters, "epochs": 2, "wall_time_s": 10.0, "train_images_per_s": 500.0}
    summary |= budget or {}
    frame, _, _ = metrics_table(
        history, summary, {"metrics": metrics}, {"dataset": "cifar10", "architecture": architecture}
    )
    return frame


def log_run(
    name: str,
    architecture: str,
    test_accuracy: float,
    parameters: int,
    status: str = "FINISHED",
    env: str = "base",
    backend: str | None = None,
    **test_metrics: float,
) -> str:
    """An earlier MLflow run as a `{dataset}_{architecture}` Kedro run leaves it (`backend`: its Keras backend
    tag; None for a run from before the tag)."""
    tags = {"convbench.env": env} | ({"convbench.keras_backend": backend} if backend else {})
    with mlflow.start_run(run_name=name, tags=tags) as run:
        for step, value in enumerate([0.3, 0.6], start=1):  # per-epoch curves: the leaderboard takes the last
            mlflow.log_metrics({f"{architecture}.val_accuracy": value, f"{architecture}.loss": 1 - value}, step=step)
        mlflow.log_metrics(
            {
                **{f"{architecture}.{metric}": value for metric, value in test_metrics.items()},
                f"{architecture}.test_accuracy": test_accuracy,
                f"{architecture}.test_loss": 1.0,
                f"{architecture}.parameters": parameters,
                f"{architecture}.epochs": 2,
                f"{architecture}.wall_time_s": 30.0,
                f"{architecture}.train_images_per_s": 100.0,
                f"node_time_s.cifar10.{architecture}.train_model": 12.0,
            }
        )
    if status != "FINISHED":
        mlflow.MlflowClient().set_terminated(run.info.run_id, status=status)
    return run.info.run_id


@pytest.fixture
def experiment(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = mlflow.create_experiment("cifar10", artifact_location=(tmp_path / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=experiment_id)
    yield experiment_id
    mlflow.set_tracking_uri(None)


def test_rank_orders_by_test_accuracy_and_numbers_the_rows():
    board = rank(pd.concat([table("mlp", 0.5), table("resnet", 0.9), table("vgg16", 0.85)]), pd.DataFrame())
    assert list(board["architecture"]) == ["resnet", "vgg16", "mlp"]
    assert list(board["rank"]) == [1, 2, 3]
    assert "test_top5_accuracy" not in board  # no column for a metric nobody has


def test_architectures_are_ranked_only_against_others_trained_with_the_same_budget():
    ten_minutes = {"budget_minutes": 10.0, "budget_overrun_s": 0.0}
    board = rank(
        pd.concat(
            [
                table("resnet", 0.80, budget=ten_minutes),
                table("densenet", 0.40, budget={**ten_minutes, "epoch_fraction": 0.3}),
                table("mlp", 0.50, budget={"budget_epochs": 3}),
                table("airbench", 0.93, budget={**ten_minutes, "budget_overrun_s": 42.0}),
                table("vgg16", 0.95),
            ]
        ),
        pd.DataFrame(),
    )
    assert list(zip(board["budget"], board["rank"], board["architecture"])) == [
        ("recipe", 1, "vgg16"),  # the group of the best row first
        ("10 min", 1, "airbench"),
        ("10 min", 2, "resnet"),
        ("10 min", 3, "densenet"),
        ("3 epochs", 1, "mlp"),
    ]
    assert list(board.columns[:3]) == ["rank", "architecture", "budget"]
    assert board.set_index("architecture").loc["airbench", "budget_overrun_s"] == 42.0  # never silent
    assert board.set_index("architecture").loc["densenet", "epoch_fraction"] == 0.3  # a fraction of an epoch, shown


def test_an_earlier_runs_budget_is_read_back_from_mlflow(experiment):
    log_run("cifar10_resnet", "resnet", 0.85, 269_722, budget_minutes=20.0)
    log_run("cifar10_mlp", "mlp", 0.45, 205_642)
    board = rank(pd.DataFrame(), earlier_runs(experiment)).set_index("architecture")
    assert board.loc["resnet", "budget"] == "20 min" and board.loc["mlp", "budget"] == "recipe"


def test_this_runs_result_replaces_an_earlier_run_of_the_same_architecture():
    earlier = pd.DataFrame(
        [
            {"architecture": "resnet", "test_accuracy": 0.99, "run_name": "old", "run_id": "a", "started": "x"},
            {"architecture": "densenet", "test_accuracy": 0.7, "run_name": "old", "run_id": "a", "started": "x"},
        ]
    )
    board = rank(table("resnet", 0.6).assign(run_name="now", run_id="b", started="y"), earlier)
    assert list(zip(board["architecture"], board["test_accuracy"], board["run_name"])) == [
        ("densenet", 0.7, "old"),
        ("resnet", 0.6, "now"),
    ]


def test_earlier_runs_take_each_architectures_latest_finished_run(experiment):
    log_run("cifar10_resnet", "resnet", 0.80, 269_722)
    log_run("cifar10", "mlp", 0.45, 205_642)  # a `{dataset}` run holds several architectures
    mlflow.MlflowClient().log_metric(mlflow.last_active_run().info.run_id, "vgg16.test_accuracy", 0.9)
    log_run("cifar10_resnet", "resnet", 0.85, 269_722)  # newer: wins
    log_run("cifar10_resnet", "resnet", 0.99, 269_722, status="FAILED")  # failed runs do not count
    rows = earlier_runs(experiment).set_index("architecture")
    assert rows.loc["resnet", "test_accuracy"] == 0.85
    assert rows.loc["resnet", "parameters"] == 269_722 and rows.loc["resnet", "val_accuracy"] == 0.6
    assert rows.loc["resnet", "train_loss"] == pytest.approx(0.4)
    assert rows.loc["mlp", "run_name"] == "cifar10" and rows.loc["vgg16", "test_accuracy"] == 0.9
    assert math.isnan(rows.loc["vgg16", "wall_time_s"])  # what a run did not log stays empty
    assert math.isnan(rows.loc["vgg16", "test_loss"])
    assert set(rows.columns) >= {*SUMMARY_METRICS, *HISTORY_COLUMNS, "test_accuracy", "test_loss", *RUN_COLUMNS}
    assert "test_top5_accuracy" not in rows  # no run logged it
    assert "node_time_s.cifar10" not in rows.index


def test_leaderboard_joins_this_run_and_earlier_runs_and_plots_them(experiment, tmp_path):
    earlier_id = log_run("cifar10_densenet", "densenet", 0.93, 769_162)
    with mlflow.start_run(run_name="cifar10") as current:
        board, markdown, figure = build_leaderboard(
            table("resnet", 0.91, 269_722), table("mlp", 0.5), dataset="cifar10"
        )
    assert list(board["architecture"]) == ["densenet", "resnet", "mlp"]
    assert list(board["run_id"]) == [earlier_id, current.info.run_id, current.info.run_id]
    assert markdown.splitlines()[0].startswith("| rank | architecture | budget | backend | parameters |")
    assert "| 1 | densenet | recipe | tensorflow | 769,162 |" in markdown
    figure.savefig(tmp_path / "board.png")
    assert (tmp_path / "board.png").read_bytes()[:4] == b"\x89PNG"
    assert [tick.get_text() for tick in figure.axes[0].get_yticklabels()] == ["mlp", "resnet", "densenet"]


def test_every_row_names_the_keras_backend_it_trained_under(experiment, monkeypatch):
    log_run("cifar10_densenet", "densenet", 0.93, 769_162, backend="jax")
    log_run("cifar10_vgg16", "vgg16", 0.92, 14_000_000)  # from before the tag: TensorFlow, then the only backend
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")  # this run's backend, as Keras reports it
    with mlflow.start_run(run_name="cifar10"):
        board, markdown, _ = build_leaderboard(table("resnet", 0.91), dataset="cifar10")
    assert dict(zip(board["architecture"], board["backend"])) == {
        "densenet": "jax",
        "vgg16": "tensorflow",
        "resnet": "torch",
    }
    assert "| 1 | densenet | recipe | jax |" in markdown


def test_leaderboard_takes_earlier_runs_of_its_own_env_only(experiment):
    log_run("cifar10_resnet", "resnet", 0.91, 269_722, env="base")
    log_run("cifar10_densenet", "densenet", 0.2, 769_162, env="smoke")
    with mlflow.start_run(run_name="cifar10_leaderboard", tags={"convbench.env": "base"}):
        board, _, _ = build_leaderboard(dataset="cifar10")
    assert list(board["architecture"]) == ["resnet"]
    with mlflow.start_run(run_name="cifar10_leaderboard", tags={"convbench.env": "smoke"}):
        board, _, _ = build_leaderboard(dataset="cifar10")
    assert list(board["architecture"]) == ["densenet"]


def test_leaderboard_without_inputs_reads_mlflow_only(experiment):
    log_run("cifar10_resnet", "resnet", 0.8, 269_722)
    with mlflow.start_run(run_name="cifar10_leaderboard"):
        board, _, _ = build_leaderboard(dataset="cifar10")
    assert list(board["architecture"]) == ["resnet"]


def test_leaderboard_of_a_dataset_with_no_results_says_what_to_run(experiment):
    with mlflow.start_run(), pytest.raises(ValueError, match="kedro run --pipelines=cifar10_resnet"):
        build_leaderboard(dataset="cifar10")


METRIC_COLUMNS = [
    "parameters",
    "epochs",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "train_objective",
    "l2_penalty",
]


def test_a_new_test_metric_of_this_runs_tables_becomes_a_column_after_test_accuracy():
    board = rank(pd.concat([table("mlp", 0.5), table("resnet", 0.9, test_macro_f1=0.88)]), pd.DataFrame())
    assert list(board.columns) == [
        "rank",
        "architecture",
        "budget",
        *METRIC_COLUMNS,
        "test_accuracy",
        "test_loss",
        "test_macro_f1",
        "wall_time_s",
        "train_images_per_s",
    ]
    assert board.loc[0, "test_macro_f1"] == 0.88 and math.isnan(board.loc[1, "test_macro_f1"])


def test_a_test_metric_nobody_has_a_value_of_is_dropped():
    earlier = pd.DataFrame(
        [{"architecture": "densenet", "test_accuracy": 0.7, "test_top5_accuracy": math.nan, "test_macro_f1": math.nan}]
    )
    board = rank(table("resnet", 0.6, top5=0.9), earlier)
    assert "test_top5_accuracy" in board and "test_macro_f1" not in board
    board = rank(table("resnet", 0.6), earlier)
    assert "test_top5_accuracy" not in board and "test_macro_f1" not in board


def test_a_new_test_metric_of_an_earlier_mlflow_run_reaches_the_leaderboard(experiment):
    log_run("cifar10_densenet", "densenet", 0.93, 769_162, test_macro_f1=0.91, test_top5_accuracy=0.99)
    log_run("cifar10_vgg16", "vgg16", 0.92, 14_000_000)
    with mlflow.start_run(run_name="cifar10"):
        board, markdown, _ = build_leaderboard(table("resnet", 0.91, test_macro_f1=0.9), dataset="cifar10")
    rows = board.set_index("architecture")
    assert list(rows.index) == ["densenet", "vgg16", "resnet"]
    assert rows.loc["densenet", "test_macro_f1"] == 0.91 and rows.loc["resnet", "test_macro_f1"] == 0.9
    assert math.isnan(rows.loc["vgg16", "test_macro_f1"]) and rows.loc["densenet", "test_top5_accuracy"] == 0.99
    tests = [column for column in board.columns if column.startswith("test_")]
    assert tests == ["test_accuracy", "test_loss", "test_macro_f1", "test_top5_accuracy"]
    assert "| test_accuracy | test_loss | test_macro_f1 | test_top5_accuracy |" in markdown.splitlines()[0]


def test_the_leaderboard_figure_is_not_registered_with_pyplot():
    import matplotlib.pyplot as plt

    plt.close("all")
    board = rank(pd.concat([table("mlp", 0.5), table("resnet", 0.9)]), pd.DataFrame())
    figure = plot_leaderboard(board, "cifar10")
    assert plt.get_fignums() == [] and figure.canvas.manager is None
