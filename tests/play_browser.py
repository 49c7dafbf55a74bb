"""Headless Debian chromium through selenium, for the page's test and its screenshots."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chess

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)
# The network is closed and the browser must not reach for it: no updates, sync or QUIC.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900", "--hide-scrollbars")
TIMEOUT = 30.0


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


def wait_for(check: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := check():
                return value
        except Exception:  # noqa: BLE001 - elements come and go while the page redraws
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def css(browser: Any, selector: str) -> list[Any]:
    return browser.find_elements("css selector", selector)


def moves(browser: Any) -> list[str]:
    return [e.text for e in css(browser, "#moves .mv")]


def square_offset(browser: Any, square: str) -> tuple[int, int]:
    """Offset of a square's centre from the board's centre (selenium's origin)."""
    board = browser.find_element("id", "board")
    size = board.size["width"] / 8
    file, rank = chess.FILE_NAMES.index(square[0]), int(square[1]) - 1
    if "orientation-black" in (board.get_attribute("class") or ""):  # chessground's classes
        file, rank = 7 - file, 7 - rank
    return round((file - 3.5) * size), round((3.5 - rank) * size)


def click_move(browser: Any, uci: str) -> None:
    from selenium.webdriver import ActionChains

    board = browser.find_element("id", "board")
    actions = ActionChains(browser)
    actions.move_to_element_with_offset(board, *square_offset(browser, uci[:2])).click()
    actions.move_to_element_with_offset(board, *square_offset(browser, uci[2:4])).click()
    actions.perform()


def drag_move(browser: Any, uci: str) -> None:
    from selenium.webdriver import ActionChains

    board = browser.find_element("id", "board")
    actions = ActionChains(browser)
    actions.move_to_element_with_offset(board, *square_offset(browser, uci[:2])).click_and_hold()
    actions.move_to_element_with_offset(board, *square_offset(browser, uci[2:4]))
    actions.release().perform()
