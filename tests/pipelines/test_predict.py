"""The `predict` nodes: which model, which files, top-k table and contact sheet."""

import re

import cv2
import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pytest
from test_serving import CLASSES, tiny_model

from convbench.datasets import MlflowClassifierDataset
from convbench.pipelines.predict.nodes import (
    choose_model,
    classifier_uri,
    classify_images,
    plot_contact_sheet,
    read_image_files,
)
from convbench.serving import ImageClassifier

PARAMS = {"dataset": "toys", "model_uri": None, "resize": True, "top_k": 2}


def png(image):
    return cv2.imencode(".png", image)[1].tobytes()


def test_a_given_model_uri_is_used_as_it_is():
    assert choose_model({**PARAMS, "model_uri": "runs:/abc/x_classifier"}) == "runs:/abc/x_classifier"


def test_without_a_model_uri_the_best_classifier_of_the_dataset_in_this_env_is_chosen(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        experiment = mlflow.create_experiment("toys", artifact_location=(tmp_path / "a").as_uri())
        runs = {}
        for key, accuracy, env, classifier in (
            ("mlp", 0.5, "base", True),
            ("resnet", 0.9, "smoke", True),  # best, but another env
            ("densenet", 0.95, "base", False),  # best, but trained before classifiers were logged
            ("vgg16", 0.7, "base", True),  # the best this env can serve
            ("vgg16_later", 0.6, "base", True),  # a later, worse vgg16 run does not hide the better one
        ):
            architecture = key.split("_")[0]
            with mlflow.start_run(experiment_id=experiment, tags={"convbench.env": env}) as run:
                mlflow.log_metric(f"{architecture}.test_accuracy", accuracy)
            if classifier:
                mlflow.initialize_logged_model(
                    name=f"toys_{architecture}_classifier", source_run_id=run.info.run_id, experiment_id=experiment
                )
            runs[key] = run.info.run_id
        with mlflow.start_run(experiment_id=experiment, tags={"convbench.env": "base"}):  # the predict run itself
            assert choose_model(PARAMS) == classifier_uri("toys", "vgg16", runs["vgg16"])
        with pytest.raises(
            ValueError, match=r"No trained model of 'nothing' to predict with .*kedro run --pipelines=nothing_resnet"
        ):
            choose_model({**PARAMS, "dataset": "nothing"})
    finally:
        mlflow.set_tracking_uri(None)


def test_only_png_jpeg_and_bmp_files_of_the_folder_are_read_in_name_order(tmp_path):
    (tmp_path / "b.JPEG").write_bytes(b"jpeg")
    (tmp_path / "a.png").write_bytes(b"png")
    (tmp_path / "e.bmp").write_bytes(b"bmp")
    (tmp_path / "c.txt").write_text("notes")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.png").write_bytes(b"nested")
    assert read_image_files(str(tmp_path)) == {"a.png": b"png", "b.JPEG": b"jpeg", "e.bmp": b"bmp"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape("No .bmp/.jpeg/.jpg/.png file in")):
        read_image_files(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=re.escape("predict.input_dir='missing' is not a folder")):
        read_image_files("missing")


def test_files_are_classified_top_k_and_drawn(mlflow_run):
    model = tiny_model((8, 8, 3))
    MlflowClassifierDataset(name="toys_tiny_classifier").save(ImageClassifier.from_keras(model, CLASSES))
    uri = f"runs:/{mlflow_run.info.run_id}/toys_tiny_classifier"
    images = np.random.default_rng(1).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    files = {
        "x.png": png(cv2.cvtColor(images[0], cv2.COLOR_RGB2BGR)),
        "y.png": png(cv2.cvtColor(images[1], cv2.COLOR_RGB2GRAY)),
        "z.png": png(cv2.resize(cv2.cvtColor(images[2], cv2.COLOR_RGB2BGR), (16, 16))),
    }
    table = classify_images(uri, files, PARAMS)
    assert list(table.columns) == ["file", "class_1", "probability_1", "class_2", "probability_2", "model_uri"]
    expected = model.predict(images[:1], verbose=0)[0]
    assert table.loc[0, "class_1"] == CLASSES[expected.argmax()]
    assert table.loc[0, "probability_1"] == pytest.approx(expected.max(), rel=1e-5)
    assert (table["probability_1"] >= table["probability_2"]).all()
    plt.close("all")
    figure = plot_contact_sheet(files, table)
    assert plt.get_fignums() == [] and figure.canvas.manager is None  # not left open in pyplot's registry
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert titles[1].startswith("y.png\n") and len(titles) == 3
    with pytest.raises(Exception, match=re.escape("z.png: expected shape [8, 8, 3], found [16, 16, 3]")):
        classify_images(uri, files, {**PARAMS, "resize": False})
