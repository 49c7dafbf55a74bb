"""``transcend frontier``: where the model transcends its experts, and how compute moves it.

experts (one data set per arm) -> data -> held-out games -> training runs that keep snapshots
on a log scale of tokens -> export -> the advantage analysis of every snapshot on one set of
positions stratified by familiarity -> games for the best snapshot -> a report with a fitted
trend. Every stage leaves its files in the output directory and is skipped when they are there,
so an interrupted study resumes; ``--runs`` restricts the training stage to some runs, so that
several processes can train different runs side by side.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

from transcend.engine.files import write_atomic, write_figure
from transcend.training.experiment import is_newer, log_stage
from transcend.training.experts import complete_games, generate

FOUR_EXPERTS = "sf:skill={k},nodes=100,eps={eps},elo=1000"


def experts_with_noise(eps: float) -> list[str]:
    """The four training experts (Stockfish skill 0-3 at 100 nodes) with ``eps`` random moves."""
    return [FOUR_EXPERTS.format(k=k, eps=eps) for k in range(4)]


@dataclass
class Arm:
    """One training data set: games between these experts."""

    name: str
    experts: list[str]
    games: int


@dataclass
class Run:
    """One training run on one arm, keeping a snapshot at each token count in ``keep``."""

    name: str
    arm: str
    config: str
    keep: list[int]
    # Board supervision (`train --board-loss`): 0 is the paper's objective.
    board_loss: float = 0.0
    board_at: str = "moves"


@dataclass
class FrontierPreset:
    arms: list[Arm]
    runs: list[Run]
    # Every run shares one cosine schedule of this many tokens, so that snapshots at the same
    # token count compare across runs whatever each run's own length.
    schedule_tokens: int
    batch_size: int = 16
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 20
    eval_interval: int = 100
    heldout_games: int = 2000
    per_bin: int = 100
    nodes: int = 20_000
    temps: list[float] = field(default_factory=lambda: [0.0, 0.01, 0.1, 1.0])
    match_temps: list[float] = field(default_factory=lambda: [0.01, 1.0])
    match_opponents: list[str] = field(default_factory=lambda: [
        "random", "sf:skill=0,nodes=100,eps=0.6", "sf:skill=0,nodes=100,eps=0.8"])
    match_games: int = 30
    match_opponent_games: int = 29
    max_moves: int = 90
    max_plies: int = 300


M = 1_000_000
PRESETS: dict[str, FrontierPreset] = {
    # About 6 minutes on two cores: every stage on tiny models, the plumbing and the report.
    "quick": FrontierPreset(
        arms=[Arm("eps0.4", experts_with_noise(0.4), 600),
              Arm("eps0.2", experts_with_noise(0.2), 600)],
        runs=[Run("eps0.4-tiny", "eps0.4", "tiny", [25_000, 50_000, 100_000, 200_000, 400_000]),
              Run("eps0.4-mini", "eps0.4", "mini", [25_000, 50_000]),
              Run("eps0.2-tiny", "eps0.2", "tiny", [50_000, 100_000])],
        schedule_tokens=400_000, batch_size=4, lr=3e-3, min_lr=3e-4, warmup_steps=5,
        eval_interval=50, heldout_games=150, per_bin=12, nodes=1000, temps=[0.01, 1.0],
        match_temps=[0.01], match_games=4, match_opponent_games=2, max_moves=40),
    # The measurements of docs/frontier.md: `small` at five token counts, `mini` and the data
    # arm (half the random moves) at three, all on one shared 8M-token schedule.
    "full": FrontierPreset(
        arms=[Arm("eps0.4", experts_with_noise(0.4), 12_000),
              Arm("eps0.2", experts_with_noise(0.2), 6_000)],
        runs=[Run("eps0.4-small", "eps0.4", "small", [M // 2, M, 2 * M, 4 * M, 8 * M]),
              Run("eps0.4-mini", "eps0.4", "mini", [M // 2, M, 2 * M]),
              Run("eps0.2-small", "eps0.2", "small", [M // 2, M, 2 * M])],
        schedule_tokens=8 * M),
    # Board supervision against the paper's objective: `small` on the eps0.4 arm, with and
    # without the board loss, on the full preset's data, positions and schedule.
    "board": FrontierPreset(
        arms=[Arm("eps0.4", experts_with_noise(0.4), 12_000)],
        runs=[Run("eps0.4-small", "eps0.4", "small", [2 * M, 4 * M, 8 * M]),
              Run("eps0.4-small-board", "eps0.4", "small", [2 * M, 4 * M, 8 * M],
                  board_loss=1.0, board_at="all")],
        schedule_tokens=8 * M),
}


def tokens_label(tokens: int) -> str:
    """1000000 -> '1M', 500000 -> '500k', 25000 -> '25k': short names for snapshots."""
    for unit, suffix in ((M, "M"), (1000, "k")):
        if tokens >= unit and tokens % (unit // 10 or 1) == 0:
            value = tokens / unit
            return f"{value:g}{suffix}"
    return str(tokens)


@dataclass
class Layout:
    """Where each stage writes, under the study's output directory."""

    out: Path

    def pgn(self, arm: str) -> Path:
        return self.out / "arms" / arm / "experts.pgn"

    def data(self, arm: str) -> Path:
        return self.out / "arms" / arm / "data"

    def heldout(self, arm: str) -> Path:
        return self.out / "arms" / arm / "heldout.pgn"

    def run(self, run: str) -> Path:
        return self.out / "runs" / run

    def model(self, run: str, tokens: int) -> Path:
        return self.out / "models" / f"{run}-{tokens_label(tokens)}.onnx"

    def evaluation(self, name: str) -> Path:
        return self.out / "eval" / name

    def games(self, name: str) -> Path:
        return self.out / "games" / name


