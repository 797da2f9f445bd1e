"""Standard Webhooks signatures for agent deliveries (https://www.standardwebhooks.com/).

Each ``webhook`` agent has a signing secret ``whsec_`` + base64 of 32 random bytes;
the HMAC key is the decoded bytes, as the ``standardwebhooks`` libraries expect.
Every delivery is signed afresh: ``webhook-id`` (the session id, the same on every
attempt), ``webhook-timestamp`` (Unix seconds of this delivery) and
``webhook-signature`` (``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, one per
active secret, space separated: during a rotation's overlap both verify).

The stored form (the agent's ``signing_keys``) holds only ciphertexts:
``{"current": <ciphertext>, "previous": <ciphertext> | absent, "previousUntil": <epoch> | absent}``.
Which ciphertexts are active at a time is :func:`active_ciphertexts` (pure).
"""
from __future__ import annotations

import base64
import secrets as _random
from datetime import datetime
from typing import Any, Iterable

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
ROTATION_OVERLAP_SECONDS = 24 * 3600
HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(SECRET_BYTES)).decode("ascii")


def signature_headers(msg_id: str, body: bytes, secrets: Iterable[str], when: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``, signed with every secret given."""
    signatures = [Webhook(s).sign(msg_id=msg_id, timestamp=when, data=body) for s in secrets]
    if not signatures:
        raise ValueError("no signing secret")
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(int(when.timestamp())),
        HEADER_SIGNATURE: " ".join(signatures),
    }


def rotated(keys: dict | None, new_ciphertext: str, now: float, *, revoke_previous: bool) -> dict:
    """The stored keys after a rotation: the new secret is current; the old one stays
    valid for 24 h unless ``revoke_previous``."""
    out: dict[str, Any] = {"current": new_ciphertext}
    old = (keys or {}).get("current")
    if old and not revoke_previous:
        out["previous"] = old
        out["previousUntil"] = now + ROTATION_OVERLAP_SECONDS
    return out


def active_ciphertexts(keys: dict | None, now: float) -> list[str]:
    """The ciphertexts of the secrets deliveries are signed with at ``now``: the current
    one, and the previous one while its overlap lasts."""
    if not keys or not keys.get("current"):
        return []
    out = [keys["current"]]
    until = keys.get("previousUntil")
    if keys.get("previous") and until is not None and now < float(until):
        out.append(keys["previous"])
    return out
