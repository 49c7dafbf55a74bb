"""The advantage analysis's files: advantage.csv, positions.csv, summary.md, summary.json and
the plots."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import chess
import click
import numpy as np

from transcend.engine.files import write_atomic, write_figure
from transcend.evaluation.advantage.familiarity import (
    FAMILIARITY_BINS,
    MAJORITY_MIN,
    PLY_BINS,
    ply_bin,
)
from transcend.evaluation.advantage.frontier import frontier_plot, summary_json
from transcend.evaluation.advantage.positions import MIDDLEGAME_PLIES, OPENING_PLIES
from transcend.evaluation.advantage.results import CSV_COLUMNS, AdvantageResult
from transcend.evaluation.advantage.stockfish import LICHESS_K


def write_report(result: AdvantageResult, model: Path, plots: bool = True) -> None:
    """Every file of the analysis into ``result.out``; the plots only with ``plots``."""
    result.out.mkdir(parents=True, exist_ok=True)
    _write_csv(result.csv, CSV_COLUMNS,
               [[_cell(getattr(r, c)) for c in CSV_COLUMNS] for r in result.rows])
    _write_positions(result, [p.board() for p in result.positions])
    if plots:
        result.plot, result.gains_plot = _plots(result)
        if result.familiarity is not None:
            result.frontier_plot = frontier_plot(result)
    assert result.summary_json is not None
    write_atomic(result.summary_json, json.dumps(summary_json(result, model), indent=2) + "\n")
    write_atomic(result.summary, summary_markdown(result, model))


def _cell(value: object) -> object:
    return f"{value:.6g}" if isinstance(value, float) else value


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue())


def _moves_cell(values: dict[str, float]) -> str:
    """``e2e4:0.52 d2d4:0.51 ...``: one number per legal move, best first."""
    return " ".join(f"{m}:{v:.6g}" for m, v in sorted(values.items(), key=lambda kv: -kv[1]))


def _write_positions(result: AdvantageResult, boards: Sequence[chess.Board]) -> None:
    """positions.csv: one row per position, with everything needed to redo the analysis."""
    keys = [(m, t) for m in result.modes for t in result.temps]
    header = ["source", "ply", "phase", "fen", "legal_moves", "expert_move", "best_move",
              "expert_win_prob", "best_win_prob", "random_win_prob",
              *[f"model_{m}_T{t:g}" for m, t in keys],
              "moves", "ply_bin", "familiarity", "familiarity_bin", "majority_move",
              "majority_count", "win_probs", *[f"probs_{m}_T{t:g}" for m, t in keys]]
    rows = []
    for i, (pos, board) in enumerate(zip(result.positions, boards, strict=True)):
        fam = result.familiarity[i] if result.familiarity is not None else None
        rows.append([pos.source, pos.ply, pos.phase, board.fen(), board.legal_moves.count(),
                     pos.expert.uci(), result.best_moves[i], _cell(result.expert[i]),
                     _cell(result.best[i]), _cell(result.random[i]),
                     *[_cell(result.model[k][i]) for k in keys],
                     " ".join(m.uci() for m in pos.history), ply_bin(pos.ply),
                     "" if fam is None else fam.count, "" if fam is None else fam.bin,
                     "" if fam is None else " ".join(m.uci() for m in fam.majority),
                     "" if fam is None or not fam.majority else fam.majority_count,
                     _moves_cell(result.wins[i]) if result.wins else "",
                     *[_moves_cell(result.probs[k][i]) if result.probs else "" for k in keys]])
    _write_csv(result.positions_csv, header, rows)


def _share_of_top(gains: np.ndarray, fraction: float = 0.1) -> float:
    """Share of the total positive gain carried by the top ``fraction`` of positions."""
    positive = np.sort(gains[gains > 0])[::-1]
    if positive.sum() <= 0:
        return math.nan
    top = max(1, math.ceil(fraction * len(gains)))
    return float(positive[:top].sum() / positive.sum())


def summary_markdown(result: AdvantageResult, model: Path) -> str:
    """``summary.md``: the verdict in words, the table, phases, concentration and the setup."""
    modes, temps = result.modes, result.temps
    mode = modes[0]
    main = [r for r in result.rows if r.phase == "all" and r.mode == mode]
    top = max(main, key=lambda r: r.gain)
    n = top.positions
    lines = [f"# Advantage of {model.name} over its experts, move by move", ""]
    winners = [r for r in main if r.gain_low > 0]
    losers = [r for r in main if r.gain_high < 0]
    if winners:
        temps_text = ", ".join(f"{r.temperature:g}" for r in winners)
        lines.append(
            f"**Yes: the model beats its experts per move.** On {n} positions, at temperature "
            f"{top.temperature:g} ({mode} mode) its move has an expected win probability of "
            f"{top.model_win_prob:.3f} against {top.expert_win_prob:.3f} for the move the expert "
            f"played: {top.gain:+.3f} (95% CI {top.gain_low:+.3f} to {top.gain_high:+.3f}). "
            f"The gain is significant at T = {temps_text}.")
    elif len(losers) == len(main):
        lines.append(
            f"**No: the model chooses worse than its experts at every temperature.** On {n} "
            f"positions ({mode} mode) it comes closest at T = {top.temperature:g}: "
            f"{top.model_win_prob:.3f} against the experts' {top.expert_win_prob:.3f}, "
            f"{top.gain:+.3f} (95% CI {top.gain_low:+.3f} to {top.gain_high:+.3f}).")
    else:
        lines.append(
            f"**Not shown: at no temperature is the model significantly better than its experts "
            f"per move.** On {n} positions ({mode} mode) its best is T = {top.temperature:g}: "
            f"{top.model_win_prob:.3f} against the experts' {top.expert_win_prob:.3f}, "
            f"{top.gain:+.3f} (95% CI {top.gain_low:+.3f} to {top.gain_high:+.3f}).")
    lines.append("")
    lines.append(
        f"For scale: a uniformly random legal move scores {top.random_win_prob:.3f} and "
        f"Stockfish's best move {top.best_win_prob:.3f}. Win probabilities are for the side to "
        "move, from Stockfish's score through Lichess's curve; the interval is a bootstrap over "
        "positions.")
    if result.sampling.get("method") == "per-bin":
        lines += ["", "The positions are stratified by familiarity (see Sampling): the overall "
                      "figures weigh every familiarity bin alike, not as often as it comes up "
                      "in play. The bins are the measure here."]
    share = _share_of_top(result.model[(mode, top.temperature)] - result.expert)
    if not math.isnan(share):
        lines += ["", f"Concentration: at T = {top.temperature:g} the 10% of positions where the "
                      f"model gains most carry {share:.0%} of all its gains over the experts "
                      "(see gains.png)."]
    lines += ["", "## All temperatures", "", result.table_markdown(), ""]
    lines += [f"## By phase ({mode} mode, T = {top.temperature:g})", "",
              "| phase | positions | model | expert | gain (95% CI) | random | best |",
              "|---|---|---|---|---|---|---|"]
    for r in result.rows:
        if r.group == "phase" and r.mode == mode and r.temperature == top.temperature:
            lines.append(f"| {r.phase} | {r.positions} | {r.model_win_prob:.3f} | "
                         f"{r.expert_win_prob:.3f} | {r.gain:+.3f} ({r.gain_low:+.3f} to "
                         f"{r.gain_high:+.3f}) | {r.random_win_prob:.3f} | "
                         f"{r.best_win_prob:.3f} |")
    if result.familiarity is not None:
        lines += ["", f"## By familiarity ({mode} mode)", "",
                  f"Familiarity: how many of the {result.training_games:,} training games in "
                  f"`{result.train_data}` began with exactly the moves that led to the position. "
                  f"The majority move (familiarity {MAJORITY_MIN} or more) is the move those "
                  "games played most often next; \"plays majority\" is the model's mean "
                  "probability of it, over the positions that have one.", "",
                  *_bin_table(result, mode, "familiarity", FAMILIARITY_BINS)]
        for m, cross in result.crossing.items():
            lines += ["", _crossing_text(m, cross)]
    lines += ["", f"## By ply ({mode} mode)", "",
              "The ply of the move being chosen: 1 is white's first move.", "",
              *_bin_table(result, mode, "ply", PLY_BINS)]
    sampling = result.sampling
    if sampling.get("method") == "per-bin":
        cands, drawn = sampling["candidates"], sampling["drawn"]
        lines += ["", "## Sampling", "",
                  f"Up to {sampling['per_bin']} positions per familiarity bin, drawn uniformly "
                  f"(seed {sampling['seed']}) from every position with two or more legal moves "
                  "of the held-out games:", "",
                  "| familiarity | candidates | drawn |", "|---|---|---|",
                  *[f"| {b} | {cands[b]:,} | {drawn[b]} |" for b in FAMILIARITY_BINS]]
    elif sampling.get("method") == "positions-from":
        lines += ["", "## Sampling", "",
                  f"The {sampling['positions']} positions of `{sampling['file']}`."]
    skipped = ", ".join(f"{v} {k}" for k, v in sorted(result.skipped.items())) or "none"
    sources = sorted({p.source.rsplit("#", 1)[0] for p in result.positions})
    lines += ["", "## Setup", "",
              f"- model: `{model}`",
              f"- positions: {n} from {len({p.source for p in result.positions})} games in "
              f"{', '.join(sources)} (phases by ply: opening < {OPENING_PLIES}, middlegame < "
              f"{MIDDLEGAME_PLIES}, endgame after)"
              + (f"; {result.requested} were asked for, the games held no more"
                 if result.requested > n else ""),
              f"- skipped: {skipped}",
              f"- Stockfish: {result.engine}, {result.nodes} nodes a position over all legal "
              f"moves (MultiPV); {result.cache_hits} of {n} analyses from the cache",
              f"- win probability: 1 / (1 + exp(-{LICHESS_K} * cp)), mate 1 or 0",
              f"- temperatures: {', '.join(f'{t:g}' for t in temps)}; modes: {', '.join(modes)}",
              ""]
    return "\n".join(lines)


def _bin_table(result: AdvantageResult, mode: str, group: str,
               labels: Sequence[str]) -> list[str]:
    lines = ["| bin | T | positions | model | expert | gain (95% CI) | random | best | "
             "plays majority |", "|---|---|---|---|---|---|---|---|---|"]
    for label in labels:
        for r in result.rows:
            if r.group == group and r.phase == label and r.mode == mode:
                majority = ("-" if r.majority_positions == 0 else
                            f"{r.majority_share:.1%} ({r.majority_positions})")
                lines.append(
                    f"| {label} | {r.temperature:g} | {r.positions} | {r.model_win_prob:.3f} | "
                    f"{r.expert_win_prob:.3f} | {r.gain:+.3f} ({r.gain_low:+.3f} to "
                    f"{r.gain_high:+.3f}) | {r.random_win_prob:.3f} | {r.best_win_prob:.3f} | "
                    f"{majority} |")
    return lines


def _crossing_text(mode: str, cross: dict[str, object]) -> str:
    head = f"Crossing ({mode} mode, T = {cross['temperature']:g}): "
    status = cross["status"]
    if status == "insufficient":
        return head + "too few positions or familiarities for a fit."

    def fmt(v: object) -> str:
        return "beyond any familiarity" if v is None else f"{float(v):,.1f}"  # type: ignore[arg-type]

    interval = f"95% CI {fmt(cross['low'])} to {fmt(cross['high'])}"
    if status == "no crossing":
        return (head + f"the fitted gain does not rise with familiarity (slope "
                f"{cross['slope']:+.4f} per decade), so it crosses zero nowhere ({interval}).")
    outside = {"extrapolated": "; beyond the familiarities measured",
               "above zero everywhere": "; the line is above zero at every familiarity"
               }.get(str(status), "")
    return (head + f"the fitted gain {cross['intercept']:+.4f} {cross['slope']:+.4f} x "
            f"log10(1 + familiarity) is zero at familiarity {fmt(cross['familiarity'])} "
            f"({interval}{outside}). See frontier.png.")


def _plots(result: AdvantageResult) -> tuple[Path | None, Path | None]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        click.echo("matplotlib is not installed: no plots (pip install matplotlib)", err=True)
        return None, None
    modes, temps = result.modes, result.temps
    xs = [max(t, 1e-4) for t in temps]  # a log axis has no room for T = 0
    main = {m: [result.row(m, t) for t in temps] for m in modes}
    first = main[modes[0]][0]
    fig, (ax, gain_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for mode, rows in main.items():
        ax.plot(xs, [r.model_win_prob for r in rows], marker="o", label=f"model ({mode} mode)")
        # The gain's interval is paired (same positions for model and expert), so it is far
        # narrower than the spread of the level itself, which mostly reflects the positions.
        gain_ax.plot(xs, [r.gain for r in rows], marker="o", label=f"{mode} mode")
        gain_ax.fill_between(xs, [r.gain_low for r in rows], [r.gain_high for r in rows],
                             alpha=0.2)
    ax.axhline(first.expert_win_prob, color="black", linestyle="--", label="expert's move")
    ax.axhline(first.best_win_prob, color="tab:green", linestyle="-.", label="best move")
    ax.axhline(first.random_win_prob, color="tab:red", linestyle=":", label="random move")
    ax.set_ylabel("expected win probability of the move played")
    ax.set_title(f"{first.positions} positions, Stockfish {result.nodes} nodes a position")
    gain_ax.axhline(0, color="black", linestyle="--", label="expert's move")
    gain_ax.set_ylabel("model - expert (win probability)")
    gain_ax.set_title("gain over the expert, 95% bootstrap band")
    for axis in (ax, gain_ax):
        axis.set_xscale("log")
        axis.set_xlabel("temperature")
        axis.legend(fontsize="small")
        axis.grid(alpha=0.3)
    fig.tight_layout()
    plot = write_figure(fig, result.out / "advantage.png")

    mode = modes[0]
    shown = sorted({min(temps), *(t for t in temps if t == 1.0)})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    bins = np.linspace(-1, 1, 41)
    for t in shown:
        gains = result.model[(mode, t)] - result.expert
        left.hist(gains, bins=bins, alpha=0.5, label=f"T = {t:g}")
        order = np.sort(gains)[::-1]
        right.plot(np.arange(1, len(order) + 1) / len(order), np.cumsum(order),
                   label=f"T = {t:g}")
    left.set_yscale("log")
    left.set_xlabel("gain over the expert's move (win probability)")
    left.set_ylabel("positions")
    left.set_title(f"per-position gain ({mode} mode)")
    left.legend(fontsize="small")
    right.axhline(0, color="black", linewidth=0.8)
    right.set_xlabel("fraction of positions, largest gain first")
    right.set_ylabel("cumulative gain (sum over positions)")
    right.set_title("where the gain comes from")
    right.legend(fontsize="small")
    right.grid(alpha=0.3)
    fig.tight_layout()
    gains_plot = write_figure(fig, result.out / "gains.png")
    return plot, gains_plot