def play_games(pgn: Path, experts: Sequence[str], games: int, p: FrontierPreset, seed: int,
               concurrency: int, label: str) -> None:
    """Extend ``pgn`` to ``games`` games between ``experts`` (resuming what it holds)."""
    have, _ = complete_games(pgn)
    if have >= games:
        log_stage(label, f"{pgn} holds {have} games: skipped")
        return
    log_stage(label, f"{pgn}: playing {games - have} games")
    for _ in generate(pgn, experts, games, concurrency, seed, p.max_plies,
                      progress=sys.stderr.isatty()):
        pass


def stage_experts(p: FrontierPreset, lay: Layout, arms: Sequence[Arm], seed: int,
                  concurrency: int) -> None:
    for arm in arms:
        play_games(lay.pgn(arm.name), arm.experts, arm.games, p, seed, concurrency, "experts")


def stage_heldout(p: FrontierPreset, lay: Layout, seed: int, concurrency: int) -> None:
    """Every arm's held-out games: the same experts under another seed."""
    for arm in p.arms:
        play_games(lay.heldout(arm.name), arm.experts, p.heldout_games, p, seed + 1,
                   concurrency, "heldout")


def stage_data(lay: Layout, arms: Sequence[Arm], workers: int) -> None:
    """Prepared data for every arm, with the paper's diversity measure in its manifest."""
    from transcend.training.diversity import (
        describe,
        diversity,
        games_of_inputs,
        record_in_manifest,
    )
    from transcend.training.prepare import prepare

    for arm in arms:
        data, pgn = lay.data(arm.name), lay.pgn(arm.name)
        manifest = data / "manifest.json"
        if is_newer(manifest, pgn):
            if "diversity" in json.loads(manifest.read_text()):
                log_stage("data", f"{data} is up to date: skipped")
                continue
        else:
            log_stage("data", f"preparing {pgn}")
            prepare([str(pgn)], data, workers=workers)
        result = diversity(games_of_inputs([str(data)]))
        record_in_manifest(data, result)
        log_stage("data", f"{arm.name}: {describe(result)}")


def run_config(p: FrontierPreset, lay: Layout, run: Run, seed: int, threads: int) -> Any:
    from transcend.training.train import TrainConfig

    return TrainConfig(
        data=str(lay.data(run.arm)), out=str(lay.run(run.name)), config=run.config,
        batch_size=p.batch_size, lr=p.lr, min_lr=p.min_lr, warmup_steps=p.warmup_steps,
        max_tokens=max(run.keep), schedule_tokens=p.schedule_tokens, keep_at=tuple(run.keep),
        eval_interval=p.eval_interval, legal_interval=0, checkpoint_interval=25, seed=seed,
        threads=threads, progress=sys.stderr.isatty(), board_loss=run.board_loss,
        board_at=run.board_at)


