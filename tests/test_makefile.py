"""The Makefile's user-facing commands, as `make -n` prints them (nothing is run)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")


def planned(*arguments: str) -> str:
    """The commands `make -n <arguments>` would run."""
    result = subprocess.run(["make", "-n", "-C", str(ROOT), *arguments], capture_output=True, text=True, check=True)
    return result.stdout


def kedro_line(output: str) -> str:
    (line,) = [line for line in output.splitlines() if "/kedro run " in line]
    return line


def test_make_run_trains_the_main_job_within_the_budget_and_run_full_the_whole_recipe():
    assert kedro_line(planned("run")).split()[1:] == [
        "run",
        "--pipelines=cifar10_resnet",
        "--params=training.budget.minutes=12",
    ]
    assert "budget" not in kedro_line(planned("run-full"))
    assert "--params=training.budget.minutes=30" in kedro_line(planned("run", "BUDGET_MINUTES=30"))


def test_the_smoke_env_keeps_its_short_epoch_without_a_budget():
    line = kedro_line(planned("run", "KEDRO_ENV=smoke"))
    assert "--env=smoke" in line and "budget" not in line


def test_make_serve_names_the_classifier_of_a_run_and_the_projects_store():
    output = planned("serve", "RUN=0123abcd", "DATASET=pets", "ARCH=simple_cnn", "PORT=5002")
    assert '-m convbench.serving "runs:/0123abcd/pets_simple_cnn_classifier" --port 5002' in output
    assert f"sqlite:///{ROOT}/mlflow.db" in output


def test_make_serve_without_a_model_says_how_to_name_one():
    result = subprocess.run(["make", "-C", str(ROOT), "serve"], capture_output=True, text=True)
    assert result.returncode != 0 and "make serve RUN=<run_id>" in result.stdout + result.stderr
