"""What the rotel agent costs and holds: durable ingest rate straight to the server and through rotel, and
rotel's memory while it buffers spans for a server that is down.

    python deploy/bench_relay.py [--spans 50000] [--batch 512] [--connections 8]

Runs a real `otel-lightning serve` (SQLite, free port) and rotel (deploy/rotel_agent.py) in front of it, and
posts pre-built protobuf requests of ~3.4 KiB LLM spans (bench/_fixtures.py). Three phases:

1. direct: to the server's /v1/traces; a 200 means committed, so the time is the durable rate;
2. relay: to rotel; the time runs until the server holds every span (polling its database);
3. outage: the server is stopped, spans are posted to rotel, its resident memory is read, the server is
   started again on the same database and port, and the time to drain is measured.

Prints a table and writes deploy/results/bench_relay.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._fixtures import llm_span_request
from bench.bench_ingest import count_spans, free_port, post_all, start_server
from deploy.rotel_agent import DEFAULT_BATCH, RotelAgent, RotelOptions, rotel_binary

RESULTS = Path(__file__).resolve().parent / "results"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_stored(db: str, expected: int, timeout_s: float = 120.0) -> float:
    """Seconds until the database holds ``expected`` spans."""
    started = time.perf_counter()
    while count_spans(db) < expected:
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"{count_spans(db)} of {expected} spans stored")
        time.sleep(0.05)
    return time.perf_counter() - started


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rotel-batch", type=int, default=DEFAULT_BATCH, help="rotel's batch")
    parser.add_argument("--compression", default="gzip", choices=["gzip", "none"], help="rotel to server")
    args = parser.parse_args()
    requests = args.spans // args.batch
    spans = requests * args.batch

    def bodies(phase: int) -> list[bytes]:
        return [llm_span_request(args.batch, seed=phase * 10**6 + i) for i in range(requests)]

    direct_bodies, relay_bodies, outage_bodies = bodies(1), bodies(2), bodies(3)
    span_bytes = sum(map(len, direct_bodies)) / spans
    rotel_version = subprocess.run([rotel_binary(), "--version"], capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        db = f"{tmp}/relay.db"
        port = free_port()
        options = RotelOptions(
            listen_port=free_port(),
            server_url=f"http://127.0.0.1:{port}",
            batch_max_size=args.rotel_batch,
            compression=args.compression,
        )
        server = start_server(db, port)
        try:
            direct_s, _ = asyncio.run(post_all(f"http://127.0.0.1:{port}/v1/traces", direct_bodies, 8))
            with open(f"{tmp}/rotel.log", "wb") as log, RotelAgent(options, log) as agent:
                assert agent.proc is not None
                started = time.perf_counter()
                accept_s, _ = asyncio.run(post_all(agent.traces_endpoint, relay_bodies, args.connections))
                wait_stored(db, 2 * spans)
                relay_s = time.perf_counter() - started
                relay_rss = rss_mib(agent.proc.pid)
            # A fresh agent, so that its memory while holding is not mixed with what the relay phase left.
            with open(f"{tmp}/rotel2.log", "wb") as log, RotelAgent(options, log) as agent:
                assert agent.proc is not None
                idle_rss = rss_mib(agent.proc.pid)
                stop(server)
                held_accept_s, _ = asyncio.run(
                    post_all(agent.traces_endpoint, outage_bodies, args.connections)
                )
                time.sleep(1.0)
                held_rss = rss_mib(agent.proc.pid)
                server = start_server(db, port)
                drain_s = wait_stored(db, 3 * spans)
        except BaseException:
            for name in ("rotel.log", "rotel2.log"):
                with contextlib.suppress(OSError):
                    sys.stderr.write(Path(tmp, name).read_text(errors="replace")[-2000:])
            raise
        finally:
            stop(server)
    result = {
        "rotel": rotel_version.strip(),
        "spans": spans,
        "batch": args.batch,
        "connections": args.connections,
        "mean_span_bytes": round(span_bytes),
        "direct_spans_per_s": round(spans / direct_s),
        "relay_accept_spans_per_s": round(spans / accept_s),
        "relay_stored_spans_per_s": round(spans / relay_s),
        "outage_accept_spans_per_s": round(spans / held_accept_s),
        "drain_after_restart_s": round(drain_s, 2),
        "rotel_rss_idle_mib": round(idle_rss, 1),
        "rotel_rss_after_relay_mib": round(relay_rss, 1),
        "rotel_rss_holding_mib": round(held_rss, 1),
        "rotel_batch": args.rotel_batch,
        "compression": args.compression,
        "rotel_mib_per_10k_spans_held": round((held_rss - idle_rss) / spans * 10_000, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_relay.json").write_text(json.dumps(result, indent=2) + "\n")
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
