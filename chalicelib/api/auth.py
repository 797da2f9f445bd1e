"""Bearer JWT (HS256): ``sub`` is the tenant, ``scope`` may hold ``admin``."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

import jwt

from chalicelib.errors import Forbidden, Unauthorized

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
    if not token:
        raise Unauthorized("missing bearer token")
    try:
        claims = jwt.decode(
            token,
            secret,
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
    now = time.time() if now is None else now
    claims = {"sub": tenant_id, "iat": int(now), "exp": int(now + ttl_seconds)}
    if scopes:
        claims["scope"] = scopes
    return jwt.encode(claims, secret, algorithm="HS256")
