"""Familiarity against a hand-made training set: exact counts, majority moves, bins, stratified
sampling, --positions-from, summary.json, the crossing-point fit and bad input."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import chess
import chess.pgn
import numpy as np
import pytest
from cli_helpers import cli

from transcend.engine.transcript import VOCAB, encode, game_transcript
from transcend.evaluation.advantage import (
    AdvantageOptions,
    Position,
    crossing_point,
    run_advantage,
)
from transcend.evaluation.advantage.familiarity import (
    TrainingIndex,
    familiarity_bin,
    familiarity_of,
    ply_bin,
    sample_by_familiarity,
)

NODES = 200


def write_data(folder: Path, games: list[str], vocab: str = VOCAB) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    encode("".join(games)).tofile(folder / "train.bin")
    (folder / "manifest.json").write_text(json.dumps({"vocab": vocab}))
    return folder


CORPUS = [
    ";1.e4 e5 2.Nf3 Nc6",
    ";1.e4 e5 2.Nf3 Nf6",
    ";1.e4 e5 2.Bc4",
    ";1.e4 c5",
    ";1.e4",  # ends after its first move: still begins with 1.e4
    ";1.d4 d5",
    ";1.Nf3 e5 2.e4",  # the position of 1.e4 e5 2.Nf3 by another move order
]


def position(sans: list[str]) -> Position:
    board = chess.Board()
    for san in sans[:-1]:
        board.push_san(san)
    expert = board.parse_san(sans[-1])
    return Position(tuple(board.move_stack), expert, "test#1")


def test_counts_are_exact_prefixes_of_moves(tmp_path: Path) -> None:
    index = TrainingIndex.load(write_data(tmp_path / "d", CORPUS))
    assert len(index) == 7
    assert index.count([]) == 7
    assert index.count(["e4"]) == 5
    assert index.count(["e4", "e5"]) == 3
    assert index.count(["e4", "e5", "Nf3"]) == 2  # the transposition is another prefix
    assert index.count(["Nf3", "e5", "e4"]) == 1
    assert index.count(["e4", "e5", "Nf3", "Nc6"]) == 1
    assert index.count(["e4", "e5", "Nf3", "Nc6", "Bb5"]) == 0
    assert index.count(["e4", "c5"]) == 1 and index.count(["d4"]) == 1
    assert index.count(["c4"]) == 0


def test_majority_move_from_ten_games_on(tmp_path: Path) -> None:
    games = [";1.d4 d5 2.c4"] * 6 + [";1.d4 Nf6"] * 4 + [";1.d4"] + [";1.e4 e5"] * 9
    index = TrainingIndex.from_transcripts(games)
    after_d4 = familiarity_of(index, position(["d4", "d5"]))
    assert after_d4.count == 11 and after_d4.bin == "10-99"
    assert after_d4.majority == (chess.Move.from_uci("d7d5"),) and after_d4.majority_count == 6
    start = familiarity_of(index, position(["e4"]))
    assert start.count == 20 and start.majority == (chess.Move.from_uci("d2d4"),)
    # Nine games are too few for a majority.
    assert familiarity_of(index, position(["e4", "e5"])).majority == ()
    tied = TrainingIndex.from_transcripts([";1.d4 d5"] * 5 + [";1.d4 Nf6"] * 5)
    fam = familiarity_of(tied, position(["d4", "e5"]))
    assert {m.uci() for m in fam.majority} == {"d7d5", "g8f6"} and fam.majority_count == 5


def test_bins() -> None:
    assert [familiarity_bin(f) for f in (0, 1, 9, 10, 99, 100, 999, 1000, 10 ** 6)] == [
        "0", "1-9", "1-9", "10-99", "10-99", "100-999", "100-999", "1000+", "1000+"]
    # A position after p half-moves is judged by its move number p + 1.
    assert [ply_bin(p) for p in (0, 3, 4, 9, 10, 19, 20, 39, 40, 200)] == [
        "1-4", "1-4", "5-10", "5-10", "11-20", "11-20", "21-40", "21-40", "41+", "41+"]


def random_games(seed: int, count: int, plies: int) -> list[list[chess.Move]]:
    rng = random.Random(seed)
    games = []
    for _ in range(count):
        board = chess.Board()
        while board.ply() < plies and not board.is_game_over():
            board.push(rng.choice(list(board.legal_moves)))
        games.append(list(board.move_stack))
    return games


def sans(moves: list[chess.Move]) -> list[str]:
    board = chess.Board()
    out = []
    for m in moves:
        out.append(board.san(m))
        board.push(m)
    return out


@pytest.fixture()
def study(tmp_path: Path) -> tuple[Path, Path, list[list[chess.Move]]]:
    """Training data whose games share openings with the held-out PGN's games."""
    heldout = random_games(1, 8, 24)
    # Training games: held-out openings cut at various lengths, each repeated, so every
    # familiarity bin up to 10-99 has candidates.
    train = []
    for k, game in enumerate(heldout):
        cut = 2 + 2 * (k % 4)
        train += [game_transcript(sans(game[:cut]))] * (3 + 7 * (k % 3))
    data = write_data(tmp_path / "data", train)
    pgn = tmp_path / "heldout.pgn"
    pgn.write_text("\n\n".join(str(chess.pgn.Game.from_board(_board(g))) for g in heldout)
                   + "\n")
    return data, pgn, heldout


