"""Tunable resources: the parts of an agent that algorithms change.

Resources are published as an immutable, numbered :class:`ResourceVersion` per experiment: a mapping of
names to typed resources (a prompt template, sampling parameters, an LLM endpoint, a model-weights
reference, a free-form workflow config). Each converts to and from JSON with ``to_json()`` /
``from_json()``; bad input raises :class:`~otel_lightning.exceptions.ValidationError`.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, TypeAlias

from otel_lightning._validate import optional, require, valid_name
from otel_lightning.exceptions import ResourceError, ValidationError

JSON: TypeAlias = Any
"""A value that ``json.dumps`` accepts."""


class ResourceKind(StrEnum):
    """The kinds of tunable resource."""

    PROMPT_TEMPLATE = "prompt_template"
    SAMPLING = "sampling"
    LLM_ENDPOINT = "llm_endpoint"
    MODEL_WEIGHTS = "model_weights"
    CONFIG = "config"


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """A prompt with named ``{placeholders}`` (Python format syntax; ``{{`` and ``}}`` are literal braces)."""

    template: str
    """The template text."""

    kind: ClassVar[ResourceKind] = ResourceKind.PROMPT_TEMPLATE

    def __post_init__(self) -> None:
        self.placeholders  # noqa: B018 - parse now so that a malformed template fails at construction

    @property
    def placeholders(self) -> frozenset[str]:
        """The names the template needs, in no order."""
        try:
            parsed = list(string.Formatter().parse(self.template))
        except ValueError as exc:
            raise ResourceError(f"malformed prompt template: {exc}") from None
        names = set()
        for _, name, _, _ in parsed:
            if name is None:
                continue
            if not name.isidentifier():
                raise ResourceError(f"prompt template placeholder {{{name}}} must be a plain identifier")
            names.add(name)
        return frozenset(names)

    def render(self, **values: Any) -> str:
        """Fill the placeholders; every placeholder must be given (extra values are ignored)."""
        missing = self.placeholders - values.keys()
        if missing:
            raise ResourceError(f"prompt template needs values for {sorted(missing)}")
        return self.template.format(**values)

    def to_json(self) -> dict[str, JSON]:
        return {"kind": self.kind.value, "template": self.template}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PromptTemplate:
        return cls(template=require(data, "template", str, "prompt_template"))


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Sampling parameters for an LLM call; ``None`` leaves the server's default."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None

    kind: ClassVar[ResourceKind] = ResourceKind.SAMPLING

    def __post_init__(self) -> None:
        if self.temperature is not None and not 0.0 <= self.temperature <= 5.0:
            raise ResourceError("sampling.temperature must be within [0, 5]")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ResourceError("sampling.top_p must be within (0, 1]")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ResourceError("sampling.max_tokens must be positive")

    def as_openai_kwargs(self) -> dict[str, Any]:
        """The parameters that are set, named as the OpenAI chat API names them."""
        pairs = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }
        return {k: v for k, v in pairs.items() if v is not None}

    def to_json(self) -> dict[str, JSON]:
        return {"kind": self.kind.value, **self.as_openai_kwargs()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SamplingParams:
        what = "sampling"
        return cls(
            temperature=optional(data, "temperature", float, what),
            top_p=optional(data, "top_p", float, what),
            max_tokens=optional(data, "max_tokens", int, what),
            seed=optional(data, "seed", int, what),
        )


@dataclass(frozen=True, slots=True)
class LLMEndpoint:
    """An OpenAI-compatible endpoint and the model to ask for there."""

    base_url: str
    """Base URL of the API, e.g. ``http://127.0.0.1:8000/v1``."""
    model: str
    """Model name to send in requests."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key on the worker (the key itself is never stored)."""

    kind: ClassVar[ResourceKind] = ResourceKind.LLM_ENDPOINT

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ResourceError("llm_endpoint.base_url must be an http(s) URL")

    def to_json(self) -> dict[str, JSON]:
        return {
            "kind": self.kind.value,
            "base_url": self.base_url,
            "model": self.model,
            "api_key_env": self.api_key_env,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LLMEndpoint:
        what = "llm_endpoint"
        return cls(
            base_url=require(data, "base_url", str, what),
            model=require(data, "model", str, what),
            api_key_env=optional(data, "api_key_env", str, what),
        )


@dataclass(frozen=True, slots=True)
class ModelWeights:
    """A reference to model weights (a file path or URI); the weights themselves live elsewhere."""

    uri: str
    format: str = "gguf"
    base_model: str | None = None

    kind: ClassVar[ResourceKind] = ResourceKind.MODEL_WEIGHTS

    def to_json(self) -> dict[str, JSON]:
        return {
            "kind": self.kind.value,
            "uri": self.uri,
            "format": self.format,
            "base_model": self.base_model,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelWeights:
        what = "model_weights"
        return cls(
            uri=require(data, "uri", str, what),
            format=optional(data, "format", str, what, "gguf"),
            base_model=optional(data, "base_model", str, what),
        )


@dataclass(frozen=True, slots=True)
class WorkflowConfig:
    """A free-form JSON object configuring an agent's workflow (which steps run, how many retries, ...)."""

    value: Mapping[str, JSON]

    kind: ClassVar[ResourceKind] = ResourceKind.CONFIG

    def to_json(self) -> dict[str, JSON]:
        return {"kind": self.kind.value, "value": dict(self.value)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WorkflowConfig:
        return cls(value=require(data, "value", dict, "config"))


Resource: TypeAlias = PromptTemplate | SamplingParams | LLMEndpoint | ModelWeights | WorkflowConfig
"""Any one tunable resource."""

_RESOURCE_TYPES: dict[str, type[Resource]] = {
    cls.kind.value: cls for cls in (PromptTemplate, SamplingParams, LLMEndpoint, ModelWeights, WorkflowConfig)
}


def resource_from_json(data: Mapping[str, Any]) -> Resource:
    """Decode one resource from its JSON form (``{"kind": ..., ...}``)."""
    kind = require(data, "kind", str, "resource")
    cls = _RESOURCE_TYPES.get(kind)
    if cls is None:
        raise ValidationError(f"unknown resource kind {kind!r}; expected one of {sorted(_RESOURCE_TYPES)}")
    return cls.from_json(data)


@dataclass(frozen=True, slots=True)
class ResourceVersion:
    """One immutable, numbered set of named resources of an experiment."""

    experiment: str
    version: int
    """1, 2, 3, ... per experiment; version 0 is the empty set every experiment starts with."""
    resources: Mapping[str, Resource]
    created_ns: int = 0
    metadata: Mapping[str, JSON] = field(default_factory=dict)
    """Free-form notes from the publisher (the algorithm and its score, say)."""

    def __getitem__(self, name: str) -> Resource:
        return self.resources[name]

    def prompt(self, name: str) -> PromptTemplate:
        """The prompt template called ``name``; raises ResourceError if it is missing or of another kind."""
        return self._typed(name, PromptTemplate)

    def sampling(self, name: str = "sampling") -> SamplingParams:
        """The sampling parameters called ``name``, or defaults if there are none."""
        if name not in self.resources:
            return SamplingParams()
        return self._typed(name, SamplingParams)

    def _typed(self, name: str, cls: type[Any]) -> Any:
        value = self.resources.get(name)
        if value is None:
            raise ResourceError(f"resource version {self.version} has no resource {name!r}")
        if not isinstance(value, cls):
            raise ResourceError(f"resource {name!r} is a {value.kind.value}, not a {cls.kind.value}")
        return value

    def to_json(self) -> dict[str, JSON]:
        return {
            "experiment": self.experiment,
            "version": self.version,
            "resources": {name: r.to_json() for name, r in self.resources.items()},
            "created_ns": self.created_ns,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResourceVersion:
        what = "resource_version"
        return cls(
            experiment=require(data, "experiment", str, what),
            version=require(data, "version", int, what),
            resources=decode_resources(require(data, "resources", dict, what)),
            created_ns=optional(data, "created_ns", int, what, 0),
            metadata=optional(data, "metadata", dict, what, {}),
        )


def decode_resources(data: Mapping[str, Any]) -> dict[str, Resource]:
    """Decode a ``{name: resource-json}`` mapping, validating every name and resource."""
    if not isinstance(data, Mapping):
        raise ValidationError("resources must be a JSON object")
    return {valid_name(name, "resources key"): resource_from_json(value) for name, value in data.items()}
