"""The play page in real headless chromium: moves through the board, the probability panel, the
move list, take-back, promotion, errors, review and the PGN download."""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chess
import chess.pgn
import pytest
from play_browser import (
    click_move,
    css,
    drag_move,
    find_browser,
    moves,
    square_offset,
    start_browser,
    wait_for,
)

from transcend.play.server import PlayServer

FOUND = find_browser()
pytestmark = pytest.mark.skipif(isinstance(FOUND, str), reason=str(FOUND))


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[Any]:
    assert not isinstance(FOUND, str)
    session, profile = start_browser(*FOUND, downloads)
    yield session
    session.quit()
    shutil.rmtree(profile, ignore_errors=True)


def panel_rows(browser: Any) -> list[Any]:
    return css(browser, "#prob-rows tr")


def open_page(browser: Any, server: PlayServer) -> None:
    # A fresh game: the tab keeps its game id in sessionStorage, so clear it once the page has
    # settled (clearing earlier races with the page storing its restored game's id).
    browser.get(server.url)
    wait_for(lambda: browser.find_element("id", "status").text and browser.execute_script(
        "return sessionStorage.getItem('transcend-game')"), "the page to settle")
    browser.execute_script("sessionStorage.clear()")
    browser.get(server.url)
    wait_for(lambda: browser.find_element("id", "status").text == "white to move", "the page")
    wait_for(lambda: len(panel_rows(browser)) == 8, "the probability panel")


def test_play_through_the_board(browser: Any, server: PlayServer, downloads: Path) -> None:
    open_page(browser, server)
    # Legal-move hints: chessground draws the destinations of a selected piece.
    board = browser.find_element("id", "board")
    from selenium.webdriver import ActionChains

    ActionChains(browser).move_to_element_with_offset(
        board, *square_offset(browser, "g1")).click().perform()
    wait_for(lambda: len(css(browser, "#board square.move-dest")) == 2, "two move hints")
    ActionChains(browser).move_to_element_with_offset(
        board, *square_offset(browser, "g1")).click().perform()  # unselect

    click_move(browser, "e2e4")
    wait_for(lambda: len(moves(browser)) == 2, "the model's reply")
    assert moves(browser)[0] == "e4"
    assert css(browser, "#board square.last-move")
    # The panel shows the position before the model's move, with the move it played.
    wait_for(lambda: css(browser, "#prob-rows tr.played"), "the played move in the panel")
    assert "black to play" in browser.find_element("id", "prob-title").text
    played = browser.find_element("css selector", "#prob-rows tr.played td").text
    assert played.startswith(moves(browser)[1])

    drag_move(browser, "g1f3")
    wait_for(lambda: len(moves(browser)) == 4, "the reply to a dragged move")
    assert moves(browser)[2] == "Nf3"

    browser.find_element("id", "takeback").click()
    wait_for(lambda: len(moves(browser)) == 2, "the take-back")
    # Back at the model's first reply: the panel shows it again.
    wait_for(lambda: browser.find_element("id", "prob-title").text.endswith(
        "move 1, black to play"), "the panel after the take-back")

    # Temperature 1: both columns of the panel are the same distribution.
    from selenium.webdriver.common.keys import Keys

    temperature = browser.find_element("id", "temperature")
    temperature.send_keys(Keys.CONTROL, "a")
    temperature.send_keys("1", Keys.TAB)  # leaving the field fires its change event
    wait_for(lambda: "T = 1 (token)" in browser.find_element("id", "head-t").text, "T = 1")

    browser.find_element("id", "flip").click()
    wait_for(lambda: css(browser, "#board.orientation-black"), "the flipped board")
    browser.find_element("id", "flip").click()

    for old in downloads.glob("*.pgn"):
        old.unlink()
    browser.find_element("id", "download").click()
    path = wait_for(lambda: next(iter(downloads.glob("*.pgn")), None), "the PGN download")
    game = chess.pgn.read_game(io.StringIO(path.read_text()))
    assert game is not None
    board_moves = [m.uci() for m in game.mainline_moves()]
    assert len(board_moves) == 2 and board_moves[0] == "e2e4"
    assert game.headers["Model"] == "tiny.onnx" and game.headers["Temperature"] == "1"
    assert game.headers["SamplingMode"] == "token" and game.headers["Black"].startswith(
        "transcend")


