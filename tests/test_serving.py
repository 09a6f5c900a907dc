"""The servable pyfunc: raw uint8 arrays or PNG/JPEG bytes in, class names and probabilities out."""

import base64
from pathlib import Path

import cv2
import keras
import mlflow
import numpy as np
import pandas as pd
import pytest

from convbench.datasets import MlflowClassifierDataset
from convbench.serving import MAX_DECODED_PIXELS, ImageClassifier, ImageInputError, to_image_batch

CLASSES = ["cat", "dog", "frog"]


def tiny_model(shape=(8, 8, 3)):
    """Probabilities from the mean of each channel group: a deterministic, inspectable classifier."""
    inputs = keras.Input(shape, dtype="uint8")
    x = keras.layers.Rescaling(1 / 255.0)(keras.ops.cast(inputs, "float32"))
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax", kernel_initializer="glorot_uniform")(x)
    return keras.Model(inputs, outputs)


def png(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)


def test_arrays_and_encoded_files_give_the_keras_models_probabilities(images):
    model = tiny_model()
    classifier = ImageClassifier.from_keras(model, CLASSES)
    expected = model.predict(images, verbose=0)
    table = classifier.predict(None, images)
    assert list(table.columns) == ["class", "probability", *CLASSES]
    np.testing.assert_allclose(table[CLASSES].to_numpy(), expected, rtol=1e-5)
    assert list(table["class"]) == [CLASSES[i] for i in expected.argmax(axis=1)]
    np.testing.assert_allclose(table["probability"], expected.max(axis=1), rtol=1e-5)
    # The same images as PNG files (OpenCV stores BGR: the classifier must turn them back to RGB).
    files = [png(cv2.cvtColor(image, cv2.COLOR_RGB2BGR)) for image in images]
    np.testing.assert_allclose(classifier.predict(None, pd.DataFrame({"image": files}))[CLASSES], expected, rtol=1e-5)
    as_text = pd.DataFrame({"image": [base64.b64encode(f).decode() for f in files]})  # JSON carries base64 text
    np.testing.assert_allclose(classifier.predict(None, as_text)[CLASSES], expected, rtol=1e-5)
    np.testing.assert_allclose(classifier.predict(None, images[0])[CLASSES], expected[:1], rtol=1e-5)


def test_encoded_grey_and_colour_files_are_converted_to_the_models_channels(images):
    grey = cv2.cvtColor(images[0], cv2.COLOR_RGB2GRAY)
    as_rgb = to_image_batch([png(grey)], (8, 8, 3))[0]
    assert as_rgb.shape == (8, 8, 3) and (as_rgb[..., 0] == grey).all() and (as_rgb[..., 2] == grey).all()
    as_grey = to_image_batch([png(cv2.cvtColor(images[0], cv2.COLOR_RGB2BGR))], (8, 8, 1))[0]
    np.testing.assert_array_equal(as_grey[..., 0], grey)
    rgba = cv2.cvtColor(cv2.cvtColor(images[0], cv2.COLOR_RGB2BGR), cv2.COLOR_BGR2BGRA)
    np.testing.assert_array_equal(to_image_batch([png(rgba)], (8, 8, 3))[0], images[0])


