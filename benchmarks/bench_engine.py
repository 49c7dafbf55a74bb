"""Per-move latency of the engine against the paper's sampling method: same model, same run.

Ours: `Policy.choose` in `token` mode as the engine uses it (MultiPV 1): after each `bestmove`
the engine runs its own move into the cache while the opponent thinks (`Policy.extend_cache`,
timed apart as "after bestmove"), so only the opponent's reply is new. Two ways in the same
run: "auto", the engine's default, samples the move character by character when that is
cheaper (see `engine/token_steps.py`); "tree" scores every legal move in one call, as MultiPV
and `move` mode do. The paper's: 10 characters generated one by one, each by a full forward
pass over the whole prompt without a cache (one attempt, as if the first sample were legal).

Positions come from games between noisy Stockfish players (random games without Stockfish),
timed at moves 10, 40 and 80 (white to move) and the next few moves of each game.

    python benchmarks/bench_engine.py                 # the bundled model, else a fresh `small`
    python benchmarks/bench_engine.py --model m.onnx --threads 1   # then on the GPU if any
    python benchmarks/bench_engine.py --quick         # seconds: the `tiny` model, two games
    python benchmarks/bench_engine.py --config paper-50m --threads 2   # a fresh paper-50m

A model that reads the board (``--board-input``) is timed against the same model without it:
fresh models of the same config, the same positions, interleaved (goal: within 10%), and the
features' own cost per position.
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

from transcend.engine.features import FEATURE_SETS, position_features
from transcend.engine.model_file import cache_feed, default_model_path
from transcend.engine.policy import PAPER_MAX_CHARS, Policy
from transcend.engine.transcript import encode

MOVE_NUMBERS = (10, 40, 80)
WAYS = ("auto", "tree")  # Policy.token_path: "auto" samples step by step when cheaper
SAMPLES_PER_GAME = 3  # consecutive own moves timed from each move number


def fresh_model(config: str, out: Path, board_input: str = "") -> Path:
    """A freshly initialised model exported to ONNX (latency does not depend on training)."""
    from dataclasses import replace

    import torch

    from transcend.training.export import export_onnx, metadata_for
    from transcend.training.model import CONFIGS, GPT

    torch.manual_seed(0)
    model = GPT(replace(CONFIGS[config], board_input=board_input))
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
    empty = cache_feed(np.zeros((info.n_layer, 2, 1, info.n_head, 0, info.head_dim), np.float32))
    ids = list(encode(text))
    written = []
    for _ in range(PAPER_MAX_CHARS):
        n = len(ids)
        logits, _ = policy.session.run(None, {  # type: ignore[attr-defined]
            "input_ids": np.array([ids], np.int64), "position_ids": np.arange(n)[None],
            "attention_mask": np.tril(np.ones((n, n), bool))[None], **empty,
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
    parser.add_argument("--no-paper", action="store_true",
                        help="skip the paper's method (minutes for a large model at move 80)")
    parser.add_argument("--no-board", action="store_true",
                        help="skip the board-input models against the plain one")
    args = parser.parse_args()
    if args.quick:
        args.games, args.config = 2, "tiny"
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model
        if path is None and args.config == "small":
            bundled = default_model_path()
            path = bundled if bundled.exists() and not args.quick else None
        if path is None:
            print(f"no model given: exporting a freshly initialised `{args.config}` model")
            path = fresh_model(args.config, Path(tmp) / f"{args.config}.onnx")
        last = 2 * (max(MOVE_NUMBERS) - 1) + 2 * SAMPLES_PER_GAME
        started = time.perf_counter()
        games = make_games(args.games, last, seed=1)
        print(f"{len(games)} games of >= {last} plies in {time.perf_counter() - started:.1f} s")
        run(path, args.device, games, args)
        if not args.no_board:
            board_inputs(args.config, Path(tmp), games, args)
        if args.device == "cpu":  # the same on the GPU, when there is one
            gpu = Policy(path, device="cuda", threads=args.threads)
            if gpu.info.provider == "CPUExecutionProvider":
                print(f"\nno GPU figure: {gpu.info.device_note}")
            else:
                run(path, "cuda", games, args)


def run(path: Path, device: str, games: list[list[chess.Move]],
        args: argparse.Namespace) -> None:
    policies = {name: Policy(path, device=device, threads=args.threads) for name in WAYS}
    for name, policy in policies.items():
        policy.token_path = name
    policy = policies["tree"]
    info = policy.info
    print(f"\nmodel {info.path.name}: {info.n_params or 0:,} parameters, {info.n_layer} layers, "
          f"window {info.block_size}; {info.provider}, threads {args.threads or 'default'}, "
          f"{os.cpu_count()} CPUs")
    rng = np.random.default_rng(0)
    for p in policies.values():
        p.choose(chess.Board(), args.temperature, "token", rng)  # warm-up
    rows = []
    times: dict[str, list[float]] = {name: [] for name in (*WAYS, "paper")}
    after: list[float] = []  # extend_cache with the engine's own move, after bestmove
    for number in MOVE_NUMBERS:
        ply = 2 * (number - 1)
        these: dict[str, list[float]] = {name: [] for name in times}
        prompt_len = []
        for moves in games:
            for p in policies.values():
                p.reset()
                # The engine's previous move: its position is in the cache, as during a game.
                p.choose(board_at(moves, ply - 2), args.temperature, "token", rng,
                         distribution=False)
                p.extend_cache(board_at(moves, ply - 1))  # the game's move as its own
            for k in range(SAMPLES_PER_GAME):
                board = board_at(moves, ply + 2 * k)
                played = board_at(moves, ply + 2 * k + 1)
                for name, p in policies.items():  # interleaved: both see the same load
                    start = time.perf_counter()
                    p.choose(board, args.temperature, "token", rng, distribution=False)
                    these[name].append(time.perf_counter() - start)
                    start = time.perf_counter()
                    p.extend_cache(played)
                    after.append(time.perf_counter() - start)
            board = board_at(moves, ply)
            text = policy.prompt_text(board)
            prompt_len.append(len(text))
            if not args.no_paper:
                start = time.perf_counter()
                paper_method(policy, text, rng)
                these["paper"].append(time.perf_counter() - start)
        for name in times:
            times[name] += these[name]
        rows.append((str(number), int(np.mean(prompt_len)), these))
    rows.append(("all", "", times))
    print()
    print("| move | prompt chars | auto median / p95 ms | tree median / p95 ms "
          "| paper median / p95 ms | tree / auto (paired) | paper / auto |")
    print("|---|---|---|---|---|---|---|")
    for number, chars, t in rows:
        cells = " | ".join(f"{ms(t[n], 50)} / {ms(t[n], 95)}" for n in (*WAYS, "paper"))
        # The median of per-position ratios: both ways timed back to back on each position,
        # so a busy machine slows both alike.
        paired = np.median(np.array(t["tree"]) / np.array(t["auto"]))
        print(f"| {number} | {chars} | {cells} | {ratio(t['tree'], t['auto'])} ({paired:.1f}x) "
              f"| {ratio(t['paper'], t['auto'])} |")
    print(f"\nmedian latency, all moves: {ms(times['auto'], 50)} ms auto (step by step where "
          f"cheaper), "
          f"{ms(times['tree'], 50)} ms scoring every move, {ms(times['paper'], 50)} ms the "
          f"paper's method ({ratio(times['paper'], times['auto'])} faster; goal >= 20x); "
          f"after bestmove, off the clock: {ms(after, 50)} / {ms(after, 95)} ms")


def board_inputs(config: str, tmp: Path, games: list[list[chess.Move]],
                 args: argparse.Namespace) -> None:
    """Fresh models of ``config`` with and without each board input, played as the engine
    plays (`token` mode, its own move run into the cache after `bestmove`), interleaved."""
    names = ("plain", *FEATURE_SETS)
    policies = {name: Policy(fresh_model(config, tmp / f"{name.replace('+', '-')}.onnx",
                                         "" if name == "plain" else name),
                             device=args.device, threads=args.threads) for name in names}
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {name: [] for name in names}
    for moves in games:
        for policy in policies.values():
            policy.reset()
        for ply in range(0, len(moves) - 1, 2):
            board, played = board_at(moves, ply), board_at(moves, ply + 1)
            for name, policy in policies.items():
                start = time.perf_counter()
                policy.choose(board, args.temperature, "token", rng, distribution=False)
                times[name].append(time.perf_counter() - start)
                policy.extend_cache(played)
    boards = [board_at(moves, ply) for moves in games[:2] for ply in range(0, len(moves), 3)]
    print(f"\nboard input, fresh `{config}` models, {len(times['plain'])} moves each (every "
          f"move of the games, white's side):")
    print("| model | median / p95 ms | / plain (paired median) | features per position |")
    print("|---|---|---|---|")
    for name in names:
        paired = np.median(np.array(times[name]) / np.array(times["plain"]))
        cost = "-"
        if name != "plain":
            start = time.perf_counter()
            for board in boards:
                position_features(board, name)
            cost = f"{1e6 * (time.perf_counter() - start) / len(boards):.0f} us"
        print(f"| {name} | {ms(times[name], 50)} / {ms(times[name], 95)} | {paired:.3f} "
              f"| {cost} |")


def ratio(slow: list[float], fast: list[float]) -> str:
    return f"{np.median(slow) / np.median(fast):.1f}x" if slow and fast else "-"


def ms(values: list[float], q: float) -> str:
    return f"{1000 * float(np.percentile(values, q)):.1f}" if values else "-"


if __name__ == "__main__":
    main()
