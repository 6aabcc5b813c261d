"""Score: honest 95% intervals, failures counted as zeros."""

from __future__ import annotations

import math

import pytest

from otel_lightning.algorithms import Score
from otel_lightning.algorithms.score import t_quantile_975, wilson_interval
from otel_lightning.exceptions import ValidationError


def test_binary_rewards_get_a_wilson_interval() -> None:
    score = Score.from_rewards([1, 0, 1, 0, 1, 0, 1, 0, 1, 0])
    assert score.mean == 0.5 and score.n == 10 and score.failures == 0
    assert score.ci_low == pytest.approx(0.2366, abs=1e-4)
    assert score.ci_high == pytest.approx(0.7634, abs=1e-4)
    # The extremes stay inside [0, 1] and are exact at the observed end.
    assert Score.from_rewards([1.0] * 12).ci_high == 1.0
    assert Score.from_rewards([1.0] * 12).ci_low == pytest.approx(0.7575, abs=1e-4)
    assert Score.from_rewards([0.0] * 5).ci_low == 0.0


def test_failures_count_as_zero_and_are_counted() -> None:
    score = Score.from_rewards([1.0, None, 1.0, None])
    assert (score.mean, score.n, score.failures) == (0.5, 4, 2)
    assert (score.ci_low, score.ci_high) == wilson_interval(0.5, 4)


def test_other_rewards_get_a_t_interval() -> None:
    score = Score.from_rewards([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.776445 * math.sqrt(2.5 / 5)
    assert score.mean == 3.0
    assert (score.ci_low, score.ci_high) == pytest.approx((3.0 - half, 3.0 + half))
    one = Score.from_rewards([0.5])
    assert (one.ci_low, one.ci_high) == (-math.inf, math.inf)  # one sample says nothing about spread


def test_t_quantiles() -> None:
    assert t_quantile_975(1) == pytest.approx(12.7062, abs=1e-4)
    for df, exact in ((31, 2.039513), (40, 2.021075), (60, 2.000298), (120, 1.979930)):
        assert t_quantile_975(df) == pytest.approx(exact, abs=2e-5)
    assert t_quantile_975(10**6) == pytest.approx(1.959966, abs=1e-5)


def test_json_round_trip_and_bad_input() -> None:
    for score in (Score.from_rewards([1, 0, None]), Score.from_rewards([0.25])):
        assert Score.from_json(score.to_json()) == score
    assert Score.from_rewards([0.25]).to_json()["ci_low"] is None
    with pytest.raises(ValidationError):
        Score.from_rewards([])
    with pytest.raises(ValidationError):
        Score.from_rewards([math.nan])
