"""The advantage analysis itself: positions, their Stockfish scores and the model's exact
expected win probability, summed up by phase, ply and familiarity with bootstrap intervals.

It returns an :class:`AdvantageResult` and writes nothing; ``report`` writes the files.

The crossing point is a least-squares line through the per-position gains at the lowest
temperature against x = log10(1 + familiarity): gain = a + b x crosses zero at x* = -a / b, that
is at familiarity 10^x* - 1, when the gain rises with familiarity (b > 0). Its 95% interval is
the 2.5 and 97.5 percentiles of x* over bootstrap resamples of the positions; a resample whose
line does not rise has no crossing and counts as one beyond every familiarity.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chess
import numpy as np

from transcend.evaluation.advantage.familiarity import (
    FAMILIARITY_BINS,
    PLY_BINS,
    Familiarity,
    TrainingIndex,
    familiarity_of,
    ply_bin,
    sample_by_familiarity,
)
from transcend.evaluation.advantage.positions import (
    PHASES,
    Position,
    read_positions_csv,
    sample_positions,
)
from transcend.evaluation.advantage.results import AdvantageResult, AdvantageRow
from transcend.evaluation.advantage.stockfish import (
    DEFAULT_NODES,
    Score,
    analyse_positions,
    default_cache_dir,
    progress_bar,
    win_probability,
)
from transcend.evaluation.sweep import PAPER_TEMPERATURES

MODES = ("token", "move")
DEFAULT_BOOTSTRAP = 2000

# A model's move distribution: (board with its history, temperature, mode) -> probabilities.
DistributionFn = Callable[[chess.Board, float, str], Mapping[chess.Move, float]]


@dataclass
class AdvantageOptions:
    """What to analyse and how: every setting of ``transcend advantage``.

    Positions come from ``pgns``: ``positions`` of them drawn by phase, or, with ``per_bin``
    (which needs ``train_data``), that many from each familiarity bin; ``positions_from``
    takes the positions of an earlier run's positions.csv instead. ``train_data`` (a folder
    from ``data prepare``) adds familiarity and majority moves. ``cache`` is the directory of
    the Stockfish cache (default ``~/.cache/transcend/advantage``); ``device`` is where the
    model runs (``auto``, ``cpu``, ``cuda``, ``tensorrt``); ``plots`` writes the PNG files.
    """

    model: Path
    out: Path
    pgns: list[Path] = field(default_factory=list)
    positions: int = 1000
    temps: list[float] = field(default_factory=lambda: list(PAPER_TEMPERATURES))
    modes: Sequence[str] = MODES
    nodes: int = DEFAULT_NODES
    seed: int = 0
    bootstrap: int = DEFAULT_BOOTSTRAP
    cache: Path | None = None
    workers: int | None = None
    stockfish: str | None = None
    device: str = "auto"
    plots: bool = True
    train_data: Path | None = None
    per_bin: int | None = None
    positions_from: Path | None = None

    def __post_init__(self) -> None:
        self.model, self.out = Path(self.model), Path(self.out)
        self.pgns = [Path(p) for p in self.pgns]
        self.temps, self.modes = list(self.temps), list(self.modes)
        for mode in self.modes:
            if mode not in MODES:
                raise ValueError(f"unknown mode {mode!r}: expected one of {', '.join(MODES)}")
        if not self.temps or any(not (t >= 0 and math.isfinite(t)) for t in self.temps):
            raise ValueError("temperatures must be finite and non-negative")
        if self.nodes < 1:
            raise ValueError("the node limit must be at least 1")


class PolicyDistribution:
    """The engine's exact move distribution for a model, as a :data:`DistributionFn`.

    The analysis asks for every temperature and mode of one position in a row; the model's
    logits for a position do not depend on either, so the position is scored once
    (``Policy.score``) and each distribution tempered from that.
    """

    def __init__(self, model: Path, device: str = "auto") -> None:
        from transcend.engine.policy import MoveScores, Policy

        self.policy = Policy(model, device=device)
        self._key: tuple[str, tuple[chess.Move, ...]] | None = None
        self._scores: MoveScores | None = None

    def __call__(self, board: chess.Board, temperature: float,
                 mode: str) -> dict[chess.Move, float]:
        key = (board.root().fen(), tuple(board.move_stack))
        if key != self._key or self._scores is None:
            self._key, self._scores = key, self.policy.score(board)
        return self._scores.distribution(temperature, mode)


def _bootstrap_means(values: np.ndarray, samples: np.ndarray) -> tuple[float, float]:
    """95% percentile interval of the mean of ``values`` over the resampled index rows."""
    if len(values) == 0:
        return math.nan, math.nan
    means = values[samples].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def _choose_positions(pgns: list[Path], positions: int, seed: int, index: TrainingIndex | None,
                      per_bin: int | None, positions_from: Path | None,
                      ) -> tuple[list[Position], Counter[str], dict[str, object]]:
    """The positions to evaluate, what was skipped, and how they were chosen (for the summary)."""
    skipped: Counter[str] = Counter()
    if positions_from is not None:
        sample = read_positions_csv(positions_from)
        return sample, skipped, {"method": "positions-from", "file": str(positions_from),
                                 "positions": len(sample)}
    files = [str(p) for p in pgns]
    if per_bin is not None:
        if index is None:
            raise ValueError("--per-bin needs --train-data: the bins are of familiarity")
        sample, skipped, strata = sample_by_familiarity(pgns, index, per_bin, seed)
        return sample, skipped, {"method": "per-bin", "pgn": files, "per_bin": per_bin,
                                 "seed": seed, "candidates": strata.candidates,
                                 "drawn": strata.drawn}
    sample, skipped = sample_positions(pgns, positions, seed)
    return sample, skipped, {"method": "phases", "pgn": files, "requested": positions,
                             "seed": seed, "positions": len(sample)}


def analyse(options: AdvantageOptions, distribution: DistributionFn | None = None,
            progress: bool = False) -> AdvantageResult:
    """The whole analysis, in memory; its files are to be written under ``options.out``.

    ``distribution`` replaces the model's move distribution (default: the engine's policy for
    ``options.model``, loaded before any search so that a bad model file fails fast).
    """
    o = options
    for path in o.pgns:
        if not path.is_file():
            raise FileNotFoundError(f"no such PGN file: {path}")
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    index = TrainingIndex.load(o.train_data) if o.train_data is not None else None
    if index is not None:
        seconds["index"] = time.perf_counter() - start
    start = time.perf_counter()
    sample, skipped, sampling = _choose_positions(o.pgns, o.positions, o.seed, index, o.per_bin,
                                                  o.positions_from)
    if not sample:
        reasons = ", ".join(f"{v} {k}" for k, v in sorted(skipped.items())) or "no games"
        raise ValueError(f"no usable positions in the PGN files ({reasons})")
    familiarity = None if index is None else [familiarity_of(index, p) for p in sample]
    seconds["sampling"] = time.perf_counter() - start
    dist = distribution or PolicyDistribution(o.model, o.device)

    start = time.perf_counter()
    boards = [p.board() for p in sample]
    scores, hits, engine = analyse_positions(boards, o.nodes, o.cache or default_cache_dir(),
                                             o.stockfish, o.workers, progress)
    seconds["stockfish"] = time.perf_counter() - start

    start = time.perf_counter()
    sf = _stockfish_side(sample, scores)
    model = _model_side(sample, boards, sf, familiarity, dist, o.modes, o.temps, progress)
    seconds["model"] = time.perf_counter() - start

    out = o.out
    result = AdvantageResult(
        rows=_rows(sample, familiarity, sf, model, o.modes, o.temps, o.bootstrap, o.seed),
        positions=sample, skipped=skipped, out=out, csv=out / "advantage.csv",
        positions_csv=out / "positions.csv", summary=out / "summary.md", plot=None,
        gains_plot=None, nodes=o.nodes, engine=engine, cache_hits=hits,
        requested=o.positions if sampling["method"] == "phases" else 0, seconds=seconds,
        expert=sf.expert, best=sf.best, random=sf.random, model=model.win,
        modes=list(o.modes), temps=list(o.temps), seed=o.seed, wins=sf.wins,
        best_moves=sf.best_moves, probs=model.probs, train_data=o.train_data,
        training_games=len(index) if index is not None else 0, familiarity=familiarity,
        majority=model.majority, sampling=sampling, summary_json=out / "summary.json")
    if familiarity is not None:
        counts = np.array([f.count for f in familiarity], dtype=float)
        low = min(o.temps)
        result.crossing = {m: crossing_point(counts, model.win[(m, low)] - sf.expert,
                                             o.bootstrap, o.seed) | {"temperature": low}
                           for m in o.modes}
    return result


@dataclass
class _StockfishSide:
    """Per position: every legal move's win probability, the best move, and the win
    probability of the expert's, the best and an average random move."""

    wins: list[dict[str, float]]
    best_moves: list[str]
    expert: np.ndarray
    best: np.ndarray
    random: np.ndarray


