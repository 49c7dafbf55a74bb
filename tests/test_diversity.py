"""The paper's diversity measure on a hand-made corpus whose answer is worked out by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from cli_helpers import cli

from transcend.training.cli import main
from transcend.training.data.diversity import diversity

# Plies 0-3 of seven games. 1.e4 e6 2.d4 and 1.d4 e6 2.e4 reach the same position with the same
# move counters, so their next moves (d5 three times, c5 twice) are counted together.
GAMES = ["1.e4 e6 2.d4 d5"] * 3 + ["1.d4 e6 2.e4 c5"] * 2 + ["1.d4 d5", "1.Nf3"]


def entropy(*counts: int) -> float:
    total = sum(counts)
    return -sum(c / total * math.log2(c / total) for c in counts) / math.log2(len(counts))


# Positions from which more than two moves were seen: the start (e4 3, d4 3, Nf3 1), after
# 1.e4 (e6 3: one move, 0), after 1.d4 (e6 2, d5 1), after 1.e4 e6 (d4 3: 0) and the
# transposed position (d5 3, c5 2). After 1.d4 e6 only two moves were seen.
WANT = (entropy(3, 3, 1) + 0 + entropy(2, 1) + 0 + entropy(3, 2)) / 5
WANT_TO_PLY_2 = (entropy(3, 3, 1) + 0 + entropy(2, 1) + 0) / 4


def test_known_answer() -> None:
    result = diversity(GAMES, min_count=2)
    assert result["positions"] == 5 and result["games"] == 7
    assert result["value"] == pytest.approx(WANT, abs=1e-12)
    assert diversity(GAMES, min_count=2, max_ply=2)["value"] == pytest.approx(WANT_TO_PLY_2)
    assert diversity(GAMES)["value"] is None  # nothing seen more than 100 times
    # "More than": at min_count 3 only the start (7 moves) and the transposition (5) remain.
    assert diversity(GAMES, min_count=3)["value"] == pytest.approx(
        (entropy(3, 3, 1) + entropy(3, 2)) / 2)


def pgn(path: Path) -> Path:
    path.write_text("".join(f'[Event "g{i}"]\n[Result "1-0"]\n\n{g} 1-0\n\n'
                            for i, g in enumerate(GAMES)))
    return path


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """stdout of `transcend ...`, which must succeed."""
    try:
        main(args)
    except SystemExit as exc:
        assert exc.code == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_command_on_pgn_and_prepared_data(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    games = pgn(tmp_path / "games.pgn")
    head = f"diversity {WANT:.4f}: 5 positions seen more than 2 times at plies 0-16, from 7 games"
    assert run(["data", "diversity", str(games), "--min-count", "2"], capsys).startswith(head)
    run(["data", "prepare", str(games), "--out", str(tmp_path / "data"), "--val-fraction", "0.3",
         "--diversity", "--quiet"], capsys)
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["diversity"]["games"] == 7 and manifest["diversity"]["value"] is None
    assert manifest["games"]["val"] > 0  # the folder's figure covers train.bin and val.bin
    # A folder gets the figure in its manifest, the rest of which stays as it was.
    assert run(["data", "diversity", str(tmp_path / "data"), "--min-count", "2"],
               capsys).startswith(head)
    again = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert again["diversity"]["value"] == pytest.approx(WANT)
    assert again["diversity"]["min_count"] == 2 and again["diversity"]["max_ply"] == 16
    assert {k: v for k, v in again.items() if k != "diversity"} == {
        k: v for k, v in manifest.items() if k != "diversity"}


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    for args, message in ([str(tmp_path / "empty")], "no train.bin"), (
            [str(tmp_path / "missing.pgn")], "no such file"):
        code, err = cli(["data", "diversity", *args], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_position_key_is_the_full_fen() -> None:
    import random

    import chess

    from transcend.training.data.diversity import position_key

    rng = random.Random(5)
    fens: dict[tuple[object, ...], str] = {}
    for _ in range(60):
        board = chess.Board()
        for _ in range(rng.randrange(1, 30)):
            if board.is_game_over():
                break
            board.push(rng.choice(list(board.legal_moves)))
            assert fens.setdefault(position_key(board), board.fen()) == board.fen()
    assert len(set(fens.values())) == len(fens)
    # A double pawn step that no pawn can take en passant leaves no square in the FEN; one
    # that can be taken does.
    quiet, open_ = chess.Board(), chess.Board("4k3/8/8/8/3p4/8/4P3/4K3 w - - 0 1")
    quiet.push_san("e4")
    open_.push_san("e4")
    assert quiet.ep_square is not None and " - " in quiet.fen() and " e3 " in open_.fen()
    assert position_key(quiet)[10] is None and position_key(open_)[10] == chess.E3
