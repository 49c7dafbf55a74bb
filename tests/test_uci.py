"""`transcend-uci` driven as a subprocess, as GUIs and tournament runners drive it: raw UCI text
and python-chess's `chess.engine`."""

from __future__ import annotations

import queue
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import chess
import chess.engine
import pytest

from transcend.engine.convert import material_cp
from transcend.engine.model_file import default_model_path
from transcend.engine.uci import temperature_for_elo

INFO_LINE = re.compile(
    r"^info depth 1 seldepth 1 multipv (\d+) score cp (-?\d+) nodes (\d+) nps (\d+) "
    r"time (\d+) pv ([a-h][1-8][a-h][1-8][qrbn]?)$"
)
OPTIONS = ["ModelFile", "Temperature", "SamplingMode", "Seed", "Threads", "Device", "MultiPV",
           "Move Overhead", "MinThinkTime", "Hash", "Clear Hash", "SyzygyPath", "UCI_ShowWDL",
           "UCI_Chess960"]


def binary() -> str:
    found = shutil.which("transcend-uci") or str(Path(sys.executable).parent / "transcend-uci")
    assert Path(found).exists(), "transcend-uci is not installed (pip install -e .)"
    return found


class Raw:
    """The engine as a process, with UCI lines in and out."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [binary(), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def send(self, *lines: str) -> None:
        assert self.proc.stdin is not None
        for line in lines:
            self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def until(self, done: Callable[[str], bool] | str, timeout: float = 30) -> list[str]:
        """Lines up to and including the first one that satisfies ``done``."""
        test = (lambda line: line.startswith(done)) if isinstance(done, str) else done
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"engine exited; output so far: {got}")
            got.append(line)
            if test(line):
                return got

    def silent_for(self, seconds: float) -> list[str]:
        got = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is not None:
                got.append(line)
        return got

    def ready(self) -> list[str]:
        self.send("isready")
        return self.until("readyok")

    def close(self) -> int:
        if self.proc.poll() is None:
            self.send("quit")
        rc = self.proc.wait(timeout=30)
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()
        return rc


def declared_options(lines: list[str]) -> dict[str, str]:
    """Option name -> the rest of its declaration, from the engine's answer to `uci`."""
    found = re.findall(r"^option name (.+?) type (.*)$", "\n".join(lines), re.MULTILINE)
    return dict(found)


def bestmove(lines: list[str]) -> str:
    moves = [line.split()[1] for line in lines if line.startswith("bestmove")]
    assert len(moves) == 1, lines
    return moves[0]


def test_handshake_options_and_ready(raw: Raw) -> None:
    start = time.monotonic()
    raw.send("uci")
    lines = raw.until("uciok", timeout=10)
    assert time.monotonic() - start < 5
    assert lines[0].startswith("id name transcend")
    assert any(line.startswith("id author ") for line in lines)
    declared = set(declared_options(lines))
    assert set(OPTIONS) <= declared
    assert "UCI_Elo" not in declared  # this model has no calibration
    assert "option name Temperature type string default 1" in lines
    assert raw.ready() == ["readyok"]  # nothing else before readyok: python-chess warns on it
    raw.send("position startpos", "go nodes 1")
    info = raw.until("bestmove")
    assert any("CPUExecutionProvider" in line for line in info if line.startswith("info string"))


def test_go_answers_one_legal_bestmove_with_info(raw: Raw) -> None:
    raw.ready()
    board = chess.Board()
    for san in ("e4", "e5", "Nf3"):
        board.push_san(san)
    raw.send("ucinewgame", "position startpos moves e2e4 e7e5 g1f3", "go wtime 60000 btime 60000")
    lines = raw.until("bestmove")
    move = chess.Move.from_uci(bestmove(lines))
    assert move in board.legal_moves
    info = [INFO_LINE.match(line) for line in lines if line.startswith("info depth")]
    assert len(info) == 1 and info[0] is not None
    assert info[0].group(6) == move.uci()
    # MultiPV 1: `token` mode sampled the move alone, and reports its exact probability.
    chosen = f"info string token T=1 chosen {board.san(move)} "
    assert any(line.startswith(chosen) for line in lines)
    assert not raw.silent_for(0.3)  # nothing after the bestmove


def test_own_move_enters_the_cache_after_bestmove(raw: Raw) -> None:
    raw.ready()
    board = chess.Board()
    for san in ("d4", "d5", "c4"):
        board.push_san(san)
    raw.send("ucinewgame", "position startpos moves d2d4 d7d5 c2c4", "go movetime 10")
    own = board.san(chess.Move.from_uci(bestmove(raw.until("bestmove"))))
    # `d` waits for the finished search's work: the cache holds the prompt after the engine's
    # own move, so the opponent's reply is all that the next move runs first.
    raw.send("d")
    lines = raw.until("info string cache")
    assert lines[-2] == "info string prompt ';1.d4 d5 2.c4 '"
    assert lines[-1] == f"info string cache {len(';1.d4 d5 2.c4 ' + own + ' 3.')} tokens"


