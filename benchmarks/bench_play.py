"""The model's reply on the play page: from the page's request to its answer, against the bare
policy call in the same run.

A game as the page plays it: a move from the "human" (a seeded random legal move, not timed),
then ``POST /api/reply`` over one kept-alive connection, timed until the whole JSON answer (the
move and the new position with its legal moves and move list) has arrived. The baseline is
``Policy.choose`` on the same positions by a second policy that follows the same game, so its
cache works as the server's does. The page's probability panel (``POST /api/analysis``, two
exact distributions, without Stockfish) is timed too, and replies late in a long game (plies
300 to 340 of a loaded game, where the prompt fills the model's window).

    python benchmarks/bench_play.py                      # the bundled model
    python benchmarks/bench_play.py --model m.onnx --games 2 --plies 40
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import time
from pathlib import Path

import chess
import chess.pgn
import numpy as np

from transcend.engine.model_file import default_model_path
from transcend.engine.policy import Policy
from transcend.play.server import make_server, serve_in_thread

GOAL_MS = 100


class Connection:
    """One kept-alive HTTP/1.1 connection, as a browser tab holds."""

    def __init__(self, url: str) -> None:
        host, port = url.split("://", 1)[1].rstrip("/").rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)

    def post(self, route: str, **body: object) -> dict:
        self.conn.request("POST", f"/api/{route}", json.dumps(body),
                          {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        data = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"{route}: {data}")
        return data


def long_game(rng: random.Random, plies: int) -> chess.Board:
    """Random legal moves for ``plies`` plies, white to move at the end, the game not over."""
    while True:
        board = chess.Board()
        while len(board.move_stack) < plies and not board.is_game_over():
            board.push(rng.choice(list(board.legal_moves)))
        if len(board.move_stack) == plies and not board.is_game_over():
            return board


def stats(ms: list[float]) -> tuple[float, float]:
    return float(np.median(ms)), float(np.percentile(ms, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--games", type=int, default=4)
    parser.add_argument("--plies", type=int, default=80, help="plies per game")
    parser.add_argument("--temperature", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=0, help="0: onnxruntime's default")
    args = parser.parse_args()
    model = args.model or default_model_path()
    server = make_server(model, port=0, threads=args.threads)
    serve_in_thread(server)
    bare = Policy(model, device="cpu", threads=args.threads)
    rng = random.Random(1)
    page_ms: list[float] = []
    long_ms: list[float] = []
    bare_ms: list[float] = []
    panel_ms: list[float] = []
    try:
        conn = Connection(server.url)
        for game in range(args.games):
            state = conn.post("new", white="human", black="model", mode="token",
                              temperature=args.temperature, seed=game + 1)
            board = chess.Board()
            sampler = np.random.default_rng(game + 1)
            while len(board.move_stack) < args.plies and not board.is_game_over():
                move = rng.choice(list(board.legal_moves))
                state = conn.post("move", id=state["id"], uci=move.uci())
                board.push(move)
                if board.is_game_over():
                    break
                start = time.perf_counter()
                bare.choose(board, args.temperature, "token", sampler)
                bare_ms.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                state = conn.post("reply", id=state["id"])
                page_ms.append((time.perf_counter() - start) * 1000)
                board.push(chess.Move.from_uci(state["reply"]["uci"]))
                start = time.perf_counter()
                conn.post("analysis", id=state["id"], ply=len(board.move_stack) - 1,
                          stockfish=False)
                panel_ms.append((time.perf_counter() - start) * 1000)
        board = long_game(rng, 300)
        state = conn.post("new", pgn=str(chess.pgn.Game.from_board(board)), white="human",
                          black="model", temperature=args.temperature, seed=1)
        state = conn.post("goto", id=state["id"], ply=len(board.move_stack))
        while len(long_ms) < 20 and not board.is_game_over():
            if board.turn == chess.WHITE:
                move = rng.choice(list(board.legal_moves))
                state = conn.post("move", id=state["id"], uci=move.uci())
            else:
                start = time.perf_counter()
                state = conn.post("reply", id=state["id"])
                long_ms.append((time.perf_counter() - start) * 1000)
                move = chess.Move.from_uci(state["reply"]["uci"])
            board.push(move)
    finally:
        server.shutdown()
        server.server_close()
        server.games.stockfish.close()
    page, page95 = stats(page_ms)
    base, base95 = stats(bare_ms)
    panel, panel95 = stats(panel_ms)
    late, late95 = stats(long_ms)
    print(f"model {model.name}, {len(page_ms)} replies in {args.games} games of up to "
          f"{args.plies} plies, T={args.temperature:g} token, threads={args.threads or 'default'}")
    print(f"page reply (POST /api/reply, request to answer): median {page:.1f} ms, "
          f"p95 {page95:.1f} ms")
    print(f"baseline (Policy.choose, same positions): median {base:.1f} ms, p95 {base95:.1f} ms")
    print(f"ratio page / bare: {page / base:.2f}x median")
    print(f"probability panel (POST /api/analysis, no Stockfish): median {panel:.1f} ms, "
          f"p95 {panel95:.1f} ms")
    print(f"page reply at plies 300-340 of a long game: median {late:.1f} ms, p95 {late95:.1f} ms")
    print(f"goal: median under {GOAL_MS} ms: {'met' if page < GOAL_MS else 'NOT met'}")


if __name__ == "__main__":
    main()
