"""`token` sampling character by character: the same distribution, and for the same random
number the same move, as sampling from the exact probabilities of every legal move."""

from __future__ import annotations

import random
from pathlib import Path

import chess
import numpy as np
import pytest

from transcend.engine.policy import Policy
from transcend.engine.token_steps import steps_are_cheaper

CASTLING_FEN = "r3k2r/pppqppbp/2np1np1/8/8/2NP1NP1/PPPQPPBP/R3K2R w KQkq - 0 9"


def policy_with(path: Path, token_path: str) -> Policy:
    policy = Policy(path, device="cpu", threads=1)
    policy.token_path = token_path
    return policy


def positions() -> list[chess.Board]:
    boards = [chess.Board(), chess.Board(CASTLING_FEN)]
    rng = random.Random(3)
    for plies in (5, 14, 31):
        board = chess.Board()
        for _ in range(plies):
            board.push(rng.choice(list(board.legal_moves)))
        boards.append(board)
    return boards


@pytest.mark.parametrize("temperature", [0.0, 0.3, 1.0, 4.0])
def test_steps_draw_the_same_move_with_its_exact_probability(tiny_onnx: Path,
                                                             temperature: float) -> None:
    tree, steps = policy_with(tiny_onnx, "tree"), policy_with(tiny_onnx, "steps")
    for board in positions():
        for seed in range(25):
            full = tree.choose(board, temperature, "token", np.random.default_rng(seed))
            fast = steps.choose(board, temperature, "token", np.random.default_rng(seed),
                                distribution=False)
            assert not fast.complete and full.complete
            assert fast.move == full.move, (board.fen(), seed)
            assert list(fast.probabilities) == [fast.move]
            assert fast.probabilities[fast.move] == pytest.approx(
                full.probabilities[full.move], rel=1e-5)


def test_steps_frequencies_follow_the_exact_distribution(tiny_onnx: Path) -> None:
    steps = policy_with(tiny_onnx, "steps")
    board = positions()[2]
    exact = steps.move_distribution(board, 1.0, "token")
    rng = np.random.default_rng(11)
    draws = 3000
    counts: dict[chess.Move, int] = {}
    for _ in range(draws):
        move = steps.choose(board, 1.0, "token", rng, distribution=False).move
        counts[move] = counts.get(move, 0) + 1
    assert set(counts) <= set(exact)
    for move, p in exact.items():
        # Binomial standard error; 5 of them is a failure by chance about once in 10^6.
        assert abs(counts.get(move, 0) / draws - p) <= 5 * np.sqrt(p * (1 - p) / draws) + 1e-9


def test_seeded_games_repeat_and_do_not_depend_on_the_path(tiny_onnx: Path) -> None:
    def game(token_path: str, seed: int) -> list[chess.Move]:
        policy = policy_with(tiny_onnx, token_path)
        rng = np.random.default_rng(seed)
        board = chess.Board()
        while len(board.move_stack) < 40 and not board.is_game_over():
            board.push(policy.choose(board, 1.0, "token", rng, distribution=False).move)
        return board.move_stack

    auto = game("auto", 5)
    assert auto == game("auto", 5)
    assert auto == game("tree", 5) == game("steps", 5)
    assert auto != game("auto", 6)


def test_the_cache_stays_exact_after_steps(tiny_onnx: Path) -> None:
    steps, fresh = policy_with(tiny_onnx, "steps"), policy_with(tiny_onnx, "tree")
    rng = np.random.default_rng(2)
    board = chess.Board()
    for _ in range(12):
        choice = steps.choose(board, 1.0, "token", rng, distribution=False)
        board.push(choice.move)
        fresh.reset()
        want = fresh.move_distribution(board, 1.0, "token")
        got = steps.move_distribution(board, 1.0, "token")
        for move, p in want.items():
            assert got[move] == pytest.approx(p, rel=1e-4, abs=1e-7)
        board.push(next(iter(board.legal_moves)))


def test_steps_run_fewer_tokens_where_they_are_taken(tiny_onnx: Path) -> None:
    board = chess.Board(CASTLING_FEN)
    auto, tree = policy_with(tiny_onnx, "auto"), policy_with(tiny_onnx, "tree")
    assert steps_are_cheaper(auto._trie(board, None), len(auto.prompt_text(board)))
    fast = auto.choose(board, 1.0, "token", np.random.default_rng(0), distribution=False)
    full = tree.choose(board, 1.0, "token", np.random.default_rng(0), distribution=False)
    assert not fast.complete and full.complete
    assert fast.nodes < full.nodes
    # Few legal moves: one call over the whole tree is cheaper than two.
    endgame = chess.Board("8/8/8/4k3/8/8/8/4K3 w - - 0 60")
    assert not steps_are_cheaper(auto._trie(endgame, None), 10)
    assert auto.choose(endgame, 1.0, "token", np.random.default_rng(0),
                       distribution=False).complete
    # `move` mode and a wanted distribution always score every move.
    assert auto.choose(board, 1.0, "move", np.random.default_rng(0),
                       distribution=False).complete
    assert auto.choose(board, 1.0, "token", np.random.default_rng(0)).complete