def stage_train(p: FrontierPreset, lay: Layout, runs: Sequence[Run], seed: int,
                threads: int) -> None:
    from transcend.training.train import kept_checkpoint_path, train

    for run in runs:
        folder = lay.run(run.name)
        if all(kept_checkpoint_path(folder, t).exists() for t in run.keep):
            log_stage("train", f"{folder} holds every snapshot: skipped")
            continue
        resume = (folder / "ckpt.pt").exists()
        log_stage("train", f"{'resuming' if resume else 'training'} {run.name} ({run.config}) to "
                        f"{tokens_label(max(run.keep))} tokens")
        train(run_config(p, lay, run, seed, threads), resume=resume)


def stage_export(p: FrontierPreset, lay: Layout) -> list[tuple[Run, int, Path]]:
    """Exports every snapshot that exists; returns (run, tokens, model) for each."""
    from transcend.training.export import export_onnx, load_checkpoint, metadata_for
    from transcend.training.train import kept_checkpoint_path

    models = []
    for run in p.runs:
        for tokens in run.keep:
            ckpt, model = kept_checkpoint_path(lay.run(run.name), tokens), lay.model(run.name,
                                                                                      tokens)
            if not ckpt.exists():
                continue
            if not is_newer(model, ckpt):
                net, state = load_checkpoint(ckpt)
                export_onnx(net, model, metadata_for(net, state))
                log_stage("export", str(model))
            models.append((run, tokens, model))
    return models


@dataclass
class Snapshot:
    """One evaluated model: a run's snapshot or an extra model given on the command line."""

    name: str
    size: str
    arm: str
    tokens: int
    params: int
    model: Path

    @property
    def flops(self) -> float:
        # The usual estimate for a transformer's training compute: 6 x parameters x tokens.
        return 6.0 * self.params * self.tokens


def model_facts(model: Path) -> tuple[str, int, int]:
    """(config name, parameters, training tokens) from an exported model's metadata."""
    from transcend.engine.policy import read_metadata

    meta = read_metadata(model)
    training = json.loads(meta.get("training") or "{}")
    return (str(training.get("config", "?")), int(meta.get("n_params", 0)),
            int(training.get("tokens", 0)))


def fit_trend(tokens: Sequence[float], gains: Sequence[float], low: Sequence[float],
              high: Sequence[float], samples: int = 4000, seed: int = 0) -> dict[str, Any]:
    """Gain against log10(tokens): a weighted straight line, and where it reaches zero.

    Each point's weight comes from its 95% interval (standard error = width / 3.92). The
    crossing's interval comes from refitting lines through points redrawn within their errors;
    draws whose slope is not positive never reach zero, and their share is reported.
    """
    import numpy as np

    x = np.log10(np.asarray(tokens, dtype=float))
    y = np.asarray(gains, dtype=float)
    se = np.maximum((np.asarray(high, dtype=float) - np.asarray(low, dtype=float)) / 3.92, 1e-6)
    if len(x) < 2 or np.ptp(x) == 0:
        raise ValueError("a trend needs snapshots at two or more token counts")

    def line(values: Any) -> tuple[float, float]:
        slope, intercept = np.polyfit(x, values, 1, w=1.0 / se)
        return float(slope), float(intercept)

    slope, intercept = line(y)
    design = np.stack([x, np.ones_like(x)], axis=1) / se[:, None]
    covariance = np.linalg.inv(design.T @ design)
    rng = np.random.default_rng(seed)
    crossings, flat = [], 0
    for _ in range(samples):
        s, c = line(y + rng.normal(0.0, se))
        if s <= 0:
            flat += 1
        else:
            crossings.append(-c / s)
    result: dict[str, Any] = {
        "slope_per_decade": slope, "slope_se": float(math.sqrt(covariance[0, 0])),
        "intercept": intercept, "points": len(x),
        "never_crosses_share": flat / samples,
        "crossing_log10_tokens": -intercept / slope if slope > 0 else None,
    }
    if crossings:
        lo, hi = np.percentile(crossings, [2.5, 97.5])
        result["crossing_log10_tokens_ci"] = [float(lo), float(hi)]
    return result


STAGES = ("experts", "data", "train", "evaluate", "games", "report")


