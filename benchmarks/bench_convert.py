"""What the conversion rules cost a move: the engine's move with the rules on (the default)
against the same engine with them off, same model, same positions, same run.

Positions: every ply from move 5 of games between noisy Stockfish players (random games without
Stockfish), played through both engines in game order, so that each extends its own cache as in
a game. The rules compute only when the side to move is ahead by ``ConvertMargin`` pawns or
more, so those positions are reported apart; there the rules' own work (`convert.plan`) is
timed alone too. Goal: the engine's latency with the rules on within 10% of it without them.

    python benchmarks/bench_convert.py              # the bundled model, 8 games
    python benchmarks/bench_convert.py --games 2    # seconds
"""

from __future__ import annotations

import argparse
import io
import os
import time

import chess
import numpy as np
from bench_engine import make_games

from transcend.engine.convert import DEFAULT_MARGIN, ConvertOptions, material_cp, plan
from transcend.engine.model_file import default_model_path
from transcend.engine.options import Settings
from transcend.engine.uci import Engine, Output

FIRST_PLY = 8
PLIES = 160


def engine(convert: bool, threads: int, temperature: float) -> Engine:
    made = Engine(Settings(model=str(default_model_path()), temperature=temperature,
                           threads=threads, seed=1), Output(io.StringIO()))
    made.settings.convert = ConvertOptions(enabled=convert)
    assert made.wait_for_model() is not None, made.load_error
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--games", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=0.01)
    args = parser.parse_args()
    games = make_games(args.games, PLIES, seed=3)
    engines = {"on": engine(True, args.threads, args.temperature),
               "off": engine(False, args.threads, args.temperature)}
    times: dict[str, dict[str, list[float]]] = {
        kind: {"on": [], "off": [], "plan": []} for kind in ("all", "ahead")}
    for moves in games:
        board = chess.Board()
        for made in engines.values():
            made.cmd_ucinewgame([])
            policy = made.wait_for_model()
            assert policy is not None
            policy.reset()
        for ply, move in enumerate(moves):
            if ply >= FIRST_PLY:
                ahead = material_cp(board, board.turn) >= 100 * DEFAULT_MARGIN
                kinds = ("all", "ahead") if ahead else ("all",)
                for name, made in engines.items():  # back to back: both see the same load
                    policy = made.wait_for_model()
                    assert policy is not None
                    start = time.perf_counter()
                    made.choose(policy, board, None)
                    spent = time.perf_counter() - start
                    for kind in kinds:
                        times[kind][name].append(spent)
                if ahead:
                    start = time.perf_counter()
                    plan(board, list(board.legal_moves), args.temperature, ConvertOptions())
                    times["ahead"]["plan"].append(time.perf_counter() - start)
            board.push(move)
    print(f"{len(games)} games, positions from ply {FIRST_PLY}; bundled model, "
          f"threads {args.threads}, T = {args.temperature:g}; {os.cpu_count()} CPUs\n")
    print("| positions | count | rules on median / p95 ms | rules off median / p95 ms "
          "| on / off (median of paired) | the rules alone median / p95 ms |")
    print("|---|---|---|---|---|---|")
    for kind, t in times.items():
        if not t["on"]:
            continue
        paired = float(np.median(np.array(t["on"]) / np.array(t["off"])))
        alone = f"{ms(t['plan'], 50)} / {ms(t['plan'], 95)}" if t["plan"] else "-"
        label = "all" if kind == "all" else f"ahead {DEFAULT_MARGIN}+ pawns"
        print(f"| {label} | {len(t['on'])} | {ms(t['on'], 50)} / {ms(t['on'], 95)} | "
              f"{ms(t['off'], 50)} / {ms(t['off'], 95)} | {paired:.3f} | {alone} |")
    overall = float(np.median(times["all"]["on"]) / np.median(times["all"]["off"]))
    print(f"\nmedian latency with the rules on / off, all positions: {overall:.3f} "
          "(goal <= 1.10)")


def ms(values: list[float], q: float) -> str:
    return f"{1000 * float(np.percentile(values, q)):.2f}" if values else "-"


if __name__ == "__main__":
    main()
