"""Bearer JWT (HS256): ``sub`` is the tenant, ``scope`` may hold ``admin``.

The secret (``SCHEDULER_JWT_SECRET``, or the Secrets Manager secret in AWS) is either
one plain string, or, to rotate it without logging everyone out, a key set::

    {"current": "k2", "keys": {"k1": "<old secret>", "k2": "<new secret>"}}

A token is checked with the key its header's ``kid`` names; a token without ``kid``
with the ``current`` key (so the tokens issued before the switch to a key set keep
working while its first key is the old secret). New tokens are signed with ``current``
and carry its ``kid``. The rotation steps are in infra/README.md.

    >>> keys = '{"current": "k2", "keys": {"k1": "old-secret-of-16+chars", "k2": "new-secret-of-16+chars"}}'
    >>> verify(issue("team-1", keys), keys).tenant_id
    'team-1'
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

import jwt

from chalicelib.errors import Forbidden, Unauthorized
from chalicelib.keyset import KeySet, key_set  # noqa: F401 (part of this module's interface)

TENANT_RE = re.compile(r"^[A-Za-z0-9._:@|+=-]{1,128}$")


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    scopes: frozenset[str]

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes

    def require_admin(self) -> None:
        if not self.admin:
            raise Forbidden("this operation needs the 'admin' scope")


def verify(token: str | None, secret: str, now: float | None = None) -> Principal:
    """The principal of a bearer token; ``secret``: a plain secret or a key set (module doc)."""
    if not token:
        raise Unauthorized("missing bearer token")
    keys = key_set(secret)
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    if kid is not None and not isinstance(kid, str):
        raise Unauthorized("invalid token: 'kid' must be a string")
    key = keys.key_for(kid)
    if key is None:  # which ids exist is nobody's business
        raise Unauthorized("invalid token: unknown key id")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["HS256"],
            options={"require": ["exp", "sub"]},
            leeway=5,
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token has expired") from None
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not TENANT_RE.match(sub):
        raise Unauthorized("invalid token: 'sub' must be a tenant id (1..128 of A-Z a-z 0-9 . _ : @ | + = -)")
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise Unauthorized("invalid token: 'scope' must be a space-separated string")
    return Principal(sub, frozenset(scope.split()))


def bearer(headers) -> str | None:
    value = None
    for k, v in (headers or {}).items():
        if k.lower() == "authorization":
            value = v
            break
    if not value:
        return None
    parts = value.split(None, 1)
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return parts[1].strip()


def issue(tenant_id: str, secret: str, *, scopes: str = "", ttl_seconds: int = 86400, now: float | None = None) -> str:
    """A token signed with the current key (carrying its ``kid`` when the secret is a key set)."""
    now = time.time() if now is None else now
    claims = {"sub": tenant_id, "iat": int(now), "exp": int(now + ttl_seconds)}
    if scopes:
        claims["scope"] = scopes
    keys = key_set(secret)
    headers = {"kid": keys.current} if keys.current is not None else None
    return jwt.encode(claims, keys.signing_key, algorithm="HS256", headers=headers)