def run_frontier(preset_name: str, out: Path, *, runs: Sequence[str] = (),
                 until: str = "report", extras: Sequence[str] = (), seed: int = 1,
                 concurrency: int = 2, threads: int = 0, stockfish: str | None = None,
                 train_more: bool = True) -> Path:
    if preset_name not in PRESETS:
        raise click.UsageError(f"unknown preset {preset_name!r}; one of {sorted(PRESETS)}")
    p = PRESETS[preset_name]
    known = {run.name for run in p.runs}
    if unknown := [name for name in runs if name not in known]:
        raise click.UsageError(f"--runs: no run {unknown[0]!r} in preset {preset_name}; "
                               f"one of {', '.join(sorted(known))}")
    extra_models = [parse_extra(text, [arm.name for arm in p.arms]) for text in extras]
    lay = Layout(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "preset.json", json.dumps({"preset": preset_name, **asdict(p)}, indent=2))
    last = STAGES.index(until)
    chosen = [run for run in p.runs if not runs or run.name in runs]
    arms = [arm for arm in p.arms if any(run.arm == arm.name for run in chosen)]
    stage_experts(p, lay, arms, seed, concurrency)
    stage_data(lay, arms, workers=concurrency)
    if last < STAGES.index("train"):
        return out
    if train_more:
        stage_train(p, lay, chosen, seed, threads)
    else:
        log_stage("train", "--no-train: evaluating the snapshots that exist")
    if last < STAGES.index("evaluate") or runs:
        return out
    stage_heldout(p, lay, seed, concurrency)
    snapshots = stage_evaluate(p, lay, stage_export(p, lay), extra_models, seed,
                               stockfish)
    if last >= STAGES.index("games"):
        stage_games(p, lay, snapshots, concurrency, seed)
    if last < STAGES.index("report"):
        return out
    report = write_report(p, preset_name, lay, snapshots)
    log_stage("report", str(report))
    return report


@click.command("frontier")
@click.option("--preset", "preset_name", type=click.Choice(sorted(PRESETS)), default="quick",
              show_default=True, help="quick: about 6 minutes on two cores, tiny models; "
              "full: the measurements of docs/frontier.md (hours).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--runs", default="", help="Only make the data of these runs (comma-separated) "
              "and train them, then stop: several processes can train side by side.")
@click.option("--until", type=click.Choice(STAGES), default="report", show_default=True,
              help="Stop after this stage.")
@click.option("--extra", "extras", multiple=True, metavar="ARM=MODEL",
              help="Also evaluate this ONNX model, trained on ARM's kind of data (repeatable): "
                   "its size and tokens come from its metadata.")
@click.option("--train/--no-train", "train_more", default=True, show_default=True,
              help="--no-train evaluates the snapshots that exist, training nothing further.")
@click.option("--concurrency", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=0,
              help="CPU threads for training (0: all).")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--stockfish", default=None, help="Stockfish binary [default: found on PATH].")
def frontier_command(preset_name: str, out: Path, runs: str, until: str,
                     extras: tuple[str, ...], train_more: bool, concurrency: int,
                     threads: int, seed: int, stockfish: str | None) -> None:
    """Where the model transcends its experts, and how training compute moves it."""
    names = [name.strip() for name in runs.split(",") if name.strip()]
    click.echo(run_frontier(preset_name, out, runs=names, until=until, extras=extras,
                            seed=seed, concurrency=concurrency, threads=threads,
                            stockfish=stockfish, train_more=train_more))


def _snapshot(name: str, arm: str, model: Path) -> Snapshot:
    size, params, tokens = model_facts(model)
    return Snapshot(name, size, arm, tokens, params, model)


def parse_extra(text: str, arms: Sequence[str]) -> tuple[str, Path]:
    """'eps0.4=models/default.onnx' -> ('eps0.4', Path('models/default.onnx')), checked."""
    arm, sep, path = text.partition("=")
    if not sep or not path:
        raise click.BadParameter(f"expected ARM=MODEL, got {text!r}", param_hint="--extra")
    if arm not in arms:
        raise click.BadParameter(f"no arm {arm!r}; one of {', '.join(arms)}",
                                 param_hint="--extra")
    if not Path(path).is_file():
        raise click.BadParameter(f"no model at {path}", param_hint="--extra")
    return arm, Path(path)


