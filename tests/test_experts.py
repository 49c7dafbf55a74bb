"""`transcend data experts`: games between noisy Stockfish experts, written as PGN."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import chess
import chess.pgn
import numpy as np
import pytest
from cli_helpers import cli, transcend

from transcend.engine.transcript import board_transcript, decode
from transcend.training.cli import main
from transcend.training.data.experts import complete_games

EXPERTS = ["sf:skill=0,nodes=20,eps=0.3,elo=900", "sf:skill=1,nodes=20,elo=1000"]
NAMES = {"sf-skill0-n20-eps0.3": 900, "sf-skill1-n20": 1000}
FAKE_UCI = Path(__file__).with_name("fake_uci.py")


def experts(out: Path, games: int, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["data", "experts", "--out", str(out), "--games", str(games), "--max-plies", "20",
            "--seed", "3", "--quiet"]
    for spec in EXPERTS:
        args += ["--expert", spec]
    code, err = cli(args, capsys)
    assert code == 0, err


def read_games(path: Path) -> list[chess.pgn.Game]:
    handle = io.StringIO(path.read_text())
    games = []
    while (game := chess.pgn.read_game(handle)) is not None:
        assert not game.errors, game.errors
        games.append(game)
    return games


@pytest.fixture(scope="module")
def experts_pgn(tmp_path_factory: pytest.TempPathFactory, stockfish: str) -> Path:
    out = tmp_path_factory.mktemp("experts") / "experts.pgn"
    args = ["data", "experts", "--out", str(out), "--games", "4", "--max-plies", "20",
            "--seed", "3", "--quiet"]
    for spec in EXPERTS:
        args += ["--expert", spec]
    main(args)
    return out


def test_games_and_headers(experts_pgn: Path) -> None:
    games = read_games(experts_pgn)
    assert len(games) == 4
    assert complete_games(experts_pgn)[0] == 4
    for game in games:
        headers = game.headers
        assert headers["White"] in NAMES and headers["Black"] in NAMES
        assert int(headers["WhiteElo"]) == NAMES[headers["White"]]
        assert int(headers["BlackElo"]) == NAMES[headers["Black"]]
        board = game.end().board()
        assert 0 < board.ply() <= 20
        if board.is_checkmate():
            assert headers["Termination"] == "Normal"
            assert headers["Result"] == ("0-1" if board.turn == chess.WHITE else "1-0")
        elif board.ply() == 20:
            assert (headers["Result"], headers["Termination"]) == ("1/2-1/2", "Adjudication")
        else:
            assert headers["Result"] == "1/2-1/2"  # stalemate or a claimed draw
            assert headers["Termination"] == "Normal"


def test_resume_after_a_cut_mid_game(
    experts_pgn: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = experts_pgn.read_bytes()
    last = text.rindex(b"[Event ")
    moves = text.index(b"\n\n", last) + 2
    cut = tmp_path / "cut.pgn"
    cut.write_bytes(text[: moves + 15])  # the last game's headers and a few moves
    assert complete_games(cut)[0] == 3
    experts(cut, 4, capsys)
    resumed = cut.read_bytes()
    assert resumed.startswith(text[:last])  # the complete games are kept as they were
    games = read_games(cut)
    assert len(games) == 4 and complete_games(cut) == (4, len(resumed))
    assert games[3].headers["Round"] == "4"
    assert resumed.count(b"[Event ") == 4
    # Asking for no more games than the file holds changes nothing.
    experts(cut, 3, capsys)
    assert cut.read_bytes() == resumed


@pytest.mark.parametrize(
    "spec", ["sf:skill=abc", "sf:skill=42", "sf:eps=2", "sf:colour=red", "uci:name=x", ""]
)
def test_bad_spec_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str
) -> None:
    out = tmp_path / "x.pgn"
    code, err = cli(["data", "experts", "--out", str(out), "--games", "2", "--expert", spec,
                     "--quiet"], capsys)
    assert code != 0
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1, err
    assert not out.exists()


def test_prepared_transcripts_equal_replayed_games(
    experts_pgn: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "data"
    code, err = cli(["data", "prepare", str(experts_pgn), "--out", str(out), "--val-fraction",
                     "0", "--max-elo", "1000", "--validate", "--quiet"], capsys)
    assert code == 0, err
    stream = decode(np.memmap(out / "train.bin", dtype=np.uint8, mode="r"))
    expected = "".join(board_transcript(g.end().board()) for g in read_games(experts_pgn))
    assert stream == expected


def movetexts(path: Path) -> list[str]:
    return [str(game.mainline_moves()) for game in read_games(path)]


def test_same_seed_same_games_in_parallel_too(tmp_path: Path) -> None:
    from transcend.training.data.experts import generate

    specs = ["random", "uci:name=noisy,eps=1,cmd=unused"]  # fully seeded players: no engine
    one, two = tmp_path / "one.pgn", tmp_path / "two.pgn"
    list(generate(one, specs, 6, concurrency=1, seed=5, max_plies=30, progress=False))
    list(generate(two, specs, 6, concurrency=2, seed=5, max_plies=30, progress=False))
    assert movetexts(one) == movetexts(two) and len(movetexts(one)) == 6
    rounds = [game.headers["Round"] for game in read_games(two)]
    assert rounds == [str(i) for i in range(1, 7)]  # written in order despite two workers
    other = tmp_path / "other.pgn"
    list(generate(other, specs, 6, concurrency=1, seed=6, max_plies=30, progress=False))
    assert movetexts(other) != movetexts(one)


def test_a_crashed_engine_is_restarted_and_the_run_goes_on(tmp_path: Path) -> None:
    from transcend.training.data.experts import generate

    marker = tmp_path / "crashed-once"
    # The first process to play crashes at its 3rd move; every later one plays on.
    cmd = f"{sys.executable} {FAKE_UCI} --mode crash --after 3 --once {marker}"
    out = tmp_path / "games.pgn"
    records = list(generate(out, [f"uci:name=flaky,cmd={cmd}"], 3, max_plies=20,
                            progress=False))
    assert marker.exists() and len(records) == 3
    assert complete_games(out)[0] == 3


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The message of a run that must have ended with click's one-line error and nothing else."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("spec", "message"),
    [("random,name=x", "failed to start"),  # no such command
     ("sf:skil=3", "unknown key 'skil'"),
     ("no-such-engine --flag", "failed to start")],
)
def test_an_expert_that_cannot_play_stops_the_command_before_any_game(
    tmp_path: Path, spec: str, message: str
) -> None:
    out = tmp_path / "sub" / "games.pgn"
    result = transcend("data", "experts", "--out", str(out), "--games", "4", "--concurrency",
                       "2", "--quiet", "--expert", "random", "--expert", spec, check=False)
    assert message in one_line_error(result)
    assert not out.exists()


UCI_LOOP = """while read -r line; do
  case "$line" in
    uci) echo uciok ;;
    isready) echo readyok ;;
    go*) exit 3 ;;
    quit) exit 0 ;;
  esac
done
"""


@pytest.mark.parametrize(
    ("prologue", "message"),
    # An engine that dies at every move, and one that answers the check but then cannot start:
    # neither may leave the pool's workers restarting for ever.
    [("", "failed 3 times"),
     ('if [ -e "$0.ran" ]; then read -r line; exit 3; fi\ntouch "$0.ran"', "engine.sh exited")],
)
def test_an_engine_that_keeps_failing_stops_the_command(
    tmp_path: Path, prologue: str, message: str
) -> None:
    script = tmp_path / "engine.sh"
    script.write_text(f"#!/bin/sh\n{prologue}\n{UCI_LOOP}")
    script.chmod(0o755)
    out = tmp_path / "games.pgn"
    result = transcend("data", "experts", "--out", str(out), "--games", "4", "--concurrency",
                       "2", "--quiet", "--expert", f"uci:name=failing,cmd={script}",
                       check=False)
    assert message in one_line_error(result)
    assert not out.exists()  # no game was finished, so there is no file
