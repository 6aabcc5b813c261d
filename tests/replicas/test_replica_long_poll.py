"""Long-polls on one replica wake when another replica commits a change (PostgreSQL LISTEN/NOTIFY), without
waiting for the notifier's periodic recheck."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from otel_lightning.collector.app import create_app
from otel_lightning.config import ServerSettings
from otel_lightning.store.open import open_store

RECHECK_S = 60.0  # far longer than any wait below: only the change feed can wake the long-polls in time


@pytest.fixture
def two_replicas(pg_database: str) -> Iterator[tuple[TestClient, TestClient]]:
    settings = ServerSettings.resolve(env={}, db=pg_database, lease_s=30.0)
    apps = [create_app(open_store(pg_database, pool_size=4), settings, close_store=True) for _ in range(2)]
    for app in apps:
        app.state.notifier.recheck_s = RECHECK_S
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        time.sleep(0.5)  # the change feeds are listening
        yield a, b


def in_thread(fn: object) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(fn()))  # type: ignore[operator]
    thread.start()
    return thread, out


def test_replica_claim_long_poll_wakes_on_another_replicas_enqueue(
    two_replicas: tuple[TestClient, TestClient],
) -> None:
    a, b = two_replicas
    body = {"worker_id": "w", "request_id": "req-1", "wait_s": 20}
    thread, out = in_thread(lambda: b.post("/api/v1/claims", json=body))
    time.sleep(0.5)  # the claim is waiting on b
    start = time.monotonic()
    assert a.post("/api/v1/rollouts", json={"tasks": [{"input": 1, "rollout_id": "r1"}]}).status_code == 200
    thread.join(15)
    assert time.monotonic() - start < 5
    (response,) = out
    assert response.status_code == 200  # type: ignore[attr-defined]
    assert response.json()["rollout"]["rollout_id"] == "r1"  # type: ignore[attr-defined]


def test_replica_wait_wakes_on_another_replicas_completion(
    two_replicas: tuple[TestClient, TestClient],
) -> None:
    a, b = two_replicas
    a.post("/api/v1/rollouts", json={"tasks": [{"input": 1, "rollout_id": "r1"}]})
    claim = a.post("/api/v1/claims", json={"worker_id": "w", "request_id": "req-1"}).json()
    thread, out = in_thread(
        lambda: b.post("/api/v1/rollouts/wait", json={"rollout_ids": ["r1"], "timeout_s": 20})
    )
    time.sleep(0.5)
    start = time.monotonic()
    attempt_id = claim["attempt"]["attempt_id"]
    done = a.post(f"/api/v1/attempts/{attempt_id}/complete", json={"status": "succeeded", "reward": 1.0})
    assert done.status_code == 200, done.text
    thread.join(15)
    assert time.monotonic() - start < 5
    (response,) = out
    assert response.json()["done"] is True  # type: ignore[attr-defined]
    assert response.json()["rollouts"][0]["status"] == "succeeded"  # type: ignore[attr-defined]
