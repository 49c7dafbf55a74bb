"""The prepared GPU run: the plan, parts and their rejoin, the compiler check, the weights when
the export fails. The whole run, packed and rehearsed on the CPU (`--dry-run`) on data the
project's own commands make, is in test_unrated.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import cli

from transcend.training.gpu.run import (
    Knobs,
    export_model,
    model_size,
    plan,
    rejoin,
    split,
    summary_markdown,
    train_model,
)
from transcend.training.model import CONFIGS, GPT


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


def test_compile_is_skipped_at_once_without_a_compiler(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from transcend.training.gpu.checks import compile_blocker

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    # The rehearsal's eager backend compiles nothing.
    assert compile_blocker("eager", cuda) is None and compile_blocker(None, cuda) is None
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no gcc, clang, g++ or clang++ on it
    assert "no C compiler for triton's launcher (gcc or clang, or $CC)" in \
        compile_blocker("inductor", cuda)
    assert "no C++ compiler" in compile_blocker("inductor", cpu)
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert "$CC=/nonexistent/cc is not an executable" in compile_blocker("inductor", cuda)
    # A compiler found the way triton finds one: $CC, else gcc (here a stand-in on PATH).
    gcc = tmp_path / "gcc"
    gcc.write_text("#!/bin/sh\n")
    gcc.chmod(0o755)
    monkeypatch.delenv("CC")
    assert compile_blocker("inductor", cuda) is None
    monkeypatch.setenv("CC", str(gcc))
    assert compile_blocker("inductor", cuda) is None


def test_weights_come_back_when_the_export_fails(tiny_data: Path, tmp_path: Path) -> None:
    from transcend.training.export import load_checkpoint
    from transcend.training.gpu.run import weights_only
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


def test_the_command_passes_the_board_input_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from transcend.training.gpu import run

    (tmp_path / "carry.json").write_text("{}")
    given: list[str] = []

    def fake_run(carry: Path, out: Path, budget: float, knobs: Knobs, work: Path | None,
                 board_input: str) -> dict:
        given.append(board_input)
        return {"back": {"files": 0, "mib": 0, "fits": True}, "elapsed_s": 0}

    monkeypatch.setattr(run, "gpu_run", fake_run)
    args = ["gpu-run", "--carry", str(tmp_path), "--out", str(tmp_path / "back"), "--dry-run"]
    for extra in ([], ["--board-input", "board+attacks"]):
        code, err = cli(args + extra, capsys)
        assert code == 0, err
    assert given == ["", "board+attacks"]  # none by default: the paper's model, as before
    code, err = cli(args + ["--board-input", "squares"], capsys)
    assert code == 2 and "board+attacks" in err and not given[2:]


def test_a_board_input_run_trains_and_exports_a_model_that_reads_the_board(
        tiny_data: Path, tmp_path: Path) -> None:
    from transcend.engine.features import ROWS
    from transcend.engine.model_file import read_metadata

    knobs = Knobs.dry_run()
    plain = plan(knobs, None, data_tokens=100_000, train_seconds=9)
    choice = plan(knobs, None, data_tokens=100_000, train_seconds=9, board_input="board")
    assert plain["board_input"] is None and choice["board_input"] == "board"
    # The board's table counts in the size of the file that has to come back.
    assert choice["candidates"][0]["params"] == \
        plain["candidates"][0]["params"] + ROWS["board"] * CONFIGS["tiny"].n_embd
    assert "board input board" in summary_markdown({"plan": choice}, {})
    assert choice["steps"] <= 3  # a few steps: what counts is what is trained
    trained = train_model(knobs, choice, tiny_data, tmp_path / "run", bf16=False,
                          use_compile=False, seconds=120)
    assert trained["board_input"] == "board"
    model, export = export_model(tmp_path / "run", tmp_path, knobs.part_mib)
    assert read_metadata(model)["board_input"] == "board"
