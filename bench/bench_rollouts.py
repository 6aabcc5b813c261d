"""Rollout throughput and claim latency against a real server process.

Throughput: a Worker in this process (concurrency 32 by default) runs no-op rollouts, each a claim, five spans
(the rollout span and four children) exported over OTLP, a flush and a completion; rollouts/s is measured from
the first claim to the last completion, and every rollout's spans are checked to be stored.
Latency: threads claim (no waiting) and complete queued rollouts one after another; p50/p99 of the claim call.
Prints a table and writes bench/results/rollouts.json.

    python bench/bench_rollouts.py [--rollouts 3000] [--concurrency 32] [--concurrency 8,64,256]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from opentelemetry import trace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_ingest import free_port, start_server
from otel_lightning import Worker, connect
from otel_lightning.client import calls
from otel_lightning.client.http import ApiClient
from otel_lightning.config import ClientSettings
from otel_lightning.types import AttemptStatus, Outcome, RolloutStatus

RESULTS = Path(__file__).resolve().parent / "results"


async def noop_agent(task: Any, resources: Any) -> float:
    tracer = trace.get_tracer("bench")
    for i in range(4):
        with tracer.start_as_current_span(f"step-{i}"):
            pass
    return 1.0


def throughput(url: str, rollouts: int, concurrency: int) -> dict[str, Any]:
    experiment = f"throughput-{concurrency}"
    with connect(url, experiment=experiment) as lightning:
        ids = [r.rollout_id for r in lightning.enqueue([{"i": i} for i in range(rollouts)])]
        worker = Worker(noop_agent, url, concurrency=concurrency, experiments=[experiment], claim_wait_s=1)
        started = time.perf_counter()
        stats = worker.run(max_rollouts=rollouts)
        elapsed = time.perf_counter() - started
        final = lightning.wait(ids, timeout_s=120)
    assert stats.succeeded == rollouts, stats
    assert all(r.status is RolloutStatus.SUCCEEDED for r in final)
    return {
        "rollouts": rollouts,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "rollouts_per_s": round(rollouts / elapsed, 1),
    }


def claim_latency(url: str, claims: int, threads: int) -> dict[str, Any]:
    with connect(url, experiment="latency") as lightning:
        lightning.enqueue([{"i": i} for i in range(claims)])
    latencies: list[float] = []
    lock = threading.Lock()

    def run() -> None:
        client = ApiClient(ClientSettings.resolve(url))
        mine = []
        while True:
            started = time.perf_counter()
            claim = client.call(calls.claim("bench", uuid.uuid4().hex, ["latency"], 0.0))
            mine.append(time.perf_counter() - started)
            if claim is None:
                break
            client.call(calls.complete(claim.attempt.attempt_id, Outcome(AttemptStatus.SUCCEEDED, 1.0)))
        client.close()
        with lock:
            latencies.extend(mine[:-1])

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    q = statistics.quantiles(latencies, n=100)
    return {
        "claims": len(latencies),
        "threads": threads,
        "p50_ms": round(q[49] * 1000, 2),
        "p99_ms": round(q[98] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rollouts", type=int, default=3000)
    parser.add_argument("--concurrency", default="32", help="one level, or several separated by commas")
    parser.add_argument("--claims", type=int, default=2000)
    parser.add_argument("--claim-threads", type=int, default=4)
    args = parser.parse_args()
    levels = [int(level) for level in str(args.concurrency).split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "rollouts.db"
        port = free_port()
        server = start_server(db, port)
        url = f"http://127.0.0.1:{port}"
        try:
            tputs = [throughput(url, args.rollouts, level) for level in levels]
            latency = claim_latency(url, args.claims, args.claim_threads)
        finally:
            server.terminate()
            server.wait(30)
        spans = sqlite3.connect(db).execute("SELECT COUNT(*) FROM spans").fetchone()[0]
    result = {
        "throughput": tputs,
        "spans_stored": spans,
        "spans_expected": args.rollouts * 5 * len(levels),
        "claim_latency": latency,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rollouts.json").write_text(json.dumps(result, indent=2))
    print(f"{'rollouts':>8} {'conc':>5} {'seconds':>8} {'rollouts/s':>10}")
    for tput in tputs:
        print(
            f"{tput['rollouts']:>8} {tput['concurrency']:>5} {tput['seconds']:>8} "
            f"{tput['rollouts_per_s']:>10}"
        )
    print(
        f"spans stored {spans} of {result['spans_expected']}; claim latency over {latency['claims']} claims: "
        f"p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms"
    )


if __name__ == "__main__":
    main()
