"""A tournament's games in PGN: each game's record, the text the runner appends as a game ends
(its headers say who played, under what limits, and how the game ended), and reading a file back
to resume a tournament."""

from __future__ import annotations

import contextlib
import datetime
import socket
from dataclasses import dataclass, field
from pathlib import Path

import chess
import chess.pgn

from transcend.evaluation.endings import classify, material_balance
from transcend.evaluation.players import PlayerSpec

TERMINATIONS = ("normal", "time forfeit", "illegal move", "crash", "adjudication")
FORFEITS = ("time forfeit", "illegal move", "crash")


@dataclass(frozen=True)
class TimeControl:
    """A game clock: ``base`` seconds for the game plus ``increment`` a move."""

    base: float
    increment: float = 0.0

    @classmethod
    def parse(cls, text: str) -> TimeControl:
        """``BASE`` or ``BASE+INC`` in seconds, as in PGN's TimeControl tag (e.g. ``10+0.1``)."""
        base, _, inc = text.strip().partition("+")
        try:
            tc = cls(float(base), float(inc or 0))
        except ValueError:
            raise ValueError(f"time control {text!r} must look like BASE+INC in seconds, "
                             "e.g. 10+0.1") from None
        if tc.base <= 0 or tc.increment < 0:
            raise ValueError(f"time control {text!r} needs a positive base and increment >= 0")
        return tc

    def __str__(self) -> str:
        return f"{self.base:g}+{self.increment:g}" if self.increment else f"{self.base:g}"


@dataclass(frozen=True)
class Scheduled:
    index: int  # 0-based, across the tournament; Round = index + 1 in the PGN
    white: int
    black: int
    opening: int | None


@dataclass
class GameResult:
    index: int
    white: str
    black: str
    result: str
    termination: str
    plies: int
    # Per colour, for engines that sample like the paper (``info string illegal attempts N``):
    illegal: dict[bool, int] = field(default_factory=dict)  # illegal samples reported
    moves: dict[bool, int] = field(default_factory=dict)  # moves the engine answered with
    fallbacks: dict[bool, int] = field(default_factory=dict)  # moves after all samples failed
    ending: str = ""  # one of endings.ENDINGS
    material: int = 0  # White's material minus Black's at the end, centipawns
    # Per colour, for engines that convert won positions (``info string convert ...``): the
    # rules in force, and how often each changed a move.
    convert: dict[bool, str] = field(default_factory=dict)
    acted: dict[bool, dict[str, int]] = field(default_factory=dict)

    def illegal_counts(self, name: str) -> tuple[int, int, int]:
        """(illegal samples, engine moves, fallbacks) of player ``name`` in this game."""
        side = name == self.white
        return (self.illegal.get(side, 0), self.moves.get(side, 0), self.fallbacks.get(side, 0))

    def score(self, name: str) -> float:
        white_score = {"1-0": 1.0, "0-1": 0.0}.get(self.result, 0.5)
        return white_score if name == self.white else 1.0 - white_score

    def forfeited_by(self) -> str | None:
        if self.termination not in FORFEITS:
            return None
        return self.black if self.result == "1-0" else self.white


