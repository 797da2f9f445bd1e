"""What an agent's answer means: one pure table, no I/O.

A ``webhook`` agent answers an HTTP status, headers and a body; a ``lambda``
agent returns a result document. Both end up as one of three verdicts:

- :class:`Accepted`: the agent took the run and reports by callback
  (``202`` whatever its body; a result ``{"async": true}``);
- :class:`Succeeded`: ``output`` and ``usage`` (another 2xx; a plain result);
- :class:`Failed`: an error category, a message and a ``Retry-After``.

The HTTP table:

=======================================  ==========================================
answer                                    verdict
=======================================  ==========================================
202 (any body)                            Accepted
other 2xx, a JSON object                  output = its ``output`` member if present,
                                          else the whole object; ``usage`` member
                                          is the usage (bad usage: ignored, noted)
other 2xx, any other body                 output = the text (None when empty)
429 (with or without Retry-After)         RATE_LIMITED, retry_after = Retry-After
503 with Retry-After                      RATE_LIMITED, retry_after = Retry-After
408, other 5xx                            TRANSIENT (Retry-After kept if given)
3xx (never followed), 410, other 4xx      PERMANENT
=======================================  ==========================================

``Retry-After`` is delta-seconds or an HTTP date, capped at the attempt's deadline.
An output whose JSON (or text) is over :data:`MAX_OUTPUT_BYTES` is kept as
``{"truncated": true, "bytes": n, "preview": "<first 4 KB>"}`` and still succeeds.
Connection errors (TRANSIENT) and no answer by the deadline (TIMEOUT) are judged
by the kind, which sees them as exceptions, not as answers.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Mapping

from chalicelib.domain.model import ErrorCategory

MAX_OUTPUT_BYTES = 64 * 1024  # an output larger than this is kept as a preview
PREVIEW_BYTES = 4 * 1024
MAX_SNIPPET_CHARS = 300  # of a failed answer's body, in the error message
USAGE_INTS = ("inputTokens", "outputTokens")
USAGE_NUMBERS = ("costUsd",)


@dataclass(frozen=True)
class Accepted:
    """The agent answers later, by callback."""


@dataclass(frozen=True)
class Succeeded:
    output: Any
    usage: dict | None = None
    notes: tuple[str, ...] = field(default=())  # what was ignored (bad usage), for the log


@dataclass(frozen=True)
class Failed:
    category: ErrorCategory
    message: str
    retry_after: float | None = None


Verdict = Accepted | Succeeded | Failed


def classify_http(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime,
    deadline: datetime | None = None,
    body_complete: bool = True,
    total_bytes: int | None = None,
) -> Verdict:
    """The verdict on one HTTP answer (see the module's table).

    ``headers``: any mapping (names looked up case-insensitively). ``body_complete``
    False: ``body`` is only the start of a longer answer of ``total_bytes`` (when
    known); it is then kept as a truncated preview, never parsed.
    """
    h = {str(k).lower(): v for k, v in headers.items()}
    if status == 202:
        return Accepted()
    if 200 <= status < 300:
        if not body_complete:
            return Succeeded(_preview(body.decode("utf-8", errors="ignore"), total_bytes or len(body)))
        return _success(_body_value(body, h.get("content-type", "")))
    message = f"HTTP {status}"
    snippet = _snippet(body)
    if snippet:
        message += f": {snippet}"
    retry_after = retry_after_seconds(h.get("retry-after"), now, deadline)
    if status == 429:
        return Failed(ErrorCategory.RATE_LIMITED, message, retry_after)
    if status == 503 and retry_after is not None:
        return Failed(ErrorCategory.RATE_LIMITED, message, retry_after)
    if status == 408 or 500 <= status < 600:
        return Failed(ErrorCategory.TRANSIENT, message, retry_after)
    if 300 <= status < 400:
        where = h.get("location")
        return Failed(ErrorCategory.PERMANENT, message + (" (redirects are never followed" +
                                                          (f"; it pointed to {_no_query(where)})" if where else ")")))
    return Failed(ErrorCategory.PERMANENT, message)


def classify_result(result: Any, *, now: datetime, deadline: datetime | None = None) -> Verdict:
    """The verdict on a result document (a ``lambda`` agent's return value).

    ``{"async": true}`` -> Accepted; ``{"rateLimited": true, "retryAfterSeconds"?: n}``
    -> RATE_LIMITED; any other JSON object -> output and usage as a 2xx JSON answer;
    anything else is the output itself.
    """
    if isinstance(result, dict):
        if result.get("async") is True:
            return Accepted()
        if result.get("rateLimited") is True:
            wait: Any = result.get("retryAfterSeconds")
            seconds = float(wait) if _is_number(wait) and wait >= 0 else None
            return Failed(ErrorCategory.RATE_LIMITED, "the agent is rate limited",
                          _cap(seconds, now, deadline))
    return _success(result)


def retry_after_seconds(value: str | None, now: datetime, deadline: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date), capped at
    the time left until ``deadline``; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    seconds: float | None
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = max(0.0, (when - now).total_seconds())
    return _cap(seconds, now, deadline)


def check_usage(value: Any) -> tuple[dict | None, tuple[str, ...]]:
    """(the usage to keep, notes on what was ignored). ``inputTokens``/``outputTokens``:
    non-negative integers; ``costUsd``: a non-negative number; other members ignored."""
    if value is None:
        return None, ()
    if not isinstance(value, dict):
        return None, (f"usage ignored: expected an object, got {type(value).__name__}",)
    out: dict = {}
    notes: list[str] = []
    for key, item in value.items():
        if key in USAGE_INTS:
            if isinstance(item, int) and not isinstance(item, bool) and item >= 0:
                out[key] = item
            elif _is_number(item) and float(item).is_integer() and item >= 0:
                out[key] = int(item)
            else:
                notes.append(f"usage.{key} ignored: expected a non-negative integer")
        elif key in USAGE_NUMBERS:
            if _is_number(item) and math.isfinite(float(item)) and item >= 0:
                out[key] = item
            else:
                notes.append(f"usage.{key} ignored: expected a non-negative number")
        else:
            notes.append(f"usage.{str(key)[:40]} ignored: unknown member")
    return (out or None), tuple(notes)


def bound_output(output: Any) -> Any:
    """``output``, or its truncated preview when its JSON (text: its UTF-8) is over 64 KB."""
    if output is None:
        return None
    text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False, separators=(",", ":"),
                                                             default=str)
    size = len(text.encode("utf-8"))
    if size <= MAX_OUTPUT_BYTES:
        return output
    return _preview(text, size)


def _preview(text: str, size: int) -> dict:
    head = text.encode("utf-8")[:PREVIEW_BYTES].decode("utf-8", errors="ignore")
    return {"truncated": True, "bytes": size, "preview": head}


def _success(value: Any) -> Succeeded:
    if isinstance(value, dict):
        output = value.get("output", value)  # an explicit null output stays null
        usage, notes = check_usage(value.get("usage"))
        return Succeeded(bound_output(output), usage, notes)
    return Succeeded(bound_output(value))


def _body_value(body: bytes, content_type: str) -> Any:
    if not body:
        return None
    text = body.decode("utf-8", errors="replace")
    if "json" in content_type.lower() or not content_type:
        try:
            value = json.loads(text)
        except ValueError:
            return text
        if isinstance(value, dict):
            return value
    return text


def _cap(seconds: float | None, now: datetime, deadline: datetime | None) -> float | None:
    if seconds is None or deadline is None:
        return seconds
    return max(0.0, min(seconds, (deadline - now).total_seconds()))


def _snippet(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    return text if len(text) <= MAX_SNIPPET_CHARS else text[:MAX_SNIPPET_CHARS] + "...[truncated]"


def _no_query(url: str) -> str:
    return url.split("?", 1)[0].split("#", 1)[0]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
