"""The instrumentation and tool-agent examples run as programs, offline and against a given endpoint."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest

from otel_lightning.testing import ScriptedLLM
from tests.conftest import REPO, child_env

pytestmark = pytest.mark.slow


def run_example(module: str, *args: str) -> str:
    env = child_env()
    for name in ("OPENAI_BASE_URL", "OPENAI_MODEL", "OPENAI_API_KEY"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_instrument_existing_agent_offline() -> None:
    out = run_example("examples.instrument_existing_agent")
    assert "3/3 answered correctly" in out
    # Every rollout's tree: the worker's root span with the instrumented openai call under it.
    assert out.count("otel_lightning.rollout") == 3
    assert len(re.findall(r"└─ openai\.chat .*model=scripted-model", out)) == 3
    assert "'What is the capital of Japan?' -> 'Tokyo'" in out


def test_instrument_existing_agent_uses_the_given_endpoint() -> None:
    def always_paris(request: dict[str, Any]) -> str:
        return "Paris"

    with ScriptedLLM(always_paris, model="given-model") as llm:
        out = run_example(
            "examples.instrument_existing_agent", "--base-url", llm.base_url, "--model", "given-model"
        )
        requests = list(llm.requests)
    assert "1/3 answered correctly" in out
    assert len(requests) == 3
    assert {r["model"] for r in requests} == {"given-model"}
    assert out.count("model=given-model") == 3


def test_tool_agent_trajectory_has_tool_steps() -> None:
    out = run_example("examples.tool_agent")
    assert out.count("succeeded, reward 1.0") == 2
    assert out.count("step 0: model asks get_weather") == 2
    assert 'step 1: model asks celsius_to_fahrenheit({"celsius": 18.0})' in out
    assert 'execute_tool celsius_to_fahrenheit [call-1] {"celsius": 4.0} -> {"fahrenheit": 39.2}' in out
    assert "step 2: model answers 'It is 64.4 F and sunny in Paris.'" in out
    # The tool spans sit between the LLM calls under the rollout's root span.
    assert out.count("├─ execute_tool get_weather") == 2
