"""`predict`: `kedro run --pipelines=predict --params=predict.input_dir=<folder>[,predict.model_uri=<uri>]`."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from convbench.pipelines.predict.nodes import choose_model, classify_images, plot_contact_sheet, read_image_files


def create_pipeline(**kwargs) -> Pipeline:
    """Choose the model (given, or the dataset's best), read the folder, classify, write CSV + contact sheet.

    Namespaced `predict` (`predict.predictions`, ...); parameters from `predict` in parameters_predict.yml.
    """
    template = Pipeline(
        [
            Node(choose_model, inputs="params:predict", outputs="model_uri", name="choose_model"),
            Node(read_image_files, inputs="params:input_dir", outputs="image_files", name="read_image_files"),
            Node(
                classify_images,
                inputs=["model_uri", "image_files", "params:predict"],
                outputs="predictions",
                name="classify_images",
            ),
            Node(
                plot_contact_sheet,
                inputs=["image_files", "predictions"],
                outputs="contact_sheet",
                name="plot_contact_sheet",
            ),
        ]
    )
    return Pipeline(
        template,
        namespace="predict",
        parameters={"params:predict": "params:predict", "params:input_dir": "params:predict.input_dir"},
        tags=["predict"],
    )
