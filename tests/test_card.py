"""The bundled model's card figures (models/default.card.json) against the card's own table, and
the reading that `make run` ends with: its numbers are the list's and the card's."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from transcend.engine.model_file import default_model_path, read_metadata, resolve_model
from transcend.evaluation.card import card_path, load_card, reading
from transcend.evaluation.players import PlayerSpec
from transcend.evaluation.ratings import Outcome, Rating, bradley_terry
from transcend.training.cli import main

ROOT = Path(__file__).resolve().parents[1]
FAKE = Path(__file__).with_name("fake_uci.py")
CARD = load_card(card_path(default_model_path()))


def card_table(readme: Path) -> dict[str, list[str]]:
    """The rows of a card's rating list, by label, bold marks removed."""
    text = readme.read_text()
    section = text.split("### Games: one rating list", 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip().replace("**", "") for c in line.strip("|").split("|")]
        if line.startswith("|") and len(cells) == 4 and cells[2].isdigit():
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.parametrize("name, readme", [("default", "README.md"), ("paper", "paper.md")])
def test_each_bundled_card_and_its_figures_agree(name: str, readme: str) -> None:
    model = resolve_model(name)
    card = load_card(card_path(model))
    assert card.readme.resolve() == (ROOT / "models" / readme).resolve() and model.is_file()
    assert card.model == model
    rows = card_table(card.readme)
    assert sorted(rows) == sorted(p.label for p in card.players)
    for p in card.players:
        elo = f"{p.elo:.0f}" if p.low is None else f"{p.elo:.0f} ({p.low} to {p.high})"
        assert rows[p.label] == [elo, str(p.games), f"{100 * p.score:.1f}%"], p.label
    section = card.readme.read_text().split("### Games", 1)[1]
    assert f"all {card.games:,} games" in " ".join(section.split())
    assert card.anchors == {"random": 0.0} and card.player("random") is not None


def _spec(name: str, command: list[str] | None = None) -> PlayerSpec:
    return PlayerSpec(kind="uci" if command else "sf", name=name, command=command or [])


MODEL = _spec("transcend-uci-T0.01", ["transcend-uci", "--temp", "0.01"])
SF0, SF1 = _spec("sf-skill0-n100"), _spec("sf-skill1-n100")
RANDOM = PlayerSpec(kind="random", name="random")


def games(score_by_pair: dict[tuple[str, str], list[float]]) -> list[Outcome]:
    return [Outcome(a, b, s) for (a, b), scores in score_by_pair.items() for s in scores]


def numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"-?\d+", text)]


def test_the_reading_takes_its_numbers_from_the_list_and_the_card() -> None:
    outcomes = games({("transcend-uci-T0.01", "random"): [1, 1, 0.5, 0, 1, 1],
                      ("transcend-uci-T0.01", "sf-skill0-n100"): [0, 0, 0, 0.5, 0, 0],
                      ("transcend-uci-T0.01", "sf-skill1-n100"): [0, 0, 0, 0, 0, 0],
                      ("sf-skill0-n100", "random"): [1, 1, 1, 1]})
    ratings = bradley_terry(outcomes, {"random": 0.0})
    by = {r.name: r for r in ratings}
    lines = reading(ratings, [MODEL, SF0, SF1, RANDOM], {"random": 0.0}, CARD)
    assert len(lines) == 3
    text = " ".join(" ".join(lines).split())
    model, there = by["transcend-uci-T0.01"], CARD.model_at(0.01)
    assert there is not None and there.low is not None and there.high is not None
    where = ("inside" if there.low <= model.elo <= there.high else
             "above" if model.elo > there.high else "below")
    assert (f"default.onnx at T = 0.01 rates {round(model.elo)} ({round(model.lo95)} to "
            f"{round(model.hi95)}) over {model.games} games here, {where} the {there.elo:.0f} "
            f"({there.low} to {there.high}) its card measured over {there.games}") in text
    for name in ("sf-skill0-n100", "sf-skill1-n100"):
        card_player = CARD.player(name)
        assert card_player is not None
        assert (f"{name} rates {round(by[name].elo)} here, {card_player.elo:.0f} there") in text
    assert "random rates" not in text  # the anchor is 0 on both lists: nothing to read
    training = json.loads(read_metadata(CARD.model)["training"])
    cores = f"{training['threads']} CPU core" + ("s" if training["threads"] != 1 else "")
    assert (f"trained for {training['elapsed_s'] / 3600:.1f} hours on {cores}") in text
    assert training["device"] == "cpu"
    assert "models/README.md" in text and "make play" in text and "import-nanogpt" in text


