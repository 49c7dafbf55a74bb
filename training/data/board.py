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

from transcend.engine.features import (
    CLASSES,
    NO_POSITION,
    SQUARES,
    WIDTHS,
    encode_snapshots,
    move_spans,
    piece_masks,
    plies_at,
    replay_snapshots,
    snapshot_of,
    square_classes,
)
from transcend.engine.transcript import GAME_START, STOI, decode

IGNORE = -1
BOARD_AT = ("moves", "all")
PIECE_NAMES = ".PNBRQKpnbrqk"  # class -> a letter, upper case for the side to move

_GAME_START_ID = STOI[GAME_START]
__all__ = ["CLASSES", "SQUARES", "BoardTargets", "GameBoards", "board_classes", "replay_game"]


def board_classes(board: chess.Board) -> np.ndarray:
    """The 64 squares of ``board`` as classes relative to the side to move (uint8)."""
    return square_classes([piece_masks(board)])[0]


@dataclass
class GameBoards:
    """One game's boards and where its moves sit in its transcript text (``;`` at index 0).

    ``boards[k]`` is the board after k plies; ``starts[k]``/``ends[k]`` are the indices of the
    first character of move k and of the character after its last. ``features[k]``, when the
    game was replayed for a board input, are the input's ids after k plies.
    """

    boards: np.ndarray  # (plies + 1, 64) uint8
    starts: np.ndarray  # (plies,) int64
    ends: np.ndarray  # (plies,) int64
    features: np.ndarray | None = None  # (plies + 1, width) int16

    def targets(self, length: int, at: str) -> np.ndarray:
        """(length, 64) int64 targets for the first ``length`` characters of the game's text,
        IGNORE where there is none."""
        if at == "all":
            return self.boards[plies_at(self.ends, length)].astype(np.int64)
        out = np.full((length, SQUARES), IGNORE, dtype=np.int64)
        decide = self.starts - 1
        inside = decide < length
        out[decide[inside]] = self.boards[:-1][inside]
        return out


def replay_game(text: str, board_input: str | None = None) -> GameBoards | None:
    """The boards of one game's transcript text (starting with ``;`` or not), and the features
    of ``board_input`` when given; None when a move does not parse or is illegal."""
    sans, starts, ends = move_spans(text)
    # The board targets need the pieces alone: cheaper than a whole snapshot at every ply.
    snapshots = replay_snapshots(sans, snapshot_of(board_input) if board_input else piece_masks)
    if snapshots is None:
        return None
    features = (encode_snapshots(snapshots, board_input).astype(np.int16) if board_input
                else None)
    return GameBoards(square_classes(snapshots), starts, ends, features)


class BoardTargets:
    """Board targets (and board-input features) for windows of a token stream, replayed per
    game and kept in a bounded cache.

    Targets: only games whose start (``;``) lies in the window get them, the board loss's rule.
    Features: every character gets its position, including a window that begins inside a game
    (its game is replayed from its start); a game that does not replay gets NO_POSITION.
    """

    def __init__(self, tokens: np.ndarray, at: str = "moves", cache_games: int = 50_000,
                 board_input: str | None = None) -> None:
        if at not in BOARD_AT:
            raise ValueError(f"board targets at {at!r}: one of {', '.join(BOARD_AT)}")
        self.tokens = tokens
        self.at = at
        self.board_input = board_input
        self.starts = np.flatnonzero(np.asarray(tokens) == _GAME_START_ID)
        self.cache: OrderedDict[int, GameBoards | None] = OrderedDict()
        # Features take 2 bytes an id (69 or 133 a ply): fewer games fit in the same memory.
        self.cache_games = cache_games if board_input is None else min(cache_games, 10_000)
        self.replayed = 0
        self.failed = 0

    def _end(self, index: int) -> int:
        return int(self.starts[index + 1]) if index + 1 < len(self.starts) else len(self.tokens)

    def game(self, index: int) -> GameBoards | None:
        start = int(self.starts[index])
        if start in self.cache:
            self.cache.move_to_end(start)
            return self.cache[start]
        boards = replay_game(decode(np.asarray(self.tokens[start:self._end(index)])),
                             self.board_input)
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
            stop = min(self._end(index), start + length)
            out[game_start - start: stop - start] = boards.targets(stop - game_start, self.at)
        return out

    def batch(self, window_starts: list[int], length: int) -> np.ndarray:
        return np.stack([self.window(s, length) for s in window_starts])

    def window_features(self, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """The board input of tokens[start:start + length]: (P, width) ids of the positions
        it holds (row 0 NO_POSITION), and each character's row (length,)."""
        assert self.board_input is not None
        rows = [np.full((1, WIDTHS[self.board_input]), NO_POSITION, dtype=np.int64)]
        index = np.zeros(length, dtype=np.int64)
        used = 1
        # The game the window starts in, even when its start lies before the window.
        first = max(0, int(np.searchsorted(self.starts, start, side="right")) - 1)
        for game in range(first, len(self.starts)):
            game_start = int(self.starts[game])
            if game_start >= start + length:
                break
            boards = self.game(game)
            begin, stop = max(game_start, start), min(self._end(game), start + length)
            if boards is None or stop <= begin:
                continue
            assert boards.features is not None
            plies = plies_at(boards.ends, stop - game_start)[begin - game_start:]
            low, high = int(plies[0]), int(plies[-1])
            rows.append(boards.features[low:high + 1].astype(np.int64))
            index[begin - start: stop - start] = used + plies - low
            used += high - low + 1
        return np.concatenate(rows), index

    def batch_features(self, window_starts: list[int], length: int
                       ) -> tuple[np.ndarray, np.ndarray]:
        """(B, P, width) ids and (B, length) rows of a batch of windows, P padded with
        NO_POSITION rows."""
        windows = [self.window_features(s, length) for s in window_starts]
        width = windows[0][0].shape[1]
        features = np.full((len(windows), max(len(w[0]) for w in windows), width), NO_POSITION,
                           dtype=np.int64)
        for b, (rows, _) in enumerate(windows):
            features[b, : len(rows)] = rows
        return features, np.stack([w[1] for w in windows])

    def any_replays(self, games: int = 20) -> bool:
        """Whether any of the first ``games`` games replays: data that is chess at all."""
        return any(self.game(i) is not None for i in range(min(games, len(self.starts))))