def test_multipv_lines_and_material_score(raw: Raw) -> None:
    raw.send("setoption name MultiPV value 3")
    # White is a queen up; Bxf7+ also wins a pawn, so scores differ between the lines.
    fen = "rnb1kbnr/pppp1ppp/8/4p3/2B1P3/8/PPPP1PPP/RNBQK1NR w KQkq - 0 3"
    raw.send(f"position fen {fen}", "go movetime 50")
    lines = raw.until("bestmove")
    board = chess.Board(fen)
    matches = [INFO_LINE.match(line) for line in lines if line.startswith("info depth")]
    assert [int(m.group(1)) for m in matches] == [1, 2, 3]
    pvs = [chess.Move.from_uci(m.group(6)) for m in matches]
    assert len(set(pvs)) == 3 and pvs[0].uci() == bestmove(lines)
    for m, move in zip(matches, pvs, strict=True):
        after = board.copy()
        after.push(move)
        assert int(m.group(2)) == material_cp(after, chess.WHITE) >= 900
    assert any("without game history" in line for line in lines)
    raw.send(f"position fen {fen}", "go movetime 50")
    again = raw.until("bestmove")
    assert not any("without game history" in line for line in again)  # said once per game


def test_infinite_and_ponder_hold_the_move_until_told(raw: Raw) -> None:
    raw.ready()
    raw.send("position startpos", "go infinite")
    held = raw.silent_for(0.5)
    assert not any(line.startswith("bestmove") for line in held)
    raw.send("isready")
    assert raw.until("readyok")[-1] == "readyok"  # answered while thinking
    raw.send("stop")
    assert chess.Move.from_uci(bestmove(raw.until("bestmove"))) in chess.Board().legal_moves
    raw.send("position startpos moves e2e4", "go ponder wtime 10000 btime 10000")
    assert not any(line.startswith("bestmove") for line in raw.silent_for(0.4))
    raw.send("ponderhit")
    bestmove(raw.until("bestmove"))
    raw.send("stop")  # a stop after the move changes nothing
    assert not any(line.startswith("bestmove") for line in raw.silent_for(0.3))


def test_no_legal_move_and_searchmoves(raw: Raw) -> None:
    mated = "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3"
    raw.send(f"position fen {mated}", "go movetime 100")
    assert bestmove(raw.until("bestmove")) == "0000"
    raw.send("position startpos", "go searchmoves a2a3 h2h4 nodes 1")
    assert bestmove(raw.until("bestmove")) in ("a2a3", "h2h4")


def test_bad_input_is_reported_and_the_engine_keeps_serving(raw: Raw) -> None:
    raw.ready()
    bad = [
        ("frobnicate", "unknown command"),
        ("position", "position needs"),
        ("position fen not/a/fen w - - 0 1", "bad FEN"),
        ("position startpos moves e2e4 e7e4", "illegal move e7e4"),
        ("setoption name Nonsense value 3", "unknown option"),
        ("setoption name Temperature value hot", "temperature must be"),
        ("setoption name Temperature value -1", "temperature must be"),
        ("setoption name MultiPV value 0", "between 1 and 256"),
        ("setoption name SamplingMode value beam", "SamplingMode takes one of"),
        ("setoption Temperature 1", "setoption needs"),
    ]
    for command, message in bad:
        raw.send(command)
        lines = raw.until("info string error", timeout=10)
        assert message in lines[-1], (command, lines)
    # The illegal move kept the moves before it: e2e4 was played.
    raw.send("go movetime 50")
    after_e4 = chess.Board()
    after_e4.push_san("e4")
    assert chess.Move.from_uci(bestmove(raw.until("bestmove"))) in after_e4.legal_moves
    raw.send("go wtime abc")
    lines = raw.until("bestmove")
    assert any("ignored in go: wtime abc" in line for line in lines)
    assert raw.ready()[-1] == "readyok"


def test_options_change_behaviour(raw: Raw) -> None:
    raw.send("setoption name Temperature value 0", "setoption name SamplingMode value move")
    raw.send("position startpos", "go nodes 1")
    first = raw.until("bestmove")
    assert any(line.startswith("info string move T=0 top ") for line in first)
    raw.send("go nodes 1")
    assert bestmove(raw.until("bestmove")) == bestmove(first)  # greedy is deterministic
    raw.send("setoption name SamplingMode value paper", "setoption name Temperature value 1")
    raw.send("position startpos moves d2d4", "go nodes 1")
    lines = raw.until("bestmove")
    board = chess.Board()
    board.push_san("d4")
    assert chess.Move.from_uci(bestmove(lines)) in board.legal_moves
    # An untrained model writes no legal move in five tries; the fallback is reported.
    assert any("illegal attempts 5 fallback token" in line for line in lines)