def test_the_reading_says_where_a_stronger_run_stands() -> None:
    strong = [Rating("transcend-uci-T0.01", 400.0, 300.0, 500.0, 12, 10.0, 0),
              Rating("random", 0.0, 0.0, 0.0, 12, 2.0, 0, True)]
    text = " ".join(reading(strong, [MODEL, RANDOM], {"random": 0.0}, CARD))
    there = CARD.model_at(0.01)
    assert there is not None and there.elo < 300
    assert (f"rates 400 (300 to 500) over 12 games here, above the {there.elo:.0f}"
            in " ".join(text.split()))


def test_the_reading_compares_only_like_with_like(tmp_path: Path) -> None:
    ratings = bradley_terry(games({("transcend-uci-T0.01", "random"): [1, 0, 1]}), {})
    text = " ".join(reading(ratings, [MODEL, RANDOM], {}, CARD))
    assert "not on the scale" in text and "--anchor random=0" in text
    other = _spec("transcend-uci-T0.01", ["transcend-uci", "--temp", "0.01", "--model",
                                           str(tmp_path / "other.onnx")])
    text = " ".join(reading(ratings, [other, RANDOM], {"random": 0.0}, CARD))
    assert "no player here is default.onnx" in " ".join(text.split())
    assert CARD.model_at(0.2) is None
    hot = _spec("transcend-uci-T0.2", ["transcend-uci", "--temp=0.2"])
    ratings = bradley_terry(games({("transcend-uci-T0.2", "random"): [1, 0, 1]}), {"random": 0})
    text = " ".join(reading(ratings, [hot, RANDOM], {"random": 0.0}, CARD))
    assert "its card has no figure at that temperature" in " ".join(text.split())


def test_tournament_prints_one_anchored_list_and_its_reading(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`make run` in small: the fake engine stands in for the model."""
    engine = f"uci:name=transcend-uci-T0.01,cmd={sys.executable} {FAKE} --temp 0.01"
    main(["tournament", "--engine", engine, "--opponent", "random", "--games", "4",
          "--max-moves", "8", "--pgn", str(tmp_path / "g.pgn"), "--anchor", "random=0",
          "--card", "default", "--quiet"])
    out = capsys.readouterr().out
    assert out.count("Maximum-likelihood Elo") == 1
    assert "Maximum-likelihood Elo (anchored: random=0)" in out
    listed = re.search(r"transcend-uci-T0\.01\s+(-?[\d.]+)\s+\[\s*(-?[\d.]+),\s*(-?[\d.]+)\]", out)
    assert listed is not None
    reading_text = " ".join(out.split("Reading:", 1)[1].split())
    said = re.match(r"default.onnx at T = 0.01 rates (-?\d+) \((-?\d+) to (-?\d+)\)",
                    reading_text)
    assert said is not None
    # The list shows one decimal, the reading whole points: equal up to that rounding.
    for read, shown in zip(said.groups(), listed.groups(), strict=True):
        assert abs(int(read) - float(shown)) <= 0.55
    assert out.rstrip().splitlines()[-1].endswith("plays the paper's checkpoints.")


@pytest.mark.parametrize("args, message", [
    (["--anchor", "nobody=0"], "--anchor nobody: not a player here"),
    (["--card", "missing.card.json"], "not a model card's figures"),
])
def test_anchor_and_card_are_checked_before_any_game(
        args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["tournament", "--engine", "random", "--opponent", "random", *args])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1

