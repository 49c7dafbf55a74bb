"""Speed of the board targets: games replayed into per-square classes, against python-chess.

    python benchmarks/bench_board.py            # about half a minute
    python benchmarks/bench_board.py --quick    # a few seconds

The targets of a game (training/data/board.py) come from replaying its transcript: parse the SAN of
every move, play it, and write the 64 squares after each ply. The baseline is the least any
replay can do with python-chess: ``Board.push_san`` on every move, nothing recorded. The ratio
says what recording the boards costs on top (goal: at least 0.7 of the bare replay). The
games/s figure says what a training run spends: a run of 8M characters meets about 14,000
games.
"""

from __future__ import annotations

import argparse
import random
import time

import chess

from transcend.engine.transcript import GAME_START, encode, game_transcript
from transcend.training.data.board import BoardTargets


def random_games(n: int, plies: int, seed: int = 0) -> list[str]:
    """Random legal games of up to ``plies`` plies, as transcripts."""
    rng = random.Random(seed)
    games = []
    for _ in range(n):
        board, sans = chess.Board(), []
        while not board.is_game_over() and len(sans) < plies:
            move = rng.choice(list(board.legal_moves))
            sans.append(board.san(move))
            board.push(move)
        games.append(game_transcript(sans))
    return games


def bare_replay(games: list[str]) -> float:
    start = time.perf_counter()
    for game in games:
        board = chess.Board()
        for word in game.lstrip(GAME_START).split(" "):
            board.push_san(word.split(".", 1)[-1])
    return len(games) / (time.perf_counter() - start)


def targets(games: list[str]) -> float:
    stream = BoardTargets(encode("".join(games)), "all")
    start = time.perf_counter()
    for index in range(len(games)):
        stream.game(index)
    rate = len(games) / (time.perf_counter() - start)
    assert stream.failed == 0
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=2000)
    parser.add_argument("--plies", type=int, default=107, help="the experts' mean game length")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    games = random_games(200 if args.quick else args.games, args.plies)
    bare = bare_replay(games)
    ours = targets(games)
    print(f"{len(games)} random games of up to {args.plies} plies, one core")
    print(f"| replay | games/s |\n|---|---|\n| python-chess push_san alone | {bare:,.0f} |\n"
          f"| board targets (BoardTargets.game) | {ours:,.0f} |")
    print(f"ratio board targets / bare replay: {ours / bare:.2f} (goal >= 0.7)")


if __name__ == "__main__":
    main()
