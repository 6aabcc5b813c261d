"""The OpenAPI 3.1 document of the REST API, served at ``/api/v1/openapi.json``.

Written by hand next to the routes it describes; tests/collector/test_openapi.py checks that every route of
the app is documented and every documented path exists.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from otel_lightning import __version__
from otel_lightning.resources import ResourceKind
from otel_lightning.types import AttemptStatus, RolloutStatus


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_NULLABLE_STR = {"type": ["string", "null"]}
_NULLABLE_INT = {"type": ["integer", "null"]}
_NULLABLE_NUM = {"type": ["number", "null"]}

SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "required": ["type", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
        },
    },
    "Task": {
        "type": "object",
        "required": ["input"],
        "properties": {
            "input": {"description": "Any JSON value, passed to the agent."},
            "rollout_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 200},
            "experiment": {"type": "string", "minLength": 1, "maxLength": 200},
            "resource_version": {"type": ["integer", "null"], "minimum": 0},
            "max_attempts": {"type": "integer", "minimum": 1, "maximum": 100},
            "timeout_s": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 604800},
            "metadata": {"type": "object"},
        },
    },
    "Rollout": {
        "type": "object",
        "properties": {
            "rollout_id": {"type": "string"},
            "experiment": {"type": "string"},
            "input": {},
            "status": {"enum": [s.value for s in RolloutStatus]},
            "created_ns": {"type": "integer"},
            "updated_ns": {"type": "integer"},
            "max_attempts": {"type": "integer"},
            "attempt_count": {"type": "integer"},
            "resource_version": _NULLABLE_INT,
            "timeout_s": _NULLABLE_NUM,
            "metadata": {"type": "object"},
            "attempt_id": _NULLABLE_STR,
            "reward": _NULLABLE_NUM,
            "error": _NULLABLE_STR,
        },
    },
    "Attempt": {
        "type": "object",
        "properties": {
            "attempt_id": {"type": "string"},
            "rollout_id": {"type": "string"},
            "experiment": {"type": "string"},
            "sequence": {"type": "integer"},
            "status": {"enum": [s.value for s in AttemptStatus]},
            "worker_id": {"type": "string"},
            "resource_version": {"type": "integer"},
            "started_ns": {"type": "integer"},
            "lease_expires_ns": {"type": "integer"},
            "ended_ns": _NULLABLE_INT,
            "reward": _NULLABLE_NUM,
            "error": _NULLABLE_STR,
            "span_count": _NULLABLE_INT,
        },
    },
    "Claim": {"type": "object", "properties": {"rollout": _ref("Rollout"), "attempt": _ref("Attempt")}},
    "Outcome": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"enum": ["succeeded", "failed"]},
            "reward": _NULLABLE_NUM,
            "error": _NULLABLE_STR,
            "span_count": {"type": ["integer", "null"], "minimum": 0},
        },
    },
    "Resource": {
        "type": "object",
        "required": ["kind"],
        "description": "prompt_template {template}; sampling {temperature, top_p, max_tokens, seed}; "
        "llm_endpoint {base_url, model, api_key_env}; model_weights {uri, format, base_model}; "
        "config {value}.",
        "properties": {"kind": {"enum": [k.value for k in ResourceKind]}},
    },
    "ResourceVersion": {
        "type": "object",
        "properties": {
            "experiment": {"type": "string"},
            "version": {"type": "integer"},
            "resources": {"type": "object", "additionalProperties": _ref("Resource")},
            "created_ns": {"type": "integer"},
            "metadata": {"type": "object"},
        },
    },
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _op(
    summary: str,
    ok: dict[str, Any],
    body: dict[str, Any] | None = None,
    params: list[Any] | None = None,
    errors: tuple[int, ...] = (400,),
    ok_status: str = "200",
) -> dict[str, Any]:
    problem = {"content": {"application/problem+json": {"schema": _ref("Problem")}}}
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            ok_status: {"description": "OK", **_json(ok)},
            **{str(code): {"description": "error", **problem} for code in errors},
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True, **_json(body)}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


_ROLLOUT = [_path_param("rollout_id")]
_ATTEMPT = [_path_param("attempt_id")]
_EXPERIMENT = [_path_param("experiment")]
_ATTEMPT_QUERY = _query("attempt_id", {"type": "string"})
_LIST = {"type": "object"}

PATHS: dict[str, Any] = {
    "/api/v1/health": {"get": _op("Liveness and ingest backlog", {"type": "object"}, errors=())},
    "/api/v1/rollouts": {
        "post": _op(
            "Enqueue tasks (idempotent by rollout_id)",
            _LIST,
            {
                "type": "object",
                "required": ["tasks"],
                "properties": {"tasks": {"type": "array", "items": _ref("Task"), "minItems": 1}},
            },
        ),
        "get": _op(
            "List rollouts",
            _LIST,
            params=[
                _query("experiment", {"type": "string"}),
                _query("status", {"enum": [s.value for s in RolloutStatus]}),
                _query("resource_version", {"type": "integer"}),
                _query("rollout_id", {"type": "string"}),
                _query("limit", {"type": "integer", "minimum": 0}),
                _query("offset", {"type": "integer", "minimum": 0}),
            ],
        ),
    },
    "/api/v1/rollouts/wait": {
        "post": _op(
            "Long-poll until the rollouts have ended",
            _LIST,
            {
                "type": "object",
                "required": ["rollout_ids"],
                "properties": {
                    "rollout_ids": {"type": "array", "items": {"type": "string"}},
                    "timeout_s": {"type": "number", "minimum": 0},
                    "complete": {
                        "type": "boolean",
                        "description": "Also wait for each trace to be complete (or its grace period).",
                    },
                },
            },
        ),
    },
    "/api/v1/rollouts/{rollout_id}": {
        "get": _op("Get a rollout", _ref("Rollout"), params=_ROLLOUT, errors=(404,))
    },
    "/api/v1/rollouts/{rollout_id}/cancel": {
        "post": _op("Cancel a rollout", _ref("Rollout"), params=_ROLLOUT, errors=(404,))
    },
    "/api/v1/rollouts/{rollout_id}/attempts": {
        "get": _op("A rollout's attempts", _LIST, params=_ROLLOUT, errors=(404,))
    },
    "/api/v1/rollouts/{rollout_id}/spans": {
        "get": _op(
            "Spans and logs of one attempt (default: the latest; 'all' for every attempt)",
            _LIST,
            params=[*_ROLLOUT, _ATTEMPT_QUERY],
            errors=(404,),
        )
    },
    "/api/v1/rollouts/{rollout_id}/tree": {
        "get": _op(
            "Span tree of one attempt, nested, with a text rendering",
            _LIST,
            params=[*_ROLLOUT, _ATTEMPT_QUERY],
            errors=(404,),
        )
    },
    "/api/v1/rollouts/{rollout_id}/trajectory": {
        "get": _op(
            "Trajectory (LLM calls, rewards) of one attempt",
            _LIST,
            params=[*_ROLLOUT, _ATTEMPT_QUERY, _query("matching", {"type": "string"})],
            errors=(400, 404),
        )
    },
    "/api/v1/claims": {
        "post": _op(
            "Long-poll for the next rollout; 204 when none came in time",
            _ref("Claim"),
            {
                "type": "object",
                "required": ["worker_id"],
                "properties": {
                    "worker_id": {"type": "string"},
                    "request_id": {"type": "string"},
                    "experiments": {"type": "array", "items": {"type": "string"}},
                    "wait_s": {"type": "number", "minimum": 0},
                    "lease_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
                },
            },
        ),
    },
    "/api/v1/claims/batch": {
        "post": _op(
            "Long-poll for up to max_claims rollouts; an empty list when none came in time",
            {"type": "object", "properties": {"claims": {"type": "array", "items": _ref("Claim")}}},
            {
                "type": "object",
                "required": ["worker_id"],
                "properties": {
                    "worker_id": {"type": "string"},
                    "request_id": {"type": "string"},
                    "max_claims": {"type": "integer", "minimum": 1, "maximum": 256},
                    "experiments": {"type": "array", "items": {"type": "string"}},
                    "wait_s": {"type": "number", "minimum": 0},
                    "lease_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
                },
            },
        ),
    },
    "/api/v1/attempts/complete": {
        "post": _op(
            "Report many attempts' outcomes; each item is answered on its own (attempt or error)",
            {
                "type": "object",
                "properties": {
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"attempt": _ref("Attempt"), "error": _ref("Problem")},
                        },
                    }
                },
            },
            {
                "type": "object",
                "required": ["completions"],
                "properties": {
                    "completions": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 256,
                        "items": {
                            "type": "object",
                            "required": ["attempt_id", "outcome"],
                            "properties": {"attempt_id": {"type": "string"}, "outcome": _ref("Outcome")},
                        },
                    }
                },
            },
        ),
    },
    "/api/v1/attempts/{attempt_id}": {
        "get": _op("Get an attempt", _ref("Attempt"), params=_ATTEMPT, errors=(404,))
    },
    "/api/v1/attempts/{attempt_id}/heartbeat": {
        "post": _op(
            "Extend the attempt's lease",
            _ref("Attempt"),
            {"type": "object", "properties": {"lease_s": {"type": "number"}}},
            params=_ATTEMPT,
            errors=(400, 404, 409),
        )
    },
    "/api/v1/attempts/{attempt_id}/complete": {
        "post": _op(
            "Report the attempt's outcome",
            _ref("Attempt"),
            _ref("Outcome"),
            params=_ATTEMPT,
            errors=(400, 404, 409),
        )
    },
    "/api/v1/resources/{experiment}": {
        "get": _op(
            "A resource version (latest by default)",
            _ref("ResourceVersion"),
            params=[*_EXPERIMENT, _query("version", {"type": "string"})],
            errors=(400, 404),
        ),
        "post": _op(
            "Publish a new resource version (compare-and-swap with expected_version)",
            _ref("ResourceVersion"),
            {
                "type": "object",
                "required": ["resources"],
                "properties": {
                    "resources": {"type": "object", "additionalProperties": _ref("Resource")},
                    "expected_version": {"type": ["integer", "null"]},
                    "metadata": {"type": "object"},
                },
            },
            params=_EXPERIMENT,
            errors=(400, 409),
            ok_status="201",
        ),
    },
    "/api/v1/resources/{experiment}/versions": {
        "get": _op("Every version, oldest first", _LIST, params=_EXPERIMENT)
    },
    "/api/v1/openapi.json": {"get": _op("This document", {"type": "object"}, errors=())},
}


def document() -> dict[str, Any]:
    """The OpenAPI document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "otel-lightning", "version": __version__},
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


async def openapi(request: Request) -> Response:
    return JSONResponse(document())


ROUTES = [Route("/api/v1/openapi.json", openapi, methods=["GET"])]
