"""The tournament runner against misbehaving engines, Stockfish and a random mover."""

from __future__ import annotations

import io
import sys
import uuid
from pathlib import Path

import chess.pgn
import pytest

from transcend.evaluation.endings import game_result
from transcend.evaluation.games_pgn import TimeControl, read_results
from transcend.evaluation.openings import bundled_openings, load_openings
from transcend.evaluation.tournament import Settings, run_tournament, schedule, summary
from transcend.training.cli import main

FAKE = Path(__file__).with_name("fake_uci.py")


def fake(name: str, *args: str) -> str:
    """A spec for the fake engine; a unique marker lets the test find its processes."""
    return f"uci:name={name},cmd={sys.executable} {FAKE} {' '.join(args)}"


def running(marker: str) -> list[int]:
    """Processes whose command line holds ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def games_of(path: Path) -> list[chess.pgn.Game]:
    handle = io.StringIO(path.read_text())
    out = []
    while (game := chess.pgn.read_game(handle)) is not None:
        out.append(game)
    return out


def test_schedule_alternates_colours_and_repeats_openings() -> None:
    plan = schedule(1, 3, 4, False, 5)
    assert len(plan) == 8
    first = plan[:4]
    assert [(g.white, g.black) for g in first] == [(0, 1), (1, 0), (0, 1), (1, 0)]
    assert [g.opening for g in first] == [0, 0, 1, 1]
    assert {(g.white, g.black) for g in plan[4:]} == {(0, 2), (2, 0)}
    assert len(schedule(0, 4, 2, True, 0)) == 6 * 2
    assert all(g.opening is None for g in schedule(0, 4, 2, True, 0))


def test_time_control_parsing() -> None:
    assert TimeControl.parse("10+0.1") == TimeControl(10.0, 0.1)
    assert str(TimeControl.parse("60")) == "60"
    for bad in ("abc", "0+1", "10+-1"):
        with pytest.raises(ValueError):
            TimeControl.parse(bad)


def test_forfeits_crash_silence_and_illegal_moves(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    pgn = tmp_path / "games.pgn"
    result = run_tournament(
        [fake("crasher", "--mode crash --after 2", "--model", marker),
         fake("mute", "--mode silent --after 2", "--model", marker),
         fake("cheat", "--mode illegal --after 2", "--model", marker)],
        ["random"], 2, pgn=pgn, concurrency=2,
        settings=Settings(margin=1.0, move_timeout=1.0))
    by_name = {name: [g for g in result.games if name in (g.white, g.black)]
               for name in ("crasher", "mute", "cheat")}
    expected = {"crasher": "crash", "mute": "time forfeit", "cheat": "illegal move"}
    for name, games in by_name.items():
        assert len(games) == 2
        for game in games:
            assert game.termination == expected[name]
            assert game.forfeited_by() == name
            assert game.score("random") == 1.0
            assert game.plies >= 2  # each engine answered its first move before misbehaving
    assert running(marker) == []  # hung engines were killed, the rest quit
    recorded = games_of(pgn)
    assert len(recorded) == 6
    assert {g.headers["Termination"] for g in recorded} == set(expected.values())
    words = {"crash": "disconnects", "time forfeit": "loses on time",
             "illegal move": "makes an illegal move"}
    for g in recorded:  # cutechess's words, then the runner's detail
        loser = "White" if g.headers["Result"] == "0-1" else "Black"
        assert g.end().comment.startswith(f"{loser} {words[g.headers['Termination']]}: ")
        assert g.headers["Ending"] == "forfeit"
    text = summary(result)
    assert "crash 2" in text and "time forfeit 2" in text and "illegal move 2" in text


def test_hung_engine_loses_on_time_and_is_restarted(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    result = run_tournament(
        [fake("hang", "--mode silent --after 4", "--model", marker)],
        [fake("steady", "--model", marker)], 2,
        settings=Settings(tc=TimeControl(1.0, 0.05), margin=0.5))
    assert [g.termination for g in result.games] == ["time forfeit", "time forfeit"]
    # A fresh process in the second game answered three moves again before hanging.
    assert all(g.plies >= 6 for g in result.games)
    assert all(g.score("steady") == 1.0 for g in result.games)
    assert running(marker) == []


def test_engine_is_killed_without_process_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on Windows, where os.killpg does not exist: the engine's own process is killed."""
    import asyncio

    import chess.engine

    from transcend.evaluation import tournament

    monkeypatch.delattr("os.killpg")

    async def kill_a_sleeper() -> int:
        transport, protocol = await chess.engine.UciProtocol.popen(
            [sys.executable, "-c", "import time; time.sleep(60)"], setpgrp=True)
        try:
            tournament._kill_tree(transport)
            return await asyncio.wait_for(protocol.returncode, 10)
        finally:
            transport.close()

    assert asyncio.run(kill_a_sleeper()) != 0


