"""Idempotency keys on creating requests: what a key is, what makes two requests the same. Pure.

A client sends ``Idempotency-Key`` (1..255 characters) with a creating request. Keys are
scoped per tenant and kept for :data:`RETENTION_SECONDS`. The request's *fingerprint* is
its method, path and canonical JSON body (keys sorted, no insignificant whitespace), so
the same JSON written with another key order or spacing is the same request.

With a key already seen, the stored record decides (the store in
``chalicelib/adapters/idempotency.py`` applies these rules):

- it is ``COMPLETED`` and the fingerprint matches: the first answer again, nothing is done;
- the fingerprint differs: the key was reused for another request (:data:`REUSED`);
- it is still ``INPROGRESS`` and its lease has not run out: :data:`IN_USE`;
- its lease ran out (the request that held it crashed) or the record expired: the key is
  free again and the request runs.

Only 2xx answers are kept (:func:`keeps_answer`): after a 4xx or 5xx the key is released,
so the corrected request can be sent with the same key.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import SchedulerError, ValidationError

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
RETENTION_SECONDS = 24 * 3600
LEASE_SECONDS = 30  # how long a request holds its key when its own deadline is unknown


class IdempotencyKeyReused(SchedulerError):
    status_code = 422
    code = "IDEMPOTENCY_KEY_REUSED"

    def __init__(self) -> None:
        super().__init__(f"{HEADER} was already used with another request (method, path or body differ); "
                         f"use a new key for a new request", field=HEADER)


class IdempotencyKeyInUse(SchedulerError):
    status_code = 409
    code = "IDEMPOTENCY_KEY_IN_USE"
    retryable = True

    def __init__(self) -> None:
        super().__init__(f"a request with this {HEADER} is still in progress; retry later", field=HEADER)


@dataclass(frozen=True)
class Fingerprint:
    method: str
    path: str
    body: str  # canonical JSON

    def as_dict(self) -> dict[str, str]:
        return {"method": self.method, "path": self.path, "body": self.body}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()


def header_key(headers: dict[str, str] | Any) -> str | None:
    """The request's key (None: it sent none); 400 naming the header if it is empty or too long."""
    value = None
    for name, v in (headers or {}).items():
        if name.lower() == HEADER.lower():
            value = v
            break
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_KEY_LENGTH:
        raise ValidationError(HEADER, f"{HEADER} must be 1 to {MAX_KEY_LENGTH} characters")
    return value


def canonical_json(body: Any) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def fingerprint(method: str, path: str, body: Any) -> Fingerprint:
    return Fingerprint(method.upper(), path, canonical_json(body))


def scoped_key(tenant_id: str, key: str) -> str:
    """The key as stored: per tenant (two tenants may use the same key)."""
    return json.dumps([tenant_id, key])


def keeps_answer(status: int) -> bool:
    return 200 <= status < 300

