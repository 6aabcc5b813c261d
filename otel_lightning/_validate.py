"""Validation helpers shared by the records' ``from_json`` converters (private)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from otel_lightning.exceptions import ValidationError


def require(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(data, Mapping):
        raise ValidationError(f"{what} must be a JSON object")
    if key not in data:
        raise ValidationError(f"{what}: missing field {key!r}")
    return check(data[key], kind, f"{what}.{key}")


def optional(
    data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str, default: Any = None
) -> Any:
    value = data.get(key)
    if value is None:
        return default
    return check(value, kind, f"{what}.{key}")


def check(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    # bool is an int in Python; a JSON true is never a valid number here.
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ValidationError(f"{where} must be {kind_name(kinds)}, not a boolean")
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kinds):
        raise ValidationError(f"{where} must be {kind_name(kinds)}, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"{where} must be a finite number")
    return value


def kind_name(kinds: tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        dict: "an object",
        list: "an array",
        Mapping: "an object",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def valid_name(value: Any, where: str) -> str:
    value = check(value, str, where)
    if not value or len(value) > 200 or not value.isprintable():
        raise ValidationError(f"{where} must be a printable string of 1 to 200 characters")
    return str(value)
