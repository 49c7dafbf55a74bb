"""Headless Debian chromium through selenium, for the page's test and its screenshots."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)
# The network is closed and the browser must not reach for it: no updates, sync or QUIC.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900", "--hide-scrollbars")


def find_browser() -> tuple[str, str] | str:
    """(browser, driver) paths, or the reason there are none."""
    browser = next((p for name in BROWSERS if (p := shutil.which(name))), None)
    driver = next((p for name in DRIVERS if (p := shutil.which(name))), None)
    if browser is None or driver is None:
        return ("no headless browser: install chromium and chromium-driver "
                "(Debian: apt-get install chromium chromium-driver; `make test` does it as root)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return browser, driver


def start_browser(browser: str, driver: str, downloads: Path) -> tuple[Any, Path]:
    """A chromium session that saves downloads into ``downloads``; returns it and its profile
    directory (remove it after ``quit``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = Path(tempfile.mkdtemp(prefix="transcend-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads), "download.prompt_for_download": False,
    })
    session = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    session.execute_cdp_cmd("Page.setDownloadBehavior",
                            {"behavior": "allow", "downloadPath": str(downloads)})
    return session, profile
