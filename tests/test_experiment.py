"""`transcend experiment --preset tiny`: every stage end to end, then a resume that skips them."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_tiny_experiment_end_to_end_and_resume(tmp_path: Path, stockfish: str) -> None:
    out = tmp_path / "exp"
    cmd = [str(BIN / "transcend"), "experiment", "--preset", "tiny", "--out", str(out)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    for stage in ("experts", "data", "train", "export", "sweep", "advantage", "report"):
        assert f"] {stage}:" in first.stderr
    report = (out / "report.md").read_text()
    assert "Rating against temperature" in report and "| temperature |" in report
    assert "Advantage" in report and "| token | 0.01 |" in report
    with open(out / "sweep" / "ratings.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(float(r["temperature"]) for r in rows) == [0.01, 1.0]
    assert all(int(r["games"]) == 6 for r in rows)  # random and the 2 experts, 2 games each
    # The opponents' round robin: one game for each of the 3 pairs.
    assert (out / "sweep" / "opponents.pgn").read_text().count("[Event ") == 3
    assert "Best expert of the training data" in report
    with open(out / "advantage" / "advantage.csv") as fh:
        adv = list(csv.DictReader(fh))
    assert {float(r["temperature"]) for r in adv} == {0.01, 1.0}
    for name in ("model.onnx", "sweep/rating_vs_temperature.png", "advantage/advantage.png",
                 "run/curves.png"):
        assert (out / name).stat().st_size > 0, name

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    for stage in ("experts", "data", "train", "export", "sweep", "advantage"):
        line = next(x for x in again.stderr.splitlines() if f"] {stage}:" in x)
        assert "skipped" in line, line


def test_paper_preset_needs_pgn(tmp_path: Path) -> None:
    result = subprocess.run([str(BIN / "transcend"), "experiment", "--preset", "paper", "--out",
                             str(tmp_path / "p")], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "--pgn" in result.stderr
    assert "Traceback" not in result.stderr
