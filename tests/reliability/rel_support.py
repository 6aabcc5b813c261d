"""Helpers of the reliability tests (and bench/soak.py): real server and worker processes, and an audit of
what the server stored, read straight from its SQLite file."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otel_lightning import semconv
from tests.conftest import REPO, child_env, free_port, wait_healthy


def otlp_request(rollout_id: str, attempt_id: str, count: int, first: int = 1) -> bytes:
    """OTLP/protobuf traces request: ``count`` spans of one attempt (one trace), span ids from ``first``."""
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    trace_id = hashlib.sha256(attempt_id.encode()).digest()[:16]  # one trace per attempt, over requests
    for i in range(count):
        span = spans.add(
            trace_id=trace_id,
            span_id=(first + i).to_bytes(8, "big"),
            name=f"step {i}",
            start_time_unix_nano=1_000 + i,
            end_time_unix_nano=2_000 + i,
        )
        for key, value in ((semconv.ROLLOUT_ID, rollout_id), (semconv.ATTEMPT_ID, attempt_id)):
            span.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    return request.SerializeToString()


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class ServerProc:
    """A real ``otel-lightning serve`` process that can be killed with SIGKILL and started again on the same
    database and port; its output goes to ``log``."""

    db: Path
    log: Path
    lease_s: float = 2.0
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    _out: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 30.0) -> ServerProc:
        cmd = [
            sys.executable,
            "-m",
            "otel_lightning.cli",
            "--log-level",
            "WARNING",
            "serve",
            "--db",
            str(self.db),
            "--port",
            str(self.port),
            "--lease-s",
            str(self.lease_s),
        ]
        self._out = open(self.log, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=child_env(**self.env), stdout=self._out, stderr=subprocess.STDOUT
        )
        wait_healthy(self.url, timeout_s, self.proc)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._close_log()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._close_log()

    def _close_log(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_worker(
    url: str,
    agent: str,
    log: Path,
    *,
    concurrency: int = 4,
    claim_wait_s: float = 1.0,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """A real ``otel-lightning worker`` process running ``agent`` (MODULE:FUNCTION) against ``url``."""
    cmd = [
        sys.executable,
        "-m",
        "otel_lightning.cli",
        "--log-level",
        "WARNING",
        "worker",
        agent,
        "--server",
        url,
        "--concurrency",
        str(concurrency),
        "--claim-wait-s",
        str(claim_wait_s),
    ]
    with open(log, "ab") as out:
        return subprocess.Popen(
            cmd, cwd=REPO, env=child_env(**(extra_env or {})), stdout=out, stderr=subprocess.STDOUT
        )


def stop_workers(workers: Iterable[subprocess.Popen[bytes]], timeout_s: float = 30.0) -> list[int | None]:
    """SIGTERM every live worker (they finish their rollouts), then wait; their exit codes."""
    workers = list(workers)
    for proc in workers:
        if proc.poll() is None:
            proc.terminate()
    codes: list[int | None] = []
    deadline = time.monotonic() + timeout_s
    for proc in workers:
        try:
            codes.append(proc.wait(max(deadline - time.monotonic(), 0.1)))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            codes.append(None)
    return codes


def running_on(db: Path, worker_pid: int) -> int:
    """How many attempts are running on the worker process with this pid (worker ids hold the pid)."""
    with _read(db) as conn:
        rows = conn.execute("SELECT worker_id FROM attempts WHERE status = 'running'").fetchall()
    return sum(1 for (worker_id,) in rows if f"-{worker_pid}-" in worker_id)


def wait_until(predicate: object, timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@dataclass
class Audit:
    """What the store holds for a set of rollouts, and every way it breaks the promises."""

    rollouts: int = 0
    rollout_statuses: Counter[str] = field(default_factory=Counter)
    attempt_statuses: Counter[str] = field(default_factory=Counter)
    spans_stored: int = 0
    """Spans stored for these rollouts (by the rollout id on the span)."""
    duplicates: int = 0
    """Span rows minus distinct (trace_id, span_id) in the whole store."""
    spans_reported: int = 0
    """Sum of span_count over the winning (latest, succeeded) attempts."""
    spans_winning: int = 0
    """Spans stored for the winning attempts."""
    spans_dead: int = 0
    """Spans of attempts that did not win (killed workers, expired leases, a failed last attempt)."""
    problems: list[str] = field(default_factory=list)

    @property
    def lost_or_stuck(self) -> int:
        """Rollouts that did not end, or did not succeed."""
        return self.rollouts - self.rollout_statuses.get("succeeded", 0)

    @property
    def spans_missing(self) -> int:
        return max(self.spans_reported - self.spans_winning, 0)

    @property
    def spans_extra(self) -> int:
        return max(self.spans_winning - self.spans_reported, 0) + self.duplicates


def audit_db(db: Path, rollout_ids: Sequence[str] | None = None, max_problems: int = 20) -> Audit:
    """Audit the store behind a server (it may be running: the file is read through WAL, read-only).

    For every rollout: it succeeded; its latest attempt succeeded and holds exactly the spans it reported,
    in one trace under one rollout span; every earlier attempt timed out; no span is stored twice and none
    belongs to an attempt the store does not know.
    """
    audit = Audit()

    def problem(text: str) -> None:
        if len(audit.problems) < max_problems:
            audit.problems.append(text)

    with _read(db) as conn:
        rollouts = conn.execute("SELECT rollout_id, status, attempt_id FROM rollouts").fetchall()
        if rollout_ids is not None:
            wanted = set(rollout_ids)
            missing = wanted - {r[0] for r in rollouts}
            if missing:
                problem(f"{len(missing)} enqueued rollouts are not in the store")
            rollouts = [r for r in rollouts if r[0] in wanted]
        attempts = conn.execute("SELECT attempt_id, rollout_id, status, span_count FROM attempts").fetchall()
        per_attempt = dict(
            conn.execute(
                "SELECT attempt_id, COUNT(*) FROM spans WHERE attempt_id IS NOT NULL GROUP BY attempt_id"
            ).fetchall()
        )
        traces = dict(
            conn.execute(
                "SELECT attempt_id, COUNT(DISTINCT trace_id) FROM spans WHERE attempt_id IS NOT NULL "
                "GROUP BY attempt_id"
            ).fetchall()
        )
        roots = dict(
            conn.execute(
                "SELECT attempt_id, COUNT(*) FROM spans WHERE attempt_id IS NOT NULL AND name = ? "
                "GROUP BY attempt_id",
                (semconv.ROLLOUT_SPAN,),
            ).fetchall()
        )
        span_rows = conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0]
        distinct = conn.execute(
            "SELECT COUNT(*) FROM (SELECT DISTINCT trace_id, span_id FROM spans)"
        ).fetchone()[0]
        per_rollout = dict(
            conn.execute("SELECT rollout_id, COUNT(*) FROM spans GROUP BY rollout_id").fetchall()
        )
        orphans = conn.execute(
            "SELECT COUNT(*) FROM spans WHERE attempt_id IS NULL "
            "OR attempt_id NOT IN (SELECT attempt_id FROM attempts)"
        ).fetchone()[0]

    by_rollout: dict[str, list[tuple[str, str, int | None]]] = {}
    for attempt_id, rollout_id, status, span_count in attempts:
        by_rollout.setdefault(rollout_id, []).append((attempt_id, status, span_count))
    audit.rollouts = len(rollouts)
    audit.duplicates = span_rows - distinct
    if orphans:
        problem(f"{orphans} spans belong to no known attempt")
    for rollout_id, status, latest in rollouts:
        audit.rollout_statuses[status] += 1
        audit.spans_stored += per_rollout.get(rollout_id, 0)
        if status != "succeeded":
            problem(f"rollout {rollout_id} is {status}")
        for attempt_id, attempt_status, span_count in by_rollout.get(rollout_id, []):
            audit.attempt_statuses[attempt_status] += 1
            stored = per_attempt.get(attempt_id, 0)
            if attempt_id != latest or attempt_status != "succeeded":
                audit.spans_dead += stored
                if attempt_id != latest and attempt_status != "timed_out":
                    problem(f"superseded attempt {attempt_id} of {rollout_id} is {attempt_status}")
                continue
            audit.spans_winning += stored
            audit.spans_reported += span_count or 0
            if span_count is None or stored != span_count:
                problem(f"attempt {attempt_id} of {rollout_id} reported {span_count} spans, {stored} stored")
            if traces.get(attempt_id, 0) != 1 or roots.get(attempt_id, 0) != 1:
                problem(
                    f"attempt {attempt_id}: {traces.get(attempt_id)} traces, {roots.get(attempt_id)} roots"
                )
    if audit.spans_stored != audit.spans_winning + audit.spans_dead:
        problem(
            f"{audit.spans_stored} spans stored != {audit.spans_winning} winning + {audit.spans_dead} dead"
        )
    if audit.duplicates:
        problem(f"{audit.duplicates} spans are stored twice")
    return audit


class _read:
    """A read-only connection to a (possibly live) WAL database."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(f"file:{os.fspath(db)}?mode=ro", uri=True, timeout=30)

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()
