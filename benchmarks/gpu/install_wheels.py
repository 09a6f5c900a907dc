"""Installs, into a folder for `PYTHONPATH`, the kit's packages that this Python cannot import.

    python benchmarks/gpu/install_wheels.py --wheels benchmarks/gpu/wheels --target /tmp/convbench-gpu-kit

A package this Python already has (JAX's ml_dtypes, say) is left as it is: the kit never shadows what
the GPU machine's own PyTorch and JAX were built against. A wheel is a zip archive of the package's
files; it is unpacked for this interpreter (its CPython tag, or pure Python) and refused if a member
would land outside the target folder. It needs no pip and no network.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import zipfile
from pathlib import Path

from build_kit import KIT_PACKAGES


def compatible(wheel: str, python: tuple[int, int] = sys.version_info[:2], machine: str = platform.machine()) -> bool:
    """Whether wheel file `wheel` installs on CPython `python` on Linux `machine`."""
    parts = wheel[: -len(".whl")].split("-")
    if len(parts) < 5:
        return False
    python_tags, abi_tags, platform_tags = parts[-3].split("."), parts[-2].split("."), parts[-1].split(".")
    cpython = f"cp{python[0]}{python[1]}"
    python_ok = (
        cpython in python_tags
        or "py3" in python_tags
        or ("abi3" in abi_tags and any(tag.startswith("cp3") and int(tag[3:]) <= python[1] for tag in python_tags))
    )
    abi_ok = bool({"none", "abi3", cpython} & set(abi_tags))
    platform_ok = "any" in platform_tags or any(tag.endswith(machine) and "linux" in tag for tag in platform_tags)
    return python_ok and abi_ok and platform_ok


def distribution_of(wheel: str) -> str:
    return wheel.split("-")[0].lower().replace("_", "-")


def unpack(wheel: Path, target: Path) -> None:
    """Unpacks `wheel` into `target`, refusing any member outside it."""
    root = target.resolve()
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            destination = (root / member).resolve()
            if destination != root and root not in destination.parents:
                raise ValueError(f"{wheel.name}: member {member!r} would be written outside {root}")
        archive.extractall(root)


def install_missing(wheels: Path, target: Path) -> list[str]:
    """Unpacks into `target` a wheel of each kit package this Python cannot import; the packages installed."""
    wanted = {name.lower().replace("_", "-"): module for name, module in KIT_PACKAGES.items()}
    installed = []
    for distribution, module in wanted.items():
        if importlib.util.find_spec(module) is not None:
            continue
        found = sorted(
            path
            for path in wheels.glob("*.whl")
            if distribution_of(path.name) == distribution and compatible(path.name)
        )
        if not found:
            raise SystemExit(
                f"No wheel of {distribution} for Python {platform.python_version()} on {platform.machine()} in "
                f"{wheels}: run `make gpu-kit` (it downloads them for CPython 3.11-3.13; Keras 3.15 needs 3.11 or later)"
            )
        target.mkdir(parents=True, exist_ok=True)
        unpack(found[-1], target)
        installed.append(found[-1].name)
    return installed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, required=True)
    parser.add_argument("--target", type=Path, required=True)
    args = parser.parse_args()
    installed = install_missing(args.wheels, args.target)
    print(f"installed into {args.target}: {', '.join(installed)}" if installed else "every kit package was there")


if __name__ == "__main__":
    main()