def stage_evaluate(p: FrontierPreset, lay: Layout, exported: Sequence[tuple[Run, int, Path]],
                   extras: Sequence[tuple[str, Path]], seed: int,
                   stockfish: str | None) -> list[Snapshot]:
    """The advantage analysis of every snapshot, on shared positions.

    Each arm's first snapshot draws positions from that arm's held-out games, stratified by
    familiarity in the arm's training data; the arm's other snapshots are scored on exactly
    those positions, against the arm's own experts. Snapshots of the other arms are also scored
    on the first arm's positions (``<name>-on-<arm>``), so that every model meets the same
    positions; familiarity is always counted in a model's own training data.
    """
    snapshots = [_snapshot(f"{run.name}-{tokens_label(tokens)}", run.arm, model)
                 for run, tokens, model in exported]
    snapshots += [_snapshot(f"{arm}-{path.stem}", arm, path) for arm, path in extras]
    if not snapshots:
        raise click.ClickException("no snapshot to evaluate: train first")
    first_arm = p.arms[0].name
    references: dict[str, Path] = {}
    for snap in snapshots:
        _advantage(p, lay, snap, snap.name, snap.arm, references, seed, stockfish)
    for snap in snapshots:
        if snap.arm != first_arm:
            _advantage(p, lay, snap, cross_name(snap, first_arm), first_arm, references, seed,
                       stockfish)
    return snapshots


def cross_name(snap: Snapshot, arm: str) -> str:
    """The evaluation of a snapshot on another arm's positions."""
    return f"{snap.name}-on-{arm}"


def _advantage(p: FrontierPreset, lay: Layout, snap: Snapshot, name: str, positions_arm: str,
               references: dict[str, Path], seed: int, stockfish: str | None) -> None:
    from transcend.evaluation.advantage import AdvantageOptions, run_advantage

    out = lay.evaluation(name)
    reference = references.setdefault(positions_arm, out / "positions.csv")
    if is_newer(out / "summary.json", snap.model):
        log_stage("evaluate", f"{out} is up to date: skipped")
        return
    heldout = lay.heldout(positions_arm)
    log_stage("evaluate", f"{name}: advantage on {positions_arm}'s held-out positions")
    drawing = ({"per_bin": p.per_bin} if reference == out / "positions.csv"
               else {"positions_from": reference})
    run_advantage(AdvantageOptions(
        snap.model, out, [heldout] if "per_bin" in drawing else [], p.per_bin * 5, p.temps,
        nodes=p.nodes, seed=seed, cache=lay.out / "stockfish-cache", stockfish=stockfish,
        train_data=lay.data(snap.arm), **drawing), progress=sys.stderr.isatty())


def read_summary(lay: Layout, snap: Snapshot) -> dict[str, Any]:
    return json.loads((lay.evaluation(snap.name) / "summary.json").read_text())


def headline(summary: dict[str, Any], mode: str = "token") -> dict[str, Any]:
    """The overall figures at the lowest non-zero temperature (T = 0.01 in the presets)."""
    temps = [t for t in summary["temperatures"] if t > 0] or summary["temperatures"]
    return summary["results"][mode][f"{min(temps):g}"]


def played_gain(summary: dict[str, Any], candidates: dict[str, int],
                mode: str = "token") -> dict[str, Any]:
    """The gain with every familiarity bin weighted by its share of the held-out positions.

    Stratified sampling gives every bin the same weight; in play nearly every position is
    unfamiliar. Weighting each bin's gain by how many candidate positions it had gives the
    per-move gain as the held-out games met them; bins are sampled independently, so their
    errors (standard error = interval width / 3.92) add in quadrature. ``candidates`` are the
    positions per bin of the draw (the arm's first snapshot's sampling).
    """
    bins = headline(summary, mode).get("familiarity") or {}
    rows = [(candidates.get(b, 0), stats) for b, stats in bins.items()
            if stats.get("gain") is not None and candidates.get(b, 0)]
    total = sum(n for n, _ in rows)
    if not total:
        return {"gain": None}
    gain = sum(n / total * st["gain"] for n, st in rows)
    se = math.sqrt(sum((n / total * (st["ci_high"] - st["ci_low"]) / 3.92) ** 2
                       for n, st in rows))
    return {"gain": gain, "ci_low": gain - 1.96 * se, "ci_high": gain + 1.96 * se}


def best_snapshot(lay: Layout, snapshots: Sequence[Snapshot]) -> Snapshot:
    """The snapshot with the highest overall gain at the lowest temperature (token mode)."""
    return max(snapshots, key=lambda s: headline(read_summary(lay, s))["overall"]["gain"])


