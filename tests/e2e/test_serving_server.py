"""`mlflow models serve` of a convbench classifier as users run it: a real server on 127.0.0.1.

Bad requests (a decompression bomb, an oversized batch, bytes that are no image, text that is no
base64) get a 400 whose message is convbench's own, and the server keeps serving; a bounded load
of concurrent requests gets no error. The figures at full size: benchmarks/bench_serving_load.py.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_serving_load import Server, log_small_classifier, png_base64, run_load
from test_serving import png_header_declaring

from convbench.serving import MAX_BATCH_IMAGES

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = tmp_path_factory.mktemp("serving")
    uri = log_small_classifier(store)
    with Server(uri, store) as running:
        yield running


def image(seed: int = 0) -> str:
    return png_base64(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8))


def test_a_png_gets_class_probabilities(server):
    status, body = server.post({"inputs": [image(0), image(1)]})
    assert status == 200
    rows = body["predictions"]
    assert len(rows) == 2 and {"class", "probability", "cat", "dog", "frog"} <= set(rows[0])
    assert abs(sum(rows[0][name] for name in ("cat", "dog", "frog")) - 1) < 1e-5


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([base64.b64encode(png_header_declaring(20_000, 20_000)).decode()], "declares 20,000 x 20,000 pixels"),
        ([image()] * (MAX_BATCH_IMAGES + 1), f"{MAX_BATCH_IMAGES + 1:,} images in one call"),
        ([base64.b64encode(b"this is not an image").decode()], "could not decode 20 bytes as a PNG, JPEG or BMP"),
        (["!!! not base64 !!!"], "text that is not base64"),
        (
            [png_base64(np.zeros((40, 24, 3), np.uint8))],
            "expected shape [32, 32, 3], found [40, 24, 3]; pass the parameter resize=true",
        ),
    ],
    ids=["decompression_bomb", "oversized_batch", "not_an_image", "invalid_base64", "wrong_size"],
)
def test_bad_requests_get_a_400_with_the_reason_and_the_server_keeps_serving(server, inputs, message):
    status, body = server.post({"inputs": inputs})
    assert status == 400 and message in body["message"], body
    assert server.post({"inputs": [image()]})[0] == 200


def test_malformed_json_gets_a_400(server):
    status, _ = server.post(b'{"inputs": [')
    assert status == 400


def test_a_bounded_concurrent_load_gets_no_error(server):
    figures = run_load(server, requests=160, concurrency=16)
    assert figures["errors"] == 0 and figures["requests_per_s"] > 0


def test_make_serve_works_from_a_shell_without_the_venv_and_answers_a_png(tmp_path):
    """`make serve MODEL=...` with only the system's PATH: MLflow's `uvicorn` is found all the same."""
    uri = log_small_classifier(tmp_path)
    with Server(uri, tmp_path, via_make=True) as running:
        status, body = running.post({"inputs": [image(3)]})
        assert status == 200 and body["predictions"][0]["class"] in {"cat", "dog", "frog"}
        assert f"Serving {uri} at http://127.0.0.1:{running.port}/invocations" in running.output()
