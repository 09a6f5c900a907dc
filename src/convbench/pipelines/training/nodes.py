"""Nodes that build, train, export and evaluate one architecture on one dataset."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from convbench.merging import deep_merge
from convbench.metrics import to_mlflow_metrics
from convbench.models.registry import check_files
from convbench.normalization import check_normalization
from convbench.serving import ImageClassifier
from convbench.training.assembly import assemble_model
from convbench.training.distribute import distributed_recipe
from convbench.training.distribute import scope as distribute_scope
from convbench.training.fit import fit
from convbench.training.recipe import check_recipe
from convbench.training.tta import enabled as tta_enabled
from convbench.training.tta import predict_with_tta

TOP_K_MIN_CLASSES = 20  # top-5 accuracy is reported for datasets with at least this many classes


def resolve_recipe(
    recipe: dict[str, Any],
    dataset_overrides: dict[str, Any] | None,
    run_settings: dict[str, Any] | None,
    label_mode: str | None = None,
    *,
    architecture: str | None = None,
) -> dict[str, Any]:
    """The recipe a model is trained with: recipe < dataset overrides < run env and --params, key by key,
    checked against the recipe schema (`convbench.training.recipe`).

    Args:
        recipe: `training.<architecture>` as Kedro merged it (conf/base, the run env, --params).
        dataset_overrides: `recipe_overrides.<dataset>`: values that hold for every architecture on
            that dataset, e.g. `{augmentation: {horizontal_flip: false}}` for MNIST.
        run_settings: `run_recipe_settings.<architecture>`: the values of the recipe that the run env
            (conf/local, conf/smoke) and --params set, which win over the dataset's overrides
            (see `convbench.config`).
        label_mode: Crowd-labelled datasets only: `preprocessing.<dataset>.label_mode`, added as
            `label_mode` (it picks the loss and how targets are drawn, see `convbench.training.fit`).
        architecture: The architecture it trains (bound by the pipeline): problems are reported under
            `training.<architecture>`, and the `model` keys are checked against its builder.

    Raises:
        RecipeError: every key the schema refuses, each with its path and what it takes
            (`training.resnet.optimizer.name must be sgd, adam or adamw; received 'sgdd'`).

    A recipe with `distribute: {strategy: mirrored, ...}` is scaled here for this machine's replicas
    (`convbench.training.distribute.distributed_recipe`): the saved recipe holds the global batch
    sizes and the learning rates the model is really trained with, and `distribute.replicas`.
    """
    merged = deep_merge(deep_merge(recipe, dataset_overrides or {}), run_settings or {})
    if label_mode is not None:
        merged["label_mode"] = label_mode
    check_recipe(merged, f"training.{architecture}" if architecture else "", architecture)
    return distributed_recipe(merged)


def check_model_files(recipe: dict[str, Any], architecture: str) -> None:
    """Fail at once if the recipe's model needs a file that is not there (ImageNet weights).

    Tagged `preflight`: it runs before every other node of the run (`PreflightHook`), so a
    missing file stops `kedro run --pipelines=cifar10` in seconds, not after the other models trained.
    """
    check_files(architecture, recipe.get("model") or {})


def build_model(
    train_images: np.ndarray,
    train_indices: np.ndarray,
    class_names: list[str],
    normalization: dict[str, Any],
    recipe: dict[str, Any],
    architecture: str,
    dataset: str = "<dataset>",
) -> keras.Model:
    """The architecture for this dataset, taking raw uint8 images (z-score inside).

    Architectures registered with a `data_init` (airbench's patch whitening) get their
    data-dependent weights from the training split here, z-scored as the model will see them;
    validation images never reach it.

    Args:
        train_images: The development pool: its shape [H, W, C] sizes the input.
        train_indices: The training split's rows of `train_images`.
        class_names: One name per class; their number sizes the softmax.
        normalization: `mean` and `std` per channel from the training split.
        recipe: `model`, the builder's hyperparameters, `mixed_precision` (see
            `convbench.models.precision`), the dtype policy the layers are built with,
            `distribute`, whose strategy's scope the model is built in (so `fit` trains it on every
            replica, `convbench.training.distribute`), and `seed`, which seeds the initial weights.
        architecture: A name in the model registry.
        dataset: The dataset's name, for the error about a damaged `normalization.json`.
    """
    check_normalization(normalization, train_images.shape[-1], f"05_model_input/{dataset}/normalization.json")
    with distribute_scope(recipe.get("distribute")):
        return assemble_model(
            architecture,
            train_images.shape[1:],
            len(class_names),
            recipe,
            normalization["mean"],
            normalization["std"],
            init_images=train_images,
            init_rows=train_indices,  # the training split's, in its seeded order
        )


def train_model(
    model: keras.Model,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    train_indices: np.ndarray,
    val_indices: np.ndarray,
    class_names: list[str],
    recipe: dict[str, Any],
    checkpoint_dir: Path,
    architecture: str,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> tuple[keras.Model, dict[str, list[float]], dict[str, Any]]:
    """Fits `model` with the recipe; per-epoch curves go to MLflow as `<architecture>.<metric>` as they happen.

    An interrupted run resumes from the per-epoch checkpoint in `checkpoint_dir`.

    Args:
        train_labels: Class of every image, or, for crowd-labelled datasets, its target
            distribution [N, classes] (`train_targets`; validation rows hold one-hot majority labels).
        callbacks: Extra callbacks for `convbench.training.fit.fit` (none in a Kedro run; the
            time-to-accuracy benchmark adds its per-epoch test evaluation, so it trains through this node).

    Returns:
        The trained model, its per-epoch history and a training summary.
    """
    return fit(
        model,
        train=(train_images[train_indices], train_labels[train_indices]),
        val=(train_images[val_indices], train_labels[val_indices]),
        num_classes=len(class_names),
        recipe=recipe,
        checkpoint_dir=Path(checkpoint_dir),
        metric_prefix=architecture,
        callbacks=list(callbacks),
    )


def build_classifier(model: keras.Model, class_names: list[str]) -> ImageClassifier:
    """The trained model as a servable MLflow pyfunc: raw images or PNG/JPEG bytes in, class names and
    probabilities out (see `convbench.serving`)."""
    return ImageClassifier.from_keras(model, class_names)


def predict_test_set(
    model: keras.Model, test_images: np.ndarray, test_indices: np.ndarray, recipe: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities [N, classes] (float32) for the test split, in `test_indices` order, without and
    with the recipe's test-time augmentation (`tta: {flip, translate}`; [0, classes] when it has none)."""
    batch_size = int(recipe["eval_batch_size"])
    images = test_images[test_indices]
    plain = model.predict(images, batch_size=batch_size, verbose=0).astype(np.float32)
    tta = recipe.get("tta") or {}
    if not tta_enabled(tta):
        return plain, np.zeros((0, plain.shape[1]), dtype=np.float32)
    return plain, predict_with_tta(model, images, tta, batch_size)


