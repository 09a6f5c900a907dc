"""The whole `cifar10_resnet` DAG in the smoke env, run as a user runs it: `kedro run` in a project folder;
then the leaderboard alone from MLflow, predictions, serving, and two architectures on a Dask cluster.

The raw archive is a fixture in the official CIFAR-10 binary layout, served by a local HTTP
server on 127.0.0.1, so the real download code runs too.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import ClassVar

import browser
import cifar_archives
import cv2
import dask_cluster
import keras
import mlflow
import nbformat
import numpy as np
import pandas as pd
import pytest
from kedro_project import KEDRO, PNG_SIGNATURE, assert_ran, mlflow_ui, new_project, plain_logging, run_kedro
from nbclient import NotebookClient

from convbench.pipeline_registry import register_pipelines
from convbench.serving import load_keras_model

pytestmark = pytest.mark.e2e

PER_BATCH, TEST_RECORDS, VAL_SIZE = 200, 300, 300
SUBSET = {"train": 512, "val": 256, "test": 256}


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self):
        CountingHandler.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served_archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mirror")
    expected = cifar_archives.make_cifar10_archive(
        folder / "cifar-10-binary.tar.gz", per_batch=PER_BATCH, test=TEST_RECORDS
    )
    handler = functools.partial(CountingHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/cifar-10-binary.tar.gz"
    yield url, cifar_archives.known_hash(folder / "cifar-10-binary.tar.gz"), expected
    server.shutdown()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return new_project(tmp_path_factory)


def kedro_run(
    project: Path,
    pipeline_flag: str,
    url: str,
    known_hash: str,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    params = [
        f"ingestion.cifar10.source.url={url}",
        f"ingestion.cifar10.source.known_hash={known_hash}",
        f"ingestion.cifar10.expected_counts.train={5 * PER_BATCH}",
        f"ingestion.cifar10.expected_counts.test={TEST_RECORDS}",
        f"preprocessing.cifar10.val_size={VAL_SIZE}",
    ]
    env = {**plain_logging(project), **(env or {})}
    return assert_ran(run_kedro(project, pipeline_flag, params, env=env, timeout=1800, extra_args=extra_args))


@pytest.fixture(scope="module")
def smoke_run(project, served_archive):
    url, known_hash, expected = served_archive
    CountingHandler.requests.clear()
    kedro_run(project, "--pipelines=cifar10_resnet", url, known_hash)
    return project, expected


@pytest.fixture
def tracking(smoke_run):
    """An MlflowClient on the project's sqlite store (set globally, as MLflow 3 resolves models through it)."""
    project, _ = smoke_run
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    yield mlflow.MlflowClient()
    mlflow.set_tracking_uri(None)


def keras_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("keras")


def read(project: Path, relative: str):
    path = project / relative
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix == ".json":
        return json.loads(path.read_text())
    return path


def test_archive_was_downloaded_once_and_parsed_exactly(smoke_run):
    project, expected = smoke_run
    assert CountingHandler.requests == ["/cifar-10-binary.tar.gz"]
    images = read(project, "data/smoke/02_intermediate/cifar10/train_images.npy")
    assert images.dtype == np.uint8 and images.shape == (5 * PER_BATCH, 32, 32, 3)
    np.testing.assert_array_equal(images, expected["train_images"])
    test_images = read(project, "data/smoke/02_intermediate/cifar10/test_images.npy")
    assert test_images.shape == (TEST_RECORDS, 32, 32, 3)
    labels = read(project, "data/smoke/02_intermediate/cifar10/train_labels.npy")
    assert np.issubdtype(labels.dtype, np.integer)
    np.testing.assert_array_equal(labels, expected["train_labels"])
    assert read(project, "data/smoke/02_intermediate/cifar10/class_names.json") == list(cifar_archives.CIFAR10_CLASSES)


