"""Rollout throughput and claim latency under load, against a real server process.

For each concurrency level (default 8, 64 and 256) a Worker in this process (or, with
``--worker-processes N``, Workers in N child processes sharing the level's slots) runs no-op rollouts, each a
claim, ``--spans-per-rollout`` spans (default 10: the worker's rollout span and nine children made by the
agent) exported over OTLP, a flush and a completion; rollouts/s is measured over the Workers' run, and every
rollout's spans are checked to be stored.

Claim latency is measured under that load: while the Worker runs, a probe (its own ApiClient, its own
experiment with a queued backlog) claims with no waiting and completes, one claim every 20 ms, recording the
claim call's latency; p50/p99 per level count only the probe's claims made while the Worker ran. By default
the probe runs in its own process (``--probe process``): a probe thread in the Worker's process also
measures its wait for the GIL behind the busy Worker, which is not the server's latency (``--probe thread``
measures that way for comparison). The same probe against the idle server is reported as the baseline.

Prints a table and writes bench/results/rollouts.json.

    python bench/bench_rollouts.py [--rollouts 3000] [--concurrency 8,64,256] [--spans-per-rollout 10]
                                   [--worker-processes 1]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from opentelemetry import trace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._load import LoadSampler
from bench.bench_ingest import free_port, start_server
from otel_lightning import Worker, connect, instrument
from otel_lightning.client import calls
from otel_lightning.client.http import ApiClient
from otel_lightning.config import ClientSettings
from otel_lightning.types import AttemptStatus, Outcome, RolloutStatus

RESULTS = Path(__file__).resolve().parent / "results"
PROBE_INTERVAL_S = 0.02
PROBE_BACKLOG = 500


def noop_agent(spans_per_rollout: int) -> Callable[[Any, Any], Awaitable[float]]:
    """An agent making ``spans_per_rollout - 1`` child spans (the Worker adds the rollout span)."""
    children = spans_per_rollout - 1

    async def agent(task: Any, resources: Any) -> float:
        tracer = trace.get_tracer("bench")
        for i in range(children):
            with tracer.start_as_current_span(f"step-{i}"):
                pass
        return 1.0

    return agent


def bench_worker(url: str, experiment: str, concurrency: int, spans_per_rollout: int) -> Worker:
    """A Worker of no-op rollouts, its export set up already, so that the setup (importing the openai
    instrumentation alone takes ~1 s) is not timed."""
    return Worker(
        noop_agent(spans_per_rollout),
        url,
        concurrency=concurrency,
        experiments=[experiment],
        claim_wait_s=1,
        instrumentation=instrument(url),
    )


def throughput(
    url: str, rollouts: int, concurrency: int, spans_per_rollout: int = 10, processes: int = 1
) -> dict[str, Any]:
    """Run ``rollouts`` no-op rollouts through Workers with ``concurrency`` slots in all; rollouts/s over
    their run. With ``processes`` > 1 the slots and rollouts are split over that many worker processes, as a
    deployment runs several (one process's span creation and export use one core).

    ``started_ns``/``ended_ns`` bound the Workers' run on the wall clock (for the latency probe's window).
    Spans go where this process's first ``instrument()`` sent them: one server URL per process.
    """
    if spans_per_rollout < 1:
        raise ValueError("spans_per_rollout counts the rollout span: at least 1")
    experiment = f"throughput-{concurrency}"
    with connect(url, experiment=experiment) as lightning:
        ids = [r.rollout_id for r in lightning.enqueue([{"i": i} for i in range(rollouts)])]
        if processes == 1:
            worker = bench_worker(url, experiment, concurrency, spans_per_rollout)
            started_ns = time.time_ns()
            started = time.perf_counter()
            succeeded = worker.run(max_rollouts=rollouts).succeeded
            elapsed = time.perf_counter() - started
        else:
            started_ns, elapsed, succeeded = _in_processes(
                url, experiment, rollouts, concurrency, spans_per_rollout, processes
            )
        ended_ns = time.time_ns()
        final = lightning.wait(ids, timeout_s=120)
    assert succeeded == rollouts, (succeeded, rollouts)
    assert all(r.status is RolloutStatus.SUCCEEDED for r in final)
    return {
        "rollouts": rollouts,
        "concurrency": concurrency,
        "worker_processes": processes,
        "spans_per_rollout": spans_per_rollout,
        "seconds": round(elapsed, 3),
        "rollouts_per_s": round(rollouts / elapsed, 1),
        "started_ns": started_ns,
        "ended_ns": ended_ns,
    }


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _worker_process(
    url: str, experiment: str, rollouts: int, concurrency: int, spans: int, start: Any, conn: Connection
) -> None:
    worker = bench_worker(url, experiment, concurrency, spans)
    conn.send("ready")
    start.wait()
    conn.send(worker.run(max_rollouts=rollouts).succeeded)
    conn.close()


def _in_processes(
    url: str, experiment: str, rollouts: int, concurrency: int, spans: int, processes: int
) -> tuple[int, float, int]:
    """(start time ns, seconds, succeeded) of Workers in ``processes`` child processes started together."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    children = []
    for share, slots in zip(_split(rollouts, processes), _split(concurrency, processes), strict=True):
        parent_end, child_end = ctx.Pipe(duplex=False)
        child = ctx.Process(
            target=_worker_process, args=(url, experiment, share, max(slots, 1), spans, start, child_end)
        )
        child.start()
        children.append((child, parent_end))
    for _, pipe in children:
        assert pipe.recv() == "ready"
    started_ns = time.time_ns()
    started = time.perf_counter()
    start.set()
    succeeded = sum(int(pipe.recv()) for _, pipe in children)
    elapsed = time.perf_counter() - started
    for child, _ in children:
        child.join(60)
    return started_ns, elapsed, succeeded


