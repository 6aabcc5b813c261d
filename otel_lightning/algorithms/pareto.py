"""The per-item Pareto front of GEPA-style search (pure functions).

A candidate is on the front if it scores best (ties included) on at least one validation item and no other
front candidate dominates it (at least as good on every item, better on one). Keeping specialists, not
just the best average, preserves the different things candidates got right, for later mutations to combine.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from otel_lightning.exceptions import ValidationError


def pareto_front(scores: Mapping[str, Sequence[float]]) -> dict[str, int]:
    """Front candidate -> on how many items it is best, in the input's order.

    Args:
        scores: candidate -> its reward on each item (every candidate on the same items, in the same order).
    """
    if not scores:
        return {}
    lengths = {len(v) for v in scores.values()}
    if len(lengths) != 1:
        raise ValidationError("every candidate must be scored on the same items")
    n = lengths.pop()
    wins = dict.fromkeys(scores, 0)
    for i in range(n):
        best = max(v[i] for v in scores.values())
        for candidate, values in scores.items():
            if values[i] == best:
                wins[candidate] += 1
    front = [c for c, w in wins.items() if w > 0]
    kept = [c for c in front if not any(_dominates(scores[d], scores[c]) for d in front if d != c)]
    # Equal score vectors do not dominate each other; keep the earliest of each so duplicates add no weight.
    unique: dict[tuple[float, ...], str] = {}
    for candidate in kept:
        unique.setdefault(tuple(scores[candidate]), candidate)
    return {c: wins[c] for c in kept if unique[tuple(scores[c])] == c}


def sample_parent(front: Mapping[str, int], rng: random.Random) -> str:
    """A parent drawn from the front, weighted by the number of items each candidate is best on."""
    if not front:
        raise ValidationError("the Pareto front is empty")
    candidates = list(front)
    return rng.choices(candidates, weights=[front[c] for c in candidates])[0]


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(x > y for x, y in zip(a, b, strict=True))
