"""Per-move advantage: does the model, move by move, choose better than the experts it imitates?

Whole-game ratings need hundreds of games per temperature. The paper also measured transcendence
per move: on positions from real games, every legal move is scored by Stockfish and turned into a
win probability for the side to move; the model's expected win probability at temperature T is
then exact (its move probabilities times the moves' win probabilities, no sampling), and is
compared with the move the expert actually played in the same position, the best move and a
uniformly random legal move.

The pieces, usable on their own (all importable from here):

- :func:`sample_positions` (``advantage_positions``) draws positions, with their full move
  history and the expert's move, from PGN files, spread over the opening, middlegame and endgame;
- :class:`MultiPVClient` (``advantage_stockfish``) scores every legal move of a position with
  one MultiPV search at a fixed node limit, and :class:`AnalysisCache` keeps those scores on disk;
- :func:`win_probability` is Lichess's logistic curve;
- :func:`run_advantage` (here) does the whole analysis; ``advantage_report`` writes
  ``advantage.csv``, ``positions.csv``, ``advantage.png``, ``gains.png`` and ``summary.md``.

See ``docs/advantage.md``.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import chess
import click
import numpy as np

from transcend.engine.files import write_atomic
from transcend.evaluation.advantage_frontier import crossing_point, frontier_plot, summary_json
from transcend.evaluation.advantage_positions import (
    MIDDLEGAME_PLIES,
    OPENING_PLIES,
    PHASES,
    Position,
    phase_of,
    read_positions_csv,
    sample_positions,
)
from transcend.evaluation.advantage_report import (
    _cell,
    _plots,
    _share_of_top,
    _write_csv,
    _write_positions,
    summary_markdown,
)
from transcend.evaluation.advantage_stockfish import (
    DEFAULT_NODES,
    LICHESS_K,
    AnalysisCache,
    MultiPVClient,
    Score,
    _progress,
    analyse_positions,
    default_cache_dir,
    engine_name,
    position_key,
    win_probability,
)
from transcend.evaluation.familiarity import (
    FAMILIARITY_BINS,
    PLY_BINS,
    Familiarity,
    TrainingIndex,
    familiarity_of,
    ply_bin,
    sample_by_familiarity,
)
from transcend.evaluation.sweep import PAPER_TEMPERATURES, parse_temperatures

# Names other modules import from here, whichever module now defines them.
__all__ = [
    "CSV_COLUMNS", "DEFAULT_BOOTSTRAP", "DEFAULT_NODES", "LICHESS_K", "MIDDLEGAME_PLIES", "MODES",
    "OPENING_PLIES", "PAPER_TEMPERATURES", "PHASES", "AdvantageResult", "AdvantageRow",
    "AnalysisCache", "DistributionFn", "MultiPVClient", "PolicyDistribution", "Position", "Score",
    "_share_of_top", "advantage_command", "analyse_positions", "default_cache_dir", "engine_name",
    "parse_temperatures", "phase_of", "position_key", "run_advantage", "sample_positions",
    "summary_markdown", "win_probability",
]

MODES = ("token", "move")
DEFAULT_BOOTSTRAP = 2000

# A model's move distribution: (board with its history, temperature, mode) -> probabilities.
DistributionFn = Callable[[chess.Board, float, str], Mapping[chess.Move, float]]


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


def run_advantage(model: Path, pgns: list[Path], positions: int, temps: list[float], out: Path,
                  nodes: int = DEFAULT_NODES, seed: int = 0, *,
                  modes: Sequence[str] = MODES, cache: Path | None = None,
                  workers: int | None = None, bootstrap: int = DEFAULT_BOOTSTRAP,
                  distribution: DistributionFn | None = None, stockfish: str | None = None,
                  device: str = "auto", plots: bool = True, progress: bool = False,
                  train_data: Path | None = None, per_bin: int | None = None,
                  positions_from: Path | None = None) -> AdvantageResult:
    """The whole advantage analysis; writes its files to ``out`` and returns the numbers.

    ``distribution`` replaces the model's move distribution (default: the engine's policy for
    ``model``, loaded before any search so that a bad model file fails fast). ``cache`` is the
    directory of the Stockfish cache (default ``~/.cache/transcend/advantage``); ``device`` is
    where the model runs (``auto``, ``cpu``, ``cuda``, ``tensorrt``). ``train_data`` (a folder
    from ``data prepare``) adds familiarity and majority moves; ``per_bin`` draws that many
    positions from each familiarity bin instead of ``positions`` by phase; ``positions_from``
    evaluates the positions of an earlier run's positions.csv instead of drawing any.
    """
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: expected one of {', '.join(MODES)}")
    if not temps or any(not (t >= 0 and math.isfinite(t)) for t in temps):
        raise ValueError("temperatures must be finite and non-negative")
    if nodes < 1:
        raise ValueError("the node limit must be at least 1")
    for path in pgns:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no such PGN file: {path}")
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    index = TrainingIndex.load(train_data) if train_data is not None else None
    if index is not None:
        seconds["index"] = time.perf_counter() - start
    start = time.perf_counter()
    sample, skipped, sampling = _choose_positions([Path(p) for p in pgns], positions, seed,
                                                  index, per_bin, positions_from)
    if not sample:
        reasons = ", ".join(f"{v} {k}" for k, v in sorted(skipped.items())) or "no games"
        raise ValueError(f"no usable positions in the PGN files ({reasons})")
    familiarity = None if index is None else [familiarity_of(index, p) for p in sample]
    seconds["sampling"] = time.perf_counter() - start
    dist = distribution or PolicyDistribution(model, device)

    start = time.perf_counter()
    boards = [p.board() for p in sample]
    scores, hits, engine = analyse_positions(boards, nodes, cache or default_cache_dir(),
                                             stockfish, workers, progress)
    seconds["stockfish"] = time.perf_counter() - start

    start = time.perf_counter()
    n = len(sample)
    expert = np.zeros(n)
    best = np.zeros(n)
    rand = np.zeros(n)
    best_moves: list[str] = []
    keys = [(m, t) for m in modes for t in temps]
    model_wp: dict[tuple[str, float], np.ndarray] = {}
    p_expert: dict[tuple[str, float], np.ndarray] = {}
    p_best: dict[tuple[str, float], np.ndarray] = {}
    p_majority: dict[tuple[str, float], np.ndarray] = {}
    all_probs: dict[tuple[str, float], list[dict[str, float]]] = {k: [{}] * n for k in keys}
    for key in keys:
        for table in (model_wp, p_expert, p_best):
            table[key] = np.zeros(n)
        p_majority[key] = np.full(n, math.nan)
    wins: list[dict[str, float]] = []
    for i, (position, score) in enumerate(zip(sample, scores, strict=True)):
        win = {m: win_probability(*s) for m, s in score.items()}
        top = max(win, key=lambda m: (win[m], m))
        wins.append(win)
        best_moves.append(top)
        expert[i] = win[position.expert.uci()]
        best[i] = win[top]
        rand[i] = sum(win.values()) / len(win)
    bar = _progress(n, "model", progress)
    # In move-history order, neighbours share their openings: the model's cache keeps the
    # common prefix of consecutive prompts.
    for i in sorted(range(n), key=lambda j: [m.uci() for m in sample[j].history]):
        win, board = wins[i], boards[i]
        expert_move = sample[i].expert
        majority = familiarity[i].majority if familiarity is not None else ()
        # Moves that tie for best (two mates, say) all count as playing the best move.
        best_set = {chess.Move.from_uci(m) for m, w in win.items() if w == best[i]}
        for mode in modes:
            for t in temps:
                probs = dist(board, t, mode)
                total = sum(probs.get(m, 0.0) for m in board.legal_moves)
                if abs(total - 1.0) > 1e-6:
                    raise ValueError(f"the model's {mode} distribution at T={t:g} sums to "
                                     f"{total:.6f} over the legal moves of {board.fen()}")
                key = (mode, t)
                model_wp[key][i] = sum(p * win[m.uci()] for m, p in probs.items()
                                       if m.uci() in win) / total
                p_expert[key][i] = probs.get(expert_move, 0.0) / total
                p_best[key][i] = sum(probs.get(m, 0.0) for m in best_set) / total
                if majority:
                    p_majority[key][i] = sum(probs.get(m, 0.0) for m in majority) / total
                all_probs[key][i] = {m.uci(): p / total for m, p in probs.items()
                                     if m.uci() in win}
        bar.update(1)
    bar.close()
    seconds["model"] = time.perf_counter() - start

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
            for key in keys:
                mw = model_wp[key][mask]
                gains = mw - expert[mask]
                m_low, m_high = _bootstrap_means(mw, samples)
                g_low, g_high = _bootstrap_means(gains, samples)
                maj = p_majority[key][mask]
                has = ~np.isnan(maj)
                rows.append(AdvantageRow(
                    key[0], label, key[1], count, float(mw.mean()), m_low, m_high,
                    float(expert[mask].mean()), float(rand[mask].mean()),
                    float(best[mask].mean()), float(gains.mean()), g_low, g_high,
                    float(p_expert[key][mask].mean()), float(p_best[key][mask].mean()),
                    int(has.sum()), float(maj[has].mean()) if has.any() else math.nan, group))

    out.mkdir(parents=True, exist_ok=True)
    result = AdvantageResult(
        rows=rows, positions=sample, skipped=skipped, out=out, csv=out / "advantage.csv",
        positions_csv=out / "positions.csv", summary=out / "summary.md", plot=None,
        gains_plot=None, nodes=nodes, engine=engine, cache_hits=hits,
        requested=positions if sampling["method"] == "phases" else 0, seconds=seconds,
        expert=expert, best=best, random=rand, model=model_wp, modes=list(modes),
        temps=list(temps), seed=seed, wins=wins, best_moves=best_moves, probs=all_probs,
        train_data=train_data, training_games=len(index) if index is not None else 0,
        familiarity=familiarity, majority=p_majority, sampling=sampling,
        summary_json=out / "summary.json")
    if familiarity is not None:
        counts = np.array([f.count for f in familiarity], dtype=float)
        result.crossing = {m: crossing_point(counts, model_wp[(m, min(temps))] - expert,
                                             bootstrap, seed) | {"temperature": min(temps)}
                           for m in modes}
    _write_csv(result.csv, CSV_COLUMNS,
               [[_cell(getattr(r, c)) for c in CSV_COLUMNS] for r in rows])
    _write_positions(result, boards, best_moves, modes, temps)
    if plots:
        result.plot, result.gains_plot = _plots(result, modes, temps)
        if familiarity is not None:
            result.frontier_plot = frontier_plot(result)
    write_atomic(result.summary_json, json.dumps(summary_json(result, model), indent=2) + "\n")
    write_atomic(result.summary, summary_markdown(result, model, modes, temps))
    return result


# --------------------------------------------------------------------------------------------
# Command line


@click.command("advantage")
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="ONNX model (default: the bundled models/default.onnx).")
@click.option("--pgn", "pgn_options", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PGN file of the experts' games (repeatable; more files may follow as "
                   "arguments).")
@click.argument("pgn_args", nargs=-1, type=click.Path(exists=True, dir_okay=False,
                                                       path_type=Path))
@click.option("--positions", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Positions to draw, a third from each phase.")
@click.option("--train-data", type=click.Path(path_type=Path), default=None,
              help="A folder from `data prepare` (its train.bin): adds familiarity, majority "
                   "moves, the familiarity bins and frontier.png.")
@click.option("--per-bin", type=click.IntRange(min=1), default=None, metavar="N",
              help="Draw up to N positions from each familiarity bin (needs --train-data) "
                   "instead of --positions by phase.")
@click.option("--positions-from", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, metavar="CSV",
              help="Evaluate exactly the positions of an earlier run's positions.csv "
                   "(instead of PGN files).")
@click.option("--temps", default=",".join(f"{t:g}" for t in PAPER_TEMPERATURES),
              show_default=True, help="Comma-separated temperatures (0 = greedy).")
@click.option("--mode", "mode", type=click.Choice(["token", "move", "both"]), default="both",
              show_default=True, help="Which of the engine's sampling modes to measure.")
@click.option("--nodes", type=click.IntRange(min=1), default=DEFAULT_NODES, show_default=True,
              help="Stockfish nodes a position, shared by all legal moves (MultiPV).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for advantage.csv, positions.csv, the plots and summary.md.")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory of the Stockfish cache [default: ~/.cache/transcend/advantage].")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Stockfish processes [default: one per core].")
@click.option("--bootstrap", type=click.IntRange(min=100), default=DEFAULT_BOOTSTRAP,
              show_default=True, help="Bootstrap resamples for the 95% intervals.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--stockfish", default=None, help="Stockfish binary [default: found on PATH].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "tensorrt"]), default="auto",
              show_default=True, help="Where the model runs.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def advantage_command(model: Path | None, pgn_options: tuple[Path, ...],
                      pgn_args: tuple[Path, ...], positions: int, train_data: Path | None,
                      per_bin: int | None, positions_from: Path | None, temps: str, mode: str,
                      nodes: int, out: Path, cache: Path | None, workers: int | None,
                      bootstrap: int, seed: int, stockfish: str | None, device: str,
                      quiet: bool) -> None:
    """Per-move expected win probability of a model against its experts.

    Draws positions from the experts' games, scores every legal move with Stockfish and
    compares the model's exact expected win probability at each temperature with the expert's
    move, the best move and a random move.
    """
    pgns = list(dict.fromkeys([*pgn_options, *pgn_args]))
    if positions_from is not None:
        if pgns:
            raise click.UsageError("--positions-from takes the positions from its file: "
                                   "give no PGN files with it")
        if per_bin is not None:
            raise click.UsageError("--positions-from and --per-bin cannot go together")
    elif not pgns:
        raise click.UsageError("give at least one PGN file (--pgn GAMES.pgn)")
    if per_bin is not None and train_data is None:
        raise click.UsageError("--per-bin needs --train-data: the bins are of familiarity")
    try:
        temperatures = parse_temperatures(allow_zero=True, text=temps)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--temps") from None
    if model is None:
        from transcend.engine.policy import default_model_path

        model = default_model_path()
        if not model.is_file():
            raise click.UsageError("no bundled model: give --model MODEL.onnx")
    modes = list(MODES) if mode == "both" else [mode]
    result = run_advantage(model, pgns, positions, temperatures, out, nodes, seed, modes=modes,
                           cache=cache, workers=workers, bootstrap=bootstrap,
                           stockfish=stockfish, device=device, progress=not quiet,
                           train_data=train_data, per_bin=per_bin,
                           positions_from=positions_from)
    click.echo(result.table_markdown())
    skipped = ", ".join(f"{v} {k}" for k, v in sorted(result.skipped.items())) or "nothing"
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    click.echo(f"{len(result.positions)} positions ({result.cache_hits} analyses cached; "
               f"skipped: {skipped}); {timing}", err=True)
    written = [result.csv, result.positions_csv, result.summary, result.summary_json,
               result.plot, result.gains_plot, result.frontier_plot]
    click.echo(f"wrote {', '.join(str(p) for p in written if p)}", err=True)
