"""The play server's API with the `tiny` model: moves, probabilities, take-back, FEN and PGN,
bad input, path traversal and independent games."""

from __future__ import annotations

import io
import json
import math
import socket
import subprocess
import sys
import time
from pathlib import Path

import chess
import chess.pgn
import pytest
from play_helpers import Client, random_game_pgn

from transcend.play.server import MAX_BODY, PlayServer


@pytest.fixture(scope="module")
def client(server: PlayServer) -> Client:
    return Client(server.url)


def test_move_and_model_reply(client: Client) -> None:
    state = client.ok("new", white="human", black="model", temperature=1, seed=3)
    assert state["turn"] == "white" and len(state["legal"]) == 20 and state["to_move"] == "human"
    state = client.ok("move", id=state["id"], uci="e2e4")
    assert state["to_move"] == "model" and state["last_move"] == "e2e4"
    state = client.ok("reply", id=state["id"])
    reply = state["reply"]
    assert state["ply"] == 2 and state["line"][1]["uci"] == reply["uci"]
    assert state["to_move"] == "human" and state["played"][1]["by"] == "model"
    assert 0 < reply["p"] <= 1
    status, data = client.post("reply", id=state["id"])
    assert status == 400 and data["error"] == "it is your move"


def test_the_model_converts_as_the_engine_does(client: Client) -> None:
    fen = "k7/8/1K6/8/8/8/8/7R w - - 0 1"  # a rook up, Rh8 mates
    state = client.ok("new", fen=fen, white="model", black="human", temperature=0, seed=1)
    state = client.ok("reply", id=state["id"])
    assert state["reply"]["san"] == "Rh8#" and state["played"][0]["convert"] == ["mate"]
    assert "Rh8# { p=1.0000 T=0 token mate }" in client.pgn(state["id"])
    paper = client.ok("new", fen=fen, white="model", black="human", temperature=0, seed=1,
                      mode="paper")
    paper = client.ok("reply", id=paper["id"])
    assert "convert" not in paper["played"][0]  # the paper's mode: pure sampling


def _distribution(client: Client, game_id: str, **settings: object) -> dict[str, float]:
    client.ok("settings", id=game_id, **settings)
    data = client.ok("analysis", id=game_id, top=500, stockfish=False)
    assert len(data["candidates"]) == data["legal"]
    return {c["uci"]: (c["p1"], c["pT"]) for c in data["candidates"]}


@pytest.mark.parametrize("mode", ["token", "move"])
def test_probabilities_sum_to_one_and_sharpen(client: Client, tiny_onnx: Path,
                                              mode: str) -> None:
    game_id = client.ok("new", pgn="1. e4 e5 2. Nf3")["id"]
    client.ok("goto", id=game_id, ply=3)
    hot = _distribution(client, game_id, temperature=1, mode=mode)
    cold = _distribution(client, game_id, temperature=0.3, mode=mode)
    for dist in (hot, cold):
        assert math.isclose(sum(p for p, _ in dist.values()), 1, abs_tol=1e-6)
        assert math.isclose(sum(q for _, q in dist.values()), 1, abs_tol=1e-6)
    assert all(math.isclose(p, q) for p, q in hot.values())  # at T = 1 both columns agree

    def entropy(ps: list[float]) -> float:
        return -sum(p * math.log(p) for p in ps if p > 0)

    assert entropy([q for _, q in cold.values()]) < entropy([p for p, _ in hot.values()])
    top = max(hot, key=lambda m: hot[m][0])
    assert cold[top][1] > hot[top][0]
    if mode == "move":  # move mode is exactly p^(1/T), renormalised
        norm = sum(p ** (1 / 0.3) for p, _ in hot.values())
        assert all(math.isclose(q, p ** (1 / 0.3) / norm, rel_tol=1e-6) for p, q in cold.values())
    # One implementation: the page's numbers are the engine policy's.
    from transcend.engine.policy import Policy

    board = chess.Board()
    for san in ("e4", "e5", "Nf3"):
        board.push_san(san)
    direct = Policy(tiny_onnx, threads=1).move_distribution(board, 0.3, mode)
    assert all(math.isclose(cold[m.uci()][1], p, rel_tol=1e-6) for m, p in direct.items())
    greedy = _distribution(client, game_id, temperature=0)
    assert sorted(q for _, q in greedy.values())[-2:] == [0.0, 1.0]


