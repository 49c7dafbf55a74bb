"""Training, resume, DDP, export parity and nanoGPT import, all on the `tiny` config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from transcend.engine.model_file import cache_feed
from transcend.engine.transcript import VOCAB
from transcend.training.export import CheckpointError, load_checkpoint
from transcend.training.model import CONFIGS, GPT, ModelConfig
from transcend.training.train import TokenWindows, batch_rng

BIN = Path(sys.executable).parent
FAST = ["--config", "tiny", "--block-size", "64", "--batch-size", "4", "--quiet",
        "--eval-batches", "2", "--legal-positions", "5", "--warmup-steps", "2"]


def transcend(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(BIN / "transcend"), *args], capture_output=True, text=True,
                            timeout=300, **kw)
    if check and result.returncode != 0:
        raise AssertionError(f"transcend {' '.join(args)} failed:\n{result.stderr}")
    return result


def test_tiny_trains_and_loss_falls(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    transcend("train", "--data", str(tiny_data), "--out", str(run), *FAST, "--max-steps", "60",
              "--eval-interval", "30", "--legal-interval", "60", "--lr", "3e-3")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    vals = [r["val_loss"] for r in records if "val_loss" in r]
    assert losses[0] > 3.0  # about ln(32) at initialisation
    assert vals[-1] < losses[0] - 0.8  # it learned the format's regularities
    assert any("legal_rate" in r for r in records)
    assert (run / "curves.png").stat().st_size > 1000
    ckpt = torch.load(run / "ckpt.pt", weights_only=True)
    assert ckpt["step"] == 60 and ckpt["data"]["max_rating"] == 1200


def test_resume_continues_exactly(tiny_data: Path, tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["--data", str(tiny_data), *FAST, "--eval-interval", "100", "--legal-interval", "0"]
    transcend("train", "--out", str(straight), *common, "--max-steps", "6")
    transcend("train", "--out", str(split), *common, "--max-steps", "3")
    transcend("train", "--out", str(split), "--resume", "--max-steps", "6", "--quiet")
    a = torch.load(straight / "ckpt.pt", weights_only=True)
    b = torch.load(split / "ckpt.pt", weights_only=True)
    assert b["step"] == 6
    assert b["data"]["max_rating"] == 1200  # the manifest survives a resume without --data
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_existing_run_is_not_overwritten(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    transcend("train", "--data", str(tiny_data), "--out", str(run), *FAST, "--max-steps", "2")
    before = (run / "ckpt.pt").read_bytes()
    again = transcend("train", "--data", str(tiny_data), "--out", str(run), *FAST,
                      "--max-steps", "2", check=False)
    assert again.returncode != 0 and "--resume" in again.stderr
    assert "Traceback" not in again.stderr
    assert (run / "ckpt.pt").read_bytes() == before


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    result = transcend("train", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                       "--max-steps", "1", check=False)
    assert result.returncode != 0
    assert "train.bin" in result.stderr and "Traceback" not in result.stderr


def test_nan_loss_stops_and_keeps_last_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = transcend("train", "--data", str(tiny_data), "--out", str(run), *FAST,
                       "--max-steps", "50", "--lr", "1e30", "--warmup-steps", "0",
                       "--grad-clip", "0", "--checkpoint-interval", "1", check=False)
    assert result.returncode != 0
    assert "loss became" in result.stderr and "Traceback" not in result.stderr
    ckpt = torch.load(run / "ckpt.pt", weights_only=True)
    assert ckpt["step"] < 50


def test_ctrl_c_saves_a_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [str(BIN / "transcend"), "train", "--data", str(tiny_data), "--out", str(run), *FAST,
         "--max-steps", "100000", "--checkpoint-interval", "100000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert "interrupted" in err and "Traceback" not in err
    ckpt = torch.load(run / "ckpt.pt", weights_only=True)
    assert 0 < ckpt["step"] < 100000


def test_windows_start_at_games_or_white_move_numbers(tiny_data: Path) -> None:
    windows = TokenWindows(tiny_data / "train.bin", block=64, mid_game_share=0.5)
    x, y = windows.batch(np.random.default_rng(0), 64)
    assert torch.equal(x[:, 1:], y[:, :-1])
    text_starts = {VOCAB[int(row[0])] for row in x}
    assert text_starts <= set(";0123456789")
    assert ";" in text_starts and text_starts - {";"}  # both kinds of window occur
    for row in x:
        if VOCAB[int(row[0])] != ";":  # a mid-game window: "<n>." opens it
            text = "".join(VOCAB[int(t)] for t in row[:5])
            assert text.split(".")[0].isdigit(), text


def test_ranks_draw_different_windows(tiny_data: Path) -> None:
    windows = TokenWindows(tiny_data / "train.bin", block=64, mid_game_share=0.1)
    a, _ = windows.batch(batch_rng(1, 0, 5, 0), 8)
    b, _ = windows.batch(batch_rng(1, 1, 5, 0), 8)
    again, _ = windows.batch(batch_rng(1, 0, 5, 0), 8)
    assert not torch.equal(a, b)
    assert torch.equal(a, again)


def test_ddp_two_processes_on_cpu(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2",
         str(BIN / "transcend"), "train", "--data", str(tiny_data), "--out", str(run), *FAST,
         "--max-steps", "4", "--threads", "1", "--eval-interval", "2", "--legal-interval", "0"],
        capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    ckpt = torch.load(run / "ckpt.pt", weights_only=True)
    assert ckpt["step"] == 4 and ckpt["summary"]["world_size"] == 2
    # Two ranks of 4 windows of 64 tokens each per step.
    assert ckpt["tokens"] == 4 * 2 * 4 * 64


def test_export_parity_and_metadata(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    transcend("train", "--data", str(tiny_data), "--out", str(run), *FAST, "--max-steps", "3")
    out = tmp_path / "m.onnx"
    result = transcend("export", str(run), "--out", str(out))
    assert "parity" in result.stdout
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["vocab"] == VOCAB and meta["block_size"] == "64"
    assert meta["max_rating"] == "1200"
    assert json.loads(meta["config"])["n_layer"] == CONFIGS["tiny"].n_layer
    half = tmp_path / "h.onnx"
    transcend("export", str(run), "--out", str(half), "--fp16")
    assert half.stat().st_size < out.stat().st_size


def test_cached_forward_matches_full_forward() -> None:
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=64)).eval()
    ids = torch.randint(0, 32, (1, 20))
    full = model(ids)
    c = model.config
    empty = [torch.zeros(1, c.n_head, 0, c.n_embd // c.n_head)] * (2 * c.n_layer)
    with torch.no_grad():
        first, new = model.forward_cached(ids[:, :12], torch.arange(12)[None],
                                          torch.ones(1, 12, 12, dtype=torch.bool).tril(), empty)
        past = [new[i // 2, i % 2] for i in range(2 * c.n_layer)]
        # Two alternative continuations of length 2 as a tree after the shared prefix: the
        # second branch must not see the first.
        branch = torch.cat([ids[:, 12:14], ids[:, 12:13], ids[:, 15:16]], dim=1)
        pos = torch.tensor([[12, 13, 12, 13]])
        mask = torch.ones(1, 4, 16, dtype=torch.bool)
        mask[0, :, 12:] = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]])
        tree, _ = model.forward_cached(branch, pos, mask, past)
    assert torch.allclose(first, full[:, :12], atol=1e-5)
    assert torch.allclose(tree[:, :2], full[:, 12:14], atol=1e-5)
    alt = torch.cat([ids[:, :13], ids[:, 15:16]], dim=1)
    assert torch.allclose(tree[0, 3], model(alt)[0, -1], atol=1e-5)


def _nanogpt_checkpoint(path: Path, vocab_size: int = 32, compiled: bool = True) -> GPT:
    torch.manual_seed(3)
    config = ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=1023)
    model = GPT(config).eval()
    state = dict(model.state_dict())
    for i in range(config.n_layer):  # the causal-mask buffer older nanoGPT versions saved
        state[f"transformer.h.{i}.attn.bias"] = torch.ones(1, 1, 8, 8).tril()
    if compiled:
        state = {f"_orig_mod.{k}": v for k, v in state.items()}
    model_args = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 1023, "bias": False,
                  "vocab_size": vocab_size, "dropout": 0.0}
    torch.save({"model": state, "model_args": model_args, "iter_num": 100,
                "best_val_loss": torch.tensor(1.0)}, path)
    return model


def test_import_nanogpt_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt.pt"
    model = _nanogpt_checkpoint(ckpt)
    out = tmp_path / "imported.onnx"
    transcend("import-nanogpt", str(ckpt), "--out", str(out))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    ids = torch.randint(0, 32, (1, 9))
    empty = np.zeros((2, 2, 1, 2, 0, 16), np.float32)
    logits, _ = session.run(None, {
        "input_ids": ids.numpy(), "position_ids": np.arange(9)[None],
        "attention_mask": np.tril(np.ones((9, 9), bool))[None], **cache_feed(empty)})
    with torch.no_grad():
        expected = model(ids).numpy()
    assert np.abs(logits - expected).max() < 1e-4


def test_import_rejects_wrong_vocabulary(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt.pt"
    _nanogpt_checkpoint(ckpt, compiled=False)
    state = torch.load(ckpt, weights_only=True)
    state["model_args"]["vocab_size"] = 50304
    torch.save(state, ckpt)
    with pytest.raises(CheckpointError, match="vocab_size 50304"):
        load_checkpoint(ckpt)
    result = transcend("import-nanogpt", str(ckpt), "--out", str(tmp_path / "x.onnx"),
                       check=False)
    assert result.returncode != 0 and "vocab_size" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x.onnx").exists()


def test_import_refuses_pickled_objects(tmp_path: Path) -> None:
    bad = tmp_path / "evil.pt"
    torch.save({"model": {}, "model_args": {"vocab_size": 32}, "obj": Path("x")}, bad)
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_checkpoint(bad)


def test_short_validation_file_gets_shorter_windows(tmp_path: Path) -> None:
    from transcend.engine.transcript import encode, game_transcript

    encode(game_transcript(["e4", "e5", "Nf3", "Nc6"]) * 20).tofile(tmp_path / "val.bin")
    windows = TokenWindows(tmp_path / "val.bin", block=1023, mid_game_share=0.1)
    x, y = windows.batch(np.random.default_rng(0), 3)
    assert x.shape == (3, windows.block) and windows.block < 1023
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    from transcend.training.train import TrainConfig, learning_rate

    cfg = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10)
    assert learning_rate(cfg, 0, 100) == pytest.approx(1e-4)
    assert learning_rate(cfg, 9, 100) == pytest.approx(1e-3)
    assert learning_rate(cfg, 55, 100) == pytest.approx(5.5e-4)  # half way down the cosine
    assert learning_rate(cfg, 100, 100) == pytest.approx(1e-4)
    assert learning_rate(cfg, 500, 100) == pytest.approx(1e-4)
    rates = [learning_rate(cfg, s, 100) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))


def test_max_tokens_and_max_time_stop_the_run(tiny_data: Path, tmp_path: Path) -> None:
    by_tokens = tmp_path / "tokens"
    # 4 windows of 64 tokens a step: 1,000 tokens take 4 steps.
    transcend("train", "--data", str(tiny_data), "--out", str(by_tokens), *FAST,
              "--max-tokens", "1000", "--legal-interval", "0")
    assert torch.load(by_tokens / "ckpt.pt", weights_only=True)["step"] == 4
    by_time = tmp_path / "time"
    transcend("train", "--data", str(tiny_data), "--out", str(by_time), *FAST,
              "--max-time", "2", "--legal-interval", "0")
    ckpt = torch.load(by_time / "ckpt.pt", weights_only=True)
    assert ckpt["step"] > 0 and ckpt["elapsed"] >= 2


def test_keep_at_keeps_snapshots_at_token_counts(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    # 256 tokens a step: 500 is passed at step 2, 1,000 at step 4, 2,000 is never reached.
    transcend("train", "--data", str(tiny_data), "--out", str(run), *FAST, "--max-steps", "5",
              "--legal-interval", "0", "--keep-at", "1e3,500,2000")
    kept = {p.name: torch.load(p, weights_only=True)["step"] for p in run.glob("ckpt-*.pt")}
    assert kept == {"ckpt-500.pt": 2, "ckpt-1000.pt": 4}
    model, _ = load_checkpoint(run / "ckpt-500.pt")
    assert model.num_params() > 0
    bad = transcend("train", "--data", str(tiny_data), "--out", str(tmp_path / "bad"), *FAST,
                    "--max-steps", "1", "--keep-at", "lots", check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "token counts" in bad.stderr


def test_schedule_tokens_lets_a_short_run_share_a_longer_schedule(tiny_data: Path,
                                                                 tmp_path: Path) -> None:
    common = ["--data", str(tiny_data), *FAST, "--legal-interval", "0", "--lr", "3e-3"]
    # 256 tokens a step: the long run keeps its step-4 state; the short one stops there.
    transcend("train", "--out", str(tmp_path / "long"), *common, "--max-tokens", "2048",
              "--keep-at", "1024")
    transcend("train", "--out", str(tmp_path / "short"), *common, "--max-tokens", "1024",
              "--schedule-tokens", "2048")
    transcend("train", "--out", str(tmp_path / "own"), *common, "--max-tokens", "1024")
    kept = torch.load(tmp_path / "long" / "ckpt-1024.pt", weights_only=True)["model"]
    short = torch.load(tmp_path / "short" / "ckpt.pt", weights_only=True)["model"]
    own = torch.load(tmp_path / "own" / "ckpt.pt", weights_only=True)["model"]
    assert all(torch.equal(kept[name], short[name]) for name in kept)
    assert not all(torch.equal(kept[name], own[name]) for name in kept)


def test_command_args_rebuild_the_same_config(monkeypatch: pytest.MonkeyPatch,
                                              tiny_data: Path, tmp_path: Path) -> None:
    """What a torchrun launch passes on is the config itself, flag for flag."""
    from click.testing import CliRunner

    from transcend.training import train as train_module

    cfg = train_module.TrainConfig(
        data=str(tiny_data), out=str(tmp_path / "run"), config="tiny", batch_size=3,
        grad_accum=2, lr=2.5e-3, min_lr=1e-5, warmup_steps=7, max_steps=11, max_tokens=900,
        max_time=12.5, schedule_tokens=5000, weight_decay=0.05, grad_clip=0.5,
        mid_game_share=0.25, eval_interval=3,
        eval_batches=4, legal_interval=5, legal_positions=6, checkpoint_interval=2,
        keep_at=(300, 600), seed=9,
        dtype="fp32", device="cpu", threads=1, compile=True, progress=False,
        model_overrides={"block_size": 64})
    seen: list[train_module.TrainConfig] = []
    monkeypatch.setattr(train_module, "train", lambda c, resume: seen.append(c) or {
        "step": 0, "tokens": 0, "best_val_loss": 0.0})
    result = CliRunner().invoke(train_module.train_command, cfg.command_args())
    assert result.exit_code == 0, result.output
    assert seen == [cfg]
