"""Retries are harmless against a real server process: the same OTLP request sent again stores its spans
once, and a completion or heartbeat from a superseded attempt is refused (409) without changing anything."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from otel_lightning import connect
from otel_lightning.types import AttemptStatus, RolloutStatus
from tests.reliability.rel_support import ServerProc, otlp_request, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

PROTOBUF = {"content-type": "application/x-protobuf"}


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    proc = ServerProc(tmp_path / "server.db", tmp_path / "server.log", lease_s=30.0).start()
    yield proc
    proc.stop()


def claim(http: httpx.Client, request_id: str, lease_s: float = 30.0) -> dict:
    answer = http.post(
        "/api/v1/claims", json={"worker_id": "w", "request_id": request_id, "lease_s": lease_s}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_rel_the_same_otlp_request_twice_stores_its_spans_once(server: ServerProc) -> None:
    with connect(server.url) as lightning, httpx.Client(base_url=server.url, timeout=30) as http:
        (rollout,) = lightning.enqueue([{"q": 1}])
        attempt = claim(http, "c1")["attempt"]
        body = otlp_request(rollout.rollout_id, attempt["attempt_id"], 7)
        assert http.post("/v1/traces", content=body, headers=PROTOBUF).status_code == 200
        # Again, and then five times at once (as retrying exporters would after lost answers).
        assert http.post("/v1/traces", content=body, headers=PROTOBUF).status_code == 200
        with ThreadPoolExecutor(5) as pool:
            codes = list(
                pool.map(
                    lambda _: (
                        httpx.post(f"{server.url}/v1/traces", content=body, headers=PROTOBUF).status_code
                    ),
                    range(5),
                )
            )
        assert codes == [200] * 5
        outcome = {"status": "succeeded", "reward": 1.0, "span_count": 7}
        assert (
            http.post(f"/api/v1/attempts/{attempt['attempt_id']}/complete", json=outcome).status_code == 200
        )
        spans = lightning.spans(rollout.rollout_id, attempt_id="all")
        assert len(spans) == len({(s.trace_id, s.span_id) for s in spans}) == 7
        trajectory = lightning.trajectory(rollout.rollout_id)
        assert trajectory.complete and trajectory.span_count == 7


def test_rel_a_stale_attempt_is_refused_and_changes_nothing(server: ServerProc) -> None:
    with connect(server.url) as lightning, httpx.Client(base_url=server.url, timeout=30) as http:
        (rollout,) = lightning.enqueue([{"q": 1}])
        stale = claim(http, "c1", lease_s=0.3)["attempt"]["attempt_id"]
        # The watchdog (every second) times the attempt out and requeues the rollout.
        wait_until(
            lambda: lightning.rollout(rollout.rollout_id).status is RolloutStatus.QUEUED, 10, "requeue"
        )
        current = claim(http, "c2")["attempt"]["attempt_id"]
        before = http.get(f"/api/v1/rollouts/{rollout.rollout_id}").json()
        assert (before["status"], before["attempt_id"]) == ("running", current)

        late = {"status": "succeeded", "reward": 0.0, "span_count": 0}
        for path, body in (
            (f"/api/v1/attempts/{stale}/complete", late),
            (f"/api/v1/attempts/{stale}/heartbeat", {}),
        ):
            answer = http.post(path, json=body)
            assert answer.status_code == 409 and answer.json()["type"] == "stale-attempt", answer.text
        assert http.get(f"/api/v1/rollouts/{rollout.rollout_id}").json() == before

        won = {"status": "succeeded", "reward": 1.0, "span_count": 0}
        assert http.post(f"/api/v1/attempts/{current}/complete", json=won).status_code == 200
        after = http.get(f"/api/v1/rollouts/{rollout.rollout_id}").json()
        # A retried completion is accepted; a stale or contradicting one is refused; nothing changes.
        assert http.post(f"/api/v1/attempts/{current}/complete", json=won).status_code == 200
        assert http.post(f"/api/v1/attempts/{stale}/complete", json=late).status_code == 409
        failed = {"status": "failed", "error": "late", "span_count": 0}
        assert http.post(f"/api/v1/attempts/{current}/complete", json=failed).status_code == 409
        assert http.get(f"/api/v1/rollouts/{rollout.rollout_id}").json() == after
        assert (after["status"], after["reward"], after["attempt_id"]) == ("succeeded", 1.0, current)
        attempts = lightning.attempts(rollout.rollout_id)
        assert [a.status for a in attempts] == [AttemptStatus.TIMED_OUT, AttemptStatus.SUCCEEDED]
        assert attempts[0].span_count is None and attempts[0].reward is None
