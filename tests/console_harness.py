"""A real headless Chromium for the console tests (Debian's chromium + chromedriver).

`browser()` starts one Chromium through Selenium with the flags that work
on these machines (no sandbox as root, no background network: the machine
has none) and a fresh profile. Where the packages are missing (.ci/run
installs them) the tests skip and say why. `shot(driver, name)` saves a
screenshot to $TIDELOG_SCREENSHOTS (docs/images when the docs are
refreshed) or to a temporary directory.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("TIDELOG_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TIDELOG_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)
WAIT_SECONDS = 15


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed (apt-get install -y chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install '.[test]')"
    return None


@contextmanager
def browser() -> Iterator[Any]:
    reason = missing()
    if reason is not None:
        print(f"console browser tests skipped: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="tidelog-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(
    driver: Any, condition: Callable[[Any], Any], what: str, seconds: float = WAIT_SECONDS
) -> Any:
    """Poll `condition(driver)` until it is truthy (an event, not a sleep); fail naming `what`."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def safe(d: Any) -> Any:
        try:
            return condition(d)
        except StaleElementReferenceException:
            return False  # the page re-rendered under us: look again

    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.05).until(safe)
    except TimeoutException:
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        raise AssertionError(f"timed out waiting for {what}; browser errors: {errors}") from None


SHOT_HEIGHT_MAX = 2200


def shot(driver: Any, name: str) -> Path:
    """Save the whole page (up to SHOT_HEIGHT_MAX px tall) as console-NAME.png."""
    folder = Path(os.environ.get("TIDELOG_SCREENSHOTS") or tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"console-{name}.png"
    width, height = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    clip = {"x": 0, "y": 0, "width": width, "height": min(height, SHOT_HEIGHT_MAX), "scale": 1}
    # Chromium's DevTools call: the page beyond the window too (a window cannot
    # grow past the headless screen).
    image = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.write_bytes(base64.b64decode(image["data"]))
    return path


def confirm(driver: Any) -> None:
    """Accept the console's confirmation dialog."""
    from selenium.webdriver.common.by import By

    wait(
        driver,
        lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is not None,
        "the confirmation dialog",
    )
    driver.find_element(By.ID, "confirm-ok").click()


def console_errors(driver: Any) -> list[str]:
    """SEVERE messages in the browser's log (script errors, failed loads)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
