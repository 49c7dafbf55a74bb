"""Converting won positions: the rules on crafted positions, through the engine with the bundled
model, and the engine's options and announcements."""

from __future__ import annotations

import io

import chess
import chess.polyglot
import numpy as np
import pytest
from test_uci import Raw, bestmove, declared_options

from transcend.engine.convert import PROGRESS_PLIES, ConvertOptions, material_cp, plan
from transcend.engine.model_file import resolve_model
from transcend.engine.options import Settings
from transcend.engine.uci import Engine, Output


def _played(fen: str, *ucis: str) -> chess.Board:
    board = chess.Board(fen)
    for uci in ucis:
        board.push_uci(uci)
    return board


def _mates(board: chess.Board, move: chess.Move) -> bool:
    return board.gives_check(move) and _after(board, move).is_checkmate()


def _stalemates(board: chess.Board, move: chess.Move) -> bool:
    return _after(board, move).is_stalemate()


def _after(board: chess.Board, move: chess.Move) -> chess.Board:
    after = board.copy(stack=False)
    after.push(move)
    return after


def _enters_seen(board: chess.Board, move: chess.Move) -> bool:
    """Whether ``move`` leads to a position that occurred earlier in ``board``'s game."""
    seen = set()
    back = board.copy()
    seen.add(chess.polyglot.zobrist_hash(back))
    while back.move_stack:
        back.pop()
        seen.add(chess.polyglot.zobrist_hash(back))
    after = board.copy()
    after.push(move)
    return chess.polyglot.zobrist_hash(after) in seen


# -- the rules alone ---------------------------------------------------------------------------


def test_mate_in_one_is_taken_when_ahead() -> None:
    board = chess.Board("k7/8/1K6/8/8/8/8/7R w - - 0 1")  # Rh8#, a rook up
    result = plan(board, list(board.legal_moves), 0.01, ConvertOptions())
    assert result.rules == ["mate"] and [board.san(m) for m in result.moves] == ["Rh8#"]
    off = plan(board, list(board.legal_moves), 0.01, ConvertOptions(mate=False))
    assert "mate" not in off.rules and len(off.moves) == board.legal_moves.count()


def test_stalemating_moves_are_set_aside_when_ahead() -> None:
    board = chess.Board("k7/8/1K6/8/8/8/8/2Q5 w - - 0 1")  # Qc7 stalemates
    stalemates = [m for m in board.legal_moves if _stalemates(board, m)]
    assert stalemates, "the position must offer a stalemate"
    result = plan(board, list(board.legal_moves), 0.01, ConvertOptions(mate=False))
    assert result.rules == ["avoid-draws"]
    assert not set(stalemates) & set(result.moves)
    assert len(result.moves) == board.legal_moves.count() - len(stalemates)


def test_a_seen_position_is_not_entered_again_and_a_repeat_raises_the_temperature() -> None:
    board = _played("4k3/8/8/8/8/8/8/Q3K3 w - - 0 1",
                    "a1a2", "e8d8", "a2a1", "d8e8")  # back where it started: a repeat
    result = plan(board, list(board.legal_moves), 0.01, ConvertOptions(repeat_temperature=1))
    back = chess.Move.from_uci("a1a2")
    assert back not in result.moves and _enters_seen(board, back)
    assert not any(_enters_seen(board, m) for m in result.moves)
    assert result.temperature == 1.0 and result.rules == ["avoid-draws", "repetition"]
    cold = plan(board, list(board.legal_moves), 0.01, ConvertOptions())  # off by default
    assert cold.temperature == 0.01 and cold.rules == ["avoid-draws"]


