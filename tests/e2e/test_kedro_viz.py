"""`kedro viz` starts on this project and serves every registered pipeline with its nodes."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import browser
import pytest

pytestmark = pytest.mark.e2e

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEDRO = Path(sys.executable).with_name("kedro")


VIZ_PORTS = range(20000, 49000)
"""kedro-viz refuses ports above 49151, where the OS hands out ephemeral ones, so the test picks its own."""


def free_port() -> int:
    """A port in `VIZ_PORTS` that is free now."""
    for port in random.Random().sample(VIZ_PORTS, 50):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {VIZ_PORTS}")


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def start_viz(log_path: Path) -> tuple[subprocess.Popen, str]:
    """Starts `kedro viz run` on a free port; returns the process and its URL once it answers."""
    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(KEDRO), "viz", "run", "--no-browser", "--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while process.poll() is None and time.monotonic() < deadline:
        try:
            get_json(f"{url}/api/main")
            return process, url
        except OSError:
            time.sleep(1)
    stop(process)
    raise RuntimeError(f"kedro viz did not answer on {url}:\n{log_path.read_text()[-4000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def viz_url(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("viz") / "viz.log"
    try:
        process, url = start_viz(log_path)
    except RuntimeError as first_failure:  # e.g. the free port was taken in between: once more
        print(first_failure)
        process, url = start_viz(log_path)
    try:
        yield url
    finally:
        stop(process)


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


def test_the_page_shows_the_nodes_of_cifar10_resnet_in_a_browser(viz_url):
    """What a person sees: the flowchart of `cifar10_resnet`, every namespace expanded, in headless Chromium."""
    with browser.open_page(f"{viz_url}/?pid=cifar10_resnet&expandAllPipelines=true") as page:
        page.locator("text.pipeline-node__text", has_text="train_model").wait_for()
        labels = set(page.locator("text.pipeline-node__text").all_text_contents())
        assert {
            "download_archive",
            "parse_archive",
            "split_dataset",
            "train_model",
            "evaluate_predictions",
            "plot_confusion_matrix",
            "build_classifier",
        } <= labels, sorted(labels)
        assert {"cifar10.train_images", "cifar10.resnet.model", "cifar10.resnet.classifier"} <= labels
        assert not any(label.startswith(("cifar100", "mnist")) for label in labels), (
            "another pipeline's nodes are drawn"
        )
        assert "cifar10_resnet" in page.locator(".pipeline-list .dropdown__label").first.inner_text()
        browser.dismiss(page, ".feature-hints__close", "button:has-text('Dismiss')")
        png = browser.screenshot(page, "kedro_viz_cifar10_resnet.png")
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 20_000