def test_engine_that_never_completes_the_handshake_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="did not complete the UCI handshake"):
        run_tournament([fake("deaf", "--mode nouci")], ["random"], 1,
                       settings=Settings(startup_timeout=1.0))


def test_stockfish_gauntlet_pgn_headers_and_openings(tmp_path: Path, stockfish: str) -> None:
    book = tmp_path / "book.pgn"
    book.write_text("1. e4 e5 *\n\n1. d4 d5 *\n")
    pgn = tmp_path / "games.pgn"
    result = run_tournament(
        [fake("eng", "--temp 0.5", "--illegal-info 2")],
        ["sf:skill=0,nodes=10,elo=900", "sf:skill=0,nodes=10,eps=1.0,name=noisy"], 4,
        openings=book, pgn=pgn, settings=Settings(max_moves=30))
    games = games_of(pgn)
    assert len(games) == len(result.games) == 8
    for game in games:
        h = game.headers
        for key in ("Event", "Site", "Date", "Round", "White", "Black", "Result", "Termination",
                    "TimeControl", "WhiteSpec", "BlackSpec", "PlyCount"):
            assert h.get(key), key
        assert h["Termination"] in ("normal", "adjudication")
        moves = [m.uci() for m in game.mainline_moves()]
        opening = (int(h["Round"]) - 1) % 4 // 2
        assert moves[:2] == [["e2e4", "e7e5"], ["d2d4", "d7d5"]][opening]
        if h["Termination"] == "adjudication":
            assert h["Result"] == "1/2-1/2" and len(moves) == 60
        eng = "White" if h["White"] == "eng" else "Black"
        assert h[f"{eng}Temperature"] == "0.5"
        assert int(h[f"{eng}IllegalAttempts"]) == 2 * int(h[f"{eng}EngineMoves"]) > 0
        assert h[f"{eng}Fallbacks"] == "0"
        other = "Black" if eng == "White" else "White"
        if h[other].startswith("sf"):
            assert h[f"{other}Elo"] == "900" and h[f"{other}Options"].startswith("Skill Level=0")
    # Colours alternate within each pairing.
    whites = {int(g.headers["Round"]): g.headers["White"] for g in games}
    assert [whites[r] for r in (1, 2, 3, 4)] == ["eng", "sf-skill0-n10", "eng", "sf-skill0-n10"]


def test_resume_plays_only_missing_games(tmp_path: Path) -> None:
    pgn = tmp_path / "games.pgn"
    run_tournament([fake("eng")], ["random"], 4, pgn=pgn, settings=Settings(max_moves=10))
    kept = games_of(pgn)[:2]
    # Two finished games and a half-written third one, as after a kill during a write.
    pgn.write_text("".join(str(g) + "\n\n" for g in kept) + '[Event "x"]\n[Round "3"]\n1. e4')
    rounds_kept = {g.headers["Round"] for g in kept}
    # Same name, now a crashing command: only games that are replayed can be forfeits.
    result = run_tournament([fake("eng", "--mode crash --after 1")], ["random"], 4, pgn=pgn,
                            settings=Settings(max_moves=10))
    games = games_of(pgn)
    assert len(games) == len(result.games) == 4
    assert sorted(int(g.headers["Round"]) for g in games) == [1, 2, 3, 4]
    for game in games:
        replayed = game.headers["Round"] not in rounds_kept
        assert (game.headers["Termination"] == "crash") == replayed
    assert len(read_results(pgn)) == 4


def test_resume_refuses_another_tournaments_pgn(tmp_path: Path) -> None:
    pgn = tmp_path / "games.pgn"
    run_tournament(["random"], [fake("eng")], 1, pgn=pgn, settings=Settings(max_moves=5))
    with pytest.raises(ValueError, match="another tournament"):
        run_tournament([fake("other")], ["random"], 1, pgn=pgn)


