"""The frontier's files: summary.json (every table, machine-readable, with the crossing point)
and frontier.png (gain against familiarity, where it crosses zero)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from transcend.engine.files import write_figure
from transcend.evaluation.advantage.familiarity import FAMILIARITY_BINS, MAJORITY_MIN, PLY_BINS
from transcend.evaluation.advantage.positions import PHASES
from transcend.evaluation.advantage.results import AdvantageResult, AdvantageRow

SUMMARY_FORMAT = "transcend-advantage-summary-1"


def _clean(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _stats(row: AdvantageRow | None) -> dict[str, Any]:
    if row is None:
        return {"n": 0, **{k: None for k in ("model", "model_low", "model_high", "expert",
                                             "gain", "ci_low", "ci_high", "random", "best",
                                             "expert_match", "best_match")},
                "majority_n": 0, "majority_share": None}
    return {"n": row.positions, "model": _clean(row.model_win_prob),
            "model_low": _clean(row.model_low), "model_high": _clean(row.model_high),
            "expert": _clean(row.expert_win_prob), "gain": _clean(row.gain),
            "ci_low": _clean(row.gain_low), "ci_high": _clean(row.gain_high),
            "random": _clean(row.random_win_prob), "best": _clean(row.best_win_prob),
            "expert_match": _clean(row.expert_match), "best_match": _clean(row.best_match),
            "majority_n": row.majority_positions, "majority_share": _clean(row.majority_share)}


def summary_json(result: AdvantageResult, model: Path) -> dict[str, Any]:
    """``summary.json``: every table of the summary, machine-readable (docs/advantage.md)."""
    rows = {(r.mode, r.temperature, r.group, r.phase): r for r in result.rows}
    results: dict[str, dict[str, Any]] = {}
    for mode in result.modes:
        per_t: dict[str, Any] = {}
        for t in result.temps:
            entry: dict[str, Any] = {"overall": _stats(rows.get((mode, t, "all", "all")))}
            for group, labels in (("phase", PHASES), ("ply", PLY_BINS),
                                  ("familiarity", FAMILIARITY_BINS)):
                if group == "familiarity" and result.familiarity is None:
                    entry[group] = None
                    continue
                entry[group] = {b: _stats(rows.get((mode, t, group, b))) for b in labels}
            per_t[f"{t:g}"] = entry
        results[mode] = per_t
    return {
        "format": SUMMARY_FORMAT,
        "model": str(model),
        "train_data": None if result.train_data is None else str(result.train_data),
        "training_games": result.training_games if result.familiarity is not None else None,
        "positions": len(result.positions),
        "modes": result.modes,
        "temperatures": result.temps,
        "nodes": result.nodes,
        "engine": result.engine,
        "seed": result.seed,
        "sampling": {**result.sampling, "skipped": dict(sorted(result.skipped.items()))},
        "bins": {"phase": list(PHASES), "ply": list(PLY_BINS),
                 "familiarity": list(FAMILIARITY_BINS), "majority_min": MAJORITY_MIN},
        "results": results,
        "crossing": result.crossing or None,
    }


def frontier_plot(result: AdvantageResult) -> Path | None:
    """``frontier.png``: gain against familiarity per temperature, one panel per mode."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    assert result.familiarity is not None
    x = np.log10(1.0 + np.array([f.count for f in result.familiarity], dtype=float))
    labels = np.array([f.bin for f in result.familiarity])
    present = [b for b in FAMILIARITY_BINS if (labels == b).any()]
    # Each bin sits at the mean log familiarity of its positions: the axis is log10(1 + f).
    where = {b: float(x[labels == b].mean()) for b in present}
    fig, axes = plt.subplots(1, len(result.modes), figsize=(6.5 * len(result.modes), 4.5),
                             squeeze=False)
    for ax, mode in zip(axes[0], result.modes, strict=True):
        for t in result.temps:
            rows = [result.row(mode, t, b) for b in present]
            xs = [where[b] for b in present]
            ax.plot(xs, [r.gain for r in rows], marker="o", label=f"T = {t:g}")
            ax.fill_between(xs, [r.gain_low for r in rows], [r.gain_high for r in rows],
                            alpha=0.15)
        cross = result.crossing.get(mode, {})
        if cross.get("familiarity") is not None:
            at = math.log10(1 + cross["familiarity"])
            ax.axvline(at, color="black", linestyle=":",
                       label=f"T = {min(result.temps):g} crosses 0 at {cross['familiarity']:.0f}")
            lo = math.log10(1 + cross["low"]) if cross["low"] is not None else at
            hi = (math.log10(1 + cross["high"]) if cross["high"] is not None
                  else max(x.max(), at) + 0.5)
            ax.axvspan(lo, hi, color="grey", alpha=0.12)
        ax.axhline(0, color="black", linewidth=0.8)
        top = max(4, math.ceil(x.max()))
        ax.set_xticks([math.log10(1 + v) for v in [0] + [10 ** k for k in range(top + 1)]])
        ax.set_xticklabels(["0"] + [f"{10 ** k:,}" for k in range(top + 1)], fontsize="small")
        ax.set_xlim(-0.1, top + 0.1)
        ax.set_xlabel("familiarity: training games that began with the same moves")
        ax.set_ylabel("model - expert (win probability)")
        ax.set_title(f"gain by familiarity ({mode} mode), 95% bootstrap bands")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return write_figure(fig, result.out / "frontier.png")