# --- claim latency probe ---------------------------------------------------------------------------------


class _Flag(Protocol):
    def is_set(self) -> bool: ...


def probe_claims(url: str, experiment: str, stop: _Flag, max_claims: int | None = None) -> list[list[float]]:
    """Claim (no waiting) and complete one rollout every 20 ms until ``stop``; ``[start_ns, seconds]`` each.

    Only successful claims are recorded; an empty queue is refilled with another backlog and not counted.
    """
    client = ApiClient(ClientSettings.resolve(url))
    worker_id = f"probe-{os.getpid()}"
    samples: list[list[float]] = []
    next_tick = time.perf_counter()
    try:
        while not stop.is_set() and (max_claims is None or len(samples) < max_claims):
            started_ns = time.time_ns()
            started = time.perf_counter()
            claim = client.call(calls.claim(worker_id, uuid.uuid4().hex, [experiment], 0.0))
            latency = time.perf_counter() - started
            if claim is None:
                enqueue_backlog(url, experiment)
                continue
            samples.append([started_ns, latency])
            client.call(calls.complete(claim.attempt.attempt_id, Outcome(AttemptStatus.SUCCEEDED, 1.0)))
            # A fixed cadence, not back-to-back: the probe should observe the load, not add to it.
            next_tick = max(next_tick + PROBE_INTERVAL_S, time.perf_counter())
            time.sleep(max(0.0, next_tick - time.perf_counter()))
    finally:
        client.close()
    return samples


def _probe_process(url: str, experiment: str, stop: _Flag, conn: Connection) -> None:
    conn.send(probe_claims(url, experiment, stop))
    conn.close()


class Probe:
    """Runs :func:`probe_claims` in a thread or a child process while in a ``with`` block."""

    def __init__(self, url: str, experiment: str, mode: str) -> None:
        self.samples: list[list[float]] = []
        self._mode = mode
        if mode == "thread":
            self._stop: Any = threading.Event()
            self._thread = threading.Thread(
                target=lambda: self.samples.extend(probe_claims(url, experiment, self._stop)), daemon=True
            )
        else:
            ctx = multiprocessing.get_context("spawn")
            self._stop = ctx.Event()
            self._conn, child = ctx.Pipe(duplex=False)
            self._process = ctx.Process(target=_probe_process, args=(url, experiment, self._stop, child))

    def __enter__(self) -> Probe:
        if self._mode == "thread":
            self._thread.start()
        else:
            self._process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._mode == "thread":
            self._thread.join(60)
        else:
            self.samples = self._conn.recv()
            self._process.join(60)


def enqueue_backlog(url: str, experiment: str) -> None:
    with connect(url, experiment=experiment) as lightning:
        lightning.enqueue([{"probe": i} for i in range(PROBE_BACKLOG)])