def test_min_think_time_is_capped_by_the_clock(raw: Raw) -> None:
    raw.send("setoption name MinThinkTime value 2000")
    raw.ready()
    start = time.monotonic()
    raw.send("position startpos", "go movetime 5000")
    bestmove(raw.until("bestmove"))
    assert time.monotonic() - start >= 2.0
    start = time.monotonic()
    raw.send("go wtime 150 btime 150")  # 150 ms left: the delay must not lose on time
    bestmove(raw.until("bestmove"))
    # Far below the 2 s pause it would have made: the clock, not the option, decided.
    assert time.monotonic() - start < 1.5


def test_end_of_input_finishes_a_pending_search(tiny_onnx: Path) -> None:
    proc = subprocess.run(
        [binary(), "--model", str(tiny_onnx)], input="uci\nposition startpos\ngo infinite\n",
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0 and proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert "uciok" in lines and bestmove(lines) != "0000"


def test_corrupt_models_still_speak_uci(tiny_onnx: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.onnx"
    corrupt.write_bytes(b"\x08\x07this is not a model" * 50)
    old = Path(__file__).parent / "fixtures" / "format1-bias.onnx"
    for path, message in ((corrupt, ""),
                          (old, "format 1; this engine reads format 2: convert it with "
                                f"`transcend upgrade-model {old}`")):
        engine = Raw("--model", str(path))
        engine.send("uci")
        engine.until("uciok")
        lines = engine.ready()
        assert any(line.startswith("info string error") and message in line for line in lines)
        engine.send("position startpos", "go movetime 100")
        lines = engine.until("bestmove")
        assert bestmove(lines) == "0000"
        assert any("error no model loaded" in line for line in lines)
        # A good model set through the option makes it play.
        engine.send(f"setoption name ModelFile value {tiny_onnx}", "go movetime 100")
        assert bestmove(engine.until("bestmove")) != "0000"
        assert engine.close() == 0


def test_command_line_flags(tiny_onnx: Path) -> None:
    proc = subprocess.run([binary(), "--temp", "hot"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "temperature" in proc.stderr
    # `transcend-uci --temp 0.01` as written: flags become option defaults.
    proc = subprocess.run([binary(), "--temp", "0.01", "--mode", "move", "--model",
                           str(tiny_onnx)], input="uci\nquit\n", capture_output=True, text=True,
                          timeout=60)
    assert "option name Temperature type string default 0.01" in proc.stdout
    assert "option name SamplingMode type combo default move" in proc.stdout
    # Exactly as written, with the bundled model: it plays, or says clearly that it is missing.
    proc = subprocess.run([binary(), "--temp", "0.01"], input="uci\nisready\ngo\nquit\n",
                          capture_output=True, text=True, timeout=60)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and "uciok" in lines and "readyok" in lines
    if default_model_path().exists():
        assert chess.Move.from_uci(bestmove(lines)) in chess.Board().legal_moves
    else:
        assert bestmove(lines) == "0000"
        assert any("no model loaded" in line and "--model PATH" in line for line in lines)


def test_calibrated_model_offers_limit_strength(tiny_onnx: Path, tmp_path: Path) -> None:
    from transcend.evaluation.sweep import write_metadata_calibration

    path = tmp_path / "calibrated.onnx"
    path.write_bytes(tiny_onnx.read_bytes())
    write_metadata_calibration(path, [{"temperature": 0.01, "elo": 1500},
                                      {"temperature": 1.0, "elo": 900}])
    engine = Raw("--model", str(path))
    engine.send("uci")
    lines = engine.until("uciok")
    assert "option name UCI_Elo type spin default 1500 min 900 max 1500" in lines
    assert "option name UCI_LimitStrength type check default false" in lines
    engine.send("setoption name UCI_LimitStrength value true", "setoption name UCI_Elo value 1200",
                "position startpos", "go nodes 1")
    lines = engine.until("bestmove")
    assert any("T=0.505 " in line for line in lines)  # halfway between the two points
    engine.send("setoption name UCI_Elo value 2000")
    assert "between 900 and 1500" in engine.until("info string error")[-1]
    assert engine.close() == 0


def test_temperature_for_elo() -> None:
    curve = [(0.01, 1400.0), (0.1, 1450.0), (0.5, 1200.0), (1.0, 800.0)]
    # The strongest measured point is at 0.1; colder is taken to be as strong, not weaker.
    assert temperature_for_elo(curve, 2000) == 0.1
    assert temperature_for_elo(curve, 1450) == 0.1
    assert temperature_for_elo(curve, 1400) == pytest.approx(0.18)
    assert temperature_for_elo(curve, 1000) == pytest.approx(0.75)
    assert temperature_for_elo(curve, 500) == 1.0


def test_long_game_through_the_protocol(raw: Raw) -> None:
    """400 plies sent the way GUIs send them: the whole move list on every `position`."""
    rng = random.Random(3)
    board = chess.Board()
    moves: list[str] = []
    while len(moves) < 400:
        if len(moves) % 20 == 0 or len(moves) > 390:
            raw.send(f"position startpos moves {' '.join(moves)}", "go nodes 1")
            assert chess.Move.from_uci(bestmove(raw.until("bestmove"))) in board.legal_moves
        legal = list(board.legal_moves)
        keep = [m for m in legal if not _ends(board, m)] or legal
        move = rng.choice(keep)
        board.push(move)
        moves.append(move.uci())
        if board.is_game_over(claim_draw=False) and not any(board.legal_moves):
            break


def _ends(board: chess.Board, move: chess.Move) -> bool:
    board.push(move)
    ended = not any(board.legal_moves)
    board.pop()
    return ended


def test_python_chess_plays_and_analyses(tiny_onnx: Path) -> None:
    cmd = [binary(), "--model", str(tiny_onnx), "--temp", "0.5", "--seed", "2"]
    with chess.engine.SimpleEngine.popen_uci(cmd, timeout=30) as engine:
        assert engine.id["name"].startswith("transcend")
        assert "Temperature" in engine.options and "SamplingMode" in engine.options
        board = chess.Board()
        for _ in range(16):
            result = engine.play(board, chess.engine.Limit(time=0.05), info=chess.engine.INFO_ALL)
            assert result.move in board.legal_moves
            assert isinstance(result.info["score"].relative.score(), int)
            board.push(result.move)
            if board.is_game_over():
                break
        # Tournaments count the paper protocol's illegal samples from the last info string.
        engine.configure({"SamplingMode": "paper", "Temperature": "1"})
        result = engine.play(board, chess.engine.Limit(nodes=1), info=chess.engine.INFO_BASIC)
        assert re.match(r"illegal attempts 5 fallback token", result.info["string"])
        engine.configure({"SamplingMode": "move", "Temperature": "0.2"})
        infos = engine.analyse(board, chess.engine.Limit(depth=1), multipv=3)
        assert [info["multipv"] for info in infos] == [1, 2, 3]
        assert all(info["pv"][0] in board.legal_moves for info in infos)


def test_seed_makes_games_reproducible(tiny_onnx: Path) -> None:
    def game(seed: int) -> list[str]:
        cmd = [binary(), "--model", str(tiny_onnx), "--temp", "1", "--seed", str(seed)]
        with chess.engine.SimpleEngine.popen_uci(cmd, timeout=30) as engine:
            board = chess.Board()
            for _ in range(10):
                board.push(engine.play(board, chess.engine.Limit(nodes=1)).move)
            return [m.uci() for m in board.move_stack]

    assert game(5) == game(5)
    assert game(5) != game(6)


def test_seed_option_reseeds_and_device_options_reload(raw: Raw) -> None:
    def three_moves() -> list[str]:
        out = []
        for _ in range(3):
            raw.send("go nodes 1")
            out.append(bestmove(raw.until("bestmove")))
        return out

    raw.send("position startpos moves e2e4", "setoption name Seed value 9")
    first = three_moves()
    raw.send("setoption name Seed value 9")
    assert three_moves() == first
    raw.send("setoption name Device value cpu", "setoption name Threads value 1")
    raw.ready()
    raw.send("go nodes 1")
    lines = raw.until("bestmove")
    assert any(line.startswith("info string model") and "CPUExecutionProvider" in line
               for line in lines)
    raw.send("setoption name Device value gpu")
    assert "Device takes one of" in raw.until("info string error")[-1]
    raw.send("go nodes 1")
    bestmove(raw.until("bestmove"))


def test_move_overhead_shortens_the_pause(raw: Raw) -> None:
    raw.send("setoption name MinThinkTime value 3000", "setoption name MoveOverhead value 1000")
    raw.ready()
    start = time.monotonic()
    raw.send("position startpos", "go movetime 1500")  # pause = 1500 - 1000 ms
    bestmove(raw.until("bestmove"))
    assert 0.5 <= time.monotonic() - start < 2.5
