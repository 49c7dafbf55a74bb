"""`transcend upgrade-model`: format-1 files become files the engine reads, with the same logits.

The format-1 files in tests/fixtures were written by the format-1 exporter: one model with
biases in float32, one without in float16."""

from __future__ import annotations

import shutil
from pathlib import Path

import chess
import numpy as np
import pytest
from cli_helpers import cli
from test_policy import full_logits

from transcend.engine.model_file import MODEL_FORMAT, ModelError, read_metadata
from transcend.engine.policy import Policy
from transcend.engine.transcript import encode
from transcend.training.upgrade import format1_logits

DATA = Path(__file__).parent / "fixtures"
FORMAT1 = ["format1-bias.onnx", "format1-fp16.onnx"]


@pytest.mark.parametrize("name", FORMAT1)
def test_upgraded_file_has_the_same_model(name: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    source = DATA / name
    out = tmp_path / "new.onnx"
    code, err = cli(["upgrade-model", str(source), "--out", str(out)], capsys)
    assert code == 0, err
    old_meta, new_meta = read_metadata(source), read_metadata(out)
    assert old_meta["transcend_format"] == "1" and new_meta["transcend_format"] == MODEL_FORMAT
    # Everything else the file says about itself is kept.
    assert {k: v for k, v in old_meta.items() if k != "transcend_format"} == \
        {k: v for k, v in new_meta.items() if k != "transcend_format"}
    text = ";1.e4 e5 2.Nf3 Nc6 3.Bb5 a6 4."
    policy = Policy(out, device="cpu", threads=1)
    old = format1_logits(source, encode(text)[None].astype(np.int64), old_meta)[0]
    assert np.abs(full_logits(policy, text) - old).max() < 1e-5
    # And the engine plays with it (a window of 64 characters: the cache stays inside it).
    board = chess.Board()
    rng = np.random.default_rng(0)
    for _ in range(40):
        move = policy.choose(board, 1.0, "token", rng, distribution=False).move
        board.push(move)
        policy.extend_cache(board)
        if board.is_game_over():
            break
    assert policy.cached_tokens <= policy.info.block_size


def test_in_place_keeps_the_original(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "m.onnx"
    shutil.copy(DATA / FORMAT1[0], model)
    original = model.read_bytes()
    code, err = cli(["upgrade-model", str(model)], capsys)
    assert code == 0, err
    assert (tmp_path / "m.onnx.format1").read_bytes() == original
    assert read_metadata(model)["transcend_format"] == MODEL_FORMAT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.format1"]
    # A second file of the same name is not converted over the first one's backup.
    shutil.copy(DATA / FORMAT1[1], model)
    code, err = cli(["upgrade-model", str(model)], capsys)
    assert code == 1 and "m.onnx.format1 exists already" in err
    assert (tmp_path / "m.onnx.format1").read_bytes() == original


def test_engine_refuses_format_1_naming_the_fix() -> None:
    with pytest.raises(ModelError, match="format 1.*transcend upgrade-model"):
        Policy(DATA / FORMAT1[0], device="cpu")


def test_bad_input_is_one_line_and_changes_nothing(tiny_onnx: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    current = tmp_path / "current.onnx"
    shutil.copy(tiny_onnx, current)
    before = current.read_bytes()
    code, err = cli(["upgrade-model", str(current)], capsys)
    assert code == 2 and err.strip() == f"error: {current} is already in model format 2"
    assert current.read_bytes() == before and len(list(tmp_path.iterdir())) == 1
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07not a model")
    code, err = cli(["upgrade-model", str(junk), "--out", str(tmp_path / "out.onnx")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "junk.onnx" in err
    assert not (tmp_path / "out.onnx").exists()