def test_a_repeat_or_a_long_shuffle_keeps_only_captures_and_pawn_moves() -> None:
    start = "4k3/8/8/8/8/8/P7/Q3K3 w - - 0 1"  # a queen and a pawn up
    repeated = _played(start, "a1b1", "e8d8", "b1a1", "d8e8")
    shuffled = chess.Board(start.replace(" 0 1", f" {PROGRESS_PLIES} 40"))
    for board in (repeated, shuffled):
        result = plan(board, list(board.legal_moves), 0.01, ConvertOptions())
        assert "progress" in result.rules
        assert sorted(board.san(m) for m in result.moves) == ["a3", "a4"]
        assert plan(board, list(board.legal_moves), 0.01,
                    ConvertOptions(progress=False)).moves != result.moves
    fresh = chess.Board(start.replace(" 0 1", f" {PROGRESS_PLIES - 1} 40"))
    assert plan(fresh, list(fresh.legal_moves), 0.01, ConvertOptions()).rules == []


def test_behind_level_or_off_the_rules_change_nothing() -> None:
    level = chess.Board("k7/6r1/1K6/8/8/8/8/7R w - - 0 1")  # a rook each
    assert material_cp(level, chess.WHITE) == 0
    for board, options in ((level, ConvertOptions()),
                           (chess.Board("k7/8/1K6/8/8/8/8/7R w - - 0 1"),
                            ConvertOptions(enabled=False)),
                           (chess.Board("k7/8/1K6/8/8/8/8/7R w - - 0 1"),
                            ConvertOptions(margin=6))):  # a rook is 5 pawns: not enough
        moves = list(board.legal_moves)
        result = plan(board, moves, 0.01, options)
        assert result.rules == [] and result.moves == moves and result.temperature == 0.01


def test_the_announcement_names_the_rules() -> None:
    assert ConvertOptions().describe(0.01) == "convert ahead 3+ pawns: mate avoid-draws progress"
    assert ConvertOptions(repeat_temperature=1).describe(0.01) == (
        "convert ahead 3+ pawns: mate avoid-draws progress repetition "
        "(T=1 on a repeated position)")
    assert ConvertOptions(repeat_temperature=1).describe(1.0) == (
        "convert ahead 3+ pawns: mate avoid-draws progress")
    assert ConvertOptions(enabled=False).describe(0.01) == "convert off"
    assert ConvertOptions(mate=False, avoid_draws=False, progress=False,
                          repeat_temperature=0).describe(0.01) == "convert off"


# -- through the engine, with the bundled model -----------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Engine:
    # The paper model, whose greedy play is known to loop in these positions: the rules are
    # measured against the loops it walks into.
    found = Engine(Settings(model=str(resolve_model("paper")), temperature=0.0, threads=1),
                   Output(io.StringIO()))
    assert found.wait_for_model() is not None, found.load_error
    return found


def _greedy(engine: Engine, board: chess.Board, convert: bool,
            moves: list[chess.Move] | None = None, mode: str = "token") -> chess.Move:
    engine.settings.convert = ConvertOptions(enabled=convert)
    engine.settings.mode = mode
    engine.rng = np.random.default_rng(5)
    policy = engine.wait_for_model()
    assert policy is not None
    choice, _ = engine.choose(policy, board, moves)
    return choice.move


def _loop(engine: Engine, fen: str, plies: int = 80) -> tuple[chess.Board, chess.Move]:
    """Play the model greedily (White, rules off) against a defender that always makes its
    first legal move in UCI order, until the model's choice enters a position seen before:
    the two-move loop of a policy without search. Returns the position and that move."""
    board = chess.Board(fen)
    for _ in range(plies):
        assert not board.is_game_over(), board.fen()
        if board.turn == chess.WHITE:
            move = _greedy(engine, board, convert=False)
            if _enters_seen(board, move):
                return board, move
        else:
            move = min(board.legal_moves, key=lambda m: m.uci())
        board.push(move)
    raise AssertionError(f"no loop from {fen}")


def test_engine_leaves_the_loop_when_ahead(engine: Engine) -> None:
    board, looping = _loop(engine, "4k3/8/8/8/8/8/8/Q3K3 w - - 0 1")
    assert material_cp(board, chess.WHITE) >= 300
    assert _greedy(engine, board, convert=False) == looping  # the model's argmax repeats
    chosen = _greedy(engine, board, convert=True)
    assert chosen != looping and not _enters_seen(board, chosen)