def stage_games(p: FrontierPreset, lay: Layout, snapshots: Sequence[Snapshot], concurrency: int,
                seed: int) -> Snapshot:
    """The best snapshot against its own experts, a random mover and noisier experts."""
    from transcend.evaluation.sweep import run_sweep

    best = best_snapshot(lay, snapshots)
    out = lay.games(best.name)
    if is_newer(out / "summary.md", best.model):
        log_stage("games", f"{out} is up to date: skipped")
        return best
    experts = next(arm.experts for arm in p.arms if arm.name == best.arm)
    log_stage("games", f"{best.name} at T = {', '.join(f'{t:g}' for t in p.match_temps)}")
    run_sweep(best.model, p.match_temps, p.match_opponents, p.match_games, out,
              concurrency=concurrency, max_moves=p.max_moves, anchors={"random": 0.0},
              seed=seed, progress=sys.stderr.isatty(), calibrate=False, experts=experts,
              opponent_games=p.match_opponent_games)
    return best


def _pm(stats: dict[str, Any]) -> str:
    """'+0.012 (-0.004 to +0.028)' for a gain with its interval; '-' when there is none."""
    if stats.get("gain") is None:
        return "-"
    return f"{stats['gain']:+.3f} ({stats['ci_low']:+.3f} to {stats['ci_high']:+.3f})"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _crossing(summary: dict[str, Any], mode: str = "token") -> str:
    cross = (summary.get("crossing") or {}).get(mode) or {}
    if cross.get("familiarity") is None:
        return cross.get("status", "-")
    low = "-" if cross.get("low") is None else f"{cross['low']:,.0f}"
    high = "beyond" if cross.get("high") is None else f"{cross['high']:,.0f}"
    return f"{cross['familiarity']:,.0f} ({low} to {high}; {cross['status']})"


def _where(fit: dict[str, Any]) -> str:
    if fit["crossing_log10_tokens"] is None:
        return "no token count on this fit (it does not move that way)"
    interval = fit.get("crossing_log10_tokens_ci")
    return (f"10^{fit['crossing_log10_tokens']:.1f} tokens"
            + (f" (95%: 10^{interval[0]:.1f} to 10^{interval[1]:.1f})" if interval else "")
            + f"; {fit['never_crosses_share']:.0%} of redrawn fits never get there")


def _trend_line(label: str, tokens: Sequence[int], stats: Sequence[dict[str, Any]]) -> str:
    fit = fit_trend(tokens, [s["gain"] for s in stats], [s["ci_low"] for s in stats],
                    [s["ci_high"] for s in stats])
    path = " → ".join(f"{s['gain']:+.3f}" for s in stats)
    return (f"{label}: {path}; "
            f"{fit['slope_per_decade']:+.4f} ± {fit['slope_se']:.4f} per tenfold tokens; "
            f"zero at " + _where(fit))