def test_images_that_do_not_fit_are_refused_naming_the_image_and_the_expected_shape(images):
    with pytest.raises(
        ImageInputError, match=r"image 1: expected shape \[8, 8, 3\] \(3 channel\(s\)\), found \[8, 8, 1\]"
    ):
        to_image_batch([images[0], images[1][..., :1]], (8, 8, 3))
    with pytest.raises(
        ImageInputError,
        match=r"image 0: expected shape \[8, 8, 3\], found \[16, 16, 3\]; pass the parameter resize=true",
    ):
        to_image_batch(np.zeros((1, 16, 16, 3), np.uint8), (8, 8, 3))
    with pytest.raises(
        ImageInputError,
        match=r"c.png: could not decode 5 bytes as a PNG, JPEG or BMP image; the model takes images of shape \[8, 8, 3\]",
    ):
        to_image_batch([png(images[0]), png(images[1]), b"hello"], (8, 8, 3), names=["a.png", "b.png", "c.png"])
    with pytest.raises(
        ImageInputError, match=r"image 0: expected a uint8 image \[8, 8, 3\] or a PNG/JPEG file .*not base64"
    ):
        to_image_batch(["not base64!"], (8, 8, 3))
    with pytest.raises(
        ImageInputError, match=r"image 0: expected a uint8 image \[1, 1, 3\].*found values from -1 to 300"
    ):
        to_image_batch(np.array([[[[-1, 300, 0]]]]), (1, 1, 3))
    with pytest.raises(ImageInputError, match=r"image 0: .*found float32 values \(pixels are integers 0-255\)"):
        to_image_batch(images[:1].astype(np.float32) / 255, (8, 8, 3))  # scaled to [0, 1]: refused, not zeroed
    with pytest.raises(
        ImageInputError, match=r"expected images of shape \[N, 8, 8, 3\].*found an array of shape \[8, 8\]"
    ):
        to_image_batch(np.zeros((8, 8), np.uint8), (8, 8, 3))
    with pytest.raises(
        ImageInputError, match=r"expected a column 'image' of encoded images, found the columns \['a', 'b'\]"
    ):
        to_image_batch(pd.DataFrame({"a": [1], "b": [2]}), (8, 8, 3))


def test_a_string_array_of_base64_files_is_decoded(images):
    """`{"inputs": ["<base64>", ...]}` reaches the model as a numpy string array."""
    encoded = np.array([base64.b64encode(png(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))).decode() for image in images])
    np.testing.assert_array_equal(to_image_batch(encoded, (8, 8, 3)), images)


def test_resize_parameter_resizes_with_opencv():
    big = np.full((2, 16, 16, 3), 200, np.uint8)
    big[:, :8] = 10
    small = to_image_batch(big, (8, 8, 3), resize=True)
    assert small.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(small[:, :4], 10)
    np.testing.assert_array_equal(small[:, 4:], 200)


def test_classifier_round_trips_through_mlflow_with_its_signature_and_resize_param(images, mlflow_run):
    model = tiny_model()
    dataset = MlflowClassifierDataset(name="toy_classifier")
    dataset.save(ImageClassifier.from_keras(model, CLASSES))
    loaded = mlflow.pyfunc.load_model(f"runs:/{mlflow_run.info.run_id}/toy_classifier")
    assert loaded.metadata.metadata["class_names"] == CLASSES and loaded.metadata.metadata["input_shape"] == [8, 8, 3]
    big = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)
    with pytest.raises(Exception, match="pass the parameter resize=true"):
        loaded.predict(big)
    table = loaded.predict(big, params={"resize": True})
    np.testing.assert_allclose(table[CLASSES].to_numpy(), model.predict(images, verbose=0), rtol=1e-4)
    requirements = Path(
        mlflow.pyfunc.get_model_dependencies(f"runs:/{mlflow_run.info.run_id}/toy_classifier")
    ).read_text()
    assert f"keras=={keras.__version__}" in requirements and "opencv-python-headless==" in requirements
    assert "tensorflow" in requirements


def test_the_keras_model_is_logged_as_an_artifact_not_inside_the_pickled_classifier(tmp_path):
    import pickle

    classifier = ImageClassifier.from_keras(tiny_model(), CLASSES)
    mlflow.pyfunc.save_model(
        tmp_path / "classifier", python_model=classifier, artifacts=classifier.save_artifacts(tmp_path)
    )
    assert (tmp_path / "classifier" / "artifacts" / "model.keras").is_file()
    assert len(pickle.dumps(classifier)) < 2_000  # class names and input shape only
    with pytest.raises(RuntimeError, match="no Keras model yet"):
        pickle.loads(pickle.dumps(classifier)).keras_model()  # our own object, not downloaded data


