"""Rating maths against known cases, and the `transcend ratings` command."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from transcend.evaluation.ratings import (
    Outcome,
    Rating,
    bradley_terry,
    format_table,
    glicko2_update,
    parse_anchor,
    read_outcomes,
    sequential_glicko,
    spec_anchors,
)
from transcend.training.cli import main


def games(white: str, black: str, score: float, n: int) -> list[Outcome]:
    return [Outcome(white, black, score)] * n


def by_name(ratings: list) -> dict:
    return {r.name: r for r in ratings}


def test_glicko2_matches_glickmans_worked_example() -> None:
    # Glickman, "Example of the Glicko-2 system" (2013): 1500/200/0.06 against three players.
    rating, rd, vol = glicko2_update(1500, 200, 0.06,
                                     [(1400, 30, 1), (1550, 100, 0), (1700, 300, 0)], tau=0.5)
    assert rating == pytest.approx(1464.06, abs=0.01)
    assert rd == pytest.approx(151.52, abs=0.01)
    assert vol == pytest.approx(0.05999, abs=1e-5)


def test_glicko2_idle_period_only_widens_rd() -> None:
    rating, rd, vol = glicko2_update(1500, 200, 0.06, [])
    assert rating == 1500 and vol == 0.06
    assert rd == pytest.approx(math.hypot(200 / 173.7178, 0.06) * 173.7178)


def test_symmetric_results_give_equal_ratings() -> None:
    outcomes = (games("a", "b", 1, 3) + games("b", "a", 1, 3) + games("b", "c", 0.5, 4)
                + games("c", "a", 0.5, 4))
    ratings = by_name(bradley_terry(outcomes))
    for name in "abc":
        assert ratings[name].elo == pytest.approx(0.0, abs=1e-6)
    assert ratings["a"].hi95 - ratings["a"].lo95 > 0


def test_bradley_terry_recovers_the_elo_difference_of_a_score() -> None:
    # 75% over many games is 400 log10(3) = 190.8 Elo; one virtual draw barely moves it.
    outcomes = games("strong", "weak", 1, 300) + games("strong", "weak", 0, 100)
    ratings = by_name(bradley_terry(outcomes, {"weak": 1000}))
    assert ratings["weak"].elo == 1000 and ratings["weak"].anchored
    assert ratings["strong"].elo == pytest.approx(1000 + 400 * math.log10(3), abs=1.0)
    # The interval matches the binomial standard error on the Elo scale.
    p, n = 0.75, 401
    se = 400 / math.log(10) / (p * (1 - p)) * math.sqrt(p * (1 - p) / n)
    assert ratings["strong"].hi95 - ratings["strong"].elo == pytest.approx(1.96 * se, rel=0.02)


def test_bradley_terry_is_order_independent_and_finite_for_perfect_scores() -> None:
    rng = random.Random(1)
    outcomes = (games("a", "b", 1, 10) + games("b", "c", 1, 6) + games("c", "b", 0.5, 4)
                + games("d", "c", 0, 5))
    shuffled = outcomes[:]
    rng.shuffle(shuffled)
    first, second = by_name(bradley_terry(outcomes)), by_name(bradley_terry(shuffled))
    for name in "abcd":
        assert first[name].elo == pytest.approx(second[name].elo, abs=1e-6)
        assert math.isfinite(first[name].elo) and math.isfinite(first[name].lo95)
    assert first["a"].elo > first["b"].elo > first["c"].elo > first["d"].elo
    assert sum(r.elo for r in first.values()) == pytest.approx(0.0, abs=1e-6)
    # 10/10 plus one virtual draw is a 10.5/11 score.
    assert first["a"].elo - first["b"].elo == pytest.approx(400 * math.log10(10.5 / 0.5), abs=1)
    with pytest.raises(ValueError, match="no finite maximum"):
        bradley_terry(outcomes, prior_draws=0)


def test_bradley_terry_needs_connected_players_or_anchors() -> None:
    outcomes = games("a", "b", 1, 2) + games("c", "d", 1, 2)
    with pytest.raises(ValueError, match="not comparable"):
        bradley_terry(outcomes)
    ratings = by_name(bradley_terry(outcomes, {"b": 1000, "d": 2000}))
    assert ratings["a"].elo - 1000 == pytest.approx(ratings["c"].elo - 2000, abs=1e-6)
    with pytest.raises(ValueError, match="not a player"):
        bradley_terry(outcomes, {"zz": 1000})


def test_a_rating_a_hair_below_zero_prints_as_zero() -> None:
    table = format_table([Rating("m", -1e-12, -257.4, 257.4, 18, 3.0, 6)], "list")
    assert "    0.0  [ -257.4,  257.4]" in table and "-0.0" not in table


def test_sequential_glicko_depends_on_order_and_keeps_anchors_fixed() -> None:
    anchors = {"sf1": 1552.0}
    wins_first = games("m", "sf1", 1, 5) + games("m", "sf1", 0, 5)
    losses_first = games("m", "sf1", 0, 5) + games("m", "sf1", 1, 5)
    a = by_name(sequential_glicko(wins_first, anchors))
    b = by_name(sequential_glicko(losses_first, anchors))
    assert a["sf1"].elo == b["sf1"].elo == 1552.0 and a["sf1"].lo95 == 1552.0
    assert a["m"].elo != pytest.approx(b["m"].elo, abs=1)
    # The first game from the 1500 / 500 prior against a fixed 1552 anchor.
    first = by_name(sequential_glicko(games("m", "sf1", 1, 1), anchors))["m"]
    expected = glicko2_update(1500, 500, 0.06, [(1552, 0, 1)], 0.5)
    assert first.elo == pytest.approx(expected[0])
    assert first.hi95 - first.elo == pytest.approx(1.959964 * expected[1])


def test_paper_anchors_and_labels_from_specs() -> None:
    outcomes = [Outcome("m", "s1", 1, "transcend-uci", "sf:skill=1,time=0.1"),
                Outcome("s3", "m", 1, "sf:skill=3,time=0.1", ""),
                Outcome("n5", "m", 1, "sf:skill=5,nodes=60", ""),
                Outcome("e", "m", 1, "sf:skill=5,time=0.1,eps=0.3,elo=900", "")]
    assert spec_anchors(outcomes) == {"s1": 1552.0, "s3": 1842.0}
    assert spec_anchors(outcomes, labels=True) == {"e": 900.0}
    assert parse_anchor("sf-skill1-t0.1=1552") == ("sf-skill1-t0.1", 1552.0)
    with pytest.raises(ValueError, match="NAME=ELO"):
        parse_anchor("1552")


def write_pgn(path: Path, rows: list[tuple[str, str, str]], spec: str = "") -> None:
    text = []
    for i, (white, black, result) in enumerate(rows, 1):
        text.append(f'[Event "t"]\n[Round "{i}"]\n[White "{white}"]\n[Black "{black}"]\n'
                    f'[Result "{result}"]\n[BlackSpec "{spec}"]\n\n1. e4 e5 {result}\n')
    path.write_text("\n".join(text))


def test_read_outcomes_skips_unfinished_games(tmp_path: Path) -> None:
    pgn = tmp_path / "a.pgn"
    write_pgn(pgn, [("a", "b", "1-0"), ("a", "b", "*"), ("b", "a", "1/2-1/2")])
    assert [o.score for o in read_outcomes([pgn])] == [1.0, 0.5]


def test_ratings_command_merges_files_and_prints_json(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    one, two = tmp_path / "one.pgn", tmp_path / "two.pgn"
    write_pgn(one, [("m", "sf-skill1-t0.1", "1-0")] * 3, spec="sf:skill=1,time=0.1")
    write_pgn(two, [("m", "sf-skill1-t0.1", "0-1")] * 3, spec="sf:skill=1,time=0.1")
    main(["ratings", str(one), str(two), "--json", "--method", "both"])
    payload = json.loads(capsys.readouterr().out)
    assert payload["games"] == 6
    assert payload["anchors"] == {"sf-skill1-t0.1": 1552.0}  # the paper's anchor by default
    bt = {r["name"]: r for r in payload["bt"]}
    assert bt["m"]["elo"] == pytest.approx(1552.0, abs=1e-6)
    assert bt["m"]["lo95"] < 1552.0 < bt["m"]["hi95"]
    assert {r["name"] for r in payload["glicko"]} == {"m", "sf-skill1-t0.1"}
    main(["ratings", str(one), str(two), "--anchor", "m=1000"])
    out = capsys.readouterr().out
    assert "anchors: m=1000" in out and "sf-skill1-t0.1" in out and "95% interval" in out


@pytest.mark.parametrize("args, message", [
    (["--anchor", "1552"], "NAME=ELO"),
    (["--anchor", "nobody=1500"], "not a player"),
])
def test_ratings_command_errors_are_one_line(tmp_path: Path, args: list[str], message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    pgn = tmp_path / "a.pgn"
    write_pgn(pgn, [("a", "b", "1-0")])
    with pytest.raises(SystemExit):
        main(["ratings", str(pgn), *args])
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    empty = tmp_path / "empty.pgn"
    empty.write_text("")
    with pytest.raises(SystemExit):
        main(["ratings", str(empty)])
    assert "no finished games" in capsys.readouterr().err
