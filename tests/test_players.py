"""Player specs: the keys tournaments add (UCI options, temperature) and the existing forms."""

from __future__ import annotations

from pathlib import Path

import pytest

from transcend.evaluation.players import SpecError, parse_spec


def test_stockfish_spec_keeps_its_budget_and_options(stockfish: str) -> None:
    spec = parse_spec("sf:skill=1,time=0.1")
    assert spec.kind == "sf" and spec.name == "sf-skill1-t0.1"
    assert spec.options == {"Skill Level": 1, "Threads": 1, "Hash": 16}
    assert spec.go_arguments() == "movetime 100" and spec.has_limit()
    noisy = parse_spec("sf:skill=0,nodes=60,eps=0.3,elo=900,option.Hash=32")
    assert (noisy.nodes, noisy.eps, noisy.elo) == (60, 0.3, 900)
    assert noisy.options["Hash"] == 32 and noisy.temperature is None


def test_uci_options_keep_their_case_and_give_the_temperature() -> None:
    spec = parse_spec("uci:name=m,option.Temperature=0.5,option.SamplingMode=paper,"
                      "cmd=transcend-uci --model a,b.onnx")
    assert spec.options == {"Temperature": "0.5", "SamplingMode": "paper"}
    assert Path(spec.command[0]).name == "transcend-uci"
    assert spec.command[1:] == ["--model", "a,b.onnx"]
    assert spec.temperature == 0.5 and spec.name == "m" and not spec.has_limit()


@pytest.mark.parametrize("text, temperature, name", [
    ("transcend-uci --temp 0.3 --model x.onnx", 0.3, "transcend-uci-T0.3"),
    ("transcend-uci --temperature=1.5", 1.5, "transcend-uci-T1.5"),
    ("uci:cmd=transcend-uci --temp 0.01", 0.01, "transcend-uci-T0.01"),
    ("/usr/games/stockfish", None, "stockfish"),
])
def test_temperature_from_the_command_line(text: str, temperature: float | None,
                                           name: str) -> None:
    spec = parse_spec(text)
    assert spec.kind == "uci" and spec.temperature == temperature and spec.name == name


def test_random_player_and_bad_specs() -> None:
    assert parse_spec("random").kind == "random"
    for bad, message in (("random:option.X=1", "unknown key"), ("uci:name=x", "needs cmd"),
                         ("sf:skill=21", "skill"), ("sf:eps=2", "eps"), ("", "empty")):
        with pytest.raises(SpecError, match=message):
            parse_spec(bad)


def test_engine_commands_are_found_beside_the_running_python() -> None:
    import shutil
    import sys
    from pathlib import Path

    from transcend.evaluation.players import parse_spec

    spec = parse_spec("transcend-uci --temp 0.5")
    assert Path(spec.command[0]).name == "transcend-uci"
    if shutil.which("transcend-uci") is None:  # an unactivated virtual environment
        assert spec.command[0] == str(Path(sys.executable).parent / "transcend-uci")
    assert spec.command[1:] == ["--temp", "0.5"]