def _stockfish_side(sample: Sequence[Position],
                    scores: Sequence[Mapping[str, Score]]) -> _StockfishSide:
    n = len(sample)
    side = _StockfishSide([], [], np.zeros(n), np.zeros(n), np.zeros(n))
    for i, (position, score) in enumerate(zip(sample, scores, strict=True)):
        win = {m: win_probability(*s) for m, s in score.items()}
        top = max(win, key=lambda m: (win[m], m))
        side.wins.append(win)
        side.best_moves.append(top)
        side.expert[i] = win[position.expert.uci()]
        side.best[i] = win[top]
        side.random[i] = sum(win.values()) / len(win)
    return side


Key = tuple[str, float]  # (mode, temperature)


@dataclass
class _ModelSide:
    """Per (mode, temperature) and position: the model's expected win probability, its
    probability of the expert's, the best and the majority move (NaN where there is none), and
    its whole distribution over the scored moves."""

    win: dict[Key, np.ndarray]
    expert: dict[Key, np.ndarray]
    best: dict[Key, np.ndarray]
    majority: dict[Key, np.ndarray]
    probs: dict[Key, list[dict[str, float]]]


def _model_side(sample: Sequence[Position], boards: Sequence[chess.Board], sf: _StockfishSide,
                familiarity: Sequence[Familiarity] | None, dist: DistributionFn,
                modes: Sequence[str], temps: Sequence[float], progress: bool) -> _ModelSide:
    n = len(sample)
    keys = [(m, t) for m in modes for t in temps]
    side = _ModelSide({k: np.zeros(n) for k in keys}, {k: np.zeros(n) for k in keys},
                      {k: np.zeros(n) for k in keys}, {k: np.full(n, math.nan) for k in keys},
                      {k: [{}] * n for k in keys})
    bar = progress_bar(n, "model", progress)
    # In move-history order, neighbours share their openings: the model's cache keeps the
    # common prefix of consecutive prompts.
    for i in sorted(range(n), key=lambda j: [m.uci() for m in sample[j].history]):
        win, board = sf.wins[i], boards[i]
        expert_move = sample[i].expert
        majority = familiarity[i].majority if familiarity is not None else ()
        # Moves that tie for best (two mates, say) all count as playing the best move.
        best_set = {chess.Move.from_uci(m) for m, w in win.items() if w == sf.best[i]}
        for mode, t in keys:
            probs = dist(board, t, mode)
            total = sum(probs.get(m, 0.0) for m in board.legal_moves)
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"the model's {mode} distribution at T={t:g} sums to "
                                 f"{total:.6f} over the legal moves of {board.fen()}")
            key = (mode, t)
            side.win[key][i] = sum(p * win[m.uci()] for m, p in probs.items()
                                   if m.uci() in win) / total
            side.expert[key][i] = probs.get(expert_move, 0.0) / total
            side.best[key][i] = sum(probs.get(m, 0.0) for m in best_set) / total
            if majority:
                side.majority[key][i] = sum(probs.get(m, 0.0) for m in majority) / total
            side.probs[key][i] = {m.uci(): p / total for m, p in probs.items()
                                  if m.uci() in win}
        bar.update(1)
    bar.close()
    return side


