"""The prepared GPU run: packing, the plan, parts and their rejoin, and the whole run rehearsed
on the CPU (`--dry-run`), which is the path the GPU takes with the `tiny` config."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import chess
import chess.pgn
import numpy as np
import pytest
from cli_helpers import cli

from transcend.engine.policy import Policy
from transcend.training.gpu_run import Knobs, model_size, plan, rejoin, split
from transcend.training.model import CONFIGS, GPT


def heldout_pgn(path: Path, games: int = 12) -> Path:
    rng = random.Random(4)
    with open(path, "w") as fh:
        for g in range(games):
            board = chess.Board()
            while not board.is_game_over() and board.ply() < 50:
                board.push(rng.choice(list(board.legal_moves)))
            game = chess.pgn.Game.from_board(board)
            game.headers["White"], game.headers["Black"] = f"expert{g % 2}", "expert"
            print(game, file=fh, end="\n\n")
    return path


def test_model_size_counts_like_the_model() -> None:
    for name in ("tiny", "small"):
        model = GPT(CONFIGS[name])
        assert model_size(name) == (model.num_params(), model.flops_per_token())


def test_plan_fills_the_time_with_the_model_the_data_support() -> None:
    _, flops = model_size("paper-50m")
    measured = {"tokens_per_s": 1.0e6, "flops_per_token": flops}
    # An H200-like throughput, 5.5 minutes: karvonen-25m, with little data or much; the
    # larger models' fp16 files could not come back.
    for data in (8_000_000, 140_000_000):
        big = plan(Knobs(), measured, data_tokens=data, train_seconds=330)
        losses = {r["config"]: r["predicted_loss"] for r in big["candidates"]}
        assert big["config"] == "karvonen-25m"
        assert losses["karvonen-25m"] < losses["small"]
        assert [r["comes_back"] for r in big["candidates"]] == [True, True, False, False]
        assert 16 <= big["batch_size"] <= 125 and big["steps"] >= 900
        # The whole training time is used: tokens = tokens/s x time.
        row = next(r for r in big["candidates"] if r["config"] == "karvonen-25m")
        assert big["tokens"] == pytest.approx(row["tokens_per_s"] * 330, rel=0.01)
    # Five seconds: the small model, which sees far more tokens, wins.
    assert plan(Knobs(), measured, data_tokens=8_000_000, train_seconds=5)["config"] == "small"


def test_split_and_rejoin_with_cat(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    data = np.random.default_rng(0).bytes(250_000)
    model.write_bytes(data)
    back = tmp_path / "back"
    back.mkdir()
    names = split(model, back, part_mib=0.1)
    assert names == [f"model.onnx.part-0{i}" for i in range(3)]
    assert all((back / n).stat().st_size <= 0.1 * (1 << 20) for n in names)
    # The documented rejoin.
    subprocess.run("cat back/model.onnx.part-* > joined.onnx", shell=True, check=True,
                   cwd=tmp_path)
    assert (tmp_path / "joined.onnx").read_bytes() == data
    assert rejoin(back, tmp_path / "again.onnx").read_bytes() == data
    single = tmp_path / "single"
    single.mkdir()
    assert split(model, single, part_mib=1) == ["model.onnx"]


def test_user_mistakes_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = cli(["gpu-run", "--carry", str(tmp_path / "nope"), "--out", str(tmp_path)],
                    capsys)
    assert code == 2 and "gpu-pack" in err and "Traceback" not in err
    code, err = cli(["gpu-pack", "--data", str(tmp_path), "--heldout", str(tmp_path / "x.pgn"),
                     "--out", str(tmp_path / "c")], capsys)
    assert code == 2 and "Traceback" not in err


def test_pack_then_dry_run_brings_back_a_model_that_plays(
        tiny_data: Path, stockfish: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    carry = tmp_path / "carry"
    code, err = cli(["gpu-pack", "--data", str(tiny_data), "--heldout",
                     str(heldout_pgn(tmp_path / "heldout.pgn")), "--out", str(carry),
                     "--positions", "8", "--nodes", "300", "--level", "3", "--no-wheels",
                     "--stockfish", stockfish], capsys)
    assert code == 0, err
    packed = json.loads((carry / "carry.json").read_text())
    assert packed["data"]["train_tokens"] == (tiny_data / "train.bin").stat().st_size
    assert packed["data"]["ratio"] > 1.5 and packed["advantage"]["positions"] == 8

    # In its own process, as on the GPU machine: the run changes process-wide state (threads,
    # signal handlers, torch.compile) that later tests must not inherit.
    out = tmp_path / "back"
    done = subprocess.run(
        [sys.executable, "-m", "transcend.training.cli", "gpu-run", "--carry", str(carry),
         "--out", str(out), "--dry-run", "--budget", "20", "--reserve", "6", "--games", "2"],
        capture_output=True, text=True, timeout=300)
    code, err = done.returncode, done.stderr
    assert code == 0, err
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and {"checks.json", "metrics.jsonl", "summary.json",
                                "summary.md"} <= set(files)
    summary = json.loads((out / "summary.json").read_text())
    checks = json.loads((out / "checks.json").read_text())
    assert not summary.get("errors"), summary.get("errors")
    assert checks["bf16_vs_fp32"]["agrees"] and checks["compile"]["works"]
    assert checks["throughput_eager"]["tokens_per_s"] > 0
    assert summary["plan"]["config"] == "tiny" and summary["training"]["step"] >= 1
    assert summary["advantage"]["positions"] == 8 and summary["advantage"]["cache_hits"] == 8
    # The budget is small: at least one game, and no game started after it was spent.
    assert 1 <= summary["match"]["games"] <= 2
    # The tiny model is split like a big one, and the documented command joins it.
    export = summary["export"]
    assert export["fp16"] and len(export["files"]) >= 2
    subprocess.run("cat back/model.onnx.part-* > model.onnx", shell=True, check=True,
                   cwd=tmp_path)
    model = tmp_path / "model.onnx"
    assert hashlib.sha256(model.read_bytes()).hexdigest() == export["sha256"]
    board = chess.Board()
    move = Policy(model, device="cpu").choose(board, 1.0, "token", np.random.default_rng(0)).move
    assert move in board.legal_moves


def test_weights_come_back_when_the_export_fails(tiny_data: Path, tmp_path: Path) -> None:
    from transcend.training.export import load_checkpoint
    from transcend.training.gpu_run import weights_only
    from transcend.training.train import TrainConfig, train

    run = tmp_path / "run"
    train(TrainConfig(data=str(tiny_data), out=str(run), config="tiny", batch_size=2,
                      max_steps=2, eval_interval=100, eval_batches=2, legal_interval=0,
                      legal_positions=5, progress=False))
    path = weights_only(run, tmp_path)
    model, _ = load_checkpoint(path)
    trained, _ = load_checkpoint(run)
    for (name, a), b in zip(model.state_dict().items(), trained.state_dict().values(),
                            strict=True):
        assert np.allclose(a.numpy(), b.numpy(), atol=1e-3), name
