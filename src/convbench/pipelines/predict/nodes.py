"""Nodes of `predict`: pick a logged classifier, read a folder of images, classify them, draw them."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from convbench.data.image_folder import IMAGE_SUFFIXES
from convbench.data.images import decode_image
from convbench.metrics import RANKING_METRIC, metrics_by_architecture
from convbench.serving import MAX_DECODED_PIXELS, RESULT_COLUMNS, to_image_batch
from convbench.tracking import active_run_env, finished_runs

logger = logging.getLogger(__name__)


SHEET_COLUMNS = 6  # images per row of the contact sheet


def classifier_uri(dataset: str, architecture: str, run_id: str) -> str:
    """The URI of the servable model a training run of `architecture` on `dataset` logged."""
    return f"runs:/{run_id}/{dataset}_{architecture}_classifier"


def choose_model(predict: dict[str, Any]) -> str:
    """`predict.model_uri` if given, else the classifier of `predict.dataset`'s best run by test accuracy.

    Candidates are every finished run in the dataset's MLflow experiment, in the Kedro env of this
    run (a smoke run picks a smoke model), for every architecture it trained and logged a
    classifier of (runs older than the classifier cannot serve).

    Raises:
        ValueError: No model is given and the dataset has no run with a classifier to choose from.
    """
    if predict.get("model_uri"):
        return str(predict["model_uri"])
    dataset = predict["dataset"]
    env = active_run_env()
    candidates = ranked_classifiers(dataset, env)
    if candidates.empty:
        raise ValueError(
            f"No trained model of {dataset!r} to predict with (env {env or 'any'}): train one first, e.g. "
            f"`kedro run --pipelines={dataset}_resnet`, or name one with --params=predict.model_uri=runs:/<run_id>/<name>"
        )
    best = candidates.iloc[0]
    logger.info(
        "Predicting with %s (test accuracy %.4f, run %s)", best["model_uri"], best[RANKING_METRIC], best["run_name"]
    )
    return str(best["model_uri"])


def ranked_classifiers(dataset: str, env: str | None) -> pd.DataFrame:
    """Every classifier logged for `dataset` by a finished run (of Kedro env `env`), best test accuracy first.

    A run trained `architecture` when it holds `<architecture>.test_accuracy` (see `convbench.metrics`).

    Returns:
        Columns `model_uri`, `architecture`, `test_accuracy`, `run_name`, `run_id`; latest run first among equals.
    """
    columns = ["model_uri", "architecture", RANKING_METRIC, "run_name", "run_id"]
    experiment = mlflow.get_experiment_by_name(dataset)
    if experiment is None:
        return pd.DataFrame(columns=columns)
    logged = {
        (model.source_run_id, model.name)
        for model in mlflow.search_logged_models(experiment_ids=[experiment.experiment_id], output_format="list")
    }
    rows = []
    for run in finished_runs(experiment.experiment_id, env):
        for architecture, metrics in metrics_by_architecture(run.data.metrics).items():
            uri = classifier_uri(dataset, architecture, run.info.run_id)
            if RANKING_METRIC in metrics and (run.info.run_id, uri.rsplit("/", 1)[-1]) in logged:
                rows.append([uri, architecture, metrics[RANKING_METRIC], run.info.run_name, run.info.run_id])
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(RANKING_METRIC, ascending=False, kind="stable").reset_index(drop=True)


def read_image_files(input_dir: str) -> dict[str, bytes]:
    """The bytes of every PNG/JPEG/BMP file in `input_dir` (not its subfolders), by file name, sorted.

    Raises:
        FileNotFoundError: The folder does not exist or holds no PNG/JPEG/BMP file.
    """
    folder = Path(input_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"predict.input_dir={input_dir!r} is not a folder (resolved: {folder.resolve()})")
    files = {
        path.name: path.read_bytes()
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    }
    if not files:
        raise FileNotFoundError(f"No {'/'.join(sorted(IMAGE_SUFFIXES))} file in {folder.resolve()}")
    return files


def classify_images(model_uri: str, files: dict[str, bytes], predict: dict[str, Any]) -> pd.DataFrame:
    """The `predict.top_k` most likely classes of every file, with their probabilities.

    Args:
        model_uri: An MLflow model logged by a training run (`..._classifier`).
        files: File name -> PNG/JPEG/BMP bytes.
        predict: `top_k`, and `resize` (resize images of another size instead of refusing them).

    Returns:
        One row per file: `file`, `class_1`, `probability_1`, ... `class_k`, `probability_k`, `model_uri`.
    """
    model = mlflow.pyfunc.load_model(model_uri)
    input_shape = (model.metadata.metadata or {}).get("input_shape")
    if input_shape is None:
        raise ValueError(f"{model_uri} is not a convbench classifier (no input_shape in its metadata)")
    images = to_image_batch(list(files.values()), input_shape, resize=bool(predict["resize"]), names=list(files))
    table = model.predict(images)
    class_names = [column for column in table.columns if column not in RESULT_COLUMNS]
    probabilities = table[class_names].to_numpy()
    top_k = min(int(predict["top_k"]), len(class_names))
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
    rows = []
    for name, ranked, row in zip(files, order, probabilities):
        record: dict[str, Any] = {"file": name}
        for rank, index in enumerate(ranked, start=1):
            record[f"class_{rank}"] = class_names[index]
            record[f"probability_{rank}"] = float(row[index])
        rows.append(record | {"model_uri": model_uri})
    return pd.DataFrame(rows)


def plot_contact_sheet(files: dict[str, bytes], predictions: pd.DataFrame) -> Figure:
    """Every image with its file name and its top classes (as the model saw its colours)."""
    count = len(predictions)
    columns = min(SHEET_COLUMNS, count)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(2.4 * columns, 2.9 * rows + 0.4), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    top_k = sum(column.startswith("class_") for column in predictions.columns)
    for axis in axes.flat:
        axis.axis("off")
    for axis, row in zip(axes.flat, predictions.itertuples(index=False)):
        image = decode_image(files[row.file], 3, row.file, max_pixels=MAX_DECODED_PIXELS)
        axis.imshow(image)
        lines = [row.file] + [
            f"{getattr(row, f'class_{k}')} {getattr(row, f'probability_{k}'):.0%}" for k in range(1, top_k + 1)
        ]
        axis.set_title("\n".join(lines), fontsize=7)
    figure.suptitle(f"Predictions of {predictions['model_uri'].iloc[0]}", fontsize=9)
    return figure
