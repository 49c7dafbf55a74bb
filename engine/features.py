"""What a board-input model reads of the position at each character (``board_input``).

A model trained with ``--board-input`` adds to each character's embedding the sum of the rows
of one table named by a fixed-length vector of integer ids: the position after every move whose
text is complete at that character (its terminating space read), relative to the side to move.
Training (``training/data/board.py``) and the engine (``engine/policy.py``) both compute the ids
here, so the two cannot drift apart. numpy and python-chess only.

Ids (row 0 is padding, an all-zero row: a character whose position is unknown adds nothing)::

    board          64 ids   1 + square * 13 + class      (class as in the board targets)
                    4 ids   833 + 2 * right + present    (right: my O-O, my O-O-O, theirs, theirs)
                    1 id    841 + en-passant file        (8: none, or no legal capture)
    board+attacks  the same, then
                   64 ids   850 + class * 9 + min(mine, 2) * 3 + min(theirs, 2)

Classes are relative to the side to move: 0 empty, 1-6 the mover's pawn..king, 7-12 the
opponent's; squares in python-chess order (a1 = 0, h8 = 63), never flipped. The attack ids count
how many of the mover's and of the opponent's pieces attack each square (capped at 2), jointly
with the square's class but not its square: summed over the squares, the embedding says, for
example, how many of the opponent's knights the mover attacks and the opponent does not defend.
"""

from __future__ import annotations

from collections.abc import Callable

import chess
import numpy as np

from transcend.engine.transcript import GAME_START, NULL_MOVE

FEATURE_SETS = ("board", "board+attacks")
# Bumped when the ids of a feature set change: a model file names the version it was trained on.
FEATURES_VERSION = "1"
SQUARES = 64
CLASSES = 13
NO_POSITION = 0
_CASTLING_AT = 1 + SQUARES * CLASSES  # 833
_EN_PASSANT_AT = _CASTLING_AT + 8  # 841
_ATTACKS_AT = _EN_PASSANT_AT + 9  # 850
_ATTACK_LEVELS = 3  # 0, 1, 2 or more
WIDTHS = {"board": SQUARES + 4 + 1, "board+attacks": 2 * SQUARES + 4 + 1}
ROWS = {"board": _ATTACKS_AT, "board+attacks": _ATTACKS_AT + CLASSES * _ATTACK_LEVELS**2}

_BITS = np.arange(SQUARES, dtype=np.uint64)
_PIECES = 12
# A snapshot: the 12 piece bitboards (mover's pawn..king, then the opponent's), the castling
# rights (4 bits), the en-passant file (8: none) and, with attacks, the squares the mover attacks
# at least once and at least twice, then the same for the opponent.
_SNAPSHOT = _PIECES + 2 + 4


class FeatureError(ValueError):
    """A feature set this code does not know."""


def check_feature_set(kind: str) -> str:
    if kind not in FEATURE_SETS:
        raise FeatureError(f"unknown board input {kind!r} (one of {', '.join(FEATURE_SETS)})")
    return kind


def piece_masks(board: chess.Board) -> list[int]:
    """The 12 piece bitboards of ``board``: the side to move's pawn..king, then the other's."""
    mine, theirs = board.occupied_co[board.turn], board.occupied_co[not board.turn]
    kinds = (board.pawns, board.knights, board.bishops, board.rooks, board.queens, board.kings)
    return [kind & mine for kind in kinds] + [kind & theirs for kind in kinds]


def square_classes(masks: np.ndarray | list[list[int]]) -> np.ndarray:
    """(N, 64) uint8 classes from N positions' 12 piece bitboards, all at once."""
    bits = np.asarray(masks, dtype=np.uint64)[:, :_PIECES, None] >> _BITS
    present = (bits & np.uint64(1)).astype(np.uint8)  # (N, 12, 64), one piece a square at most
    return np.einsum("nps,p->ns", present, np.arange(1, 13, dtype=np.uint8)).astype(np.uint8)


def _attacked(board: chess.Board, color: bool) -> tuple[int, int]:
    """The squares ``color`` attacks at least once, and at least twice."""
    once = twice = 0
    for square in chess.scan_reversed(board.occupied_co[color]):
        attacks = board.attacks_mask(square)
        twice |= once & attacks
        once |= attacks
    return once, twice


