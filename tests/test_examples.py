"""The runnable examples run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO, child_env

pytestmark = pytest.mark.slow


def test_span_tree_algorithm_example() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "examples.span_tree_algorithm"],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "0% of LLM calls truncated" in result.stdout
    assert "final version 3: max_tokens=64" in result.stdout
