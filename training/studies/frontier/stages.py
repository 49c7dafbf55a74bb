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
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click

from transcend.engine.files import write_atomic
from transcend.engine.model_file import ModelError, resolve_model
from transcend.training.data.experts import complete_games, generate
from transcend.training.studies.experiment import is_newer, log_stage
from transcend.training.studies.frontier.report import write_report
from transcend.training.studies.frontier.study import (
    Arm,
    FrontierPreset,
    Layout,
    M,
    Run,
    Snapshot,
    cross_name,
    experts_with_noise,
    headline,
    model_facts,
    read_summary,
    tokens_label,
)

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
        match_temps=[0.01], match_games=4, match_opponent_games=2, max_moves=40,
        probe_games=60),
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
        schedule_tokens=8 * M, games_per_run=True),
    # The board as an input against the transcript alone (docs/board.md): `small` reading the
    # transcript, the board, and the board with its attack maps, on one set of 100,000 games.
    # The cosine schedule ends at 4M characters; the 8M snapshots continue at the minimum
    # rate, as `train --resume` continues a finished run. Every snapshot plays, 240 games a
    # temperature, for rating against training time.
    "board-input": FrontierPreset(
        arms=[Arm("eps0.4", experts_with_noise(0.4), 100_000)],
        runs=[Run(name, "eps0.4", "small", [M, 2 * M, 4 * M, 8 * M], board_input=kind)
              for name, kind in (("plain", ""), ("board", "board"), ("attacks", "board+attacks"))],
        schedule_tokens=4 * M, batch_size=8, warmup_steps=50, games_per_snapshot=True,
        match_opponents=["random", "sf:skill=0,nodes=100", "sf:skill=0,nodes=100,eps=0.6",
                         "sf:skill=0,nodes=100,eps=0.8"],
        max_moves=150,
        # A model handed the board holds it whatever it learned: a board probe says nothing.
        probe_games=0),
}


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
    from transcend.training.data.diversity import (
        describe,
        diversity,
        games_of_inputs,
        record_in_manifest,
    )
    from transcend.training.data.prepare import prepare

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
        board_at=run.board_at, board_input=run.board_input)


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


STAGES = ("experts", "data", "train", "evaluate", "probe", "games", "report")


def run_frontier(preset_name: str, out: Path, *, runs: Sequence[str] = (),
                 until: str = "report", extras: Sequence[str] = (), seed: int = 1,
                 concurrency: int = 2, threads: int = 0, stockfish: str | None = None,
                 train_more: bool = True, games: int | None = None) -> Path:
    if preset_name not in PRESETS:
        raise click.UsageError(f"unknown preset {preset_name!r}; one of {sorted(PRESETS)}")
    p = PRESETS[preset_name]
    if games is not None:
        p = replace(p, arms=[replace(arm, games=games) for arm in p.arms])
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
    if last >= STAGES.index("probe") and p.probe_games:
        stage_probe(p, lay, snapshots)
    if last >= STAGES.index("games"):
        stage_games(p, lay, snapshots, concurrency, seed)
    if last < STAGES.index("report"):
        return out
    report = write_report(p, preset_name, lay, snapshots, games)
    log_stage("report", str(report))
    return report


@click.command("frontier")
@click.option("--preset", "preset_name", type=click.Choice(sorted(PRESETS)), default="quick",
              show_default=True, help="quick: about 6 minutes on two cores, tiny models; "
              "full: the measurements of docs/frontier.md (hours); board: the board loss; "
              "board-input: the board as an input, rated against training time "
              "(docs/board.md, hours).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--runs", default="", help="Only make the data of these runs (comma-separated) "
              "and train them, then stop: several processes can train side by side.")
@click.option("--until", type=click.Choice(STAGES), default="report", show_default=True,
              help="Stop after this stage.")
@click.option("--extra", "extras", multiple=True, metavar="ARM=MODEL",
              help="Also evaluate this ONNX model, trained on ARM's kind of data (repeatable): "
                   "its size and tokens come from its metadata.")
@click.option("--games", type=click.IntRange(min=1), default=None,
              help="Expert games for every arm [default: the preset's].")
@click.option("--train/--no-train", "train_more", default=True, show_default=True,
              help="--no-train evaluates the snapshots that exist, training nothing further.")
@click.option("--concurrency", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=0,
              help="CPU threads for training (0: all).")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--stockfish", default=None, help="Stockfish binary [default: found on PATH].")
def frontier_command(preset_name: str, out: Path, runs: str, until: str,
                     extras: tuple[str, ...], games: int | None, train_more: bool,
                     concurrency: int, threads: int, seed: int, stockfish: str | None) -> None:
    """Where the model transcends its experts, and how training compute moves it."""
    names = [name.strip() for name in runs.split(",") if name.strip()]
    click.echo(run_frontier(preset_name, out, runs=names, until=until, extras=extras,
                            seed=seed, concurrency=concurrency, threads=threads,
                            stockfish=stockfish, train_more=train_more, games=games))


