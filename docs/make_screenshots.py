"""Screenshots of the MLflow UI for the README, from a real (not smoke) run, in headless Chromium.

    python docs/make_screenshots.py <project folder with mlflow.db> [--experiment cifar10] [--run cifar10_resnet]

Starts `mlflow ui` on the project's `mlflow.db` (as `make mlflow-ui` does), switches the UI to its
"Model training" view, and saves to docs/images/:
- `mlflow_training_run.png`: the run's overview (tags, parameters and metrics);
- `mlflow_training_accuracy_curves.png`, `mlflow_training_loss_curves.png`: its "Model metrics" tab,
  the learning curves (train, validation) and the test figure, searched by "accuracy" and "loss".
The browser helpers are the tests' own (tests/browser.py, tests/kedro_project.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import browser  # noqa: E402
from kedro_project import mlflow_ui  # noqa: E402

IMAGES = ROOT / "docs" / "images"


def search(base: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{base}/ajax-api/2.0/mlflow/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    return json.load(urllib.request.urlopen(request, timeout=10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project", type=Path)
    parser.add_argument("--experiment", default="cifar10")
    parser.add_argument("--run", default="cifar10_resnet", help="the run's name (the latest one of that name)")
    parser.add_argument(
        "--architecture", default="resnet", help="whose curves (<architecture>.val_accuracy, ...) to show"
    )
    args = parser.parse_args()
    IMAGES.mkdir(parents=True, exist_ok=True)
    with mlflow_ui(args.project) as base:
        experiments = {
            e["name"]: e["experiment_id"]
            for e in search(base, "experiments/search", {"max_results": 100})["experiments"]
        }
        experiment = experiments[args.experiment]
        runs = search(
            base, "runs/search", {"experiment_ids": [experiment], "order_by": ["attributes.start_time DESC"]}
        )["runs"]
        run_id = next(run["info"]["run_id"] for run in runs if run["info"]["run_name"] == args.run)
        runs_page = f"{base}/#/experiments/{experiment}/runs"
        with browser.open_page(base, size=(1500, 900)) as page:
            browser.mlflow_model_training_view(page, base)
            page.goto(f"{runs_page}/{run_id}")
            page.get_by_text(args.run).first.wait_for()
            browser.close_mlflow_assistant(page)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(IMAGES / "mlflow_training_run.png"))

            page.set_viewport_size({"width": 1500, "height": 640})
            for term in ("accuracy", "loss"):
                browser.mlflow_metric_charts(page, term, f"{args.architecture}.val_{term}")
                page.screenshot(path=str(IMAGES / f"mlflow_training_{term}_curves.png"))
    for name in ("run", "accuracy_curves", "loss_curves"):
        print(IMAGES / f"mlflow_training_{name}.png")


if __name__ == "__main__":
    main()
