"""``transcend train``: the training loop, from one CPU to many GPUs under ``torchrun``.

One flat loop in the spirit of nanoGPT: sample windows from the token stream, AdamW with warmup
and cosine decay, gradient accumulation, periodic evaluation, atomic checkpoints and exact resume.
Under ``torchrun`` every rank draws its own windows (its rank is part of the sampling seed).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import platform
import signal
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
import torch.distributed as dist

from transcend.engine.features import FEATURE_SETS
from transcend.engine.files import write_atomic
from transcend.engine.transcript import GAME_START, STOI, decode, encode
from transcend.training.data.board import BOARD_AT, IGNORE, BoardTargets
from transcend.training.model import (
    CONFIGS,
    GPT,
    BoardSupervised,
    ModelConfig,
    board_loss,
    configure_optimizer,
    default_board_layer,
    next_char_loss,
)

GAME_START_ID = STOI[GAME_START]
SPACE_ID = STOI[" "]
DIGIT_IDS = np.array([STOI[str(d)] for d in range(10)], dtype=np.uint8)


@dataclass
class TrainConfig:
    data: str = ""
    out: str = "runs/default"
    config: str = "small"
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 200
    max_steps: int = 0  # 0: derived from max_tokens, else run until max_time
    max_tokens: int = 0
    max_time: float = 0.0  # seconds; 0 = no limit
    # The cosine decay's length in tokens when it should differ from the run's: runs that stop
    # at different points on one shared schedule give checkpoints that compare token for token.
    schedule_tokens: int = 0
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    mid_game_share: float = 0.1
    eval_interval: int = 250
    eval_batches: int = 20
    legal_interval: int = 1000
    legal_positions: int = 100
    checkpoint_interval: int = 250
    # Token counts at which a copy of the checkpoint is kept as ckpt-<tokens>.pt: the
    # snapshots of one run that a study of loss or strength against compute evaluates.
    keep_at: tuple[int, ...] = ()
    log_interval: int = 10
    seed: int = 1337
    dtype: str = "auto"
    device: str = "auto"
    threads: int = 0
    compile: bool = False
    progress: bool = True
    # Board supervision: this weight times the board cross-entropy of a linear head on the
    # residual stream after block ``board_layer`` (-1: two thirds up), at the characters
    # ``board_at`` names (training/data/board.py). 0 is the paper's objective.
    board_loss: float = 0.0
    board_layer: int = -1
    board_at: str = "moves"
    # The model reads the board: each character adds the embedding of its position's features
    # (engine/features.py, one of FEATURE_SETS); "" for the paper's model.
    board_input: str = ""
    model_overrides: dict[str, int] = field(default_factory=dict)

    def command_args(self) -> list[str]:
        """The ``transcend train`` arguments that rebuild this config: how a launcher such as
        ``torchrun`` passes it on to every process. The betas and the log interval have no
        flag and keep their defaults."""
        args = ["--data", self.data, "--out", self.out, "--config", self.config,
                "--batch-size", str(self.batch_size), "--grad-accum", str(self.grad_accum),
                "--lr", repr(self.lr), "--min-lr", repr(self.min_lr),
                "--warmup-steps", str(self.warmup_steps), "--max-steps", str(self.max_steps),
                "--max-tokens", str(self.max_tokens), "--max-time", repr(self.max_time),
                "--schedule-tokens", str(self.schedule_tokens),
                "--weight-decay", repr(self.weight_decay), "--grad-clip", repr(self.grad_clip),
                "--mid-game-share", repr(self.mid_game_share),
                "--eval-interval", str(self.eval_interval),
                "--eval-batches", str(self.eval_batches),
                "--legal-interval", str(self.legal_interval),
                "--legal-positions", str(self.legal_positions),
                "--checkpoint-interval", str(self.checkpoint_interval), "--seed", str(self.seed),
                "--dtype", self.dtype, "--device", self.device, "--threads", str(self.threads)]
        if self.keep_at:
            args += ["--keep-at", ",".join(str(t) for t in self.keep_at)]
        if "block_size" in self.model_overrides:
            args += ["--block-size", str(self.model_overrides["block_size"])]
        if set(self.model_overrides) - {"block_size"}:
            raise ValueError("only block_size can be overridden from the command line")
        if self.board_loss:
            args += ["--board-loss", repr(self.board_loss), "--board-layer",
                     str(self.board_layer), "--board-at", self.board_at]
        if self.board_input:
            args += ["--board-input", self.board_input]
        if self.compile:
            args.append("--compile")
        if not self.progress:
            args.append("--quiet")
        return args

    def model_config(self) -> ModelConfig:
        if self.config not in CONFIGS:
            raise click.BadParameter(f"unknown config {self.config!r}; one of {sorted(CONFIGS)}")
        base = asdict(CONFIGS[self.config])
        base.update(self.model_overrides)
        if self.board_input:
            if self.board_input not in FEATURE_SETS:
                raise click.BadParameter(f"unknown board input {self.board_input!r}; one of "
                                         f"{', '.join(FEATURE_SETS)}")
            base["board_input"] = self.board_input
        return ModelConfig(**base)


class TrainingStopped(RuntimeError):
    """Training cannot go on (a NaN loss, for instance); the last good checkpoint is kept."""


class TokenWindows:
    """Training windows from a uint8 token stream (``train.bin``/``val.bin``).

    Most windows start at a game start (``;``), as in the paper. A share ``mid_game_share``
    start at a white move number inside a game longer than the window, which is the prompt the
    engine builds late in a long game once early moves no longer fit.
    """

    def __init__(self, path: Path, block: int, mid_game_share: float) -> None:
        self.tokens = np.memmap(path, dtype=np.uint8, mode="r")
        # A small file (a tiny validation split) gets windows as long as it allows.
        self.block = block = min(block, len(self.tokens) - 2)
        if block < 16:
            raise click.ClickException(f"{path} holds {len(self.tokens)} tokens: too few to "
                                       "train or evaluate on")
        starts = np.flatnonzero(self.tokens[: len(self.tokens) - block - 1] == GAME_START_ID)
        if len(starts) == 0:
            raise click.ClickException(f"{path} has no game start ';': not transcend data")
        self.game_starts = starts
        all_starts = np.flatnonzero(self.tokens == GAME_START_ID)
        lengths = np.diff(np.append(all_starts, len(self.tokens)))
        self.long_games = all_starts[lengths > block]
        self.long_lengths = lengths[lengths > block]
        self.mid_game_share = mid_game_share if len(self.long_games) else 0.0

    def _mid_game_start(self, rng: np.random.Generator) -> int | None:
        g = int(rng.integers(len(self.long_games)))
        start, length = int(self.long_games[g]), int(self.long_lengths[g])
        # Search forward from a random point for " <digit>": white move numbers are the only
        # places where a digit follows a space.
        pos = start + int(rng.integers(16, max(17, length - 64)))
        chunk = np.asarray(self.tokens[pos : min(pos + 64, len(self.tokens) - self.block - 1)])
        hits = np.flatnonzero((chunk[:-1] == SPACE_ID) & np.isin(chunk[1:], DIGIT_IDS))
        return pos + int(hits[0]) + 1 if len(hits) else None

    def draw(self, rng: np.random.Generator, batch_size: int) -> list[int]:
        """Where each window of a batch starts."""
        starts = []
        for _ in range(batch_size):
            start = None
            if self.mid_game_share and rng.random() < self.mid_game_share:
                start = self._mid_game_start(rng)
            if start is None:
                start = int(self.game_starts[int(rng.integers(len(self.game_starts)))])
            starts.append(start)
        return starts

    def rows(self, starts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and next-character targets (B, block) of the windows at ``starts``."""
        rows = np.stack([self.tokens[s : s + self.block + 1] for s in starts]).astype(np.int64)
        xy = torch.from_numpy(rows)
        return xy[:, :-1], xy[:, 1:]

    def batch(self, rng: np.random.Generator, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rows(self.draw(rng, batch_size))


def batch_rng(seed: int, rank: int, step: int, micro: int) -> np.random.Generator:
    """The sampler of one micro-batch: a pure function of its coordinates, so a resumed run
    draws exactly the windows it would have drawn, and every DDP rank draws different ones."""
    return np.random.default_rng([seed, rank, step, micro])


def learning_rate(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Linear warmup, then cosine decay to ``min_lr`` at ``total_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if total_steps <= cfg.warmup_steps:
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / (total_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """bf16 autocast pays off only with AMX or AVX512-BF16; without them it is far slower."""
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def greedy_legal_rate(model: GPT, val: TokenWindows, positions: int, device: torch.device,
                      seed: int) -> float:
    """Share of validation positions where the model's unconstrained greedy next move is legal."""
    import chess

    from transcend.engine.transcript import prompt

    rng = np.random.default_rng(seed)
    legal = tried = 0
    starts = val.game_starts
    model.eval()
    for _ in range(positions * 3):
        if tried >= positions:
            break
        s = int(starts[int(rng.integers(len(starts)))])
        text = decode(val.tokens[s + 1 : s + 1 + val.block]).split(GAME_START)[0]
        sans = [w for w in text.split() if w]
        sans = [w.split(".", 1)[1] if "." in w else w for w in sans]
        if len(sans) < 2:
            continue
        board = chess.Board()
        cut = int(rng.integers(0, len(sans) - 1))
        try:
            for san in sans[:cut]:
                board.push_san(san)
        except ValueError:
            continue
        context = prompt(sans[:cut])
        if len(context) + 10 > model.config.block_size:
            continue
        ids = torch.from_numpy(encode(context).astype(np.int64))[None].to(device)
        # The characters written are the next move's: all at the prompt's position.
        board_input = model.board_of_text(context, extra=10)
        out = ""
        with torch.no_grad():
            for _ in range(10):
                seen = (None if board_input is None
                        else (board_input[0], board_input[1][:, : ids.shape[1]]))
                nxt = int(model(ids, seen)[0, -1].argmax())
                ch = decode([nxt])
                if ch in (" ", GAME_START) and out:
                    break
                out += ch
                ids = torch.cat([ids, torch.tensor([[nxt]], device=device)], dim=1)
        tried += 1
        try:
            board.parse_san(out.strip())
            legal += 1
        except ValueError:
            pass
    model.train()
    return legal / tried if tried else float("nan")


def kept_checkpoint_path(run: Path, tokens: int) -> Path:
    """Where ``--keep-at`` keeps the snapshot taken when the run passed ``tokens``."""
    return run / f"ckpt-{tokens}.pt"


def parse_token_counts(text: str) -> tuple[int, ...]:
    """'1e6,3e6,10000000' -> (1000000, 3000000, 10000000), sorted, each at least 1."""
    try:
        counts = sorted({int(float(part)) for part in text.split(",") if part.strip()})
    except ValueError:
        raise click.BadParameter(f"expected token counts like 1e6,3e6; got {text!r}") from None
    if not counts or counts[0] < 1:
        raise click.BadParameter(f"expected positive token counts; got {text!r}")
    return tuple(counts)


def _checkpoint_bytes(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def train(cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Run training; returns the summary stored in the checkpoint."""
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank, world = 0, 1
    device = pick_device(cfg.device)
    if ddp:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        rank, world = dist.get_rank(), dist.get_world_size()
        if device.type == "cuda":
            device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
            torch.cuda.set_device(device)
    master = rank == 0
    if device.type == "cpu":
        threads = cfg.threads or max(1, (os.cpu_count() or 1) // world)
        torch.set_num_threads(threads)
    dtype = pick_dtype(cfg.dtype, device)
    out = Path(cfg.out)
    data = Path(cfg.data)
    ckpt_path = out / "ckpt.pt"

    state: dict[str, Any] | None = None
    if resume:
        if not ckpt_path.exists():
            raise click.ClickException(f"--resume: no checkpoint at {ckpt_path}")
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        saved = state["train_config"]
        # Data, model and schedule come from the run; limits and logging may be changed.
        keep = {"max_steps", "max_tokens", "max_time", "eval_interval", "checkpoint_interval",
                "log_interval", "progress", "threads", "device", "legal_interval", "out",
                "data", "keep_at"}
        for f in fields(TrainConfig):
            if f.name not in keep and f.name in saved:
                setattr(cfg, f.name, saved[f.name])
        if not cfg.data:
            cfg.data = saved["data"]
            data = Path(cfg.data)
    # The data's manifest travels with the checkpoint into the model file's metadata.
    manifest: dict[str, Any] = {}
    if (data / "manifest.json").exists():
        manifest = json.loads((data / "manifest.json").read_text())
        manifest.pop("vocab", None)
    model_cfg = ModelConfig(**state["model_args"]) if state else cfg.model_config()

    block = model_cfg.block_size
    train_windows = TokenWindows(data / "train.bin", block, cfg.mid_game_share)
    val_path = data / "val.bin"
    val_windows = TokenWindows(val_path, block, cfg.mid_game_share) if val_path.exists() else None

    torch.manual_seed(cfg.seed)
    model = GPT(model_cfg).to(device)
    supervised: BoardSupervised | None = None
    train_boards = val_boards = None
    board_input = model_cfg.board_input or None
    if cfg.board_loss or board_input:
        if cfg.board_at not in BOARD_AT:
            raise click.UsageError(f"--board-at {cfg.board_at!r}: one of {', '.join(BOARD_AT)}")
        if cfg.board_loss:
            if cfg.board_layer < 0:
                cfg.board_layer = default_board_layer(model_cfg.n_layer)
            try:
                supervised = BoardSupervised(model, cfg.board_layer).to(device)
            except ValueError as exc:
                raise click.UsageError(f"--board-layer: {exc} (0: the embeddings)") from None
        train_boards = BoardTargets(train_windows.tokens, cfg.board_at, board_input=board_input)
        if not train_boards.any_replays():
            flag = "--board-loss" if cfg.board_loss else "--board-input"
            what = "no board targets" if cfg.board_loss else "no boards to read"
            raise click.ClickException(
                f"{flag}: no game in {data / 'train.bin'} replays as chess, so there are "
                f"{what}; train without {flag}")
        if val_windows is not None:
            val_boards = BoardTargets(val_windows.tokens, cfg.board_at, board_input=board_input)
    trained: torch.nn.Module = supervised or model
    optimizer = configure_optimizer(trained, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2),
                                    device.type)
    step, tokens_seen, elapsed = 0, 0, 0.0
    metrics_path = out / "metrics.jsonl"
    best_val = float("inf")
    if state:
        model.load_state_dict(state["model"])
        if supervised is not None:
            supervised.head.load_state_dict(state["board_head"])
        optimizer.load_state_dict(state["optimizer"])
        step, tokens_seen = state["step"], state["tokens"]
        elapsed = state.get("elapsed", 0.0)
        best_val = state.get("best_val_loss", float("inf"))
    tokens_per_step = cfg.batch_size * cfg.grad_accum * block * world
    total_steps = cfg.max_steps or (math.ceil(cfg.max_tokens / tokens_per_step)
                                    if cfg.max_tokens else 0)
    if not total_steps and not cfg.max_time:
        raise click.UsageError("give --max-steps, --max-tokens or --max-time")
    schedule_steps = (math.ceil(cfg.schedule_tokens / tokens_per_step) if cfg.schedule_tokens
                      else total_steps or 10**9)
    raw_model = model
    if cfg.compile:
        trained = torch.compile(trained)  # type: ignore[assignment]
    if ddp:
        trained = torch.nn.parallel.DistributedDataParallel(
            trained, device_ids=[device.index] if device.type == "cuda" else None)
    autocast = (torch.autocast(device.type, dtype=dtype) if dtype != torch.float32
                else contextlib.nullcontext())
    scaler = torch.amp.GradScaler(enabled=dtype == torch.float16)

    def losses(windows: TokenWindows, boards: BoardTargets | None, rng: np.random.Generator,
               module: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next-character loss of one batch, and its board loss when supervised."""
        starts = windows.draw(rng, cfg.batch_size)
        x, y = windows.rows(starts)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        board = None
        if board_input is not None:
            assert boards is not None
            board = tuple(torch.from_numpy(a).to(device, non_blocking=True)
                          for a in boards.batch_features(starts, x.shape[1]))
        if not cfg.board_loss:
            with autocast:
                return next_char_loss(module(x, board), y), None
        assert boards is not None
        targets = torch.from_numpy(boards.batch(starts, x.shape[1])).to(device)
        where = targets[..., 0] != IGNORE
        with autocast:
            logits, board_logits = module(x, where, board)
            return next_char_loss(logits, y), board_loss(board_logits, targets[where])

    def evaluate() -> dict[str, float]:
        assert val_windows is not None
        module = supervised or raw_model
        module.eval()
        chars, boards = [], []
        rng = np.random.default_rng([cfg.seed, 999_999])  # the same windows every time
        with torch.no_grad():
            for _ in range(cfg.eval_batches):
                char, board = losses(val_windows, val_boards, rng, module)
                chars.append(char.item())
                if board is not None:
                    boards.append(board.item())
        module.train()
        result = {"val_loss": float(np.mean(chars))}
        if boards:
            result["val_board_loss"] = float(np.mean(boards))
        return result

    last: dict[str, Any] = {}

    def evaluate_and_log(with_legal: bool) -> None:
        nonlocal best_val
        record: dict[str, Any] = {"step": step, "tokens": tokens_seen, **evaluate()}
        if with_legal and master:
            record["legal_rate"] = greedy_legal_rate(
                raw_model, val_windows, cfg.legal_positions, device, cfg.seed)
        best_val = min(best_val, record["val_loss"])
        last.update(record)
        log(record)
        if bar is not None:
            bar.write(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                               for k, v in record.items()))

    def summary() -> dict[str, Any]:
        return {"step": step, "tokens": tokens_seen, "elapsed_s": round(elapsed, 1),
                "best_val_loss": best_val, "device": str(device), "dtype": str(dtype),
                "world_size": world, "machine": platform.machine(),
                "processor": platform.processor() or platform.machine(),
                "threads": torch.get_num_threads(), "config": cfg.config,
                "n_params": raw_model.num_params(), "val_loss": last.get("val_loss"),
                "legal_rate": last.get("legal_rate"), **board_summary()}

    def board_summary() -> dict[str, Any]:
        if train_boards is None:
            return {}
        out: dict[str, Any] = {"board_games_replayed": train_boards.replayed,
                               "board_games_skipped": train_boards.failed}
        if board_input:
            out["board_input"] = board_input
        if supervised is not None:
            out.update({"board_loss": cfg.board_loss, "board_layer": cfg.board_layer,
                        "board_at": cfg.board_at, "val_board_loss": last.get("val_board_loss")})
        return out

    def save(path: Path = ckpt_path) -> None:
        if not master:
            return
        payload = {
            "model": raw_model.state_dict(), "model_args": model_cfg.to_dict(),
            "optimizer": optimizer.state_dict(), "step": step, "tokens": tokens_seen,
            "elapsed": elapsed, "best_val_loss": best_val, "train_config": asdict(cfg),
            "data": {**manifest, "path": str(data)},
            "summary": summary(),
        }
        if supervised is not None:
            payload["board_head"] = supervised.head.state_dict()
        write_atomic(path, _checkpoint_bytes(payload))

    def log(record: dict[str, Any]) -> None:
        if master:
            out.mkdir(parents=True, exist_ok=True)
            with open(metrics_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    if master:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    interrupted = False

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal interrupted
        interrupted = True

    previous_handler = signal.signal(signal.SIGINT, on_sigint) if master else None
    bar = None
    if master and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps or None, initial=step, unit="step", dynamic_ncols=True)
    start_time = time.time() - elapsed
    window_start, window_tokens = time.time(), 0
    trained.train()
    try:
        while True:
            elapsed = time.time() - start_time
            if total_steps and step >= total_steps:
                break
            if cfg.max_time and elapsed >= cfg.max_time:
                break
            if interrupted:
                if master:
                    click.echo(f"\ninterrupted at step {step}: checkpoint saved", err=True)
                break
            lr = learning_rate(cfg, step, schedule_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = board_sum = 0.0
            for micro in range(cfg.grad_accum):
                rng = batch_rng(cfg.seed, rank, step, micro)
                sync = (contextlib.nullcontext() if not ddp or micro == cfg.grad_accum - 1
                        else trained.no_sync())
                with sync:
                    loss, board = losses(train_windows, train_boards, rng, trained)
                    total = loss if board is None else loss + cfg.board_loss * board
                    scaler.scale(total / cfg.grad_accum).backward()
                loss_sum += loss.item()
                board_sum += board.item() if board is not None else 0.0
            loss_value = loss_sum / cfg.grad_accum
            board_value = board_sum / cfg.grad_accum
            if not math.isfinite(loss_value + board_value):
                raise TrainingStopped(
                    f"loss became {loss_value} at step {step}; the last good checkpoint "
                    f"({ckpt_path}) is kept. Try a lower --lr or --dtype fp32.")
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(trained.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens_seen += tokens_per_step
            window_tokens += tokens_per_step
            if step % cfg.log_interval == 0 or step == 1:
                now = time.time()
                tps = window_tokens / max(now - window_start, 1e-9)
                window_start, window_tokens = now, 0
                board_fields = {"board_loss": board_value} if supervised is not None else {}
                log({"step": step, "tokens": tokens_seen, "loss": loss_value, **board_fields,
                     "lr": lr, "tokens_per_s": tps, "elapsed_s": time.time() - start_time})
                if bar is not None:
                    shown = {"loss": f"{loss_value:.3f}"}
                    if board_fields:
                        shown["board"] = f"{board_value:.3f}"
                    bar.set_postfix(**shown, tok_s=f"{tps:,.0f}")
            if bar is not None:
                bar.update(1)
            if val_windows is not None and step % cfg.eval_interval == 0:
                with_legal = bool(cfg.legal_interval) and step % cfg.legal_interval == 0
                evaluate_and_log(with_legal)
            kept = [t for t in cfg.keep_at if tokens_seen - tokens_per_step < t <= tokens_seen]
            for target in kept:
                elapsed = time.time() - start_time
                save(kept_checkpoint_path(out, target))
            if step % cfg.checkpoint_interval == 0:
                elapsed = time.time() - start_time
                save()
        elapsed = time.time() - start_time
        # The run's final figures: validation loss and legal-move rate at its last step.
        evaluated = step % cfg.eval_interval == 0 and (
            not cfg.legal_interval or step % cfg.legal_interval == 0)
        if val_windows is not None and step > 0 and not interrupted and not evaluated:
            evaluate_and_log(with_legal=True)
        save()
    finally:
        if bar is not None:
            bar.close()
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
        if ddp:
            dist.destroy_process_group()
    if master and not interrupted:
        with contextlib.suppress(ImportError):
            from transcend.training.plot import plot_run

            plot_run(out)
    return summary()


@click.command("train")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path),
              help="Directory from `transcend data prepare` (train.bin, val.bin, manifest.json).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run directory: ckpt.pt, metrics.jsonl, curves.png.")
@click.option("--config", "config_name", default="small", show_default=True,
              type=click.Choice(sorted(CONFIGS)), help="Model size.")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where it stopped.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--grad-accum", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--lr", type=float, default=3e-4, show_default=True)
@click.option("--min-lr", type=float, default=3e-5, show_default=True)
@click.option("--warmup-steps", type=click.IntRange(min=0), default=200, show_default=True)
@click.option("--max-steps", type=click.IntRange(min=0), default=0)
@click.option("--max-tokens", type=float, default=0, help="Stop after this many tokens (1e8 ok).")
@click.option("--max-time", type=float, default=0, help="Stop after this many seconds.")
@click.option("--schedule-tokens", type=float, default=0,
              help="Length of the cosine decay in tokens (default: the run's length).")
@click.option("--weight-decay", type=float, default=0.1, show_default=True)
@click.option("--grad-clip", type=float, default=1.0, show_default=True)
@click.option("--block-size", type=click.IntRange(min=16), default=None,
              help="Override the config's context window.")
@click.option("--mid-game-share", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Share of windows that start at a move inside a long game.")
@click.option("--eval-interval", type=click.IntRange(min=1), default=250, show_default=True)
@click.option("--eval-batches", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--legal-interval", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Measure the unconstrained legal-move rate every N steps (0: only at the end).")
@click.option("--legal-positions", type=click.IntRange(min=1), default=100, show_default=True,
              help="Validation positions for the legal-move rate.")
@click.option("--checkpoint-interval", type=click.IntRange(min=1), default=250, show_default=True)
@click.option("--keep-at", default="", metavar="TOKENS",
              help="Keep a copy of the checkpoint as ckpt-<tokens>.pt when the run passes each "
                   "of these token counts (e.g. 1e6,3e6,1e7).")
@click.option("--seed", type=int, default=1337, show_default=True)
@click.option("--dtype", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto",
              show_default=True, help="auto: bf16 on GPUs and on CPUs with AMX/AVX512-BF16.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--threads", type=click.IntRange(min=0), default=0, help="CPU threads (0: all).")
@click.option("--compile", "use_compile", is_flag=True, help="torch.compile the model.")
@click.option("--board-loss", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Add this weight times the cross-entropy of a linear board head (what stands "
                   "on each square, read by replaying the games); 0 is the paper's objective.")
@click.option("--board-layer", type=click.IntRange(min=-1), default=-1, show_default=True,
              help="The block whose output the board head reads (0: the embeddings; "
                   "-1: two thirds up the stack).")
@click.option("--board-at", type=click.Choice(BOARD_AT), default="moves", show_default=True,
              help="moves: supervise the board where the model decides a move; all: at every "
                   "character (the board after the last complete move).")
@click.option("--board-input", type=click.Choice(FEATURE_SETS), default=None,
              help="The model reads the board: each character adds an embedding of the position "
                   "there (board: the squares, castling and en passant; board+attacks: also "
                   "how often each side attacks each square). Default: the paper's model.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_command(data: Path | None, out: Path, config_name: str, resume: bool, batch_size: int,
                  grad_accum: int, lr: float, min_lr: float, warmup_steps: int, max_steps: int,
                  max_tokens: float, max_time: float, schedule_tokens: float,
                  weight_decay: float, grad_clip: float,
                  block_size: int | None, mid_game_share: float, eval_interval: int,
                  eval_batches: int, legal_interval: int, legal_positions: int,
                  checkpoint_interval: int, keep_at: str, seed: int,
                  dtype: str, device: str, threads: int, use_compile: bool, board_loss: float,
                  board_layer: int, board_at: str, board_input: str | None,
                  quiet: bool) -> None:
    """Train a model on prepared data (see `transcend data prepare`)."""
    if data is None and not resume:
        raise click.UsageError("--data is required (except with --resume)")
    if data is not None and not (data / "train.bin").exists():
        raise click.UsageError(f"{data} has no train.bin: run `transcend data prepare` first")
    if not resume and (out / "ckpt.pt").exists():
        raise click.UsageError(f"{out} already holds a run: add --resume or choose another --out")
    cfg = TrainConfig(
        data=str(data or ""), out=str(out), config=config_name, batch_size=batch_size,
        grad_accum=grad_accum, lr=lr, min_lr=min_lr, warmup_steps=warmup_steps,
        max_steps=max_steps, max_tokens=int(max_tokens), max_time=max_time,
        schedule_tokens=int(schedule_tokens),
        weight_decay=weight_decay, grad_clip=grad_clip, mid_game_share=mid_game_share,
        eval_interval=eval_interval, eval_batches=eval_batches, legal_interval=legal_interval,
        legal_positions=legal_positions,
        checkpoint_interval=checkpoint_interval,
        keep_at=parse_token_counts(keep_at) if keep_at else (), seed=seed, dtype=dtype,
        device=device, threads=threads, compile=use_compile, progress=not quiet,
        model_overrides={"block_size": block_size} if block_size else {},
        board_loss=board_loss, board_layer=board_layer, board_at=board_at,
        board_input=board_input or "",
    )
    try:
        result = train(cfg, resume=resume)
    except TrainingStopped as exc:
        raise click.ClickException(str(exc)) from None
    if int(os.environ.get("RANK", "0")) == 0:
        best = result["best_val_loss"]
        # train() has filled cfg.data in from the checkpoint when resuming without --data.
        val_bin = Path(cfg.data) / "val.bin"
        val = (f"best val loss {best:.4f}" if math.isfinite(best) else
               f"no validation set ({val_bin} does not exist)" if not val_bin.exists() else
               "no validation loss yet")
        click.echo(f"{out}: step {result['step']}, {result['tokens']:,} tokens, {val}",
                   err=True)