def evaluate_predictions(
    probabilities: np.ndarray,
    tta_probabilities: np.ndarray,
    test_labels: np.ndarray,
    test_indices: np.ndarray,
    class_names: list[str],
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Test loss, top-1 (and top-5 with many classes) accuracy, per-class accuracy, confusion matrix.

    Every metric is named `test_*` (`convbench.metrics`): a new one here reaches the metrics table,
    MLflow (`<architecture>.<metric>`) and the leaderboard with no other edit. `test_accuracy` and
    the rest are always without test-time augmentation, so architectures compare alike; when the
    recipe has `tta`, `test_tta_accuracy` and `test_tta_loss` are added next to them (the per-class
    table and confusion matrix stay those of the plain predictions).

    Returns:
        Metrics in kedro-mlflow's `{name: {value, step}}` form, and the full evaluation
        (`metrics`, `per_class_accuracy`, `confusion_matrix` rows = true, columns = predicted).
    """
    labels = test_labels[test_indices].astype(np.int64)
    num_classes = len(class_names)
    predicted = probabilities.argmax(axis=1)
    true_probability = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)
    metrics = {
        "test_loss": float(-np.log(true_probability).mean()),
        "test_accuracy": float((predicted == labels).mean()),
    }
    if len(tta_probabilities):
        tta_true = np.clip(tta_probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)
        metrics["test_tta_loss"] = float(-np.log(tta_true).mean())
        metrics["test_tta_accuracy"] = float((tta_probabilities.argmax(axis=1) == labels).mean())
    if num_classes >= TOP_K_MIN_CLASSES:
        top5 = np.argpartition(-probabilities, 5, axis=1)[:, :5]
        metrics["test_top5_accuracy"] = float((top5 == labels[:, None]).any(axis=1).mean())
    confusion = np.bincount(labels * num_classes + predicted, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )
    support = confusion.sum(axis=1)
    per_class = np.divide(np.diag(confusion), support, out=np.full(num_classes, np.nan), where=support > 0)
    evaluation = {
        "metrics": metrics,
        "per_class_accuracy": {name: float(acc) for name, acc in zip(class_names, per_class)},
        "confusion_matrix": confusion.astype(int).tolist(),
        "class_names": list(class_names),
    }
    return to_mlflow_metrics(metrics), evaluation