def snapshot(board: chess.Board, attacks: bool) -> list[int]:
    """What the features of ``board`` need, as plain integers (cheap to take at every ply)."""
    turn = board.turn
    rights = (board.has_kingside_castling_rights(turn)
              | board.has_queenside_castling_rights(turn) << 1
              | board.has_kingside_castling_rights(not turn) << 2
              | board.has_queenside_castling_rights(not turn) << 3)
    en_passant = 8
    if board.ep_square is not None and board.has_legal_en_passant():
        en_passant = chess.square_file(board.ep_square)
    out = [*piece_masks(board), int(rights), en_passant]
    if attacks:
        out += [*_attacked(board, turn), *_attacked(board, not turn)]
    else:
        out += [0, 0, 0, 0]
    return out


def encode_snapshots(snapshots: list[list[int]], kind: str) -> np.ndarray:
    """(N, width) int64 feature ids of N snapshots."""
    raw = np.array(snapshots, dtype=np.uint64).reshape(-1, _SNAPSHOT)
    n = len(raw)
    classes = square_classes(raw).astype(np.int64)
    out = np.empty((n, WIDTHS[kind]), dtype=np.int64)
    out[:, :SQUARES] = 1 + np.arange(SQUARES) * CLASSES + classes
    rights = (raw[:, _PIECES, None] >> np.arange(4, dtype=np.uint64)) & np.uint64(1)
    out[:, SQUARES:SQUARES + 4] = _CASTLING_AT + 2 * np.arange(4) + rights.astype(np.int64)
    out[:, SQUARES + 4] = _EN_PASSANT_AT + raw[:, _PIECES + 1].astype(np.int64)
    if kind == "board+attacks":
        bits = ((raw[:, _PIECES + 2:, None] >> _BITS) & np.uint64(1)).astype(np.int64)
        mine, theirs = bits[:, 0] + bits[:, 1], bits[:, 2] + bits[:, 3]
        out[:, SQUARES + 5:] = (_ATTACKS_AT + classes * _ATTACK_LEVELS**2
                                + mine * _ATTACK_LEVELS + theirs)
    return out


def position_features(board: chess.Board, kind: str) -> np.ndarray:
    """(width,) int64 feature ids of one position."""
    return encode_snapshots([snapshot(board, kind == "board+attacks")], kind)[0]


def move_spans(text: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The moves of a transcript text: their SANs, where each starts and the index of the
    character after it (its terminator). A leading ``;`` and the ``--`` that stands for an
    unknown white move (a prompt set up from a FEN) are not moves, nor is a prompt's closing
    move number (``2.``)."""
    offset = 1 if text.startswith(GAME_START) else 0
    sans: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    position = offset
    for word in text[offset:].split(" "):
        begin = position
        position += len(word) + 1
        san_at = word.find(".") + 1  # white moves carry their number: "12.Nf3"
        san = word[san_at:]
        if not san or san == NULL_MOVE:
            continue
        sans.append(san)
        starts.append(begin + san_at)
        ends.append(begin + len(word))
    return sans, np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)


def plies_at(ends: np.ndarray, length: int) -> np.ndarray:
    """For each of the first ``length`` characters, how many moves are complete there: a move
    is complete once its terminator (at ``ends[k]``) is read."""
    return np.searchsorted(ends, np.arange(length), side="right")


def replay_snapshots(sans: list[str], take: Callable[[chess.Board], list[int]]
                     ) -> list[list[int]] | None:
    """``take`` of the boards after 0, 1, ... len(sans) moves from the standard start (a
    snapshot, or the piece bitboards alone); None when a move does not parse or is illegal."""
    board = chess.Board()
    out = [take(board)]
    for san in sans:
        try:
            board.push_san(san)
        except ValueError:
            return None
        out.append(take(board))
    return out


def snapshot_of(kind: str) -> Callable[[chess.Board], list[int]]:
    """The snapshot that the feature set ``kind`` needs."""
    attacks = kind == "board+attacks"
    return lambda board: snapshot(board, attacks)


def text_features(text: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The features of every character of a transcript text from the standard start: (plies +
    1, width) ids, one row a position, and each character's row. ValueError when its moves do
    not replay."""
    sans, _, ends = move_spans(text)
    complete = int(np.searchsorted(ends, len(text)))  # a move being written is not played yet
    snapshots = replay_snapshots(sans[:complete], snapshot_of(kind))
    if snapshots is None:
        raise ValueError(f"{text[:40]!r}...: its moves do not replay from the start")
    return encode_snapshots(snapshots, kind), plies_at(ends, len(text))
