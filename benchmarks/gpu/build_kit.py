"""Builds what the GPU kit needs beyond the GPU machine's PyTorch and JAX: Keras' wheels and the recipes.

Run here, where the package registry can be reached (`make gpu-kit` does):

    .venv/bin/python benchmarks/gpu/build_kit.py [--out benchmarks/gpu] [--pythons 3.11 3.12 3.13] [--no-wheels]

- `recipes.json`: the cifar10 recipes of ResNet-20 (`resnet`) and airbench as `kedro run` resolves them
  from conf/ (the GPU machine has neither Kedro nor PyYAML), with the commit they were frozen from.
- `wheels/`: Keras and the packages it needs that a machine with PyTorch and JAX may lack
  (`KIT_PACKAGES`), at the versions of constraints.txt, for each CPython of `--pythons` on x86-64 Linux.
  The GPU machine installs only those it misses (`install_wheels.py`). Both are git-ignored and travel
  with the working tree (`carry`): the whole kit stays well under the 64 MiB a device call carries.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT / "src"))

KIT_PACKAGES = {
    "keras": "keras",
    "absl-py": "absl",
    "h5py": "h5py",
    "ml_dtypes": "ml_dtypes",
    "namex": "namex",
    "optree": "optree",
    "packaging": "packaging",
    "rich": "rich",
    "markdown-it-py": "markdown_it",
    "mdurl": "mdurl",
    "pygments": "pygments",
}
"""Distribution -> the module it installs: Keras 3 and its dependencies (rich's included), not NumPy."""

KIT_ARCHITECTURES = ("resnet", "airbench")
LIMIT_MIB = 48


def pinned_versions(constraints: Path) -> dict[str, str]:
    """Lower-cased distribution name (`-` and `_` alike) -> version, from a `name==version` file."""
    versions = {}
    for line in constraints.read_text().splitlines():
        name, _, version = line.split("#")[0].strip().partition("==")
        if version:
            versions[name.lower().replace("_", "-")] = version
    return versions


def frozen_recipes() -> dict:
    """The kit's architectures' cifar10 recipes as `kedro run --env=base` resolves them."""
    from convbench.config import RUN_RECIPE_SETTINGS, ConvbenchConfigLoader
    from convbench.pipelines.training.nodes import resolve_recipe
    from convbench.settings import CONFIG_LOADER_ARGS

    parameters = ConvbenchConfigLoader(str(PROJECT / "conf"), env="base", **CONFIG_LOADER_ARGS)["parameters"]
    return {
        architecture: resolve_recipe(
            parameters["training"][architecture],
            parameters["recipe_overrides"]["cifar10"],
            parameters[RUN_RECIPE_SETTINGS][architecture],
            architecture=architecture,
        )
        for architecture in KIT_ARCHITECTURES
    }


def commit() -> str:
    found = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT, capture_output=True, text=True, check=False)
    return found.stdout.strip() or "unknown"


def download_wheels(folder: Path, pythons: list[str]) -> None:
    versions = pinned_versions(PROJECT / "constraints.txt")
    folder.mkdir(parents=True, exist_ok=True)
    for python in pythons:
        requirements = [f"{name}=={versions[name.lower().replace('_', '-')]}" for name in KIT_PACKAGES]
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--dest",
                str(folder),
                "--python-version",
                python,
                "--implementation",
                "cp",
                *[
                    arg
                    for tag in ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")
                    for arg in ("--platform", tag)
                ],
                *requirements,
            ],
            check=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--pythons", nargs="+", default=["3.11", "3.12", "3.13"])
    parser.add_argument("--no-wheels", action="store_true", help="the recipes only (no network needed)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    recipes = {"frozen_from": f"conf/ at commit {commit()}", "recipes": frozen_recipes()}
    (args.out / "recipes.json").write_text(json.dumps(recipes, indent=2) + "\n")
    if not args.no_wheels:
        download_wheels(args.out / "wheels", args.pythons)
        size = sum(path.stat().st_size for path in (args.out / "wheels").iterdir()) / 2**20
        print(f"{len(list((args.out / 'wheels').iterdir()))} wheels, {size:.1f} MiB in {args.out / 'wheels'}")
        if size > LIMIT_MIB:
            raise SystemExit(
                f"The wheels take {size:.1f} MiB, over the kit's {LIMIT_MIB} MiB: a device call carries 64"
            )
    print(f"recipes of {', '.join(KIT_ARCHITECTURES)} in {args.out / 'recipes.json'}")


if __name__ == "__main__":
    main()