def _board(moves: list[chess.Move]) -> chess.Board:
    board = chess.Board()
    for m in moves:
        board.push(m)
    return board


def test_stratified_sampling_quotas_and_seed(study: tuple[Path, Path, list]) -> None:
    data, pgn, heldout = study
    index = TrainingIndex.load(data)
    # Candidates counted by brute force: every (game, ply) with 2+ legal moves, by bin.
    texts = [t.decode() for t in index.games]
    want: dict[str, int] = {}
    for game in heldout:
        board = chess.Board()
        for ply in range(len(game)):
            if board.legal_moves.count() >= 2:
                prefix = " ".join(game_transcript(sans(game[:ply]))[1:].split())
                n = len(texts) if ply == 0 else sum(
                    t == prefix or t.startswith(prefix + " ") for t in texts)
                want[familiarity_bin(n)] = want.get(familiarity_bin(n), 0) + 1
            board.push(game[ply])
    positions, skipped, strata = sample_by_familiarity([pgn], index, 5, seed=3)
    assert not skipped
    assert strata.candidates == {b: want.get(b, 0) for b in strata.candidates}
    assert strata.drawn == {b: min(5, n) for b, n in strata.candidates.items()}
    assert len(positions) == sum(strata.drawn.values())
    got: dict[str, int] = {}
    for p in positions:
        fam = familiarity_of(index, p)
        got[fam.bin] = got.get(fam.bin, 0) + 1
        assert p.expert in p.board().legal_moves
    assert got == {b: n for b, n in strata.drawn.items() if n}
    again, _, _ = sample_by_familiarity([pgn], index, 5, seed=3)
    other, _, _ = sample_by_familiarity([pgn], index, 5, seed=4)
    assert again == positions and other != positions


def uniform(board: chess.Board, temperature: float, mode: str) -> dict[chess.Move, float]:
    moves = list(board.legal_moves)
    return {m: 1 / len(moves) for m in moves}