def test_random_players_round_robin_and_adjudication() -> None:
    result = run_tournament([], ["random", "random", "random"], 2, round_robin=True,
                            settings=Settings(max_moves=5))
    assert [p.name for p in result.players] == ["random", "random#2", "random#3"]
    assert len(result.games) == 6
    assert all(g.termination == "adjudication" and g.plies == 10 for g in result.games)
    cells = result.matrix()
    assert cells["random", "random#2"] == (1.0, 2)


def test_bundled_openings_are_balanced_short_lines() -> None:
    openings = load_openings(bundled_openings())
    assert len(openings) >= 20
    assert len({o.board.fen() for o in openings}) == len(openings)
    assert all(len(o.board.move_stack) == 4 for o in openings)


def test_epd_openings(tmp_path: Path) -> None:
    epd = tmp_path / "book.epd"
    epd.write_text("rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - id \"e4\";\n")
    result = run_tournament(["random"], ["random"], 2, openings=epd, pgn=tmp_path / "g.pgn",
                            settings=Settings(max_moves=3))
    game = games_of(tmp_path / "g.pgn")[0]
    assert game.headers["FEN"].startswith("rnbqkbnr/pppppppp/8/8/4P3")
    assert all(g.plies == 6 for g in result.games)
    epd.write_text("not a position\n")
    with pytest.raises(ValueError, match="EPD"):
        load_openings(epd)


@pytest.mark.parametrize("args, message", [
    (["--engine", "random", "--opponent", "sf:skill=99"], "skill=99"),
    (["--engine", "random", "--opponent", "random", "--tc", "fast"], "time control"),
    (["--engine", "random"], "at least two players"),
    (["--engine", "/nonexistent/engine", "--opponent", "random"], "failed to start"),
])
def test_cli_errors_are_one_line(args: list[str], message: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["tournament", *args])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_cli_prints_standings_and_ratings(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    main(["tournament", "--engine", "random", "--opponent", "random", "--games", "2",
          "--max-moves", "5", "--pgn", str(tmp_path / "g.pgn"), "--quiet"])
    out = capsys.readouterr().out
    assert "W-D-L" in out and "Maximum-likelihood Elo" in out and "random#2" in out
    assert len(games_of(tmp_path / "g.pgn")) == 2


def test_paper_forfeit_when_every_sample_was_illegal() -> None:
    engine = fake("eng", "--fallback-at 3")
    played = run_tournament([engine], ["random"], 2, settings=Settings(max_moves=20))
    assert all(g.termination == "adjudication" for g in played.games)
    assert [g.illegal_counts("eng") for g in played.games] == [(5, 20, 1), (5, 20, 1)]
    ruled = run_tournament([engine], ["random"], 2,
                           settings=Settings(max_moves=20, paper_forfeit=True))
    assert all(g.termination == "illegal move" and g.score("eng") == 0 for g in ruled.games)
    assert [g.illegal_counts("eng") for g in ruled.games] == [(5, 3, 1), (5, 3, 1)]


def test_game_result_ends_repetitions_and_fifty_moves_at_once() -> None:
    board = chess.Board()
    assert game_result(board) is None
    for _ in range(2):
        for uci in ("g1f3", "g8f6", "f3g1", "f6g8"):
            board.push_uci(uci)
    assert game_result(board) == ("1/2-1/2", "threefold repetition")
    assert game_result(chess.Board("8/8/4k3/8/8/4K3/4R3/8 w - - 100 80")) == (
        "1/2-1/2", "fifty-move rule")
    assert game_result(chess.Board("8/8/4k3/8/8/4K3/4R3/8 w - - 99 80")) is None
    mate = chess.Board("rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3")
    assert game_result(mate) == ("0-1", "checkmate")


def test_noisy_engine_plays_some_random_moves(tmp_path: Path) -> None:
    spec = f"uci:name=half,eps=0.5,cmd={sys.executable} {FAKE}"
    result = run_tournament([spec], ["random"], 2, settings=Settings(max_moves=20, seed=3))
    for game in result.games:
        engine_moves = game.illegal_counts("half")[1]
        assert game.termination == "adjudication"
        assert 3 <= engine_moves <= 17  # about half of its 20 moves came from its engine


def test_pgn_folder_is_created(tmp_path: Path) -> None:
    from transcend.evaluation.tournament import run_tournament

    pgn = tmp_path / "new" / "folder" / "games.pgn"
    result = run_tournament(["random"], ["random"], 2, pgn=pgn)
    assert len(result.games) == 2 and pgn.read_text().count("[Event ") == 2
