"""The frontier study's pieces: snapshot names, the trend fit, and the quick preset's plan."""

from __future__ import annotations

import math

import pytest

from transcend.training.frontier import PRESETS, fit_trend, tokens_label


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
    for preset in PRESETS.values():
        arms = {arm.name for arm in preset.arms}
        for run in preset.runs:
            assert run.arm in arms
            assert max(run.keep) <= preset.schedule_tokens
            ratios = [b / a for a, b in zip(run.keep, run.keep[1:], strict=False)]
            assert all(r >= 1.9 for r in ratios) and not any(math.isnan(r) for r in ratios)
        # One size has five snapshots, another at least two, and one more arm at least two.
        counts = sorted(len(run.keep) for run in preset.runs)
        assert counts[-1] >= 5 and len(preset.runs) >= 3 and len(arms) >= 2
