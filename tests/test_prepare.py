"""`transcend data prepare`: PGN text to the token streams the trainer reads."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import chess
import chess.pgn
import numpy as np
import pytest
import zstandard
from cli_helpers import cli

import transcend.training.data.prepare as prep
from transcend.engine.transcript import VOCAB, board_transcript, decode
from transcend.training.data.prepare import Filters, base_time, last_game_start, prepare

# ---------------------------------------------------------------------------------------------
# Helpers


def random_board(rng: random.Random, max_plies: int) -> chess.Board:
    board = chess.Board()
    while board.ply() < max_plies and not board.is_game_over():
        board.push(rng.choice(list(board.legal_moves)))
    return board


def result_of(board: chess.Board, rng: random.Random) -> str:
    return board.result() if board.is_game_over() else rng.choice(["1-0", "0-1", "1/2-1/2"])


def exported_game(board: chess.Board, rng: random.Random, index: int) -> str:
    """The game as python-chess writes it, with clock comments, NAGs and nested variations."""
    game = chess.pgn.Game()
    game.headers["Event"] = f"game {index}"
    game.headers["Result"] = result_of(board, rng)
    game.headers["WhiteElo"] = str(rng.randint(600, 1400))
    game.headers["BlackElo"] = str(rng.randint(600, 1400))
    node: chess.pgn.GameNode = game
    for ply, move in enumerate(board.move_stack):
        parent = node
        node = node.add_main_variation(move)
        node.comment = f"[%clk 0:02:{59 - ply % 60:02d}]"
        if rng.random() < 0.1:
            node.nags.add(rng.choice([1, 2, 3, 4, 5, 6]))
        if rng.random() < 0.08:
            alternatives = [m for m in parent.board().legal_moves if m != move]
            if alternatives:
                side = parent.add_variation(rng.choice(alternatives))
                side.comment = "a (side) line"
                replies = list(side.board().legal_moves)
                if replies:
                    deeper = side.add_main_variation(rng.choice(replies))
                    deeper_alts = [m for m in side.board().legal_moves if m != deeper.move]
                    if deeper_alts:
                        side.add_variation(rng.choice(deeper_alts))  # a nested variation
    return str(game) + "\n\n"


def random_pgn(n: int, seed: int, max_plies: int = 70) -> tuple[str, list[str]]:
    """(PGN text of ``n`` random games, their transcripts built by replaying the moves)."""
    rng = random.Random(seed)
    texts, transcripts = [], []
    for i in range(n):
        board = random_board(rng, rng.randint(1, max_plies))
        texts.append(exported_game(board, rng, i))
        transcripts.append(board_transcript(board))
    return "".join(texts), transcripts


def games_in(path: Path) -> list[str]:
    """The transcripts stored in a .bin file, read the way the trainer does (np.memmap)."""
    if path.stat().st_size == 0:
        return []
    text = decode(np.memmap(path, dtype=np.uint8, mode="r"))
    assert text.startswith(";")
    return [";" + part for part in text.split(";")[1:]]


def run(tmp_path: Path, pgn: str | bytes, name: str = "in.pgn", **kwargs: Any) -> dict[str, Any]:
    src = tmp_path / name
    src.write_bytes(pgn.encode() if isinstance(pgn, str) else pgn)
    out = tmp_path / "out"
    filters = kwargs.pop("filters", Filters(val_fraction=0.0))
    return prepare([str(src)], out, filters, **kwargs)


LICHESS = """\ufeff[Event "Rated Blitz game"]
[Site "https://lichess.org/abcdefgh"]
[Date "2023.01.01"]
[Round "-"]
[White "alice"]
[Black "bob"]
[Result "1-0"]
[WhiteElo "1200"]
[BlackElo "1100"]
[WhiteRatingDiff "+5"]
[BlackRatingDiff "-5"]
[ECO "C60"]
[Opening "Ruy Lopez"]
[TimeControl "180+2"]
[Termination "Normal"]

1. e4 { [%clk 0:03:00] } 1... e5 { [%eval 0.2] [%clk 0:02:59] } 2. Nf3 $1 { [%clk 0:02:58] } \
2... Nc6?! { [%clk 0:02:57] } 3. Bb5!! (3. Bc4 Bc5 (3... Nf6 4. Ng5) 4. c3) 3... a6 4. Bxc6 \
dxc6 5. O-O f6?? 6. Nxe5 fxe5 7. Qh5+ Ke7 8. Qxe5+ Kf7 9. Qf5+ Ke7 10. Re1 Qd6 11. d4 Bd7 \
12. Qe5+ Qxe5 13. dxe5 Kf7 14. e6+ Bxe6 15. Bg5 h6 16. Bh4 g5 17. Bg3 Ne7 18. Nc3 Rd8 \
19. Rad1 Rxd1 20. Rxd1 Bg4 21. f3 Be6 22. Rd7 Ke8 23. Rxe7+ Bxe7 24. e5 1-0

