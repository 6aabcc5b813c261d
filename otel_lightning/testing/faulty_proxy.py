"""A fault-injecting TCP proxy for reliability tests: resets, delays and a blackhole, on loopback only.

Put it between clients and a server to check that nothing is lost or duplicated when the network misbehaves::

    with FaultyProxy(server_port, Faults(reset_probability=0.05, delay_s=(0.0, 0.05), seed=1)) as proxy:
        worker = Worker(agent, proxy.url)   # REST and OTLP both go through the proxy
        proxy.blackhole(3.0)                # nothing moves for 3 s; then everything flows again

A reset cuts a chunk of data (a request, or an answer) at a random byte, then closes both sides of the
connection with TCP RST (``SO_LINGER`` 0): a request can be cut before the server has it whole, or its answer
cut after the server acted on it. A blackhole stalls every connection and every new one for a while, as a
network partition does to TCP: what was sent is delivered late, not lost. Everything is bounded: connections,
bytes buffered per connection (the proxy stops reading while it cannot write), and the length of a blackhole.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_MAX_BLACKHOLE_S = 300.0


@dataclass(frozen=True, slots=True)
class Faults:
    """What the proxy does to each connection."""

    reset_probability: float = 0.0
    """Chance that a chunk of data read from either side (about one request or answer) is cut and the
    connection reset."""
    delay_s: tuple[float, float] = (0.0, 0.0)
    """Each chunk forwarded waits a random time in this range."""
    seed: int | None = None
    """Seed of the proxy's random choices (None: unseeded)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.reset_probability <= 1.0:
            raise ValueError("reset_probability must be within [0, 1]")
        if not 0.0 <= self.delay_s[0] <= self.delay_s[1] <= 60.0:
            raise ValueError("delay_s must be a range within [0, 60] seconds")


@dataclass(slots=True)
class ProxyStats:
    """What the proxy has done so far."""

    connections: int = 0
    resets: int = 0
    refused: int = 0
    """Connections closed at once because the proxy was at its connection limit or upstream was down."""
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass(slots=True, eq=False)
class _Connection:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    closed: bool = False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _abort(writer: asyncio.StreamWriter | None) -> None:
    """Close with TCP RST rather than FIN."""
    if writer is None or writer.transport.is_closing():
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultyProxy:
    """A TCP proxy from a free loopback port to ``upstream_host:upstream_port``, run in a background thread.

    Args:
        upstream_port: the port of the server behind the proxy.
        faults: what to do to connections; :meth:`set_faults` changes it while running.
        upstream_host: a loopback address.
        host: the loopback address to listen on.
        port: 0 picks a free port.
        max_connections: connections beyond this are closed at once.

    Raises:
        ValueError: an address is not a loopback address.
    """

    def __init__(
        self,
        upstream_port: int,
        faults: Faults | None = None,
        *,
        upstream_host: str = "127.0.0.1",
        host: str = "127.0.0.1",
        port: int = 0,
        max_connections: int = 1024,
    ) -> None:
        if not (_is_loopback(upstream_host) and _is_loopback(host)):
            raise ValueError("the faulty proxy works on loopback addresses only")
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.stats = ProxyStats()
        self._faults = faults or Faults()
        self._random = random.Random(self._faults.seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._reopen: asyncio.TimerHandle | None = None
        self._connections: set[_Connection] = set()
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        """``http://host:port`` of the proxy."""
        return f"http://{self.host}:{self.port}"

    # --- control, from any thread ------------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> FaultyProxy:
        """Start listening; returns once the port is bound."""
        self._thread = threading.Thread(target=self._run, name="faulty-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s) or self._server is None:
            raise RuntimeError("the faulty proxy did not start")
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Reset every connection and stop."""
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._shutdown)
        self._thread.join(timeout_s)
        self._thread = None

    def set_faults(self, faults: Faults) -> None:
        """Apply ``faults`` from now on."""
        self._call(self._set_faults, faults)

    def blackhole(self, seconds: float) -> None:
        """Stall every connection, and new ones, for ``seconds`` (at most 300); then forward what waited."""
        if not 0 < seconds <= _MAX_BLACKHOLE_S:
            raise ValueError(f"a blackhole lasts between 0 and {_MAX_BLACKHOLE_S:g} seconds")
        self._call(self._blackhole, seconds)

    def reset_all(self) -> None:
        """Reset every open connection now."""
        self._call(self._reset_all)

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        if self._loop is None:
            raise RuntimeError("the faulty proxy is not running")
        done = threading.Event()

        def run() -> None:
            try:
                fn(*args)
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(5.0)

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the event loop ----------------------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._listen())
        except OSError:
            logger.exception("the faulty proxy could not listen on %s:%d", self.host, self.port)
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def _shutdown(self) -> None:
        assert self._loop is not None
        if self._server is not None:
            self._server.close()
        self._reset_all(count=False)
        if self._flowing is not None:
            self._flowing.set()
        self._loop.call_later(0.05, self._loop.stop)

    def _set_faults(self, faults: Faults) -> None:
        self._faults = faults
        if faults.seed is not None:
            self._random.seed(faults.seed)

    def _blackhole(self, seconds: float) -> None:
        assert self._loop is not None and self._flowing is not None
        self._flowing.clear()
        if self._reopen is not None:
            self._reopen.cancel()
        self._reopen = self._loop.call_later(seconds, self._flowing.set)

    def _reset_all(self, count: bool = True) -> None:
        for conn in list(self._connections):
            self._reset(conn, count)

    def _reset(self, conn: _Connection, count: bool = True) -> None:
        if conn.closed:
            return
        conn.closed = True
        if count:
            self.stats.resets += 1
        _abort(conn.client)
        _abort(conn.upstream)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        conn = _Connection(client=writer)
        if len(self._connections) >= self.max_connections:
            self.stats.refused += 1
            _abort(writer)
            return
        self._connections.add(conn)
        self.stats.connections += 1
        try:
            await self._flowing.wait()
            try:
                up_reader, upstream = await asyncio.wait_for(asyncio.open_connection(*self.upstream), 10)
            except (OSError, TimeoutError):
                self.stats.refused += 1
                conn.closed = True
                _abort(writer)
                return
            conn.upstream = upstream
            if conn.closed:  # reset while connecting
                _abort(upstream)
                return
            await asyncio.gather(
                self._pipe(conn, reader, upstream, "up"),
                self._pipe(conn, up_reader, writer, "down"),
            )
        finally:
            self._connections.discard(conn)
            if not conn.closed:
                conn.closed = True
                for side in (writer, conn.upstream):
                    if side is not None:
                        side.close()

    async def _pipe(
        self, conn: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str
    ) -> None:
        assert self._flowing is not None
        try:
            while not conn.closed:
                data = await reader.read(_CHUNK)
                if not data:
                    if not conn.closed and writer.can_write_eof():
                        writer.write_eof()  # half-close: the other direction may still carry an answer
                    return
                await self._flowing.wait()
                low, high = self._faults.delay_s
                if high > 0:
                    await asyncio.sleep(self._random.uniform(low, high))
                if conn.closed:
                    return
                if self._random.random() < self._faults.reset_probability:
                    # Forward the bytes before the cut, then reset both sides.
                    writer.write(data[: self._random.randint(0, len(data))])
                    with contextlib.suppress(ConnectionError):
                        await writer.drain()
                    self._reset(conn)
                    return
                if direction == "up":
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            self._reset(conn, count=False)
