"""The agent-lightning half of bench/bench_vs_agentlightning.py; runs inside the peer's virtual environment.

The parent starts the peer's store server (``agl store``, in-memory backend, one asyncio process) and runs
this script twice over: ``--role driver`` enqueues the rollouts through ``LightningStoreClient``, starts
``--role runners`` as a child process, waits until every rollout is finished, stops the runners (SIGINT, which
the peer's ``ClientServerExecutionStrategy`` turns into a cooperative stop), then reads the timings and span
counts back through the store API and writes them as JSON (``--out``).

``--role runners`` is the peer's documented client-server deployment for runners: ``Trainer(n_runners=C,
tracer=OtelTracer(), strategy=ClientServerExecutionStrategy(role="runner", ...)).fit(agent)``.
Each of the C runner processes executes one rollout at a time (``LitAgentRunner.iter``); the agent opens a
``rollout`` span and ``--spans-per-rollout`` - 1 ``step-i`` children (default 10 spans in all) with the
OpenTelemetry API, which the peer's ``OtelTracer`` exports to the store's ``/v1/traces`` endpoint (its
``LightningStoreOTLPExporter`` behind a ``SimpleSpanProcessor``). The agent returns None, so no reward span
is added: the same span count as the otel-lightning side, whose worker makes the rollout span and whose agent
the children (``--reward`` makes it return 1.0, adding the peer's reward span: one more).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import agentlightning as agl
from agentlightning.execution.client_server import ClientServerExecutionStrategy
from agentlightning.store.client_server import LightningStoreClient
from agentlightning.tracer.otel import OtelTracer
from agentlightning.types import EnqueueRolloutRequest, PromptTemplate
from opentelemetry import trace

DONE = ["succeeded", "failed", "cancelled"]


class NoopAgent(agl.LitAgent[Any]):
    """``spans`` spans (a ``rollout`` span and ``spans - 1`` children), no work; returns None or a reward."""

    def __init__(self, spans: int, reward: bool) -> None:
        super().__init__()
        self._children = spans - 1
        self._reward = reward

    async def rollout_async(self, task: Any, resources: Any, rollout: Any) -> float | None:
        tracer = trace.get_tracer("bench")
        with tracer.start_as_current_span("rollout"):
            for i in range(self._children):
                with tracer.start_as_current_span(f"step-{i}"):
                    pass
        return 1.0 if self._reward else None


def run_runners(args: argparse.Namespace) -> None:
    strategy = ClientServerExecutionStrategy(
        role="runner", server_host="127.0.0.1", server_port=args.port, n_runners=args.concurrency
    )
    trainer = agl.Trainer(n_runners=args.concurrency, tracer=OtelTracer(), strategy=strategy)
    trainer.fit(NoopAgent(args.spans_per_rollout, args.reward))


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    url = f"http://127.0.0.1:{args.port}"
    client = LightningStoreClient(url)
    try:
        await client.add_resources({"prompt": PromptTemplate(template="{x}", engine="f-string")})
        started = time.perf_counter()
        rollouts = await client.enqueue_many_rollouts(
            [EnqueueRolloutRequest(input={"i": i}) for i in range(args.rollouts)]
        )
        enqueue_s = time.perf_counter() - started
        ids = [r.rollout_id for r in rollouts]

        cmd = [sys.executable, __file__, "--role", "runners", "--port", str(args.port)]
        cmd += ["--concurrency", str(args.concurrency), "--spans-per-rollout", str(args.spans_per_rollout)]
        cmd += ["--reward"] if args.reward else []
        log = open(args.runner_log, "w")  # noqa: SIM115 - kept open for the child's lifetime
        launched = time.perf_counter()
        runners = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        done, deadline = 0, time.monotonic() + args.timeout_s
        while done < args.rollouts and time.monotonic() < deadline and runners.poll() is None:
            await asyncio.sleep(0.2)
            done = (await client.query_rollouts(status_in=DONE, limit=1)).total
        wall_s = time.perf_counter() - launched
        exit_code = runners.poll()
        if exit_code is None:  # the peer's strategy turns SIGINT into a cooperative stop of its runners
            os.killpg(runners.pid, signal.SIGINT)
            try:
                runners.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(runners.pid, signal.SIGKILL)
                runners.wait(10)
        log.close()

        page = await client.query_rollouts(rollout_id_in=ids, limit=-1)
        attempted = [r for r in page.items if getattr(r, "attempt", None) is not None]
        statuses: dict[str, int] = {}
        for r in page.items:
            statuses[r.status] = statuses.get(r.status, 0) + 1
        first_claim = min((r.attempt.start_time for r in attempted), default=None)
        ends = [r.end_time for r in page.items if r.end_time is not None]
        last_done = max(ends, default=None)
        stats = await client.statistics()
        per_rollout: dict[int, int] = {}
        for rid in ids:  # every rollout's spans, through the store API
            n = (await client.query_spans(rid, limit=-1)).total
            per_rollout[n] = per_rollout.get(n, 0) + 1
        workers = (await client.query_workers(limit=-1)).total
    finally:
        await client.close()
    seconds = None if first_claim is None or last_done is None else last_done - first_claim
    succeeded = statuses.get("succeeded", 0)
    return {
        "rollouts": args.rollouts,
        "concurrency": args.concurrency,
        "spans_per_rollout": args.spans_per_rollout,
        "succeeded": succeeded,
        "statuses": statuses,
        "seconds": None if seconds is None else round(seconds, 3),
        "rollouts_per_s": None if not seconds else round(succeeded / seconds, 1),
        "wall_from_runner_launch_s": round(wall_s, 3),
        "enqueue_s": round(enqueue_s, 3),
        "spans_stored": stats.get("total_spans"),
        "spans_per_rollout_histogram": {str(k): v for k, v in sorted(per_rollout.items())},
        "spans_expected": args.rollouts * (args.spans_per_rollout + (1 if args.reward else 0)),
        "runner_exit_code": exit_code,
        "workers_registered": workers,
        "store_statistics": {k: v for k, v in stats.items() if isinstance(v, (int, float, str))},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=["driver", "runners"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rollouts", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--spans-per-rollout", type=int, default=10)
    parser.add_argument("--reward", action="store_true")
    parser.add_argument("--timeout-s", type=float, default=900)
    parser.add_argument("--runner-log", default=os.devnull)
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.role == "runners":
        run_runners(args)
        return
    result = asyncio.run(drive(args))
    result["versions"] = {
        name: _version(name)
        for name in ("agentlightning", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http")
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
