"""The frontier: gain against familiarity, where it crosses zero, summary.json and frontier.png.

The crossing point is a least-squares line through the per-position gains at the lowest
temperature against x = log10(1 + familiarity): gain = a + b x crosses zero at x* = -a / b, that
is at familiarity 10^x* - 1, when the gain rises with familiarity (b > 0). Its 95% interval is
the 2.5 and 97.5 percentiles of x* over bootstrap resamples of the positions; a resample whose
line does not rise has no crossing and counts as one beyond every familiarity.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from transcend.engine.files import write_figure
from transcend.evaluation.advantage_positions import PHASES
from transcend.evaluation.familiarity import FAMILIARITY_BINS, MAJORITY_MIN, PLY_BINS

if TYPE_CHECKING:
    from transcend.evaluation.advantage import AdvantageResult, AdvantageRow

SUMMARY_FORMAT = "transcend-advantage-summary-1"
CROSSING_METHOD = ("least squares of per-position gain at the lowest temperature on "
                   "log10(1 + familiarity); crossing at 10^(-a/b) - 1; 95% percentile "
                   "bootstrap over positions")
_MAX_X = 12.0  # crossings beyond familiarity 10^12 are reported as none


def _familiarity(x: float) -> float | None:
    """10^x - 1, at least 0 (a line above zero everywhere crosses "at 0"); None for never."""
    return None if not math.isfinite(x) or x > _MAX_X else max(0.0, float(10 ** x - 1))


def crossing_point(familiarity: np.ndarray, gains: np.ndarray, bootstrap: int = 2000,
                   seed: int = 0) -> dict[str, Any]:
    """Where the fitted gain crosses zero, as familiarity, with its bootstrap interval.

    ``status``: ``crosses`` (inside the familiarities observed), ``extrapolated`` (beyond
    the highest), ``above zero everywhere`` (the rising line is above zero already at
    familiarity 0; ``familiarity`` is then 0), ``no crossing`` (the fitted gain does not rise
    with familiarity) or ``insufficient`` (fewer than three positions, or one familiarity).
    ``log10_1p`` is the crossing on the fit's own axis, log10(1 + familiarity).
    """
    x = np.log10(1.0 + np.asarray(familiarity, dtype=float))
    g = np.asarray(gains, dtype=float)
    result: dict[str, Any] = {"method": CROSSING_METHOD, "n": int(len(g)), "intercept": None,
                              "slope": None, "log10_1p": None, "familiarity": None,
                              "low": None, "high": None,
                              "no_crossing_share": None, "status": "insufficient"}
    if len(g) < 3 or np.ptp(x) == 0:
        return result
    slope, intercept = np.polyfit(x, g, 1)
    result.update(intercept=float(intercept), slope=float(slope))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(g), size=(bootstrap, len(g)))
    xs, gs = x[idx], g[idx]
    dx = xs - xs.mean(axis=1, keepdims=True)
    sxx = (dx ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        b = (dx * (gs - gs.mean(axis=1, keepdims=True))).sum(axis=1) / sxx
        a = gs.mean(axis=1) - b * xs.mean(axis=1)
        stars = np.where((b > 0) & (sxx > 0), -a / b, np.inf)
    low, high = np.quantile(stars, [0.025, 0.975], method="inverted_cdf")
    result.update(low=_familiarity(float(low)), high=_familiarity(float(high)),
                  no_crossing_share=float(np.mean(~np.isfinite(stars))))
    if slope <= 0:
        result["status"] = "no crossing"
        return result
    star = float(-intercept / slope)
    result["log10_1p"] = star
    result["familiarity"] = _familiarity(star)
    if star < 0:
        result["status"] = "above zero everywhere"
    else:
        result["status"] = "crosses" if x.min() <= star <= x.max() else "extrapolated"
    return result


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
