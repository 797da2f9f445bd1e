"""Kinds by name. A new kind is one small module plus a ``register`` call here."""
from __future__ import annotations

import threading
from typing import Any

from chalicelib.agents.base import AgentKind
from chalicelib.agents.kinds.echo import EchoKind
from chalicelib.agents.kinds.fail import FailKind
from chalicelib.agents.kinds.http_kind import HttpKind
from chalicelib.agents.kinds.lambda_kind import LambdaKind
from chalicelib.agents.kinds.sleep import SleepKind
from chalicelib.agents.kinds.webhook_kind import WebhookKind
from chalicelib.errors import ValidationError

_kinds: dict[str, AgentKind] = {}
_lock = threading.Lock()


def register(kind: AgentKind) -> None:
    """Add (or replace) a kind under ``kind.name``."""
    name = getattr(kind, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError("a kind needs a non-empty string name")
    for method in ("validate_config", "run"):
        if not callable(getattr(kind, method, None)):
            raise ValueError(f"kind {name!r} has no {method}()")
    with _lock:
        _kinds[name] = kind


def get_kind(name: str) -> AgentKind:
    key = getattr(name, "value", name)  # accept AgentKindName too
    kind = _kinds.get(key) if isinstance(key, str) else None
    if kind is None:
        raise ValidationError(
            "kind", f"unknown kind {key!r}; expected one of {', '.join(kind_names())}"
        )
    return kind


def check_config(kind_name: str, config: Any, tenant_id: str, policy: Any) -> dict:
    """At save: the kind's config, normalised, and allowed for this tenant.

    A kind may define ``authorize(config, tenant_id, policy)`` that raises a
    ValidationError naming the field when the tenant may not use that config
    (the ``lambda`` kind: functions outside the tenant's pattern).
    """
    kind = get_kind(kind_name)
    checked = kind.validate_config(config if config is not None else {})
    authorize = getattr(kind, "authorize", None)
    if authorize is not None:
        authorize(checked, tenant_id, policy)
    return checked


def kind_names() -> list[str]:
    return sorted(_kinds)


for _kind in (EchoKind(), SleepKind(), FailKind(), HttpKind(), LambdaKind(), WebhookKind()):
    register(_kind)
del _kind
