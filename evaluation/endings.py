"""Why games end, and with how much material on the board.

Every game of a tournament gets one ending (``ENDINGS``) and its material balance at the end
(White's material minus Black's, in centipawns: P 100, N 300, B 300, R 500, Q 900). Per player,
the tallies show what a rating list hides: an engine that is ahead in material but draws by
repetition, or cannot mate before the move cap, books its gains as draws. A draw while more than
two pawns ahead is counted as "drawn while ahead".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import chess
import chess.pgn

from transcend.engine.convert import material_cp

ENDINGS = ("checkmate", "stalemate", "threefold repetition", "fifty-move rule",
           "insufficient material", "move cap", "adjudication", "forfeit")
# Drawn while ahead: a draw with more than two pawns of material more than the opponent.
AHEAD_CP = 300
# python-chess's terminations, as endings: the automatic 75-move and fivefold rules cannot come
# before the fifty-move and threefold rules, which end a game here as soon as they apply.
_OUTCOME_ENDINGS = {
    chess.Termination.CHECKMATE: "checkmate",
    chess.Termination.STALEMATE: "stalemate",
    chess.Termination.INSUFFICIENT_MATERIAL: "insufficient material",
    chess.Termination.SEVENTYFIVE_MOVES: "fifty-move rule",
    chess.Termination.FIFTY_MOVES: "fifty-move rule",
    chess.Termination.FIVEFOLD_REPETITION: "threefold repetition",
    chess.Termination.THREEFOLD_REPETITION: "threefold repetition",
}
# The comment after a game's last move, in cutechess's words.
_DRAW_TEXT = {
    "stalemate": "Draw by stalemate",
    "threefold repetition": "Draw by 3-fold repetition",
    "fifty-move rule": "Draw by fifty moves rule",
    "insufficient material": "Draw by insufficient mating material",
}
_FORFEIT_TEXT = {"time forfeit": "loses on time", "illegal move": "makes an illegal move",
                 "crash": "disconnects"}


def game_result(board: chess.Board) -> tuple[str, str] | None:
    """(result, ending) once the rules end the game on ``board``, else None. Threefold
    repetition and the fifty-move rule end the game when they occur (as cutechess does):
    checking whether a draw could be claimed with the next move costs a move generation per
    legal move."""
    if (outcome := board.outcome()) is not None:
        return outcome.result(), _OUTCOME_ENDINGS.get(outcome.termination, "adjudication")
    if board.halfmove_clock >= 100:
        return "1/2-1/2", "fifty-move rule"
    if board.is_repetition(3):
        return "1/2-1/2", "threefold repetition"
    return None


def classify(board: chess.Board, termination: str) -> str:
    """The ending of a game that stopped on ``board`` with a PGN ``Termination`` of
    ``termination`` (``normal``, ``adjudication`` or a forfeit)."""
    if termination in _FORFEIT_TEXT:
        return "forfeit"
    if termination == "adjudication":
        return "adjudication" if game_result(board) else "move cap"
    ended = game_result(board)
    return ended[1] if ended else "adjudication"


def material_balance(board: chess.Board) -> int:
    """White's material minus Black's, in centipawns."""
    return material_cp(board, chess.WHITE)


def comment(ending: str, result: str, termination: str = "", detail: str = "") -> str:
    """The comment after the last move, as cutechess writes it (``Draw by 3-fold repetition``,
    ``White mates``), with ``detail`` after a colon."""
    loser = "White" if result == "0-1" else "Black"
    if ending == "checkmate":
        text = f"{'Black' if loser == 'White' else 'White'} mates"
    elif ending in _DRAW_TEXT:
        text = _DRAW_TEXT[ending]
    elif ending == "forfeit":
        text = f"{loser} {_FORFEIT_TEXT.get(termination, 'forfeits')}"
    elif result == "1/2-1/2":
        text = "Draw by adjudication"
    else:
        text = f"{'Black' if loser == 'White' else 'White'} wins by adjudication"
    return f"{text}: {detail}" if detail else text


@dataclass
class PlayerEndings:
    """How one player's games ended. ``by_ending`` counts every game; ``mates_won`` and
    ``mates_lost`` split the checkmates; material figures are from this player's side."""

    name: str
    games: int = 0
    by_ending: dict[str, int] = field(default_factory=dict)
    mates_won: int = 0
    mates_lost: int = 0
    draws: int = 0
    drawn_ahead: int = 0  # draws with more than two pawns of material more
    drawn_ahead_by: dict[str, int] = field(default_factory=dict)
    material_sum: int = 0  # centipawns at the end, summed over games

    @property
    def mean_material(self) -> float:
        """Mean material balance at the end, in pawns, from this player's side."""
        return self.material_sum / self.games / 100 if self.games else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean_material": round(self.mean_material, 2)}