def test_takeback_returns_to_the_humans_turn(client: Client) -> None:
    game_id = client.ok("new", white="human", black="model")["id"]
    client.ok("move", id=game_id, uci="d2d4")
    client.ok("reply", id=game_id)
    state = client.ok("takeback", id=game_id)
    assert state["ply"] == 0 and state["line"] == [] and state["to_move"] == "human"
    client.ok("move", id=game_id, uci="g1f3")
    state = client.ok("takeback", id=game_id)  # no reply yet: one ply
    assert state["ply"] == 0
    status, data = client.post("takeback", id=game_id)
    assert status == 400 and "nothing to take back" in data["error"]
    # Watching the model play itself, a take-back is one ply.
    game_id = client.ok("new", white="model", black="model")["id"]
    client.ok("reply", id=game_id)
    client.ok("reply", id=game_id)
    assert client.ok("takeback", id=game_id)["ply"] == 1


def test_fen_start(client: Client) -> None:
    fen = "r3k2r/pppq1ppp/2n5/3p4/3P4/2N5/PPPQ1PPP/R3K2R b KQkq - 4 12"
    state = client.ok("new", fen=fen, white="human", black="model", temperature=0)
    assert state["start_fen"] == fen and state["turn"] == "black" and state["first_ply"] == 23
    state = client.ok("reply", id=state["id"])
    assert state["ply"] == 1 and state["turn"] == "white"
    game = chess.pgn.read_game(io.StringIO(client.pgn(state["id"])))
    assert game is not None and game.headers["FEN"] == fen
    assert [m.uci() for m in game.mainline_moves()] == [state["line"][0]["uci"]]


def test_pgn_load_step_and_download(client: Client) -> None:
    pgn = ('[Event "club"]\n[White "A"]\n[Black "B"]\n[Result "0-1"]\n\n'
           "1. e4 e5 2. Nf3 Nc6 3. Bb5 a6 4. Ba4 Nf6 0-1\n")
    state = client.ok("new", pgn=pgn, temperature=0.1, mode="move", seed=42)
    assert state["ply"] == 0 and len(state["line"]) == 8  # stepped from the start
    state = client.ok("goto", id=state["id"], ply=5)
    assert state["fen"].startswith("r1bqkbnr/pppp1ppp/2n5/1B2p3/4P3/5N2/")
    assert state["last_move"] == "f1b5"
    rows = client.ok("review", id=state["id"], stockfish=False)["rows"]
    assert [r["san"] for r in rows][:3] == ["e4", "e5", "Nf3"] and len(rows) == 8
    assert all(0 < r["p1"] <= r["best_p1"] <= 1 for r in rows)
    game = chess.pgn.read_game(io.StringIO(client.pgn(state["id"])))
    assert game is not None
    headers = game.headers
    assert (headers["White"], headers["Result"], headers["Model"]) == ("A", "0-1", "tiny.onnx")
    assert (headers["Temperature"], headers["SamplingMode"], headers["Seed"]) == (
        "0.1", "move", "42")
    assert len(list(game.mainline_moves())) == 8
    # A move from ply 5 starts a new line: the loaded result no longer applies.
    client.ok("move", id=state["id"], uci="g8f6")
    game = chess.pgn.read_game(io.StringIO(client.pgn(state["id"])))
    assert game is not None and game.headers["Result"] == "*"
    assert len(list(game.mainline_moves())) == 6


def test_long_game(client: Client) -> None:
    state = client.ok("new", pgn=random_game_pgn(310), white="model", black="model")
    state = client.ok("goto", id=state["id"], ply=310)
    state = client.ok("reply", id=state["id"])
    assert state["ply"] == 311
    data = client.ok("analysis", id=state["id"], ply=305, stockfish=False)
    assert data["played"]["uci"] == state["line"][305]["uci"]
    assert 0 < sum(c["p1"] for c in data["candidates"]) <= 1 + 1e-9


def test_seed_repeats_the_models_moves(client: Client) -> None:
    def moves(seed: int) -> list[str]:
        game_id = client.ok("new", white="model", black="model", temperature=1, seed=seed)["id"]
        for _ in range(6):
            state = client.ok("reply", id=game_id)
        return [m["uci"] for m in state["line"]]

    assert moves(7) == moves(7)


def test_two_games_are_independent(client: Client) -> None:
    a = client.ok("new", temperature=0.5)["id"]
    b = client.ok("new", temperature=2, mode="move", fen="8/8/8/4k3/8/8/4P3/4K3 w - - 0 1")["id"]
    client.ok("move", id=a, uci="e2e4")
    client.ok("move", id=b, uci="e2e4")
    client.ok("move", id=a, uci="e7e5")
    sa, sb = client.ok("state", id=a), client.ok("state", id=b)
    assert [m["uci"] for m in sa["line"]] == ["e2e4", "e7e5"]
    assert [m["uci"] for m in sb["line"]] == ["e2e4"]
    assert sa["settings"]["temperature"] == 0.5 and sb["settings"]["mode"] == "move"


