"""Per-move advantage: does the model, move by move, choose better than the experts it imitates?

Whole-game ratings need hundreds of games per temperature. The paper also measured transcendence
per move: on positions from real games, every legal move is scored by Stockfish and turned into a
win probability for the side to move; the model's expected win probability at temperature T is
then exact (its move probabilities times the moves' win probabilities, no sampling), and is
compared with the move the expert actually played in the same position, the best move and a
uniformly random legal move.

The pieces, usable on their own:

- :func:`sample_positions` draws positions (with their full move history and the expert's move)
  from PGN files, spread over the opening, middlegame and endgame;
- :class:`MultiPVClient` scores every legal move of a position with one MultiPV search at a
  fixed node limit, and :class:`AnalysisCache` keeps those scores on disk;
- :func:`win_probability` is Lichess's logistic curve;
- :func:`run_advantage` does the whole analysis and writes ``advantage.csv``, ``positions.csv``,
  ``advantage.png``, ``gains.png`` and ``summary.md``.

See ``docs/advantage.md``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import queue
import random
import re
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import chess
import chess.pgn
import click
import numpy as np

from transcend.engine.files import write_atomic
from transcend.evaluation.players import EngineCrashed, UciClient, find_stockfish
from transcend.evaluation.sweep import PAPER_TEMPERATURES, parse_temperatures

MODES = ("token", "move")
# About 0.1 s of one core per position here: every legal move searched to depth 6-8.
DEFAULT_NODES = 20_000
DEFAULT_BOOTSTRAP = 2000
# Phases by ply (half-moves played before the position): the experts' games average about 100
# plies, so these cut them into thirds of roughly equal interest.
PHASES = ("opening", "middlegame", "endgame")
OPENING_PLIES = 20
MIDDLEGAME_PLIES = 60
# Lichess's win-probability curve: win% = 50 + 50 * (2 / (1 + exp(-k * cp)) - 1).
LICHESS_K = 0.00368208

# A model's move distribution: (board with its history, temperature, mode) -> probabilities.
DistributionFn = Callable[[chess.Board, float, str], Mapping[chess.Move, float]]


def win_probability(kind: str, value: int) -> float:
    """Win probability for the side to move of a UCI score: ``("cp", 35)`` or ``("mate", -3)``.

    Centipawns go through Lichess's logistic curve ``1 / (1 + exp(-0.00368208 * cp))``; a mate
    for the side to move is 1 and a mate against it is 0.
    """
    if kind == "mate":
        return 1.0 if value > 0 else 0.0
    if kind == "cp":
        return 1.0 / (1.0 + math.exp(-LICHESS_K * value))
    raise ValueError(f"unknown score kind {kind!r}")


def phase_of(ply: int) -> str:
    """``opening`` (plies 0-19), ``middlegame`` (20-59) or ``endgame`` (60 on)."""
    if ply < OPENING_PLIES:
        return "opening"
    return "middlegame" if ply < MIDDLEGAME_PLIES else "endgame"


def position_key(board: chess.Board) -> str:
    """The cache key of a position: its FEN without the move number, which Stockfish ignores."""
    return board.fen().rsplit(" ", 1)[0]


# --------------------------------------------------------------------------------------------
# Positions


@dataclass(frozen=True)
class Position:
    """A position from a game: the moves that led to it from the standard start, and the move
    the expert played next."""

    history: tuple[chess.Move, ...]
    expert: chess.Move
    source: str  # "file.pgn#12": the 12th game (1-based) of file.pgn

    @property
    def ply(self) -> int:
        return len(self.history)

    @property
    def phase(self) -> str:
        return phase_of(self.ply)

    def board(self) -> chess.Board:
        """The position with its full history in ``move_stack``, as the model sees it in play."""
        board = chess.Board()
        for move in self.history:
            board.push(move)
        return board


class _QuietBuilder(chess.pgn.GameBuilder):
    """Records errors without logging each one: bad games are expected and counted."""

    def handle_error(self, error: Exception) -> None:
        self.game.errors.append(error)


@dataclass
class _Game:
    source: str
    moves: list[chess.Move]
    candidates: dict[str, list[int]]  # phase -> plies not yet taken with 2+ legal moves

    def phases(self) -> list[str]:
        return [p for p in PHASES if self.candidates[p]]


# A tag pair at the start of a line; a comment such as "[%clk 0:03:00]" does not match.
_TAG = re.compile(rb'^\s*\[([A-Za-z0-9_]+)\s+"([^"]*)"')
_STANDARD_VARIANTS = (b"", b"standard", b"chess", b"from position")


def _scan_pgn(path: Path) -> Iterator[tuple[int, int, bool]]:
    """(start, end, set up) byte ranges of the games in a PGN file.

    A game starts at the first tag line after anything that is not a tag; scanning bytes is
    about ten times faster than reading every game's headers with python-chess, which matters
    for files of hundreds of thousands of games. A file without tags is one game.
    """
    start: int | None = None
    set_up = in_tags = False
    offset = 0
    with open(path, "rb") as handle:
        for line in handle:
            tag = _TAG.match(line)
            if tag is not None:
                if not in_tags:
                    if start is not None:
                        yield start, offset, set_up
                    start, set_up = offset, False
                name, value = tag.group(1), tag.group(2)
                if (name == b"FEN" or (name == b"SetUp" and value == b"1") or (
                        name == b"Variant" and value.lower() not in _STANDARD_VARIANTS)):
                    set_up = True
                in_tags = True
            elif line.strip():
                in_tags = False
                if start is None:
                    start = offset
            offset += len(line)
    if start is not None:
        yield start, offset, set_up


def _index_games(pgns: Sequence[Path],
                 skipped: Counter[str]) -> list[tuple[int, int, int, int]]:
    """(file index, start, end, game number) of every game from the standard start."""
    index: list[tuple[int, int, int, int]] = []
    for i, path in enumerate(pgns):
        for number, (start, end, set_up) in enumerate(_scan_pgn(path), 1):
            if set_up:
                skipped["set-up or variant games"] += 1
            else:
                index.append((i, start, end, number))
    return index


def _read_game(path: Path, start: int, end: int, number: int,
               skipped: Counter[str]) -> _Game | None:
    with open(path, "rb") as handle:
        handle.seek(start)
        text = handle.read(end - start).decode("utf-8", errors="replace")
    game = chess.pgn.read_game(io.StringIO(text), Visitor=_QuietBuilder)
    if game is None:
        return None
    if game.errors:
        skipped["games with illegal moves or bad text"] += 1
        return None
    if game.board() != chess.Board():  # a set-up position the tags did not announce
        skipped["set-up or variant games"] += 1
        return None
    moves = list(game.mainline_moves())
    if not moves:
        skipped["games without moves"] += 1
        return None
    candidates: dict[str, list[int]] = {p: [] for p in PHASES}
    board = chess.Board()
    for ply, move in enumerate(moves):
        # A forced move says nothing about judgement: every player and the model agree on it.
        # (Two legal moves are enough to know, and far cheaper to find than all of them.)
        legal = board.generate_legal_moves()
        if next(legal, None) is not None and next(legal, None) is not None:
            candidates[phase_of(ply)].append(ply)
        board.push(move)
    return _Game(f"{path.name}#{number}", moves, candidates)


def _quotas(n: int) -> dict[str, int]:
    base, extra = divmod(n, len(PHASES))
    return {p: base + (1 if i < extra else 0) for i, p in enumerate(PHASES)}


def sample_positions(pgns: Sequence[Path], n: int, seed: int = 0,
                     ) -> tuple[list[Position], Counter[str]]:
    """Draw ``n`` positions from the games in ``pgns``, a third from each phase, seeded.

    Games are visited in a seeded random order and give one position each while there are
    games left, so positions come from as many different games as possible; a phase that the
    games cannot fill (short games have no endgame) passes its share to the others. Positions
    with a single legal move are never drawn. Games set up from a FEN, variants, games with
    illegal moves or unreadable text, and empty games are skipped and counted in the returned
    Counter. Fewer than ``n`` positions come back only when the games hold no more.
    """
    if n < 1:
        raise ValueError("the number of positions must be at least 1")
    skipped: Counter[str] = Counter()
    rng = random.Random(seed)
    index = _index_games(pgns, skipped)
    rng.shuffle(index)
    need = _quotas(n)
    chosen: list[Position] = []
    pool: list[_Game] = []

    def take(game: _Game, anywhere: bool) -> bool:
        phases = [p for p in game.phases() if need[p] > 0 or anywhere]
        if not phases:
            return False
        phase = max(phases, key=lambda p: (need[p], len(game.candidates[p])))
        plies = game.candidates[phase]
        ply = plies.pop(rng.randrange(len(plies)))
        need[phase] = max(0, need[phase] - 1)
        chosen.append(Position(tuple(game.moves[:ply]), game.moves[ply], game.source))
        return True

    games = iter(index)
    while len(chosen) < n:
        entry = next(games, None)
        if entry is None:
            break
        game = _read_game(pgns[entry[0]], *entry[1:], skipped)
        if game is not None:
            take(game, anywhere=False)
            pool.append(game)
    # Out of fresh games: draw further positions from games already used, any phase with
    # candidates left, most-needed phase first.
    while len(chosen) < n:
        pool = [g for g in pool if g.phases()]
        if not pool:
            break
        for game in pool:
            if len(chosen) >= n:
                break
            take(game, anywhere=True)
    return chosen, skipped


# --------------------------------------------------------------------------------------------
# Stockfish


Score = tuple[str, int]  # ("cp", centipawns) or ("mate", moves), for the side to move


class MultiPVClient(UciClient):
    """Stockfish scoring every legal move of a position in one MultiPV search.

    Plain pipes rather than ``chess.engine``: a MultiPV search prints hundreds of ``info``
    lines and parsing each one's PV into moves costs more than the search at small node limits.
    The hash is cleared before every position, so a score depends only on the position and the
    node limit, never on what was searched before: cached and fresh analyses agree exactly.
    """

    def __init__(self, command: list[str], nodes: int) -> None:
        super().__init__(command, {"Threads": 1, "Hash": 16})
        self.nodes = nodes

    def scores(self, board: chess.Board) -> dict[str, Score]:
        """UCI move -> score for the side to move, for every legal move of ``board``."""
        legal = {m.uci() for m in board.legal_moves}
        if not legal:
            return {}
        # The history is left out on purpose: the cache key is the position alone.
        fen = f"{position_key(board)} 1"
        result = self._search(fen, legal, sorted(legal))
        # At small node limits (under about 50 a move) the search can stop before its first
        # iteration has seen every root move: search the rest, then one at a time.
        while missing := sorted(legal - result.keys()):
            found = self._search(fen, legal, missing, restrict=True)
            if not found:
                for move in missing:
                    result.update(self._search(fen, legal, [move], restrict=True))
                break
            result.update(found)
        if legal - result.keys():
            raise EngineCrashed(f"Stockfish left moves unscored in {fen}")
        return result

    def _search(self, fen: str, legal: set[str], moves: list[str],
                restrict: bool = False) -> dict[str, Score]:
        assert self.proc is not None and self.proc.stdout is not None
        self._send("ucinewgame")
        self._send(f"setoption name MultiPV value {len(moves)}")
        self._send("isready")
        self._wait("readyok")
        self._send(f"position fen {fen}")
        only = " searchmoves " + " ".join(moves) if restrict else ""
        self._send(f"go nodes {self.nodes}{only}")
        found: dict[str, Score] = {}
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise EngineCrashed(f"{self.command[0]} exited")
            if line.startswith("bestmove"):
                return found
            if not line.startswith("info") or " multipv " not in line or " pv " not in line:
                continue
            words = line.split()
            at = words.index("score")
            move = words[words.index("pv") + 1]
            # Later lines come from deeper or completed iterations: the last one per move wins.
            if move in legal:
                found[move] = (words[at + 1], int(words[at + 2]))


def engine_name(command: str) -> str:
    """The engine's ``id name`` (part of the cache key: another version scores differently)."""
    try:
        out = subprocess.run([command], input="uci\nquit\n", capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OSError(f"cannot start {command}: {exc}") from None
    for line in out.splitlines():
        if line.startswith("id name "):
            return line[len("id name "):].strip()
    raise OSError(f"{command} did not answer as a UCI engine")


class AnalysisCache:
    """Stockfish scores on disk (SQLite), keyed by position, node limit and engine version.

    Every batch is one transaction, so an interrupted run keeps what it finished and never
    leaves a half-written entry.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, timeout=60)
        with self.db:
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS scores (position TEXT, nodes INTEGER, engine TEXT, "
                "moves TEXT, PRIMARY KEY (position, nodes, engine))")

    def get(self, keys: Sequence[str], nodes: int, engine: str) -> dict[str, dict[str, Score]]:
        found: dict[str, dict[str, Score]] = {}
        for key in keys:
            row = self.db.execute(
                "SELECT moves FROM scores WHERE position=? AND nodes=? AND engine=?",
                (key, nodes, engine)).fetchone()
            if row is not None:
                found[key] = _parse_scores(row[0])
        return found

    def put(self, items: Mapping[str, Mapping[str, Score]], nodes: int, engine: str) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)",
                [(key, nodes, engine, _format_scores(s)) for key, s in items.items()])

    def close(self) -> None:
        self.db.close()


def _format_scores(scores: Mapping[str, Score]) -> str:
    return " ".join(f"{m}:{k}:{v}" for m, (k, v) in sorted(scores.items()))


def _parse_scores(text: str) -> dict[str, Score]:
    out: dict[str, Score] = {}
    for item in text.split():
        move, kind, value = item.split(":")
        out[move] = (kind, int(value))
    return out


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "transcend" / "advantage"


def analyse_positions(boards: Sequence[chess.Board], nodes: int, cache_dir: Path,
                      stockfish: str | None = None, workers: int | None = None,
                      progress: bool = False) -> tuple[list[dict[str, Score]], int, str]:
    """Scores of every legal move of every board, from the cache or Stockfish.

    Returns the scores in the order of ``boards``, how many came from the cache and the
    engine's name. Stockfish runs as ``workers`` single-threaded processes (default: one per
    core).
    """
    command = find_stockfish(stockfish)
    engine = engine_name(command)
    cache = AnalysisCache(cache_dir / "stockfish.sqlite")
    try:
        keys = [position_key(b) for b in boards]
        known = cache.get(sorted(set(keys)), nodes, engine)
        hits = sum(1 for k in keys if k in known)
        todo: dict[str, chess.Board] = {}
        for key, board in zip(keys, boards, strict=True):
            if key not in known:
                todo.setdefault(key, board)
        if todo:
            known.update(_run_stockfish(todo, nodes, command, cache, engine,
                                        workers or os.cpu_count() or 1, progress))
        return [known[k] for k in keys], hits, engine
    finally:
        cache.close()


def _run_stockfish(todo: Mapping[str, chess.Board], nodes: int, command: str,
                   cache: AnalysisCache, engine: str, workers: int,
                   progress: bool) -> dict[str, dict[str, Score]]:
    workers = max(1, min(workers, len(todo)))
    clients: queue.Queue[MultiPVClient] = queue.Queue()
    for _ in range(workers):
        clients.put(MultiPVClient([command], nodes))

    def work(item: tuple[str, chess.Board]) -> tuple[str, dict[str, Score]]:
        client = clients.get()
        try:
            try:
                return item[0], client.scores(item[1])
            except EngineCrashed:
                client.close()  # one fresh start; a second failure is the engine's, not bad luck
                client.start()
                try:
                    return item[0], client.scores(item[1])
                except EngineCrashed as exc:
                    raise OSError(f"Stockfish failed twice on {item[0]}: {exc}") from None
        finally:
            clients.put(client)

    done: dict[str, dict[str, Score]] = {}
    batch: dict[str, dict[str, Score]] = {}
    bar = _progress(len(todo), "stockfish", progress)
    pool = ThreadPoolExecutor(workers)
    try:
        for key, scores in pool.map(work, todo.items()):
            done[key] = batch[key] = scores
            bar.update(1)
            if len(batch) >= 50:
                cache.put(batch, nodes, engine)
                batch = {}
        cache.put(batch, nodes, engine)
    finally:
        # On an error or Ctrl-C, searches not yet started are dropped rather than run.
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        while not clients.empty():
            clients.get().close()
    return done


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool) -> _NoBar:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="pos", leave=False)  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# The analysis


@dataclass
class AdvantageRow:
    """One line of ``advantage.csv``: a mode, a phase (or ``all``) and a temperature."""

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
    logits for a position do not depend on either, so they are computed once per position and
    tempered here, exactly as ``Policy.move_distribution`` does (the tests hold the two equal).
    """

    def __init__(self, model: Path, device: str = "auto") -> None:
        from transcend.engine.policy import Policy

        self.policy = Policy(model, device=device)
        self._key: tuple[str, tuple[chess.Move, ...]] | None = None
        self._scored: tuple[object, np.ndarray] | None = None

    def __call__(self, board: chess.Board, temperature: float,
                 mode: str) -> dict[chess.Move, float]:
        policy = self.policy
        score = getattr(policy, "_score", None)
        temper = getattr(policy, "_distribution", None)
        if score is None or temper is None:  # an engine without the internals: the slow path
            return policy.move_distribution(board, temperature, mode)
        key = (board.root().fen(), tuple(board.move_stack))
        if key != self._key or self._scored is None:
            trie, rows, *_ = score(board, None)
            self._key, self._scored = key, (trie, rows)
        trie, rows = self._scored
        if not trie.moves:  # type: ignore[attr-defined]
            return {}
        p = temper(rows, trie, temperature, mode)
        return dict(zip(trie.moves, p.tolist(), strict=True))  # type: ignore[attr-defined]