def test_splits_have_the_smoke_sizes_are_disjoint_and_stratified(smoke_run):
    project, expected = smoke_run
    train = read(project, "data/smoke/05_model_input/cifar10/train_indices.npy")
    val = read(project, "data/smoke/05_model_input/cifar10/val_indices.npy")
    test = read(project, "data/smoke/05_model_input/cifar10/test_indices.npy")
    assert (len(train), len(val), len(test)) == (SUBSET["train"], SUBSET["val"], SUBSET["test"])
    assert np.intersect1d(train, val).size == 0
    all_train = np.bincount(expected["train_labels"], minlength=10) / len(expected["train_labels"])
    for indices, size in ((train, SUBSET["train"]), (val, SUBSET["val"])):
        counts = np.bincount(expected["train_labels"][indices], minlength=10)
        assert np.all(np.abs(counts - all_train * size) <= 2.5), counts  # within rounding of proportional
    stats = read(project, "data/smoke/05_model_input/cifar10/normalization.json")
    reference = expected["train_images"][np.sort(train)].reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(stats["mean"], reference.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(stats["std"], reference.std(axis=0), rtol=1e-9)
    card = read(project, "data/smoke/08_reporting/cifar10/dataset_card.json")
    assert card["split_sizes"] == SUBSET
    assert sum(card["class_counts"]["test"]) == SUBSET["test"]


def test_reports_and_figures_are_written(smoke_run):
    project, _ = smoke_run
    report = project / "data/smoke/08_reporting/cifar10/resnet"
    for figure in ("learning_curves", "confusion_matrix", "sample_predictions"):
        png = (report / f"{figure}.png").read_bytes()
        assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000, figure
    table = pd.read_csv(report / "metrics.csv")
    assert len(table) == 1 and table.loc[0, "epochs"] == 1 and table.loc[0, "parameters"] == 269_722
    assert 0 <= table.loc[0, "test_accuracy"] <= 1
    assert (report / "metrics.md").read_text().startswith("| dataset | architecture |")
    assert len(pd.read_csv(report / "per_class_accuracy.csv")) == 10
    models = list((project / "data/smoke/06_models/cifar10/resnet/model.keras").glob("*/model.keras"))
    assert len(models) == 1
    assert not (project / "data/smoke/06_models/cifar10/resnet/checkpoint").exists()


def test_mlflow_has_the_run_its_metrics_node_timings_artifacts_and_model(smoke_run, tracking):
    project, _ = smoke_run
    client = tracking
    experiment = client.get_experiment_by_name("cifar10")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "cifar10_resnet" and run.info.status == "FINISHED"
    metrics = run.data.metrics
    table = pd.read_csv(project / "data/smoke/08_reporting/cifar10/resnet/metrics.csv")
    assert metrics["resnet.test_accuracy"] == pytest.approx(table.loc[0, "test_accuracy"])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "resnet.val_accuracy")] == [1]
    nodes = {node.name for node in register_pipelines()["cifar10_resnet"].nodes}
    assert {f"node_time_s.{name}" for name in nodes} <= set(metrics)
    assert all(metrics[f"node_time_s.{name}"] > 0 for name in nodes)
    summary = json.loads((project / "data/smoke/07_model_output/cifar10/resnet/training_summary.json").read_text())
    assert metrics["node_time_s.cifar10.resnet.train_model"] >= summary["wall_time_s"]  # the node includes the fit
    assert {run.data.tags[f"node_status.{name}"] for name in nodes} == {"completed"}
    assert run.data.tags["convbench.env"] == "smoke"
    assert run.data.tags["convbench.keras_backend"] == keras.backend.backend()  # the backend the run inherits
    assert run.data.params["training.resnet.epochs"] == "1"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "cifar10_resnet")}
    assert {
        "cifar10_resnet/learning_curves.png",
        "cifar10_resnet/metrics.csv",
        "cifar10_resnet/history.json",
    } <= artifacts
    models = mlflow.search_logged_models(experiment_ids=[experiment.experiment_id], output_format="list")
    assert [model.name for model in models] == ["cifar10_resnet_classifier"]  # the model is logged once
    assert {model.source_run_id for model in models} == {run.info.run_id}
    requirements = Path(
        mlflow.pyfunc.get_model_dependencies(f"runs:/{run.info.run_id}/cifar10_resnet_classifier")
    ).read_text()
    assert f"keras=={keras_version()}" in requirements.splitlines(), "pinned from the venv, not inferred"
    assert {a.path for a in client.list_artifacts(run.info.run_id, "cifar10")} >= {
        "cifar10/dataset_card.json",
        "cifar10/dataset_card.md",
        "cifar10/normalization.json",
    }
    node_runs = json.loads(Path(client.download_artifacts(run.info.run_id, "node_runs.json", str(project))).read_text())
    assert {entry["node"] for entry in node_runs["nodes"]} == nodes


