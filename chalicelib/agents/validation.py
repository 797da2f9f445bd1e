"""Small helpers kinds use to check their config. Errors name ``config.<field>``."""
from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any, Iterable

from chalicelib.errors import ValidationError

MAX_JSON_BYTES = 256 * 1024  # body / payload stored in the agent's config


def field(key: str) -> str:
    return f"config.{key}"


def as_dict(config: Any, *, allowed: Iterable[str], required: Iterable[str] = ()) -> dict:
    """The config as a fresh dict; refuses non-objects, unknown and missing keys."""
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ValidationError("config", f"config must be an object, got {_type(config)}")
    allowed = tuple(allowed)
    for key in config:
        if not isinstance(key, str):
            raise ValidationError("config", f"config keys must be strings, got {key!r}")
        if key not in allowed:
            expected = ", ".join(allowed) if allowed else "no keys"
            raise ValidationError(field(key), f"unknown key; expected {expected}")
    for key in required:
        if config.get(key) is None:
            raise ValidationError(field(key), "is required")
    return dict(config)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def number(
    value: Any,
    key: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
) -> int | float:
    """A finite number in range; ints stay ints (Decimal from DynamoDB is accepted)."""
    if not is_number(value):
        raise ValidationError(field(key), f"must be a number, got {_type(value)}")
    value = plain_number(value)
    if not math.isfinite(value):
        raise ValidationError(field(key), "must be a finite number")
    if minimum is not None:
        if exclusive_minimum and value <= minimum:
            raise ValidationError(field(key), f"must be > {minimum:g}, got {value:g}")
        if not exclusive_minimum and value < minimum:
            raise ValidationError(field(key), f"must be >= {minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise ValidationError(field(key), f"must be <= {maximum:g}, got {value:g}")
    return value


def integer(value: Any, key: str, *, minimum: int | None = None) -> int:
    if is_number(value) and not isinstance(value, int):
        plain = plain_number(value)
        if isinstance(plain, float) and math.isfinite(plain) and plain.is_integer():
            value = int(plain)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError(field(key), f"must be an integer, got {_type(value)}")
    if minimum is not None and value < minimum:
        raise ValidationError(field(key), f"must be >= {minimum}, got {value}")
    return value


def string(value: Any, key: str, *, max_length: int = 1024, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise ValidationError(field(key), f"must be a string, got {_type(value)}")
    if not allow_empty and not value.strip():
        raise ValidationError(field(key), "must not be empty")
    if len(value) > max_length:
        raise ValidationError(field(key), f"must be at most {max_length} characters")
    return value


def json_value(value: Any, key: str, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Any JSON value (Decimal accepted), bounded in size once encoded."""
    try:
        encoded = dumps(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(field(key), f"must be JSON ({exc})") from None
    if len(encoded.encode("utf-8")) > max_bytes:
        raise ValidationError(field(key), f"must be at most {max_bytes} bytes as JSON")
    return value


def dumps(value: Any) -> str:
    """Strict compact JSON; Decimal (as DynamoDB returns numbers) is allowed."""
    return json.dumps(
        value, default=_decimal_only, allow_nan=False, separators=(",", ":"), ensure_ascii=False
    )


def plain_number(value: Any) -> Any:
    if isinstance(value, Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        return float(value)
    return value


def _decimal_only(value: Any) -> Any:
    if isinstance(value, Decimal):
        result = plain_number(value)
        if isinstance(result, float) and not math.isfinite(result):
            raise ValueError("NaN and Infinity are not JSON")
        return result
    raise TypeError(f"{_type(value)} is not JSON")


def _type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if is_number(value):
        return "number"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
