"""Inputs that once made the server answer 500 (found by schemathesis and by hand) are refused with 400."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from otel_lightning.collector.app import create_app
from otel_lightning.config import ServerSettings
from otel_lightning.store.sqlite import SQLiteStore
from tests.reliability.rel_support import ServerProc

TOO_BIG = 2**63


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = ServerSettings.resolve(env={}, db=":memory:")
    app = create_app(SQLiteStore(":memory:"), settings, close_store=True)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_rel_deeply_nested_json_is_a_400(client: TestClient) -> None:
    for depth in (100_000, 990):
        body = '{"tasks": [{"input": ' + "[" * depth + "]" * depth + "}]}"
        answer = client.post("/api/v1/rollouts", content=body, headers={"content-type": "application/json"})
        assert answer.status_code == 400 and answer.json()["type"] == "validation", answer.text


def test_rel_integers_beyond_sqlite_are_a_400_not_a_500(client: TestClient) -> None:
    assert client.get("/api/v1/rollouts", params={"offset": TOO_BIG, "limit": TOO_BIG}).json() == {
        "rollouts": []
    }
    assert client.get("/api/v1/rollouts", params={"resource_version": TOO_BIG}).status_code == 400
    assert client.get("/api/v1/resources/e", params={"version": TOO_BIG}).status_code == 400
    task = {"input": 1, "resource_version": TOO_BIG}
    assert client.post("/api/v1/rollouts", json={"tasks": [task]}).status_code == 400

    client.post("/api/v1/rollouts", json={"tasks": [{"input": 1}]})
    attempt_id = client.post("/api/v1/claims", json={"worker_id": "w"}).json()["attempt"]["attempt_id"]
    huge = {"status": "succeeded", "span_count": TOO_BIG}
    assert client.post(f"/api/v1/attempts/{attempt_id}/complete", json=huge).status_code == 400
    assert client.get(f"/api/v1/attempts/{attempt_id}").json()["status"] == "running"
    fine = {"status": "succeeded", "span_count": 2**63 - 1}
    assert client.post(f"/api/v1/attempts/{attempt_id}/complete", json=fine).status_code == 200


@pytest.mark.slow
def test_rel_a_client_gone_mid_body_is_not_a_server_error(tmp_path: Path) -> None:
    server = ServerProc(tmp_path / "server.db", tmp_path / "server.log").start()
    try:
        for path in ("/v1/traces", "/api/v1/rollouts"):
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                sock.sendall(head.encode() + b'Content-Length: 1000\r\n\r\n{"partial": ')
                time.sleep(0.2)
        time.sleep(0.5)
        assert httpx.get(f"{server.url}/api/v1/health").status_code == 200
        assert "Traceback" not in server.log_text() and "unhandled" not in server.log_text()
    finally:
        server.stop()