def _rows(sample: Sequence[Position], familiarity: Sequence[Familiarity] | None,
          sf: _StockfishSide, model: _ModelSide, modes: Sequence[str], temps: Sequence[float],
          bootstrap: int, seed: int) -> list[AdvantageRow]:
    """One row per mode, temperature and group: all positions, each phase, ply bin and
    familiarity bin."""
    n = len(sample)
    groups: list[tuple[str, Sequence[str], np.ndarray]] = [
        ("all", ["all"], np.array(["all"] * n)),
        ("phase", PHASES, np.array([p.phase for p in sample])),
        ("ply", PLY_BINS, np.array([ply_bin(p.ply) for p in sample])),
    ]
    if familiarity is not None:
        groups.append(("familiarity", FAMILIARITY_BINS, np.array([f.bin for f in familiarity])))
    rng = np.random.default_rng(seed)
    rows: list[AdvantageRow] = []
    for group, labels, of in groups:
        for label in labels:
            mask = of == label
            count = int(mask.sum())
            if count == 0:
                continue
            # One set of resamples per bin, shared by every row: the intervals are paired.
            samples = rng.integers(0, count, size=(bootstrap, count))
            for key in [(m, t) for m in modes for t in temps]:
                mw = model.win[key][mask]
                gains = mw - sf.expert[mask]
                m_low, m_high = _bootstrap_means(mw, samples)
                g_low, g_high = _bootstrap_means(gains, samples)
                maj = model.majority[key][mask]
                has = ~np.isnan(maj)
                rows.append(AdvantageRow(
                    key[0], label, key[1], count, float(mw.mean()), m_low, m_high,
                    float(sf.expert[mask].mean()), float(sf.random[mask].mean()),
                    float(sf.best[mask].mean()), float(gains.mean()), g_low, g_high,
                    float(model.expert[key][mask].mean()), float(model.best[key][mask].mean()),
                    int(has.sum()), float(maj[has].mean()) if has.any() else math.nan, group))
    return rows


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
