"""The agents' callbacks at the HTTP edge: size, the callback token, then the body.

The order matters: a body over 1 MB is refused first (413); then the attempt and its
token are checked (404, the same for every reason, before anything about the body is
said); then the body is validated (400 naming the field) and the service carries it out.
"""
from __future__ import annotations

from chalicelib.api.schemas import CALLBACK_BODIES
from chalicelib.api.validation import MAX_BODY_BYTES, parse_json_body, validate
from chalicelib.errors import PayloadTooLarge


def callback_token(headers) -> str | None:
    """The bearer token of a callback, or None (missing or not ``Bearer <token>``)."""
    for k, v in (headers or {}).items():
        if k.lower() == "authorization" and isinstance(v, str):
            scheme, _, token = v.strip().partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


def handle(service, session_id: str, attempt: str, action: str, headers, raw_body) -> dict:
    """One callback through ``service`` (a CallbackService): ``{status, cancelRequested}``."""
    raw = raw_body.encode() if isinstance(raw_body, str) else (raw_body or b"")
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the request body is larger than {MAX_BODY_BYTES} bytes (1 MB)")
    call = service.open(session_id, attempt, action, callback_token(headers))
    body = validate(parse_json_body(raw, required=call.action.value == "progress"), CALLBACK_BODIES[call.action.value])
    return service.apply(call, body)
