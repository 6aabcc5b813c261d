"""The REST API through Starlette's TestClient: answers, errors as problem documents, long-polls."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from otel_lightning.collector.app import create_app
from otel_lightning.collector.openapi import PATHS
from otel_lightning.config import ServerSettings
from otel_lightning.store.sqlite import SQLiteStore


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = ServerSettings.resolve(env={}, db=":memory:", lease_s=30.0)
    with TestClient(create_app(SQLiteStore(":memory:"), settings, close_store=True)) as test_client:
        yield test_client


def enqueue(client: TestClient, *tasks: dict) -> list[dict]:
    response = client.post("/api/v1/rollouts", json={"tasks": list(tasks)})
    assert response.status_code == 200, response.text
    return response.json()["rollouts"]


def claim(client: TestClient, request_id: str = "r1", wait_s: float = 0) -> dict | None:
    response = client.post(
        "/api/v1/claims", json={"worker_id": "w", "request_id": request_id, "wait_s": wait_s}
    )
    assert response.status_code in (200, 204), response.text
    return response.json() if response.status_code == 200 else None


def test_health_and_openapi_cover_every_route(client: TestClient) -> None:
    assert client.get("/api/v1/health").json()["status"] == "ok"
    document = client.get("/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    routes = {
        (route.path, method.lower())
        for route in client.app.routes  # type: ignore[attr-defined]
        for method in (route.methods or ())
        if route.path.startswith("/api/") and method != "HEAD"
    }
    documented = {(path, method) for path, ops in PATHS.items() for method in ops}
    assert routes == documented


def test_enqueue_is_idempotent_by_rollout_id(client: TestClient) -> None:
    first = enqueue(client, {"input": {"q": 1}, "rollout_id": "r-1"})
    again = enqueue(client, {"input": {"q": "other"}, "rollout_id": "r-1"})
    assert first == again
    assert len(client.get("/api/v1/rollouts").json()["rollouts"]) == 1


def test_claim_heartbeat_complete_and_fencing(client: TestClient) -> None:
    enqueue(client, {"input": "x", "rollout_id": "r-1"})
    got = claim(client)
    assert got is not None and got["rollout"]["rollout_id"] == "r-1"
    assert claim(client) == got, "a repeated request id returns the same claim"
    assert claim(client, "r2") is None, "nothing else is queued"
    attempt_id = got["attempt"]["attempt_id"]
    beat = client.post(f"/api/v1/attempts/{attempt_id}/heartbeat", json={"lease_s": 60})
    assert beat.status_code == 200
    assert beat.json()["lease_expires_ns"] > got["attempt"]["lease_expires_ns"]
    done = client.post(
        f"/api/v1/attempts/{attempt_id}/complete",
        json={"status": "succeeded", "reward": 0.5, "span_count": 0},
    )
    assert done.status_code == 200 and done.json()["status"] == "succeeded"
    rollout = client.get("/api/v1/rollouts/r-1").json()
    assert rollout["status"] == "succeeded" and rollout["reward"] == 0.5
    stale = client.post(f"/api/v1/attempts/{attempt_id}/heartbeat", json={})
    assert stale.status_code == 409
    assert stale.json()["type"] == "stale-attempt"
    other = client.post(f"/api/v1/attempts/{attempt_id}/complete", json={"status": "failed", "error": "late"})
    assert other.status_code == 409
    assert client.get("/api/v1/rollouts/r-1").json()["status"] == "succeeded"


def test_cancel_reaches_the_running_attempt(client: TestClient) -> None:
    enqueue(client, {"input": "x", "rollout_id": "r-1"})
    got = claim(client)
    assert got is not None
    assert client.post("/api/v1/rollouts/r-1/cancel").json()["status"] == "cancelled"
    beat = client.post(f"/api/v1/attempts/{got['attempt']['attempt_id']}/heartbeat", json={})
    assert beat.status_code == 409


def test_claim_long_poll_wakes_on_enqueue(client: TestClient) -> None:
    results: list[dict | None] = []
    thread = threading.Thread(target=lambda: results.append(claim(client, "long", wait_s=10)))
    started = time.monotonic()
    thread.start()
    time.sleep(0.3)
    enqueue(client, {"input": "x", "rollout_id": "late"})
    thread.join(10)
    assert results and results[0] is not None and results[0]["rollout"]["rollout_id"] == "late"
    assert time.monotonic() - started < 5


def test_wait_long_poll(client: TestClient) -> None:
    enqueue(client, {"input": "x", "rollout_id": "r-1"})
    response = client.post("/api/v1/rollouts/wait", json={"rollout_ids": ["r-1"], "timeout_s": 0.2})
    assert response.json()["done"] is False
    got = claim(client)
    assert got is not None

    def finish() -> None:
        time.sleep(0.3)
        client.post(f"/api/v1/attempts/{got['attempt']['attempt_id']}/complete", json={"status": "succeeded"})

    thread = threading.Thread(target=finish)
    thread.start()
    response = client.post("/api/v1/rollouts/wait", json={"rollout_ids": ["r-1"], "timeout_s": 10})
    thread.join()
    assert response.json()["done"] is True
    assert response.json()["rollouts"][0]["status"] == "succeeded"


def test_resources_publish_compare_and_swap(client: TestClient) -> None:
    assert client.get("/api/v1/resources/exp").json()["version"] == 0
    body = {
        "resources": {"prompt": {"kind": "prompt_template", "template": "Hi {name}"}},
        "expected_version": 0,
    }
    first = client.post("/api/v1/resources/exp", json=body)
    assert first.status_code == 201 and first.json()["version"] == 1
    conflict = client.post("/api/v1/resources/exp", json=body)
    assert conflict.status_code == 409 and conflict.json()["type"] == "conflict"
    body["expected_version"] = 1
    body["resources"]["prompt"]["template"] = "Hello {name}"
    assert client.post("/api/v1/resources/exp", json=body).json()["version"] == 2
    assert client.get("/api/v1/resources/exp", params={"version": 1}).json()["resources"]["prompt"][
        "template"
    ] == ("Hi {name}")
    assert client.get("/api/v1/resources/exp").json()["version"] == 2
    assert [v["version"] for v in client.get("/api/v1/resources/exp/versions").json()["versions"]] == [1, 2]
    assert client.get("/api/v1/resources/exp", params={"version": 9}).status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/api/v1/rollouts", {"tasks": []}, 400),
        ("post", "/api/v1/rollouts", {"tasks": [{"no_input": 1}]}, 400),
        ("post", "/api/v1/rollouts", {"tasks": [{"input": 1, "max_attempts": 0}]}, 400),
        ("post", "/api/v1/rollouts", {"tasks": "nope"}, 400),
        ("post", "/api/v1/rollouts", [1, 2], 400),
        ("post", "/api/v1/claims", {}, 400),
        ("post", "/api/v1/claims", {"worker_id": "w", "lease_s": -1}, 400),
        ("post", "/api/v1/attempts/nope/complete", {"status": "succeeded"}, 404),
        ("post", "/api/v1/attempts/nope/complete", {"status": "running"}, 400),
        (
            "post",
            "/api/v1/resources/e",
            {"resources": {"p": {"kind": "prompt_template", "template": "{"}}},
            400,
        ),
        ("post", "/api/v1/resources/e", {"resources": {"p": {"kind": "nope"}}}, 400),
        ("post", "/api/v1/resources/e", {"resources": {"p": {"kind": "sampling", "temperature": 9}}}, 400),
        ("get", "/api/v1/rollouts/missing", None, 404),
        ("get", "/api/v1/rollouts?limit=x", None, 400),
        ("get", "/api/v1/rollouts?status=bogus", None, 400),
        ("get", "/api/v1/nothing-here", None, 404),
    ],
)
def test_bad_input_gets_a_problem_document(
    client: TestClient, method: str, path: str, body: object, status: int
) -> None:
    response = client.request(method, path, json=body)
    assert response.status_code == status, response.text
    problem = response.json()
    assert problem["status"] == status and problem["detail"]
    assert "Traceback" not in response.text


def test_invalid_json_body_is_a_400_and_nothing_is_written(client: TestClient) -> None:
    response = client.post(
        "/api/v1/rollouts", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    partly_bad = {"tasks": [{"input": 1, "rollout_id": "good"}, {"input": 2, "max_attempts": "x"}]}
    assert client.post("/api/v1/rollouts", json=partly_bad).status_code == 400
    assert client.get("/api/v1/rollouts").json()["rollouts"] == []


def test_api_token_is_required_when_set() -> None:
    settings = ServerSettings.resolve(env={}, db=":memory:", api_token="s3cret")
    with TestClient(create_app(SQLiteStore(":memory:"), settings, close_store=True)) as client:
        assert client.get("/api/v1/health").status_code == 200
        assert client.get("/api/v1/rollouts").status_code == 401
        ok = client.get("/api/v1/rollouts", headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_batch_claim_takes_up_to_max_and_a_retry_returns_the_same_claims(client: TestClient) -> None:
    enqueue(client, *({"input": i, "rollout_id": f"r-{i}"} for i in range(5)))
    body = {"worker_id": "w", "request_id": "batch-1", "max_claims": 3}
    first = client.post("/api/v1/claims/batch", json=body).json()["claims"]
    assert [c["rollout"]["rollout_id"] for c in first] == ["r-0", "r-1", "r-2"]
    again = client.post("/api/v1/claims/batch", json=body).json()["claims"]
    assert [c["attempt"]["attempt_id"] for c in again] == [c["attempt"]["attempt_id"] for c in first]
    rest = client.post("/api/v1/claims/batch", json={**body, "request_id": "batch-2", "max_claims": 10})
    assert [c["rollout"]["rollout_id"] for c in rest.json()["claims"]] == ["r-3", "r-4"]
    empty = client.post("/api/v1/claims/batch", json={**body, "request_id": "batch-3", "wait_s": 0.1})
    assert empty.status_code == 200 and empty.json()["claims"] == []
    assert client.post("/api/v1/claims/batch", json={**body, "max_claims": 0}).status_code == 400
