"""Waiting for complete traces: ``wait`` with ``complete`` holds an ended rollout until the server has every
span its latest attempt reported, or until the grace period after it ended has passed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from starlette.testclient import TestClient

from otel_lightning import serve
from otel_lightning.collector.app import create_app
from otel_lightning.config import ServerSettings
from otel_lightning.store.sqlite import SQLiteStore
from tests.reliability.rel_support import otlp_request

PROTOBUF = {"content-type": "application/x-protobuf"}
GRACE_S = 1.0


def make_client(grace_s: float) -> TestClient:
    settings = ServerSettings.resolve(env={}, db=":memory:", completeness_grace_s=grace_s)
    return TestClient(create_app(SQLiteStore(":memory:"), settings, close_store=True))


@pytest.fixture
def client() -> Iterator[TestClient]:
    """A server whose grace period is longer than any of these tests: only spans make a trace whole."""
    with make_client(60.0) as test_client:
        yield test_client


def ended_rollout(client: TestClient, span_count: int, request_id: str) -> tuple[str, str]:
    (rollout,) = client.post("/api/v1/rollouts", json={"tasks": [{"input": 1}]}).json()["rollouts"]
    claim = client.post("/api/v1/claims", json={"worker_id": "w", "request_id": request_id}).json()
    attempt_id = claim["attempt"]["attempt_id"]
    outcome = {"status": "succeeded", "reward": 1.0, "span_count": span_count}
    assert client.post(f"/api/v1/attempts/{attempt_id}/complete", json=outcome).status_code == 200
    return rollout["rollout_id"], attempt_id


def wait(client: TestClient, ids: list[str], timeout_s: float, complete: bool = True) -> dict:
    body = {"rollout_ids": ids, "timeout_s": timeout_s, "complete": complete}
    answer = client.post("/api/v1/rollouts/wait", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_rel_wait_complete_holds_until_every_reported_span_arrived(client: TestClient) -> None:
    rollout_id, attempt_id = ended_rollout(client, 3, "c1")
    ended = wait(client, [rollout_id], 0.3, complete=False)
    assert (ended["done"], ended["waiting"]) == (True, [])
    held = wait(client, [rollout_id], 0.3)
    assert (held["done"], held["waiting"]) == (False, [rollout_id])
    assert held["rollouts"][0]["status"] == "succeeded"

    client.post("/v1/traces", content=otlp_request(rollout_id, attempt_id, 2), headers=PROTOBUF)
    assert wait(client, [rollout_id], 0.2)["done"] is False
    client.post("/v1/traces", content=otlp_request(rollout_id, attempt_id, 1, first=3), headers=PROTOBUF)
    assert wait(client, [rollout_id], 5.0)["done"] is True
    assert client.get(f"/api/v1/rollouts/{rollout_id}/trajectory").json()["complete"] is True


def test_rel_wait_complete_gives_up_on_missing_spans_after_the_grace_period() -> None:
    with make_client(GRACE_S) as client:
        rollout_id, _ = ended_rollout(client, 5, "c1")
        started = time.monotonic()
        answer = wait(client, [rollout_id], 30.0)
        assert answer["done"] is True and answer["waiting"] == []
        assert GRACE_S - 0.3 <= time.monotonic() - started < 20.0
        assert client.get(f"/api/v1/rollouts/{rollout_id}/trajectory").json()["complete"] is False


def test_rel_wait_complete_with_rollouts_that_never_ran_or_do_not_exist(client: TestClient) -> None:
    (queued,) = client.post("/api/v1/rollouts", json={"tasks": [{"input": 1}]}).json()["rollouts"]
    held = wait(client, [queued["rollout_id"]], 0.1)
    assert (held["done"], held["waiting"]) == (False, [queued["rollout_id"]])
    client.post(f"/api/v1/rollouts/{queued['rollout_id']}/cancel")
    assert wait(client, [queued["rollout_id"]], 0.1)["done"] is True  # nothing ran: no trace to wait for
    missing = wait(client, [queued["rollout_id"], "no-such-rollout"], 0.1)
    assert (missing["done"], missing["waiting"]) == (False, ["no-such-rollout"])
    answer = client.post("/api/v1/rollouts/wait", json={"rollout_ids": [], "complete": "yes"})
    assert answer.status_code == 400


def test_rel_lightning_wait_complete() -> None:
    with serve(completeness_grace_s=30.0) as lightning, httpx.Client(base_url=lightning.url) as http:
        (rollout,) = lightning.enqueue([{"q": 1}])
        claim = http.post("/api/v1/claims", json={"worker_id": "w", "request_id": "c1"}).json()
        attempt_id = claim["attempt"]["attempt_id"]
        outcome = {"status": "succeeded", "reward": 1.0, "span_count": 4}
        http.post(f"/api/v1/attempts/{attempt_id}/complete", json=outcome).raise_for_status()

        assert lightning.wait([rollout], timeout_s=5)[0].reward == 1.0
        with pytest.raises(TimeoutError, match="1 of 1 rollouts"):
            lightning.wait([rollout], timeout_s=0.5, complete=True)
        body = otlp_request(rollout.rollout_id, attempt_id, 4)
        late = threading.Timer(
            0.3, lambda: httpx.post(f"{lightning.url}/v1/traces", content=body, headers=PROTOBUF)
        )
        late.start()
        started = time.monotonic()
        (final,) = lightning.wait([rollout.rollout_id], timeout_s=10, complete=True)
        assert 0.25 <= time.monotonic() - started < 20.0
        late.join()
        assert final.rollout_id == rollout.rollout_id and lightning.trajectory(rollout.rollout_id).complete
