"""Per-move latency of the engine against the paper's sampling method: same model, same run.

Ours: `Policy.choose` in `token` mode as a game uses it: the cache holds the position of the
engine's previous move, the opponent's reply is new, and every legal move is scored in one call.
The paper's: 10 characters generated one by one, each by a full forward pass over the whole
prompt without a cache (one attempt, as if the first sample were legal).

Positions come from games between noisy Stockfish players (random games without Stockfish),
timed at moves 10, 40 and 80 (white to move) and the next few moves of each game.

    python benchmarks/bench_engine.py                 # the bundled model, else a fresh `small`
    python benchmarks/bench_engine.py --model m.onnx --threads 1   # then on the GPU if any
    python benchmarks/bench_engine.py --quick         # seconds: the `tiny` model, two games
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import chess
import numpy as np

from transcend.engine.policy import PAPER_MAX_CHARS, Policy, default_model_path
from transcend.engine.transcript import encode

MOVE_NUMBERS = (10, 40, 80)
SAMPLES_PER_GAME = 3  # consecutive own moves timed from each move number


def fresh_model(config: str, out: Path) -> Path:
    """A freshly initialised model exported to ONNX (latency does not depend on training)."""
    import torch

    from transcend.training.export import export_onnx, metadata_for
    from transcend.training.model import CONFIGS, GPT

    torch.manual_seed(0)
    model = GPT(CONFIGS[config])
    export_onnx(model, out, metadata_for(model, {"data": {"source": "untrained, benchmark"}}))
    return out


def make_games(count: int, plies: int, seed: int) -> list[list[chess.Move]]:
    """Games of at least ``plies`` plies between noisy Stockfish players (or random movers)."""
    rng = random.Random(seed)
    try:
        from transcend.evaluation.players import Player, parse_spec

        players = [Player(parse_spec("sf:skill=0,nodes=40,eps=0.1"), seed=seed + i)
                   for i in range(2)]
    except (OSError, ValueError):
        players = []
    games: list[list[chess.Move]] = []
    try:
        for _ in range(count * 20):
            board = chess.Board()
            for player in players:
                player.new_game()
            while len(board.move_stack) < plies and not board.is_game_over():
                if players:
                    move = players[len(board.move_stack) % 2].choose(board)
                else:
                    move = rng.choice(list(board.legal_moves))
                board.push(move)
            if len(board.move_stack) >= plies:
                games.append(list(board.move_stack))
                if len(games) == count:
                    break
    finally:
        for player in players:
            player.close()
    return games


def paper_method(policy: Policy, text: str, rng: np.random.Generator) -> str:
    """The paper's sampling: each character from a full pass over prompt + characters so far."""
    info = policy.info
    empty = np.zeros((info.n_layer, 2, 1, info.n_head, 0, info.head_dim), np.float32)
    ids = list(encode(text))
    written = []
    for _ in range(PAPER_MAX_CHARS):
        n = len(ids)
        logits, _ = policy.session.run(None, {  # type: ignore[attr-defined]
            "input_ids": np.array([ids], np.int64), "position_ids": np.arange(n)[None],
            "attention_mask": np.tril(np.ones((n, n), bool))[None], "past": empty,
        })
        p = np.exp(logits[0, -1] - logits[0, -1].max())
        c = int(rng.choice(len(p), p=p / p.sum()))
        ids.append(c)
        written.append(c)
    return "".join(map(str, written))


def board_at(moves: list[chess.Move], ply: int) -> chess.Board:
    board = chess.Board()
    for move in moves[:ply]:
        board.push(move)
    return board


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="ONNX model (default: bundled, else fresh)")
    parser.add_argument("--config", default="small", help="config of a fresh model")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or tensorrt")
    parser.add_argument("--threads", type=int, default=0, help="0: onnxruntime's default")
    parser.add_argument("--games", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.01)
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    args = parser.parse_args()
    if args.quick:
        args.games, args.config = 2, "tiny"
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model
        if path is None:
            bundled = default_model_path()
            path = bundled if bundled.exists() and not args.quick else None
        if path is None:
            print(f"no model given: exporting a freshly initialised `{args.config}` model")
            path = fresh_model(args.config, Path(tmp) / f"{args.config}.onnx")
        last = 2 * (max(MOVE_NUMBERS) - 1) + 2 * SAMPLES_PER_GAME
        started = time.perf_counter()
        games = make_games(args.games, last, seed=1)
        print(f"{len(games)} games of >= {last} plies in {time.perf_counter() - started:.1f} s")
        run(Policy(path, device=args.device, threads=args.threads), games, args)
        if args.device == "cpu":  # the same on the GPU, when there is one
            gpu = Policy(path, device="cuda", threads=args.threads)
            if gpu.info.provider == "CPUExecutionProvider":
                print(f"\nno GPU figure: {gpu.info.device_note}")
            else:
                run(gpu, games, args)


def run(policy: Policy, games: list[list[chess.Move]], args: argparse.Namespace) -> None:
    info = policy.info
    print(f"\nmodel {info.path.name}: {info.n_params or 0:,} parameters, {info.n_layer} layers, "
          f"window {info.block_size}; {info.provider}, threads {args.threads or 'default'}, "
          f"{os.cpu_count()} CPUs")
    rng = np.random.default_rng(0)
    policy.choose(chess.Board(), args.temperature, "token", rng)  # warm-up
    rows = []
    all_ours: list[float] = []
    all_paper: list[float] = []
    for number in MOVE_NUMBERS:
        ply = 2 * (number - 1)
        ours: list[float] = []
        paper: list[float] = []
        prompt_len = []
        for moves in games:
            policy.reset()
            # The engine's previous move: its position is in the cache, as during a game.
            policy.choose(board_at(moves, ply - 2), args.temperature, "token", rng)
            for k in range(SAMPLES_PER_GAME):
                board = board_at(moves, ply + 2 * k)
                start = time.perf_counter()
                policy.choose(board, args.temperature, "token", rng)
                ours.append(time.perf_counter() - start)
            board = board_at(moves, ply)
            text = policy.prompt_text(board)
            prompt_len.append(len(text))
            start = time.perf_counter()
            paper_method(policy, text, rng)
            paper.append(time.perf_counter() - start)
        all_ours += ours
        all_paper += paper
        rows.append((number, int(np.mean(prompt_len)), ours, paper))
    print()
    print("| move | prompt chars | ours median ms | ours p95 ms | paper median ms "
          "| paper p95 ms | speed-up (median) |")
    print("|---|---|---|---|---|---|---|")
    for number, chars, ours, paper in rows:
        print(f"| {number} | {chars} | {ms(ours, 50)} | {ms(ours, 95)} | {ms(paper, 50)} "
              f"| {ms(paper, 95)} | {np.median(paper) / np.median(ours):.0f}x |")
    ratio = np.median(all_paper) / np.median(all_ours)
    print(f"| all | | {ms(all_ours, 50)} | {ms(all_ours, 95)} | {ms(all_paper, 50)} "
          f"| {ms(all_paper, 95)} | {ratio:.0f}x |")
    print(f"\nspeed-up over the paper's method (median latency, all moves): {ratio:.1f}x "
          f"(goal >= 20x); our median {ms(all_ours, 50)} ms (goal < 20 ms on 2 CPU cores)")


def ms(values: list[float], q: float) -> str:
    return f"{1000 * float(np.percentile(values, q)):.1f}"


if __name__ == "__main__":
    main()
