"""examples/algorithm_remote.py runs an algorithm against a server process, and resumes by run name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from otel_lightning import connect
from tests.algorithms.algo_agent import mixed
from tests.algorithms.conftest import ProcessLoop
from tests.conftest import REPO, child_env

pytestmark = pytest.mark.slow


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_remote_example(process_loop: ProcessLoop, tmp_path: Path) -> None:
    lightning = connect(process_loop.server.url, experiment="remote")
    process_loop.seed(lightning)
    command = [
        sys.executable, "examples/algorithm_remote.py", "--server", process_loop.server.url,
        "--experiment", "remote", "--algorithm", "bootstrap_fewshot", "--run", "nightly",
        "--train", write_jsonl(tmp_path / "train.jsonl", mixed(6)),
        "--val", write_jsonl(tmp_path / "val.jsonl", mixed(6, start=40)),
    ]  # fmt: skip
    first = subprocess.run(command, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stdout + first.stderr
    latest = lightning.resources()
    assert f"published as version {latest.version}" in first.stdout
    assert latest.metadata["run"] == "nightly" and "[nightly] finished" in first.stdout
    assert '"template": "Examples:' in first.stdout
    # The same run name again: the recorded result, no new work.
    count = len(lightning.rollouts(limit=1000))
    again = subprocess.run(command, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and f"published as version {latest.version}" in again.stdout
    assert len(lightning.rollouts(limit=1000)) == count
