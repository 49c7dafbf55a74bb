"""The temperature sweep: with a scripted engine, then end to end with transcend-uci and `tiny`."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from pathlib import Path

import chess.pgn
import pytest

from transcend.engine.model_file import read_model_info
from transcend.evaluation.sweep import (
    calibration_path,
    default_engine_cmd,
    parse_temperatures,
    run_sweep,
)
from transcend.training.cli import main

FAKE = Path(__file__).with_name("fake_uci.py")


def rows_of(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def pgn_count(path: Path) -> int:
    handle = io.StringIO(path.read_text())
    count = 0
    while chess.pgn.read_headers(handle) is not None:
        count += 1
    return count


def test_parse_temperatures() -> None:
    assert parse_temperatures("1,0.1, 0.5,0.1") == [0.1, 0.5, 1.0]
    for bad in ("", "0,1", "a,b", "-1", "nan"):
        with pytest.raises(ValueError):
            parse_temperatures(bad)


def test_sweep_with_a_scripted_engine(tmp_path: Path, tiny_onnx: Path, stockfish: str) -> None:
    model = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, model)
    out = tmp_path / "sweep"
    # One illegal sample reported before every move: the illegal rate is 1 / 2.
    engine = f"{sys.executable} {FAKE} --illegal-info 1"
    result = run_sweep(model, [1.0, 0.1], ["sf:skill=0,nodes=10,elo=900", "random"], 2, out,
                       concurrency=2, max_moves=15, mode="paper", engine_cmd=engine)
    assert [r.temperature for r in result.rows] == [0.1, 1.0]
    assert result.max_rating == 1000 and result.anchors == {"sf-skill0-n10": 900.0}
    rows = rows_of(out / "ratings.csv")
    assert [r["temperature"] for r in rows] == ["0.1", "1"]
    for row, swept in zip(rows, result.rows, strict=True):
        assert row["games"] == "4" and float(row["illegal_rate"]) == pytest.approx(0.5)
        assert float(row["lo95"]) <= float(row["elo"]) <= float(row["hi95"])
        assert float(row["elo"]) == pytest.approx(swept.elo, abs=0.1)
        assert row["glicko"] != ""
    assert pgn_count(out / "games.pgn") == 8
    assert (out / "rating_vs_temperature.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (out / "summary.md").read_text()
    assert "| 0.1 |" in summary and "highest rating in the training data: 1000" in summary
    points = json.loads(calibration_path(model).read_text())
    assert points == [{"temperature": r.temperature, "elo": round(r.elo, 1)}
                      for r in result.rows]
    assert calibration_path(model) == tmp_path / "m.calibration.json"
    # Run again: every game is already in the PGN, so nothing is replayed.
    again = run_sweep(model, [0.1, 1.0], ["sf:skill=0,nodes=10,elo=900", "random"], 2, out,
                      max_moves=15, mode="paper", engine_cmd=engine + " --mode crash")
    assert pgn_count(out / "games.pgn") == 8
    assert [r.elo for r in again.rows] == [r.elo for r in result.rows]


def test_sweep_without_anchors_writes_no_calibration(tmp_path: Path, tiny_onnx: Path) -> None:
    model = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, model)
    result = run_sweep(model, [0.5], ["random"], 2, tmp_path / "out", max_moves=5,
                       engine_cmd=f"{sys.executable} {FAKE}")
    assert result.calibration is None and not calibration_path(model).exists()
    assert rows_of(tmp_path / "out" / "ratings.csv")[0]["illegal_rate"] == ""
    assert "No anchors" in (tmp_path / "out" / "summary.md").read_text()


def uci_command() -> str:
    found = default_engine_cmd()
    if found == "transcend-uci" and shutil.which(found) is None:
        pytest.fail("transcend-uci is not installed (pip install -e .)")
    return found


@pytest.mark.slow
def test_tiny_end_to_end_with_transcend_uci(tmp_path: Path, tiny_onnx: Path) -> None:
    model = tmp_path / "tiny.onnx"
    shutil.copy(tiny_onnx, model)
    out = tmp_path / "token"
    result = run_sweep(model, [0.5, 1.5], ["random"], 2, out, concurrency=2, max_moves=6,
                       mode="token", engine_cmd=uci_command(), anchors={"random": 0},
                       write_metadata=True)
    handle = io.StringIO((out / "games.pgn").read_text())
    games = []
    while (game := chess.pgn.read_game(handle)) is not None:
        games.append(game)
    assert len(games) == 4
    for game in games:
        # Legal-move sampling never forfeits: every game reaches the 6-move limit or ends.
        assert game.headers["Termination"] in ("adjudication", "normal")
        side = "White" if game.headers["White"].startswith("tiny") else "Black"
        assert game.headers[f"{side}Temperature"] in ("0.5", "1.5")
    assert calibration_path(model).exists()
    # The curve is also inside the model, where the engine reads it for UCI_Elo.
    stored = read_model_info(model).calibration
    assert stored == [(r.temperature, round(r.elo, 1)) for r in result.rows]
    assert {r.games for r in result.rows} == {2}
    # The untrained model writes mostly nonsense: in the paper's mode nearly every sample is
    # illegal, and after five in a row the paper's rule forfeits the game.
    paper = run_sweep(model, [1.0], ["random"], 2, tmp_path / "paper", max_moves=6,
                      mode="paper", engine_cmd=uci_command(), calibrate=False)
    assert paper.rows[0].illegal_rate is not None and paper.rows[0].illegal_rate > 0.5
    handle = io.StringIO((tmp_path / "paper" / "games.pgn").read_text())
    terminations = []
    while (headers := chess.pgn.read_headers(handle)) is not None:
        terminations.append(headers["Termination"])
        if headers["Termination"] == "illegal move":
            assert headers["Result"] == ("0-1" if headers["White"] == "tiny-T1" else "1-0")
    assert "illegal move" in terminations


def test_sweep_command_errors_are_one_line(tmp_path: Path, tiny_onnx: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    for args, message in ((["--temps", "0,1"], "positive"),
                          (["--temps", "1", "--anchor", "x=1"], "not a player")):
        with pytest.raises(SystemExit):
            main(["sweep", "--model", str(tiny_onnx), "--opponent", "random", "--games", "1",
                  "--max-moves", "2", "--out", str(tmp_path / "o"), "--quiet",
                  "--engine-cmd", f"{sys.executable} {FAKE}", *args])
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1


def test_experts_are_rated_in_the_same_list_and_judged(tmp_path: Path, tiny_onnx: Path,
                                                        stockfish: str) -> None:
    model = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, model)
    out = tmp_path / "sweep"
    # A random mover posing as the model cannot beat a Stockfish expert.
    result = run_sweep(model, [0.5], ["random"], 2, out, max_moves=40, anchors={"random": 0},
                       engine_cmd=f"{sys.executable} {FAKE}", experts=["sf:skill=0,nodes=50"])
    assert result.best_expert is not None and result.best_expert.name == "sf-skill0-n50"
    assert result.best_expert.games == 2  # the expert played the model like any opponent
    assert result.transcends() is False
    summary = (out / "summary.md").read_text()
    assert "Best expert of the training data: `sf-skill0-n50`" in summary
    assert "does not transcend" in summary


def test_opponents_can_also_play_each_other(tmp_path: Path, tiny_onnx: Path,
                                             stockfish: str) -> None:
    model = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, model)
    out = tmp_path / "sweep"
    result = run_sweep(model, [0.5, 1.0], ["random"], 2, out, max_moves=30,
                       anchors={"random": 0}, engine_cmd=f"{sys.executable} {FAKE}",
                       experts=["sf:skill=0,nodes=50"], opponent_games=3)
    assert pgn_count(out / "games.pgn") == 8 and pgn_count(out / "opponents.pgn") == 3
    by_name = {r.name: r for r in result.ratings}
    # 2 games against each temperature, 3 against the other opponent.
    assert by_name["sf-skill0-n50"].games == 7 and by_name["random"].games == 7
    assert [r.games for r in result.rows] == [4, 4]
    summary = (out / "summary.md").read_text()
    assert "the opponents also played each other, 3 games a pair" in summary
    assert "At T = 1 the model rates" in summary
    # Resumed: nothing is played again.
    again = run_sweep(model, [0.5, 1.0], ["random"], 2, out, max_moves=30,
                      anchors={"random": 0}, engine_cmd=f"{sys.executable} {FAKE}",
                      experts=["sf:skill=0,nodes=50"], opponent_games=3)
    assert pgn_count(out / "opponents.pgn") == 3
    assert {r.name: r.elo for r in again.ratings} == pytest.approx(
        {r.name: r.elo for r in result.ratings})


def test_transcendence_verdict_needs_the_whole_interval_above_the_expert() -> None:
    from transcend.evaluation.ratings import Rating
    from transcend.evaluation.sweep import SweepResult, SweepRow

    def result(lo: float) -> SweepResult:
        rows = [SweepRow(0.01, "m-T0.01", 500.0, lo, 700.0, 200, 0.6),
                SweepRow(1.0, "m-T1", 200.0, 100.0, 300.0, 200, 0.4)]
        expert = Rating("expert", 400.0, 350.0, 450.0, 200, 100.0, 20)
        return SweepResult(rows, [], {}, None, Path("."), Path("."), best_expert=expert)

    assert result(lo=410.0).transcends() is True
    assert result(lo=390.0).transcends() is False
