"""What the advantage analysis computes: its rows and its whole result.

The bottom of the package: the analysis fills these, the report and the plots read them.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from transcend.evaluation.advantage.familiarity import Familiarity
from transcend.evaluation.advantage.positions import Position


@dataclass
class AdvantageRow:
    """One line of ``advantage.csv``: a mode, a phase or bin (or ``all``) and a temperature."""

    mode: str
    phase: str
    temperature: float
    positions: int
    model_win_prob: float
    model_low: float
    model_high: float
    expert_win_prob: float
    random_win_prob: float
    best_win_prob: float
    gain: float  # model - expert, mean over positions
    gain_low: float  # 95% bootstrap interval over positions
    gain_high: float
    expert_match: float  # mean probability that the model plays the expert's move
    best_match: float  # mean probability that the model plays Stockfish's best move (or a tie)
    # Positions with a majority move (familiarity >= 10) and the model's mean probability of it.
    majority_positions: int = 0
    majority_share: float = math.nan
    # What ``phase`` labels: "all", a "phase", a "ply" bin or a "familiarity" bin.
    group: str = "phase"


CSV_COLUMNS = [f for f in AdvantageRow.__dataclass_fields__]


@dataclass
class AdvantageResult:
    """What :func:`run_advantage` computed and where it wrote it."""

    rows: list[AdvantageRow]
    positions: list[Position]
    skipped: Counter[str]
    out: Path
    csv: Path
    positions_csv: Path
    summary: Path
    plot: Path | None  # None when matplotlib is missing
    gains_plot: Path | None
    nodes: int
    engine: str
    cache_hits: int
    requested: int = 0  # positions asked for; more than drawn when the games held no more
    seconds: dict[str, float] = field(default_factory=dict)
    # Per-position arrays: win probability of the expert's, best and random move; the model's
    # expected win probability per (mode, temperature).
    expert: np.ndarray = field(default_factory=lambda: np.zeros(0))
    best: np.ndarray = field(default_factory=lambda: np.zeros(0))
    random: np.ndarray = field(default_factory=lambda: np.zeros(0))
    model: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)
    modes: list[str] = field(default_factory=list)
    temps: list[float] = field(default_factory=list)
    seed: int = 0
    # Per position: every legal move's win probability, Stockfish's best move, and the model's
    # move probabilities (UCI -> p) per (mode, temperature).
    wins: list[dict[str, float]] = field(default_factory=list)
    best_moves: list[str] = field(default_factory=list)
    probs: dict[tuple[str, float], list[dict[str, float]]] = field(default_factory=dict)
    # With --train-data: each position's familiarity, and the model's probability of the
    # majority move per (mode, temperature) (NaN where there is none).
    train_data: Path | None = None
    training_games: int = 0
    familiarity: list[Familiarity] | None = None
    majority: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)
    sampling: dict[str, object] = field(default_factory=dict)
    crossing: dict[str, dict[str, object]] = field(default_factory=dict)
    summary_json: Path | None = None
    frontier_plot: Path | None = None

    def row(self, mode: str, temperature: float, phase: str = "all") -> AdvantageRow:
        for r in self.rows:
            if r.mode == mode and r.phase == phase and r.temperature == temperature:
                return r
        raise KeyError((mode, temperature, phase))

    def table_markdown(self, phase: str = "all") -> str:
        """The main table of ``summary.md``: one line per mode and temperature."""
        lines = ["| mode | T | model | expert | gain (95% CI) | random | best | plays expert's "
                 "move | plays best move |", "|---|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            if r.phase != phase:
                continue
            lines.append(
                f"| {r.mode} | {r.temperature:g} | {r.model_win_prob:.3f} | "
                f"{r.expert_win_prob:.3f} | {r.gain:+.3f} ({r.gain_low:+.3f} to {r.gain_high:+.3f})"
                f" | {r.random_win_prob:.3f} | {r.best_win_prob:.3f} | {r.expert_match:.1%} | "
                f"{r.best_match:.1%} |")
        return "\n".join(lines)

