"""Turn whatever a kind returned into bounded, JSON-safe data."""
from __future__ import annotations

import dataclasses
import enum
import json
import math
import uuid
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

MAX_OUTPUT_BYTES = 16 * 1024
MAX_DEPTH = 32
_REPR_LIMIT = 200


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` made only of dict/list/str/int/float/bool/None.

    Decimal -> int/float, datetime -> ISO text, bytes -> UTF-8 text (replacing
    bad bytes), sets/tuples -> lists, enums -> their value, NaN/Infinity ->
    their name as text, anything else -> a short repr. Nesting deeper than
    MAX_DEPTH (or a cycle) becomes the text ``"<max depth>"``.
    """
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, _depth + 1)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    if _depth >= MAX_DEPTH:
        return "<max depth>"
    if isinstance(value, Mapping):
        return {_key(k): to_jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v, _depth + 1) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_jsonable(getattr(value, f.name), _depth + 1)
            for f in dataclasses.fields(value)
        }
    return _short_repr(value)


def compact(value: Any) -> str:
    """Compact JSON text of an already JSON-safe value."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def bounded(value: Any, max_bytes: int = MAX_OUTPUT_BYTES) -> Any:
    """JSON-safe ``value``, or a truncation marker when it would exceed ``max_bytes``.

    Size is measured as UTF-8 JSON with default separators (ensure_ascii=False).
    The marker is ``{"truncated": true, "originalBytes": n, "preview": "<start
    of the compact JSON text>"}`` and is itself at most ``max_bytes``.
    """
    safe = to_jsonable(value)
    size = _size(safe)
    if size <= max_bytes:
        return safe
    marker = {"truncated": True, "originalBytes": size, "preview": ""}
    budget = max_bytes - _size(marker)
    encoded = compact(safe).encode("utf-8")
    while True:
        # a cut through a multi-byte character drops that character
        marker["preview"] = encoded[: max(budget, 0)].decode("utf-8", errors="ignore")
        over = _size(marker) - max_bytes
        if over <= 0 or budget <= 0:
            return marker
        budget -= over  # escapes (\" and \uXXXX) made it longer than the raw bytes


def _size(value: Any) -> int:
    """UTF-8 bytes of ``json.dumps(value, ensure_ascii=False)`` (default separators,
    so a compact encoding is never larger)."""
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))


def truncate_text(text: str, max_chars: int, marker: str = "...[truncated]") -> str:
    if len(text) <= max_chars:
        return text
    return text[: max(max_chars - len(marker), 0)] + marker


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float, Decimal, enum.Enum)):
        converted = to_jsonable(key)
        return converted if isinstance(converted, str) else compact(converted)
    return truncate_text(str(key), _REPR_LIMIT)


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not break the run's outcome
        text = f"<{type(value).__name__}>"
    return truncate_text(text, _REPR_LIMIT)
