"""A small JSON-schema validator for request bodies and query strings.

The same schema dicts are published in the OpenAPI document, so what is
documented is what is enforced. Errors name the field (dotted path).
"""
from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from chalicelib.errors import MalformedRequest, PayloadTooLarge, ValidationError

MAX_BODY_BYTES = 1024 * 1024  # a larger body is a 413, before it is parsed

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and math.isfinite(v) and v.is_integer()),
    "number": lambda v: (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)),
    "null": lambda v: v is None,
}
_TYPE_WORDS = {"object": "an object", "array": "an array", "string": "a string", "boolean": "true or false",
               "integer": "a whole number", "number": "a number", "null": "null"}


def parse_json_body(raw: bytes | str | None, *, required: bool = True) -> Any:
    if raw is None or raw == b"" or raw == "":
        if required:
            raise MalformedRequest("request body is required (a JSON object)")
        return {}
    if isinstance(raw, str):
        raw = raw.encode()
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the request body is larger than {MAX_BODY_BYTES} bytes (1 MB)")
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
        # Lone surrogates ("\ud800") parse, but cannot be stored as UTF-8.
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
        return value
    except json.JSONDecodeError as exc:
        raise MalformedRequest(f"body is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise MalformedRequest("body is not valid JSON: nested too deeply") from None
    except (ValueError, UnicodeEncodeError):
        raise MalformedRequest("body is not valid JSON: it holds a value JSON cannot carry (NaN, Infinity or an unpaired surrogate)") from None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def parse_datetime(value: str, field: str) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise ValidationError(field, f"{field} must be an ISO 8601 date-time with offset")
    text = value.strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(field, f"{field} must be an ISO 8601 date-time with offset, got {value!r}") from None
    if dt.tzinfo is None:
        raise ValidationError(field, f"{field} needs a UTC offset (e.g. 2026-01-01T00:00:00Z), got {value!r}")
    if not 1970 <= dt.year <= 9000:
        raise ValidationError(field, f"{field} is out of range")
    return dt


def validate(value: Any, schema: dict, path: str = "body") -> Any:
    """Validate ``value`` against ``schema``; returns it (integers normalised)."""
    types = schema.get("type")
    if types is not None:
        tlist = types if isinstance(types, list) else [types]
        if not any(_TYPES[t](value) for t in tlist):
            words = " or ".join(_TYPE_WORDS[t] for t in tlist)
            raise ValidationError(path, f"{path} must be {words}")
        if "integer" in tlist and isinstance(value, float):
            value = int(value)
    if value is None:
        return None
    if "enum" in schema and value not in schema["enum"]:
        raise ValidationError(path, f"{path} must be one of {', '.join(map(str, schema['enum']))}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise ValidationError(path, f"{path} must have at least {schema['minLength']} character(s)")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise ValidationError(path, f"{path} must have at most {schema['maxLength']} characters")
        if schema.get("format") == "date-time":
            parse_datetime(value, path)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise ValidationError(path, f"{path} must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise ValidationError(path, f"{path} must be at most {schema['maximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise ValidationError(path, f"{path} must have at least {schema['minItems']} item(s)")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise ValidationError(path, f"{path} must have at most {schema['maxItems']} items")
        if "items" in schema:
            value = [validate(v, schema["items"], f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict) and schema.get("type") in ("object", ["object", "null"]) and "properties" in schema:
        props = schema["properties"]
        if schema.get("additionalProperties") is False:
            for k in value:
                if k not in props:
                    raise ValidationError(_join(path, k), f"unknown field {_join(path, k)!r}")
        if len(value) < schema.get("minProperties", 0):
            raise ValidationError(path, f"{path} must have at least {schema['minProperties']} field(s)")
        for k in schema.get("required", []):
            if k not in value or value[k] is None and "null" not in _tl(props[k]):
                raise ValidationError(_join(path, k), f"{_join(path, k)} is required")
        value = {k: (validate(v, props[k], _join(path, k)) if k in props else v) for k, v in value.items()}
    max_bytes = schema.get("x-maxBytes")
    if max_bytes is not None and value is not None:
        size = len(json.dumps(value, separators=(",", ":")).encode())
        if size > max_bytes:
            raise ValidationError(path, f"{path} must be at most {max_bytes // 1024} KB as JSON, got {size} bytes")
    return value


def _tl(schema: dict) -> list:
    t = schema.get("type")
    return t if isinstance(t, list) else [t]


def _join(path: str, key: str) -> str:
    return key if path == "body" else f"{path}.{key}"


def query_int(params: dict | None, name: str, default: int, lo: int, hi: int) -> int:
    raw = (params or {}).get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValidationError(name, f"{name} must be a whole number between {lo} and {hi}") from None
    if not lo <= value <= hi:
        raise ValidationError(name, f"{name} must be between {lo} and {hi}")
    return value


def query_float(params: dict | None, name: str, default: float, lo: float, hi: float) -> float:
    raw = (params or {}).get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValidationError(name, f"{name} must be a number between {lo:g} and {hi:g}") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ValidationError(name, f"{name} must be between {lo:g} and {hi:g}")
    return value


def query_str(params: dict | None, name: str, max_len: int = 2048) -> str | None:
    raw = (params or {}).get(name)
    if raw is None:
        return None
    if len(raw) > max_len:
        raise ValidationError(name, f"{name} is too long")
    return raw


def no_unknown_query(params: dict | None, allowed: set[str]) -> None:
    for k in (params or {}):
        if k not in allowed:
            raise ValidationError(k, f"unknown query parameter {k!r}")
