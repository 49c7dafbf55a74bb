"""Bundled models chosen by name: the resolver, every command that takes a model, and each
model's own card."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_helpers import cli
from test_uci import Raw, bestmove, binary

from transcend.engine import model_file
from transcend.engine.model_file import (
    ModelError,
    bundled_models,
    default_model_path,
    resolve_model,
)
from transcend.engine.uci import Engine, Output, Settings
from transcend.evaluation.card import card_path, find_card, reading
from transcend.evaluation.players import PlayerSpec
from transcend.evaluation.ratings import Rating
from transcend.training.cli import main

DEFAULT = default_model_path()


@pytest.fixture
def two_bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bundled folder of two real models, `default` and `paper`; only `paper` has a card."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copyfile(DEFAULT, folder / "default.onnx")
    shutil.copyfile(DEFAULT, folder / "paper.onnx")
    card = json.loads(card_path(DEFAULT).read_text())
    (folder / "paper.card.json").write_text(json.dumps({**card, "model": "paper.onnx"}))
    monkeypatch.setattr(model_file, "models_folder", lambda: folder)
    return folder


def test_a_file_is_used_as_is_and_a_name_finds_the_bundled_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert DEFAULT.is_file() and bundled_models()["default"] == DEFAULT
    assert resolve_model("default") == resolve_model("default.onnx") == DEFAULT
    mine = tmp_path / "mine.onnx"
    shutil.copyfile(DEFAULT, mine)
    assert resolve_model(mine) == resolve_model(str(mine)) == mine
    # A file wins over a bundled model's name.
    monkeypatch.chdir(tmp_path)
    shutil.copyfile(DEFAULT, "default.onnx")
    assert resolve_model("default.onnx") == Path("default.onnx")
    assert resolve_model("default") == DEFAULT


def test_an_unknown_name_is_one_line_naming_the_bundled_models(two_bundled: Path) -> None:
    with pytest.raises(ModelError) as info:
        resolve_model("nosuchmodel")
    assert str(info.value) == ("no model 'nosuchmodel': not a file, and the bundled models are "
                               "default, paper")
    with pytest.raises(ValueError, match="bundled models are default, paper"):
        resolve_model("models/paper")  # a path, not a name


def test_a_second_bundled_model_by_name(two_bundled: Path) -> None:
    assert list(bundled_models()) == ["default", "paper"]
    assert resolve_model("paper") == resolve_model("paper.onnx") == two_bundled / "paper.onnx"
    assert resolve_model("default") == two_bundled / "default.onnx"
    # The engine takes it through its option, and refuses a bad name in one line.
    text = io.StringIO()
    engine = Engine(Settings(threads=1), Output(text))
    try:
        engine.handle("setoption name ModelFile value paper")
        assert engine.wait_for_model() is not None, engine.load_error
        assert f"info string model {two_bundled / 'paper.onnx'} (" in text.getvalue()
        engine.handle("setoption name ModelFile value nosuchmodel")
        assert text.getvalue().splitlines()[-1] == (
            "info string error no model 'nosuchmodel': not a file, and the bundled models are "
            "default, paper")
        assert engine.settings.model == str(two_bundled / "paper.onnx")  # unchanged
    finally:
        engine.shutdown()


def test_each_model_has_its_own_card_or_none(two_bundled: Path) -> None:
    assert card_path(two_bundled / "paper.onnx") == two_bundled / "paper.card.json"
    card = find_card("paper")
    assert card is not None and card.model == two_bundled / "paper.onnx"
    assert find_card("default") is None  # no card beside it: no reading, no error
    # The reading is of the model the engine plays, named as on its command line.
    ratings = [Rating("transcend-uci-T0.01", 100.0, 0.0, 200.0, 12, 8.0, 0),
               Rating("random", 0.0, 0.0, 0.0, 12, 4.0, 0, True)]
    players = [PlayerSpec(kind="uci", name="transcend-uci-T0.01",
                          command=["transcend-uci", "--temp", "0.01", "--model", "paper"]),
               PlayerSpec(kind="random", name="random")]
    text = " ".join(" ".join(reading(ratings, players, {"random": 0.0}, card)).split())
    assert text.startswith("Reading: paper.onnx at T = 0.01 rates 100 (0 to 200)")


@pytest.mark.parametrize("args", [
    ["sweep", "--opponent", "random", "--out", "x"],
    ["advantage", "--pgn", __file__, "--out", "x"],
    ["play", "--no-browser"],
])
def test_commands_refuse_an_unknown_model_in_one_line(
        args: list[str], two_bundled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = cli([*args, "--model", "nosuchmodel"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no model 'nosuchmodel': not a file, and the bundled models are default, paper" in err


def test_tournament_reads_the_card_of_a_named_model(
        two_bundled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["tournament", "--engine", "random", "--opponent", "random:name=r2", "--games", "2",
            "--anchor", "random=0", "--quiet", "--card"]
    main([*args, "paper"])
    assert "Reading: no player here is paper.onnx" in " ".join(capsys.readouterr().out.split())
    main([*args, "default"])  # a model without a card: no reading
    assert "Reading:" not in capsys.readouterr().out
    code, err = cli([*args, "nosuchmodel"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "bundled models are default, paper" in err


def test_uci_plays_a_bundled_model_named_on_its_command_line() -> None:
    engine = Raw("--model", "default", "--threads", "1")
    engine.send("uci")
    engine.until("uciok", timeout=120)  # a busy machine may start it slowly
    engine.send("position startpos", "go nodes 1")
    lines = engine.until("bestmove", timeout=120)
    assert bestmove(lines) != "0000"
    assert any(line.startswith(f"info string model {DEFAULT} (") for line in lines), lines
    assert engine.close() == 0


def test_uci_refuses_an_unknown_model_in_one_line() -> None:
    proc = subprocess.run([binary(), "--model", "nosuchmodel"], input="uci\n",
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("transcend-uci: error: no model 'nosuchmodel': not a file, and the "
                           f"bundled models are {', '.join(bundled_models())}\n")