@dataclass(frozen=True)
class Ended:
    """What the tallies need of one game."""

    white: str
    black: str
    result: str
    ending: str
    material: int  # White's balance, centipawns


def tally(games: Iterable[Ended], names: Sequence[str]) -> list[PlayerEndings]:
    """Every player's endings, in the order of ``names``."""
    rows = {name: PlayerEndings(name) for name in names}
    for game in games:
        for name, sign, won in ((game.white, 1, "1-0"), (game.black, -1, "0-1")):
            row = rows.setdefault(name, PlayerEndings(name))
            mine = sign * game.material
            row.games += 1
            row.by_ending[game.ending] = row.by_ending.get(game.ending, 0) + 1
            row.material_sum += mine
            if game.ending == "checkmate":
                if game.result == won:
                    row.mates_won += 1
                else:
                    row.mates_lost += 1
            if game.result == "1/2-1/2":
                row.draws += 1
                if mine >= AHEAD_CP:
                    row.drawn_ahead += 1
                    row.drawn_ahead_by[game.ending] = row.drawn_ahead_by.get(game.ending, 0) + 1
    return list(rows.values())


_COLUMNS = (("mates won", None), ("mates lost", None), ("stalemate", "stalemate"),
            ("threefold", "threefold repetition"), ("fifty", "fifty-move rule"),
            ("insufficient", "insufficient material"), ("move cap", "move cap"),
            ("forfeit", "forfeit"))


def endings_table(rows: Sequence[PlayerEndings]) -> str:
    """One line per player: games, how they ended, mean material at the end (pawns, from the
    player's side) and draws while more than two pawns ahead."""
    width = max([len(r.name) for r in rows] + [6])
    head = [f"{'player':<{width}}", f"{'games':>5}", *(f"{c:>{len(c)}}" for c, _ in _COLUMNS),
            f"{'material':>8}", "drawn ahead"]
    lines = ["Why games ended (material at the end in pawns, from the player's side; drawn "
             "ahead: draws more than two pawns up)", "  ".join(head)]
    for r in rows:
        cells = [f"{r.name:<{width}}", f"{r.games:>5}"]
        for column, ending in _COLUMNS:
            value = (r.mates_won if column == "mates won" else r.mates_lost
                     if column == "mates lost" else r.by_ending.get(ending or "", 0))
            cells.append(f"{value:>{len(column)}}")
        cells.append(f"{r.mean_material:>+8.1f}")
        ahead = f"{r.drawn_ahead}/{r.draws}" if r.draws else "0"
        if r.drawn_ahead_by:
            ahead += " (" + ", ".join(f"{k} {v}" for k, v in
                                      Counter(r.drawn_ahead_by).most_common()) + ")"
        cells.append(ahead)
        lines.append("  ".join(cells))
    return "\n".join(lines)


def read_endings(paths: Iterable[Path]) -> list[Ended]:
    """Every finished game of the PGN files, in file order, with its ending and final material
    read off its last position (so a PGN from any runner will do)."""
    found = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as handle:
            while (game := chess.pgn.read_game(handle)) is not None:
                h = game.headers
                if h.get("Result", "*") == "*" or h.get("White") == h.get("Black"):
                    continue
                board = game.end().board()
                termination = h.get("Termination", "normal").lower()
                found.append(Ended(h.get("White", "?"), h.get("Black", "?"), h["Result"],
                                   classify(board, termination), material_balance(board)))
    return found
