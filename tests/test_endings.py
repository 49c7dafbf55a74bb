"""Why games end: every ending on crafted games, the tallies, and a real tournament made by the
project's own commands (PGN, summary, JSON and the rating list's endings)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import chess
import chess.pgn
import pytest
from cli_helpers import transcend
from test_tournament import FAKE, games_of

from transcend.evaluation.endings import (
    AHEAD_CP,
    Ended,
    classify,
    comment,
    endings_table,
    material_balance,
    read_endings,
    tally,
)
from transcend.evaluation.games_pgn import read_results
from transcend.evaluation.tournament import Settings, run_tournament


def _played(fen: str | None, *ucis: str) -> chess.Board:
    board = chess.Board(fen) if fen else chess.Board()
    for uci in ucis:
        board.push_uci(uci)
    return board


CRAFTED = [
    # (board, PGN Termination, ending, result, cutechess's comment)
    (_played(None, "f2f3", "e7e5", "g2g4", "d8h4"), "normal", "checkmate", "0-1",
     "Black mates"),
    (_played("k7/8/1K6/8/8/8/8/2Q5 w - - 0 1", "c1c7"), "normal", "stalemate", "1/2-1/2",
     "Draw by stalemate"),
    (_played(None, *["g1f3", "g8f6", "f3g1", "f6g8"] * 2), "normal", "threefold repetition",
     "1/2-1/2", "Draw by 3-fold repetition"),
    (_played("8/8/4k3/8/8/4K3/4R3/8 w - - 99 80", "e2e1"), "normal", "fifty-move rule",
     "1/2-1/2", "Draw by fifty moves rule"),
    (_played("4k3/8/8/8/8/8/4n3/4K3 w - - 0 1", "e1e2"), "normal", "insufficient material",
     "1/2-1/2", "Draw by insufficient mating material"),
    (_played(None, "e2e4", "e7e5"), "adjudication", "move cap", "1/2-1/2",
     "Draw by adjudication"),
    (_played(None, "e2e4"), "time forfeit", "forfeit", "1-0", "Black loses on time"),
    (_played(None, "e2e4"), "illegal move", "forfeit", "1-0", "Black makes an illegal move"),
    (_played(None), "crash", "forfeit", "0-1", "White disconnects"),
]


@pytest.mark.parametrize(("board", "termination", "ending", "result", "text"), CRAFTED,
                         ids=[c[2] + "/" + c[1] for c in CRAFTED])
def test_every_ending_is_classified_and_worded_as_cutechess(
        board: chess.Board, termination: str, ending: str, result: str, text: str) -> None:
    assert classify(board, termination) == ending
    assert comment(ending, result, termination) == text
    assert comment(ending, result, termination, "why") == text + ": why"


def test_material_balance_and_draws_while_ahead() -> None:
    queen_up = chess.Board("4k3/8/8/8/8/8/8/Q3K3 w - - 0 1")
    assert material_balance(queen_up) == 900
    games = [Ended("a", "b", "1/2-1/2", "threefold repetition", 900),   # a drew a queen up
             Ended("b", "a", "1/2-1/2", "move cap", -AHEAD_CP),         # a (Black) 3 pawns up
             Ended("a", "b", "1/2-1/2", "stalemate", AHEAD_CP - 100),  # two pawns: not ahead
             Ended("a", "b", "1-0", "checkmate", 1400),
             Ended("b", "a", "1-0", "checkmate", 500)]
    rows = {r.name: r for r in tally(games, ["a", "b"])}
    a, b = rows["a"], rows["b"]
    assert (a.games, a.draws, a.drawn_ahead) == (5, 3, 2)
    assert a.drawn_ahead_by == {"threefold repetition": 1, "move cap": 1}
    assert (a.mates_won, a.mates_lost, b.mates_won, b.mates_lost) == (1, 1, 1, 1)
    assert a.by_ending == {"threefold repetition": 1, "move cap": 1, "stalemate": 1,
                           "checkmate": 2}
    assert a.mean_material == pytest.approx((900 + 300 + 200 + 1400 - 500) / 5 / 100)
    assert b.drawn_ahead == 0 and b.mean_material == pytest.approx(-a.mean_material)
    table = endings_table([a, b])
    assert "2/3 (threefold repetition 1, move cap 1)" in table.splitlines()[2]


def test_forfeits_are_endings_in_the_pgn(tmp_path: Path) -> None:
    pgn = tmp_path / "games.pgn"
    crash = f"uci:name=crash,cmd={sys.executable} {FAKE} --mode crash --after 2"
    result = run_tournament([crash], ["random"], 2, pgn=pgn, settings=Settings(max_moves=30))
    assert {g.ending for g in result.games} == {"forfeit"}
    for game in games_of(pgn):
        assert game.headers["Ending"] == "forfeit"
        assert game.end().comment.startswith(("White disconnects", "Black disconnects"))
    assert [r.ending for r, _ in read_results(pgn)] == ["forfeit", "forfeit"]


def test_a_real_tournament_reports_why_games_ended(tmp_path: Path) -> None:
    pgn, out = tmp_path / "run.pgn", tmp_path / "run.json"
    text = transcend("tournament", "--engine", "transcend-uci --temp 0.01 --seed 3",
                     "--opponent", "random", "--games", "4", "--max-moves", "40",
                     "--pgn", str(pgn), "--json", str(out), "--anchor", "random=0",
                     "--quiet").stdout
    assert "Why games ended" in text and "drawn ahead" in text
    assert "transcend-uci-T0.01: ahead 3+ pawns: mate avoid-draws progress;" in text
    games = games_of(pgn)
    data = json.loads(out.read_text())
    assert len(games) == len(data["games"]) == 4
    for game, record in zip(games, data["games"], strict=True):
        board = game.end().board()
        ending = classify(board, game.headers["Termination"])
        assert game.headers["Ending"] == record["ending"] == ending
        assert float(game.headers["Material"]) == record["material"] == (
            material_balance(board) / 100)
        if ending != "checkmate":  # the last move's comment, as cutechess writes it
            assert game.end().comment.startswith(comment(ending, game.headers["Result"]))
        side = "White" if game.headers["White"] != "random" else "Black"
        assert game.headers[f"{side}Convert"].startswith("ahead 3+ pawns")
    engine = next(r for r in data["endings"] if r["name"] != "random")
    assert engine["games"] == 4 and sum(engine["by_ending"].values()) == 4
    # The rating list reads the same endings back from the PGN.
    listed = transcend("ratings", str(pgn), "--anchor", "random=0", "--endings", "--json").stdout
    assert json.loads(listed)["endings"] == data["endings"]
    assert [e.ending for e in read_endings([pgn])] == [g["ending"] for g in data["games"]]


def test_a_bad_conversion_option_is_one_line_from_the_tournament() -> None:
    for option, words in (("ConvertMargin=0", "at least 1"),
                          ("ConvertRepetitionTemperature=hot", "ConvertRepetitionTemperature")):
        spec = f"uci:name=x,option.{option},cmd=transcend-uci"
        failed = transcend("tournament", "--engine", spec, "--opponent", "random", check=False)
        text = failed.stderr
        assert failed.returncode == 2 and text.startswith("error: ")
        assert text.count("\n") == 1 and words in text
