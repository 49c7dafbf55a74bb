"""The transcript format: vocabulary, encoding, game text, prompts (docs/transcript-format.md)."""

from __future__ import annotations

import random

import chess
import numpy as np
import pytest

from transcend.engine.transcript import (
    GAME_START,
    MOVE_TERMINATORS,
    NULL_MOVE,
    VOCAB,
    VOCAB_SIZE,
    TranscriptError,
    board_transcript,
    decode,
    encode,
    game_transcript,
    movetext,
    prompt,
    sans_of_moves,
)

# The paper's vocabulary, written out id by id: released checkpoints depend on this order.
PAPER_IDS = {
    " ": 0, "#": 1, "+": 2, "-": 3, ".": 4,
    "0": 5, "1": 6, "2": 7, "3": 8, "4": 9, "5": 10, "6": 11, "7": 12, "8": 13, "9": 14,
    ";": 15, "=": 16, "B": 17, "K": 18, "N": 19, "O": 20, "Q": 21, "R": 22,
    "a": 23, "b": 24, "c": 25, "d": 26, "e": 27, "f": 28, "g": 29, "h": 30, "x": 31,
}


def random_game(rng: random.Random, max_plies: int = 120) -> chess.Board:
    board = chess.Board()
    while board.ply() < max_plies and not board.is_game_over():
        board.push(rng.choice(list(board.legal_moves)))
    return board


def replayed_text(board: chess.Board) -> str:
    """The transcript built independently: python-chess's own numbered SAN, squeezed."""
    root = board.root()
    return GAME_START + root.variation_san(board.move_stack).replace(". ", ".")


def test_vocabulary_ids_are_the_papers() -> None:
    assert VOCAB_SIZE == 32
    assert {ch: i for i, ch in enumerate(VOCAB)} == PAPER_IDS
    assert list(encode(VOCAB)) == list(range(32))
    assert encode(";1.e4 e5").dtype == np.uint8


def test_encode_decode_round_trip() -> None:
    rng = random.Random(0)
    for _ in range(50):
        text = "".join(rng.choice(VOCAB) for _ in range(rng.randint(0, 200)))
        ids = encode(text)
        assert len(ids) == len(text)
        assert decode(ids) == text
        assert decode(ids.tolist()) == text
    assert list(encode(";1.e4")) == [15, 6, 4, 27, 9]


@pytest.mark.parametrize("text", ["1.e4 e5 2.Nf3 z", "1.e4\n", "1.e4 {", "é", "1.P@e4", "Kg1!"])
def test_encode_rejects_characters_outside_the_vocabulary(text: str) -> None:
    with pytest.raises(TranscriptError, match="not in the transcript vocabulary|non-ASCII"):
        encode(text)
    assert issubclass(TranscriptError, ValueError)  # the CLI turns it into a one-line error


def test_transcripts_of_random_games_equal_replayed_san() -> None:
    rng = random.Random(1)
    for _ in range(40):
        board = random_game(rng, rng.randint(1, 200))
        sans = sans_of_moves(board.move_stack)
        expected = replayed_text(board)
        assert board_transcript(board) == expected
        assert game_transcript(sans) == expected
        assert expected.count(".") == (len(sans) + 1) // 2
        assert decode(encode(expected)) == expected


def test_game_text_details() -> None:
    fools_mate = ["f3", "e5", "g4", "Qh4#"]
    assert game_transcript(fools_mate) == ";1.f3 e5 2.g4 Qh4#"
    board = chess.Board("8/4P3/8/8/k7/8/8/7K w - - 0 1")
    sans = sans_of_moves([chess.Move.from_uci("e7e8q")], board)
    assert sans == ["e8=Q+"]
    board = chess.Board("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1")
    assert sans_of_moves([chess.Move.from_uci("e1c1"), chess.Move.from_uci("e8g8")], board) == [
        "O-O-O", "O-O"
    ]


def test_board_transcript_refuses_set_up_positions() -> None:
    board = chess.Board("8/8/8/8/8/8/4k3/4K3 w - - 0 1")
    board.push(next(iter(board.legal_moves)))
    with pytest.raises(TranscriptError):
        board_transcript(board)


def test_prompts_for_white_and_black_to_move() -> None:
    assert prompt([]) == ";1."
    assert prompt(["e4"]) == ";1.e4 "
    assert prompt(["e4", "e5"]) == ";1.e4 e5 2."
    assert prompt(["e4", "e5", "Nf3"]) == ";1.e4 e5 2.Nf3 "


def test_every_prompt_is_a_prefix_of_the_game_followed_by_the_move() -> None:
    rng = random.Random(2)
    for _ in range(10):
        board = random_game(rng, rng.randint(2, 90))
        sans = sans_of_moves(board.move_stack)
        text = game_transcript(sans)
        for k, san in enumerate(sans):
            head = prompt(sans[:k])
            assert text.startswith(head)
            rest = text[len(head):]
            assert rest.startswith(san)
            after = rest[len(san):]
            # What follows a complete move: a space, or the next game's ';' once the game ends.
            assert (after[:1] or GAME_START) in MOVE_TERMINATORS


def test_windows_and_set_up_positions() -> None:
    # A window that starts inside a long game, at a white move: no ';', its own move number.
    assert movetext(["d4", "Nf6", "c4"], first_ply=20) == "11.d4 Nf6 12.c4"
    assert prompt(["d4", "Nf6"], first_ply=20, game_start=False) == "11.d4 Nf6 12."
    assert prompt([], first_ply=20, game_start=False) == "11."
    # Black to move first: the unknown white move is written as the null move.
    assert NULL_MOVE == "--"
    assert movetext(["Nf6", "Bg5"], first_ply=23) == "12.-- Nf6 13.Bg5"
    assert prompt([], first_ply=1, game_start=False) == "1.-- "
    assert prompt(["Nf6"], first_ply=23, game_start=False) == "12.-- Nf6 13."
    assert prompt(["Nf6", "Bg5"], first_ply=23) == ";12.-- Nf6 13.Bg5 "
    assert set(NULL_MOVE) <= set(VOCAB)
