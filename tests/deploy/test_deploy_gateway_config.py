"""deploy/otelcol-gateway.yaml, checked without the Collector binary (which cannot be installed here): it
parses, its pipelines reference only components it defines, memory_limiter comes first, and the exporter to
the replicas has a persistent queue and retries forever."""

from __future__ import annotations

import re
from typing import Any

import pytest

from otel_lightning.config import DEFAULT_PORT, ServerSettings
from tests.conftest import REPO

yaml = pytest.importorskip("yaml")

CONFIG = REPO / "deploy" / "otelcol-gateway.yaml"
SECTIONS = ("receivers", "processors", "exporters")
KNOWN_TYPES = {
    "receivers": {"otlp"},
    "processors": {"memory_limiter", "batch"},
    "exporters": {"otlphttp", "loadbalancing"},
    "extensions": {"file_storage", "health_check"},
}
LARGE_SPAN_BYTES = 4 * 1024
"""An LLM span with its prompt and completion (~3.4 KiB measured), rounded up."""
_ENV = re.compile(r"^\$\{env:(?P<name>\w+)(:-(?P<default>.*))?\}$")


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded = yaml.safe_load(CONFIG.read_text())
    assert isinstance(loaded, dict)
    return loaded


def resolve(value: str) -> str:
    """A value as the Collector would see it with its environment variables unset: their defaults."""
    match = _ENV.match(value)
    if match is None:
        return value
    assert match["default"], f"{value} has no default"
    return match["default"]


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def pipelines(config: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    return config["service"]["pipelines"]


def test_deploy_gateway_pipelines_reference_defined_components(config: dict[str, Any]) -> None:
    assert set(pipelines(config)) == {"traces", "logs"}
    used: dict[str, set[str]] = {section: set() for section in SECTIONS}
    for name, pipeline in pipelines(config).items():
        for section in SECTIONS:
            ids = pipeline.get(section, [])
            assert ids, f"pipeline {name} has no {section}"
            assert len(ids) == len(set(ids)), f"pipeline {name} lists a {section[:-1]} twice"
            for component_id in ids:
                assert component_id in config[section], f"{name} uses undefined {section[:-1]} {component_id}"
            used[section].update(ids)
    for section in SECTIONS:
        assert set(config[section]) == used[section], f"defined but unused {section}"
    assert set(config["service"]["extensions"]) == set(config["extensions"])
    for section, known in KNOWN_TYPES.items():
        for component_id in config[section]:
            assert component_type(component_id) in known, f"unexpected {section[:-1]} {component_id}"


def test_deploy_gateway_memory_limiter_first_then_batch(config: dict[str, Any]) -> None:
    for name, pipeline in pipelines(config).items():
        types = [component_type(p) for p in pipeline["processors"]]
        assert types[0] == "memory_limiter", f"{name}: memory_limiter must be the first processor"
        assert "batch" in types, f"{name} does not batch"
    limiter = config["processors"]["memory_limiter"]
    assert limiter["check_interval"]
    assert 0 < limiter["spike_limit_mib"] < limiter["limit_mib"]


def test_deploy_gateway_receives_otlp_grpc_and_http(config: dict[str, Any]) -> None:
    protocols = config["receivers"]["otlp"]["protocols"]
    assert resolve(protocols["grpc"]["endpoint"]).endswith(":4317")
    assert resolve(protocols["http"]["endpoint"]).endswith(":4318")


def test_deploy_gateway_exporters_queue_on_disk_and_retry_forever(config: dict[str, Any]) -> None:
    exporter_ids = {e for p in pipelines(config).values() for e in p["exporters"]}
    for exporter_id in exporter_ids:
        exporter = config["exporters"][exporter_id]
        if component_type(exporter_id) == "loadbalancing":  # its queue and retries are per backend
            exporter = exporter["protocol"]["otlp"]
        queue = exporter["sending_queue"]
        assert queue.get("enabled", True) is True
        storage = queue["storage"]
        assert component_type(storage) == "file_storage", f"{exporter_id}: the queue is not persistent"
        assert storage in config["extensions"] and storage in config["service"]["extensions"]
        assert queue["queue_size"] > 0 and queue["num_consumers"] > 0
        retry = exporter["retry_on_failure"]
        assert retry.get("enabled", True) is True
        assert retry["max_elapsed_time"] in (0, "0", "0s"), f"{exporter_id} gives up on a batch"


def test_deploy_gateway_sends_otlp_http_to_the_replicas_port(config: dict[str, Any]) -> None:
    exporter = config["exporters"]["otlphttp/lightning"]
    endpoint = resolve(exporter["endpoint"])
    assert re.fullmatch(r"https?://[\w.-]+:\d+", endpoint), endpoint
    # The replicas listen on otel-lightning's port, not the standard one this gateway holds.
    assert endpoint.endswith(f":{DEFAULT_PORT}")
    assert exporter["encoding"] == "proto" and exporter["compression"] == "gzip"
    for key in ("traces_endpoint", "logs_endpoint"):  # appended by the exporter: /v1/traces, /v1/logs
        assert key not in exporter
    # A server with --api-token guards /v1/* too.
    assert exporter["headers"]["authorization"] == "Bearer ${env:OTEL_LIGHTNING_API_TOKEN}"


def test_deploy_gateway_batches_fit_the_server_body_limit(config: dict[str, Any]) -> None:
    batch = config["processors"]["batch"]
    assert 0 < batch["send_batch_size"] <= batch["send_batch_max_size"]
    # A larger request gets 413, which no exporter retries: the batch would be lost.
    assert batch["send_batch_max_size"] * LARGE_SPAN_BYTES < ServerSettings().max_body_bytes / 2
    grpc_cap = config["receivers"]["otlp"]["protocols"]["grpc"]["max_recv_msg_size_mib"] * 1024 * 1024
    assert grpc_cap > 512 * LARGE_SPAN_BYTES, "a default Python SDK batch of 512 spans must fit"


def test_deploy_gateway_file_storage_is_durable(config: dict[str, Any]) -> None:
    storage = config["extensions"]["file_storage/queue"]
    assert resolve(storage["directory"]).startswith("/")
    assert storage["create_directory"] is True
    assert storage["fsync"] is True
    assert storage["compaction"]["on_rebound"] is True
