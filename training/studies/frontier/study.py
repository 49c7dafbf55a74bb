"""What a frontier study is: its arms, runs and presets' shape, where its files lie, its
snapshots, and the figures read back from their advantage summaries. The stages
(``stages.py``) and the report (``report.py``) both build on it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    # The position as an input (`train --board-input`): "" is the paper's transcript alone.
    board_input: str = ""


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
    # Held-out games for each snapshot's board probe (a quarter of them test it); 0: no probe.
    probe_games: int = 300
    # Games for the best snapshot of every run, rated in one list, rather than for the best
    # snapshot overall.
    games_per_run: bool = False
    # Games for every snapshot, so that the report can plot rating against training time.
    games_per_snapshot: bool = False


M = 1_000_000


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

    def probe(self, name: str) -> Path:
        return self.out / "eval" / name / "probe"

    def games(self, name: str) -> Path:
        return self.out / "games" / name


@dataclass
class Snapshot:
    """One evaluated model: a run's snapshot or an extra model given on the command line."""

    name: str
    size: str
    arm: str
    tokens: int
    params: int
    model: Path
    # The training run's objective: the board loss's weight (0: the paper's).
    board_loss: float = 0.0
    # The training checkpoint, when there is one: probes read the hidden states from it.
    checkpoint: Path | None = None
    # The preset's run that made it; empty for a model given with --extra.
    run: str = ""
    # The model's board input (`train --board-input`); "" for the transcript alone.
    board_input: str = ""

    @property
    def group(self) -> str:
        """Snapshots of one kind of training: size, arm, objective and input."""
        board = f", board loss {self.board_loss:g}" if self.board_loss else ""
        seen = f", board input {self.board_input}" if self.board_input else ""
        return f"{self.size} on {self.arm}{board}{seen}"

    @property
    def flops(self) -> float:
        # The usual estimate for a transformer's training compute: 6 x parameters x tokens.
        return 6.0 * self.params * self.tokens


def model_facts(model: Path) -> tuple[str, int, int, float, str]:
    """(config name, parameters, training tokens, board loss weight, board input) from an
    exported model's metadata."""
    from transcend.engine.model_file import read_metadata

    meta = read_metadata(model)
    training = json.loads(meta.get("training") or "{}")
    return (str(training.get("config", "?")), int(meta.get("n_params", 0)),
            int(training.get("tokens", 0)), float(training.get("board_loss") or 0.0),
            meta.get("board_input", ""))


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


def cross_name(snap: Snapshot, arm: str) -> str:
    """The evaluation of a snapshot on another arm's positions."""
    return f"{snap.name}-on-{arm}"


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
