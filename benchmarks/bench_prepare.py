"""Speed of `transcend data prepare` against python-chess on the same Lichess-style PGN.

    python benchmarks/bench_prepare.py            # about a minute
    python benchmarks/bench_prepare.py --quick    # a few seconds, a smoke run

The PGN imitates a Lichess database dump: Lichess's 17 headers, a `{ [%clk 0:02:59] }` comment
after every move, `[%eval ...]` in a tenth of the games, `1...` black move numbers, about 70
plies a game. The baseline is `chess.pgn.read_game` alone (and with the transcript built from
the parsed game, the way one would without this tool), timed in the same run on the same file.
The goal is at least 30x the baseline's games/s on one core, and more with `--workers`.

"cpu games/s" divides by the CPU time used (workers included), which stays meaningful when
other jobs share the machine; the wall-clock columns show what a user waits. With `--workers`
the parent only reads, cuts chunks at game boundaries and writes, so on idle cores the wall
time should drop close to (one worker's time) / N.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import resource
import tempfile
import time
from pathlib import Path

import chess
import chess.pgn

from transcend.engine.transcript import board_transcript
from transcend.training.data.prepare import Filters, prepare

HEADERS = """[Event "Rated Blitz game"]
[Site "https://lichess.org/{site}"]
[Date "2023.03.14"]
[Round "-"]
[White "{white}"]
[Black "{black}"]
[Result "{result}"]
[UTCDate "2023.03.14"]
[UTCTime "12:{minute:02d}:07"]
[WhiteElo "{white_elo}"]
[BlackElo "{black_elo}"]
[WhiteRatingDiff "+6"]
[BlackRatingDiff "-6"]
[ECO "C00"]
[Opening "French Defense: Normal Variation"]
[TimeControl "180+0"]
[Termination "Normal"]

"""


def movetext(rng: random.Random) -> tuple[str, str]:
    """(Lichess-style movetext of a random game, its result)."""
    board = chess.Board()
    plies = max(6, min(250, int(rng.gauss(70, 30))))
    with_eval = rng.random() < 0.1
    clocks = [180, 180]
    parts = []
    while board.ply() < plies and not board.is_game_over():
        move = rng.choice(list(board.legal_moves))
        ply = board.ply()
        number = f"{ply // 2 + 1}." if ply % 2 == 0 else f"{ply // 2 + 1}..."
        san = board.san(move)
        board.push(move)
        clocks[ply % 2] = max(0, clocks[ply % 2] - rng.randint(0, 6))
        left = clocks[ply % 2]
        evaluation = f"[%eval {rng.uniform(-4, 4):.2f}] " if with_eval else ""
        parts.append(f"{number} {san} {{ {evaluation}[%clk 0:{left // 60:02d}:{left % 60:02d}] }}")
    result = board.result() if board.is_game_over() else rng.choice(["1-0", "0-1", "1/2-1/2"])
    return " ".join(parts) + f" {result}", result


def make_pgn(path: Path, distinct: int, copies: int, seed: int = 0) -> int:
    """Write ``distinct`` random games ``copies`` times over (new headers each time)."""
    rng = random.Random(seed)
    pool = [movetext(rng) for _ in range(distinct)]
    games = 0
    with open(path, "w", encoding="utf-8") as fh:
        for copy in range(copies):
            for i, (moves, result) in enumerate(pool):
                fh.write(HEADERS.format(
                    site=f"{copy:03d}{i:05d}", white=f"player{rng.randrange(10**6)}",
                    black=f"player{rng.randrange(10**6)}", result=result, minute=i % 60,
                    white_elo=rng.randint(600, 2400), black_elo=rng.randint(600, 2400),
                ))
                fh.write(moves + "\n\n\n")
                games += 1
    return games


def time_read_game(path: Path, games: int, transcript: bool) -> tuple[float, float]:
    """(wall, cpu) seconds for python-chess to read the first ``games`` games."""
    text = path.read_text(encoding="utf-8")
    handle = io.StringIO(text)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(games):
        game = chess.pgn.read_game(handle)
        assert game is not None
        if transcript:
            board_transcript(game.end().board())
    return time.perf_counter() - wall, time.process_time() - cpu


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_prepare(path: Path, workers: int, validate: bool = False) -> tuple[float, float, int]:
    """(wall, cpu of this process and its workers, games read) for a full `prepare` run."""
    with tempfile.TemporaryDirectory() as out:
        wall, cpu = time.perf_counter(), time.process_time() + children_cpu()
        manifest = prepare([str(path)], Path(out), Filters(validate=validate), workers=workers)
        cpu = time.process_time() + children_cpu() - cpu
        return time.perf_counter() - wall, cpu, manifest["games"]["seen"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--workers", type=int, default=2, help="workers for the scaling row")
    args = parser.parse_args()
    distinct, copies, baseline_games = (60, 5, 60) if args.quick else (600, 25, 400)
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "lichess-style.pgn"
        small = Path(tmp) / "small.pgn"
        games = make_pgn(big, distinct, copies)
        make_pgn(small, baseline_games, 1, seed=1)
        size = big.stat().st_size
        print(f"Lichess-style PGN: {games:,} games, {size / games:,.0f} bytes a game; "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        rows: list[tuple[str, int, float, float]] = []
        wall, cpu = time_read_game(small, baseline_games, transcript=False)
        rows.append(("chess.pgn.read_game", baseline_games, wall, cpu))
        wall, cpu = time_read_game(small, baseline_games, transcript=True)
        rows.append(("read_game + transcript", baseline_games, wall, cpu))
        wall, cpu, seen = time_prepare(small, 1, validate=True)
        rows.append(("prepare --validate", seen, wall, cpu))
        wall, cpu, seen = time_prepare(big, 1)
        rows.append(("prepare (1 worker)", seen, wall, cpu))
        if args.workers > 1:
            wall, cpu, seen = time_prepare(big, args.workers)
            rows.append((f"prepare --workers {args.workers}", seen, wall, cpu))
    base = rows[0][1] / rows[0][2]
    print(f"{'method':<26}{'games':>9}{'seconds':>10}{'games/s':>11}{'x read_game':>13}"
          f"{'cpu games/s':>13}")
    for name, count, wall, cpu in rows:
        rate = count / wall
        cpu_rate = f"{count / cpu:>13,.0f}" if cpu > 0 else f"{'-':>13}"
        print(f"{name:<26}{count:>9,}{wall:>10.2f}{rate:>11,.0f}{rate / base:>12.1f}x{cpu_rate}")
    one = next(r for r in rows if r[0] == "prepare (1 worker)")
    ratio = (one[1] / one[2]) / base
    cpu_ratio = (one[1] / one[3]) / (rows[0][1] / rows[0][3])
    print(f"one core: {ratio:.1f}x chess.pgn.read_game by wall clock, {cpu_ratio:.1f}x by CPU "
          f"time (goal >= 30x): {'met' if min(ratio, cpu_ratio) >= 30 else 'NOT met'}")
    if args.workers > 1:
        many = rows[-1]
        speedup = (many[1] / many[2]) / (one[1] / one[2])
        print(f"--workers {args.workers}: {speedup:.2f}x one worker")


if __name__ == "__main__":
    main()
