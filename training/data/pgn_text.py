"""PGN text to SAN tokens without a board: the movetext cleaning behind ``data prepare``.

Lichess PGN already holds every move in SAN, so a game's moves are cut out of the text itself:
comments, variations, NAGs, annotations and move numbers are stripped in a few passes (numpy
masks and regular expressions) over a whole chunk of games at once, and :func:`separators_for`
gives the white move numbers to write back per game. :func:`replay` is the slow, exact path:
python-chess replays the game.
"""

from __future__ import annotations

import re

import chess
import numpy as np

from transcend.engine.transcript import movetext

BOM = b"\xef\xbb\xbf"
# A run of tag pair lines; the split keeps it, so chunks alternate text / headers / movetext.
_HEADER_BLOCK = re.compile(rb'\n((?:\[[A-Za-z0-9][A-Za-z0-9_+#=:-]*[ \t]+"[^\n]*\n)+)')
_ESCAPE_LINE = re.compile(rb"(?m)^%[^\n]*(?:\n|\Z)")
_HAS_ESCAPE = re.compile(rb"\n%")
# Games are joined with NUL while cleaning, so no pattern may reach across it: an unclosed
# comment then spoils only its own game.
_SEP = b"\x00"
_COMMENT = re.compile(rb"\{[^}\x00]*\}|;[^\n\x00]*")
_VARIATION = re.compile(rb"\([^()\x00]*\)")
_NOISE = re.compile(rb"\$\d*|[?!]+|\d*\.+")
_ZERO_CASTLE = re.compile(rb"(?<![\w/-])0-0(?:-0)?(?![\w/-])")
_SAN = re.compile(
    rb"(?:[NBRQK][a-h]?[1-8]?x?[a-h][1-8]|[a-h](?:x[a-h])?(?:[18]=[NBRQ]|[2-7])|O-O(?:-O)?)[+#]?"
)
RESULTS = frozenset((b"1-0", b"0-1", b"1/2-1/2", b"*"))


def normalise(chunk: bytes) -> bytes:
    """``chunk`` without carriage returns, byte-order marks, NULs and ``%`` escape lines, framed
    by newlines so that :func:`split_games` finds every header block."""
    # Each rewrite runs only when needed: Lichess dumps need none of them.
    if b"\r" in chunk:
        chunk = chunk.replace(b"\r", b"")
    if b"\xbb" in chunk and BOM in chunk:
        chunk = chunk.replace(BOM, b"")
    if _SEP in chunk:
        chunk = chunk.replace(_SEP, b" ")
    if chunk.startswith(b"%") or _HAS_ESCAPE.search(chunk):
        chunk = _ESCAPE_LINE.sub(b"", chunk)
    return b"\n" + chunk + b"\n"


def split_games(chunk: bytes) -> list[tuple[bytes, bytes]]:
    """(header block, movetext) of each game in a chunk of normalised PGN text."""
    parts = _HEADER_BLOCK.split(chunk)
    games = [(parts[i], parts[i + 1]) for i in range(1, len(parts), 2)]
    if parts[0].strip():
        games.insert(0, (b"", parts[0]))
    return games


def _spans_separator(arr: np.ndarray, opens: np.ndarray, closes: np.ndarray) -> bool:
    """Whether a comment runs from one game into the next (an unclosed brace)."""
    seps = np.flatnonzero(arr == 0)
    before = np.searchsorted(opens, seps)
    return bool(((before > 0) & (closes[np.maximum(before - 1, 0)] > seps)).any())


def _strip_comments(text: bytes) -> bytes:
    """``text`` with every comment replaced by a space."""
    if b";" not in text:
        # Fast path for brace comments that open and close in turn (all of Lichess): cut the
        # spans out with numpy instead of one regex match per comment, which costs 5x more.
        arr = np.frombuffer(text, dtype=np.uint8)
        opens = np.flatnonzero(arr == ord("{"))
        closes = np.flatnonzero(arr == ord("}"))
        if len(opens) == 0 and len(closes) == 0:
            return text
        if (
            len(opens) == len(closes)
            and (opens < closes).all()
            and (closes[:-1] < opens[1:]).all()
            and not _spans_separator(arr, opens, closes)
        ):
            bounds = np.empty(2 * len(opens) + 2, dtype=np.int64)
            bounds[0], bounds[-1] = 0, len(arr)
            bounds[1:-1:2], bounds[2:-1:2] = opens, closes
            keep = np.zeros(len(bounds) - 1, dtype=np.bool_)
            keep[0::2] = True
            out = arr.copy()
            out[closes] = ord(" ")  # the closing brace becomes the space between tokens
            return out[np.repeat(keep, np.diff(bounds))].tobytes()
    return _COMMENT.sub(b" ", text)