@pytest.mark.parametrize(("route", "body", "status", "words"), [
    ("move", {"uci": "e2e5"}, 400, "illegal move e2e5"),
    ("move", {"uci": "hello"}, 400, "not a move"),
    ("settings", {"temperature": "-1"}, 400, "temperature must be a number >= 0"),
    ("settings", {"temperature": "nan"}, 400, "temperature must be a number >= 0"),
    ("settings", {"mode": "greedy"}, 400, "mode must be one of"),
    ("settings", {"seed": "x"}, 400, "seed must be a whole number"),
    ("settings", {"level": 21}, 400, "Stockfish level"),
    ("goto", {"ply": 9}, 400, "ply must be from 0 to 0"),
    ("analysis", {"ply": "x"}, 400, "ply must be a whole number"),
])
def test_bad_input_in_a_game(client: Client, route: str, body: dict[str, object], status: int,
                             words: str) -> None:
    game_id = client.ok("new")["id"]
    code, data = client.post(route, id=game_id, **body)
    assert code == status and words in data["error"], data
    assert client.ok("state", id=game_id)["settings"]["temperature"] == 0.01  # unchanged


@pytest.mark.parametrize(("body", "words"), [
    ({"fen": "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP w KQkq - 0 1"}, "FEN: expected 8 rows"),
    ({"fen": "8/8/8/8/8/8/8/8 w - - 0 1"}, "FEN: not a legal position (no white king"),
    ({"pgn": "1. e4 e5 2. Qxf7"}, "PGN: illegal san: 'Qxf7'"),
    ({"pgn": "just words"}, "PGN:"),
    ({"pgn": '[Variant "Atomic"]\n\n1. e4 *'}, "variant 'Atomic' is not supported"),
    ({"temperature": "hot"}, "temperature must be a number"),
    ({"white": "alien"}, "white must be one of human, model, stockfish"),
])
def test_bad_new_game(client: Client, body: dict[str, object], words: str) -> None:
    code, data = client.post("new", **body)
    assert code == 400 and words in data["error"], data


