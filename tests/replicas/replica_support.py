"""Helpers of the replica tests: server replicas as processes, a load balancer in front of them, worker
processes, and an audit of what the shared PostgreSQL database holds."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.conftest import REPO, child_env, free_port, wait_healthy

AGENT = "tests.replicas.replica_agents:spans_agent"


@dataclass
class Replica:
    """A server process over the shared database (tests/replicas/replica_server.py); output to ``log``."""

    db_url: str
    log: Path
    lease_s: float = 5.0
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    _out: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Replica:
        script = str(REPO / "tests" / "replicas" / "replica_server.py")
        self._out = open(self.log, "ab")  # noqa: SIM115 - closed in kill()/stop()
        self.proc = subprocess.Popen(
            [sys.executable, script, self.db_url, str(self.port), str(self.lease_s)],
            cwd=REPO,
            env=child_env(),
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        wait_healthy(self.url, 30, self.proc)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, nothing flushed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._close()

    def _close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


class Balancer:
    """A round-robin TCP load balancer on a free loopback port: each new connection goes to the next
    backend that accepts it, so a dead backend is skipped as a health-checking load balancer would; the
    connections a dying backend held are closed, and their clients reconnect (to a live one)."""

    def __init__(self, ports: Sequence[int]) -> None:
        self._ports = itertools.cycle(ports)
        self._count = len(ports)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="balancer", daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0
        self.connections: Counter[int] = Counter()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Balancer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(self._count):
            port = next(self._ports)
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            self.connections[port] += 1
            break
        else:
            writer.close()
            return
        pipes = [
            asyncio.ensure_future(_pipe(reader, up_writer)),
            asyncio.ensure_future(_pipe(up_reader, writer)),
        ]
        # When either side is done (or broken), so is the connection: the client must not reuse it.
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for task in pipes:
            task.cancel()
        for w in (writer, up_writer):
            with contextlib.suppress(Exception):
                w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


def start_worker(url: str, worker_id: str, log: Path, concurrency: int = 8) -> subprocess.Popen[bytes]:
    """A real ``otel-lightning worker`` process running the spans agent against ``url``."""
    cmd = [
        sys.executable, "-m", "otel_lightning.cli", "--log-level", "WARNING", "worker", AGENT,
        "--server", url, "--worker-id", worker_id, "--concurrency", str(concurrency), "--claim-wait-s", "2",
    ]  # fmt: skip
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, cwd=REPO, env=child_env(), stdout=out, stderr=subprocess.STDOUT)


def stop_workers(workers: Sequence[subprocess.Popen[bytes]], timeout_s: float = 20.0) -> list[int | None]:
    """SIGTERM every live worker (they finish what they run), then wait; their exit codes."""
    for proc in workers:
        if proc.poll() is None:
            proc.terminate()
    codes: list[int | None] = []
    for proc in workers:
        try:
            codes.append(proc.wait(timeout_s))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            codes.append(None)
    return codes


@dataclass
class Audit:
    """What the shared database holds for a set of rollouts."""

    rollout_statuses: Counter[str] = field(default_factory=Counter)
    attempts_per_rollout: Counter[int] = field(default_factory=Counter)
    """How many rollouts had 1, 2, ... attempts."""
    claims_per_attempt: Counter[int] = field(default_factory=Counter)
    workers: Counter[str] = field(default_factory=Counter)
    """Attempts by worker id."""
    spans_reported: int = 0
    """Sum of span_count over the rollouts' succeeded attempts."""
    spans_stored: int = 0
    """Spans stored for those attempts."""
    mismatched: list[str] = field(default_factory=list)
    """Succeeded attempts whose stored spans are not the count they reported."""


def audit(db_url: str, rollout_ids: Sequence[str]) -> Audit:
    """Read the rollouts, attempts, claims and spans of ``rollout_ids`` straight from PostgreSQL."""
    import psycopg

    result = Audit()
    with psycopg.connect(db_url) as conn:
        ids = list(rollout_ids)
        for (status,) in conn.execute("SELECT status FROM rollouts WHERE rollout_id = ANY(%s)", (ids,)):
            result.rollout_statuses[status] += 1
        per_rollout = conn.execute(
            "SELECT COUNT(*) FROM attempts WHERE rollout_id = ANY(%s) GROUP BY rollout_id", (ids,)
        ).fetchall()
        result.attempts_per_rollout.update(n for (n,) in per_rollout)
        claims = conn.execute(
            "SELECT COUNT(c.request_id) FROM attempts a LEFT JOIN claims c ON c.attempt_id = a.attempt_id "
            "WHERE a.rollout_id = ANY(%s) GROUP BY a.attempt_id",
            (ids,),
        ).fetchall()
        result.claims_per_attempt.update(n for (n,) in claims)
        rows = conn.execute(
            "SELECT a.attempt_id, a.worker_id, a.status, a.span_count, "
            "(SELECT COUNT(*) FROM spans s WHERE s.attempt_id = a.attempt_id) "
            "FROM attempts a WHERE a.rollout_id = ANY(%s)",
            (ids,),
        ).fetchall()
    for attempt_id, worker_id, status, reported, stored in rows:
        result.workers[worker_id] += 1
        if status == "succeeded":
            result.spans_reported += reported
            result.spans_stored += stored
            if stored != reported:
                result.mismatched.append(f"{attempt_id}: reported {reported}, stored {stored}")
    return result
