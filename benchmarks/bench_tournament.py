"""Throughput of the tournament runner against a plain blocking game loop.

    python benchmarks/bench_tournament.py [--quick] [--games N]

The baseline plays the same games with ``evaluation.players.Player`` (blocking pipes, no clocks,
no hang detection: the data-generation path). The runner adds python-chess's event loop, clocks,
PGN writing and draw claims; the ratio is what that safety costs, and what concurrency gains.
Players: Stockfish skill 0 at 10 nodes a move against a random mover, 40-move limit.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import chess

from transcend.evaluation.endings import game_result
from transcend.evaluation.players import Player, parse_spec
from transcend.evaluation.tournament import Settings, run_tournament

ENGINE = "sf:skill=0,nodes=10"
OPPONENT = "random"
MAX_MOVES = 40


def baseline(games: int) -> tuple[float, int]:
    """Seconds and plies for ``games`` games with the blocking players."""
    plies = 0
    began = time.perf_counter()
    with Player(parse_spec(ENGINE), seed=1) as engine, Player(parse_spec(OPPONENT), seed=2) as rnd:
        for k in range(games):
            white, black = (engine, rnd) if k % 2 == 0 else (rnd, engine)
            board = chess.Board()
            white.new_game()
            black.new_game()
            while game_result(board) is None and board.ply() < 2 * MAX_MOVES:
                board.push((white if board.turn == chess.WHITE else black).choose(board))
            plies += board.ply()
    return time.perf_counter() - began, plies


def runner(games: int, concurrency: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        result = run_tournament([ENGINE], [OPPONENT], games, pgn=Path(tmp) / "g.pgn",
                                concurrency=concurrency, settings=Settings(max_moves=MAX_MOVES))
        return time.perf_counter() - began, sum(g.plies for g in result.games)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="a few games: a smoke run")
    args = parser.parse_args()
    games = 4 if args.quick else args.games
    rows = [("blocking loop (baseline)", *baseline(games))]
    rows.append(("tournament runner, concurrency 1", *runner(games, 1)))
    rows.append(("tournament runner, concurrency 2", *runner(games, 2)))
    base_rate = rows[0][2] / rows[0][1]
    print(f"{games} games, {ENGINE} vs {OPPONENT}, {MAX_MOVES}-move limit")
    print(f"{'':34}  {'seconds':>8}  {'plies':>6}  {'plies/s':>8}  {'vs baseline':>11}")
    for name, seconds, plies in rows:
        rate = plies / seconds
        print(f"{name:34}  {seconds:8.2f}  {plies:6d}  {rate:8.0f}  {rate / base_rate:10.2f}x")


if __name__ == "__main__":
    main()
