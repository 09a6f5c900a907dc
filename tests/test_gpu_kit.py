"""The GPU kit (benchmarks/gpu) here on the CPU: its quick mode end to end under JAX, the recipes it freezes,
and how it installs Keras' wheels on a machine that lacks them."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

KIT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu"
sys.path.insert(0, str(KIT))

from build_kit import KIT_PACKAGES, pinned_versions  # noqa: E402
from install_wheels import compatible, install_missing, unpack  # noqa: E402

pytest.importorskip("jax")


@pytest.fixture(scope="module")
def recipes(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("kit")
    subprocess.run([sys.executable, str(KIT / "build_kit.py"), "--no-wheels", "--out", str(folder)], check=True)
    return folder / "recipes.json"


@pytest.fixture(scope="module")
def quick_run(recipes, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("KERAS_BACKEND", None)
    quick = ["--quick", "--recipes", str(recipes), "--out", str(out), "--epochs-to-94", "12"]
    done = subprocess.run(
        # a budget no configuration reaches here: quick mode checks the path, and torch.compile on a busy CPU is slow
        ["bash", str(KIT / "run.sh"), *quick, "--budget-s", "1500"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "kit.json").read_text()), done.stdout


def test_the_recipes_are_frozen_from_conf_as_kedro_resolves_them(recipes):
    frozen = json.loads(recipes.read_text())
    assert frozen["frozen_from"].startswith("conf/ at commit ")
    resnet, airbench = frozen["recipes"]["resnet"], frozen["recipes"]["airbench"]
    assert resnet["model"]["depth"] == 20 and resnet["augmentation"]["horizontal_flip"] is True
    assert airbench["lookahead"]["every"] == 5 and "smoke" not in airbench
    assert resnet["seed"] == airbench["seed"] is not None  # the same seed as a CPU run of the recipe


def test_quick_mode_times_both_architectures_in_both_precisions_under_jax(quick_run):
    report, stdout = quick_run
    jax_rows = [row for row in report["rows"] if row["backend"] == "jax" and "architecture" in row]
    assert sorted((row["architecture"], row["precision"]) for row in jax_rows) == [
        ("airbench", "bfloat16"),
        ("airbench", "float32"),
        ("resnet", "bfloat16"),
        ("resnet", "float32"),
    ]
    for row in jax_rows:
        assert row["status"] == "ok" and row["compiled"] is True  # XLA: JAX always compiles
        assert row["epoch_s"] > 0 and row["first_epoch_s"] > 0 and row["steps_timed"] == 1
        assert row["images_per_s"] == pytest.approx(report["cifar10_train_images"] / row["epoch_s"], rel=0.01)
    resnet = next(row for row in jax_rows if row["architecture"] == "resnet")
    assert resnet["trainable_parameters"] == 269_722  # ResNet-20 for 10 classes (He et al. 2016: 0.27M)
    for row in jax_rows:
        if row["architecture"] == "airbench":
            assert row["time_to_94_s"] == pytest.approx(12 * row["epoch_s"], rel=0.01)
    assert "| jax | resnet | float32 | true |" in stdout and "kit.json" in stdout


@pytest.mark.torch
@pytest.mark.skipif(__import__("importlib").util.find_spec("torch") is None, reason="PyTorch is not installed")
def test_quick_mode_times_both_architectures_eager_and_compiled_under_torch_where_installed(quick_run):
    report, _ = quick_run
    torch_rows = [row for row in report["rows"] if row["backend"] == "torch" and "architecture" in row]
    assert sorted((row["architecture"], row["precision"], row["compiled"]) for row in torch_rows) == [
        (architecture, precision, compiled)
        for architecture in ("airbench", "resnet")
        for precision in ("bfloat16", "float32")
        for compiled in (False, True)
    ]
    for row in torch_rows:
        assert row["status"] == "ok", row["status"]
        assert row["epoch_s"] > 0 and row["steps_timed"] == 1
    resnet = next(row for row in torch_rows if row["architecture"] == "resnet")
    assert resnet["trainable_parameters"] == 269_722  # the same model as under JAX


def test_a_backend_that_is_not_installed_is_a_row_that_says_so(quick_run):
    report, _ = quick_run
    if "torch" in sys.modules or __import__("importlib").util.find_spec("torch") is not None:
        pytest.skip("PyTorch is installed here")
    (torch_row,) = [row for row in report["rows"] if row["backend"] == "torch"]
    assert torch_row["status"].startswith("not installed")


def wheel(path: Path, members: dict[str, str]) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.parametrize(
    ("name", "python", "expected"),
    [
        ("keras-3.15.1-py3-none-any.whl", (3, 12), True),
        ("optree-0.20.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", (3, 11), True),
        ("optree-0.20.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", (3, 12), False),
        ("h5py-3.14.0-cp312-cp312-manylinux_2_17_aarch64.whl", (3, 12), False),
        ("ml_dtypes-0.6.0-cp39-abi3-manylinux_2_17_x86_64.whl", (3, 13), True),
        ("notawheel.whl", (3, 11), False),
    ],
)
def test_a_wheel_is_picked_for_this_cpython_and_machine(name, python, expected):
    assert compatible(name, python, "x86_64") is expected


def test_only_missing_packages_are_unpacked_and_a_member_outside_the_target_is_refused(tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    monkeypatch.setitem(KIT_PACKAGES, "convbench-kit-probe", "convbench_kit_probe")
    wheel(wheels / "convbench_kit_probe-1.0-py3-none-any.whl", {"convbench_kit_probe/__init__.py": "VALUE = 7\n"})
    wheel(wheels / "keras-0.0-py3-none-any.whl", {"keras/__init__.py": "raise ImportError('shadowed')\n"})
    target = tmp_path / "site"
    assert install_missing(wheels, target) == ["convbench_kit_probe-1.0-py3-none-any.whl"]
    assert not (target / "keras").exists(), "a package this Python has is never shadowed"
    probe = subprocess.run(
        [sys.executable, "-c", "import convbench_kit_probe; print(convbench_kit_probe.VALUE)"],
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "7"
    evil = wheel(tmp_path / "evil-1.0-py3-none-any.whl", {"../outside.py": "x = 1\n"})
    with pytest.raises(ValueError, match="outside"):
        unpack(evil, tmp_path / "site2")
    assert not (tmp_path / "outside.py").exists()


def test_every_kit_package_is_pinned_in_the_constraints():
    versions = pinned_versions(Path(__file__).resolve().parents[1] / "constraints.txt")
    assert all(name.lower().replace("_", "-") in versions for name in KIT_PACKAGES)


def test_what_the_kit_imports_from_convbench_needs_no_tensorflow():
    """The GPU machine has no TensorFlow: the model assembly, the recipe's callbacks and compiling must not import it."""
    check = (
        "import sys; import convbench.training.assembly, convbench.training.callbacks, convbench.training.compiling; "
        "loaded = sorted(name for name in sys.modules if name.split('.')[0] == 'tensorflow'); "
        "assert not loaded, loaded"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
