"""A trained model as an MLflow pyfunc that takes raw images: uint8 arrays or encoded PNG/JPEG bytes.

`ImageClassifier` (`classifier.py`) is what every training run logs next to its Keras model
(`<dataset>_<arch>_classifier`); `inputs.py` turns request inputs into image batches; `cli.py` is
`python -m convbench.serving <model_uri>` (`make serve`):

    mlflow models predict -m runs:/<run_id>/cifar10_resnet_classifier -i images.json -t json --env-manager local

Accepted input (`images.json`):

* `{"inputs": [...]}`: integer pixel values 0-255, shape [N, H, W, C] (or one image [H, W, C]) of
  the training shape (`input_shape` in the model's metadata), nothing converted (floats, such as
  images already scaled to [0, 1], are refused);
* `{"dataframe_split": {"columns": ["image"], "data": [["<base64 PNG/JPEG>"], ...]}}`: encoded files,
  decoded with OpenCV; colour or grey, converted to the model's channels.

Images of another height and width are refused unless the parameter `resize` is true
(`{"inputs": ..., "params": {"resize": true}}`), then resized with OpenCV. The output has one row
per image: `class` (the most likely class name), `probability` (its probability), then one column
per class name with its probability.
"""

from convbench.serving.classifier import (
    DIRECT_CALL_IMAGES,
    KERAS_ARTIFACT,
    RESULT_COLUMNS,
    ImageClassifier,
    keras_output,
    load_keras_model,
    probability_table,
)
from convbench.serving.cli import serve_command
from convbench.serving.inputs import (
    IMAGE_COLUMN,
    MAX_BATCH_IMAGES,
    MAX_DECODED_PIXELS,
    ImageInputError,
    to_image_batch,
)

__all__ = [
    "DIRECT_CALL_IMAGES",
    "IMAGE_COLUMN",
    "KERAS_ARTIFACT",
    "MAX_BATCH_IMAGES",
    "MAX_DECODED_PIXELS",
    "RESULT_COLUMNS",
    "ImageClassifier",
    "ImageInputError",
    "keras_output",
    "load_keras_model",
    "probability_table",
    "serve_command",
    "to_image_batch",
]
