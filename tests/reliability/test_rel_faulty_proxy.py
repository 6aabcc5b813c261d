"""The fault-injecting proxy itself: it forwards faithfully, and resets, delays and blackholes on demand."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from otel_lightning.testing.faulty_proxy import Faults, FaultyProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def round_trip(port: int, payload: bytes, timeout_s: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_rel_proxy_forwards_both_ways_unchanged(echo_port: int) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, many chunks
    with FaultyProxy(echo_port) as proxy:
        assert round_trip(proxy.port, payload) == payload
        assert proxy.stats.bytes_up == proxy.stats.bytes_down == len(payload)
        assert proxy.stats.resets == 0


def test_rel_proxy_resets_connections(echo_port: int) -> None:
    with FaultyProxy(echo_port, Faults(reset_probability=1.0, seed=3)) as proxy:
        with pytest.raises(ConnectionResetError):
            round_trip(proxy.port, b"x" * 10_000)
        assert proxy.stats.resets == 1
        proxy.set_faults(Faults())
        assert round_trip(proxy.port, b"hello") == b"hello"


def test_rel_proxy_delays_and_blackholes(echo_port: int) -> None:
    with FaultyProxy(echo_port, Faults(delay_s=(0.1, 0.1))) as proxy:
        started = time.monotonic()
        assert round_trip(proxy.port, b"slow") == b"slow"
        assert time.monotonic() - started >= 0.2  # one delay each way
        proxy.set_faults(Faults())
        proxy.blackhole(0.6)
        started = time.monotonic()
        assert round_trip(proxy.port, b"held, not lost") == b"held, not lost"
        assert time.monotonic() - started >= 0.5


def test_rel_proxy_limits(echo_port: int) -> None:
    with pytest.raises(ValueError, match="loopback"):
        FaultyProxy(echo_port, upstream_host="10.0.0.1")
    with pytest.raises(ValueError):
        Faults(reset_probability=2.0)
    with FaultyProxy(echo_port, max_connections=1) as proxy:
        with pytest.raises(ValueError):
            proxy.blackhole(1000)
        with socket.create_connection(("127.0.0.1", proxy.port)) as held:
            held.sendall(b"a")
            assert held.recv(1) == b"a"
            with pytest.raises(ConnectionError):
                round_trip(proxy.port, b"one too many")
            assert proxy.stats.refused == 1
            proxy.reset_all()
            with pytest.raises(ConnectionResetError):
                held.sendall(b"b")
                held.recv(1)
        assert proxy.stats.resets == 1
