"""Benchmark the PostgreSQL store: span ingest (binary COPY and pipelined INSERT) and queue cycles.

Run: ``python bench/bench_store_postgres.py [--admin URL] [--spans N] [--runs N] [--cycles N]``. It creates a
scratch database on the server that ``--admin`` reaches (default: the local one), a fresh schema per run,
and drops the database at the end. Spans are the realistic ~3.4 KiB chat-completion spans of
bench/bench_store.py, decoded from protobuf export requests into encoded spans as the server does; ingest
times ``add_encoded_spans`` alone, and the two conversions (request -> encoded spans, records -> encoded
spans) are timed apart as in bench/bench_store.py. Prints a table and writes
bench/results/store_postgres.json. Rates are wall-clock; "per cpu-s" divides by this process's CPU time (the
driver), leaving out PostgreSQL's.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from bench_store import convert, make_requests, time_ingest

from otel_lightning.spans.encoded import EncodedSpan
from otel_lightning.store.postgres import PostgresStore
from otel_lightning.store.postgres_spans import SpanWrite
from otel_lightning.types import AttemptStatus, Outcome, Task

RESULTS = Path(__file__).parent / "results" / "store_postgres.json"


@contextmanager
def scratch_database(admin: str) -> Iterator[str]:
    name = "otel_lightning_bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlsplit(admin)._replace(path="/" + name).geturl()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_store(db: str, **options: object) -> PostgresStore:
    schema = "b_" + uuid.uuid4().hex[:8]
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return PostgresStore(f"{db}?options=-csearch_path%3D{schema}", **options)  # type: ignore[arg-type]


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_ingest(db: str, total: int, batch: int, runs: int, mode: SpanWrite) -> dict[str, object]:
    requests = make_requests(total, batch)
    rates = [_ingest_once(db, requests, mode) for _ in range(runs)]
    wall, cpu, dups, request, record = (list(column) for column in zip(*rates, strict=True))
    return {
        "span_write": mode,
        "batch": batch,
        "spans": len(requests) * batch,
        "spans_per_s": statistics.median(wall),
        "spans_per_s_best": max(wall),
        "spans_per_cpu_s": statistics.median(cpu),
        "duplicate_spans_per_s": statistics.median(dups),
        "convert_request_spans_per_s": statistics.median(request),
        "convert_record_spans_per_s": statistics.median(record),
    }


def _ingest_once(db: str, requests: list[bytes], mode: SpanWrite) -> tuple[float, float, float, float, float]:
    """Spans/s of one run into a fresh schema: wall, per cpu-s, duplicates, and the two conversions."""
    return time_ingest(lambda: fresh_store(db, span_write=mode, pool_size=2), requests)


def bench_threads(db: str, total: int, threads: int, batch: int, mode: SpanWrite) -> dict[str, object]:
    """Several threads calling add_encoded_spans at once, as the writers of several replicas would."""
    per_thread = [
        convert(make_requests(total // threads, batch, seed=t * total)).batches for t in range(threads)
    ]
    gc.collect()
    gc.freeze()
    store = fresh_store(db, span_write=mode, pool_size=threads)
    counts: list[int] = []  # the threads share it: list.append is atomic

    def write(batches: list[list[EncodedSpan]]) -> None:
        for spans in batches:
            counts.append(store.add_encoded_spans(spans))

    workers = [threading.Thread(target=write, args=(batches,)) for batches in per_thread]

    def run() -> None:
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    wall, _ = _timed(run)
    stored = sum(counts)
    store.close()
    gc.unfreeze()
    return {
        "span_write": mode,
        "threads": threads,
        "batch": batch,
        "spans": stored,
        "spans_per_s": stored / wall,
    }


def bench_cycles(db: str, cycles: int, threads: int) -> dict[str, object]:
    store = fresh_store(db, pool_size=threads + 1)
    store.enqueue([Task(input={"backlog": i}, experiment="other") for i in range(cycles)])
    done = Outcome(AttemptStatus.SUCCEEDED, reward=1.0, span_count=12)

    def cycle(worker: int, count: int) -> None:
        experiment = f"e{worker}"  # each thread claims what it enqueued
        for i in range(count):
            store.enqueue([Task(input={"question": f"q{i}", "answer": i}, experiment=experiment)])
            claim = store.claim(f"bench-{worker}", f"req-{worker}-{i}", [experiment], lease_s=60)
            assert claim is not None
            store.complete(claim.attempt.attempt_id, done)

    def cycles_in_threads() -> None:
        pool = [threading.Thread(target=cycle, args=(w, cycles // threads)) for w in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    def claim_backlog() -> None:
        for i in range(cycles):
            assert store.claim("bench-worker", f"backlog-{i}", ["other"], lease_s=60) is not None

    one_wall, one_cpu = _timed(lambda: cycle(99, cycles))
    many_wall, _ = _timed(cycles_in_threads)
    claim_wall, _ = _timed(claim_backlog)
    store.close()
    return {
        "cycles": cycles,
        "cycles_per_s": cycles / one_wall,
        "cycles_per_cpu_s": cycles / one_cpu,
        "threads": threads,
        "cycles_per_s_threads": cycles // threads * threads / many_wall,
        "claims_per_s": cycles / claim_wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin", default="postgresql://postgres@127.0.0.1:5432/test", help="server to use")
    parser.add_argument("--spans", type=int, default=30_720, help="spans per ingest run")
    parser.add_argument("--runs", type=int, default=3, help="runs per batch size (median reported)")
    parser.add_argument("--cycles", type=int, default=1000, help="enqueue+claim+complete cycles")
    parser.add_argument("--threads", type=int, default=4, help="threads of the concurrent runs")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with scratch_database(args.admin) as db:
        with psycopg.connect(db) as conn:
            server = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        ingest = [
            bench_ingest(db, args.spans, batch, args.runs, mode)
            for mode in ("copy", "pipeline")
            for batch in (100, 512)
        ]
        threads = [
            bench_threads(db, args.spans, 2, batch, mode)
            for mode in ("copy", "pipeline")
            for batch in (100, 512)
        ]
        cycles = bench_cycles(db, args.cycles, args.threads)
    load = (load_before, os.getloadavg())
    print(f"PostgreSQL {server}; psycopg {psycopg.__version__}; Python {platform.python_version()}; ", end="")
    print(f"{os.cpu_count()} cpus, load average (1/5/15 min) {load[0]} -> {load[1]}")
    print(f"{'add_encoded_spans':<57} {'convert to encoded spans/s':>27}")
    head = ("span_write", "batch", "spans/s", "best", "per cpu-s", "dups", "request", "records")
    print("{:<18} {:>5} {:>9} {:>9} {:>10} {:>9}   {:>11} {:>11}".format(*head))
    for r in ingest:
        print(
            "{:<18} {:>5} {:>9,.0f} {:>9,.0f} {:>10,.0f} {:>9,.0f}   {:>11,.0f} {:>11,.0f}".format(
                r["span_write"],
                r["batch"],
                r["spans_per_s"],
                r["spans_per_s_best"],
                r["spans_per_cpu_s"],
                r["duplicate_spans_per_s"],
                r["convert_request_spans_per_s"],
                r["convert_record_spans_per_s"],
            )
        )
    for t in threads:
        print(f"add_encoded_spans from {t['threads']} threads, {t['batch']}-span batches, ", end="")
        print(f"{t['span_write']}: ", end="")
        print(f"{t['spans_per_s']:,.0f} spans/s")
    print(f"enqueue+claim+complete: {cycles['cycles_per_s']:,.0f} cycles/s in 1 thread ", end="")
    print(f"({cycles['cycles_per_cpu_s']:,.0f} per cpu-s), ", end="")
    print(f"{cycles['cycles_per_s_threads']:,.0f} cycles/s in {cycles['threads']} threads")
    print(f"claim from a backlog:   {cycles['claims_per_s']:,.0f} claims/s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "postgresql": server,
        "psycopg": psycopg.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "load_average": load,
        "argv": sys.argv[1:],
        "ingest": ingest,
        "ingest_threads": threads,
        "queue": cycles,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
