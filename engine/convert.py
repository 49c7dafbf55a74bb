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
                 rises to at least ``repeat_temperature`` (off by default), so that the loop is
                 left by another of the model's own moves.

Each rule looks only at the positions right after the engine's own legal moves (as the legal
move check does), never deeper. ``paper`` sampling mode never converts: it keeps the paper's
pure sampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import chess

# Plain material values, in centipawns; the engine has no evaluation beyond them.
PIECE_CP = {
    chess.PAWN: 100, chess.KNIGHT: 300, chess.BISHOP: 300, chess.ROOK: 500, chess.QUEEN: 900
}
DEFAULT_MARGIN = 3  # pawns: "more than two pawns ahead"
MAX_MARGIN = 39  # every piece but the king
# Off by default: measured against the other rules, a hotter repeat cost rating (the progress
# rule already breaks the loop, and T = 1 then adds the model's blunders).
DEFAULT_REPEAT_TEMPERATURE = 0.0
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
    """What the rules make of a position: the moves the model may choose from (None: every
    legal move), and at what temperature. ``rules`` names the rules that changed something
    (empty: the model's own choice, at its own temperature, from every candidate)."""

    moves: list[chess.Move] | None
    temperature: float
    rules: list[str] = field(default_factory=list)


def _position_key(board: chess.Board) -> tuple[object, ...]:
    """What makes two positions the same for the repetition rules: pieces, side to move,
    castling rights and a capturable en-passant square."""
    return (board.pawns, board.knights, board.bishops, board.rooks, board.queens, board.kings,
            board.occupied_co[chess.WHITE], board.occupied_co[chess.BLACK], board.turn,
            board.clean_castling_rights(),
            board.ep_square if board.has_legal_en_passant() else None)


def _earlier_positions(board: chess.Board) -> list[tuple[object, ...]]:
    """The keys of the game's positions before this one that a move could enter again: those
    since the last capture or pawn move (an irreversible move makes every earlier one
    unreachable). Moves are taken back and replayed on ``board`` itself: cheaper than a copy."""
    taken = []
    keys = []
    try:
        for _ in range(min(board.halfmove_clock, len(board.move_stack))):
            taken.append(board.pop())
            keys.append(_position_key(board))
    finally:
        for move in reversed(taken):
            board.push(move)
    return keys


def _draws(after: chess.Board, seen: set[tuple[object, ...]]) -> bool:
    """Whether the position after the engine's move ends the game in a draw, or re-enters one
    seen before (the first step of a repetition)."""
    return (
        after.is_stalemate()
        or after.is_insufficient_material()
        or after.halfmove_clock >= 100
        or _position_key(after) in seen
    )


def in_force(mode: str, options: ConvertOptions) -> ConvertOptions | None:
    """The conversion options that act in sampling ``mode``: None in ``paper`` mode, which never
    converts."""
    return None if mode == "paper" else options


def plan(board: chess.Board, candidates: list[chess.Move] | None, temperature: float,
         options: ConvertOptions | None) -> Plan:
    """The moves and temperature the model samples with in ``board``, from ``candidates``
    (the moves a GUI asked to search; None: every legal move), under ``options`` (None: no
    rules, see ``in_force``). ``moves`` is None in the plan when no rule restricted them."""
    unchanged = Plan(candidates, temperature)
    if (options is None or not options.enabled
            or material_cp(board, board.turn) < 100 * options.margin):
        return unchanged  # the common case: nothing more is computed
    moves = list(board.legal_moves) if candidates is None else candidates
    if options.mate:
        for move in moves:
            if board.gives_check(move):
                board.push(move)
                mates = board.is_checkmate()
                board.pop()
                if mates:
                    return Plan([move], temperature, ["mate"])
    earlier = _earlier_positions(board)
    result = Plan(candidates, temperature)
    if options.avoid_draws:
        seen = {_position_key(board), *earlier}
        kept = []
        for move in moves:
            board.push(move)
            if not _draws(board, seen):
                kept.append(move)
            board.pop()
        if kept and len(kept) < len(moves):
            result.moves = moves = kept
            result.rules.append("avoid-draws")
    repeated = _position_key(board) in earlier
    if options.progress and (repeated or board.halfmove_clock >= PROGRESS_PLIES):
        onward = [m for m in moves if board.is_zeroing(m)]
        if onward and len(onward) < len(moves):
            result.moves = onward
            result.rules.append("progress")
    if options.repeat_temperature > temperature and repeated:
        result.temperature = options.repeat_temperature
        result.rules.append("repetition")
    return result
