"""The frontier study's report: ``report.md`` and ``frontier-compute.png`` from the snapshots'
advantage summaries, probes and games."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transcend.engine.files import write_atomic, write_figure
from transcend.training.studies.frontier import rating_time
from transcend.training.studies.frontier.study import (
    FrontierPreset,
    Layout,
    Snapshot,
    cross_name,
    fit_trend,
    headline,
    played_gain,
    read_summary,
)


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
    against tokens, one panel per kind of training (size, arm, objective). Bottom: the overall
    gain (bins alike, and as played) against training FLOPs, and the crossing familiarity
    against tokens."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None

    groups: dict[str, list[Snapshot]] = {}
    for snap in sorted(snapshots, key=lambda s: s.tokens):
        groups.setdefault(snap.group, []).append(snap)
    bins = summaries[snapshots[0].name]["bins"]["familiarity"]
    colours = plt.get_cmap("viridis")
    columns = max(2, len(groups))
    fig, axes = plt.subplots(2, columns, figsize=(4.6 * columns, 8.5), squeeze=False)
    for ax in axes[0][len(groups):]:
        ax.set_visible(False)
    for ax in axes[1][2:]:
        ax.set_visible(False)
    overall_ax, crossing_ax = axes[1][0], axes[1][1]
    for g, (label, snaps) in enumerate(groups.items()):
        arm = snaps[0].arm
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
        ax.set_title(f"{label}: gain by familiarity", fontsize="small")
        ax.set_xlabel("training tokens (characters)")
        colour = f"C{g}"
        overall = [h["overall"] for h in heads]
        played = [played_gain(summary, candidates[arm]) for summary in group]
        flops = [s.flops for s in snaps]
        overall_ax.errorbar(flops, [o["gain"] for o in overall],
                            yerr=[[o["gain"] - o["ci_low"] for o in overall],
                                  [o["ci_high"] - o["gain"] for o in overall]],
                            fmt="-o", color=colour, capsize=3,
                            label=f"{label}: bins alike")
        if all(p["gain"] is not None for p in played):
            overall_ax.plot(flops, [p["gain"] for p in played], "--s", color=colour,
                            label=f"{label}: as played")
        crossings = [(summary.get("crossing") or {}).get("token") or {} for summary in group]
        shown = [(t, c) for t, c in zip(tokens, crossings, strict=True)
                 if c.get("familiarity") is not None]
        if shown:
            crossing_ax.errorbar(
                [t for t, _ in shown], [1 + c["familiarity"] for _, c in shown],
                yerr=[[c["familiarity"] - (c.get("low") or c["familiarity"]) for _, c in shown],
                      [(c.get("high") or c["familiarity"]) - c["familiarity"]
                       for _, c in shown]],
                fmt="-o", color=colour, capsize=3, label=label)
    for ax in [*axes[0][:len(groups)], overall_ax]:
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_ylabel("model - expert (win probability)")
    for ax in [*axes[0][:len(groups)], overall_ax, crossing_ax]:
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a crossing panel may have no crossing to show
            ax.legend(fontsize="x-small")
    overall_ax.set_xlabel("training FLOPs (6 N D)")
    overall_ax.set_title("overall gain (95% intervals for bins alike)")
    crossing_ax.set_yscale("log")
    crossing_ax.set_xlabel("training tokens (characters)")
    crossing_ax.set_ylabel("1 + familiarity where the gain crosses 0")
    crossing_ax.set_title("the frontier: crossing familiarity (95%)")
    fig.tight_layout()
    return write_figure(fig, path, dpi=100)


def read_probe(lay: Layout, snap: Snapshot) -> dict[str, Any] | None:
    path = lay.probe(snap.name) / "probe.json"
    return json.loads(path.read_text()) if path.exists() else None


def _probe_cell(probe: dict[str, Any] | None) -> str:
    """'0.912 / 0.871 (L4)': best layer's accuracy, and occupied squares at plies 21-40."""
    from transcend.training.studies.probe import middlegame

    if probe is None:
        return "-"
    best = probe["layers"][probe["best_layer"]]
    middle = middlegame(probe)
    return (f"{best['accuracy']:.3f} / {'-' if middle is None else f'{middle:.3f}'} "
            f"(L{probe['best_layer']})")


def _familiarity_zero(summary: dict[str, Any]) -> str:
    fam = headline(summary).get("familiarity") or {}
    return _pm(fam.get("0", {}))