def test_the_keras_model_inside_the_logged_classifier_is_the_trained_one(smoke_run, tracking):
    project, expected = smoke_run
    (run,) = mlflow.search_runs(experiment_names=["cifar10"], output_format="list")
    model = load_keras_model(f"runs:/{run.info.run_id}/cifar10_resnet_classifier")
    assert model.input.dtype == "uint8"
    probabilities = model.predict(expected["test_images"][:4], verbose=0)
    assert probabilities.shape == (4, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    (saved,) = (project / "data/smoke/06_models/cifar10/resnet/model.keras").glob("*/model.keras")
    local = keras.saving.load_model(saved).predict(expected["test_images"][:4], verbose=0)
    np.testing.assert_allclose(probabilities, local, rtol=1e-5, atol=1e-6)


def test_mlflow_ui_serves_the_run_from_the_sqlite_store(smoke_run):
    """`mlflow ui --backend-store-uri sqlite:///mlflow.db` in the project shows the experiment and the run."""
    project, _ = smoke_run
    with mlflow_ui(project) as base:

        def post(path, body):
            request = urllib.request.Request(
                f"{base}/ajax-api/2.0/mlflow/{path}",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            return json.load(urllib.request.urlopen(request, timeout=10))

        experiments = {
            e["name"]: e["experiment_id"] for e in post("experiments/search", {"max_results": 50})["experiments"]
        }
        runs = post("runs/search", {"experiment_ids": [experiments["cifar10"]]})["runs"]
        names = {run["info"]["run_name"] for run in runs}
        assert names == {"cifar10_resnet"}
        metric_keys = {m["key"] for run in runs for m in run["data"]["metrics"]}
        assert {"resnet.test_accuracy", "resnet.val_accuracy", "node_time_s.cifar10.resnet.train_model"} <= metric_keys
        assert b"<html" in urllib.request.urlopen(base, timeout=10).read(2000).lower()

        # What a person sees, in headless Chromium: the experiment's run list, then the run's metrics.
        runs_page = f"{base}/#/experiments/{experiments['cifar10']}/runs"
        with browser.open_page(runs_page) as page:
            page.get_by_text("cifar10_resnet").first.wait_for()
            browser.screenshot(page, "mlflow_experiment_cifar10.png")
        with browser.open_page(f"{runs_page}/{runs[0]['info']['run_id']}", size=(1400, 1100)) as page:
            page.get_by_text("resnet.test_accuracy").first.wait_for()
            assert "cifar10_resnet" in page.content() and "Finished" in page.inner_text("body")
            browser.close_mlflow_assistant(page)
            page.get_by_text("resnet.test_accuracy").first.scroll_into_view_if_needed()
            png = browser.screenshot(page, "mlflow_run_cifar10_resnet.png")
        assert png.stat().st_size > 20_000

        # The model-training view's learning curves (docs/make_screenshots.py takes the README's from a real run).
        with browser.open_page(base, size=(1400, 700)) as page:
            browser.mlflow_model_training_view(page, base)
            page.goto(f"{runs_page}/{runs[0]['info']['run_id']}")
            page.get_by_text("cifar10_resnet").first.wait_for()
            browser.close_mlflow_assistant(page)
            browser.mlflow_metric_charts(page, "loss", "resnet.val_loss")
            charts = page.inner_text("body")
            assert "resnet.loss" in charts and "resnet.test_loss" in charts and "resnet.val_accuracy" not in charts
            assert not page.get_by_text("Ask questions about your experiments").first.is_visible()  # assistant closed
            curves = browser.screenshot(page, "mlflow_loss_curves_cifar10_resnet.png")
        assert curves.stat().st_size > 20_000


def first_resnet_run(tracking):
    (run, *_) = tracking.search_runs(
        [tracking.get_experiment_by_name("cifar10").experiment_id],
        "attributes.run_name = 'cifar10_resnet'",
        order_by=["attributes.start_time ASC"],
    )
    return run


def mlflow_models_predict(project: Path, model_uri: str, request: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    """`mlflow models predict -m <uri> -i <request.json> -t json --env-manager local`, as a user would type it."""
    (tmp_path / "request.json").write_text(json.dumps(request))
    command = [
        str(KEDRO.with_name("mlflow")),
        "models",
        "predict",
        "-m",
        model_uri,
        "-i",
        str(tmp_path / "request.json"),
        "-o",
        str(tmp_path / "predictions.json"),
        "-t",
        "json",
        "--env-manager",
        "local",
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)


def test_mlflow_models_predict_classifies_raw_images_and_png_files_like_the_keras_model(smoke_run, tracking, tmp_path):
    project, expected = smoke_run
    run = first_resnet_run(tracking)
    images = expected["test_images"][:3]
    keras_probabilities = load_keras_model(f"runs:/{run.info.run_id}/cifar10_resnet_classifier").predict(
        images, verbose=0
    )
    uri = f"runs:/{run.info.run_id}/cifar10_resnet_classifier"
    classes = list(cifar_archives.CIFAR10_CLASSES)

    result = mlflow_models_predict(project, uri, {"inputs": images.tolist()}, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    predictions = pd.DataFrame(json.loads((tmp_path / "predictions.json").read_text())["predictions"])
    assert list(predictions.columns) == ["class", "probability", *classes]
    np.testing.assert_allclose(predictions[classes].to_numpy(), keras_probabilities, rtol=1e-4, atol=1e-6)
    assert list(predictions["class"]) == [classes[i] for i in keras_probabilities.argmax(axis=1)]

    files = [
        base64.b64encode(cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()).decode()
        for image in images
    ]
    result = mlflow_models_predict(
        project, uri, {"dataframe_split": {"columns": ["image"], "data": [[f] for f in files]}}, tmp_path
    )
    assert result.returncode == 0, result.stderr[-4000:]
    from_png = pd.DataFrame(json.loads((tmp_path / "predictions.json").read_text())["predictions"])
    np.testing.assert_allclose(from_png[classes].to_numpy(), keras_probabilities, rtol=1e-4, atol=1e-6)

    too_big = np.zeros((1, 40, 40, 3), np.uint8).tolist()
    result = mlflow_models_predict(project, uri, {"inputs": too_big}, tmp_path)
    assert result.returncode != 0 and "expected shape [32, 32, 3], found [40, 40, 3]" in result.stdout + result.stderr
    result = mlflow_models_predict(project, uri, {"inputs": too_big, "params": {"resize": True}}, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]


def test_predict_pipeline_classifies_a_folder_with_the_best_model_and_logs_csv_and_contact_sheet(
    smoke_run, tracking, tmp_path
):
    project, expected = smoke_run
    folder = tmp_path / "photos"
    folder.mkdir()
    images = expected["test_images"]
    cv2.imwrite(str(folder / "a_colour.png"), cv2.cvtColor(images[0], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "b_grey.png"), cv2.cvtColor(images[1], cv2.COLOR_RGB2GRAY))
    cv2.imwrite(str(folder / "c_large.JPG"), cv2.resize(cv2.cvtColor(images[2], cv2.COLOR_RGB2BGR), (96, 64)))
    (folder / "notes.txt").write_text("not an image")
    assert_ran(run_kedro(project, "--pipelines=predict", [f"predict.input_dir={folder}"]))

    predictions = pd.read_csv(project / "data/smoke/08_reporting/predict/predictions.csv")
    run = first_resnet_run(tracking)
    assert list(predictions["file"]) == ["a_colour.png", "b_grey.png", "c_large.JPG"]
    assert set(predictions["model_uri"]) == {
        f"runs:/{run.info.run_id}/cifar10_resnet_classifier"
    }  # the only, so the best
    assert list(predictions.columns[1:7]) == [
        "class_1",
        "probability_1",
        "class_2",
        "probability_2",
        "class_3",
        "probability_3",
    ]
    probabilities = predictions[["probability_1", "probability_2", "probability_3"]].to_numpy()
    assert (np.diff(probabilities, axis=1) <= 0).all() and (probabilities.sum(axis=1) <= 1 + 1e-6).all()
    model = load_keras_model(f"runs:/{run.info.run_id}/cifar10_resnet_classifier")
    top = model.predict(images[:1], verbose=0)[0]
    assert predictions.loc[0, "class_1"] == cifar_archives.CIFAR10_CLASSES[top.argmax()]
    assert predictions.loc[0, "probability_1"] == pytest.approx(top.max(), rel=1e-4)
    sheet = project / "data/smoke/08_reporting/predict/contact_sheet.png"
    assert sheet.read_bytes().startswith(PNG_SIGNATURE) and sheet.stat().st_size > 10_000
    (predict_run,) = tracking.search_runs([tracking.get_experiment_by_name("predict").experiment_id])
    artifacts = {a.path for a in tracking.list_artifacts(predict_run.info.run_id, "predict")}
    assert artifacts == {"predict/predictions.csv", "predict/contact_sheet.png"}

    refused = run_kedro(
        project,
        "--pipelines=predict",
        [
            f"predict.input_dir={folder}",
            "predict.resize=false",
            f"predict.model_uri=runs:/{run.info.run_id}/cifar10_resnet_classifier",
        ],
    )
    assert refused.returncode != 0
    output = refused.stdout + refused.stderr
    message = "c_large.JPG: expected shape [32, 32, 3], found [64, 96, 3]"
    assert message in output or message in " ".join(output.split()), output[-3000:]


def test_notebook_shows_sample_images_the_leaderboard_and_the_best_learning_curves(smoke_run, monkeypatch):
    """notebooks/explore.ipynb, executed as `kedro jupyter` would run it, on the smoke run's outputs."""
    project, _ = smoke_run
    notebook = nbformat.read(project / "notebooks/explore.ipynb", as_version=4)
    monkeypatch.setenv("KEDRO_ENV", "smoke")
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(project / "notebooks")}}
    ).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    text = "".join(output.get("text", "") for output in outputs)
    html = "".join(output.get("data", {}).get("text/html", "") for output in outputs)
    assert "Kedro env: smoke" in text and "Parsed datasets: cifar10" in text
    assert "cifar10: best is resnet" in text and "resnet" in html and "test_accuracy" in html
    pngs = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(pngs) == 2, "one sample grid (cifar10) and one learning-curve figure"


def test_leaderboard_alone_ranks_the_earlier_run_from_mlflow(smoke_run, served_archive, tracking):
    project, _ = smoke_run
    url, known_hash, _ = served_archive
    kedro_run(project, "--pipelines=cifar10_leaderboard", url, known_hash)
    board = pd.read_csv(project / "data/smoke/08_reporting/cifar10/leaderboard.csv")
    (first,) = tracking.search_runs(
        [tracking.get_experiment_by_name("cifar10").experiment_id], "attributes.run_name = 'cifar10_resnet'"
    )
    assert list(board["architecture"]) == ["resnet"] and board.loc[0, "run_id"] == first.info.run_id
    resnet_table = pd.read_csv(project / "data/smoke/08_reporting/cifar10/resnet/metrics.csv")
    for column in ("parameters", "epochs", "val_accuracy", "test_accuracy", "wall_time_s", "train_images_per_s"):
        assert board.loc[0, column] == pytest.approx(resnet_table.loc[0, column]), column


TWO_ARCHITECTURES = ("mlp", "simple_cnn")


def test_two_architectures_on_a_dask_cluster_reuse_the_archive_and_train_side_by_side(
    smoke_run, served_archive, tracking, tmp_path
):
    """`kedro run --pipelines=cifar10_mlp,cifar10_simple_cnn` on a Dask scheduler and two workers, as a user
    points it at a cluster (`--runner-params=address=...`): each node once, the two trainings on the two
    workers, one finished MLflow run. The whole zoo on a cluster is test_dask_local_cluster.py's."""
    project, _expected = smoke_run
    url, known_hash, _ = served_archive
    before = len(CountingHandler.requests)
    experiment = tracking.get_experiment_by_name("cifar10").experiment_id
    earlier = {r.info.run_id for r in tracking.search_runs([experiment])}
    pipelines = ",".join(f"cifar10_{architecture}" for architecture in TWO_ARCHITECTURES)
    with dask_cluster.dask_cluster(tmp_path / "dask", cwd=project) as cluster:
        addresses = set(cluster.addresses().values())
        runner = ("--runner=convbench.runner.DaskRunner", f"--runner-params=address={cluster.address}")
        result = kedro_run(project, f"--pipelines={pipelines}", url, known_hash, extra_args=runner)
    assert len(CountingHandler.requests) == before, "an archive with the right checksum needs no network"
    (run,) = [r for r in tracking.search_runs([experiment]) if r.info.run_id not in earlier]
    assert run.info.status == "FINISHED"
    # kedro-mlflow names the run after the pipelines joined by "+", in the order Kedro gives them (a set's)
    assert sorted(run.info.run_name.split("+")) == sorted(pipelines.split(","))

    nodes = {node.name for name in pipelines.split(",") for node in register_pipelines()[name].nodes}
    assert {run.data.tags[f"node_status.{name}"] for name in nodes} == {"completed"}
    node_runs = json.loads(
        Path(tracking.download_artifacts(run.info.run_id, "node_runs.json", str(tmp_path))).read_text()
    )
    assert sorted(entry["node"] for entry in node_runs["nodes"]) == sorted(nodes), "every node, each once"
    trainers = {entry["worker"] for entry in node_runs["nodes"] if entry["node"].endswith(".train_model")}
    assert trainers == addresses, "the two trainings ran on the two workers"
    for architecture in TWO_ARCHITECTURES:
        assert f"Completed node cifar10.{architecture}.train_model on tcp://127.0.0.1:" in result.stdout
        table = pd.read_csv(project / f"data/smoke/08_reporting/cifar10/{architecture}/metrics.csv")
        assert run.data.metrics[f"{architecture}.test_accuracy"] == pytest.approx(table.loc[0, "test_accuracy"])
        history = tracking.get_metric_history(run.info.run_id, f"{architecture}.val_accuracy")
        assert [m.step for m in history] == [1], "each epoch's curve logged once, from its worker"


def test_without_an_address_the_dask_runner_starts_a_cluster_of_this_machine(smoke_run, served_archive, tracking):
    project, _ = smoke_run
    url, known_hash, _ = served_archive
    result = kedro_run(
        project,
        "--pipelines=cifar10_mlp",
        url,
        known_hash,
        extra_args=("--runner=convbench.runner.DaskRunner",),
        env={"CUDA_VISIBLE_DEVICES": ""},  # a machine without GPUs, wherever the test runs
    )
    assert "Dask: 1 worker(s), 1 thread(s); dashboard http://127.0.0.1:" in result.stdout
    (run,) = tracking.search_runs(
        [tracking.get_experiment_by_name("cifar10").experiment_id], "attributes.run_name = 'cifar10_mlp'"
    )
    assert run.info.status == "FINISHED" and run.data.params["training.mlp.epochs"] == "1"
    table = pd.read_csv(project / "data/smoke/08_reporting/cifar10/mlp/metrics.csv")
    assert run.data.metrics["mlp.test_accuracy"] == pytest.approx(table.loc[0, "test_accuracy"])
    assert [m.step for m in tracking.get_metric_history(run.info.run_id, "mlp.val_accuracy")] == [1]
    nodes = {node.name for node in register_pipelines()["cifar10_mlp"].nodes}
    assert {run.data.tags[f"node_status.{name}"] for name in nodes} == {"completed"}
    workers = {line.split(" on ")[1].split()[0] for line in result.stdout.splitlines() if "Completed node" in line}
    assert len(workers) == 1 and next(iter(workers)).startswith("tcp://127.0.0.1:")
    assert "cifar10_mlp/learning_curves.png" in {
        a.path for a in tracking.list_artifacts(run.info.run_id, "cifar10_mlp")
    }
    models = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string="name = 'cifar10_mlp_classifier'", output_format="list"
    )
    assert len([model for model in models if model.source_run_id == run.info.run_id]) == 1
