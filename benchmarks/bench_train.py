"""Training throughput: `transcend train` against a bare loop of the same model, in one run.

The bare loop is the least a trainer can do: the same model and optimizer on batches that are
already in memory, with no data sampling, logging, evaluation or checkpoints. The ratio says
what the real trainer's machinery costs (goal: at least 0.9). The trainer with the board loss
(`--board-loss 1 --board-at all`: the targets replayed from the games as batches are drawn, and
the head's product and cross-entropy) is measured against the plain trainer (goal: at least
0.9). So is the trainer of a model that reads the board (`--board-input board` and
`board+attacks`: each window's positions replayed from its games' starts, and their embeddings
summed): goal at least 0.9 of the plain trainer. The data are random legal games written as
transcripts, so that every game replays.

    python benchmarks/bench_train.py [--config small] [--steps 12] [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import chess
import torch

from transcend.engine.features import FEATURE_SETS
from transcend.engine.transcript import encode, game_transcript
from transcend.training.model import CONFIGS, GPT, next_char_loss
from transcend.training.train import TrainConfig, pick_device, pick_dtype, train


def make_data(path: Path, games: int) -> None:
    """Random legal games of up to 120 plies as a token stream."""
    rng = random.Random(0)
    texts = []
    for _ in range(games):
        board, sans = chess.Board(), []
        while not board.is_game_over() and len(sans) < 120:
            move = rng.choice(list(board.legal_moves))
            sans.append(board.san(move))
            board.push(move)
        texts.append(game_transcript(sans))
    path.mkdir(parents=True, exist_ok=True)
    encode("".join(texts)).tofile(path / "train.bin")
    (path / "manifest.json").write_text(json.dumps({"games": games}))


def bare_loop(config: str, batch: int, steps: int, block: int, dtype: torch.dtype,
              device: torch.device) -> float:
    torch.manual_seed(0)
    model = GPT(CONFIGS[config]).to(device)
    opt = model.configure_optimizer(3e-4, 0.1, (0.9, 0.95), device.type)
    x = torch.randint(0, 32, (batch, block), device=device)
    y = torch.randint(0, 32, (batch, block), device=device)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    for i in range(steps + 1):
        if i == 1:  # the first step warms up allocators and kernels
            start = time.perf_counter()
        with autocast:
            logits = model(x)
            loss = next_char_loss(logits, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch * block / (time.perf_counter() - start)


def trainer(config: str, batch: int, steps: int, data: Path, out: Path,
            board_loss: float = 0.0, board_input: str = "") -> float:
    """Steady-state tokens/s of the real loop, as it logs them: the window from the end of
    step 1 to the end of step ``steps + 1`` (sampling, logging and the loop's checks included;
    the one-off start-up and the final checkpoint are not per-step costs)."""
    cfg = TrainConfig(data=str(data), out=str(out), config=config, batch_size=batch,
                      max_steps=steps + 1, log_interval=steps + 1, eval_interval=10**9,
                      legal_interval=0, checkpoint_interval=10**9, progress=False,
                      warmup_steps=1, board_loss=board_loss, board_at="all",
                      board_input=board_input)
    train(cfg)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return next(r["tokens_per_s"] for r in records if r.get("step") == steps + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small", choices=sorted(CONFIGS))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--quick", action="store_true", help="tiny config, 3 steps")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="the GPU's dense bf16 peak, for MFU (H100 SXM: 989)")
    args = parser.parse_args()
    if args.quick:
        args.config, args.steps, args.batch_size = "tiny", 3, 4
    device = pick_device("auto")
    dtype = pick_dtype("auto", device)
    block = CONFIGS[args.config].block_size
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        make_data(data, 1500 if args.quick else 4000)
        bare = bare_loop(args.config, args.batch_size, args.steps, block, dtype, device)
        real = trainer(args.config, args.batch_size, args.steps, data, Path(tmp) / "run")
        board = trainer(args.config, args.batch_size, args.steps, data, Path(tmp) / "board",
                        board_loss=1.0)
        inputs = {kind: trainer(args.config, args.batch_size, args.steps, data,
                                Path(tmp) / f"input-{kind.replace('+', '-')}", board_input=kind)
                  for kind in FEATURE_SETS}
    print(f"config {args.config}, batch {args.batch_size} x {block}, {args.steps} steps, "
          f"{torch.get_num_threads()} threads, {dtype} on {device}")
    print(f"| loop | tokens/s |\n|---|---|\n| bare loop | {bare:,.0f} |\n"
          f"| transcend train | {real:,.0f} |\n"
          f"| transcend train --board-loss 1 --board-at all | {board:,.0f} |")
    for kind, speed in inputs.items():
        print(f"| transcend train --board-input {kind} | {speed:,.0f} |")
    print(f"ratio transcend train / bare loop: {real / bare:.2f} (goal >= 0.9)")
    print(f"ratio with the board loss / without: {board / real:.2f} (goal >= 0.9)")
    for kind, speed in inputs.items():
        print(f"ratio with --board-input {kind} / without: {speed / real:.2f} (goal >= 0.9)")
    if device.type == "cuda":
        flops = GPT(CONFIGS[args.config]).flops_per_token()
        print(f"GPU {torch.cuda.get_device_name()}: model FLOPs utilisation "
              f"{real * flops / (args.peak_tflops * 1e12):.1%} of {args.peak_tflops:g} TFLOP/s")


if __name__ == "__main__":
    main()
