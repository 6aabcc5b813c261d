"""The per-item Pareto front and parent sampling (pure functions)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from otel_lightning.algorithms.pareto import pareto_front, sample_parent
from otel_lightning.exceptions import ValidationError


def test_specialists_survive_and_dominated_candidates_do_not() -> None:
    scores = {
        "seed": [0, 0, 1, 0],
        "a": [1, 0, 1, 0],  # best on item 0 (and ties on 2)
        "b": [0, 1, 1, 0],  # best on item 1: a specialist with the same mean as a
        "c": [0, 0, 1, 0],  # equal to seed, dominated by a
        "avg": [0.6, 0.6, 0.6, 0.6],  # the best mean after a and b, best on item 3 only
    }
    front = pareto_front(scores)
    assert front == {"a": 2, "b": 2, "avg": 1}


def test_equal_candidates_count_once() -> None:
    assert pareto_front({"x": [1.0, 0.0], "y": [1.0, 0.0]}) == {"x": 2}
    assert pareto_front({"x": [0.0, 0.0]}) == {"x": 2}
    assert pareto_front({}) == {}


def test_scores_must_cover_the_same_items() -> None:
    with pytest.raises(ValidationError):
        pareto_front({"x": [1.0], "y": [1.0, 0.0]})


def test_parents_are_drawn_by_the_items_they_win() -> None:
    rng = random.Random(1)
    counts = Counter(sample_parent({"a": 3, "b": 1}, rng) for _ in range(4000))
    assert 0.72 < counts["a"] / 4000 < 0.78
    with pytest.raises(ValidationError):
        sample_parent({}, rng)
