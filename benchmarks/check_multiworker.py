"""Does Keras 3 `model.fit` train under `tf.distribute.MultiWorkerMirroredStrategy` (keras-team/keras#20585)?

Starts two worker processes on this machine (a TF_CONFIG cluster on 127.0.0.1, CPU only); each
builds a tiny Dense model under the strategy's scope, as TensorFlow's "Multi-worker training with
Keras" tutorial does, and fits it for 2 epochs on a tf.data dataset. Prints the versions and the
finding as JSON (`works`, `error` with the exception's last line, or `hang` after the timeout) and
exits 0 only if both workers finished `fit`.

    .venv/bin/python benchmarks/check_multiworker.py [--timeout 45]

Runs in about 15 s when it fails fast; docs/scaling.md ("Multi-worker fit") records the result.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time

WORKERS = 2


def worker() -> None:
    """One worker: its TF_CONFIG is in the environment. Prints `FIT-OK <losses>` if `fit` returns."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    keras.config.disable_traceback_filtering()  # show where in Keras it fails
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    print(f"STRATEGY-OK replicas={strategy.num_replicas_in_sync}", flush=True)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(256, 8)).astype("float32")
    labels = (features[:, 0] > 0).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((features, labels)).batch(32 * WORKERS).repeat()
    with strategy.scope():
        model = keras.Sequential(
            [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2, activation="softmax")]
        )
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(dataset, epochs=2, steps_per_epoch=4, verbose=0)
    print("FIT-OK " + json.dumps(history.history["loss"]), flush=True)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def last_error(stderr: str) -> dict[str, str] | None:
    """The last traceback in `stderr`: its exception's first line and the last Keras frame it passed through."""
    if "Traceback" not in stderr:
        return None
    lines = stderr[stderr.rindex("Traceback") :].splitlines()
    exception = next((line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception)\b", line)), lines[-1])
    frames = [line.strip() for line in lines if line.strip().startswith("File ") and "/keras/src/" in line]
    where = frames[-1].split("/keras/src/", 1)[-1] if frames else ""
    end = lines[-1].strip()
    message = exception if end in exception else f"{exception} ... {end}"  # a long message, shortened
    return {"exception": message[:400], "last_keras_frame": where}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeout", type=float, default=45.0, help="seconds before the workers count as hung")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker()
        return 0

    import keras
    import tensorflow as tf

    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(WORKERS)]}
    start = time.perf_counter()
    processes = []
    for index in range(WORKERS):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "CUDA_VISIBLE_DEVICES": ""}
        processes.append(
            subprocess.Popen(
                [sys.executable, __file__, "--worker"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs, hung = [], False
    for process in processes:
        remaining = max(1.0, args.timeout - (time.perf_counter() - start))
        try:
            outputs.append(process.communicate(timeout=remaining))
        except subprocess.TimeoutExpired:
            hung = True
            process.kill()
            outputs.append(process.communicate())
    seconds = time.perf_counter() - start
    workers = []
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        workers.append(
            {
                "returncode": process.returncode,
                "strategy_created": "STRATEGY-OK" in stdout,
                "fit_finished": "FIT-OK" in stdout,
                "stdout": stdout.strip().splitlines()[-2:],
                "error": last_error(stderr),
            }
        )
    if all(item["fit_finished"] for item in workers):
        finding = "works"
    elif hung and not any(item["error"] for item in workers):
        finding = "hang"
    else:
        finding = "error"
    report = {
        "finding": finding,
        "seconds": round(seconds, 1),
        "timeout_s": args.timeout,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "workers": workers,
    }
    print(json.dumps(report, indent=2))
    return 0 if finding == "works" else 1


if __name__ == "__main__":
    sys.exit(main())
