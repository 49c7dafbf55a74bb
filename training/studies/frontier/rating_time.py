"""Rating against training time: every snapshot that played, rated in the study's joint list,
against the hours its run had trained when the snapshot was kept.

The hours are the run's own clock (``elapsed_s`` in its ``metrics.jsonl``, which a resumed run
carries on), so runs that shared a machine are compared at the time each was given.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from transcend.engine.files import write_figure


@dataclass
class TimePoint:
    """One snapshot at one temperature: its rating and its run's training time."""

    run: str
    tokens: int
    hours: float
    temperature: float
    elo: float
    low: float
    high: float
    games: int


def training_hours(metrics: Path, tokens: int) -> float | None:
    """Hours of training when the run had seen ``tokens``: interpolated between the logged
    steps around them, or at the run's last logged rate past its last one; None without a
    log."""
    if not metrics.exists():
        return None
    logged = [(0, 0.0)]
    for line in metrics.read_text().splitlines():
        row = json.loads(line)
        if "elapsed_s" in row:
            logged.append((int(row["tokens"]), float(row["elapsed_s"])))
    for (t0, e0), (t1, e1) in zip(logged, logged[1:], strict=False):
        if t0 <= tokens <= t1 and t1 > t0:
            return (e0 + (e1 - e0) * (tokens - t0) / (t1 - t0)) / 3600.0
    last_tokens, last_elapsed = logged[-1]
    return last_elapsed * tokens / last_tokens / 3600.0 if last_tokens else None


def player_temperature(player: str, model_stem: str) -> float | None:
    """The temperature of a sweep's player ``<model stem>-T<temperature>``; None when
    ``player`` is not the model's."""
    prefix = f"{model_stem}-T"
    if not player.startswith(prefix):
        return None
    try:
        return float(player[len(prefix):])
    except ValueError:
        return None


def time_points(ratings: Iterable[dict], snapshots: Iterable[tuple[str, int, Path, Path]]
                ) -> list[TimePoint]:
    """Every (snapshot, temperature) in the rating list. ``snapshots`` holds (run, tokens,
    model, the run's metrics.jsonl); ``ratings`` the list's rows (name, elo, lo95, hi95,
    games)."""
    rows = list(ratings)
    points = []
    for run, tokens, model, metrics in snapshots:
        hours = training_hours(metrics, tokens)
        if hours is None:
            continue
        for row in rows:
            temperature = player_temperature(row["name"], model.stem)
            if temperature is not None:
                points.append(TimePoint(run, tokens, hours, temperature, row["elo"],
                                        row["lo95"], row["hi95"], row["games"]))
    return sorted(points, key=lambda p: (p.run, p.temperature, p.tokens))


def table(points: Sequence[TimePoint]) -> list[str]:
    """Markdown rows: run, temperature, tokens, hours, rating with its interval, games."""
    lines = ["| run | T | tokens | training hours | Elo | 95% interval | games |",
             "|---|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p.run} | {p.temperature:g} | {p.tokens:,} | {p.hours:.3g} | "
                     f"{p.elo:.0f} | {p.low:.0f} to {p.high:.0f} | {p.games} |")
    return lines


def plot(points: Sequence[TimePoint], references: dict[str, float], path: Path,
         title: str = "Rating against training time") -> Path | None:
    """One line per run and temperature, with 95% intervals; ``references`` (name -> Elo,
    e.g. the experts) as horizontal lines. None without matplotlib or points."""
    if not points:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    lines: dict[tuple[str, float], list[TimePoint]] = {}
    for p in points:
        lines.setdefault((p.run, p.temperature), []).append(p)
    for (run, temperature), line in sorted(lines.items()):
        hours = [p.hours for p in line]
        elo = [p.elo for p in line]
        errors = [[p.elo - p.low for p in line], [p.high - p.elo for p in line]]
        ax.errorbar(hours, elo, yerr=errors, marker="o", capsize=3,
                    linestyle="-" if temperature < 0.5 else "--",
                    label=f"{run}, T = {temperature:g}")
    for name, elo in sorted(references.items(), key=lambda kv: -kv[1]):
        ax.axhline(elo, color="grey", linewidth=0.8, linestyle=":")
        ax.annotate(name, (1.0, elo), xycoords=("axes fraction", "data"), fontsize=7,
                    ha="right", va="bottom", color="grey")
    ax.set_xscale("log")
    ax.set_xlabel("training hours (each run's own clock)")
    ax.set_ylabel("Elo (random mover = 0)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return write_figure(fig, path)
