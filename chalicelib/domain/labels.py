"""Agent labels: a small map of strings for grouping and selection. Pure.

Keys are 1..63 characters of ``A-Z a-z 0-9 . _ / -``, values at most 255 characters,
at most 32 labels per agent. ``?label=key=value`` selects the agents that carry it.
"""
from __future__ import annotations

import re
from typing import Any

from chalicelib.errors import ValidationError

MAX_LABELS = 32
MAX_KEY_LENGTH = 63
MAX_VALUE_LENGTH = 255
_KEY = re.compile(r"[A-Za-z0-9._/-]{1,63}")


def check_labels(value: Any, field: str = "labels") -> dict[str, str]:
    """The labels as given (None: none), or a 400 naming ``labels`` or ``labels.<key>``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(field, f"{field} must be an object of strings")
    if len(value) > MAX_LABELS:
        raise ValidationError(field, f"{field} must have at most {MAX_LABELS} entries, got {len(value)}")
    for key, v in value.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            shown = key if isinstance(key, str) and len(key) <= 80 else f"{str(key)[:80]}..."
            raise ValidationError(field, f"{field}: key {shown!r} must be 1 to {MAX_KEY_LENGTH} characters of "
                                         f"letters, digits and . _ / -")
        if not isinstance(v, str) or len(v) > MAX_VALUE_LENGTH:
            raise ValidationError(f"{field}.{key}", f"{field}.{key} must be a string of at most {MAX_VALUE_LENGTH} characters")
    return dict(value)


def parse_selector(values: list[str], field: str = "label") -> dict[str, str]:
    """``key=value`` selectors (all must hold), or a 400 naming ``label``."""
    wanted: dict[str, str] = {}
    for raw in values:
        key, sep, val = raw.partition("=")
        if not sep or not _KEY.fullmatch(key) or len(val) > MAX_VALUE_LENGTH:
            raise ValidationError(field, f"{field} must be key=value (a label key, then its value), got {raw[:80]!r}")
        if key in wanted and wanted[key] != val:
            raise ValidationError(field, f"{field}: {key} is asked for with two values")
        wanted[key] = val
    return wanted


def matches(labels: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())