def _snapshot(name: str, arm: str, model: Path, checkpoint: Path | None = None,
              run: str = "") -> Snapshot:
    size, params, tokens, board_loss, board_input = model_facts(model)
    return Snapshot(name, size, arm, tokens, params, model, board_loss, checkpoint, run,
                    board_input)


def parse_extra(text: str, arms: Sequence[str]) -> tuple[str, Path]:
    """'eps0.4=models/default.onnx' -> ('eps0.4', Path('models/default.onnx')), checked; the
    model may be a bundled one's name."""
    arm, sep, path = text.partition("=")
    if not sep or not path:
        raise click.BadParameter(f"expected ARM=MODEL, got {text!r}", param_hint="--extra")
    if arm not in arms:
        raise click.BadParameter(f"no arm {arm!r}; one of {', '.join(arms)}",
                                 param_hint="--extra")
    try:
        return arm, resolve_model(path)
    except ModelError as exc:
        raise click.BadParameter(str(exc), param_hint="--extra") from None


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
    from transcend.training.train import kept_checkpoint_path

    snapshots = [_snapshot(f"{run.name}-{tokens_label(tokens)}", run.arm, model,
                           kept_checkpoint_path(lay.run(run.name), tokens), run.name)
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


def stage_probe(p: FrontierPreset, lay: Layout, snapshots: Sequence[Snapshot]) -> None:
    """A board probe of every snapshot on its arm's held-out games (``transcend probe``): from
    its checkpoint, or from the weights read back out of an exported model."""
    from transcend.training.studies.probe import load_probe_model, probe_model, write_report

    for snap in snapshots:
        source = snap.checkpoint if snap.checkpoint and snap.checkpoint.exists() else snap.model
        out = lay.probe(snap.name)
        if is_newer(out / "probe.json", source):
            log_stage("probe", f"{out} is up to date: skipped")
            continue
        log_stage("probe", f"{snap.name}: board probe on {snap.arm}'s held-out games")
        result = probe_model(load_probe_model(source), [str(lay.heldout(snap.arm))],
                             p.probe_games)
        write_report(result, out, snap.name)


def best_snapshot(lay: Layout, snapshots: Sequence[Snapshot]) -> Snapshot:
    """The snapshot with the highest overall gain at the lowest temperature (token mode)."""
    return max(snapshots, key=lambda s: headline(read_summary(lay, s))["overall"]["gain"])


def stage_games(p: FrontierPreset, lay: Layout, snapshots: Sequence[Snapshot], concurrency: int,
                seed: int) -> list[Snapshot]:
    """The best snapshot (of every run, with ``games_per_run``; every snapshot, with
    ``games_per_snapshot``) against its own experts, a random mover and noisier experts. Where
    several play, the opponents' round robin is played once, with the first, and all their
    games are rated in one list (``games/joint.md``)."""
    from transcend.evaluation.sweep import run_sweep

    if p.games_per_snapshot:
        bests = list(snapshots)
    else:
        groups: dict[str, list[Snapshot]] = {}
        for snap in snapshots:
            if not p.games_per_run or snap.run:
                groups.setdefault(snap.run if p.games_per_run else "", []).append(snap)
        bests = [best_snapshot(lay, group) for group in groups.values()]
    for i, best in enumerate(bests):
        out = lay.games(best.name)
        if is_newer(out / "summary.md", best.model):
            log_stage("games", f"{out} is up to date: skipped")
            continue
        experts = next(arm.experts for arm in p.arms if arm.name == best.arm)
        log_stage("games", f"{best.name} at T = {', '.join(f'{t:g}' for t in p.match_temps)}")
        run_sweep(best.model, p.match_temps, p.match_opponents, p.match_games, out,
                  concurrency=concurrency, max_moves=p.max_moves, anchors={"random": 0.0},
                  seed=seed, progress=sys.stderr.isatty(), calibrate=False, experts=experts,
                  opponent_games=p.match_opponent_games if i == 0 else 0)
    if len(bests) > 1:
        write_joint_list(lay, bests)
    return bests


def write_joint_list(lay: Layout, bests: Sequence[Snapshot]) -> Path:
    """One rating list (random mover = 0) over the games of every snapshot that played."""
    from transcend.evaluation.ratings import format_table, rate, read_outcomes

    # Each sweep's own games, and the opponents' round robin where one was played.
    pgns = [pgn for best in bests for pgn in sorted(lay.games(best.name).glob("*.pgn"))]
    path = lay.out / "games" / "joint.md"
    if all(is_newer(path, pgn) for pgn in pgns):
        log_stage("games", f"{path} is up to date: skipped")
        return path
    ratings = rate(read_outcomes(pgns), "bt", {"random": 0.0}, 1.0)
    write_atomic(path, format_table(ratings, "Maximum-likelihood Elo, random mover = 0, the "
                                    "games of " + ", ".join(b.name for b in bests)) + "\n")
    write_atomic(path.with_suffix(".json"), json.dumps([asdict(r) for r in ratings], indent=2))
    log_stage("games", str(path))
    return path
