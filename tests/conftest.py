"""Shared fixtures: a tiny exported model and the Stockfish binary."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained `tiny` model exported to ONNX (random weights, seed 0): enough for protocol
    and plumbing tests, which must not depend on playing strength."""
    import torch

    from transcend.training.export import export_onnx, metadata_for
    from transcend.training.model import CONFIGS, GPT

    torch.manual_seed(0)
    model = GPT(CONFIGS["tiny"])
    out = tmp_path_factory.mktemp("model") / "tiny.onnx"
    export_onnx(model, out, metadata_for(model, {"data": {"max_rating": 1000}}))
    return out


@pytest.fixture(scope="session")
def stockfish() -> str:
    """Path of Stockfish; tests that need it are skipped only when it is truly absent."""
    from transcend.evaluation.players import find_stockfish

    try:
        return find_stockfish()
    except FileNotFoundError:
        if shutil.which("apt-get"):
            pytest.fail("Stockfish is missing: `make test` installs it (apt-get install stockfish)")
        pytest.skip("Stockfish is not installed")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared data directory (train.bin, val.bin, manifest.json) of 300 random games."""
    import json
    import random

    import chess

    from transcend.engine.transcript import encode, game_transcript

    rng = random.Random(7)
    games = []
    for _ in range(300):
        board = chess.Board()
        sans = []
        while not board.is_game_over() and len(sans) < 60:
            move = rng.choice(list(board.legal_moves))
            sans.append(board.san(move))
            board.push(move)
        games.append(game_transcript(sans))
    out = tmp_path_factory.mktemp("data")
    encode("".join(games[30:])).tofile(out / "train.bin")
    encode("".join(games[:30])).tofile(out / "val.bin")
    (out / "manifest.json").write_text(json.dumps({"max_rating": 1200, "games_kept": 300}))
    return out


@pytest.fixture(scope="module")
def server(tiny_onnx: Path):
    """A `transcend play` server of the tiny model on a free port, one per test module. Few
    Stockfish nodes: the tests check the plumbing of win probabilities, not their quality."""
    from transcend.play.server import make_server, serve_in_thread

    srv = make_server(tiny_onnx, port=0, nodes=200, threads=1)
    serve_in_thread(srv)
    yield srv
    srv.shutdown()
    srv.server_close()
    srv.games.stockfish.close()


@pytest.fixture
def raw(tiny_onnx: Path):
    """`transcend-uci` on the tiny model, spoken to line by line; it must exit cleanly with
    nothing on stderr."""
    from test_uci import Raw

    engine = Raw("--model", str(tiny_onnx), "--temp", "1", "--seed", "11")
    yield engine
    assert engine.close() == 0
    assert engine.stderr == ""