def _bootstrap_means(values: np.ndarray, samples: np.ndarray) -> tuple[float, float]:
    """95% percentile interval of the mean of ``values`` over the resampled index rows."""
    if len(values) == 0:
        return math.nan, math.nan
    means = values[samples].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def run_advantage(model: Path, pgns: list[Path], positions: int, temps: list[float], out: Path,
                  nodes: int = DEFAULT_NODES, seed: int = 0, *,
                  modes: Sequence[str] = MODES, cache: Path | None = None,
                  workers: int | None = None, bootstrap: int = DEFAULT_BOOTSTRAP,
                  distribution: DistributionFn | None = None, stockfish: str | None = None,
                  device: str = "auto", plots: bool = True,
                  progress: bool = False) -> AdvantageResult:
    """The whole advantage analysis; writes its files to ``out`` and returns the numbers.

    ``distribution`` replaces the model's move distribution (default: the engine's policy for
    ``model``, loaded before any search so that a bad model file fails fast). ``cache`` is the
    directory of the Stockfish cache (default ``~/.cache/transcend/advantage``); ``device`` is
    where the model runs (``auto``, ``cpu``, ``cuda``, ``tensorrt``).
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
    sample, skipped = sample_positions([Path(p) for p in pgns], positions, seed)
    if not sample:
        reasons = ", ".join(f"{v} {k}" for k, v in sorted(skipped.items())) or "no games"
        raise ValueError(f"no usable positions in the PGN files ({reasons})")
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
    model_wp: dict[tuple[str, float], np.ndarray] = {}
    p_expert: dict[tuple[str, float], np.ndarray] = {}
    p_best: dict[tuple[str, float], np.ndarray] = {}
    for key in ((m, t) for m in modes for t in temps):
        for table in (model_wp, p_expert, p_best):
            table[key] = np.zeros(n)
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
        bar.update(1)
    bar.close()
    seconds["model"] = time.perf_counter() - start

    rng = np.random.default_rng(seed)
    rows: list[AdvantageRow] = []
    phases = np.array([p.phase for p in sample])
    for phase in ("all", *PHASES):
        mask = np.ones(n, bool) if phase == "all" else phases == phase
        count = int(mask.sum())
        if count == 0:
            continue
        # One set of resamples per phase, shared by every row: the intervals are paired.
        samples = rng.integers(0, count, size=(bootstrap, count))
        for mode in modes:
            for t in temps:
                key = (mode, t)
                mw = model_wp[key][mask]
                gains = mw - expert[mask]
                m_low, m_high = _bootstrap_means(mw, samples)
                g_low, g_high = _bootstrap_means(gains, samples)
                rows.append(AdvantageRow(
                    mode, phase, t, count, float(mw.mean()), m_low, m_high,
                    float(expert[mask].mean()), float(rand[mask].mean()),
                    float(best[mask].mean()), float(gains.mean()), g_low, g_high,
                    float(p_expert[key][mask].mean()), float(p_best[key][mask].mean())))

    out.mkdir(parents=True, exist_ok=True)
    result = AdvantageResult(
        rows=rows, positions=sample, skipped=skipped, out=out, csv=out / "advantage.csv",
        positions_csv=out / "positions.csv", summary=out / "summary.md", plot=None,
        gains_plot=None, nodes=nodes, engine=engine, cache_hits=hits, requested=positions,
        seconds=seconds,
        expert=expert, best=best, random=rand, model=model_wp)
    _write_csv(result.csv, CSV_COLUMNS,
               [[_cell(getattr(r, c)) for c in CSV_COLUMNS] for r in rows])
    _write_positions(result, boards, best_moves, modes, temps)
    if plots:
        result.plot, result.gains_plot = _plots(result, modes, temps)
    write_atomic(result.summary, summary_markdown(result, model, modes, temps))
    return result


def _cell(value: object) -> object:
    return f"{value:.6g}" if isinstance(value, float) else value


# --------------------------------------------------------------------------------------------
# Output


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue())


def _write_positions(result: AdvantageResult, boards: Sequence[chess.Board],
                     best_moves: Sequence[str], modes: Sequence[str],
                     temps: Sequence[float]) -> None:
    keys = [(m, t) for m in modes for t in temps]
    header = ["source", "ply", "phase", "fen", "legal_moves", "expert_move", "best_move",
              "expert_win_prob", "best_win_prob", "random_win_prob",
              *[f"model_{m}_T{t:g}" for m, t in keys]]
    rows = []
    for i, (pos, board) in enumerate(zip(result.positions, boards, strict=True)):
        rows.append([pos.source, pos.ply, pos.phase, board.fen(), board.legal_moves.count(),
                     pos.expert.uci(), best_moves[i], _cell(result.expert[i]),
                     _cell(result.best[i]), _cell(result.random[i]),
                     *[_cell(result.model[k][i]) for k in keys]])
    _write_csv(result.positions_csv, header, rows)


def _share_of_top(gains: np.ndarray, fraction: float = 0.1) -> float:
    """Share of the total positive gain carried by the top ``fraction`` of positions."""
    positive = np.sort(gains[gains > 0])[::-1]
    if positive.sum() <= 0:
        return math.nan
    top = max(1, math.ceil(fraction * len(gains)))
    return float(positive[:top].sum() / positive.sum())


def summary_markdown(result: AdvantageResult, model: Path, modes: Sequence[str],
                     temps: Sequence[float]) -> str:
    """``summary.md``: the verdict in words, the table, phases, concentration and the setup."""
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
        if r.phase != "all" and r.mode == mode and r.temperature == top.temperature:
            lines.append(f"| {r.phase} | {r.positions} | {r.model_win_prob:.3f} | "
                         f"{r.expert_win_prob:.3f} | {r.gain:+.3f} ({r.gain_low:+.3f} to "
                         f"{r.gain_high:+.3f}) | {r.random_win_prob:.3f} | "
                         f"{r.best_win_prob:.3f} |")
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


def _plots(result: AdvantageResult, modes: Sequence[str],
           temps: Sequence[float]) -> tuple[Path | None, Path | None]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        click.echo("matplotlib is not installed: no plots (pip install matplotlib)", err=True)
        return None, None
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
    plot = _save(fig, result.out / "advantage.png")
    plt.close(fig)

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
    gains_plot = _save(fig, result.out / "gains.png")
    plt.close(fig)
    return plot, gains_plot


def _save(fig: object, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)  # type: ignore[attr-defined]
    write_atomic(path, buffer.getvalue())
    return path


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
                      pgn_args: tuple[Path, ...], positions: int, temps: str, mode: str,
                      nodes: int, out: Path, cache: Path | None, workers: int | None,
                      bootstrap: int, seed: int, stockfish: str | None, device: str,
                      quiet: bool) -> None:
    """Per-move expected win probability of a model against its experts.

    Draws positions from the experts' games, scores every legal move with Stockfish and
    compares the model's exact expected win probability at each temperature with the expert's
    move, the best move and a random move.
    """
    pgns = list(dict.fromkeys([*pgn_options, *pgn_args]))
    if not pgns:
        raise click.UsageError("give at least one PGN file (--pgn GAMES.pgn)")
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
                           stockfish=stockfish, device=device, progress=not quiet)
    click.echo(result.table_markdown())
    skipped = ", ".join(f"{v} {k}" for k, v in sorted(result.skipped.items())) or "nothing"
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    click.echo(f"{len(result.positions)} positions ({result.cache_hits} analyses cached; "
               f"skipped: {skipped}); {timing}", err=True)
    click.echo(f"wrote {result.csv}, {result.summary}"
               + (f", {result.plot}, {result.gains_plot}" if result.plot else ""), err=True)