def board_section(lay: Layout, snapshots: Sequence[Snapshot], summaries: dict[str, Any],
                  candidates: dict[str, dict[str, int]]) -> list[str]:
    """Runs with and without the board loss, token count by token count."""
    if not any(s.board_loss for s in snapshots):
        return []
    lines = ["", "## Board supervision", "",
             "Snapshots of the same size and arm, trained with and without the board loss, at "
             "equal tokens and on the same positions. Probe: the best layer's test accuracy "
             "over all squares / over occupied squares at plies 21-40 (`transcend probe`).", "",
             "| tokens | snapshot | board loss | gain | gain as played | gain, familiarity 0 | "
             "crossing familiarity | probe |", "|---|---|---|---|---|---|---|---|"]
    for snap in sorted(snapshots, key=lambda s: (s.tokens, s.board_loss, s.name)):
        summary = summaries[snap.name]
        lines.append(f"| {snap.tokens:,} | {snap.name} | {snap.board_loss:g} | "
                     f"{_pm(headline(summary)['overall'])} | "
                     f"{_pm(played_gain(summary, candidates[snap.arm]))} | "
                     f"{_familiarity_zero(summary)} | {_crossing(summary)} | "
                     f"{_probe_cell(read_probe(lay, snap))} |")
    return lines


def rating_time_section(p: FrontierPreset, lay: Layout, snapshots: Sequence[Snapshot],
                        ratings: list[dict[str, Any]]) -> list[str]:
    """Every run's snapshots rated against the hours each had trained, with the experts and
    any extra models as lines (rating-time.png)."""
    from transcend.evaluation.players import parse_spec

    points = rating_time.time_points(ratings, [
        (s.run, s.tokens, s.model, lay.run(s.run) / "metrics.jsonl") for s in snapshots if s.run])
    if not points:
        return []
    experts = {parse_spec(e).name for arm in p.arms for e in arm.experts}
    extras = [s.model.stem for s in snapshots if not s.run]
    references = {r["name"]: r["elo"] for r in ratings if r["name"] in experts or any(
        rating_time.player_temperature(r["name"], stem) is not None for stem in extras)}
    lines = ["", "## Rating against training time", "",
             "Each snapshot's rating in the list above against the hours its run had trained "
             "(its own clock). Lines: "
             + ", ".join(f"{name} {elo:.0f}" for name, elo in sorted(references.items())) + ".",
             "", *rating_time.table(points)]
    figure = rating_time.plot(points, references, lay.out / "rating-time.png")
    if figure is not None:
        lines += ["", f"![rating against training time]({figure.name})"]
    return lines


def write_report(p: FrontierPreset, preset_name: str, lay: Layout,
                 snapshots: Sequence[Snapshot], games: int | None = None) -> Path:
    """report.md: data and diversity, every snapshot's figures, the trend and the games."""
    summaries = {s.name: read_summary(lay, s) for s in snapshots}
    candidates: dict[str, dict[str, int]] = {}
    for snap in snapshots:  # each arm's first snapshot drew its positions
        candidates.setdefault(snap.arm, summaries[snap.name]["sampling"].get("candidates") or {})
    first = summaries[snapshots[0].name]
    temp = min([t for t in first["temperatures"] if t > 0] or first["temperatures"])
    lines = [f"# Frontier study `{preset_name}`", "",
             f"Reproduce with `transcend frontier --preset {preset_name} --out {lay.out}"
             f"{f' --games {games}' if games else ''}`. "
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
              "move mode | majority move | crossing familiarity | board probe |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for snap in snapshots:
        head = headline(summaries[snap.name])
        move = headline(summaries[snap.name], "move") if "move" in summaries[snap.name][
            "results"] else {"overall": {}}
        lines.append(f"| {snap.name} | {snap.size} | {snap.params:,} | {snap.tokens:,} | "
                     f"{snap.flops:.2e} | {_pm(head['overall'])} | "
                     f"{_pm(played_gain(summaries[snap.name], candidates[snap.arm]))} | "
                     f"{_pm(move['overall'])} | "
                     f"{_share(head['overall'].get('majority_share'))} | "
                     f"{_crossing(summaries[snap.name])} | "
                     f"{_probe_cell(read_probe(lay, snap))} |")
    lines += board_section(lay, snapshots, summaries, candidates)
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
    for label in sorted({s.group for s in snapshots}):
        group = sorted((s for s in snapshots if s.group == label), key=lambda s: s.tokens)
        arm = group[0].arm
        if len({s.tokens for s in group}) < 2:
            continue
        tokens = [s.tokens for s in group]
        overall = [headline(summaries[s.name])["overall"] for s in group]
        played = [played_gain(summaries[s.name], candidates[arm]) for s in group]
        lines.append(f"- **{label}** ({len(group)} snapshots):")
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
        who = ("Every snapshot" if p.games_per_snapshot
               else "The best snapshot by the gain above")
        lines += ["", "## Games", "",
                  f"{who} plays its experts, a random mover and noisier experts; earlier "
                  "players keep their games.", ""]
    for snap in played:
        lines += [f"### {snap.name}", "", (lay.games(snap.name) / "summary.md").read_text()]
    joint = lay.out / "games" / "joint.md"
    if joint.exists():
        lines += ["### Every snapshot that played, in one list", "", joint.read_text()]
    if p.games_per_snapshot and joint.with_suffix(".json").exists():
        lines += rating_time_section(p, lay, snapshots,
                                     json.loads(joint.with_suffix(".json").read_text()))
    report = lay.out / "report.md"
    write_atomic(report, "\n".join(lines) + "\n")
    return report