def test_a_classifier_logged_with_the_keras_file_inside_still_loads_and_predicts(images, tmp_path, monkeypatch):
    """Classifiers logged before the Keras model became an MLflow artifact carry its `.keras` bytes,
    pickled as `convbench.serving.ImageClassifier` (a module then, a package now)."""
    model = tiny_model()
    model.save(tmp_path / "model.keras")
    legacy = ImageClassifier.__new__(ImageClassifier)  # the attributes of the earlier version, as pickled
    legacy.__dict__.update(
        keras_file=(tmp_path / "model.keras").read_bytes(), class_names=CLASSES, input_shape=(8, 8, 3), _model=None
    )
    monkeypatch.setattr(ImageClassifier, "__module__", "convbench.serving")
    mlflow.pyfunc.save_model(tmp_path / "legacy", python_model=legacy)
    monkeypatch.undo()
    pickled = (tmp_path / "legacy" / "python_model.pkl").read_bytes()
    assert b"convbench.serving" in pickled and b"convbench.serving.classifier" not in pickled
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "legacy"))
    np.testing.assert_allclose(loaded.predict(images)[CLASSES].to_numpy(), model.predict(images, verbose=0), rtol=1e-5)
    assert "keras_file" not in loaded.unwrap_python_model().__dict__


def test_a_model_with_convbench_layers_loads_in_a_fresh_process(tmp_path):
    """airbench's layers are registered Keras classes: the served model must find them unimported."""
    import subprocess
    import sys

    from convbench.models.airbench import build_airbench

    model = build_airbench((16, 16, 3), 3, widths=(8, 8, 8))
    classifier = ImageClassifier.from_keras(model, CLASSES)
    mlflow.pyfunc.save_model(
        tmp_path / "classifier", python_model=classifier, artifacts=classifier.save_artifacts(tmp_path)
    )
    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    script = (
        "import mlflow, sys, numpy as np; from pathlib import Path; d = Path(sys.argv[1]); "
        "c = mlflow.pyfunc.load_model(str(d / 'classifier')); "
        "np.save(d / 'out.npy', c.predict(np.load(d / 'images.npy'))[CLASSES].to_numpy())"
    ).replace("CLASSES", repr(CLASSES))
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), model.predict(images, verbose=0), rtol=1e-4, atol=1e-6)


def png_header_declaring(width: int, height: int) -> bytes:
    """A well-formed PNG whose IHDR declares `width` x `height`, with a few KB of compressed zeros as
    its pixel data (a bomb compresses such an image to a few KB)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 100_000))
        + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb_is_refused_from_its_header_before_decoding(monkeypatch):
    def must_not_decode(*args):
        raise AssertionError("decoded a bomb")

    monkeypatch.setattr(cv2, "imdecode", must_not_decode)
    with pytest.raises(
        ImageInputError,
        match=r"bomb.png: the file declares 20,000 x 20,000 pixels; at most 16,777,216 .*"
        r"the model takes images of shape \[8, 8, 3\]",
    ):
        to_image_batch([png_header_declaring(20_000, 20_000)], (8, 8, 3), names=["bomb.png"])
    assert MAX_DECODED_PIXELS == 16_777_216


def test_an_oversized_batch_is_refused_with_the_limit():
    from convbench.serving import MAX_BATCH_IMAGES

    with pytest.raises(
        ImageInputError, match=f"{MAX_BATCH_IMAGES + 1:,} images in one call; at most {MAX_BATCH_IMAGES:,}"
    ):
        to_image_batch(np.zeros((MAX_BATCH_IMAGES + 1, 8, 8, 3), dtype=np.uint8), (8, 8, 3))


def test_input_errors_are_mlflow_bad_requests_so_the_server_answers_400_with_the_message():
    from mlflow.exceptions import MlflowException

    error = ImageInputError("image 0: not an image")
    assert isinstance(error, MlflowException) and isinstance(error, ValueError)
    assert error.get_http_status_code() == 400 and error.message == "image 0: not an image"
