"""Debian's Chromium, headless, for the tests of the pages people look at (kedro viz, the MLflow UI).

Import as ``import browser`` (``tests/`` is on pytest's ``pythonpath``). `make test` installs the
`chromium` package where it can (see the Makefile's `browser` target); where no browser could be
installed, `chromium()` skips the test and says why.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",  # the tests run as root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no calls home: this machine's network is closed
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
SCREENSHOTS = Path(__file__).resolve().parents[1] / "build" / "screenshots"
"""Where the browser tests leave their screenshots (git-ignored; README shows copies from docs/images)."""


def chromium() -> str:
    """The Chromium executable, or a skip saying that no browser is installed and how to get one."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium found (`make test` installs Debian's chromium with apt-get where it can; "
                "install it with `apt-get install chromium`)")


def _run(url: str, *extra: str, budget_ms: int, timeout: int) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        command = [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *extra, url]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def rendered_dom(url: str, *, budget_ms: int = 20000, timeout: int = 120) -> str:
    """The page's DOM after its scripts ran for `budget_ms` of virtual time (what a person would see)."""
    result = _run(url, "--dump-dom", budget_ms=budget_ms, timeout=timeout)
    assert result.returncode == 0, f"chromium failed on {url}:\n{result.stderr[-3000:]}"
    return result.stdout


def screenshot(url: str, path: Path, *, size: tuple[int, int] = (1400, 900), budget_ms: int = 20000) -> Path:
    """A PNG of the page at `size` after `budget_ms` of virtual time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    result = _run(url, f"--screenshot={path}", f"--window-size={size[0]},{size[1]}", budget_ms=budget_ms, timeout=120)
    assert result.returncode == 0 and path.exists(), f"chromium could not screenshot {url}:\n{result.stderr[-3000:]}"
    return path
