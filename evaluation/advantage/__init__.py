"""Per-move advantage: does the model, move by move, choose better than the experts it imitates?

Whole-game ratings need hundreds of games per temperature. The paper also measured transcendence
per move: on positions from real games, every legal move is scored by Stockfish and turned into a
win probability for the side to move; the model's expected win probability at temperature T is
then exact (its move probabilities times the moves' win probabilities, no sampling), and is
compared with the move the expert actually played in the same position, the best move and a
uniformly random legal move.

The parts, each importing only those above it in this list:

- ``positions``: :func:`sample_positions` draws positions, with their full move history and the
  expert's move, from PGN files, spread over the opening, middlegame and endgame;
- ``stockfish``: :class:`MultiPVClient` scores every legal move of a position with one MultiPV
  search at a fixed node limit, :class:`AnalysisCache` keeps those scores on disk, and
  :func:`win_probability` is Lichess's logistic curve;
- ``familiarity``: how many training games reached a position, and their majority move;
- ``results``: :class:`AdvantageRow` and :class:`AdvantageResult`, what the analysis computes;
- ``analysis``: :class:`AdvantageOptions` and :func:`analyse`, the analysis in memory;
- ``frontier``: ``summary.json`` and ``frontier.png``;
- ``report``: every file, ``advantage.csv``, ``positions.csv``, the plots and ``summary.md``;
- ``command``: :func:`run_advantage` (analysis, then files) and ``transcend advantage``.

Everything named in ``__all__`` can be imported from here. See ``docs/advantage.md``.
"""

from transcend.evaluation.advantage.analysis import (
    DEFAULT_BOOTSTRAP,
    MODES,
    AdvantageOptions,
    DistributionFn,
    PolicyDistribution,
    analyse,
    crossing_point,
)
from transcend.evaluation.advantage.command import advantage_command, run_advantage
from transcend.evaluation.advantage.positions import (
    MIDDLEGAME_PLIES,
    OPENING_PLIES,
    PHASES,
    Position,
    phase_of,
    sample_positions,
)
from transcend.evaluation.advantage.report import _share_of_top, summary_markdown
from transcend.evaluation.advantage.results import CSV_COLUMNS, AdvantageResult, AdvantageRow
from transcend.evaluation.advantage.stockfish import (
    DEFAULT_NODES,
    LICHESS_K,
    AnalysisCache,
    MultiPVClient,
    Score,
    analyse_positions,
    default_cache_dir,
    engine_name,
    position_key,
    win_probability,
)
from transcend.evaluation.sweep import PAPER_TEMPERATURES, parse_temperatures

__all__ = [
    "CSV_COLUMNS", "DEFAULT_BOOTSTRAP", "DEFAULT_NODES", "LICHESS_K", "MIDDLEGAME_PLIES", "MODES",
    "OPENING_PLIES", "PAPER_TEMPERATURES", "PHASES", "AdvantageOptions", "AdvantageResult",
    "AdvantageRow", "AnalysisCache", "DistributionFn", "MultiPVClient", "PolicyDistribution",
    "Position", "Score", "_share_of_top", "advantage_command", "analyse", "analyse_positions",
    "crossing_point", "default_cache_dir", "engine_name", "parse_temperatures", "phase_of",
    "position_key", "run_advantage", "sample_positions", "summary_markdown", "win_probability",
]
