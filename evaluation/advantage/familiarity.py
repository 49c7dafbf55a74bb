"""How familiar a position is to a model: how many of its training games began the same way.

The familiarity of a position reached by the moves m1..mk from the standard start is the number
of games in ``train.bin`` whose transcript begins with exactly those k moves (a transposition by
another move order is another prefix, as the model sees it). The majority move of a familiar
position is the move those games played most often next.

The index is the training games themselves, as text, sorted: the games that begin with a given
prefix form one contiguous run, found by two binary searches, so counts are exact (no hashing)
and building the index is a split and a sort (about a second for 100k games; see
``docs/advantage.md``).
"""

from __future__ import annotations

import bisect
import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import chess
import numpy as np

from transcend.engine.transcript import GAME_START, VOCAB, movetext
from transcend.evaluation.advantage.positions import Position, index_games, read_game

FAMILIARITY_BINS = ("0", "1-9", "10-99", "100-999", "1000+")
# Ply bins count the move being chosen: 1 is white's first move, so a position after p
# half-moves is in the bin of p + 1.
PLY_BINS = ("1-4", "5-10", "11-20", "21-40", "41+")
_PLY_EDGES = (4, 10, 20, 40)
# Below this many games a "majority" is mostly chance.
MAJORITY_MIN = 10


def familiarity_bin(familiarity: int) -> str:
    """``0``, ``1-9``, ``10-99``, ``100-999`` or ``1000+``."""
    if familiarity <= 0:
        return "0"
    return FAMILIARITY_BINS[min(4, len(str(int(familiarity))))]


def ply_bin(ply: int) -> str:
    """The bin of a position after ``ply`` half-moves (that of move number ``ply + 1``)."""
    move = ply + 1
    for label, edge in zip(PLY_BINS, _PLY_EDGES, strict=False):
        if move <= edge:
            return label
    return PLY_BINS[-1]


class TrainingIndex:
    """The games of a prepared data set's ``train.bin``, sorted, for exact prefix counts."""

    def __init__(self, games: list[bytes], path: Path | None = None) -> None:
        self.games = sorted(games)
        self.path = path

    def __len__(self) -> int:
        return len(self.games)

    @classmethod
    def from_transcripts(cls, transcripts: Sequence[str]) -> TrainingIndex:
        """An index of games given as text (with or without their leading ``;``)."""
        return cls([t.removeprefix(GAME_START).encode("ascii") for t in transcripts])

    @classmethod
    def load(cls, data: Path) -> TrainingIndex:
        """The index of ``data``/train.bin; ValueError (one line) when it is not prepared data
        in the engine's vocabulary."""
        data = Path(data)
        if not data.is_dir():
            raise ValueError(f"--train-data {data}: no such folder")
        train = data / "train.bin"
        if not train.is_file():
            raise ValueError(f"--train-data {data}: no train.bin (give a folder written by "
                             "`transcend data prepare`)")
        manifest = data / "manifest.json"
        if manifest.is_file():
            try:
                vocab = json.loads(manifest.read_text()).get("vocab", VOCAB)
            except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
                raise ValueError(f"{manifest}: not a readable manifest") from None
            if vocab != VOCAB:
                raise ValueError(f"{manifest}: the data's vocabulary {vocab!r} is not the "
                                 f"engine's {VOCAB!r}")
        tokens = np.fromfile(train, dtype=np.uint8)
        if tokens.size and int(tokens.max()) >= len(VOCAB):
            raise ValueError(f"{train}: token ids above {len(VOCAB) - 1}: not transcript data")
        text = np.frombuffer(VOCAB.encode("ascii"), dtype=np.uint8)[tokens].tobytes()
        return cls([g for g in text.split(GAME_START.encode()) if g], train)

    def count_text(self, text: bytes) -> int:
        """Games that begin with the moves of ``text`` (movetext without ``;``): the game ends
        there or goes on after a space."""
        if not text:
            return len(self.games)
        games = self.games
        ended = bisect.bisect_right(games, text) - bisect.bisect_left(games, text)
        # Every game that goes on after these moves sorts between text + " " and text + "!",
        # since the space is the lowest character of the vocabulary and "!" is not in it.
        going = bisect.bisect_left(games, text + b"!") - bisect.bisect_left(games, text + b" ")
        return ended + going

    def count(self, sans: Sequence[str]) -> int:
        """Familiarity of the position after ``sans`` played from the standard start."""
        return self.count_text(movetext(sans).encode("ascii"))

    def next_moves(self, board: chess.Board, sans: Sequence[str]) -> Counter[chess.Move]:
        """How often each legal move of ``board`` (reached by ``sans``) was played next."""
        counts: Counter[chess.Move] = Counter()
        for move in board.legal_moves:
            n = self.count([*sans, board.san(move)])
            if n:
                counts[move] = n
        return counts


