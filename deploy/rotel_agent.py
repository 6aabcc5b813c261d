"""A per-host OTLP agent in front of an otel-lightning server, using rotel (``pip install rotel``).

rotel is a small OpenTelemetry collector written in Rust; its PyPI wheel carries the binary
(``rotel/rotel-agent`` in the package folder). Agents on the host send spans to it (OTLP/HTTP); it batches
them and forwards them to the server's ``/v1/traces`` and ``/v1/logs``, retrying while the server is down or
answers 503. It buffers in memory only (this version has no persistent queue): it covers server restarts and
overload, not a crash of the agent itself. For a durable buffer, use the OpenTelemetry Collector
configuration beside this file (``otelcol-gateway.yaml``).

Run it in the foreground::

    python deploy/rotel_agent.py --listen 4318 --server http://otel-lightning.internal:8318

then point the workers' spans at it, and their REST calls at the server::

    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:4318/v1/traces \\
    OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=http://127.0.0.1:4318/v1/logs \\
    otel-lightning worker my_agent:run --server http://otel-lightning.internal:8318

Tested with rotel 0.0.1a15 from PyPI (its binary reports ``0.0.1-alpha10``). Things learnt from it that the
options below account for:

- ``--otlp-exporter-retry-max-elapsed-time 0s`` means *no retry* (the Collector's 0 means "forever"): a
  batch is dropped at the first failure. "Forever" is spelled as a long duration (one year here).
- 503 and connection errors are retried with exponential backoff; ``Retry-After`` is not honoured.
- 401 and 413 are not retried: the batch is dropped. Hence ``--api-token`` (the server guards ``/v1/*`` with
  it) and a batch size under the server's 20 MiB body cap (rotel's default batch of 8192 LLM spans is over).
- The gRPC receiver cannot be turned off, and port 0 makes it panic: it needs a real port of its own.
- On SIGTERM it tries to deliver what it holds for ~3 s, then drops the rest.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from types import FrameType
from typing import IO

logger = logging.getLogger(__name__)

DEFAULT_BATCH = 2048
"""Spans per forwarded request: 2048 x ~3.4 KiB LLM spans is ~7 MiB, under the server's 20 MiB body cap
(rotel's own default, 8192, is not: the server answers 413 and rotel drops the batch)."""
FOREVER = "8760h"
"""rotel's stand-in for "retry forever": one year (its ``0s`` would mean "never retry")."""


@dataclass(frozen=True, slots=True)
class RotelOptions:
    """How the agent listens, where it forwards, and how patiently."""

    listen_port: int
    """OTLP/HTTP receiver port (``/v1/traces``, ``/v1/logs``); 4318 on a real host, a free port in tests."""
    server_url: str
    """Base URL of the otel-lightning server (or of the load balancer in front of the replicas)."""
    listen_host: str = "127.0.0.1"
    """Interface of both receivers; ``0.0.0.0`` to take spans from other hosts."""
    grpc_port: int | None = None
    """OTLP/gRPC receiver port; None picks a free one (rotel cannot run without a gRPC receiver)."""
    retry_initial_backoff: str = "200ms"
    retry_max_backoff: str = "5s"
    """Longest pause between two tries: also the longest delay before delivery resumes after an outage."""
    retry_max_elapsed: str = FOREVER
    """How long one batch is retried before it is dropped."""
    request_timeout: str = "10s"
    """Per request; the server answers only once the spans are committed."""
    batch_max_size: int = DEFAULT_BATCH
    """Spans per forwarded request; the server caps bodies at 20 MiB after decompression."""
    batch_timeout: str = "200ms"
    """How long a partial batch waits: small, so a worker's spans reach the server soon after its flush."""
    compression: str = "gzip"
    """``gzip`` (the benchmark's LLM spans shrink 7.5x: for a server on another host) or ``none``."""
    api_token: str | None = None
    """The server's ``--api-token``, when it has one: OTLP requests need it too."""


def rotel_binary() -> Path:
    """The ``rotel-agent`` binary inside the installed ``rotel`` package.

    Raises:
        ImportError: rotel is not installed, or its wheel carries no binary for this platform.
    """
    spec = find_spec("rotel")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("rotel is not installed: pip install rotel")
    binary = Path(next(iter(spec.submodule_search_locations))) / "rotel-agent"
    if not os.access(binary, os.X_OK):
        raise ImportError(f"the rotel package has no runnable agent binary at {binary}")
    return binary


def rotel_command(options: RotelOptions, grpc_port: int) -> list[str]:
    """The command line that starts rotel in the foreground with ``options``."""
    server = options.server_url.rstrip("/")
    return [
        str(rotel_binary()),
        "start",
        "--otlp-http-endpoint",
        f"{options.listen_host}:{options.listen_port}",
        "--otlp-grpc-endpoint",
        f"{options.listen_host}:{grpc_port}",
        "--exporter",
        "otlp",
        # The server speaks OTLP/HTTP only; rotel defaults to gRPC. rotel appends /v1/traces, /v1/logs.
        "--otlp-exporter-protocol",
        "http",
        "--otlp-exporter-endpoint",
        server,
        "--otlp-exporter-compression",
        options.compression,
        "--otlp-exporter-request-timeout",
        options.request_timeout,
        "--otlp-exporter-retry-initial-backoff",
        options.retry_initial_backoff,
        "--otlp-exporter-retry-max-backoff",
        options.retry_max_backoff,
        "--otlp-exporter-retry-max-elapsed-time",
        options.retry_max_elapsed,
        "--batch-max-size",
        str(options.batch_max_size),
        "--batch-timeout",
        options.batch_timeout,
    ]


class RotelAgent:
    """A rotel process forwarding OTLP to an otel-lightning server; a context manager.

    Args:
        options: where to listen and forward.
        log: where rotel's own log goes (a file opened for writing); None inherits this process's stdout.
    """

    def __init__(self, options: RotelOptions, log: IO[bytes] | None = None) -> None:
        self.options = options
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the agent's OTLP/HTTP receiver."""
        host = "127.0.0.1" if self.options.listen_host in ("0.0.0.0", "") else self.options.listen_host
        return f"http://{host}:{self.options.listen_port}"

    @property
    def traces_endpoint(self) -> str:
        """The value for ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``."""
        return f"{self.url}/v1/traces"

    @property
    def logs_endpoint(self) -> str:
        """The value for ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT``."""
        return f"{self.url}/v1/logs"

    def start(self, timeout_s: float = 10.0) -> RotelAgent:
        """Start rotel and wait until its HTTP receiver accepts connections.

        Raises:
            ImportError: rotel is not installed.
            RuntimeError: rotel exited or did not listen within ``timeout_s``.
        """
        grpc_port = self.options.grpc_port or _free_port(self.options.listen_host)
        command = rotel_command(self.options, grpc_port)
        # NO_COLOR: plain text logs. ROTEL_* variables are dropped: the command line is the whole config.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROTEL_")}
        env["NO_COLOR"] = "1"
        if self.options.api_token:  # in the environment, not the command line, where `ps` would show it
            env["ROTEL_OTLP_EXPORTER_CUSTOM_HEADERS"] = f"authorization=Bearer {self.options.api_token}"
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rotel exited with {self.proc.returncode} (see its log)")
            try:
                socket.create_connection(("127.0.0.1", self.options.listen_port), timeout=0.2).close()
            except OSError:
                time.sleep(0.02)
                continue
            logger.info("rotel listening on %s, forwarding to %s", self.url, self.options.server_url)
            return self
        self.stop()
        raise RuntimeError(f"rotel did not listen on port {self.options.listen_port} in {timeout_s} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop rotel (SIGTERM: it tries to deliver what it holds for ~3 s, then drops the rest)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> RotelAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host if host not in ("", "0.0.0.0") else "127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--listen", type=int, required=True, help="OTLP/HTTP port to receive on (e.g. 4318)")
    parser.add_argument("--server", required=True, help="otel-lightning server or load balancer base URL")
    parser.add_argument("--host", default="127.0.0.1", help="interface to receive on (default: 127.0.0.1)")
    parser.add_argument("--grpc-port", type=int, default=None, help="OTLP/gRPC port (default: a free one)")
    parser.add_argument("--retry-max-backoff", default="5s", help="longest pause between retries (5s)")
    parser.add_argument("--retry-max-elapsed", default=FOREVER, help=f"give a batch up after ({FOREVER})")
    parser.add_argument(
        "--api-token",
        default=os.environ.get("OTEL_LIGHTNING_API_TOKEN"),
        help="the server's API token (default: $OTEL_LIGHTNING_API_TOKEN)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run rotel in the foreground until SIGINT or SIGTERM."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = RotelOptions(
        listen_port=args.listen,
        server_url=args.server,
        listen_host=args.host,
        grpc_port=args.grpc_port,
        retry_max_backoff=args.retry_max_backoff,
        retry_max_elapsed=args.retry_max_elapsed,
        api_token=args.api_token,
    )
    agent = RotelAgent(options).start()
    proc = agent.proc
    assert proc is not None

    def _forward(signum: int, frame: FrameType | None) -> None:
        # Only signal here: waiting inside the handler would deadlock with the wait() below.
        proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, _forward)
    signal.signal(signal.SIGINT, _forward)
    return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