def test_bad_requests_keep_the_server_serving(client: Client) -> None:
    code, data = client.post("move", id="nope", uci="e2e4")
    assert code == 404 and "unknown game" in data["error"]
    code, data = client.post("fly")
    assert code == 404 and data["error"] == "no such route: POST /api/fly"
    code, body, _ = client.raw("POST", "/api/new", b"{not json",
                               {"Content-Type": "application/json"})
    assert code == 400 and b"not valid JSON" in body
    code, body, _ = client.raw("POST", "/api/new", b"[]", {"Content-Type": "application/json"})
    assert code == 400 and b"JSON object" in body
    code, body, _ = client.raw("POST", "/api/new", b"fen=x",
                               {"Content-Type": "application/x-www-form-urlencoded"})
    assert code == 415
    big = json.dumps({"pgn": "1. e4 " * (MAX_BODY // 6 + 10)}).encode()
    code, body, _ = client.raw("POST", "/api/new", big, {"Content-Type": "application/json"})
    assert code == 413 and b"upload too large" in body
    code, body, _ = client.raw("GET", "/api/pgn?id=nope")
    assert code == 404
    code, body, _ = client.raw("GET", "/nowhere")
    assert code == 404 and b"No page at <code>/nowhere</code>" in body
    assert b"Back to the board" in body
    code, body, _ = client.raw("GET", "/", headers={"Host": "evil.example:80"})
    assert code == 403
    assert client.ok("new")["to_move"] == "human"  # still serving


@pytest.mark.parametrize("path", [
    "/static/../server.py", "/static/../../pyproject.toml", "/static/%2e%2e/server.py",
    "/static/..%2f..%2fpyproject.toml", "/../../etc/passwd", "/static//etc/passwd",
    "/static/vendor/../../games.py", "/static/%00", "/server.py", "/static/..\\server.py",
])
def test_no_file_outside_static(client: Client, path: str) -> None:
    code, body, _ = client.raw("GET", path)
    assert code == 404, (path, body[:100])


def test_static_files(client: Client) -> None:
    code, body, headers = client.raw("GET", "/")
    assert code == 200 and b"<title>transcend" in body and "text/html" in headers["Content-Type"]
    for path in ("/static/app.js", "/static/vendor/chessground/chessground.min.js",
                 "/static/vendor/chessground/LICENSE"):
        code, body, _ = client.raw("GET", path)
        assert code == 200 and body, path


def test_stockfish_win_probabilities_and_review(client: Client, stockfish: str) -> None:
    game_id = client.ok("new", pgn="1. e4 e5 2. Nf3 Nc6")["id"]
    data = client.ok("analysis", id=game_id, ply=2)
    assert data["stockfish"] and data["played"]["san"] == "Nf3"
    wins = [c["win"] for c in data["candidates"]]
    assert all(0 <= w <= 1 for w in wins) and data["best_win"] == pytest.approx(
        max(wins), abs=0.5)
    rows = client.ok("review", id=game_id)["rows"]
    assert len(rows) == 4
    for row in rows:
        assert row["loss"] == pytest.approx(row["win_best"] - row["win_played"])
    assert rows[2]["p1"] == pytest.approx(
        next(c["p1"] for c in data["candidates"] if c["san"] == "Nf3"))


def test_model_against_stockfish(client: Client, stockfish: str) -> None:
    game_id = client.ok("new", white="model", black="stockfish", level=0)["id"]
    assert client.ok("reply", id=game_id)["reply"]["by"] == "model"
    state = client.ok("reply", id=game_id)
    assert state["reply"]["by"] == "stockfish" and state["ply"] == 2
    game = chess.pgn.read_game(io.StringIO(client.pgn(game_id)))
    assert game is not None and game.headers["Black"].startswith("Stockfish skill 0")


def test_play_command_serves_the_page(tiny_onnx: Path) -> None:
    exe = Path(sys.executable).parent / "transcend"
    proc = subprocess.Popen([str(exe), "play", "--model", str(tiny_onnx), "--port", "0",
                             "--no-browser", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        url = ""
        assert proc.stdout is not None
        while time.monotonic() < deadline and not url:
            line = proc.stdout.readline()
            if line.startswith("transcend play: "):
                url = line.split()[2]
        assert url.startswith("http://127.0.0.1:")
        assert Client(url).raw("GET", "/")[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_play_command_errors_are_one_line(tiny_onnx: Path, tmp_path: Path) -> None:
    exe = str(Path(sys.executable).parent / "transcend")
    result = subprocess.run([exe, "play", "--model", str(tmp_path / "none.onnx"), "--no-browser"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "no model '" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([exe, "play", "--model", str(tiny_onnx), "--port", str(port),
                                 "--no-browser"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and f"port {port} on 127.0.0.1 is in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_stockfish_at_a_path_with_a_comma(tmp_path: Path, stockfish: str) -> None:
    from transcend.play.games import Stockfish

    odd = tmp_path / "engines, old=1" / "stockfish"
    odd.parent.mkdir()
    odd.symlink_to(Path(stockfish).resolve())
    engine = Stockfish(path=str(odd))
    try:
        assert engine.command == str(odd)
        assert engine.best_move(chess.Board(), level=0) in chess.Board().legal_moves
    finally:
        engine.close()


def test_stockfish_restarts_after_a_crash(client: Client, server: PlayServer,
                                          stockfish: str) -> None:
    game_id = client.ok("new", pgn="1. d4 Nf6 2. c4 g6")["id"]
    client.ok("analysis", id=game_id, ply=1)
    analysis = server.games.stockfish._analysis
    assert analysis is not None and analysis.proc is not None
    analysis.proc.kill()
    analysis.proc.wait()
    code, data = client.post("analysis", id=game_id, ply=3)
    assert code == 500 and "Stockfish failed" in data["error"]
    assert client.ok("analysis", id=game_id, ply=3)["stockfish"]


def test_the_page_plays_without_torch(tiny_onnx: Path) -> None:
    # A meta-path hook makes `import torch` (and anything from training) fail in the child.
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == 'torch' or name.startswith(('torch.', 'transcend.training')):
            raise ImportError(f'{{name}} must not be imported here')
sys.meta_path.insert(0, Block())
sys.path.insert(0, {str(Path(__file__).parent)!r})
from play_helpers import Client
from transcend.play.server import make_server, serve_in_thread
server = make_server({str(tiny_onnx)!r}, port=0, threads=1)
serve_in_thread(server)
client = Client(server.url)
game = client.ok('new', white='model', black='model')['id']
assert client.ok('reply', id=game)['ply'] == 1
assert client.ok('analysis', id=game, ply=0, stockfish=False)['played']['by'] == 'model'
print('played')
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "played", result.stderr[-2000:]