@dataclass(frozen=True)
class Familiarity:
    """A position's familiarity and, when it is at least MAJORITY_MIN, its majority move(s)."""

    count: int
    majority: tuple[chess.Move, ...] = ()  # every move tied for most often played next
    majority_count: int = 0  # games that played it

    @property
    def bin(self) -> str:
        return familiarity_bin(self.count)


def familiarity_of(index: TrainingIndex, position: Position) -> Familiarity:
    board = chess.Board()
    sans: list[str] = []
    for move in position.history:
        sans.append(board.san(move))
        board.push(move)
    count = index.count(sans)
    if count < MAJORITY_MIN:
        return Familiarity(count)
    nexts = index.next_moves(board, sans)
    if not nexts:  # every such game ended here
        return Familiarity(count)
    top = max(nexts.values())
    tied = tuple(sorted((m for m, n in nexts.items() if n == top), key=lambda m: m.uci()))
    return Familiarity(count, tied, top)


@dataclass
class Strata:
    """What ``--per-bin`` sampling found and drew, per familiarity bin."""

    per_bin: int
    candidates: dict[str, int]
    drawn: dict[str, int]


def sample_by_familiarity(pgns: Sequence[Path], index: TrainingIndex, per_bin: int,
                          seed: int = 0) -> tuple[list[Position], Counter[str], Strata]:
    """Up to ``per_bin`` positions from each familiarity bin, uniformly among every position of
    every usable game (one with 2+ legal moves), without replacement, seeded.

    A candidate is a game and a ply: the same opening position in two games is two candidates
    (each with its own expert move), as in the games themselves.
    """
    if per_bin < 1:
        raise ValueError("--per-bin must be at least 1")
    skipped: Counter[str] = Counter()
    candidates: dict[str, list[tuple[int, int]]] = {b: [] for b in FAMILIARITY_BINS}
    games = []
    for entry in index_games(pgns, skipped):
        game = read_game(pgns[entry[0]], *entry[1:], skipped)
        if game is None:
            continue
        usable = {ply for plies in game.candidates.values() for ply in plies}
        board = chess.Board()
        text = b""
        count = len(index)
        for ply, move in enumerate(game.moves):
            if ply in usable:
                candidates[familiarity_bin(count)].append((len(games), ply))
            if count:  # once no game shares the prefix, none shares a longer one
                san = board.san(move).encode("ascii")
                text = (text + b" " + san) if ply % 2 else (
                    text + (b" " if text else b"") + b"%d." % (ply // 2 + 1) + san)
                count = index.count_text(text)
            board.push(move)
        games.append(game)
    rng = random.Random(seed)
    chosen: list[Position] = []
    drawn: dict[str, int] = {}
    for label in FAMILIARITY_BINS:
        pool = candidates[label]
        picks = sorted(rng.sample(range(len(pool)), min(per_bin, len(pool))))
        drawn[label] = len(picks)
        for k in picks:
            g, ply = pool[k]
            game = games[g]
            chosen.append(Position(tuple(game.moves[:ply]), game.moves[ply], game.source))
    strata = Strata(per_bin, {b: len(c) for b, c in candidates.items()}, drawn)
    return chosen, skipped, strata
