"""``transcend experiment``: the whole study in one command.

experts -> data -> train -> export -> sweep -> advantage -> report. Every stage leaves files in
the output directory and is skipped when they are already there and valid, so an interrupted
experiment resumes where it stopped (training resumes from its checkpoint).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import click

from transcend.engine.files import write_atomic
from transcend.evaluation.sweep import PAPER_TEMPERATURES
from transcend.training.data.experts import DEFAULT_EXPERTS, complete_games, generate


@dataclass
class Preset:
    """Everything an experiment does, stage by stage."""

    experts: list[str] = field(default_factory=lambda: list(DEFAULT_EXPERTS))
    games: int = 1000
    max_plies: int = 300
    pgn: list[str] = field(default_factory=list)  # human games instead of experts (paper preset)
    max_elo: list[int | None] = field(default_factory=lambda: [None])
    config: str = "small"
    block_size: int | None = None
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    max_steps: int = 1500
    eval_interval: int = 100
    legal_interval: int = 300
    fp16: bool = False
    temps: list[float] = field(default_factory=lambda: list(PAPER_TEMPERATURES))
    opponents: list[str] = field(default_factory=list)
    anchors: dict[str, float] = field(default_factory=dict)
    sweep_games: int = 10
    opponent_games: int = 0  # a round robin among the opponents, so they are rated directly
    max_moves: int = 90
    advantage_positions: int = 500
    advantage_nodes: int = 2000
    advantage_temps: list[float] = field(default_factory=lambda: list(PAPER_TEMPERATURES))


PRESETS: dict[str, Preset] = {
    # Minutes on two cores: proves every stage end to end, not that anything transcends.
    "tiny": Preset(
        experts=["sf:skill=0,nodes=20,eps=0.4,elo=1000", "sf:skill=1,nodes=20,eps=0.4,elo=1000"],
        games=60, max_plies=80, config="tiny", batch_size=4, lr=3e-3, min_lr=3e-4,
        warmup_steps=5, max_steps=40, eval_interval=20, legal_interval=40,
        temps=[0.01, 1.0], opponents=["random"],
        anchors={"random": 0.0}, sweep_games=2, opponent_games=1, max_moves=20,
        advantage_positions=8,
        advantage_nodes=200, advantage_temps=[0.01, 1.0],
    ),
    # The recipe of the bundled model: four noisy Stockfish experts, a `small` transformer.
    "cpu": Preset(
        games=100_000, max_elo=[1000], config="small", batch_size=16, lr=1e-3, min_lr=1e-4,
        warmup_steps=100, max_steps=6000, fp16=False,
        opponents=["random", *(f"sf:skill={k},nodes=100" for k in range(4))],
        anchors={"random": 0.0}, sweep_games=30, opponent_games=20, advantage_positions=1000,
    ),
    # The paper: Lichess games capped at 1000/1300/1500, the 50M model, Stockfish levels 1/3/5
    # at 0.1 s a move, 100 games per level and temperature. Needs --pgn dumps and GPUs.
    "paper": Preset(
        max_elo=[1000, 1300, 1500], config="paper-50m", batch_size=125, grad_accum=4, lr=3e-4,
        min_lr=3e-5, warmup_steps=2000, max_steps=100_000, eval_interval=1000,
        legal_interval=5000, opponents=["sf:skill=1,time=0.1", "sf:skill=3,time=0.1",
                                        "sf:skill=5,time=0.1"],
        sweep_games=100, advantage_positions=1000,
    ),
}


def log_stage(name: str, message: str) -> None:
    click.echo(f"[{time.strftime('%H:%M:%S')}] {name}: {message}", err=True)


def is_newer(path: Path, than: Path) -> bool:
    """Whether ``path`` exists and was written after ``than`` (a stage's output is current)."""
    return path.exists() and than.exists() and path.stat().st_mtime >= than.stat().st_mtime


def stage_experts(p: Preset, out: Path, seed: int, concurrency: int) -> list[str]:
    if p.pgn:
        missing = [path for path in p.pgn if path != "-" and not Path(path).exists()]
        if missing:
            raise click.UsageError(f"no such PGN file: {missing[0]}")
        log_stage("experts", f"using {len(p.pgn)} PGN file(s) given with --pgn")
        return list(p.pgn)
    pgn = out / "experts.pgn"
    have, _ = complete_games(pgn)
    if have >= p.games:
        log_stage("experts", f"{pgn} already holds {have} games: skipped")
    else:
        log_stage("experts", f"playing {p.games - have} games ({len(p.experts)} experts)")
        for _ in generate(pgn, p.experts, p.games, concurrency, seed, p.max_plies,
                          progress=sys.stderr.isatty()):
            pass
    return [str(pgn)]


def stage_data(p: Preset, inputs: list[str], data: Path, max_elo: int | None,
               workers: int) -> dict[str, Any]:
    from transcend.training.data.prepare import Filters, prepare

    manifest_path = data / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        sizes = {row.get("path"): row.get("bytes") for row in manifest.get("inputs", [])}
        current = {path: Path(path).stat().st_size for path in inputs if path != "-"}
        if sizes == current and manifest.get("filters", {}).get("max_elo") == max_elo:
            log_stage("data", f"{data} is up to date: skipped")
            return manifest
    log_stage("data", f"preparing {', '.join(inputs)} (max Elo {max_elo})")
    return prepare(inputs, data, Filters(max_elo=max_elo), workers=workers)


def stage_train(p: Preset, data: Path, run: Path, gpus: int, seed: int) -> None:
    from transcend.training.train import TrainConfig, train

    ckpt = run / "ckpt.pt"
    if ckpt.exists():
        import torch

        step = torch.load(ckpt, map_location="cpu", weights_only=True)["step"]
        if step >= p.max_steps:
            log_stage("train", f"{run} finished ({step} steps): skipped")
            return
        log_stage("train", f"resuming {run} at step {step} of {p.max_steps}")
    else:
        log_stage("train", f"training {p.config} for {p.max_steps} steps")
    cfg = TrainConfig(
        data=str(data), out=str(run), config=p.config, batch_size=p.batch_size,
        grad_accum=p.grad_accum, lr=p.lr, min_lr=p.min_lr, warmup_steps=p.warmup_steps,
        max_steps=p.max_steps, eval_interval=p.eval_interval, legal_interval=p.legal_interval,
        checkpoint_interval=max(1, min(250, p.max_steps // 10)), seed=seed,
        progress=sys.stderr.isatty(),
        model_overrides={"block_size": p.block_size} if p.block_size else {},
    )
    if gpus > 1:
        # Several GPUs: the same command under torchrun, one process per GPU.
        args = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={gpus}", "-m", "transcend.training.cli", "train",
                *cfg.command_args()] + (["--resume"] if ckpt.exists() else [])
        log_stage("train", shlex.join(args))
        subprocess.run(args, check=True)
        return
    train(cfg, resume=ckpt.exists())


def stage_export(p: Preset, run: Path, model: Path) -> None:
    from transcend.training.export import export_onnx, load_checkpoint, metadata_for

    if is_newer(model, run / "ckpt.pt"):
        log_stage("export", f"{model} is up to date: skipped")
        return
    net, ckpt = load_checkpoint(run)
    diff = export_onnx(net, model, metadata_for(net, ckpt), fp16=p.fp16)
    log_stage("export", f"{model} ({net.num_params():,} parameters, parity {diff:.1e})")


def stage_sweep(p: Preset, model: Path, out: Path, concurrency: int, seed: int) -> Any:
    from transcend.evaluation.sweep import run_sweep

    if is_newer(out / "ratings.csv", model):
        log_stage("sweep", f"{out} is up to date: skipped")
        return None
    log_stage("sweep", f"{len(p.temps)} temperatures x {len(p.opponents)} opponents x "
                    f"{p.sweep_games} games")
    return run_sweep(model, p.temps, p.opponents, p.sweep_games, out, concurrency=concurrency,
                     max_moves=p.max_moves, anchors=p.anchors or None, seed=seed,
                     progress=sys.stderr.isatty(), experts=[] if p.pgn else p.experts,
                     opponent_games=p.opponent_games)


def stage_advantage(p: Preset, model: Path, pgns: list[str], out: Path, seed: int) -> Any:
    from transcend.evaluation.advantage import AdvantageOptions, run_advantage

    if is_newer(out / "advantage.csv", model):
        log_stage("advantage", f"{out} is up to date: skipped")
        return None
    log_stage("advantage", f"{p.advantage_positions} positions at {p.advantage_nodes} nodes")
    return run_advantage(AdvantageOptions(
        model, out, [Path(x) for x in pgns], p.advantage_positions, p.advantage_temps,
        nodes=p.advantage_nodes, seed=seed, cache=out.parent / "stockfish-cache"),
        progress=sys.stderr.isatty())


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else f"({path.name} not written)\n"


def write_report(out: Path, preset_name: str, p: Preset, arms: list[tuple[str, Path]]) -> Path:
    """report.md: what was run, the training figures, the sweep and the advantage tables."""
    import torch

    lines = [f"# transcend experiment `{preset_name}`", "",
             f"Output directory: `{out}`. Reproduce with "
             f"`transcend experiment --preset {preset_name} --out {out}`.", "",
             "## Settings", "", "```json", json.dumps(asdict(p), indent=2), "```", ""]
    for label, arm in arms:
        lines += [f"## {label}", ""]
        ckpt_path = arm / "run" / "ckpt.pt"
        if ckpt_path.exists():
            summary = torch.load(ckpt_path, map_location="cpu", weights_only=True)["summary"]
            lines += ["| training | value |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in summary.items()]
            lines += ["", "![training curves](" + str((arm / "run" / "curves.png")
                                                      .relative_to(out)) + ")", ""]
        lines += ["### Rating against temperature", "", _read(arm / "sweep" / "summary.md"), "",
                  "![rating vs temperature](" + str((arm / "sweep" / "rating_vs_temperature.png")
                                                    .relative_to(out)) + ")", "",
                  "### Advantage (per-move expected win probability)", "",
                  _read(arm / "advantage" / "summary.md"), ""]
    report = out / "report.md"
    write_atomic(report, "\n".join(lines))
    return report


def run_experiment(preset_name: str, out: Path, *, seed: int = 1337, concurrency: int = 2,
                   gpus: int = 1, overrides: dict[str, Any] | None = None) -> Path:
    if preset_name not in PRESETS:
        raise click.UsageError(f"unknown preset {preset_name!r}; one of {sorted(PRESETS)}")
    p = replace(PRESETS[preset_name], **{k: v for k, v in (overrides or {}).items()
                                         if v is not None})
    if preset_name == "paper" and not p.pgn:
        raise click.UsageError("--preset paper needs Lichess PGN dumps: --pgn FILE.pgn.zst ...")
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "preset.json", json.dumps({"preset": preset_name, **asdict(p)}, indent=2))
    inputs = stage_experts(p, out, seed, concurrency)
    arms: list[tuple[str, Path]] = []
    for cap in p.max_elo:
        arm = out if len(p.max_elo) == 1 else out / f"max-elo-{cap}"
        label = "Results" if len(p.max_elo) == 1 else f"Max rating {cap}"
        stage_data(p, inputs, arm / "data", cap, workers=concurrency)
        stage_train(p, arm / "data", arm / "run", gpus, seed)
        model = arm / "model.onnx"
        stage_export(p, arm / "run", model)
        stage_sweep(p, model, arm / "sweep", concurrency, seed)
        stage_advantage(p, model, inputs, arm / "advantage", seed)
        arms.append((label, arm))
    report = write_report(out, preset_name, p, arms)
    log_stage("report", str(report))
    return report


@click.command("experiment")
@click.option("--preset", "preset_name", type=click.Choice(sorted(PRESETS)), default="tiny",
              show_default=True, help="tiny: minutes, all stages; cpu: the bundled model's "
              "recipe; paper: the paper's setting (Lichess dumps and GPUs).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--pgn", "pgns", multiple=True, help="Training games instead of expert games "
              "(Lichess dumps, .pgn or .pgn.zst); required by --preset paper.")
@click.option("--games", type=click.IntRange(min=1), default=None, help="Expert games.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Training steps.")
@click.option("--sweep-games", type=click.IntRange(min=1), default=None,
              help="Games per opponent and temperature.")
@click.option("--concurrency", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--gpus", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train on this many GPUs with torchrun.")
@click.option("--seed", type=int, default=1337, show_default=True)
def experiment_command(preset_name: str, out: Path, pgns: tuple[str, ...], games: int | None,
                       max_steps: int | None, sweep_games: int | None, concurrency: int,
                       gpus: int, seed: int) -> None:
    """The whole study: experts, data, training, export, sweep, advantage and a report."""
    overrides = {"games": games, "max_steps": max_steps, "sweep_games": sweep_games,
                 "pgn": list(pgns) or None}
    report = run_experiment(preset_name, out, seed=seed, concurrency=concurrency, gpus=gpus,
                            overrides=overrides)
    click.echo(report)
