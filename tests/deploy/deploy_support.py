"""Helpers of the deployment tests: is rotel runnable here, and worker processes whose spans go to an agent
while their REST calls go to the server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deploy.rotel_agent import rotel_binary
from tests.conftest import REPO, child_env

AGENT = "tests.deploy.deploy_agents:slow_classify"
PROMPT = "Read carefully and classify the sentiment (positive or negative) of this text: {text}"
"""A prompt the scripted LLM answers correctly (tests/agents/classify.py): every reward is 1.0."""


def require_rotel() -> None:
    """Skip the calling test, saying why, unless rotel's binary runs on this machine."""
    try:
        binary = rotel_binary()
        done = subprocess.run([binary, "--version"], capture_output=True, timeout=10)
    except (ImportError, OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"rotel cannot run here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"the rotel binary does not run here: {done.stderr.decode(errors='replace')[-300:]}")


def start_workers(
    server_url: str, traces_endpoint: str, count: int, log_dir: Path, concurrency: int = 4
) -> list[subprocess.Popen[bytes]]:
    """``count`` worker processes whose spans go to ``traces_endpoint`` and REST calls to ``server_url``."""
    env = child_env(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=traces_endpoint)
    command = [sys.executable, "-m", "otel_lightning.cli", "--log-level", "ERROR", "worker", AGENT]
    command += ["--server", server_url, "--concurrency", str(concurrency), "--claim-wait-s", "2"]
    workers = []
    for i in range(count):
        with (log_dir / f"worker{i}.log").open("wb") as log:
            workers.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
    return workers


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> list[int | None]:
    """SIGTERM each worker (it finishes its running rollouts), then wait; their exit codes."""
    for proc in workers:
        if proc.poll() is None:
            proc.terminate()
    codes: list[int | None] = []
    for proc in workers:
        try:
            codes.append(proc.wait(30))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            codes.append(None)
    return codes
