"""Converting won positions without search: rules that act only when the engine is ahead.

A policy sampled at a low temperature, with no search, walks into loops when it is ahead: its
favourite moves shuffle between a few positions until the game is drawn by repetition, and it
rarely finds the mate that ends the game. These rules change the move only when the side to
move leads in material by ``margin`` pawns or more (behind or level, a draw may be welcome, and
the model's choice stands):

``mate``         a move that mates at once is played (the first in move order);
``avoid draws``  moves after which the game is drawn or heads back into a loop are set aside
                 while any other move remains: stalemate, insufficient material, the fifty-move
                 rule, and re-entering a position already seen in the game;
``progress``     when the position on the board has occurred before, or ``PROGRESS_PLIES``
                 plies have passed without a capture or a pawn move, only captures and pawn
                 moves are kept (when there are any): they make every earlier position
                 unreachable, so the opponent cannot close a loop, and they move the game on
                 before the fifty-move rule or the move cap draws it;
``repetition``   when the position on the board has occurred before, the sampling temperature
                 rises to at least ``repeat_temperature``, so that the loop is left by another
                 of the model's own moves.

Each rule looks only at the positions right after the engine's own legal moves (as the legal
move check does), never deeper. ``paper`` sampling mode never converts: it keeps the paper's
pure sampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import chess
import chess.polyglot

# Plain material values, in centipawns; the engine has no evaluation beyond them.
PIECE_CP = {
    chess.PAWN: 100, chess.KNIGHT: 300, chess.BISHOP: 300, chess.ROOK: 500, chess.QUEEN: 900
}
DEFAULT_MARGIN = 3  # pawns: "more than two pawns ahead"
MAX_MARGIN = 39  # every piece but the king
DEFAULT_REPEAT_TEMPERATURE = 1.0
# Plies without a capture or pawn move after which `progress` acts: a fifth of the way to the
# fifty-move rule, long enough for a manoeuvre, short of a shuffle.
PROGRESS_PLIES = 20


def material_cp(board: chess.Board, color: chess.Color) -> int:
    """Material balance for ``color`` in centipawns (P 100, N 300, B 300, R 500, Q 900)."""
    total = 0
    for piece, value in PIECE_CP.items():
        total += value * (len(board.pieces(piece, color)) - len(board.pieces(piece, not color)))
    return total


@dataclass
class ConvertOptions:
    """Which rules act, and from what material lead. The defaults are the engine's."""

    enabled: bool = True  # the master switch: off, the model's choice always stands
    margin: int = DEFAULT_MARGIN  # pawns of material lead from which the rules act
    mate: bool = True
    avoid_draws: bool = True
    progress: bool = True
    repeat_temperature: float = DEFAULT_REPEAT_TEMPERATURE  # at most the temperature: no effect

    def describe(self, temperature: float) -> str:
        """The active rules in one line, as the engine announces them."""
        if not self.enabled:
            return "convert off"
        rules = [name for name, on in (("mate", self.mate), ("avoid-draws", self.avoid_draws),
                                       ("progress", self.progress),
                                       ("repetition", self.repeat_temperature > temperature))
                 if on]
        if not rules:
            return "convert off"
        text = f"convert ahead {self.margin}+ pawns: {' '.join(rules)}"
        if self.repeat_temperature > temperature:
            text += f" (T={self.repeat_temperature:g} on a repeated position)"
        return text


@dataclass
class Plan:
    """What the rules make of a position: the moves the model may choose from, and at what
    temperature. ``rules`` names the rules that changed something (empty: the model's own
    choice, at its own temperature, from every candidate)."""

    moves: list[chess.Move]
    temperature: float
    rules: list[str] = field(default_factory=list)


def _seen_positions(board: chess.Board) -> set[int]:
    """Hashes of the positions of the game so far that a move could enter again: those since
    the last capture or pawn move (an irreversible move makes every earlier one unreachable)."""
    seen = {chess.polyglot.zobrist_hash(board)}
    back = board.copy()
    for _ in range(min(board.halfmove_clock, len(board.move_stack))):
        back.pop()
        seen.add(chess.polyglot.zobrist_hash(back))
    return seen


def _draws(after: chess.Board, seen: set[int]) -> bool:
    """Whether the position after the engine's move ends the game in a draw, or re-enters one
    seen before (the first step of a repetition)."""
    return (
        after.is_stalemate()
        or after.is_insufficient_material()
        or after.halfmove_clock >= 100
        or chess.polyglot.zobrist_hash(after) in seen
    )


def plan(board: chess.Board, candidates: list[chess.Move], temperature: float,
         options: ConvertOptions) -> Plan:
    """The moves and temperature the model samples with in ``board``, from ``candidates``
    (the legal moves, or those a GUI asked to search)."""
    unchanged = Plan(candidates, temperature)
    if (not options.enabled or not candidates
            or material_cp(board, board.turn) < 100 * options.margin):
        return unchanged
    if options.mate:
        for move in candidates:
            if board.gives_check(move):
                board.push(move)
                mates = board.is_checkmate()
                board.pop()
                if mates:
                    return Plan([move], temperature, ["mate"])
    result = Plan(candidates, temperature)
    if options.avoid_draws:
        seen = _seen_positions(board)
        kept = []
        for move in candidates:
            board.push(move)
            if not _draws(board, seen):
                kept.append(move)
            board.pop()
        if kept and len(kept) < len(candidates):
            result.moves = kept
            result.rules.append("avoid-draws")
    repeated = board.is_repetition(2)
    if options.progress and (repeated or board.halfmove_clock >= PROGRESS_PLIES):
        onward = [m for m in result.moves if board.is_zeroing(m)]
        if onward and len(onward) < len(result.moves):
            result.moves = onward
            result.rules.append("progress")
    if options.repeat_temperature > temperature and repeated:
        result.temperature = options.repeat_temperature
        result.rules.append("repetition")
    return result