def _drop_move_numbers(text: bytes) -> bytes:
    """``text`` without tokens made only of digits and dots (``12.``, ``12...``).

    python-chess skips them too; the numbering is written anew per game. Done with numpy
    because a per-token Python filter costs as much as all the rest.
    """
    arr = np.frombuffer(text, dtype=np.uint8)
    if len(arr) == 0:
        return text
    space = arr <= 32  # also the NUL between games, which is kept
    token = ~space
    first = token.copy()
    first[1:] &= space[:-1]
    last = token.copy()
    last[:-1] &= space[1:]
    starts, ends = np.flatnonzero(first), np.flatnonzero(last) + 1
    if len(starts) == 0:
        return text
    # A token is a move number when it holds no byte other than digits and dots: count those
    # "other" bytes up to every position and compare the counts at its two ends.
    other = token & ((arr < 48) | (arr > 57)) & (arr != 46)
    count = np.zeros(len(arr) + 1, dtype=np.int32)
    np.cumsum(other, dtype=np.int32, out=count[1:])
    numeric = count[ends] == count[starts]
    if not numeric.any():
        return text
    bounds = np.empty(2 * int(numeric.sum()) + 2, dtype=np.int64)
    bounds[0], bounds[-1] = 0, len(arr)
    bounds[1:-1:2], bounds[2:-1:2] = starts[numeric], ends[numeric]
    keep = np.zeros(len(bounds) - 1, dtype=np.bool_)
    keep[0::2] = True
    return arr[np.repeat(keep, np.diff(bounds))].tobytes()


def _tokens(text: bytes) -> tuple[list[list[bytes]], set[bytes]]:
    """Each game's whitespace-separated tokens, and the set of tokens that may not appear
    inside a game (anything but SAN; results included)."""
    parts = [game.split() for game in text.split(_SEP)]
    seen: set[bytes] = set().union(*parts)
    if any(_SAN.fullmatch(w) is None for w in seen - RESULTS):
        # NAGs, !? annotations, numbers glued to moves (1.e4), castling with zeros: rare
        # enough for a regular-expression pass over the whole text.
        text = _NOISE.sub(b" ", text)
        if b"0-0" in text:
            text = _ZERO_CASTLE.sub(lambda m: m.group().replace(b"0", b"O"), text)
        parts = [game.split() for game in text.split(_SEP)]
        seen = set().union(*parts)
    return parts, {w for w in seen if _SAN.fullmatch(w) is None}


def clean_movetexts(bodies: list[bytes]) -> tuple[list[list[bytes]], set[bytes]]:
    """Each movetext's tokens with comments, variations, NAGs, annotations and move numbers
    gone, and the set of tokens that make a game unusable if found before its last token."""
    text = _strip_comments(_SEP.join(bodies))
    while b"(" in text:
        stripped = _VARIATION.sub(b" ", text)
        if stripped == text:  # an unbalanced parenthesis: left for the SAN check to reject
            break
        text = stripped
    return _tokens(_drop_move_numbers(text))


_separators: list[bytes] = []


def separators_for(plies: int) -> list[bytes]:
    """The text before each ply of a transcript (``1.``, `` ``, `` 2.``, ...).

    Taken from :func:`movetext` itself, so the numbering rule lives in one place; cached
    because writing it per move would cost more than everything else here.
    """
    global _separators
    if len(_separators) < plies:
        size = max(plies, 2 * len(_separators), 1024)
        _separators = [s.encode() for s in movetext(["\x00"] * size).split("\x00")[:size]]
    return _separators


def replay(tokens: list[bytes]) -> str | None:
    """The transcript of a game replayed with python-chess (canonical SAN); None if illegal."""
    board = chess.Board()
    sans: list[str] = []
    try:
        for token in tokens:
            move = board.parse_san(token.decode("ascii"))
            sans.append(board.san(move))
            board.push(move)
    except ValueError:  # python-chess's illegal/ambiguous/invalid move errors are ValueErrors
        return None
    return movetext(sans)
