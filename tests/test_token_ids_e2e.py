"""Token ids and logprobs the model server returns come back exactly on the trajectory's steps and in the
Parquet export, through a real worker process (`--capture-token-ids`) and a real server process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from otel_lightning import connect
from otel_lightning.client.export import export_rollouts
from otel_lightning.resources import LLMEndpoint
from otel_lightning.testing import ScriptedLLM
from tests.agents.token_agent import reply_for
from tests.conftest import REPO, ServerProcess, child_env

pytestmark = pytest.mark.slow


def test_token_ids_reach_the_trajectory(server_process: ServerProcess, tmp_path: Path) -> None:
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "otel_lightning.cli",
            "--log-level",
            "WARNING",
            "worker",
            "tests.agents.token_agent:agent",
            "--server",
            server_process.url,
            "--concurrency",
            "2",
            "--claim-wait-s",
            "1",
            "--capture-token-ids",
        ],
        cwd=REPO,
        env=child_env(),
    )
    try:
        with (
            ScriptedLLM(lambda request: reply_for(request["messages"][-1]["content"])) as llm,
            connect(server_process.url) as lightning,
        ):
            lightning.publish({"llm": LLMEndpoint(llm.base_url, "scripted")})
            texts = ["short", "a longer prompt", "the longest prompt of the three"]
            rollouts = lightning.run([{"text": t} for t in texts], timeout_s=60)
            for text, rollout in zip(texts, rollouts, strict=True):
                expected = reply_for(text)
                call = lightning.trajectory(rollout.rollout_id).steps[0].llm_call
                assert call.prompt_token_ids == expected.prompt_token_ids
                assert call.completion_token_ids == expected.completion_token_ids
                assert call.completion_logprobs == expected.logprobs
            out = tmp_path / "steps.parquet"
            assert export_rollouts(lightning, out, "parquet") == 3
            rows = {r["prompt"][0]["content"]: r for r in pq.read_table(out).to_pylist()}
            for text in texts:
                expected = reply_for(text)
                assert rows[text]["prompt_token_ids"] == list(expected.prompt_token_ids)
                assert rows[text]["response_token_ids"] == list(expected.completion_token_ids or ())
                assert rows[text]["response_logprobs"] == list(expected.logprobs or ())
    finally:
        worker.terminate()
        worker.wait(20)
