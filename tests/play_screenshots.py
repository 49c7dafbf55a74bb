"""Screenshots of the play page for docs/play.md, taken by the tests' headless chromium.

    python tests/play_screenshots.py            # the bundled model; writes docs/play-*.png

``docs/play-game.png``: a game against the model at T = 0.3, the panel showing the distribution
of its last move. ``docs/play-review.png``: the Opera Game (Morphy, 1858) loaded and reviewed.
Needs chromium, chromium-driver and selenium (``make screenshots`` sets them up); Stockfish is
used when installed.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from play_browser import click_move, css, find_browser, moves, start_browser, wait_for  # noqa: E402

from transcend.play.server import make_server, serve_in_thread  # noqa: E402

OPERA_GAME = (
    '[Event "Paris"]\n[Site "Paris FRA"]\n[Date "1858.??.??"]\n[White "Paul Morphy"]\n'
    '[Black "Duke Karl / Count Isouard"]\n[Result "1-0"]\n\n'
    "1. e4 e5 2. Nf3 d6 3. d4 Bg4 4. dxe5 Bxf3 5. Qxf3 dxe5 6. Bc4 Nf6 7. Qb3 Qe7 8. Nc3 c6 "
    "9. Bg5 b5 10. Nxb5 cxb5 11. Bxb5+ Nbd7 12. O-O-O Rd8 13. Rxd7 Rxd7 14. Rd1 Qe6 "
    "15. Bxd7+ Nxd7 16. Qb8+ Nxb8 17. Rd8# 1-0\n"
)
DOCS = Path(__file__).resolve().parent.parent / "docs"


def save(browser: object, path: Path) -> None:
    """A screenshot, reduced to a 128-colour palette when Pillow is there (a third the size)."""
    png = browser.get_screenshot_as_png()  # type: ignore[attr-defined]
    try:
        from PIL import Image

        image = Image.open(io.BytesIO(png)).convert("RGB")
        out = io.BytesIO()
        image.quantize(128, dither=Image.Dither.NONE).save(out, "PNG", optimize=True)
        png = out.getvalue()
    except ImportError:
        pass
    tmp = path.with_suffix(".tmp.png")
    tmp.write_bytes(png)
    tmp.replace(path)
    print(f"wrote {path} ({len(png) // 1024} KiB)")


def viewport(browser: object, width: int, height: int) -> None:
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {  # type: ignore[attr-defined]
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def set_field(browser: object, field: str, value: str) -> None:
    from selenium.webdriver.common.keys import Keys

    element = browser.find_element("id", field)  # type: ignore[attr-defined]
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(value, Keys.TAB)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--out", type=Path, default=DOCS)
    args = parser.parse_args()
    found = find_browser()
    if isinstance(found, str):
        sys.exit(found)
    server = make_server(args.model, port=0)
    serve_in_thread(server)
    downloads = Path(tempfile.mkdtemp(prefix="transcend-downloads-"))
    browser, profile = start_browser(*found, downloads)
    try:
        viewport(browser, 1180, 660)
        browser.get(server.url)
        wait_for(lambda: len(css(browser, "#prob-rows tr")) > 0, "the page")
        set_field(browser, "seed", "3")
        set_field(browser, "temperature", "0.3")
        wait_for(lambda: "T = 0.3" in browser.find_element("id", "head-t").text, "T = 0.3")
        for uci in ("e2e4", "g1f3", "f1c4"):
            before = len(moves(browser))
            click_move(browser, uci)
            wait_for(lambda before=before: len(moves(browser)) == before + 2, "a reply")
        wait_for(lambda: css(browser, "#prob-rows tr.played"), "the panel")
        time.sleep(1.0)  # Stockfish's column and the last animation
        save(browser, args.out / "play-game.png")

        viewport(browser, 1180, 1060)
        browser.find_element("css selector", "#load summary").click()
        browser.find_element("id", "pgn").send_keys(OPERA_GAME)
        browser.find_element("id", "load-pgn").click()
        wait_for(lambda: len(moves(browser)) == 33, "the Opera Game")
        browser.find_element("id", "review").click()
        wait_for(lambda: len(css(browser, "#review-rows tr")) == 33, "the review", 300)
        rows = css(browser, "#review-rows tr")
        rows[30].click()  # the position of 16. Qb8+!, the queen sacrifice
        wait_for(lambda: css(browser, "#prob-rows tr.played"), "the panel at the sacrifice")
        time.sleep(1.0)
        browser.execute_script("window.scrollTo(0, 0)")
        save(browser, args.out / "play-review.png")
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)
        shutil.rmtree(downloads, ignore_errors=True)
        server.shutdown()
        server.server_close()
        server.games.stockfish.close()


if __name__ == "__main__":
    main()
