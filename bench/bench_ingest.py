"""OTLP ingest into a real server process, durable: spans/s for 100-span requests of realistic LLM spans.

Starts `otel-lightning serve` on a free port with a SQLite file, then posts pre-built protobuf requests
(unique ids, ~3.4 KiB spans) from several concurrent connections. A 200 means the spans are committed, so
the rate is the durable rate. Prints a table and writes bench/results/ingest_<store>_<batch>.json.

    python bench/bench_ingest.py [--spans 200000] [--batch 100] [--connections 8] [--postgres URL]
                                 [--replicas N]

With ``--postgres postgresql://postgres@127.0.0.1/test`` the server stores into a scratch database created on
that server (and dropped afterwards) instead of SQLite; ``--replicas N`` then starts N server processes on
that database and spreads the connections over them, as a load balancer in front of replicas would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._fixtures import llm_span_request

RESULTS = Path(__file__).resolve().parent / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def scratch_postgres(admin_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``admin_url``; dropped afterwards."""
    import psycopg

    name = f"otel_lightning_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def count_spans(db: str) -> int:
    if db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db) as conn:
            row = conn.execute("SELECT COUNT(*) FROM spans").fetchone()
            return int(row[0]) if row else 0
    return int(sqlite3.connect(db).execute("SELECT COUNT(*) FROM spans").fetchone()[0])


def start_server(db: Path | str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "otel_lightning.cli",
            "--log-level",
            "WARNING",
            "serve",
            "--db",
            str(db),
            "--port",
            str(port),
        ]
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


async def post_all(url: str | list[str], bodies: list[bytes], connections: int) -> tuple[float, int]:
    """Post every body over ``connections`` concurrent connections, spread over the server URLs in turn;
    (seconds, 503 answers retried)."""
    urls = [url] if isinstance(url, str) else url
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    retries = 0

    async def sender(client: httpx.AsyncClient, url: str) -> None:
        nonlocal retries
        while not queue.empty():
            body = queue.get_nowait()
            while True:
                response = await client.post(
                    url, content=body, headers={"content-type": "application/x-protobuf"}
                )
                if response.status_code == 200:
                    break
                if response.status_code != 503:
                    raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
                retries += 1
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=connections)) as client:
        started = time.perf_counter()
        await asyncio.gather(*(sender(client, urls[i % len(urls)]) for i in range(connections)))
        return time.perf_counter() - started, retries


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--postgres", default=None, help="admin URL of a PostgreSQL server to bench against")
    parser.add_argument(
        "--replicas", type=int, default=1, help="server processes on one PostgreSQL database (--postgres)"
    )
    args = parser.parse_args()
    requests = args.spans // args.batch
    bodies = [llm_span_request(args.batch, seed=i) for i in range(requests)]
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        db: str = (
            stack.enter_context(scratch_postgres(args.postgres)) if args.postgres else f"{tmp}/ingest.db"
        )
        if args.replicas > 1 and not args.postgres:
            parser.error("--replicas needs --postgres: replicas share a PostgreSQL database")
        ports = [free_port() for _ in range(args.replicas)]
        servers = [start_server(db, port) for port in ports]
        urls = [f"http://127.0.0.1:{port}/v1/traces" for port in ports]
        try:
            # Warm up with separate ids, then measure.
            warm_up = [llm_span_request(args.batch, seed=10**6 + i) for i in range(20)]
            asyncio.run(post_all(urls, warm_up, 4))
            elapsed, retries = asyncio.run(post_all(urls, bodies, args.connections))
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                server.wait(30)
        stored = count_spans(db)
    spans = requests * args.batch
    result = {
        "store": "postgresql" if args.postgres else "sqlite",
        "spans": spans,
        "batch": args.batch,
        "connections": args.connections,
        "replicas": args.replicas,
        "seconds": round(elapsed, 3),
        "spans_per_s": round(spans / elapsed),
        "requests_per_s": round(requests / elapsed, 1),
        "mean_span_bytes": round(sum(map(len, bodies)) / spans),
        "retried_503": retries,
        "stored": stored,
    }
    RESULTS.mkdir(exist_ok=True)
    replicas = f"_x{args.replicas}" if args.replicas > 1 else ""
    name = f"ingest_{result['store']}_{args.batch}{replicas}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2))
    print(
        f"{'store':>10} {'replicas':>8} {'spans':>8} {'batch':>6} {'conns':>6} {'seconds':>8} {'spans/s':>9} "
        f"{'stored':>8} {'503s':>5}"
    )
    print(
        f"{result['store']:>10} {args.replicas:>8} {spans:>8} {args.batch:>6} {args.connections:>6} "
        f"{elapsed:>8.2f} {spans / elapsed:>9.0f} {stored:>8} {retries:>5}"
    )


if __name__ == "__main__":
    main()
