"""convbench under the other Keras backends: `KERAS_BACKEND=jax kedro run` (and `torch`, where PyTorch is
installed: the optional `torch` extra) trains ResNet and airbench in the smoke env, tags the run with its
backend, and what one backend saves, the other loads and predicts alike."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cifar_archives
import keras
import mlflow
import numpy as np
import pytest
from kedro_project import assert_ran, kedro_env, new_project, run_kedro

from convbench.pipelines.training.nodes import build_model

pytestmark = pytest.mark.e2e
ARCHITECTURES = ("resnet", "airbench")
TORCH = pytest.param(
    "torch",
    marks=[
        pytest.mark.torch,
        pytest.mark.skipif(
            importlib.util.find_spec("torch") is None, reason="PyTorch is not installed (extra `torch`)"
        ),
    ],
)
OTHER_BACKENDS = ["jax", TORCH]


@pytest.fixture(scope="module", params=OTHER_BACKENDS)
def backend_run(request, tmp_path_factory):
    """(backend, project): the smoke training of both architectures by `kedro run` under `backend`."""
    params = cifar_archives.file_mirror_params(tmp_path_factory.mktemp("mirror"))
    project = new_project(tmp_path_factory)
    pipelines = "--pipelines=" + ",".join(f"cifar10_{architecture}" for architecture in ARCHITECTURES)
    assert_ran(run_kedro(project, pipelines, params, env={"KERAS_BACKEND": request.param}))
    return request.param, project


def test_a_run_trains_both_architectures_and_is_tagged_with_its_backend(backend_run):
    backend, project = backend_run
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("cifar10").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["convbench.keras_backend"] == backend
    metrics = run.data.metrics
    assert all(0 <= metrics[f"{architecture}.test_accuracy"] <= 1 for architecture in ARCHITECTURES)
    assert 0 <= metrics["airbench.test_tta_accuracy"] <= 1  # test-time augmentation ran under this backend too
    lookahead_epochs = client.get_metric_history(run.info.run_id, "airbench.val_accuracy")
    assert len(lookahead_epochs) == metrics["airbench.epochs"] >= 1


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_a_model_trained_under_another_backend_predicts_the_same_under_tensorflow(backend_run, architecture):
    _, project = backend_run
    (path,) = (project / f"data/smoke/06_models/cifar10/{architecture}/model.keras").glob("*/model.keras")
    model = keras.saving.load_model(path)
    test_images = np.load(project / "data/smoke/02_intermediate/cifar10/test_images.npy")
    test_indices = np.load(project / "data/smoke/05_model_input/cifar10/test_indices.npy")
    under_it = np.load(project / f"data/smoke/07_model_output/cifar10/{architecture}/test_probabilities.npy")
    assert keras.backend.backend() == "tensorflow"
    np.testing.assert_allclose(model.predict(test_images[test_indices], verbose=0), under_it, atol=1e-5)


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_a_model_saved_under_tensorflow_predicts_the_same_under_another_backend(tmp_path, backend):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    statistics = {"mean": [120.0, 115.0, 100.0], "std": [60.0, 62.0, 64.0]}
    recipe = {"model": {"depth": 8}, "seed": 0}
    model = build_model(images, np.arange(64), [str(i) for i in range(10)], statistics, recipe, "resnet")
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "images.npy", images[:16])
    predict_under_backend = textwrap.dedent(
        """
        import sys, keras, numpy as np
        import convbench.pipeline_registry  # registers convbench's Keras classes
        folder, backend = sys.argv[1:]
        assert keras.backend.backend() == backend
        model = keras.saving.load_model(f"{folder}/model.keras")
        np.save(f"{folder}/under_backend.npy", model.predict(np.load(f"{folder}/images.npy"), verbose=0))
        """
    )
    subprocess.run(
        [sys.executable, "-c", predict_under_backend, str(tmp_path), backend],
        env=kedro_env({"KERAS_BACKEND": backend}),
        cwd=Path(__file__).parents[2],
        check=True,
        capture_output=True,
    )
    under_tensorflow = model.predict(images[:16], verbose=0)
    np.testing.assert_allclose(np.load(tmp_path / "under_backend.npy"), under_tensorflow, atol=1e-5)
    assert os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"
