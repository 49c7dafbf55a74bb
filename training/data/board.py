"""Board targets: what stands on each square, read off the transcript by replaying its moves.

The board is a function of the transcript, so supervising it adds no information about which
move the experts chose; it only hands the model the representation that choosing needs. Both
the board loss in training (``train --board-loss``) and the probes (``transcend probe``) read
their targets from here.

Encoding: 13 classes per square, relative to the side to move ("mine/theirs"), with squares in
python-chess order (a1 = 0, h8 = 63)::

    0 empty, 1-6 the mover's pawn, knight, bishop, rook, queen, king, 7-12 the opponent's

Positions: the target of a transcript character is the board after every move whose text is
complete there (its terminating space or ``;`` read). ``at="moves"`` keeps only the characters
where the model decides a move (the next character starts one), ``at="all"`` every character.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import chess
import numpy as np

from transcend.engine.transcript import GAME_START, STOI, decode

SQUARES = 64
CLASSES = 13
IGNORE = -1
BOARD_AT = ("moves", "all")
PIECE_NAMES = ".PNBRQKpnbrqk"  # class -> a letter, upper case for the side to move

_GAME_START_ID = STOI[GAME_START]
_BITS = np.arange(SQUARES, dtype=np.uint64)


def _masks(board: chess.Board) -> list[int]:
    """The 12 piece bitboards of ``board``: the side to move's pawn..king, then the other's."""
    mine, theirs = board.occupied_co[board.turn], board.occupied_co[not board.turn]
    kinds = (board.pawns, board.knights, board.bishops, board.rooks, board.queens, board.kings)
    return [kind & mine for kind in kinds] + [kind & theirs for kind in kinds]


def _classes(masks: list[list[int]]) -> np.ndarray:
    """(N, 64) uint8 classes from N positions' 12 bitboards, all at once."""
    bits = np.array(masks, dtype=np.uint64)[:, :, None] >> _BITS
    present = (bits & np.uint64(1)).astype(np.uint8)  # (N, 12, 64), one piece a square at most
    return np.einsum("nps,p->ns", present, np.arange(1, 13, dtype=np.uint8)).astype(np.uint8)


def board_classes(board: chess.Board) -> np.ndarray:
    """The 64 squares of ``board`` as classes relative to the side to move (uint8)."""
    return _classes([_masks(board)])[0]


@dataclass
class GameBoards:
    """One game's boards and where its moves sit in its transcript text (``;`` at index 0).

    ``boards[k]`` is the board after k plies; ``starts[k]``/``ends[k]`` are the indices of the
    first character of move k and of the character after its last.
    """

    boards: np.ndarray  # (plies + 1, 64) uint8
    starts: np.ndarray  # (plies,) int64
    ends: np.ndarray  # (plies,) int64

    def targets(self, length: int, at: str) -> np.ndarray:
        """(length, 64) int64 targets for the first ``length`` characters of the game's text,
        IGNORE where there is none."""
        index = np.arange(length)
        if at == "all":
            complete = np.searchsorted(self.ends, index, side="right")
            return self.boards[complete].astype(np.int64)
        out = np.full((length, SQUARES), IGNORE, dtype=np.int64)
        decide = self.starts - 1
        inside = decide < length
        out[decide[inside]] = self.boards[:-1][inside]
        return out


def replay_game(text: str) -> GameBoards | None:
    """The boards of one game's transcript text (starting with ``;`` or not); None when a move
    does not parse or is illegal."""
    offset = 1 if text.startswith(GAME_START) else 0
    body = text[offset:]
    board = chess.Board()
    masks = [_masks(board)]
    starts: list[int] = []
    ends: list[int] = []
    position = 0
    for word in body.split(" "):
        begin = position
        position += len(word) + 1
        if not word:
            continue
        san_at = word.find(".") + 1  # white moves carry their number: "12.Nf3"
        san = word[san_at:]
        if not san:
            return None
        try:
            board.push_san(san)
        except ValueError:
            return None
        starts.append(offset + begin + san_at)
        ends.append(offset + begin + len(word))
        masks.append(_masks(board))
    return GameBoards(_classes(masks), np.array(starts, dtype=np.int64),
                      np.array(ends, dtype=np.int64))


class BoardTargets:
    """Board targets for windows of a token stream, replayed per game and kept in a bounded
    cache. Only games whose start (``;``) lies in the window get targets: a window that begins
    inside a game cannot know its board."""

    def __init__(self, tokens: np.ndarray, at: str = "moves", cache_games: int = 50_000) -> None:
        if at not in BOARD_AT:
            raise ValueError(f"board targets at {at!r}: one of {', '.join(BOARD_AT)}")
        self.tokens = tokens
        self.at = at
        self.starts = np.flatnonzero(np.asarray(tokens) == _GAME_START_ID)
        self.cache: OrderedDict[int, GameBoards | None] = OrderedDict()
        self.cache_games = cache_games
        self.replayed = 0
        self.failed = 0

    def game(self, index: int) -> GameBoards | None:
        start = int(self.starts[index])
        if start in self.cache:
            self.cache.move_to_end(start)
            return self.cache[start]
        end = int(self.starts[index + 1]) if index + 1 < len(self.starts) else len(self.tokens)
        boards = replay_game(decode(np.asarray(self.tokens[start:end])))
        self.replayed += 1
        self.failed += boards is None
        self.cache[start] = boards
        if len(self.cache) > self.cache_games:
            self.cache.popitem(last=False)
        return boards

    def window(self, start: int, length: int) -> np.ndarray:
        """(length, 64) int64 targets for the input characters tokens[start:start + length]."""
        out = np.full((length, SQUARES), IGNORE, dtype=np.int64)
        first = int(np.searchsorted(self.starts, start))
        for index in range(first, len(self.starts)):
            game_start = int(self.starts[index])
            if game_start >= start + length:
                break
            boards = self.game(index)
            if boards is None:
                continue
            game_end = (int(self.starts[index + 1]) if index + 1 < len(self.starts)
                        else len(self.tokens))
            stop = min(game_end, start + length)
            out[game_start - start: stop - start] = boards.targets(stop - game_start, self.at)
        return out

    def batch(self, window_starts: list[int], length: int) -> np.ndarray:
        return np.stack([self.window(s, length) for s in window_starts])

    def any_replays(self, games: int = 20) -> bool:
        """Whether any of the first ``games`` games replays: data that is chess at all."""
        return any(self.game(i) is not None for i in range(min(games, len(self.starts))))