def test_promotion_and_errors(browser: Any, server: PlayServer, tmp_path: Path) -> None:
    open_page(browser, server)
    details = browser.find_element("id", "load")
    details.find_element("tag name", "summary").click()
    big = tmp_path / "big.pgn"
    big.write_text("1. e4 e5 " * 130_000)  # over the 1 MiB cap
    browser.find_element("id", "pgn-file").send_keys(str(big))
    wait_for(lambda: browser.execute_script(
        "return document.getElementById('pgn').value.length") > 1 << 20, "the file's text")
    browser.find_element("id", "load-pgn").click()
    message = wait_for(lambda: browser.find_element("id", "message").text, "an error message")
    assert message.startswith("upload too large")
    fen = browser.find_element("id", "fen")
    fen.send_keys("not a fen")
    browser.find_element("id", "set-fen").click()
    wait_for(lambda: browser.find_element("id", "message").text.startswith("FEN:"),
             "the FEN's error message")
    fen.clear()
    fen.send_keys("8/P6k/8/8/8/8/8/K7 w - - 0 1")
    browser.find_element("id", "set-fen").click()
    wait_for(lambda: not browser.find_element("id", "message").is_displayed(), "no error")
    wait_for(lambda: len(panel_rows(browser)) > 0, "the panel of the FEN position")
    click_move(browser, "a7a8")
    wait_for(lambda: browser.find_element("id", "promotion").is_displayed(), "promotion choice")
    browser.find_element("css selector", "#promotion button[data-piece=n]").click()
    wait_for(lambda: moves(browser)[:1] == ["a8=N"], "the under-promotion")


def test_load_pgn_and_review(browser: Any, server: PlayServer) -> None:
    open_page(browser, server)
    browser.find_element("css selector", "#load summary").click()
    browser.find_element("id", "pgn").send_keys(
        '[White "A"]\n[Black "B"]\n\n1. d4 d5 2. c4 e6 3. Nc3 Nf6 *')
    browser.find_element("id", "load-pgn").click()
    wait_for(lambda: len(moves(browser)) == 6, "the loaded game")
    browser.find_element("id", "last").click()
    wait_for(lambda: css(browser, "#moves .mv.current"), "the cursor at the end")
    assert css(browser, "#moves .mv.current")[0].text == "Nf6"
    browser.find_element("id", "back").click()
    wait_for(lambda: css(browser, "#moves .mv.current")[0].text == "Nc3", "one step back")
    wait_for(lambda: css(browser, "#prob-rows tr.played"), "the next move in the panel")
    browser.find_element("id", "review").click()
    wait_for(lambda: len(css(browser, "#review-rows tr")) == 6, "the review")
    assert len(css(browser, "#chart rect.p")) == 6
    assert browser.find_element("id", "chart").is_displayed()
    assert "move 5 of 6" in browser.find_element("id", "status").text
    css(browser, "#review-rows tr")[2].click()  # the position of 2. c4
    wait_for(lambda: css(browser, "#moves .mv.current")[0].text == "d5", "the review's ply")
    wait_for(lambda: browser.find_element("css selector", "#prob-rows tr.played td").text
             .startswith("c4"), "the reviewed move in the panel")
    first = [td.text for td in css(browser, "#review-rows tr")[0].find_elements(
        "tag name", "td")]
    assert first[:3] == ["1.", "d4", "pgn"] and first[3].endswith("%")


def test_watch_the_model_play_itself(browser: Any, server: PlayServer) -> None:
    from selenium.webdriver.support.ui import Select

    open_page(browser, server)
    Select(browser.find_element("id", "players")).select_by_value("model,model")
    wait_for(lambda: len(moves(browser)) >= 4, "the model playing itself")
    browser.find_element("id", "pause").click()
    time.sleep(0.5)  # a move already asked for may still arrive
    count = len(moves(browser))
    time.sleep(1.0)
    assert len(moves(browser)) == count
    assert all("model" in e.get_attribute("class") for e in css(browser, "#moves .mv"))


def test_two_tabs_play_two_games(browser: Any, server: PlayServer) -> None:
    open_page(browser, server)
    click_move(browser, "d2d4")
    wait_for(lambda: len(moves(browser)) == 2, "the first tab's game")
    first = browser.current_window_handle
    browser.switch_to.new_window("tab")
    try:
        browser.get(server.url)
        wait_for(lambda: browser.find_element("id", "status").text == "white to move",
                 "a new game in the second tab")
        click_move(browser, "c2c4")
        wait_for(lambda: len(moves(browser)) == 2 and moves(browser)[0] == "c4",
                 "the second tab's game")
    finally:
        browser.close()
        browser.switch_to.window(first)
    browser.refresh()  # the tab keeps its own game across a reload
    wait_for(lambda: moves(browser)[:1] == ["d4"] and len(moves(browser)) == 2,
             "the first tab's game, untouched")
