"""Positions for the advantage analysis: drawn from PGN games with their full move history.

Games are found by their tag lines without parsing them (fast on files of hundreds of thousands
of games); only the games visited are parsed. See ``docs/advantage.md`` ("Positions").
"""

from __future__ import annotations

import io
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import chess
import chess.pgn

# Phases by ply (half-moves played before the position): the experts' games average about 100
# plies, so these cut them into thirds of roughly equal interest.
PHASES = ("opening", "middlegame", "endgame")
OPENING_PLIES = 20
MIDDLEGAME_PLIES = 60


def phase_of(ply: int) -> str:
    """``opening`` (plies 0-19), ``middlegame`` (20-59) or ``endgame`` (60 on)."""
    if ply < OPENING_PLIES:
        return "opening"
    return "middlegame" if ply < MIDDLEGAME_PLIES else "endgame"



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


class QuietGameBuilder(chess.pgn.GameBuilder):
    """Records errors in ``game.errors`` instead of logging each one: bad games are expected,
    and counted or reported by the caller."""

    def handle_error(self, error: Exception) -> None:
        self.game.errors.append(error)


@dataclass
class Game:
    """A game read for sampling: its moves and, per phase, the plies still free to draw."""

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


def index_games(pgns: Sequence[Path],
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


def read_game(path: Path, start: int, end: int, number: int,
              skipped: Counter[str]) -> Game | None:
    """The game at ``start:end`` of ``path``, or None (counted in ``skipped``) when unusable."""
    with open(path, "rb") as handle:
        handle.seek(start)
        text = handle.read(end - start).decode("utf-8", errors="replace")
    game = chess.pgn.read_game(io.StringIO(text), Visitor=QuietGameBuilder)
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
    return Game(f"{path.name}#{number}", moves, candidates)


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
    index = index_games(pgns, skipped)
    rng.shuffle(index)
    need = _quotas(n)
    chosen: list[Position] = []
    pool: list[Game] = []

    def take(game: Game, anywhere: bool) -> bool:
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
        game = read_game(pgns[entry[0]], *entry[1:], skipped)
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


def read_positions_csv(path: Path) -> list[Position]:
    """The positions of an earlier run's ``positions.csv`` (its ``moves``, ``expert_move`` and
    ``source`` columns), in its order; ValueError (one line) when it cannot be one."""
    import csv

    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"--positions-from {path}: cannot read it ({exc})") from None
    if not rows or not {"moves", "expert_move"} <= set(rows[0]):
        raise ValueError(f"--positions-from {path}: not a positions.csv with moves and "
                         "expert_move columns (one written by `transcend advantage`)")
    positions: list[Position] = []
    for number, row in enumerate(rows, 2):  # line 1 is the header
        board = chess.Board()
        try:
            for uci in (row["moves"] or "").split():
                move = chess.Move.from_uci(uci)
                if move not in board.legal_moves:
                    raise ValueError(uci)
                board.push(move)
            expert = chess.Move.from_uci(row["expert_move"] or "")
            if expert not in board.legal_moves:
                raise ValueError(row["expert_move"])
        except ValueError as exc:
            raise ValueError(f"--positions-from {path}: line {number}: illegal or unreadable "
                             f"move {exc}") from None
        positions.append(Position(tuple(board.move_stack), expert,
                                  row.get("source") or f"{path.name}:{number}"))
    return positions