def test_per_bin_run_then_positions_from(tmp_path: Path, study: tuple[Path, Path, list],
                                         stockfish: str) -> None:
    data, pgn, _ = study
    first = run_advantage(AdvantageOptions(
        tmp_path / "m.onnx", tmp_path / "a", [pgn], 0, [0.1, 1.0], modes=["move"], nodes=NODES,
        seed=1, bootstrap=200, cache=tmp_path / "c", stockfish=stockfish, plots=False,
        train_data=data, per_bin=3), uniform)
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["sampling"]["method"] == "per-bin"
    assert summary["sampling"]["drawn"] == {b: min(3, n) for b, n in
                                            summary["sampling"]["candidates"].items()}
    overall = summary["results"]["move"]["0.1"]["overall"]
    assert overall["n"] == len(first.positions)
    assert overall["gain"] == pytest.approx(overall["model"] - overall["expert"])
    bins = summary["results"]["move"]["1"]["familiarity"]
    assert sum(b["n"] for b in bins.values()) == len(first.positions)
    assert set(summary["results"]["move"]["1"]["ply"]) == {"1-4", "5-10", "11-20", "21-40",
                                                           "41+"}
    # A uniform mover's share of the majority move is 1 / legal moves of each such position.
    fam = bins["10-99"]
    assert fam["majority_n"] == fam["n"] > 0 and 0 < fam["majority_share"] < 0.1
    assert summary["crossing"]["move"]["temperature"] == 0.1
    text = first.summary.read_text()
    assert "## By familiarity" in text and "| 10-99 | 0.1 |" in text and "stratified" in text
    assert "| familiarity | candidates | drawn |" in text
    with open(first.positions_csv) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["familiarity"]) for r in rows] == [f.count for f in first.familiarity]
    row = next(r for r in rows if r["majority_move"])
    probs = dict(item.split(":") for item in row["probs_move_T1"].split())
    assert set(probs) == set(dict(i.split(":") for i in row["win_probs"].split()))
    assert sum(float(p) for p in probs.values()) == pytest.approx(1.0, abs=1e-4)

    # The same positions against other training data: no Stockfish search, new familiarity.
    other = write_data(tmp_path / "other", [";1.a3"] * 3)
    again = run_advantage(AdvantageOptions(
        tmp_path / "m.onnx", tmp_path / "b", [], 0, [1.0], modes=["move"], nodes=NODES,
        cache=tmp_path / "c", stockfish=stockfish, plots=False, train_data=other,
        positions_from=first.positions_csv), uniform)
    assert again.positions == first.positions
    assert again.cache_hits == len(first.positions)
    assert [f.count for f in again.familiarity] == [
        3 if p.ply == 0 else 0 for p in first.positions]
    assert np.allclose(again.expert, first.expert)


def test_crossing_point_of_a_known_line() -> None:
    rng = np.random.default_rng(0)
    familiarity = np.repeat([0, 5, 50, 500, 5000], 40).astype(float)
    x = np.log10(1 + familiarity)
    gains = -0.1 + 0.05 * x + rng.normal(0, 0.001, len(x))
    cross = crossing_point(familiarity, gains, 500, seed=0)
    assert cross["status"] == "crosses"
    assert cross["familiarity"] == pytest.approx(99, rel=0.05)  # log10(1 + f) = 2
    assert cross["low"] < 99 < cross["high"]
    assert crossing_point(familiarity, -gains)["status"] == "no crossing"
    assert crossing_point(familiarity, 0.5 + gains)["status"] == "above zero everywhere"
    assert crossing_point(np.zeros(5), np.ones(5))["status"] == "insufficient"


@pytest.mark.parametrize("case, message", [
    ("missing", "no such folder"),
    ("no-train", "no train.bin"),
    ("vocab", "is not the engine's"),
    ("per-bin-alone", "--per-bin needs --train-data"),
    ("positions-from-bad", "not a positions.csv"),
])
def test_bad_input_is_one_line(tmp_path: Path, tiny_onnx: Path, case: str, message: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    pgn = tmp_path / "g.pgn"
    pgn.write_text("1. e4 e5 *\n")
    args = ["advantage", "--model", str(tiny_onnx), "--out", str(tmp_path / "o"), "--cache",
            str(tmp_path / "c"), "--quiet"]
    if case == "missing":
        args += ["--pgn", str(pgn), "--train-data", str(tmp_path / "nowhere")]
    elif case == "no-train":
        (tmp_path / "empty").mkdir()
        args += ["--pgn", str(pgn), "--train-data", str(tmp_path / "empty")]
    elif case == "vocab":
        data = write_data(tmp_path / "d", [";1.e4"], vocab=VOCAB[::-1])
        args += ["--pgn", str(pgn), "--train-data", str(data)]
    elif case == "per-bin-alone":
        args += ["--pgn", str(pgn), "--per-bin", "5"]
    else:
        bad = tmp_path / "p.csv"
        bad.write_text("fen,ply\nx,1\n")
        args += ["--positions-from", str(bad)]
    code, err = cli(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and message in lines[-1] and "Traceback" not in err
    # A usage mistake also gets click's usage line; everything else is the error alone.
    assert len(lines) == 1 or (case == "per-bin-alone" and lines[0].startswith("Usage:"))
    assert not (tmp_path / "c").exists()  # failed before any search
