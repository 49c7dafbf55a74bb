"""The advantage analysis: win probabilities, position sampling, Stockfish scoring and its
cache, the exact expectation checked by hand on a two-move position, outputs and bad input."""

from __future__ import annotations

import csv
import io
import math
import random
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import chess
import chess.pgn
import numpy as np
import pytest

from transcend.engine.transcript import prompt, sans_of_moves
from transcend.evaluation.advantage import (
    CSV_COLUMNS,
    AdvantageOptions,
    MultiPVClient,
    PolicyDistribution,
    _share_of_top,
    analyse_positions,
    parse_temperatures,
    phase_of,
    run_advantage,
    sample_positions,
    win_probability,
)
from transcend.training.cli import main

# 1.d3 e6 2.f3 Qh4+ leaves white exactly two legal moves, Kd2 and g3; white played g3.
TWO_MOVE_GAME = "1. d3 e6 2. f3 Qh4+ 3. g3 *"
KD2, G3 = chess.Move.from_uci("e1d2"), chess.Move.from_uci("g2g3")
NODES = 2000  # small enough for speed, large enough that every move gets a full iteration


def random_game(rng: random.Random, max_plies: int) -> chess.pgn.Game:
    board = chess.Board()
    while board.ply() < max_plies and not board.is_game_over():
        board.push(rng.choice(list(board.legal_moves)))
    return chess.pgn.Game.from_board(board)


def write_pgn(path: Path, games: list[chess.pgn.Game], extra: str = "") -> Path:
    path.write_text("\n\n".join(str(g) for g in games) + "\n\n" + extra)
    return path


