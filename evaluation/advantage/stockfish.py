"""Stockfish's win probability for every legal move of a position, and its on-disk cache.

Every legal move is scored in one MultiPV search at a fixed node limit with the hash cleared,
so a score depends only on the position, the node limit and the engine version; the SQLite
cache keyed by those three makes a rerun on the same positions free. See ``docs/advantage.md``.
"""

from __future__ import annotations

import math
import os
import queue
import sqlite3
import subprocess
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import chess

from transcend.evaluation.players import EngineCrashed, UciClient, find_stockfish

# About 0.1 s of one core per position here: every legal move searched to depth 6-8.
DEFAULT_NODES = 20_000
# Lichess's win-probability curve: win% = 50 + 50 * (2 / (1 + exp(-k * cp)) - 1).
LICHESS_K = 0.00368208


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



def position_key(board: chess.Board) -> str:
    """The cache key of a position: its FEN without the move number, which Stockfish ignores."""
    return board.fen().rsplit(" ", 1)[0]



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
    bar = progress_bar(len(todo), "stockfish", progress)
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


def progress_bar(total: int, desc: str, enabled: bool) -> _NoBar:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="pos", leave=False)  # type: ignore[return-value]
