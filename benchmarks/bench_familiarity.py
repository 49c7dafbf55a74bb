"""Speed of the familiarity index (``transcend advantage --train-data``) and of ``data diversity``.

Builds the index of a train.bin of about --games games, answers 10,000 familiarity queries and
measures the diversity of the same games. With --data DIR the games are that folder's train.bin,
repeated until there are --games of them (repeats make the sort's comparisons longer, so this
errs on the slow side); without it, random games of 60 plies.

Usage: python benchmarks/bench_familiarity.py [--games 100000] [--data DIR]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import chess
import numpy as np

from transcend.engine.transcript import encode, game_transcript, movetext
from transcend.evaluation.advantage.familiarity import TrainingIndex
from transcend.training.data.diversity import diversity, games_of_tokens


def random_tokens(games: int, seed: int = 0) -> np.ndarray:
    rng = random.Random(seed)
    texts = []
    for _ in range(min(games, 2000)):
        board = chess.Board()
        sans = []
        while len(sans) < 60 and not board.is_game_over():
            move = rng.choice(list(board.legal_moves))
            sans.append(board.san(move))
            board.push(move)
        texts.append(game_transcript(sans))
    return encode("".join(texts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=100_000)
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()
    base = (np.fromfile(args.data / "train.bin", dtype=np.uint8) if args.data
            else random_tokens(args.games))
    per_copy = int((base == encode(";")[0]).sum())
    tokens = np.tile(base, max(1, -(-args.games // per_copy)))
    with tempfile.TemporaryDirectory() as tmp:
        tokens.tofile(Path(tmp) / "train.bin")
        start = time.perf_counter()
        index = TrainingIndex.load(Path(tmp))
        built = time.perf_counter() - start
    queries = [g.decode().split(" ")[: 1 + i % 12] for i, g in
               enumerate(index.games[:: max(1, len(index) // 10_000)][:10_000])]
    sans = [[t.split(".", 1)[-1] for t in q] for q in queries]
    start = time.perf_counter()
    for q in sans:
        index.count(q)
    asked = time.perf_counter() - start
    # Baseline: the plain way, a scan of every game for each query (100 of them).
    games = index.games
    start = time.perf_counter()
    for q in sans[:100]:
        text = movetext(q).encode("ascii")
        sum(1 for g in games if g == text or g.startswith(text + b" "))
    scanned = (time.perf_counter() - start) / 100
    per_query = asked / len(sans)
    print(f"index of {len(index):,} games ({tokens.size / 1e6:.1f} M tokens): {built:.2f} s; "
          f"10,000 familiarity queries: {asked:.2f} s ({per_query * 1e6:.1f} us each); "
          f"a scan of every game: {scanned * 1e3:.1f} ms a query; "
          f"index {scanned / per_query:,.0f}x faster a query, index built in the time of "
          f"{built / scanned:.0f} scans")
    start = time.perf_counter()
    result = diversity(games_of_tokens(base))
    print(f"diversity of {result['games']:,} games: {time.perf_counter() - start:.1f} s "
          f"({result['value']})")


if __name__ == "__main__":
    main()
