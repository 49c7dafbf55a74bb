"""A small HTTP client for the play server, shared by its tests, benchmark and screenshots."""

from __future__ import annotations

import http.client
import json
import random
from typing import Any

import chess
import chess.pgn


class Client:
    """JSON requests to a running play server; answers are (status, body)."""

    def __init__(self, url: str) -> None:
        rest = url.split("://", 1)[1].rstrip("/")
        self.host, port = rest.rsplit(":", 1)
        self.port = int(port)

    def raw(self, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        """The path is sent exactly as given (no normalisation of ``..``)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read(), dict(response.getheaders())
        finally:
            conn.close()

    def post(self, route: str, **body: Any) -> tuple[int, dict[str, Any]]:
        status, data, _ = self.raw("POST", f"/api/{route}", json.dumps(body).encode(),
                                   {"Content-Type": "application/json"})
        return status, json.loads(data)

    def ok(self, route: str, **body: Any) -> dict[str, Any]:
        status, data = self.post(route, **body)
        assert status == 200, data
        return data

    def pgn(self, game_id: str) -> str:
        status, data, _ = self.raw("GET", f"/api/pgn?id={game_id}")
        assert status == 200, data
        return data.decode()


def random_game_pgn(plies: int, seed: int = 0) -> str:
    """A PGN of random legal moves at least ``plies`` long that has not ended."""
    for attempt in range(200):
        rng = random.Random(seed * 1000 + attempt)
        board = chess.Board()
        while len(board.move_stack) < plies and not board.is_game_over():
            board.push(rng.choice(list(board.legal_moves)))
        if len(board.move_stack) == plies and not board.is_game_over():
            return str(chess.pgn.Game.from_board(board))
    raise AssertionError("no long random game found")
