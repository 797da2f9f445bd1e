"""The JWT secret's value: one plain string, or a key set for rotation by ``kid``::

    {"current": "k2", "keys": {"k1": "<old secret>", "k2": "<new secret>"}}

Shared by the token checks (``chalicelib.api.auth``) and by what the deployment seals
with keys derived from the same secret (stored idempotent answers).
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from chalicelib.errors import ConfigError

KID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SECRET_NAME = "SCHEDULER_JWT_SECRET (or the secret SCHEDULER_JWT_SECRET_ARN names)"


@dataclass(frozen=True)
class KeySet:
    """The HMAC keys tokens may be signed with, by ``kid``; ``current`` signs new tokens.

    ``current`` is ``None`` for a plain secret: one key, and tokens carry no ``kid``.
    """

    keys: Mapping[str | None, str]
    current: str | None

    @property
    def signing_key(self) -> str:
        return self.keys[self.current]

    def key_for(self, kid: str | None) -> str | None:
        """The key that checks a token with this ``kid`` (``None``: no kid), if any."""
        if kid is None:
            return self.signing_key
        if self.current is None:
            return None  # a plain secret has no ids: a token naming one was not made here
        return self.keys.get(kid)


@functools.lru_cache(maxsize=8)
def key_set(secret: str) -> KeySet:
    """Read the secret's value: a plain string, or a JSON key set (see the module doc).

    A value that starts with ``{`` must be a valid key set; the error never quotes the value.
    """
    if not secret:
        raise ConfigError(f"{SECRET_NAME} is empty")
    if not secret.lstrip().startswith("{"):
        return KeySet(MappingProxyType({None: secret}), None)
    try:
        raw = json.loads(secret)
    except ValueError:
        raise ConfigError(f"{SECRET_NAME} starts with '{{' but is not JSON: a key set "
                          '{"current": KID, "keys": {KID: SECRET, ...}} was expected') from None
    if not isinstance(raw, dict) or set(raw) - {"current", "keys"}:
        raise ConfigError(f"{SECRET_NAME}: a key set has exactly the fields 'current' and 'keys'")
    keys, current = raw.get("keys"), raw.get("current")
    if not isinstance(keys, dict) or not keys:
        raise ConfigError(f"{SECRET_NAME}: 'keys' must be an object of key id to secret, with at least one key")
    for kid, value in keys.items():
        if not KID_RE.match(kid):
            raise ConfigError(f"{SECRET_NAME}: key ids are 1..64 of A-Z a-z 0-9 . _ - (one is not)")
        if not isinstance(value, str) or len(value) < 16:
            raise ConfigError(f"{SECRET_NAME}: the secret of key {kid!r} must be a string of at least 16 characters")
    if not isinstance(current, str) or current not in keys:
        raise ConfigError(f"{SECRET_NAME}: 'current' must name one of the ids in 'keys'")
    return KeySet(MappingProxyType(dict(keys)), current)
