"""``transcend gpu-run``: one short GPU window turned into a model that plays, and the GPU figures.

In one call, under a wall-time budget (``docs/gpu-run.md``):

1. checks: versions, a bf16 step against fp32, ``torch.compile``, the MFU of ``paper-50m`` at
   the paper's batch shape;
2. training: the model size that the measured throughput, the remaining time and the carried
   data favour (and whose file can come back), checkpointed as it goes;
3. export (fp16 when the file would not fit one part), the CUDA provider's parity and latency,
   the legal-move rate, ``transcend advantage`` from the carried Stockfish analysis, and a short
   match against a random mover on the CPU;
4. at most 8 files back in ``--out``: the model (in parts of at most 16 MiB), ``metrics.jsonl``,
   ``checks.json``, ``summary.json`` and ``summary.md``.

A stage that fails is recorded in the summary and the run goes on: a window is never wasted on
one broken step. ``--dry-run`` is the same path on the CPU with the ``tiny`` config.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from transcend.engine.features import FEATURE_SETS
from transcend.engine.files import write_atomic

MIB = 1 << 20
BACK_FILES, BACK_FILE_MIB, BACK_TOTAL_MIB = 8, 16, 64
# The model's share of what comes back: 4 parts, beside 4 small files.
MODEL_BACK_MIB = BACK_TOTAL_MIB - 2
PAPER_BATCH = 125  # the paper's micro-batch of 1023-character windows
# Loss against parameters N and tokens D, L = E + A / N^alpha + B / D^beta (Hoffmann et al.,
# 2022, their fit for text), used only to rank the candidate sizes; repeated tokens count as
# U (1 + R* (1 - exp(-R / R*))) for U unique ones seen 1 + R times (Muennighoff et al., 2023).
CHINCHILLA = (1.69, 406.4, 410.7, 0.34, 0.28)
REPEAT_SCALE = 15.4  # R*
CANDIDATES = ("small", "karvonen-25m", "paper-50m", "paper-300m")
ADVANTAGE_TEMPS = (0.0, 0.01, 0.1, 0.3, 1.0)
CACHE_ONLY_ENGINE = """#!/bin/sh
# Stands in for Stockfish where every position was analysed beforehand: it only says its name.
while read -r line; do
  case "$line" in
    uci) echo "id name {name}"; echo uciok ;;
    quit) exit 0 ;;
    *) echo "no Stockfish here: position not in the carried analysis" >&2; exit 3 ;;
  esac
done
"""


@dataclass
class Knobs:
    """What the real run and the rehearsal (``--dry-run``) do differently."""

    device: str = "cuda"
    candidates: tuple[str, ...] = CANDIDATES
    mfu_config: str = "paper-50m"
    mfu_batch: int = PAPER_BATCH
    mfu_steps: int = 5
    compile_backend: str = "inductor"
    min_batch: int = 16
    reserve_s: float = 150.0  # kept after training for export and evaluation
    part_mib: float = BACK_FILE_MIB
    match_games: int = 20
    legal_positions: int = 200

    @classmethod
    def dry_run(cls) -> Knobs:
        # The CPU has neither the time nor a compiler for inductor: compile with the eager
        # backend (dynamo's tracing only), a part size that splits even the tiny model.
        return cls(device="cpu", candidates=("tiny",), mfu_config="tiny", mfu_batch=4,
                   mfu_steps=2, compile_backend="eager", min_batch=4, reserve_s=20.0,
                   part_mib=0.1, match_games=2, legal_positions=10)


class Clock:
    def __init__(self, budget: float) -> None:
        self.start, self.budget = time.time(), budget

    def left(self) -> float:
        return self.budget - (time.time() - self.start)


def run_stage(name: str, fn: Callable[[], Any], record: dict[str, Any]) -> Any:
    """Run one stage; its seconds go to ``record["seconds"]``, an error to ``record["errors"]``
    (then None is returned and the run goes on)."""
    start = time.time()
    click.echo(f"[gpu-run] {name} ...", err=True)
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - one broken stage must not waste the window
        message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        record.setdefault("errors", {})[name] = message[:400]
        click.echo(f"[gpu-run] {name} failed: {message}", err=True)
        return None
    finally:
        record.setdefault("seconds", {})[name] = round(time.time() - start, 1)


# ---------------------------------------------------------------------------------------------
# Inputs


def unpack(carry: Path, work: Path) -> tuple[Path, dict[str, Any]]:
    """The carried token streams, decompressed into ``work/data``."""
    import zstandard

    info = json.loads((carry / "carry.json").read_text())
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name in ("train.bin", "val.bin"):
        if (carry / f"{name}.zst").exists():
            with open(carry / f"{name}.zst", "rb") as src, open(data / name, "wb") as dst:
                zstandard.ZstdDecompressor().copy_stream(src, dst)
    manifest = dict(info["data"]["manifest"])
    manifest["gpu_run_train_tokens"] = info["data"]["train_tokens"]
    (data / "manifest.json").write_text(json.dumps(manifest))
    return data, info


# ---------------------------------------------------------------------------------------------
# The plan


def model_size(name: str, board_input: str = "") -> tuple[int, float]:
    """(parameters, training FLOPs per token) of a config with ``board_input`` (a feature set of
    engine/features.py, or "" for none), as ``GPT`` counts them, from a model built on the meta
    device: no weights (``paper-300m`` would take a gigabyte)."""
    from dataclasses import replace

    import torch

    from transcend.training.model import CONFIGS, GPT

    with torch.device("meta"):
        model = GPT(replace(CONFIGS[name], board_input=board_input))
    return model.num_params(), float(model.flops_per_token())


def predicted_loss(params: int, tokens: float, unique: int) -> float:
    """Chinchilla's loss fit at ``params`` and ``tokens``, repeated data discounted."""
    e, a, b, alpha, beta = CHINCHILLA
    repeats = max(0.0, tokens / unique - 1)
    discount = 1 - math.exp(-repeats / REPEAT_SCALE)
    effective = min(tokens, unique) + unique * REPEAT_SCALE * discount
    return e + a / params**alpha + b / effective**beta