def compute_plot(snapshots: Sequence[Snapshot], summaries: dict[str, dict[str, Any]], path: Path,
                 candidates: dict[str, dict[str, int]]) -> Path | None:
    """frontier-compute.png, lowest temperature, token mode. Top: the gain per familiarity bin
    against tokens, one panel per size and arm. Bottom: the overall gain (bins alike, and as
    played) against training FLOPs, and the crossing familiarity against tokens."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None

    groups: dict[tuple[str, str], list[Snapshot]] = {}
    for snap in sorted(snapshots, key=lambda s: s.tokens):
        groups.setdefault((snap.size, snap.arm), []).append(snap)
    bins = summaries[snapshots[0].name]["bins"]["familiarity"]
    colours = plt.get_cmap("viridis")
    columns = max(2, len(groups))
    fig, axes = plt.subplots(2, columns, figsize=(4.6 * columns, 8.5), squeeze=False)
    for ax in axes[0][len(groups):]:
        ax.set_visible(False)
    for ax in axes[1][2:]:
        ax.set_visible(False)
    overall_ax, crossing_ax = axes[1][0], axes[1][1]
    for g, ((size, arm), snaps) in enumerate(groups.items()):
        ax = axes[0][g]
        tokens = [s.tokens for s in snaps]
        group = [summaries[s.name] for s in snaps]
        heads = [headline(summary) for summary in group]
        for b, label in enumerate(bins):
            stats = [(h["familiarity"] or {}).get(label, {}) for h in heads]
            ax.errorbar(tokens, [st.get("gain") or float("nan") for st in stats],
                        yerr=[[(st.get("gain") or 0) - (st.get("ci_low") or 0) for st in stats],
                              [(st.get("ci_high") or 0) - (st.get("gain") or 0) for st in stats]],
                        marker="o", capsize=2, color=colours(b / max(1, len(bins) - 1)),
                        label=f"familiarity {label}")
        ax.set_title(f"{size} on {arm}: gain by familiarity")
        ax.set_xlabel("training tokens (characters)")
        colour = f"C{g}"
        overall = [h["overall"] for h in heads]
        played = [played_gain(summary, candidates[arm]) for summary in group]
        flops = [s.flops for s in snaps]
        overall_ax.errorbar(flops, [o["gain"] for o in overall],
                            yerr=[[o["gain"] - o["ci_low"] for o in overall],
                                  [o["ci_high"] - o["gain"] for o in overall]],
                            fmt="-o", color=colour, capsize=3,
                            label=f"{size} {arm}: bins alike")
        if all(p["gain"] is not None for p in played):
            overall_ax.plot(flops, [p["gain"] for p in played], "--s", color=colour,
                            label=f"{size} {arm}: as played")
        crossings = [(summary.get("crossing") or {}).get("token") or {} for summary in group]
        shown = [(t, c) for t, c in zip(tokens, crossings, strict=True)
                 if c.get("familiarity") is not None]
        if shown:
            crossing_ax.errorbar(
                [t for t, _ in shown], [1 + c["familiarity"] for _, c in shown],
                yerr=[[c["familiarity"] - (c.get("low") or c["familiarity"]) for _, c in shown],
                      [(c.get("high") or c["familiarity"]) - c["familiarity"]
                       for _, c in shown]],
                fmt="-o", color=colour, capsize=3, label=f"{size} {arm}")
    for ax in [*axes[0][:len(groups)], overall_ax]:
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_ylabel("model - expert (win probability)")
    for ax in [*axes[0][:len(groups)], overall_ax, crossing_ax]:
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    overall_ax.set_xlabel("training FLOPs (6 N D)")
    overall_ax.set_title("overall gain (95% intervals for bins alike)")
    crossing_ax.set_yscale("log")
    crossing_ax.set_xlabel("training tokens (characters)")
    crossing_ax.set_ylabel("1 + familiarity where the gain crosses 0")
    crossing_ax.set_title("the frontier: crossing familiarity (95%)")
    fig.tight_layout()
    return write_figure(fig, path, dpi=100)


def write_report(p: FrontierPreset, preset_name: str, lay: Layout,
                 snapshots: Sequence[Snapshot]) -> Path:
    """report.md: data and diversity, every snapshot's figures, the trend and the games."""
    summaries = {s.name: read_summary(lay, s) for s in snapshots}
    candidates: dict[str, dict[str, int]] = {}
    for snap in snapshots:  # each arm's first snapshot drew its positions
        candidates.setdefault(snap.arm, summaries[snap.name]["sampling"].get("candidates") or {})
    first = summaries[snapshots[0].name]
    temp = min([t for t in first["temperatures"] if t > 0] or first["temperatures"])
    lines = [f"# Frontier study `{preset_name}`", "",
             f"Reproduce with `transcend frontier --preset {preset_name} --out {lay.out}`. "
             f"Positions: {first['positions']} from each arm's held-out games, "
             f"sampling {json.dumps(first['sampling'])}; Stockfish {first['nodes']:,} nodes a "
             f"position. Figures are token mode at T = {temp:g} unless named.", "",
             "## Data", "", "| arm | experts | games | training tokens | diversity |",
             "|---|---|---|---|---|"]
    for arm in p.arms:
        manifest_path = lay.data(arm.name) / "manifest.json"
        if not manifest_path.exists():
            continue
        manifest = json.loads(manifest_path.read_text())
        diversity = manifest.get("diversity") or {}
        value = diversity.get("value")
        lines.append(f"| {arm.name} | {'; '.join(arm.experts)} | {manifest['games']['kept']:,} "
                     f"| {manifest['tokens']['train']:,} | "
                     f"{'-' if value is None else f'{value:.3f}'} "
                     f"({diversity.get('positions', 0)} positions) |")
    lines += ["", "## Every snapshot", "",
              "| snapshot | size | parameters | tokens | FLOPs | gain | gain as played | "
              "move mode | majority move | crossing familiarity |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for snap in snapshots:
        head = headline(summaries[snap.name])
        move = headline(summaries[snap.name], "move") if "move" in summaries[snap.name][
            "results"] else {"overall": {}}
        lines.append(f"| {snap.name} | {snap.size} | {snap.params:,} | {snap.tokens:,} | "
                     f"{snap.flops:.2e} | {_pm(head['overall'])} | "
                     f"{_pm(played_gain(summaries[snap.name], candidates[snap.arm]))} | "
                     f"{_pm(move['overall'])} | "
                     f"{_share(head['overall'].get('majority_share'))} | "
                     f"{_crossing(summaries[snap.name])} |")
    first_arm = p.arms[0].name
    lines += ["", f"## Every model on {first_arm}'s positions", "",
              f"The same positions for all: {first_arm}'s models against their own experts' "
              "moves; the other arms' models against those same moves (not their own experts').",
              "", "| snapshot | arm | tokens | model | experts' move | gain | majority move |",
              "|---|---|---|---|---|---|---|"]
    for snap in snapshots:
        if snap.arm == first_arm:
            overall = headline(summaries[snap.name])["overall"]
        elif (lay.evaluation(cross_name(snap, first_arm)) / "summary.json").exists():
            cross = lay.evaluation(cross_name(snap, first_arm)) / "summary.json"
            overall = headline(json.loads(cross.read_text()))["overall"]
        else:
            continue
        lines.append(f"| {snap.name} | {snap.arm} | {snap.tokens:,} | {overall['model']:.3f} | "
                     f"{overall['expert']:.3f} | {_pm(overall)} | "
                     f"{_share(overall.get('majority_share'))} |")
    bins = first["bins"]["familiarity"]
    lines += ["", "## Gain by familiarity", "", "| snapshot | " + " | ".join(bins) + " |",
              "|---|" + "---|" * len(bins)]
    for snap in snapshots:
        fam = headline(summaries[snap.name]).get("familiarity") or {}
        cells = [f"{_pm(fam.get(b, {}))} n={fam.get(b, {}).get('n', 0)}" for b in bins]
        lines.append(f"| {snap.name} | " + " | ".join(cells) + " |")
    lines += ["", "## Trend", "",
              "Straight lines against log10(tokens), each point weighted by its interval; the "
              "interval of each crossing comes from refitting lines through points redrawn "
              "within their errors. A line in log tokens is a summary of a few snapshots, not a "
              "law: read the extrapolations as orders of magnitude.", ""]
    for (size, arm) in sorted({(s.size, s.arm) for s in snapshots}):
        group = sorted((s for s in snapshots if (s.size, s.arm) == (size, arm)),
                       key=lambda s: s.tokens)
        if len({s.tokens for s in group}) < 2:
            continue
        tokens = [s.tokens for s in group]
        overall = [headline(summaries[s.name])["overall"] for s in group]
        played = [played_gain(summaries[s.name], candidates[arm]) for s in group]
        lines.append(f"- **{size} on {arm}** ({len(group)} snapshots):")
        lines.append("  - " + _trend_line("gain, bins weighted alike", tokens, overall))
        if all(p["gain"] is not None for p in played):
            lines.append("  - " + _trend_line("gain as played (bins weighted by the held-out "
                                              "positions)", tokens, played))
        crossings = [(summaries[s.name].get("crossing") or {}).get("token") or {}
                     for s in group]
        if all(c.get("familiarity") is not None and c.get("low") is not None
               and c.get("high") is not None for c in crossings):
            # The frontier falls towards familiarity 0: fit -log10(1 + familiarity), which
            # reaches zero where the model would gain even on positions it never saw.
            fit = fit_trend(tokens, [-math.log10(1 + c["familiarity"]) for c in crossings],
                            [-math.log10(1 + c["high"]) for c in crossings],
                            [-math.log10(1 + c["low"]) for c in crossings])
            lines.append(f"  - crossing familiarity: log10(1 + familiarity) falls by "
                         f"{fit['slope_per_decade']:.2f} ± {fit['slope_se']:.2f} per tenfold "
                         f"tokens; it would reach 0 (a gain on unseen positions) at "
                         + _where(fit))
    plot = compute_plot(snapshots, summaries, lay.out / "frontier-compute.png", candidates)
    if plot is not None:
        lines += ["", f"![gain against compute]({plot.name})"]
    played = [s for s in snapshots if (lay.games(s.name) / "summary.md").exists()]
    if played:
        lines += ["", "## Games", "",
                  "The best snapshot by the gain above plays its experts, a random mover and "
                  "noisier experts; earlier bests keep their games.", ""]
    for snap in played:
        lines += [f"### {snap.name}", "", (lay.games(snap.name) / "summary.md").read_text()]
    report = lay.out / "report.md"
    write_atomic(report, "\n".join(lines) + "\n")
    return report
