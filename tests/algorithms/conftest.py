"""Fixtures of the algorithm tests.

``algo_env``: one server, one scripted task LLM and one Worker thread for the whole session. ``instrument()``
is process-global and binds to the first server it is given, so the session has one server and each test
works in its own experiment (``algo_env.connect("name")``).

``process_loop``: a real ``otel-lightning serve`` process and a worker process, for tests that kill things.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from otel_lightning import Worker, connect, instrument, serve
from otel_lightning.client.lightning import Lightning
from otel_lightning.resources import LLMEndpoint, PromptTemplate, Resource, SamplingParams
from otel_lightning.testing import ScriptedLLM
from tests.algorithms.algo_agent import DEFAULT_TEMPLATE, agent, task_handler
from tests.conftest import REPO, ServerProcess, child_env, free_port


def seed_resources(llm: ScriptedLLM) -> dict[str, Resource]:
    """The default prompt, the scripted LLM, temperature 0."""
    return {
        "prompt": PromptTemplate(DEFAULT_TEMPLATE),
        "llm": LLMEndpoint(base_url=llm.base_url, model="scripted"),
        "sampling": SamplingParams(temperature=0.0),
    }


@dataclass
class AlgoEnv:
    server: Lightning
    llm: ScriptedLLM

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def endpoint(self) -> LLMEndpoint:
        return LLMEndpoint(base_url=self.llm.base_url, model="scripted")

    def connect(self, experiment: str) -> Lightning:
        return connect(self.url, experiment=experiment)

    def seeded(self, experiment: str, **resources: Resource) -> Lightning:
        """A handle on a new experiment whose version 1 is :func:`seed_resources` updated by ``resources``."""
        lightning = self.connect(experiment)
        lightning.publish({**seed_resources(self.llm), **resources}, expected_version=0)
        return lightning


@pytest.fixture(scope="session")
def algo_env() -> Iterator[AlgoEnv]:
    with ScriptedLLM(task_handler) as llm, serve() as server:
        instrumentation = instrument(server.url)
        if instrumentation.settings.server_url != server.url:
            # An earlier test in this process bound instrument() to its own (now gone) server.
            instrumentation.shutdown()
            instrumentation = instrument(server.url)
        worker = Worker(agent, server.url, concurrency=8, claim_wait_s=0.5, instrumentation=instrumentation)
        thread = threading.Thread(target=worker.run, name="algo-worker", daemon=True)
        thread.start()
        try:
            yield AlgoEnv(server, llm)
        finally:
            worker.stop()
            thread.join(30)
            # Unbind instrument() from this server, so later tests in the process can bind their own.
            instrumentation.shutdown()


@dataclass
class ProcessLoop:
    server: ServerProcess
    llm: ScriptedLLM

    def seed(self, lightning: Lightning) -> None:
        lightning.publish(seed_resources(self.llm), expected_version=0)


@pytest.fixture
def process_loop(tmp_path: Path) -> Iterator[ProcessLoop]:
    server = ServerProcess(db=tmp_path / "server.db", port=free_port()).start()
    worker = subprocess.Popen(
        [sys.executable, "-m", "otel_lightning.cli", "--log-level", "WARNING", "worker",
         "tests.algorithms.algo_agent:agent", "--server", server.url, "--concurrency", "8",
         "--claim-wait-s", "0.5"],
        cwd=REPO, env=child_env(),
    )  # fmt: skip
    try:
        with ScriptedLLM(task_handler) as llm:
            yield ProcessLoop(server, llm)
    finally:
        worker.terminate()
        worker.wait(30)
        server.stop()