def game_pgn(record: GameResult, board: chess.Board, start: chess.Board, game: Scheduled,
             players: list[PlayerSpec], reason: str, book_plies: int, *, event: str,
             tc: TimeControl | None, max_moves: int | None) -> str:
    """A finished game as PGN text, with ``reason`` as its last comment; ``start`` is the
    position after the opening's ``book_plies``."""
    pgn = chess.pgn.Game.from_board(board)
    headers = pgn.headers
    headers["Event"] = event
    headers["Site"] = socket.gethostname() or "?"
    headers["Date"] = datetime.date.today().strftime("%Y.%m.%d")
    headers["Round"] = str(game.index + 1)
    headers["White"], headers["Black"] = record.white, record.black
    headers["Result"] = record.result
    for colour, index in (("White", game.white), ("Black", game.black)):
        spec = players[index]
        if spec.elo is not None:
            headers[f"{colour}Elo"] = str(spec.elo)
    clocked = tc is not None and any(
        not players[i].has_limit() and players[i].kind != "random"
        for i in (game.white, game.black))
    headers["TimeControl"] = str(tc) if clocked else "-"
    headers["Termination"] = record.termination
    headers["Ending"] = record.ending
    headers["Material"] = f"{record.material / 100:+g}"
    headers["PlyCount"] = str(len(board.move_stack))
    for colour, index, side in (("White", game.white, True), ("Black", game.black, False)):
        spec = players[index]
        headers[f"{colour}Spec"] = spec.text
        headers[f"{colour}Limit"] = _limit_text(spec, tc)
        if spec.options:
            headers[f"{colour}Options"] = ", ".join(f"{k}={v}" for k, v in spec.options.items())
        if spec.temperature is not None:
            headers[f"{colour}Temperature"] = f"{spec.temperature:g}"
        if spec.kind == "uci":
            headers[f"{colour}EngineMoves"] = str(record.moves.get(side, 0))
            headers[f"{colour}IllegalAttempts"] = str(record.illegal.get(side, 0))
            headers[f"{colour}Fallbacks"] = str(record.fallbacks.get(side, 0))
        if side in record.convert:
            headers[f"{colour}Convert"] = record.convert[side]
            headers[f"{colour}Converted"] = ", ".join(
                f"{rule} {n}" for rule, n in sorted(record.acted.get(side, {}).items())) or "-"
    if max_moves:
        headers["MaxMoves"] = str(max_moves)
    if game.opening is not None and book_plies:
        headers["Opening"] = start.root().variation_san(start.move_stack)
    node = pgn.end()
    if node is not pgn:
        node.comment = reason
    else:
        pgn.comment = reason
    exporter = chess.pgn.StringExporter(headers=True, variations=False, comments=True)
    return pgn.accept(exporter) + "\n\n"


def _limit_text(spec: PlayerSpec, tc: TimeControl | None) -> str:
    if spec.kind == "random" or spec.eps >= 1.0:
        return "none"
    if spec.has_limit() or tc is None:
        return spec.go_arguments()
    return f"tc {tc}"


def read_results(pgn: Path) -> list[tuple[GameResult, str]]:
    """Finished games of a tournament PGN with their text (for resuming)."""
    found: list[tuple[GameResult, str]] = []
    with open(pgn, encoding="utf-8", errors="replace") as handle:
        while (game := chess.pgn.read_game(handle)) is not None:
            h = game.headers
            if h.get("Result", "*") == "*" or not h.get("Round", "").isdigit():
                continue
            illegal, moves, fallbacks = {}, {}, {}
            convert: dict[bool, str] = {}
            acted: dict[bool, dict[str, int]] = {}
            for colour, side in (("White", True), ("Black", False)):
                with contextlib.suppress(KeyError, ValueError):
                    illegal[side] = int(h[f"{colour}IllegalAttempts"])
                    moves[side] = int(h[f"{colour}EngineMoves"])
                    fallbacks[side] = int(h[f"{colour}Fallbacks"])
                if f"{colour}Convert" in h:
                    convert[side] = h[f"{colour}Convert"]
                    acted[side] = _counts(h.get(f"{colour}Converted", "-"))
            # The ending and material come from the final position, so that files written
            # before they were recorded read the same.
            termination = h.get("Termination", "normal")
            board = game.end().board()
            record = GameResult(int(h["Round"]) - 1, h["White"], h["Black"], h["Result"],
                                termination, len(list(game.mainline_moves())),
                                illegal, moves, fallbacks, classify(board, termination),
                                material_balance(board), convert, acted)
            exporter = chess.pgn.StringExporter(headers=True, variations=False, comments=True)
            found.append((record, game.accept(exporter) + "\n\n"))
    return found


def _counts(text: str) -> dict[str, int]:
    """``"avoid-draws 3, mate 1"`` (a PGN header) as counts; ``"-"`` for none."""
    counts = {}
    for part in text.split(","):
        rule, _, n = part.strip().rpartition(" ")
        if rule and n.isdigit():
            counts[rule] = int(n)
    return counts
