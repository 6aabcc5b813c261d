"""Soak: many rollouts through repeated worker kills and a server restart, then an audit of every promise.

A real server process (SQLite file, short lease) and several real worker processes run 10,000 rollouts of
about 20 spans each (``tests/reliability/rel_agents.py:spans_agent``). Every few seconds one worker is killed
with SIGKILL and a new one started; halfway through, the server is killed with SIGKILL and started again on
the same database and port. At the end the store is audited (tests/reliability/rel_support.py): rollouts lost
or stuck, spans missing or stored twice, and the attempts that had to be redone. All must be zero but the
last. Prints a table and writes bench/results/soak.json.

    python bench/soak.py [--rollouts 10000] [--spans 19] [--workers 3] [--concurrency 16] [--kill-every-s 5]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from otel_lightning import connect
from tests.reliability.rel_support import (
    ServerProc,
    audit_db,
    rss_kib,
    start_worker,
    stop_workers,
)

RESULTS = Path(__file__).resolve().parent / "results"
AGENT = "tests.reliability.rel_agents:spans_agent"


def progress(db: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return dict(conn.execute("SELECT status, COUNT(*) FROM rollouts GROUP BY status").fetchall())


class Chaos:
    """Kills a random worker every ``every_s`` seconds (starting a new one), and the server once."""

    def __init__(
        self, server: ServerProc, logs: Path, workers: int, concurrency: int, every_s: float
    ) -> None:
        self.server = server
        self.logs = logs
        self.concurrency = concurrency
        self.every_s = every_s
        self.random = random.Random(1)
        self.workers = [self._start() for _ in range(workers)]
        self.retired: list[subprocess.Popen[bytes]] = []
        self.worker_kills = 0
        self.server_restarts = 0
        self.rss_kib: dict[str, int] = {"server_start": rss_kib(server.pid)}
        self.restart_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _start(self) -> subprocess.Popen[bytes]:
        log = self.logs / f"worker-{time.monotonic_ns()}.log"
        return start_worker(self.server.url, AGENT, log, concurrency=self.concurrency)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def restart_server(self) -> None:
        self.rss_kib["server_before_kill"] = rss_kib(self.server.pid)
        started = time.monotonic()
        self.server.kill()
        self.server.start()
        self.restart_s = time.monotonic() - started
        self.server_restarts += 1
        self.rss_kib["server_after_restart"] = rss_kib(self.server.pid)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            victim = self.workers.pop(self.random.randrange(len(self.workers)))
            victim.kill()
            victim.wait(10)
            self.retired.append(victim)
            self.worker_kills += 1
            self.workers.append(self._start())


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    server = ServerProc(tmp / "soak.db", tmp / "server.log", lease_s=args.lease_s).start()
    chaos: Chaos | None = None
    try:
        with connect(server.url) as lightning:
            started = time.monotonic()
            tasks = [{"spans": args.spans, "sleep_s": args.sleep_s, "i": i} for i in range(args.rollouts)]
            # Attempts are lost to kills, not to the agent: enough of them that no rollout runs out.
            ids = [r.rollout_id for r in lightning.enqueue(tasks, max_attempts=args.max_attempts)]
            chaos = Chaos(server, tmp, args.workers, args.concurrency, args.kill_every_s)
            chaos.start()
            restarted = False
            deadline = started + args.max_minutes * 60
            while True:
                counts = progress(server.db)
                done = counts.get("succeeded", 0) + counts.get("failed", 0) + counts.get("cancelled", 0)
                print(
                    f"  {time.monotonic() - started:6.1f} s: {done} rollouts ended, "
                    f"{chaos.worker_kills} workers killed",
                    flush=True,
                )
                if not restarted and done >= args.rollouts // 2:
                    chaos.restart_server()
                    restarted = True
                if done >= args.rollouts or time.monotonic() > deadline:
                    break
                time.sleep(5)
            chaos.stop()
            # Every rollout ended; wait for the last traces to be whole (or their grace period).
            lightning.wait(ids, timeout_s=120, complete=True)
            wall_s = time.monotonic() - started
            chaos.rss_kib["server_end"] = rss_kib(server.pid)
        codes = stop_workers(chaos.workers, timeout_s=60)
        stop_workers(chaos.retired)
        server.stop()
        audit = audit_db(server.db, ids)
    finally:
        if chaos is not None:
            chaos.stop()
            stop_workers(chaos.workers + chaos.retired, timeout_s=30)
        server.stop()
    return {
        "rollouts": args.rollouts,
        "spans_per_rollout": args.spans + 1,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "lease_s": args.lease_s,
        "max_attempts": args.max_attempts,
        "worker_kills": chaos.worker_kills,
        "server_restarts": chaos.server_restarts,
        "server_restart_s": round(chaos.restart_s, 2),
        "wall_s": round(wall_s, 1),
        "rollouts_per_s": round(args.rollouts / wall_s, 1),
        "rollouts_lost_or_stuck": audit.lost_or_stuck,
        "rollout_statuses": dict(audit.rollout_statuses),
        "attempt_statuses": dict(audit.attempt_statuses),
        "spans_reported": audit.spans_reported,
        "spans_stored": audit.spans_stored,
        "spans_of_dead_attempts": audit.spans_dead,
        "spans_lost": audit.spans_missing,
        "spans_duplicated": audit.spans_extra,
        "problems": audit.problems,
        "server_rss_mib": {k: round(v / 1024, 1) for k, v in chaos.rss_kib.items()},
        "workers_exit_codes": codes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rollouts", type=int, default=10_000)
    parser.add_argument("--spans", type=int, default=19, help="child spans per rollout (+1 rollout span)")
    parser.add_argument("--sleep-s", type=float, default=0.2, help="agent time per rollout")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--lease-s", type=float, default=3.0)
    parser.add_argument("--max-attempts", type=int, default=20)
    parser.add_argument("--kill-every-s", type=float, default=5.0)
    parser.add_argument("--max-minutes", type=float, default=30.0)
    parser.add_argument("--keep", default=None, help="keep the database and logs in this folder")
    args = parser.parse_args()
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        result = run(args, Path(args.keep))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(args, Path(tmp))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    rss = result["server_rss_mib"]
    rows = [
        ("rollouts", result["rollouts"]),
        ("spans reported (winning attempts)", result["spans_reported"]),
        ("spans stored", result["spans_stored"]),
        ("spans of killed/expired attempts", result["spans_of_dead_attempts"]),
        ("worker kills (SIGKILL)", result["worker_kills"]),
        ("server restarts (SIGKILL)", result["server_restarts"]),
        ("attempts redone (timed_out)", result["attempt_statuses"].get("timed_out", 0)),
        ("rollouts lost or stuck", result["rollouts_lost_or_stuck"]),
        ("spans lost", result["spans_lost"]),
        ("spans duplicated", result["spans_duplicated"]),
        ("server RSS start / end (MiB)", f"{rss.get('server_start')} / {rss.get('server_end')}"),
        ("wall time (s)", result["wall_s"]),
        ("rollouts/s", result["rollouts_per_s"]),
    ]
    for name, value in rows:
        print(f"{name:<36} {value:>16}")
    if result["problems"]:
        print("problems:", *result["problems"], sep="\n  ")


if __name__ == "__main__":
    main()