% an escape line { is not PGN at all
[Event "Rated Bullet game"]
[Result "0-1"]
[WhiteElo "900"]
[BlackElo "950"]
[TimeControl "60+0"]

1. f3 { [%clk 0:01:00] } 1... e5 { ; not a line comment ( nor a variation } 2. g4 ; a comment
2... Qh4# { [%clk 0:00:58] } 0-1

[Event "abandoned"]
[Result "1-0"]
[WhiteElo "1000"]
[BlackElo "1000"]

1-0

[Event "still running"]
[Result "*"]

1. d4 d5 *

[Event "no headers of note, numbers glued to moves"]
[Result "1/2-1/2"]

1.d4 d5 2.c4 e6 3.Nc3 Nf6 4.Bg5 Be7 5.e3 0-0 6.Nf3 h6 1/2-1/2
"""
LICHESS_TRANSCRIPTS = [
    ";1.e4 e5 2.Nf3 Nc6 3.Bb5 a6 4.Bxc6 dxc6 5.O-O f6 6.Nxe5 fxe5 7.Qh5+ Ke7 8.Qxe5+ Kf7 "
    "9.Qf5+ Ke7 10.Re1 Qd6 11.d4 Bd7 12.Qe5+ Qxe5 13.dxe5 Kf7 14.e6+ Bxe6 15.Bg5 h6 16.Bh4 g5 "
    "17.Bg3 Ne7 18.Nc3 Rd8 19.Rad1 Rxd1 20.Rxd1 Bg4 21.f3 Be6 22.Rd7 Ke8 23.Rxe7+ Bxe7 24.e5",
    ";1.f3 e5 2.g4 Qh4#",
    ";1.d4 d5 2.c4 e6 3.Nc3 Nf6 4.Bg5 Be7 5.e3 O-O 6.Nf3 h6",
]


# ---------------------------------------------------------------------------------------------
# Correctness


def test_transcripts_equal_replayed_games(tmp_path: Path) -> None:
    pgn, expected = random_pgn(60, seed=1)
    assert "(" in pgn and "$" in pgn and "{" in pgn  # the export really has the clutter
    assert any("=" in t for t in expected) or any("O-O" in t for t in expected)
    manifest = run(tmp_path, pgn)
    assert games_in(tmp_path / "out" / "train.bin") == expected
    assert manifest["games"]["kept"] == 60 and manifest["games"]["seen"] == 60
    # With no game for validation there is no val.bin (the trainer then runs without one).
    assert manifest["files"]["val"] is None and not (tmp_path / "out" / "val.bin").exists()
    # Replaying with python-chess keeps them all and writes the same text.
    run(tmp_path, pgn, filters=Filters(val_fraction=0.0, validate=True))
    assert games_in(tmp_path / "out" / "train.bin") == expected


def test_lichess_style_text(tmp_path: Path) -> None:
    crlf = LICHESS.replace("\n", "\r\n").encode("utf-8")
    manifest = run(tmp_path, crlf)
    assert games_in(tmp_path / "out" / "train.bin") == LICHESS_TRANSCRIPTS
    assert manifest["games"]["seen"] == 5
    skipped = {k: v for k, v in manifest["skipped"].items() if v}
    assert skipped == {"no_moves": 1, "unfinished": 1}
    # python-chess reads the same games the same way.
    handle = io.StringIO(LICHESS)
    replayed = []
    while (game := chess.pgn.read_game(handle)) is not None:
        if game.headers.get("Result") != "*" and game.end().ply() > 0:
            replayed.append(board_transcript(game.end().board()))
    assert replayed == LICHESS_TRANSCRIPTS


def test_chunking_and_workers_do_not_change_the_output(tmp_path: Path) -> None:
    pgn, expected = random_pgn(80, seed=2)
    filters = Filters(val_fraction=0.3)
    outputs = []
    for chunk_bytes, workers in ((1 << 20, 1), (700, 1), (3000, 2)):
        out = tmp_path / f"out-{chunk_bytes}-{workers}"
        src = tmp_path / "in.pgn"
        src.write_text(pgn)
        prepare([str(src)], out, filters, workers=workers, chunk_bytes=chunk_bytes)
        outputs.append(((out / "train.bin").read_bytes(), (out / "val.bin").read_bytes()))
    assert outputs[0] == outputs[1] == outputs[2]
    train, val = games_in(out / "train.bin"), games_in(out / "val.bin")
    assert sorted(train + val) == sorted(expected)
    assert 0.1 < len(val) / len(expected) < 0.5
    # Order within each side is the input order.
    assert train == [t for t in expected if t in set(train)]


def test_split_is_by_game_text(tmp_path: Path) -> None:
    pgn, expected = random_pgn(40, seed=3)
    manifest = run(tmp_path, pgn + pgn, filters=Filters(val_fraction=0.5))
    train = games_in(tmp_path / "out" / "train.bin")
    val = games_in(tmp_path / "out" / "val.bin")
    # Each copy of a game lands on the same side as the other copy.
    assert not set(train) & set(val)
    assert len(train) + len(val) == 80
    assert manifest["games"]["train"] == len(train) and manifest["games"]["val"] == len(val)


def split_rank(transcript: str) -> int:
    """The split's hash of a game: blake2b-64 of its transcript without the game start."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(transcript[1:].encode(), digest_size=8).digest(), "big")


def test_a_few_games_still_give_a_validation_set(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    pgn, expected = random_pgn(12, seed=6)
    # None of these games hashes below 5%: the plain rule would leave validation empty.
    assert min(split_rank(t) for t in expected) >= 0.05 * 2**64
    # The lowest-hashed one is a miniature, too short to evaluate on: the next one goes.
    assert len(min(expected, key=split_rank)) - 1 < prep.HELD_OUT_MIN_CHARS
    lowest = min((t for t in expected if len(t) - 1 >= prep.HELD_OUT_MIN_CHARS), key=split_rank)
    outputs = []
    for chunk_bytes in (1 << 20, 1500):
        out = tmp_path / f"out-{chunk_bytes}"
        src = tmp_path / "in.pgn"
        src.write_text(pgn + pgn)
        manifest = prepare([str(src)], out, Filters(), chunk_bytes=chunk_bytes)
        outputs.append(((out / "train.bin").read_bytes(), (out / "val.bin").read_bytes()))
    assert outputs[0] == outputs[1]
    # The lowest-hashed game goes with its copy; training keeps the others in input order.
    assert games_in(out / "val.bin") == [lowest, lowest]
    assert games_in(out / "train.bin") == [t for t in expected + expected if t != lowest]
    assert manifest["games"] == {"seen": 24, "kept": 24, "train": 22, "val": 2, "skipped": 0}
    assert manifest["tokens"]["val"] == (out / "val.bin").stat().st_size == 2 * len(lowest)
    assert manifest["split"]["lowest_hash_held_out"] == 2
    assert manifest["split"]["no_validation"] is None

    # One game (twice): nothing to hold out, and the command says so plainly.
    single, [game] = random_pgn(1, seed=1, max_plies=70)
    assert len(game) > prep.HELD_OUT_MIN_CHARS
    one = tmp_path / "one.pgn"
    one.write_text(single + single)
    code, err = cli(["data", "prepare", str(one), "--out", str(tmp_path / "one")], capsys)
    assert code == 0, err
    assert not (tmp_path / "one" / "val.bin").exists()
    assert "no validation set (no game to hold out" in err


def test_last_game_start() -> None:
    text = b'[Event "a"]\n[Result "1-0"]\n\n1. e4 1-0\n\n[Event "b"]\n[Result "0-1"]\n\n1. f3 0-1\n'
    cut = last_game_start(text)
    assert text[cut:].startswith(b'[Event "b"]')
    assert last_game_start(text[:cut]) == 0  # the first game has no game before it
    # A comment line that looks like a tag is not a game start; a header block is never split.
    text = b'[Event "a"]\n\n1. e4 {\n[%clk 0:01:00] } e5 1-0\n'
    assert last_game_start(text) == 0


def test_game_chunks_hold_whole_games_and_bounded_junk() -> None:
    pgn, _ = random_pgn(20, seed=13)
    data = pgn.encode()
    blocks = ((data[i:i + 97], 97) for i in range(0, len(data), 97))
    errors: list[str] = []
    chunks = [chunk for chunk, _ in prep.game_chunks(blocks, 500, errors)]
    assert b"".join(chunks) == data and not errors
    assert len(chunks) > 5
    assert all(chunk.startswith(b"[Event ") for chunk in chunks)
    # Text without any game start is passed on in bounded pieces, not held whole.
    junk = bytes(random.Random(0).randrange(256) for _ in range(100_000)).replace(b"[", b"")
    blocks = ((junk[i:i + 100], 100) for i in range(0, len(junk), 100))
    sizes = [len(chunk) for chunk, _ in prep.game_chunks(blocks, 100, errors)]
    assert sum(sizes) == len(junk) and max(sizes) <= 64 * 100 + 100


# ---------------------------------------------------------------------------------------------
# Filters


def header_game(result: str = "1-0", moves: str = "1. e4 e5", **tags: str) -> str:
    lines = [f'[Event "{tags.pop("Event", "x")}"]', f'[Result "{result}"]']
    lines += [f'[{k} "{v}"]' for k, v in tags.items()]
    return "\n".join(lines) + f"\n\n{moves} {result}\n\n"


def test_filters_and_skip_reasons(tmp_path: Path) -> None:
    games = [
        header_game(WhiteElo="1000", BlackElo="950", TimeControl="300+0"),  # kept
        header_game(WhiteElo="1001", BlackElo="950", TimeControl="300+0"),  # above max
        header_game(WhiteElo="700", BlackElo="950", TimeControl="300+0"),  # below min
        header_game(WhiteElo="?", BlackElo="950", TimeControl="300+0"),  # no rating
        header_game(WhiteElo="900", BlackElo="900", TimeControl="60+1"),  # base time too short
        header_game(WhiteElo="900", BlackElo="900", TimeControl="?"),  # unknown time control
        header_game(WhiteElo="900", BlackElo="900", TimeControl="-", moves="1. d4 d5"),  # kept
        header_game("*", WhiteElo="900", BlackElo="900", TimeControl="300+0"),
        header_game(WhiteElo="900", BlackElo="900", TimeControl="300+0", SetUp="1",
                    FEN="8/8/8/8/8/8/4k3/4K2R w K - 0 1", moves="1. Rh2+"),
        header_game(WhiteElo="900", BlackElo="900", TimeControl="300+0", Variant="Atomic"),
        header_game(WhiteElo="900", BlackElo="900", TimeControl="300+0", FEN=chess.STARTING_FEN,
                    Variant="Standard", moves="1. c4"),  # the standard start: kept
    ]
    filters = Filters(max_elo=1000, min_elo=800, min_base_time=120, val_fraction=0.0)
    manifest = run(tmp_path, "".join(games), filters=filters)
    assert games_in(tmp_path / "out" / "train.bin") == [";1.e4 e5", ";1.d4 d5", ";1.c4"]
    skipped = {k: v for k, v in manifest["skipped"].items() if v}
    assert skipped == {
        "rating_above_max": 1, "rating_below_min": 1, "no_rating": 1, "base_time_below_min": 1,
        "no_time_control": 1, "unfinished": 1, "setup_position": 1, "variant": 1,
    }
    assert manifest["rating_range"] == [900, 1000] and manifest["max_rating"] == 1000
    assert manifest["rating_range_seen"] == [700, 1001]  # every game read, kept or not
    assert manifest["filters"]["max_elo"] == 1000 and manifest["filters"]["min_base_time"] == 120
    # Without filters only the always-skipped kinds go.
    manifest = run(tmp_path, "".join(games))
    assert manifest["games"]["kept"] == 8
    assert manifest["max_rating"] == 1001 and manifest["rating_range"] == [700, 1001]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("180+2", 180.0), ("600", 600.0), ("40/7200:3600", 7200.0), ("*60", 60.0), ("0+1", 0.0),
     ("-", float("inf")), ("?", None), ("", None), (None, None), (b"300+3", 300.0)],
)
def test_base_time(text: str | bytes | None, seconds: float | None) -> None:
    assert base_time(text) == seconds


# ---------------------------------------------------------------------------------------------
# Inputs, outputs and errors


def test_zstd_stdin_and_several_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, expected_first = random_pgn(20, seed=4)
    second, expected_second = random_pgn(15, seed=5)
    plain = tmp_path / "a.pgn"
    plain.write_text(first)
    packed = tmp_path / "b.pgn.zst"
    half = len(second) // 2
    cut = second.index("[Event", half)
    compressor = zstandard.ZstdCompressor()
    # Two concatenated frames, split between games, as tools that append to dumps write them.
    packed.write_bytes(compressor.compress(second[:cut].encode())
                       + compressor.compress(second[cut:].encode()))
    out = tmp_path / "out"
    code, err = cli(["data", "prepare", str(plain), str(packed), "--out", str(out),
                     "--val-fraction", "0", "--quiet"], capsys)
    assert code == 0, err
    assert games_in(out / "train.bin") == expected_first + expected_second
    manifest = json.loads((out / "manifest.json").read_text())
    assert [row["games"] for row in manifest["inputs"]] == [20, 15]
    assert manifest["inputs"][1]["bytes"] == packed.stat().st_size
    # The same compressed bytes on stdin (recognised by their magic number, not a name).
    proc = subprocess.run(
        [sys.executable, "-m", "transcend.training.cli", "data", "prepare", "-", "--out",
         str(tmp_path / "stdin"), "--val-fraction", "0"],
        input=packed.read_bytes(), capture_output=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert games_in(tmp_path / "stdin" / "train.bin") == expected_second
    stderr = proc.stderr.decode()
    assert "games/s" in stderr and "15 kept" in stderr  # progress bar and summary


def test_manifest(tmp_path: Path) -> None:
    pgn, expected = random_pgn(30, seed=6)
    manifest = run(tmp_path, pgn, filters=Filters(max_elo=1400, val_fraction=0.2))
    out = tmp_path / "out"
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["format"] == "transcend-transcript-1"
    assert manifest["vocab"] == VOCAB and manifest["dtype"] == "uint8"
    assert manifest["tokens"] == {
        "train": (out / "train.bin").stat().st_size, "val": (out / "val.bin").stat().st_size
    }
    assert manifest["val_fraction"] == 0.2
    assert manifest["games"]["train"] + manifest["games"]["val"] == manifest["games"]["kept"] == 30
    assert set(manifest["skipped"]) == set(prep.SKIP_REASONS)
    assert manifest["plies"] == sum(len(t.split()) for t in expected)
    assert manifest["inputs"][0]["path"].endswith("in.pgn")
    low, high = manifest["rating_range"]
    assert 600 <= low <= high == manifest["max_rating"] <= 1400
    assert sorted(os.listdir(out)) == ["manifest.json", "train.bin", "val.bin"]


def test_bad_san_and_illegal_moves(tmp_path: Path) -> None:
    games = [
        header_game(moves="1. e4 e5 2. Zf3 Nc6"),  # not SAN
        header_game(moves="1. e4 e9"),  # no ninth rank
        header_game(moves="1. e4 e5 2. Ke3"),  # SAN, but illegal: kept unless --validate
        header_game(moves="1. e4 e5 2. Nf3 { unclosed comment"),  # spoils only its own game
        header_game(moves="1. d4 Nf6 2. c4 g6"),
        header_game(moves="1. e4 1-0 e5"),  # a result inside the moves
    ]
    text = "".join(games)
    manifest = run(tmp_path, text)
    assert games_in(tmp_path / "out" / "train.bin") == [";1.e4 e5 2.Ke3", ";1.d4 Nf6 2.c4 g6"]
    assert manifest["skipped"]["bad_san"] == 4
    manifest = run(tmp_path, text, filters=Filters(val_fraction=0.0, validate=True))
    assert games_in(tmp_path / "out" / "train.bin") == [";1.d4 Nf6 2.c4 g6"]
    assert manifest["skipped"]["illegal_move"] == 1


def test_truncated_zstd_keeps_whole_games(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pgn, expected = random_pgn(40, seed=7)
    # One frame of many blocks (a block per few games), as a streaming writer leaves it.
    cobj = zstandard.ZstdCompressor().compressobj()
    packed = b""
    for start in range(0, len(pgn), 4000):
        packed += cobj.compress(pgn[start:start + 4000].encode())
        packed += cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    packed += cobj.flush()
    src = tmp_path / "cut.pgn.zst"
    src.write_bytes(packed[: len(packed) * 2 // 3])
    out = tmp_path / "out"
    code, err = cli(["data", "prepare", str(src), "--out", str(out), "--val-fraction", "0",
                     "--quiet"], capsys)
    assert code == 0
    assert err.strip().splitlines() == [f"warning: {src}: truncated zstd stream "
                                        "(the file ends inside a compressed frame)"]
    kept = games_in(out / "train.bin")
    assert 0 < len(kept) < 40 and kept == expected[: len(kept)]
    manifest = json.loads((out / "manifest.json").read_text())
    assert "truncated" in manifest["inputs"][0]["error"]


@pytest.mark.parametrize("kind", ["garbage", "garbage.zst", "empty", "missing", "directory"])
def test_unusable_inputs_fail_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    rng = random.Random(8)
    src = tmp_path / "in.pgn"
    if kind == "garbage":
        src.write_bytes(bytes(rng.randrange(256) for _ in range(20000)))
    elif kind == "garbage.zst":
        src = tmp_path / "in.pgn.zst"
        src.write_bytes(prep.ZSTD_MAGIC + bytes(rng.randrange(256) for _ in range(2000)))
    elif kind == "empty":
        src.write_bytes(b"")
    elif kind == "directory":
        src.mkdir()
    out = tmp_path / "out"
    code, err = cli(["data", "prepare", str(src), "--out", str(out), "--quiet"], capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].lower().startswith("error"), err
    if kind == "garbage.zst":
        assert "corrupt zstd data" in lines[0]
    assert not (out / "train.bin").exists() and not (out / "manifest.json").exists()
    assert not out.exists() or not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_nothing_kept_raises_and_writes_nothing(tmp_path: Path) -> None:
    run(tmp_path, header_game())
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    with pytest.raises(prep.NoGamesKept, match=r"from 2 read \(unfinished 1, no_moves 1\)"):
        run(tmp_path, header_game("*") + header_game(moves=""))
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before


def test_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.pgn"
    src.write_text(header_game())
    for args in (["--min-elo", "1500", "--max-elo", "1000"], ["--val-fraction", "1"],
                 ["--workers", "0"], ["--max-elo", "abc"]):
        code, err = cli(["data", "prepare", str(src), "--out", str(tmp_path / "o"), *args],
                        capsys)
        assert code == 2 and "Error" in err and "Traceback" not in err


def test_no_traceback_from_the_installed_command(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pgn"
    junk.write_bytes(bytes(range(256)) * 50)
    proc = subprocess.run(
        [sys.executable, "-m", "transcend.training.cli", "data", "prepare", str(junk),
         str(tmp_path / "missing.pgn.zst"), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: input")


@pytest.mark.parametrize("failure", [KeyboardInterrupt, RuntimeError])
def test_outputs_are_replaced_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: type[BaseException]
) -> None:
    pgn, _ = random_pgn(30, seed=9)
    run(tmp_path, pgn, filters=Filters(val_fraction=0.2))
    out = tmp_path / "out"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    other, _ = random_pgn(30, seed=10)
    calls = []
    real = prep.process_chunk

    def crash_on_second_chunk(chunk: bytes, f: Filters) -> prep.ChunkResult:
        calls.append(1)
        if len(calls) == 2:
            raise failure("stop")
        return real(chunk, f)

    monkeypatch.setattr(prep, "process_chunk", crash_on_second_chunk)
    with pytest.raises(failure):
        run(tmp_path, other, filters=Filters(val_fraction=0.2), chunk_bytes=2000)
    assert len(calls) == 2
    # The earlier run's files are untouched and nothing half-written is left behind.
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_ctrl_c_exits_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.pgn"
    src.write_text(random_pgn(5, seed=11)[0])

    def interrupted(chunk: bytes, f: Filters) -> prep.ChunkResult:
        raise KeyboardInterrupt

    monkeypatch.setattr(prep, "process_chunk", interrupted)
    code, err = cli(["data", "prepare", str(src), "--out", str(tmp_path / "o"), "--quiet"],
                    capsys)
    assert code == 130 and err.strip() == "interrupted"
    assert list((tmp_path / "o").iterdir()) == []


def _ctrl_c_as_in_a_terminal() -> None:
    """In the child, before it starts: Ctrl-C acts even when the suite runs as a background
    job, whose shell makes it and its children ignore SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigint_while_reading_leaves_no_files(tmp_path: Path, workers: str) -> None:
    out = tmp_path / "o"
    proc = subprocess.Popen(
        [sys.executable, "-m", "transcend.training.cli", "data", "prepare", "-", "--out",
         str(out), "--workers", workers, "--quiet"],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_ctrl_c_as_in_a_terminal,
    )
    assert proc.stdin is not None
    proc.stdin.write(random_pgn(5, seed=12)[0].encode())
    proc.stdin.flush()
    # The temporary outputs exist once the run is under way; stdin stays open, so it waits.
    deadline = time.monotonic() + 60
    while not (out.exists() and any(out.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 130
    assert "Traceback" not in err.decode() and "interrupted" in err.decode()
    assert list(out.iterdir()) == []
