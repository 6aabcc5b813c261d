"""Scores of evaluations: a mean reward with an honest 95% confidence interval.

Every rollout counts. A rollout that failed, timed out, was cancelled or ended without a reward is scored 0
and counted in :attr:`Score.failures`; it is never dropped, since dropping failures would reward a candidate
for breaking the agent on hard items.

The interval is Wilson's score interval when every reward is 0 or 1 (exact enough at small n and never
outside [0, 1]), and Student's t interval otherwise. With one non-binary reward the interval is unbounded
(``-inf``, ``inf``): one sample says nothing about spread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from otel_lightning.exceptions import ValidationError
from otel_lightning.resources import JSON

Z_95 = 1.959963984540054
"""The standard normal's 97.5% quantile."""

# Student's t 97.5% quantiles for 1..30 degrees of freedom.
_T_975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
    2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
    2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272,
)  # fmt: skip


def t_quantile_975(df: int) -> float:
    """Student's t 97.5% quantile: a table up to 30 degrees of freedom, Cornish-Fisher beyond (< 1e-5 off)."""
    if df < 1:
        raise ValidationError("degrees of freedom must be at least 1")
    if df <= len(_T_975):
        return _T_975[df - 1]
    z = Z_95
    # Abramowitz & Stegun 26.7.5.
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


@dataclass(frozen=True, slots=True)
class Score:
    """Mean reward over n rollouts with a 95% confidence interval."""

    mean: float
    """Mean reward; failed rollouts count as 0."""
    ci_low: float
    """Lower end of the 95% interval of the mean."""
    ci_high: float
    """Upper end of the 95% interval of the mean."""
    n: int
    """Rollouts scored, failures included."""
    failures: int
    """Rollouts that failed, timed out, were cancelled, or ended without a reward (each scored 0)."""

    @classmethod
    def from_rewards(cls, rewards: Sequence[float | None]) -> Score:
        """Score rewards, one per rollout; ``None`` marks a failed rollout (scored 0, counted in failures)."""
        if not rewards:
            raise ValidationError("cannot score an empty evaluation")
        values = [0.0 if r is None else float(r) for r in rewards]
        if not all(math.isfinite(v) for v in values):
            raise ValidationError("rewards must be finite numbers")
        failures = sum(1 for r in rewards if r is None)
        n = len(values)
        mean = math.fsum(values) / n
        if all(v in (0.0, 1.0) for v in values):
            low, high = wilson_interval(mean, n)
        elif n == 1:
            low, high = -math.inf, math.inf
        else:
            variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
            half = t_quantile_975(n - 1) * math.sqrt(variance / n)
            low, high = mean - half, mean + half
        return cls(mean=mean, ci_low=low, ci_high=high, n=n, failures=failures)

    def to_json(self) -> dict[str, JSON]:
        """JSON form; an unbounded end of the interval is ``null``."""
        return {
            "mean": self.mean,
            "ci_low": self.ci_low if math.isfinite(self.ci_low) else None,
            "ci_high": self.ci_high if math.isfinite(self.ci_high) else None,
            "n": self.n,
            "failures": self.failures,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Score:
        low, high = data.get("ci_low"), data.get("ci_high")
        return cls(
            mean=float(data["mean"]),
            ci_low=-math.inf if low is None else float(low),
            ci_high=math.inf if high is None else float(high),
            n=int(data["n"]),
            failures=int(data["failures"]),
        )

    def __str__(self) -> str:
        return (
            f"{self.mean:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}] (n={self.n}, failures={self.failures})"
        )


def wilson_interval(p: float, n: int) -> tuple[float, float]:
    """Wilson's 95% score interval for a proportion ``p`` observed over ``n`` trials."""
    z2 = Z_95 * Z_95
    denominator = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denominator
    half = Z_95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    # At p = 0 or 1 one end is exactly 0 or 1; say so rather than leave a rounding error.
    low = 0.0 if p <= 0.0 else max(0.0, center - half)
    high = 1.0 if p >= 1.0 else min(1.0, center + half)
    return low, high
