"""`kedro viz` starts on this project and serves every registered pipeline with its nodes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEDRO = Path(sys.executable).with_name("kedro")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def viz_url():
    port = free_port()
    process = subprocess.Popen(
        [str(KEDRO), "viz", "run", "--no-browser", "--host", "127.0.0.1", "--port", str(port)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            try:
                get_json(f"{url}/api/main")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read() if process.poll() is not None else "(still running)"
                    pytest.fail(f"kedro viz did not start:\n{output[-4000:]}")
                time.sleep(1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_viz_lists_every_registered_pipeline(viz_url):
    pipelines = {p["id"] for p in get_json(f"{viz_url}/api/main")["pipelines"]}
    assert {"cifar10_ingestion", "cifar10_preprocessing", "cifar10_resnet", "cifar100_resnet"} <= pipelines


def test_viz_shows_the_nodes_of_cifar10_resnet(viz_url):
    graph = get_json(f"{viz_url}/api/pipelines/cifar10_resnet")
    tasks = {node["name"] for node in graph["nodes"] if node["type"] == "task"}
    assert {"download_archive", "parse_archive", "split_dataset", "train_model", "plot_confusion_matrix"} <= tasks
    datasets = {node["name"] for node in graph["nodes"] if node["type"] == "data"}
    assert any(name.endswith("train_images") for name in datasets)
    with urllib.request.urlopen(viz_url, timeout=10) as response:
        assert b"<html" in response.read(2000).lower()