def percentiles(latencies: list[float]) -> dict[str, Any]:
    if len(latencies) < 2:
        return {"claim_p50_ms": None, "claim_p99_ms": None, "claims": len(latencies)}
    q = statistics.quantiles(latencies, n=100)
    return {
        "claim_p50_ms": round(q[49] * 1000, 2),
        "claim_p99_ms": round(q[98] * 1000, 2),
        "claims": len(latencies),
    }


def level_under_load(
    url: str, rollouts: int, concurrency: int, spans: int, probe: str, processes: int = 1
) -> dict[str, Any]:
    """Throughput at one level, with the probe's claim latency over the Worker's run."""
    experiment = f"probe-{concurrency}"
    enqueue_backlog(url, experiment)
    with Probe(url, experiment, probe) as prober:
        if probe == "process":
            time.sleep(2.0)  # let the child import and start claiming before the Worker does
        with LoadSampler() as load:
            result = throughput(url, rollouts, concurrency, spans, processes)
    window = (result.pop("started_ns"), result.pop("ended_ns"))
    inside = [s for ns, s in prober.samples if window[0] <= ns <= window[1]]
    return result | percentiles(inside) | {"load": load.summary()}


def idle_latency(url: str, claims: int) -> dict[str, Any]:
    """The same probe against the idle server: the baseline."""
    enqueue_backlog(url, "probe-idle")
    samples = probe_claims(url, "probe-idle", threading.Event(), max_claims=claims)
    return percentiles([s for _, s in samples])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rollouts", type=int, default=3000, help="rollouts per concurrency level")
    parser.add_argument("--concurrency", default="8,64,256", help="one level, or several separated by commas")
    parser.add_argument(
        "--spans-per-rollout", type=int, default=10, help="counting the worker's rollout span"
    )
    parser.add_argument("--probe", choices=["process", "thread"], default="process")
    parser.add_argument(
        "--worker-processes", type=int, default=1, help="split each level's slots over this many processes"
    )
    parser.add_argument("--idle-claims", type=int, default=250, help="probe claims against the idle server")
    parser.add_argument("--out", type=Path, default=RESULTS / "rollouts.json")
    args = parser.parse_args()
    levels = [int(level) for level in str(args.concurrency).split(",")]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "rollouts.db"
        port = free_port()
        server = start_server(db, port)
        url = f"http://127.0.0.1:{port}"
        try:
            idle = idle_latency(url, args.idle_claims)
            results = []
            for level in levels:
                results.append(
                    level_under_load(
                        url, args.rollouts, level, args.spans_per_rollout, args.probe, args.worker_processes
                    )
                )
        finally:
            server.terminate()
            server.wait(30)
        spans = sqlite3.connect(db).execute("SELECT COUNT(*) FROM spans").fetchone()[0]
    expected = args.rollouts * args.spans_per_rollout * len(levels)
    report = {
        "levels": results,
        "spans_stored": spans,
        "spans_expected": expected,
        "claim_latency_idle": idle,
        "probe": {"mode": args.probe, "interval_ms": PROBE_INTERVAL_S * 1000, "claim_wait_s": 0},
        "cpus": os.cpu_count(),
        "load1_before": round(load_before[0], 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(
        f"{'rollouts':>8} {'conc':>5} {'procs':>5} {'spans':>5} {'seconds':>8} {'rollouts/s':>10} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'claims':>6} {'load1':>9}"
    )
    for r in results:
        print(
            f"{r['rollouts']:>8} {r['concurrency']:>5} {r['worker_processes']:>5} "
            f"{r['spans_per_rollout']:>5} {r['seconds']:>8} "
            f"{r['rollouts_per_s']:>10} {r['claim_p50_ms']:>7} {r['claim_p99_ms']:>7} {r['claims']:>6} "
            f"{r['load']['load1_min']:>4.1f}-{r['load']['load1_max']:<4.1f}"
        )
    print(
        f"idle server, same probe: p50 {idle['claim_p50_ms']} ms, p99 {idle['claim_p99_ms']} ms "
        f"over {idle['claims']} claims; load1 before {report['load1_before']}; "
        f"spans stored {spans} of {expected}" + ("" if spans == expected else "  <-- MISMATCH")
    )
    print(f"written to {args.out}")
    return 0 if spans == expected else 1


if __name__ == "__main__":
    sys.exit(main())
