"""The project's own loop on games without ratings, end to end: experts without ``elo=``, then
``data prepare``, ``train`` and ``export``, and the model played by the engine, analysed by
``transcend advantage``, moved through the play page's API and rehearsed by ``gpu-run``.

Such games carry no WhiteElo/BlackElo, so the manifest's ``max_rating`` is null: every path
below must work without it. The expensive steps run once for the module."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import chess
import numpy as np
import pytest
from play_helpers import Client
from test_uci import binary

from transcend.engine.model_file import read_metadata, read_model_info
from transcend.engine.policy import Policy
from transcend.training.cli import main

REPO = Path(__file__).resolve().parents[1]
# An expert as docs/gpu-run.md and the README write it: no elo=, so no ratings in the PGN.
EXPERT = "sf:skill=0,nodes=100,eps=0.4"


@dataclass
class Unrated:
    pgn: Path
    data: Path
    run: Path
    model: Path


def transcend(*args: str) -> None:
    """`transcend ARGS` in this process; a failure fails the test with its exit code."""
    try:
        main(list(args))
    except SystemExit as exc:
        assert not exc.code, f"transcend {' '.join(args)} exited with {exc.code}"


@pytest.fixture(scope="module")
def unrated(tmp_path_factory: pytest.TempPathFactory, stockfish: str) -> Unrated:
    root = tmp_path_factory.mktemp("unrated")
    made = Unrated(root / "e.pgn", root / "data", root / "run", root / "m.onnx")
    # The sequence, with fewer games and few positions for the final legal-move rate.
    transcend("data", "experts", "--out", str(made.pgn), "--games", "12", "--expert", EXPERT,
              "--quiet")
    transcend("data", "prepare", str(made.pgn), "--out", str(made.data), "--quiet")
    transcend("train", "--data", str(made.data), "--config", "tiny", "--out", str(made.run),
              "--max-tokens", "20000", "--batch-size", "4", "--legal-positions", "5", "--quiet")
    transcend("export", str(made.run), "--out", str(made.model))
    return made


def test_no_rating_stays_absent_and_validation_is_kept(unrated: Unrated) -> None:
    assert "Elo" not in unrated.pgn.read_text()
    manifest = json.loads((unrated.data / "manifest.json").read_text())
    assert manifest["max_rating"] is None
    # A dozen games: at least one is kept for validation, and training measured it.
    assert manifest["games"]["val"] >= 1 and (unrated.data / "val.bin").exists()
    metrics = [json.loads(line) for line in (unrated.run / "metrics.jsonl").open()]
    assert any(np.isfinite(m.get("val_loss", np.nan)) for m in metrics)
    meta = read_metadata(unrated.model)
    assert "max_rating" not in meta and "None" not in meta.values()
    assert read_model_info(unrated.model).max_rating is None


def test_engine_plays_a_legal_move(unrated: Unrated) -> None:
    # The fifth command, word for word.
    done = subprocess.run(
        [binary(), "--model", str(unrated.model)], capture_output=True, text=True, timeout=120,
        input="uci\nisready\nposition startpos\ngo movetime 100\nquit\n")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "error" not in done.stdout, done.stdout
    move = done.stdout.strip().splitlines()[-1].removeprefix("bestmove ")
    assert chess.Move.from_uci(move) in chess.Board().legal_moves


def test_advantage_analyses_the_model(unrated: Unrated, stockfish: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "advantage"
    transcend("advantage", "--model", str(unrated.model), "--pgn", str(unrated.pgn),
              "--positions", "3", "--temps", "0.01,1", "--mode", "token", "--nodes", "300",
              "--out", str(out), "--cache", str(tmp_path / "cache"), "--stockfish", stockfish,
              "--workers", "1", "--bootstrap", "100", "--quiet")
    assert "| token | 0.01 |" in capsys.readouterr().out
    with open(out / "advantage.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["group"] == "all"]
    assert len(rows) == 2
    assert all(0 <= float(r["model_win_prob"]) <= float(r["best_win_prob"]) + 1e-9 for r in rows)


def test_play_page_moves_and_replies(unrated: Unrated, stockfish: str) -> None:
    from transcend.play.server import make_server, serve_in_thread

    server = make_server(unrated.model, port=0, nodes=200, threads=1, stockfish_path=stockfish)
    serve_in_thread(server)
    try:
        client = Client(server.url)
        state = client.ok("new", white="human", black="model", temperature=1, seed=3)
        state = client.ok("move", id=state["id"], uci="e2e4")
        reply = client.ok("reply", id=state["id"])["reply"]
        board = chess.Board()
        board.push_uci("e2e4")
        assert chess.Move.from_uci(reply["uci"]) in board.legal_moves and 0 < reply["p"] <= 1
        analysis = client.ok("analysis", id=state["id"], top=3, stockfish=True)
        assert analysis["candidates"]
    finally:
        server.shutdown()
        server.server_close()
        server.games.stockfish.close()


def no_build_site(root: Path) -> Path:
    """The import path of docs/gpu-run.md: the repository linked in as `transcend` beside the
    carried wheels, with nothing built or installed."""
    site = root / "site"
    site.mkdir()
    (site / "transcend").symlink_to(REPO, target_is_directory=True)
    return site


def test_gpu_run_rehearsal_has_no_stage_errors(unrated: Unrated, stockfish: str,
                                              tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    carry = tmp_path / "carry"
    transcend("gpu-pack", "--data", str(unrated.data), "--heldout", str(unrated.pgn),
              "--out", str(carry), "--positions", "4", "--nodes", "300", "--level", "3",
              "--no-wheels", "--stockfish", stockfish)
    packed = json.loads((carry / "carry.json").read_text())
    assert packed["data"]["train_tokens"] == (unrated.data / "train.bin").stat().st_size
    assert packed["advantage"]["positions"] == 4

    # In its own process, as on the GPU machine (the run changes process-wide state: threads,
    # signal handlers, torch.compile), importing the project the way that machine does.
    out = tmp_path / "back"
    env = os.environ | {"PYTHONPATH": str(no_build_site(tmp_path))}
    done = subprocess.run(
        [sys.executable, "-m", "transcend.training.cli", "gpu-run", "--carry", str(carry),
         "--out", str(out), "--dry-run", "--budget", "20", "--reserve", "6", "--games", "2"],
        capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    checks = json.loads((out / "checks.json").read_text())
    assert summary.get("errors", {}) == {}
    assert "0 stage errors" in done.stdout
    assert checks["versions"]["transcend"] == str(tmp_path / "site" / "transcend")
    # What comes back is recorded, and it is what lies in the folder.
    files = sorted(p.name for p in out.iterdir())
    assert summary["back"]["files"] == len(files) <= 8 and summary["back"]["fits"]
    assert {"checks.json", "metrics.jsonl", "summary.json", "summary.md"} <= set(files)
    assert checks["bf16_vs_fp32"]["agrees"] and checks["compile"]["works"]
    assert "skipped" not in checks["compile"]  # the rehearsal's eager backend needs no compiler
    assert checks["throughput_eager"]["tokens_per_s"] > 0
    assert summary["plan"]["config"] == "tiny" and summary["training"]["step"] >= 1
    assert summary["advantage"]["positions"] == 4 and summary["advantage"]["cache_hits"] == 4
    # The budget is small: at least one game, and no game started after it was spent.
    assert 1 <= summary["match"]["games"] <= 2
    # The tiny model is split like a big one, and the documented command joins it.
    export = summary["export"]
    assert export["fp16"] and len(export["files"]) >= 2
    subprocess.run("cat back/model.onnx.part-* > model.onnx", shell=True, check=True,
                   cwd=tmp_path)
    model = tmp_path / "model.onnx"
    assert hashlib.sha256(model.read_bytes()).hexdigest() == export["sha256"]
    assert "max_rating" not in read_metadata(model)
    board = chess.Board()
    move = Policy(model, device="cpu").choose(board, 1.0, "token", np.random.default_rng(0)).move
    assert move in board.legal_moves
