"""The frontier study's pieces: snapshot names, the trend fit, and the quick preset's plan."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from cli_helpers import cli

from transcend.engine.model_file import default_model_path, read_metadata
from transcend.training.studies.frontier.stages import PRESETS
from transcend.training.studies.frontier.study import (
    Arm,
    FrontierPreset,
    Run,
    fit_trend,
    tokens_label,
)

DEFAULT_MODEL = default_model_path()


def test_tokens_label() -> None:
    assert [tokens_label(t) for t in (500_000, 1_000_000, 8_000_000, 25_000, 1234)] == [
        "500k", "1M", "8M", "25k", "1234"]


def test_fit_trend_finds_where_a_rising_gain_reaches_zero() -> None:
    tokens = [1e5, 1e6, 1e7, 1e8]
    gains = [-0.04, -0.03, -0.02, -0.01]  # +0.01 a decade: zero at 10^9 tokens
    fit = fit_trend(tokens, gains, [g - 0.002 for g in gains], [g + 0.002 for g in gains])
    assert fit["slope_per_decade"] == pytest.approx(0.01, rel=1e-6)
    assert fit["crossing_log10_tokens"] == pytest.approx(9.0, abs=1e-6)
    low, high = fit["crossing_log10_tokens_ci"]
    assert low < 9.0 < high and high - low < 1.0
    assert fit["never_crosses_share"] == 0.0


def test_fit_trend_says_when_the_gain_does_not_rise() -> None:
    tokens = [1e5, 1e6, 1e7]
    gains = [-0.01, -0.02, -0.03]
    fit = fit_trend(tokens, gains, [g - 0.05 for g in gains], [g + 0.05 for g in gains])
    assert fit["crossing_log10_tokens"] is None
    assert 0.5 < fit["never_crosses_share"] < 1.0  # wide errors: some draws still rise
    with pytest.raises(ValueError):
        fit_trend([1e6, 1e6], [0.0, 0.0], [-1, -1], [1, 1])


def test_presets_share_one_schedule_and_keep_log_spaced_snapshots() -> None:
    for name, preset in PRESETS.items():
        arms = {arm.name for arm in preset.arms}
        for run in preset.runs:
            assert run.arm in arms
            # Snapshots past the schedule continue at the minimum rate, as a resumed run does.
            assert max(run.keep) <= preset.schedule_tokens * (2 if name == "board-input" else 1)
            ratios = [b / a for a, b in zip(run.keep, run.keep[1:], strict=False)]
            assert all(r >= 1.9 for r in ratios) and not any(math.isnan(r) for r in ratios)
        if name == "board-input":
            # The same run reading the transcript, the board, and the board with attacks.
            assert [run.board_input for run in preset.runs] == ["", "board", "board+attacks"]
            assert len({(run.arm, run.config, tuple(run.keep)) for run in preset.runs}) == 1
            assert preset.games_per_snapshot and preset.arms[0].games >= 100_000
            assert (len(preset.match_opponents) + 4) * preset.match_games >= 210
            continue
        if name == "board":
            # The same run with and without the board loss, snapshot for snapshot.
            plain, board = preset.runs
            assert plain.keep == board.keep and len(plain.keep) >= 3
            assert (plain.arm, plain.config) == (board.arm, board.config)
            assert plain.board_loss == 0 < board.board_loss and preset.games_per_run
            continue
        # One size has four or more snapshots, another at least two, and one more arm too.
        counts = sorted(len(run.keep) for run in preset.runs)
        assert counts[-1] >= 4 and counts[0] >= 2 and len(preset.runs) >= 3 and len(arms) >= 2


def _smallest_preset() -> FrontierPreset:
    """The quick preset cut down to seconds: two arms, three runs, a handful of positions."""
    experts = [f"sf:skill={k},nodes=20,eps=0.4,elo=1000" for k in (0, 1)]
    return replace(
        PRESETS["quick"],
        arms=[Arm("a", experts, 40), Arm("b", [e.replace("eps=0.4", "eps=0.2") for e in experts],
                                            40)],
        runs=[Run("a-tiny", "a", "tiny", [4096, 8192]), Run("b-tiny", "b", "tiny", [4096]),
              Run("a-board", "a", "tiny", [8192], board_loss=1.0, board_at="all")],
        schedule_tokens=8192, heldout_games=12, per_bin=3, nodes=200, max_plies=60,
        match_games=1, match_opponent_games=1, max_moves=12,
        match_opponents=["random", "sf:skill=0,nodes=20,eps=0.8"], games_per_run=True)


@pytest.mark.slow
def test_frontier_end_to_end_then_resumes(tmp_path: Path, stockfish: str,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(PRESETS, "quick", _smallest_preset())
    out = tmp_path / "study"
    args = ["frontier", "--preset", "quick", "--out", str(out), "--threads", "1"]
    code, err = cli(args, capsys)
    assert code == 0, err[-3000:]
    for name in ("a-tiny-4096", "a-tiny-8192", "b-tiny-4096", "b-tiny-4096-on-a"):
        summary = json.loads((out / "eval" / name / "summary.json").read_text())
        assert summary["results"]["token"]["0.01"]["familiarity"] is not None
    # An arm's models share the positions its first snapshot drew from its held-out games; the
    # other arm's models are also scored on the first arm's positions.
    fens = {name: sorted(row["fen"] for row in csv.DictReader(
        (out / "eval" / name / "positions.csv").read_text().splitlines()))
        for name in ("a-tiny-4096", "a-tiny-8192", "b-tiny-4096", "b-tiny-4096-on-a")}
    assert fens["a-tiny-4096"] == fens["a-tiny-8192"] == fens["b-tiny-4096-on-a"]
    assert fens["a-tiny-4096"] != fens["b-tiny-4096"] and fens["b-tiny-4096"]
    assert "## Every model on a's positions" in (out / "report.md").read_text()
    report = (out / "report.md").read_text()
    for heading in ("## Data", "## Every snapshot", "## Gain by familiarity", "## Trend",
                    "## Games", "## Board supervision", "in one list"):
        assert heading in report
    assert "**tiny on a** (2 snapshots)" in report and "gain as played" in report
    assert (out / "frontier-compute.png").stat().st_size > 1000
    # Every run's best snapshot played; the opponents' round robin once; one joint list.
    played = sorted((out / "games").glob("*/games.pgn"))
    names = [p.parent.name for p in played]
    assert len(names) == 3 and names[0] == "a-board-8192" and names[2] == "b-tiny-4096"
    assert names[1].startswith("a-tiny-")
    assert all(p.read_text().count("[Event ") >= 2 for p in played)
    joint = (out / "games" / "joint.md").read_text()
    assert all(p.parent.name in joint for p in played) and "random" in joint
    # Each snapshot's board probe, the board-trained one marked in the report.
    for name in ("a-tiny-4096", "a-tiny-8192", "b-tiny-4096", "a-board-8192"):
        probe = json.loads((out / "eval" / name / "probe" / "probe.json").read_text())
        assert 0.0 < probe["layers"][probe["best_layer"]]["accuracy"] <= 1.0
    section = report.split("## Board supervision")[1].split("\n## ")[0]
    weights = {row.split(" | ")[1]: row.split(" | ")[2] for row in section.splitlines()
               if row.startswith("| ") and " | a-" in row}
    assert weights["a-tiny-8192"] == "0" and weights["a-board-8192"] == "1"

    code, err = cli(args, capsys)
    assert code == 0, err[-3000:]
    for stage in ("experts", "data", "train", "evaluate", "probe", "games"):
        lines = [x for x in err.splitlines() if f"] {stage}:" in x]
        assert lines and all("skipped" in x for x in lines), (stage, lines)


@pytest.mark.slow
def test_board_input_study_rates_every_snapshot_against_training_time(
        tmp_path: Path, stockfish: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    experts = [f"sf:skill={k},nodes=20,eps=0.4,elo=1000" for k in (0, 1)]
    monkeypatch.setitem(PRESETS, "board-input", replace(
        PRESETS["board-input"], arms=[Arm("a", experts, 1000)],
        runs=[Run("plain", "a", "tiny", [4096, 8192]),
              Run("attacks", "a", "tiny", [4096, 8192], board_input="board+attacks")],
        schedule_tokens=4096, batch_size=4, warmup_steps=2, heldout_games=12, per_bin=3,
        nodes=200, max_plies=60, temps=[0.01], match_temps=[0.01], match_games=1,
        match_opponent_games=1, max_moves=12, match_opponents=["random"]))
    out = tmp_path / "study"
    code, err = cli(["frontier", "--preset", "board-input", "--games", "30", "--out", str(out),
                     "--threads", "1", "--extra", f"a={DEFAULT_MODEL}"], capsys)
    assert code == 0, err[-3000:]
    assert json.loads((out / "arms/a/data/manifest.json").read_text())["games"]["kept"] == 30
    meta = read_metadata(out / "models" / "attacks-8192.onnx")
    assert meta["board_input"] == "board+attacks"
    assert "board_input" not in read_metadata(out / "models" / "plain-8192.onnx")
    assert not list((out / "eval").glob("*/probe"))  # the board is an input: no probe
    # Every snapshot and the extra model played, and all are rated in one list.
    names = {row["name"] for row in json.loads((out / "games" / "joint.json").read_text())}
    assert {"plain-4096-T0.01", "plain-8192-T0.01", "attacks-4096-T0.01", "attacks-8192-T0.01",
            "default-T0.01", "random"} <= names
    report = (out / "report.md").read_text()
    assert "--games 30" in report
    # The two inputs are two kinds of training, with their own trend lines.
    assert "**tiny on a** (2 snapshots)" in report
    assert "**tiny on a, board input board+attacks** (2 snapshots)" in report
    section = report.split("## Rating against training time")[1]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| plain")
            or line.startswith("| attacks")]
    # Each run's two snapshots, in order of the characters they had read, each later one
    # having trained longer on its run's clock.
    for run in ("plain", "attacks"):
        mine = [(int(r[2].replace(",", "")), float(r[3])) for r in rows if r[0] == f"| {run}"]
        assert len(mine) == 2 and mine[0][0] < mine[1][0] and 0 < mine[0][1] < mine[1][1]
    assert "default-T0.01" in section.split("\n\n")[1]
    assert (out / "rating-time.png").stat().st_size > 1000


def test_bad_arguments_are_one_line_errors(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, err = cli(["frontier", "--out", str(tmp_path / "x"), "--runs", "nope"], capsys)
    assert code == 2 and "no run 'nope'" in err and "Traceback" not in err
    code, err = cli(["frontier", "--out", str(tmp_path / "x"), "--extra", "eps0.4"], capsys)
    assert code == 2 and "ARM=MODEL" in err
