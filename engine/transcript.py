"""The character-level transcript format shared by training and the engine.

A game is written as SAN moves with white move numbers and no black move numbers, single
spaces, no result and no comments::

    1.e4 e5 2.Nf3 Nc6 3.Bb5+ Bd7

The training stream is ``;`` + game + ``;`` + game ... and the vocabulary is the paper's 32
characters, so checkpoints trained on the paper's data play through this module unchanged.
See ``docs/transcript-format.md`` for the full specification.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import chess
import numpy as np

VOCAB = " #+-.0123456789;=BKNOQRabcdefghx"
VOCAB_SIZE = len(VOCAB)
STOI: dict[str, int] = {ch: i for i, ch in enumerate(VOCAB)}
GAME_START = ";"
# Characters that may follow a complete move: a space before the next move, or the start of
# the next game when the move ended this one.
MOVE_TERMINATORS = (" ", GAME_START)
# Stands in for the unknown white move when a game set up from a FEN starts with black to move.
NULL_MOVE = "--"

_LOOKUP = np.full(256, 255, dtype=np.uint8)
for _ch, _i in STOI.items():
    _LOOKUP[ord(_ch)] = _i
_VOCAB_BYTES = np.frombuffer(VOCAB.encode("ascii"), dtype=np.uint8)


class TranscriptError(ValueError):
    """Text that cannot be written in the transcript vocabulary."""


def encode(text: str) -> np.ndarray:
    """Token ids (uint8) of ``text``; TranscriptError on a character outside the vocabulary."""
    try:
        raw = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError as exc:
        raise TranscriptError(f"non-ASCII character in transcript: {text[exc.start]!r}") from None
    ids = _LOOKUP[raw]
    if (ids == 255).any():
        bad = text[int(np.argmax(ids == 255))]
        raise TranscriptError(f"character {bad!r} is not in the transcript vocabulary")
    return ids


def decode(ids: Iterable[int] | np.ndarray) -> str:
    """Text of a sequence of token ids."""
    arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64)
    return _VOCAB_BYTES[arr].tobytes().decode("ascii")


def movetext(sans: Sequence[str], first_ply: int = 0) -> str:
    """The transcript of ``sans`` played from ply ``first_ply`` (0 = white's first move).

    A sequence that starts with black to move opens with the move number and ``--`` for the
    unknown white move, e.g. ``12.-- Nf6 13.Bg5``.
    """
    parts: list[str] = []
    for i, san in enumerate(sans):
        ply = first_ply + i
        number = ply // 2 + 1
        if ply % 2 == 0:
            parts.append(f"{number}.{san}")
        elif i == 0:
            parts.append(f"{number}.{NULL_MOVE} {san}")
        else:
            parts.append(san)
    return " ".join(parts)


def game_transcript(sans: Sequence[str]) -> str:
    """One game as it appears in the training stream, with its leading ``;``."""
    return GAME_START + movetext(sans)


def prompt(sans: Sequence[str], first_ply: int = 0, game_start: bool = True) -> str:
    """The text the model sees before the next move: everything up to the move's own characters.

    White to move ends with the move number (``;1.e4 e5 2.``); black to move ends with the space
    after white's move (``;1.e4 ``). ``game_start=False`` omits the leading ``;``: the form used
    for a window that starts inside a long game (``first_ply`` even) or for a set-up position.
    """
    head = GAME_START if game_start else ""
    body = movetext(sans, first_ply)
    ply = first_ply + len(sans)
    number = ply // 2 + 1
    if ply % 2 == 0:
        tail = f"{number}."
        return head + (f"{body} {tail}" if body else tail)
    if not sans:
        return f"{head}{number}.{NULL_MOVE} "
    return f"{head}{body} "


def sans_of_moves(moves: Iterable[chess.Move], board: chess.Board | None = None) -> list[str]:
    """SAN strings of ``moves`` played from ``board`` (the standard start when omitted)."""
    board = chess.Board() if board is None else board.copy(stack=False)
    sans: list[str] = []
    for move in moves:
        sans.append(board.san(move))
        board.push(move)
    return sans


def board_transcript(board: chess.Board) -> str:
    """The training-stream transcript of the game that led to ``board`` from the standard start."""
    root = board.root()
    if root.board_fen() != chess.STARTING_BOARD_FEN or root.turn != chess.WHITE:
        raise TranscriptError("only games from the standard starting position have a transcript")
    return game_transcript(sans_of_moves(board.move_stack, root))