def test_engine_keeps_the_model_choice_when_behind_or_level(engine: Engine) -> None:
    for fen in ("4k3/pp6/8/8/8/8/PP6/4K3 w - - 0 1", "r3k3/8/8/8/8/8/8/R3K3 w - - 0 1"):
        board, looping = _loop(engine, fen)
        assert material_cp(board, chess.WHITE) < 300
        assert _greedy(engine, board, convert=True) == looping


def test_engine_mates_when_the_model_would_not(engine: Engine) -> None:
    board = chess.Board("k7/8/1K6/8/8/8/8/7R w - - 0 1")
    plain = _greedy(engine, board, convert=False)
    assert not _mates(board, plain), "the model alone misses the mate here"
    assert _mates(board, _greedy(engine, board, convert=True))


def test_engine_avoids_stalemate(engine: Engine) -> None:
    board = chess.Board("k7/8/1K6/8/8/8/8/2Q5 w - - 0 1")
    stalemates = [m for m in board.legal_moves if _stalemates(board, m)]
    others = [m for m in board.legal_moves if m not in stalemates and not _mates(board, m)]
    # As a GUI's searchmoves: a stalemate and a move the model likes less.
    pairs = [[s, o] for s in stalemates for o in others
             if _greedy(engine, board, convert=False, moves=[s, o]) == s]
    assert pairs, "the model prefers no stalemate to any other move here"
    pair = pairs[0]
    stalemate, other = pair
    assert _greedy(engine, board, convert=True, moves=pair) == other


def test_paper_mode_never_converts(engine: Engine) -> None:
    board, _ = _loop(engine, "4k3/8/8/8/8/8/8/Q3K3 w - - 0 1")
    engine.settings.temperature = 1.0
    try:
        for seed_board in (board, chess.Board("k7/8/1K6/8/8/8/8/7R w - - 0 1")):
            moves = [_greedy(engine, seed_board, convert=c, mode="paper") for c in (True, False)]
            assert moves[0] == moves[1]
            policy = engine.wait_for_model()
            assert policy is not None
            engine.settings.convert = ConvertOptions()
            _, rules = engine.choose(policy, seed_board, None)
            assert rules.rules == [] and rules.temperature == 1.0
    finally:
        engine.settings.temperature = 0.0
        engine.settings.mode = "token"


# -- the UCI face --------------------------------------------------------------------------------


def test_options_are_declared_announced_and_checked() -> None:
    raw = Raw("--temp", "0")
    try:
        raw.send("uci")
        options = declared_options(raw.until("uciok"))
        assert options["Convert"] == "check default true"
        assert options["ConvertMargin"] == "spin default 3 min 1 max 39"
        assert options["ConvertMate"] == "check default true"
        assert options["ConvertAvoidDraws"] == "check default true"
        assert options["ConvertProgress"] == "check default true"
        assert options["ConvertRepetitionTemperature"] == "string default 0"
        for name, value in (("ConvertMargin", "0"), ("ConvertMargin", "x"),
                            ("ConvertMate", "maybe"), ("ConvertRepetitionTemperature", "-1")):
            raw.send(f"setoption name {name} value {value}")
            errors = [line for line in raw.ready() if line.startswith("info string error")]
            assert len(errors) == 1, errors
            assert name in errors[0] or "temperature must be" in errors[0], errors
        raw.send("ucinewgame", "position fen k7/8/1K6/8/8/8/8/7R w - - 0 1", "go nodes 1")
        lines = raw.until("bestmove")
        assert bestmove(lines) == "h1h8"
        said = [line for line in lines if "convert" in line]
        assert said == ["info string convert ahead 3+ pawns: mate avoid-draws progress; "
                        "convert acted mate"]
        raw.send("setoption name Convert value false", "position fen k7/8/1K6/8/8/8/8/7R w - - "
                 "0 1 moves h1g1 a8a7 g1h1 a7a8", "go nodes 1")
        said = [line for line in raw.until("bestmove") if "convert" in line]
        assert said == ["info string convert off"]  # a change of the rules is announced
    finally:
        raw.close()