@pytest.fixture(scope="module")
def games_pgn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve long random games (every phase) and, after them, one of each kind of bad game."""
    rng = random.Random(7)
    games = [random_game(rng, 90) for _ in range(12)]
    bad = (
        '[Event "set up"]\n[SetUp "1"]\n[FEN "8/8/8/4k3/8/8/4P3/4K3 w - - 0 1"]\n\n1. Kd2 *\n\n'
        '[Event "illegal"]\n\n1. e4 e5 2. Ke3 Nc6 *\n\n'
        '[Event "empty"]\n\n*\n\n'
    )
    return write_pgn(tmp_path_factory.mktemp("pgn") / "games.pgn", games, bad)


def uniform(board: chess.Board, temperature: float, mode: str) -> dict[chess.Move, float]:
    moves = list(board.legal_moves)
    return {m: 1 / len(moves) for m in moves}


# --- formulas ---------------------------------------------------------------------------------


def test_win_probability_is_lichess_curve_with_mates_at_the_ends() -> None:
    assert win_probability("cp", 0) == 0.5
    assert win_probability("cp", 100) == pytest.approx(1 / (1 + math.exp(-0.368208)))
    assert win_probability("cp", 300) + win_probability("cp", -300) == pytest.approx(1.0)
    assert win_probability("cp", 50) < win_probability("cp", 51)
    assert win_probability("mate", 3) == 1.0
    assert win_probability("mate", -1) == 0.0
    with pytest.raises(ValueError):
        win_probability("wdl", 1)


def test_phases_by_ply() -> None:
    assert [phase_of(p) for p in (0, 19, 20, 59, 60, 200)] == [
        "opening", "opening", "middlegame", "middlegame", "endgame", "endgame"]


def test_parse_temperatures() -> None:
    assert parse_temperatures("0.001, 0.5,1,0.5") == [0.001, 0.5, 1.0]
    assert parse_temperatures("0", allow_zero=True) == [0.0]
    for bad in ("", "a", "-1", "nan", "1,,2", "0"):
        with pytest.raises(ValueError):
            parse_temperatures(bad)


# --- positions --------------------------------------------------------------------------------


def test_sampling_spreads_over_phases_and_games_and_counts_bad_games(games_pgn: Path) -> None:
    positions, skipped = sample_positions([games_pgn], 9, seed=3)
    assert len(positions) == 9
    assert sorted(p.phase for p in positions).count("endgame") == 3
    assert {p.phase for p in positions} == {"opening", "middlegame", "endgame"}
    assert len({p.source for p in positions}) == 9  # one position a game while games last
    assert skipped == {"set-up or variant games": 1, "games with illegal moves or bad text": 1,
                       "games without moves": 1}
    for p in positions:
        board = p.board()
        assert len(board.move_stack) == p.ply and board.root() == chess.Board()
        assert p.expert in board.legal_moves and board.legal_moves.count() >= 2
    again, _ = sample_positions([games_pgn], 9, seed=3)
    assert again == positions
    other, _ = sample_positions([games_pgn], 9, seed=4)
    assert other != positions


def test_sampling_reuses_games_and_fills_missing_phases(tmp_path: Path) -> None:
    rng = random.Random(1)
    short = write_pgn(tmp_path / "short.pgn", [random_game(rng, 30) for _ in range(2)])
    positions, _ = sample_positions([short], 12, seed=0)
    # No game reaches the endgame: its share goes to the other phases, from the same games.
    assert len(positions) == 12
    assert {p.phase for p in positions} == {"opening", "middlegame"}
    assert len({(p.source, p.ply) for p in positions}) == 12
    one = write_pgn(tmp_path / "one.pgn", [chess.pgn.read_game(io.StringIO(TWO_MOVE_GAME))])
    few, _ = sample_positions([one], 50, seed=0)
    assert sorted(p.ply for p in few) == [0, 1, 2, 3, 4]  # every position the game has


# --- Stockfish --------------------------------------------------------------------------------


@pytest.mark.parametrize("nodes", [1, NODES])
def test_multipv_scores_every_legal_move_deterministically(stockfish: str, nodes: int) -> None:
    board = chess.Board("r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3")
    client = MultiPVClient([stockfish], nodes)
    try:
        first = client.scores(board)
        client.scores(chess.Board())  # something else in between must not change the result
        second = client.scores(board)
    finally:
        client.close()
    assert set(first) == {m.uci() for m in board.legal_moves}
    assert first == second
    assert all(kind in ("cp", "mate") for kind, _ in first.values())


def test_scores_are_for_the_side_to_move(stockfish: str) -> None:
    # Black to move can take a free queen: for black, the side to move, that is close to a win.
    board = chess.Board("4k3/8/8/8/3q4/8/8/Q3K3 b - - 0 1")
    client = MultiPVClient([stockfish], NODES)
    try:
        scores = client.scores(board)
    finally:
        client.close()
    wins = {m: win_probability(*s) for m, s in scores.items()}
    assert wins["d4a1"] > 0.85 and wins["d4d1"] < 0.15  # Qxa1 wins the queen, Qd1+ loses it


# --- the whole analysis -----------------------------------------------------------------------


def test_two_legal_moves_by_hand(tmp_path: Path, stockfish: str) -> None:
    pgn = tmp_path / "two.pgn"
    pgn.write_text(TWO_MOVE_GAME + "\n")
    weights = {KD2: 0.25, G3: 0.75}

    def model(board: chess.Board, temperature: float, mode: str) -> dict[chess.Move, float]:
        if set(board.legal_moves) == set(weights):
            # Temperature 0.5 prefers Kd2 instead, so rows of different temperatures differ.
            return weights if temperature == 1.0 else {KD2: 0.9, G3: 0.1}
        return uniform(board, temperature, mode)

    result = run_advantage(AdvantageOptions(
        tmp_path / "unused.onnx", tmp_path / "out", [pgn], 8, [0.5, 1.0], nodes=NODES,
        cache=tmp_path / "cache", stockfish=stockfish, plots=False, workers=1), model)
    i = next(k for k, p in enumerate(result.positions) if p.ply == 4)
    assert result.positions[i].expert == G3
    # The scores, fresh from Stockfish, through the formula written out by hand.
    client = MultiPVClient([stockfish], NODES)
    try:
        scores = client.scores(result.positions[i].board())
    finally:
        client.close()
    assert set(scores) == {"e1d2", "g2g3"}

    def by_hand(kind: str, value: int) -> float:
        if kind == "mate":
            return 1.0 if value > 0 else 0.0
        return 1 / (1 + math.exp(-0.00368208 * value))

    w_kd2, w_g3 = by_hand(*scores["e1d2"]), by_hand(*scores["g2g3"])
    for mode in ("token", "move"):
        assert result.model[(mode, 1.0)][i] == pytest.approx(0.25 * w_kd2 + 0.75 * w_g3, abs=1e-12)
        assert result.model[(mode, 0.5)][i] == pytest.approx(0.9 * w_kd2 + 0.1 * w_g3, abs=1e-12)
    assert result.expert[i] == pytest.approx(w_g3, abs=1e-12)
    assert result.best[i] == pytest.approx(max(w_kd2, w_g3), abs=1e-12)
    assert result.random[i] == pytest.approx((w_kd2 + w_g3) / 2, abs=1e-12)
    # The table is the mean over positions, with the bootstrap interval around it.
    row = result.row("token", 1.0)
    assert row.positions == 5  # every position the game has, and the summary says so
    assert "8 were asked for" in result.summary.read_text()
    assert row.model_win_prob == pytest.approx(result.model[("token", 1.0)].mean())
    assert row.gain == pytest.approx(row.model_win_prob - row.expert_win_prob)
    assert row.gain_low <= row.gain <= row.gain_high
    assert row.best_win_prob >= max(row.expert_win_prob, row.random_win_prob, row.model_win_prob)
    with open(result.csv) as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == CSV_COLUMNS
    line = next(r for r in rows if r["mode"] == "move" and r["phase"] == "all"
                and float(r["temperature"]) == 0.5)
    assert float(line["model_win_prob"]) == pytest.approx(
        result.model[("move", 0.5)].mean(), rel=1e-5)


def test_cache_makes_a_rerun_stockfish_free(tmp_path: Path, games_pgn: Path,
                                            stockfish: str) -> None:
    positions, _ = sample_positions([games_pgn], 4, seed=0)
    boards = [p.board() for p in positions]
    first, hits, engine = analyse_positions(boards, NODES, tmp_path, stockfish, workers=2)
    assert hits == 0 and engine.startswith("Stockfish")
    with sqlite3.connect(tmp_path / "stockfish.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM scores WHERE nodes=?", (NODES,)).fetchone()[0] == 4
    again, hits, _ = analyse_positions(boards, NODES, tmp_path, stockfish)
    assert hits == 4 and again == first
    # Another node limit is another analysis.
    _, hits, _ = analyse_positions(boards[:1], NODES + 1, tmp_path, stockfish)
    assert hits == 0


@pytest.mark.parametrize("change, message", [
    ({"modes": ["token", "beam"]}, "unknown mode 'beam'"),
    ({"temps": []}, "temperatures must be finite"),
    ({"temps": [0.1, -1.0]}, "temperatures must be finite"),
    ({"nodes": 0}, "node limit must be at least 1"),
])
def test_options_refuse_bad_settings_when_made(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdvantageOptions(Path("m.onnx"), Path("out"), **change)  # type: ignore[arg-type]


def test_distribution_must_sum_to_one(tmp_path: Path, games_pgn: Path, stockfish: str) -> None:
    def half(board: chess.Board, temperature: float, mode: str) -> dict[chess.Move, float]:
        return {m: p / 2 for m, p in uniform(board, temperature, mode).items()}

    with pytest.raises(ValueError, match="sums to 0.5"):
        run_advantage(AdvantageOptions(
            tmp_path / "m.onnx", tmp_path / "out", [games_pgn], 2, [1.0], nodes=NODES,
            cache=tmp_path / "cache", stockfish=stockfish, plots=False), half)


def test_policy_distribution_is_the_engines(tiny_onnx: Path, games_pgn: Path) -> None:
    from transcend.engine.policy import Policy

    positions, _ = sample_positions([games_pgn], 3, seed=1)
    fast = PolicyDistribution(tiny_onnx, device="cpu")
    reference = Policy(tiny_onnx, device="cpu")
    for position in positions:
        board = position.board()
        # The model sees the game's transcript, exactly as in play (the first call included).
        assert fast.policy.prompt_text(board) == prompt(sans_of_moves(position.history))
        for mode in ("token", "move"):
            for t in (0.0, 0.3, 1.0):
                got = fast(board, t, mode)
                want = reference.move_distribution(board, t, mode)
                assert got.keys() == want.keys()
                assert all(got[m] == pytest.approx(want[m], abs=1e-6) for m in want)


def test_command_with_tiny_model(tmp_path: Path, tiny_onnx: Path, games_pgn: Path,
                                 stockfish: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    # PGN files may also follow as plain arguments.
    main(["advantage", "--model", str(tiny_onnx), str(games_pgn), "--positions", "6",
          "--temps", "0.001,1", "--nodes", str(NODES), "--out", str(out), "--cache",
          str(tmp_path / "cache"), "--stockfish", stockfish, "--bootstrap", "200", "--quiet"])
    printed = capsys.readouterr()
    assert "| token | 0.001 |" in printed.out
    with open(out / "advantage.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {"temperature", "model_win_prob", "expert_win_prob", "random_win_prob",
            "best_win_prob", "positions"} <= set(rows[0])
    phases = [r for r in rows if r["group"] in ("all", "phase")]
    assert len(phases) == 2 * 2 * 4  # modes x temperatures x (all + three phases)
    # Ply bins always; familiarity bins only with --train-data.
    assert {r["group"] for r in rows} == {"all", "phase", "ply"}
    assert sum(int(r["positions"]) for r in rows if r["group"] == "ply") == 2 * 2 * 6
    for row in rows:
        assert 0.0 <= float(row["random_win_prob"]) <= float(row["best_win_prob"]) <= 1.0
        assert 0.0 <= float(row["model_win_prob"]) <= float(row["best_win_prob"]) + 1e-9
    summary = (out / "summary.md").read_text()
    assert "95% CI" in summary and "On 6 positions" in summary
    for png in ("advantage.png", "gains.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "positions.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 6


@pytest.mark.parametrize("args, message", [
    (["--pgn", "missing.pgn"], "does not exist"),
    (["--temps", "0.1,hot"], "must be numbers"),
    ([], "at least one PGN"),
])
def test_bad_input_is_one_line(tmp_path: Path, tiny_onnx: Path, games_pgn: Path, args: list[str],
                               message: str, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["advantage", "--model", str(tiny_onnx), "--out", str(tmp_path / "o")]
    if args and args[0] == "--temps":
        base += ["--pgn", str(games_pgn)]
    with pytest.raises(SystemExit) as exc:
        main(base + args)
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_only_bad_games_is_one_line(tmp_path: Path, tiny_onnx: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    pgn = tmp_path / "bad.pgn"
    pgn.write_text('[Event "illegal"]\n\n1. e4 e5 2. Ke3 *\n\n[SetUp "1"]\n'
                   '[FEN "8/8/8/4k3/8/8/4P3/4K3 w - - 0 1"]\n\n1. Kd2 *\n')
    with pytest.raises(SystemExit) as exc:
        main(["advantage", "--model", str(tiny_onnx), "--pgn", str(pgn), "--out",
              str(tmp_path / "o"), "--cache", str(tmp_path / "c")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no usable positions") and "1 set-up" in err
    assert len(err.splitlines()) == 1


def test_share_of_top_positions() -> None:
    gains = np.array([0.6, 0.2, 0.1, 0.1, 0.0, -0.3, 0.0, 0.0, 0.0, 0.0])
    assert _share_of_top(gains) == pytest.approx(0.6)  # the top 10% is one position of ten
    assert _share_of_top(gains, 0.2) == pytest.approx(0.8)
    assert math.isnan(_share_of_top(np.array([-0.1, 0.0])))


@pytest.mark.parametrize("pick, verdict", [(max, "**Yes: the model beats its experts"),
                                           (min, "**No: the model chooses worse")])
def test_verdict_for_a_perfect_and_a_hopeless_player(tmp_path: Path, games_pgn: Path,
                                                     stockfish: str, pick: Callable[..., str],
                                                     verdict: str) -> None:
    client = MultiPVClient([stockfish], NODES)
    chosen: dict[str, chess.Move] = {}

    def player(board: chess.Board, temperature: float, mode: str) -> dict[chess.Move, float]:
        # Always Stockfish's best (or worst) move by the same scores the analysis uses.
        fen = board.fen()
        if fen not in chosen:
            scores = client.scores(board)
            move = pick(scores, key=lambda m: win_probability(*scores[m]))
            chosen[fen] = chess.Move.from_uci(move)
        return {chosen[fen]: 1.0}

    try:
        result = run_advantage(AdvantageOptions(
            tmp_path / "m.onnx", tmp_path / "out", [games_pgn], 9, [1.0], modes=["move"],
            nodes=NODES, cache=tmp_path / "cache", stockfish=stockfish, plots=False), player)
    finally:
        client.close()
    row = result.row("move", 1.0)
    expected = row.best_win_prob if pick is max else float(np.mean(
        [min(win_probability(*s) for s in scores.values()) for scores in
         analyse_positions([p.board() for p in result.positions], NODES, tmp_path / "cache",
                           stockfish)[0]]))
    assert row.model_win_prob == pytest.approx(expected)
    if pick is max:
        assert row.best_match == pytest.approx(1.0)
    summary = result.summary.read_text()
    assert summary.startswith("# Advantage of m.onnx") and verdict in summary


def test_pgn_scan_finds_games_by_their_tags(tmp_path: Path) -> None:
    pgn = tmp_path / "lichess.pgn"
    pgn.write_text(
        '[Event "a"]\n[Site "x"]\n\n1. e4 { [%clk 0:03:00] } e5\n[%clk 0:02:59] 2. Nf3 Nc6 1-0\n\n'
        '[Event "b"]\n[Variant "Chess960"]\n\n1. e4 *\n\n'
        '[Event "c"]\n\n1. d4 d5 2. c4 *\n'
    )
    positions, skipped = sample_positions([pgn], 10, seed=0)
    assert skipped == {"set-up or variant games": 1}
    by_game: dict[str, list[int]] = {}
    for p in positions:
        by_game.setdefault(p.source, []).append(p.ply)
    # The clock comment on its own line stays inside game 1, which keeps all four moves.
    assert {k: sorted(v) for k, v in by_game.items()} == {"lichess.pgn#1": [0, 1, 2, 3],
                                                          "lichess.pgn#3": [0, 1, 2]}
    bare = tmp_path / "bare.pgn"
    bare.write_text("1. e4 e5 2. Qh5 *\n")
    assert len(sample_positions([bare], 5)[0]) == 3


def crashing_engine(tmp_path: Path, stockfish: str, crashes: int) -> str:
    """An executable that dies at its first ``go`` the first ``crashes`` times it is started,
    and is Stockfish after that."""
    script = tmp_path / "flaky-engine"
    script.write_text(f"""#!{sys.executable}
