"""Debian's Chromium, headless, driven by Playwright, for the pages people look at (kedro viz, the MLflow UI).

Import as ``import browser`` (``tests/`` is on pytest's ``pythonpath``). `make test` installs the
`chromium` package where it can (the Makefile's `browser` target); Playwright drives that binary
(`executable_path`), no browser is downloaded. Where no Chromium could be installed, `open_page`
skips the test and says why.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser")
FLAGS = (
    "--no-sandbox",  # the tests run as root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no calls home: this machine's network is closed
    "--disable-component-update",
    "--disable-sync",
)
SCREENSHOTS = Path(__file__).resolve().parents[1] / "build" / "screenshots"
"""Where the browser tests leave their screenshots (git-ignored; README shows copies from docs/images)."""


def chromium() -> str:
    """The Chromium executable, or a skip saying that no browser is installed and how to get one."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "no Chromium found (`make test` installs Debian's chromium with apt-get where it can; "
        "install it with `apt-get install chromium`)"
    )


@contextmanager
def open_page(url: str, *, size: tuple[int, int] = (1400, 900)) -> Iterator:
    """A Playwright page of headless Chromium showing `url`, once it has loaded.

    Not "network idle": MLflow 3's run page keeps polling the server, so it may never be idle.
    Callers wait for the text they expect instead.
    """
    from playwright.sync_api import sync_playwright

    executable = chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=list(FLAGS))
        try:
            page = browser.new_page(viewport={"width": size[0], "height": size[1]})
            page.set_default_timeout(60_000)
            page.goto(url, wait_until="load")
            yield page
        finally:
            browser.close()


def dismiss(page, *selectors: str) -> None:
    """Click each visible element matching `selectors` (pop-ups that would hide the page in a screenshot)."""
    for selector in selectors:
        for element in page.locator(selector).all():
            if element.is_visible():
                element.click()


def screenshot(page, name: str) -> Path:
    """A PNG of `page` as it is now, saved as `SCREENSHOTS/<name>`."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path))
    return path


def mlflow_model_training_view(page, base: str) -> None:
    """Switches the MLflow UI at `base` to its "Model training" view (MLflow 3 opens on GenAI); the UI
    keeps the choice while the page lives."""
    page.goto(base)
    page.get_by_text("Model training", exact=True).first.click()
    page.wait_for_timeout(1000)


def close_mlflow_assistant(page) -> None:
    """Closes the MLflow Assistant's side panel, which would hide half of a run's page."""
    dismiss(page, "button[aria-label='Close']")


def mlflow_metric_charts(page, search: str, chart: str) -> None:
    """On a run's page: its "Model metrics" tab, the charts whose names hold `search`, once `chart` shows."""
    page.get_by_role("tab", name="Model metrics").first.click()
    page.get_by_placeholder("Search metric charts").fill(search)
    page.get_by_text(chart, exact=True).first.wait_for()
    page.wait_for_timeout(3000)  # the charts draw after their data arrive
