"""Speed of the advantage analysis (``transcend advantage``), stage by stage.

Each stage is timed against a plain baseline in the same run:

- Stockfish scoring of every legal move (MultiPV, fixed nodes), one process: python-chess's
  ``chess.engine`` ``analyse`` (baseline) against the plain-pipe ``MultiPVClient``;
- the model's distributions for 8 temperatures x 2 modes: ``Policy.move_distribution`` once per
  temperature and mode (baseline) against ``PolicyDistribution`` (one model call a position);
- the whole analysis with a cold Stockfish cache (baseline) against a rerun from the cache.

Usage: python benchmarks/bench_advantage.py [--quick] [--model M.onnx] [--pgn GAMES.pgn]
Without --model it uses the bundled model or, failing that, an untrained `small` model (`tiny`
with --quick; the speed of a forward pass does not depend on the weights). Without --pgn it
plays a few dozen games between the default experts first.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import chess
import chess.engine

from transcend.evaluation.advantage import (
    DEFAULT_NODES,
    PAPER_TEMPERATURES,
    AdvantageOptions,
    MultiPVClient,
    PolicyDistribution,
    position_key,
    run_advantage,
    sample_positions,
)
from transcend.evaluation.players import find_stockfish


def make_games(folder: Path, games: int) -> Path:
    from transcend.training.data.experts import DEFAULT_EXPERTS, generate

    out = folder / "experts.pgn"
    for _ in generate(out, DEFAULT_EXPERTS, games, concurrency=2, seed=0, progress=False):
        pass
    return out


def make_model(folder: Path, config: str) -> Path:
    from transcend.engine.model_file import default_model_path

    if default_model_path().is_file():
        return default_model_path()
    import torch

    from transcend.training.export import export_onnx, metadata_for
    from transcend.training.model import CONFIGS, GPT

    torch.manual_seed(0)
    model = GPT(CONFIGS[config])
    out = folder / f"{config}.onnx"
    export_onnx(model, out, metadata_for(model, {}))
    return out


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def bench_stockfish(boards: list[chess.Board], nodes: int) -> tuple[float, float]:
    """Positions per second, one process: chess.engine, then MultiPVClient."""
    command = find_stockfish()
    engine = chess.engine.SimpleEngine.popen_uci(command)
    engine.configure({"Threads": 1, "Hash": 16})
    start = time.perf_counter()
    for board in boards:
        clean = chess.Board(f"{position_key(board)} 1")
        engine.analyse(clean, chess.engine.Limit(nodes=nodes),
                       multipv=clean.legal_moves.count(), game=object())
    baseline = rate(len(boards), time.perf_counter() - start)
    engine.quit()
    client = MultiPVClient([command], nodes)
    start = time.perf_counter()
    for board in boards:
        client.scores(board)
    ours = rate(len(boards), time.perf_counter() - start)
    client.close()
    return baseline, ours


def bench_model(model: Path, boards: list[chess.Board]) -> tuple[float, float]:
    """Positions per second for all temperatures and both modes."""
    fast = PolicyDistribution(model, device="cpu")
    slow = fast.policy.move_distribution
    timings = []
    for dist in (slow, fast):
        start = time.perf_counter()
        for board in boards:
            for mode in ("token", "move"):
                for t in PAPER_TEMPERATURES:
                    dist(board, t, mode)
        timings.append(rate(len(boards), time.perf_counter() - start))
    return timings[0], timings[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--pgn", type=Path, default=None)
    parser.add_argument("--positions", type=int, default=None)
    parser.add_argument("--nodes", type=int, default=None)
    args = parser.parse_args()
    positions = args.positions or (6 if args.quick else 100)
    nodes = args.nodes or (2000 if args.quick else DEFAULT_NODES)
    stage = min(positions, 3 if args.quick else 12)  # positions for the per-stage baselines

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        pgn = args.pgn or make_games(folder, 4 if args.quick else 40)
        model = args.model or make_model(folder, "tiny" if args.quick else "small")
        setup = time.perf_counter() - start
        sample, _ = sample_positions([pgn], stage, seed=1)
        boards = [p.board() for p in sample]
        sf_base, sf_ours = bench_stockfish(boards, nodes)
        model_base, model_ours = bench_model(model, boards)
        runs = []
        for _ in range(2):  # cold cache, then warm
            start = time.perf_counter()
            result = run_advantage(AdvantageOptions(
                model, folder / "out", [pgn], positions, list(PAPER_TEMPERATURES), nodes=nodes,
                seed=0, cache=folder / "cache"))
            runs.append((time.perf_counter() - start, result))

    cold, warm = runs[0][0], runs[1][0]
    n = len(runs[0][1].positions)
    print(f"advantage benchmark: {n} positions, Stockfish {nodes} nodes over all legal moves, "
          f"{len(PAPER_TEMPERATURES)} temperatures x 2 modes, model {model.name}, "
          f"{os.cpu_count()} cores (setup {setup:.0f} s)")
    print(f"{'stage':<44}{'baseline':>12}{'ours':>12}{'ratio':>8}")
    rows = [
        ("Stockfish MultiPV, 1 process (pos/s)", sf_base, sf_ours),
        ("model, 16 distributions a position (pos/s)", model_base, model_ours),
        ("whole analysis, cold -> cached (pos/s)", rate(n, cold), rate(n, warm)),
    ]
    for name, base, ours in rows:
        print(f"{name:<44}{base:>12.2f}{ours:>12.2f}{ours / base:>7.1f}x")
    stages = runs[0][1].seconds
    per_position = sum(stages.values()) / n
    fixed = cold - sum(stages.values())  # start-up, bootstrap, files and plots
    print("cold run stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items())
          + f", the rest {fixed:.1f} s; 1,000 positions would take about "
          f"{(1000 * per_position + fixed) / 60:.1f} min")


if __name__ == "__main__":
    sys.exit(main())
