"""An agent whose tool runs in another instrumented process: one rollout, both processes' spans in a tree."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from otel_lightning import connect, semconv
from otel_lightning.resources import LLMEndpoint
from otel_lightning.testing import ScriptedLLM
from tests.conftest import REPO, ServerProcess, child_env, free_port

pytestmark = pytest.mark.slow


def handler(request: dict[str, Any]) -> str:
    content = request["messages"][-1]["content"]
    if content.startswith("Which order"):
        return "A-1" if "first" in content else "B-2"
    status = content.split(" is ")[1].removesuffix(". Tell the customer.")
    return f"Your order is {status}."


def wait_port(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.post(f"{url}/lookup", json={"order": "none"}, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("tool service did not start")


def test_tool_service_spans_join_the_rollout(server_process: ServerProcess) -> None:
    tool_port = free_port()
    tool_url = f"http://127.0.0.1:{tool_port}"
    tool = subprocess.Popen(
        [sys.executable, "-m", "tests.agents.tool_service", str(tool_port), server_process.url],
        cwd=REPO,
        env=child_env(),
    )
    worker = None
    try:
        wait_port(tool_url)
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "otel_lightning.cli",
                "--log-level",
                "WARNING",
                "worker",
                "tests.agents.tool_agent:agent",
                "--server",
                server_process.url,
                "--concurrency",
                "2",
                "--claim-wait-s",
                "1",
            ],
            cwd=REPO,
            env=child_env(TOOL_URL=tool_url),
        )
        with ScriptedLLM(handler) as llm, connect(server_process.url) as lightning:
            lightning.publish({"llm": LLMEndpoint(llm.base_url, "scripted")})
            rollouts = lightning.run([{"text": "the first order"}, {"text": "the second one"}], timeout_s=60)
            assert [r.reward for r in rollouts] == [1.0, 1.0]
            for rollout in rollouts:
                # The tool service exports on its own schedule: wait until its spans are in.
                deadline = time.monotonic() + 20
                while True:
                    tree = lightning.span_tree(rollout.rollout_id)
                    tool_spans = [n for n in tree if n.span.resource.get("service.name") == "tool-service"]
                    if len(tool_spans) == 2 or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                assert len(tree.roots) == 1, tree.render()
                root = tree.roots[0].span
                assert root.name == semconv.ROLLOUT_SPAN
                tool_span = tree.find_first(lambda n: n.span.name == "execute_tool lookup_order")
                assert tool_span is not None, tree.render()
                assert tool_span.span.resource["service.name"] == "tool-service"
                assert tool_span.span.rollout_id == rollout.rollout_id
                assert tool_span.span.attempt_id == rollout.attempt_id
                assert tool_span.span.trace_id == root.trace_id
                assert [c.span.name for c in tool_span.children] == ["database query"]
                assert len(tree.llm_calls()) == 2
                trajectory = lightning.trajectory(rollout.rollout_id)
                assert [t.name for step in trajectory.steps for t in step.tool_calls] == ["lookup_order"]
    finally:
        for proc in (worker, tool):
            if proc is not None:
                proc.terminate()
                proc.wait(20)