def plan(knobs: Knobs, measured: dict[str, Any] | None, data_tokens: int,
         train_seconds: float, board_input: str = "") -> dict[str, Any]:
    """The config, batch and steps. Every candidate trains for the whole time: its tokens/s is
    the measured one scaled by FLOPs per token (times 0.85 for evaluation and checkpoints), and
    the one with the lowest predicted loss at those tokens, the carried data repeated as often as
    needed, wins among those whose fp16 file comes back. ``board_input`` is passed on to
    training (its table counts in the file's size)."""
    rows = []
    for name in knobs.candidates:
        params, flops = model_size(name, board_input)
        tps = 0.85 * measured["tokens_per_s"] * measured["flops_per_token"] / flops \
            if measured else 1000.0
        tokens = tps * train_seconds
        rows.append({"config": name, "params": params, "tokens_per_s": round(tps),
                     "tokens": int(tokens), "epochs": round(tokens / data_tokens, 2),
                     "fp16_mib": round(2 * params / MIB, 1),
                     "comes_back": 2 * params / MIB <= MODEL_BACK_MIB,
                     "predicted_loss": round(predicted_loss(params, tokens, data_tokens), 3)})
    fits = [r for r in rows if r["comes_back"]] or rows[:1]
    chosen = min(fits, key=lambda r: r["predicted_loss"])
    from transcend.training.model import CONFIGS

    block = CONFIGS[chosen["config"]].block_size
    # About 1000 optimizer steps, between min_batch and the paper's micro-batch windows.
    batch = int(min(PAPER_BATCH, max(knobs.min_batch, chosen["tokens"] // (1000 * block))))
    steps = max(1, chosen["tokens"] // (batch * block))
    return {
        "config": chosen["config"], "batch_size": batch, "steps": steps,
        "tokens": steps * batch * block, "epochs": round(steps * batch * block / data_tokens, 2),
        "train_seconds": round(train_seconds), "data_tokens": data_tokens,
        "lr": 1e-3 if chosen["params"] < 10_000_000 else 6e-4,
        "board_input": board_input or None, "candidates": rows,
        "rule": f"each candidate trains for {train_seconds:.0f} s at the measured tokens/s scaled "
                f"by its FLOPs per token; lowest Chinchilla-predicted loss with repeated data "
                f"discounted, among those whose fp16 file fits {MODEL_BACK_MIB} MiB; batch for "
                f"about 1000 steps",
    }


# ---------------------------------------------------------------------------------------------
# Training, export, evaluation


def train_model(knobs: Knobs, choice: dict[str, Any], data: Path, run: Path, bf16: bool,
                use_compile: bool, seconds: float) -> dict[str, Any]:
    from transcend.training.train import TrainConfig, train

    steps = choice["steps"]
    cfg = TrainConfig(
        data=str(data), out=str(run), config=choice["config"], batch_size=choice["batch_size"],
        lr=choice["lr"], min_lr=choice["lr"] / 10, warmup_steps=max(1, min(200, steps // 10)),
        max_steps=steps, max_time=max(1.0, seconds), eval_interval=max(10, steps // 10),
        eval_batches=10, legal_interval=0, legal_positions=knobs.legal_positions,
        checkpoint_interval=max(10, steps // 10), device=knobs.device,
        dtype="bf16" if bf16 else "fp32", compile=use_compile, progress=False,
        board_input=choice.get("board_input") or "")
    return train(cfg)


def export_model(run: Path, work: Path, part_mib: float) -> tuple[Path, dict[str, Any]]:
    """ONNX of the run's last checkpoint: float16 weights when the float32 file would not fit
    one part (it then halves), parity-checked by the exporter."""
    from transcend.training.export import export_onnx, load_checkpoint, metadata_for

    model, ckpt = load_checkpoint(run)
    fp16 = 4 * model.num_params() > part_mib * MIB
    path = work / "model.onnx"
    parity = export_onnx(model, path, metadata_for(model, ckpt), fp16=fp16)
    data = path.read_bytes()
    return path, {"fp16": fp16, "bytes": len(data), "parity": parity,
                  "sha256": hashlib.sha256(data).hexdigest(), "n_params": model.num_params()}


def weights_only(run: Path, work: Path) -> Path:
    """The last checkpoint's weights in float16 with their config, nanoGPT-style, for when the
    export fails: ``transcend export model.pt --out model.onnx`` finishes the job at home."""
    import io

    import torch

    ckpt = torch.load(run / "ckpt.pt", map_location="cpu", weights_only=True)
    slim = {"model": {k: v.half() for k, v in ckpt["model"].items()},
            "model_args": ckpt["model_args"], "data": ckpt.get("data"),
            "summary": ckpt.get("summary")}
    buffer = io.BytesIO()
    torch.save(slim, buffer)
    write_atomic(work / "model.pt", buffer.getvalue())
    return work / "model.pt"


def split(path: Path, out: Path, part_mib: float) -> list[str]:
    """``path`` into ``out`` as one file, or as ``NAME.part-00``, ``-01``... of at most
    ``part_mib`` each; ``cat NAME.part-* > NAME`` joins them."""
    data = path.read_bytes()
    size = int(part_mib * MIB)
    if len(data) <= size:
        write_atomic(out / path.name, data)
        return [path.name]
    names = []
    for i in range(math.ceil(len(data) / size)):
        name = f"{path.name}.part-{i:02d}"
        write_atomic(out / name, data[i * size : (i + 1) * size])
        names.append(name)
    return names


def rejoin(folder: Path, out: Path, name: str = "model.onnx") -> Path:
    """A file from its parts in ``folder`` (what ``cat NAME.part-* > NAME`` does)."""
    parts = sorted(folder.glob(f"{name}.part-*"))
    if not parts and (folder / name).exists():
        parts = [folder / name]
    if not parts:
        raise click.ClickException(f"no {name} or {name}.part-* in {folder}")
    write_atomic(out, b"".join(p.read_bytes() for p in parts))
    return out


def advantage(model: Path, carry: Path, info: dict[str, Any], work: Path,
              device: str) -> dict[str, Any]:
    """``transcend advantage`` on the carried held-out positions, scored from the carried
    Stockfish analysis; a stand-in answers the engine-name query the cache is keyed by."""
    import os

    from transcend.evaluation.advantage import AdvantageOptions, run_advantage

    spec = info["advantage"]
    folder = work / "analysis"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(carry / "stockfish.sqlite", folder / "stockfish.sqlite")
    engine = folder / "stockfish-cache-only"
    engine.write_text(CACHE_ONLY_ENGINE.replace("{name}", spec["engine"]))
    engine.chmod(0o755)
    result = run_advantage(AdvantageOptions(
        model, work / "advantage", [carry / "heldout.pgn"], spec["positions"],
        list(ADVANTAGE_TEMPS), nodes=spec["nodes"], seed=spec["seed"], cache=folder, workers=1,
        stockfish=str(engine), device=device, plots=False, bootstrap=1000))
    rows = [asdict(r) for r in result.rows if r.phase == "all"]
    return {"positions": len(result.positions), "cache_hits": result.cache_hits,
            "engine": result.engine, "nodes": result.nodes, "rows": rows,
            "table": result.table_markdown(), "cpus": os.cpu_count()}


def match_vs_random(model: Path, games: int, deadline: float = math.inf,
                    temperature: float = 0.01, max_plies: int = 300) -> dict[str, Any]:
    """Games on the CPU against a uniformly random mover, colours alternating; a game still
    running after ``max_plies`` counts as a draw. No game but the first starts after
    ``deadline`` (a ``time.time()``)."""
    import chess
    import numpy as np

    from transcend.engine.policy import Policy

    policy = Policy(model, device="cpu")
    rng, mover = np.random.default_rng(0), random.Random(0)
    wins = draws = losses = plies = 0
    start = time.time()
    played = 0
    for game in range(games):
        if game and time.time() > deadline:
            break
        played += 1
        board, model_colour = chess.Board(), chess.WHITE if game % 2 == 0 else chess.BLACK
        while not board.is_game_over(claim_draw=True) and board.ply() < max_plies:
            if board.turn == model_colour:
                move = policy.choose(board, temperature, "token", rng, distribution=False).move
            else:
                move = mover.choice(list(board.legal_moves))
            board.push(move)
        plies += board.ply()
        outcome = board.outcome(claim_draw=True)
        winner = outcome.winner if outcome else None
        wins += winner == model_colour
        losses += winner is not None and winner != model_colour
        draws += winner is None
    return {"games": played, "temperature": temperature, "wins": wins, "draws": draws,
            "losses": losses, "score": (wins + draws / 2) / max(1, played),
            "mean_plies": plies / max(1, played), "seconds": round(time.time() - start, 1)}


# ---------------------------------------------------------------------------------------------
# The run


def gpu_run(carry: Path, out: Path, budget: float, knobs: Knobs,
            work: Path | None = None, board_input: str = "") -> dict[str, Any]:
    """The whole run, training a model that reads ``board_input`` ("" for the paper's model);
    returns the summary also written to ``out/summary.json``."""
    import torch

    from transcend.training.gpu import checks as gpu_checks
    from transcend.training.train import cpu_has_fast_bf16

    clock = Clock(budget)
    out.mkdir(parents=True, exist_ok=True)
    work = work or Path(tempfile.mkdtemp(prefix="gpu-run-"))
    device = torch.device(knobs.device)
    summary: dict[str, Any] = {"budget_s": budget, "knobs": asdict(knobs)}
    checks: dict[str, Any] = {}
    def save() -> None:
        summary["legal_rate"] = (summary.get("training") or {}).get("legal_rate")
        summary["elapsed_s"] = round(time.time() - clock.start, 1)
        write_atomic(out / "checks.json", json.dumps(checks, indent=2, default=str).encode())
        # Twice: what comes back is measured with the summary files written, then recorded in
        # them (which changes their size by a few bytes).
        for _ in range(2):
            write_atomic(out / "summary.json",
                         json.dumps(summary, indent=2, default=str).encode())
            write_atomic(out / "summary.md", summary_markdown(summary, checks).encode())
            summary["back"] = check_back(out)

    data, info = unpack(carry, work)
    summary["carried"] = info["data"] | {"manifest": None}
    data_tokens = info["data"]["train_tokens"]

    checks["versions"] = run_stage("versions", lambda: gpu_checks.versions(device), summary)
    bf16 = run_stage("bf16", lambda: gpu_checks.bf16_agrees(
        knobs.mfu_config, 2, device), summary)
    checks["bf16_vs_fp32"] = bf16
    peak = run_stage("matmul peak", lambda: gpu_checks.matmul_peak(device), summary)
    checks["bf16_matmul_tflops"] = peak
    # bf16 where it agrees and is fast: on a CPU without AMX or AVX512-BF16 it is far slower.
    fast = device.type == "cuda" or cpu_has_fast_bf16()
    dtype = torch.bfloat16 if bf16 and bf16["agrees"] and fast else torch.float32

    def measure(backend: str | None) -> dict[str, Any]:
        return gpu_checks.throughput(knobs.mfu_config, knobs.mfu_batch, knobs.mfu_steps, device,
                                     dtype, backend, peak)

    eager = run_stage("throughput eager", lambda: measure(None), summary)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    # No compiler: skip at once rather than fail after minutes of tracing.
    blocker = gpu_checks.compile_blocker(knobs.compile_backend, device)
    compiled = None if blocker else run_stage(
        "throughput compiled", lambda: measure(knobs.compile_backend), summary)
    checks["throughput_eager"], checks["throughput_compiled"] = eager, compiled
    # Compile pays when it is at least 10% faster: its start-up is counted again in training.
    use_compile = bool(compiled and eager and compiled["finite"]
                       and compiled["tokens_per_s"] > 1.1 * eager["tokens_per_s"]
                       and knobs.compile_backend == "inductor")
    best = compiled if use_compile else eager
    checks["compile"] = {"works": bool(compiled and compiled["finite"]),
                         "backend": knobs.compile_backend, "used_for_training": use_compile}
    if blocker:
        checks["compile"]["skipped"] = blocker
        click.echo(f"[gpu-run] torch.compile skipped: {blocker}", err=True)

    train_seconds = max(5.0, clock.left() - knobs.reserve_s)
    choice = plan(knobs, best, data_tokens, train_seconds, board_input)
    choice.update(dtype=str(dtype).removeprefix("torch."), compile=use_compile)
    summary["plan"] = choice
    click.echo(f"[gpu-run] plan: {choice['config']}, batch {choice['batch_size']} x 1023, "
               f"{choice['steps']} steps ({choice['epochs']} epochs), {train_seconds:.0f} s, "
               f"board input {board_input or 'none'}", err=True)
    run = work / "run"
    summary["training"] = run_stage("training", lambda: train_model(
        knobs, choice, data, run, dtype == torch.bfloat16, use_compile,
        clock.left() - knobs.reserve_s), summary)
    if summary["training"] is None and not (run / "ckpt.pt").exists():
        # Failed before its first checkpoint: once more in plain eager fp32, with what is left.
        run = work / "run-retry"
        summary["training"] = run_stage("training retry", lambda: train_model(
            knobs, choice, data, run, False, False, clock.left() - knobs.reserve_s), summary)
    if (run / "metrics.jsonl").exists():
        shutil.copyfile(run / "metrics.jsonl", out / "metrics.jsonl")
    save()

    exported = run_stage("export", lambda: export_model(run, work, knobs.part_mib), summary)
    if exported:
        model, summary["export"] = exported
        summary["export"]["files"] = split(model, out, knobs.part_mib)
        summary["export"]["rejoin"] = (f"cat {out.name}/model.onnx.part-* > model.onnx"
                                       if len(summary["export"]["files"]) > 1 else "")
        checks["onnx_cuda"] = run_stage("onnx cuda", lambda: gpu_checks.onnx_cuda(str(model)),
                                        summary)
        save()  # what is done so far comes back even if the machine stops the run later
        where = "cuda" if (checks["onnx_cuda"] or {}).get("available") else "cpu"
        summary["advantage"] = run_stage("advantage", lambda: advantage(
            model, carry, info, work, where), summary)
        save()
        summary["match"] = run_stage("match vs random", lambda: match_vs_random(
            model, knobs.match_games, clock.start + budget), summary)
    elif (run / "ckpt.pt").exists():
        weights = run_stage("weights", lambda: weights_only(run, work), summary)
        if weights:
            summary["weights"] = {"files": split(weights, out, knobs.part_mib),
                                  "rejoin": f"cat {out.name}/model.pt.part-* > model.pt"}
    save()
    return summary


def check_back(out: Path) -> dict[str, Any]:
    """What comes back must fit: at most 8 files of at most 16 MiB, 64 MiB in all."""
    files = [p for p in out.rglob("*") if p.is_file()]
    sizes = [p.stat().st_size for p in files]
    ok = (len(files) <= BACK_FILES and max(sizes, default=0) <= BACK_FILE_MIB * MIB
          and sum(sizes) <= BACK_TOTAL_MIB * MIB)
    return {"files": len(files), "mib": round(sum(sizes) / MIB, 2), "fits": ok}


def summary_markdown(summary: dict[str, Any], checks: dict[str, Any]) -> str:
    p, lines = summary.get("plan") or {}, ["# GPU run", ""]
    v = checks.get("versions") or {}
    lines.append(f"Machine: {v.get('gpu', v.get('device'))}, torch {v.get('torch')}, CUDA "
                 f"{v.get('cuda')}, onnxruntime {v.get('onnxruntime')}, {v.get('cpus')} CPUs.")
    for key in ("throughput_eager", "throughput_compiled"):
        t = checks.get(key)
        if t:
            mfu = t.get("mfu_vs_measured_peak")
            lines.append(f"- {key}: {t['config']} batch {t['batch']} x {t['block']}, "
                         f"{t['tokens_per_s']:,.0f} tokens/s"
                         + (f", MFU {mfu:.1%} of the measured bf16 peak" if mfu else ""))
    if (checks.get("compile") or {}).get("skipped"):
        lines.append(f"- torch.compile skipped: {checks['compile']['skipped']}")
    cuda = checks.get("onnx_cuda") or {}
    lines.append(f"- ONNX on CUDA: {cuda.get('note') or cuda}")
    lines += ["", f"Plan: {p.get('config')}, board input {p.get('board_input') or 'none'}, "
              f"batch {p.get('batch_size')}, {p.get('steps')} steps, {p.get('epochs')} epochs "
              f"({p.get('rule')}).", ""]
    t = summary.get("training") or {}
    lines.append(f"Training: step {t.get('step')}, {t.get('tokens')} tokens in "
                 f"{t.get('elapsed_s')} s, val loss {t.get('val_loss')}, legal-move rate "
                 f"{t.get('legal_rate')}.")
    e = summary.get("export") or {}
    lines.append(f"Model: {e.get('files')} ({e.get('bytes')} bytes, sha256 {e.get('sha256')}); "
                 f"rejoin: `{e.get('rejoin') or 'nothing to join'}`.")
    m = summary.get("match") or {}
    lines.append(f"Match against a random mover: {m.get('wins')} wins, {m.get('draws')} draws, "
                 f"{m.get('losses')} losses of {m.get('games')}.")
    a = summary.get("advantage") or {}
    if a:
        lines += ["", f"Advantage on {a['positions']} held-out positions:", "", a["table"]]
    if summary.get("errors"):
        lines += ["", "Errors:"] + [f"- {k}: {v}" for k, v in summary["errors"].items()]
    back = summary.get("back") or {}
    if back:
        lines += ["", f"Back: {back['files']} files, {back['mib']} MiB "
                      f"({'fits' if back['fits'] else 'DOES NOT FIT'})."]
    lines += ["", f"Seconds per stage: {summary.get('seconds')}", ""]
    return "\n".join(lines)


@click.command("gpu-run")
@click.option("--carry", type=click.Path(file_okay=False, path_type=Path), default=Path(
    "gpu-carry"), show_default=True, help="The folder from `transcend gpu-pack`.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where the (at most 8) files that come back go.")
@click.option("--budget", type=click.FloatRange(min=10), default=None,
              help="Wall-time budget in seconds [default: 540, 60 with --dry-run].")
@click.option("--dry-run", is_flag=True, help="The same run on the CPU with the tiny config.")
@click.option("--reserve", type=click.FloatRange(min=0), default=None,
              help="Seconds kept after training for export and evaluation.")
@click.option("--games", type=click.IntRange(min=0), default=None,
              help="Games of the match against a random mover.")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for data, checkpoints and the whole model [default: a temporary one].")
@click.option("--board-input", type=click.Choice(FEATURE_SETS), default=None,
              help="Train a model that reads the board (as `transcend train --board-input`). "
                   "Default: the paper's model.")
def gpu_run_command(carry: Path, out: Path, budget: float | None, dry_run: bool,
                    reserve: float | None, games: int | None, work: Path | None,
                    board_input: str | None) -> None:
    """Train, export and evaluate a model in one short GPU window (see docs/gpu-run.md)."""
    if not (carry / "carry.json").exists():
        raise click.UsageError(f"{carry} has no carry.json: make it with `transcend gpu-pack`")
    knobs = Knobs.dry_run() if dry_run else Knobs()
    if not dry_run:
        import torch

        if not torch.cuda.is_available():
            raise click.UsageError("no CUDA device here: use --dry-run to rehearse on the CPU")
    if reserve is not None:
        knobs.reserve_s = reserve
    if games is not None:
        knobs.match_games = games
    summary = gpu_run(carry, out, budget or (60.0 if dry_run else 540.0), knobs, work,
                      board_input or "")
    back, errors = summary["back"], summary.get("errors", {})
    click.echo(f"{out}: {back['files']} files, {back['mib']} MiB ("
               f"{'fits' if back['fits'] else 'DOES NOT FIT'} what comes back); "
               f"{len(errors)} stage errors; {summary['elapsed_s']} s")
    # A rehearsal is there to find what fails: it fails with it. The real run's files come
    # back either way, so it ends as usual.
    if dry_run and errors:
        raise click.ClickException(f"the rehearsal had {len(errors)} stage errors: "
                                   f"{'; '.join(f'{k}: {v}' for k, v in errors.items())}")