import os, sys
count = {str(tmp_path / "starts")!r}
n = int(open(count).read()) if os.path.exists(count) else 0
if n >= {crashes}:
    os.execv({stockfish!r}, [{stockfish!r}])
for line in sys.stdin:
    if line.startswith("go"):
        open(count, "w").write(str(n + 1))
        sys.exit(1)
    if line.startswith("uci"):
        print("id name Flaky", flush=True)
        print("uciok", flush=True)
    elif line.startswith("isready"):
        print("readyok", flush=True)
    elif line.startswith("quit"):
        break
""")
    script.chmod(0o755)
    return str(script)


def test_a_crashed_engine_is_restarted_once(tmp_path: Path, stockfish: str) -> None:
    boards = [chess.Board()]
    flaky = crashing_engine(tmp_path, stockfish, crashes=1)
    scores, _, _ = analyse_positions(boards, NODES, tmp_path / "c1", flaky, workers=1)
    assert set(scores[0]) == {m.uci() for m in chess.Board().legal_moves}
    (tmp_path / "starts").unlink()
    broken = crashing_engine(tmp_path, stockfish, crashes=5)
    with pytest.raises(OSError, match="failed twice"):
        analyse_positions(boards, NODES, tmp_path / "c2", broken, workers=1)


def test_a_bad_model_fails_before_any_search(tmp_path: Path, games_pgn: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(SystemExit) as exc:
        main(["advantage", "--model", str(bad), "--pgn", str(games_pgn), "--out",
              str(tmp_path / "o"), "--cache", str(tmp_path / "c"), "--quiet"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "c").exists()  # no Stockfish search was started
