"""Load test of a served convbench classifier: `mlflow models serve` on 127.0.0.1, N requests, C at once.

Logs a small classifier (a real Keras model taking 32x32 RGB PNGs) to a throw-away sqlite store,
serves it with `mlflow models serve --env-manager local`, sends `--requests` POSTs of one PNG each
with `--concurrency` threads, and prints throughput, p50/p99 latency and the error count. Only
127.0.0.1 is contacted. Then it checks that the server still answers.

    python benchmarks/bench_serving_load.py --requests 2000 --concurrency 16
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from machine import cpu_model


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def log_small_classifier(store: Path, shape=(32, 32, 3), classes=("cat", "dog", "frog")) -> str:
    """Logs a small conv classifier as convbench's pyfunc to a sqlite store in `store`; its model URI."""
    import keras
    import mlflow

    from convbench.datasets import MlflowClassifierDataset
    from convbench.serving import ImageClassifier

    inputs = keras.Input(shape, dtype="uint8")
    x = keras.layers.Rescaling(1 / 255.0)(keras.ops.cast(inputs, "float32"))
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(len(classes), activation="softmax")(x))
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    mlflow.set_experiment("serving")
    with mlflow.start_run() as run:
        MlflowClassifierDataset(name="small_classifier").save(ImageClassifier.from_keras(model, list(classes)))
    mlflow.set_tracking_uri(None)
    return f"runs:/{run.info.run_id}/small_classifier"


PROJECT_ROOT = Path(__file__).resolve().parents[1]


class Server:
    """`mlflow models serve` of `model_uri` on 127.0.0.1, started and stopped as a context manager.

    With `via_make`, started as a user would from a fresh shell: `make serve MODEL=... PORT=...` in
    the project, with only the system's PATH (no venv activated) and the store in MLFLOW_TRACKING_URI.
    """

    def __init__(self, model_uri: str, store: Path, workers: int = 1, via_make: bool = False) -> None:
        from convbench.serving import serve_command

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        tracking = {"MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"}
        if via_make:
            command = ["make", "-C", str(PROJECT_ROOT), "serve", f"MODEL={model_uri}", f"PORT={self.port}"]
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home()), **tracking}
        else:
            command, env = serve_command(model_uri, self.port, workers=workers)
            env |= tracking
        self.log = (store / "server.log").open("w")
        self.process = subprocess.Popen(
            command, cwd=store, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow models serve exited with {self.process.returncode}: see {self.log.name}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"mlflow models serve did not answer /ping within 180 s: see {self.log.name}")

    def __exit__(self, *exc) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)  # make, mlflow and uvicorn's workers alike
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()

    def output(self) -> str:
        """What the server printed so far."""
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def post(self, body: bytes | dict, timeout: float = 60) -> tuple[int, dict]:
        """(HTTP status, JSON body) of POST /invocations."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}/invocations", data=data, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")


def png_base64(image: np.ndarray) -> str:
    import cv2

    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return base64.b64encode(encoded.tobytes()).decode()


def run_load(server: Server, requests: int, concurrency: int, shape=(32, 32, 3)) -> dict:
    """Sends `requests` one-image POSTs, `concurrency` at once; throughput, latency percentiles, errors."""
    rng = np.random.default_rng(0)
    bodies = [{"inputs": [png_base64(rng.integers(0, 256, shape, dtype=np.uint8))]} for _ in range(64)]

    def one(index: int) -> tuple[float, int]:
        start = time.perf_counter()
        status, _ = server.post(bodies[index % len(bodies)])
        return time.perf_counter() - start, status

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    elapsed = time.perf_counter() - start
    latencies = np.array([latency for latency, _ in results]) * 1000
    return {
        "requests": requests,
        "concurrency": concurrency,
        "seconds": elapsed,
        "requests_per_s": requests / elapsed,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "errors": sum(status != 200 for _, status in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers of mlflow models serve")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder)
        uri = log_small_classifier(store)
        with Server(uri, store, workers=args.workers) as server:
            run_load(server, 32, args.concurrency)  # warm-up: the first predictions build the graph
            figures = run_load(server, args.requests, args.concurrency)
            still_serving = server.post({"inputs": [png_base64(np.zeros((32, 32, 3), np.uint8))]})[0] == 200
    print(f"machine: {cpu_model()}, server workers: {args.workers}")
    print(
        f"| {figures['requests']} | {figures['concurrency']} | {figures['seconds']:.1f} s | "
        f"{figures['requests_per_s']:.0f} req/s | {figures['p50_ms']:.0f} ms | {figures['p99_ms']:.0f} ms | "
        f"{figures['errors']} | {'yes' if still_serving else 'NO'} |"
    )


if __name__ == "__main__":
    main()
