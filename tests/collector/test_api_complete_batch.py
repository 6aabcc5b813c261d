"""``POST /api/v1/attempts/complete``: many completions in one request, each answered on its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from otel_lightning.client import calls
from otel_lightning.collector.api_routes import MAX_CLAIM_BATCH, MAX_COMPLETE_BATCH
from otel_lightning.collector.app import create_app
from otel_lightning.config import ServerSettings
from otel_lightning.exceptions import NotFoundError, StaleAttemptError
from otel_lightning.store.sqlite import SQLiteStore
from otel_lightning.types import Attempt, AttemptStatus, Outcome

OK = {"status": "succeeded", "reward": 1.0, "span_count": 3}


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = ServerSettings.resolve(env={}, db=":memory:", lease_s=30.0)
    with TestClient(create_app(SQLiteStore(":memory:"), settings, close_store=True)) as test_client:
        yield test_client


def running_attempts(client: TestClient, count: int) -> list[str]:
    tasks = [{"input": i, "rollout_id": f"r-{i}"} for i in range(count)]
    assert client.post("/api/v1/rollouts", json={"tasks": tasks}).status_code == 200
    body = {"worker_id": "w", "request_id": "c", "max_claims": count}
    claims = client.post("/api/v1/claims/batch", json=body).json()["claims"]
    assert len(claims) == count
    return [c["attempt"]["attempt_id"] for c in claims]


def complete(client: TestClient, *items: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    body = {"completions": [{"attempt_id": a, "outcome": o} for a, o in items]}
    response = client.post("/api/v1/attempts/complete", json=body)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def test_each_item_is_answered_on_its_own_in_order(client: TestClient) -> None:
    ok, stale = running_attempts(client, 2)
    assert client.post("/api/v1/rollouts/r-1/cancel").status_code == 200
    results = complete(client, (ok, OK), (stale, OK), ("no-such-attempt", OK))
    assert results[0]["attempt"]["attempt_id"] == ok
    assert results[0]["attempt"]["status"] == "succeeded" and results[0]["attempt"]["span_count"] == 3
    assert results[1]["error"]["type"] == "stale-attempt" and results[1]["error"]["status"] == 409
    assert results[2]["error"]["type"] == "not-found" and results[2]["error"]["status"] == 404
    assert all(r["error"]["title"] and r["error"]["detail"] for r in results[1:])
    assert client.get("/api/v1/rollouts/r-0").json()["status"] == "succeeded"
    assert client.get("/api/v1/rollouts/r-1").json()["status"] == "cancelled"


def test_repeating_a_completion_is_allowed_and_a_different_one_is_stale(client: TestClient) -> None:
    (attempt_id,) = running_attempts(client, 1)
    first = complete(client, (attempt_id, OK))
    again = complete(client, (attempt_id, OK), (attempt_id, OK))
    assert again == [first[0], first[0]]
    other = complete(client, (attempt_id, {"status": "failed", "error": "late"}))
    assert other[0]["error"]["type"] == "stale-attempt"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"completions": []},
        {"completions": "nope"},
        {"completions": [{"attempt_id": "a", "outcome": OK}] * (MAX_COMPLETE_BATCH + 1)},
        {"completions": [{"attempt_id": "a"}]},
        {"completions": [{"outcome": OK}]},
        {"completions": [{"attempt_id": 7, "outcome": OK}]},
        {"completions": [{"attempt_id": "a", "outcome": {"status": "running"}}]},
        {"completions": [{"attempt_id": "a", "outcome": OK}, 3]},
        [1, 2],
    ],
)
def test_malformed_requests_get_a_400_and_complete_nothing(client: TestClient, body: object) -> None:
    (attempt_id,) = running_attempts(client, 1)
    if isinstance(body, dict) and isinstance(body.get("completions"), list) and body["completions"]:
        body = {"completions": [{"attempt_id": attempt_id, "outcome": OK}, *body["completions"]]}
    response = client.post("/api/v1/attempts/complete", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "validation" and "Traceback" not in response.text
    assert client.get(f"/api/v1/attempts/{attempt_id}").json()["status"] == "running"


def test_the_route_does_not_shadow_get_attempt(client: TestClient) -> None:
    (attempt_id,) = running_attempts(client, 1)
    assert client.get(f"/api/v1/attempts/{attempt_id}").json()["attempt_id"] == attempt_id
    assert client.get("/api/v1/attempts/complete").status_code == 404  # an attempt named "complete"
    assert client.post(f"/api/v1/attempts/{attempt_id}/complete", json=OK).status_code == 200


def test_the_client_call_maps_each_error_to_its_exception(client: TestClient) -> None:
    ok, stale = running_attempts(client, 2)
    client.post("/api/v1/rollouts/r-1/cancel")
    outcome = Outcome(AttemptStatus.SUCCEEDED, reward=0.5, span_count=1)
    call = calls.complete_batch([(ok, outcome), (stale, outcome), ("nope", outcome)])
    response = client.request(call.method, call.path, json=call.body)
    done, refused, unknown = call.parse(response.json())
    assert isinstance(done, Attempt) and done.reward == 0.5 and done.status is AttemptStatus.SUCCEEDED
    assert isinstance(refused, StaleAttemptError) and ok not in str(refused)
    assert isinstance(unknown, NotFoundError)


def test_client_and_server_agree_on_the_largest_batches() -> None:
    assert calls.MAX_COMPLETE_BATCH == MAX_COMPLETE_BATCH
    assert calls.MAX_CLAIM_BATCH == MAX_CLAIM_BATCH
