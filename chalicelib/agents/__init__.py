"""Agent kinds (echo, sleep, fail, http, lambda), their registry and the executor."""
from __future__ import annotations

from chalicelib.agents.base import AgentFailure, AgentKind, KindDeps, RunContext
from chalicelib.agents.executor import Outcome, execute
from chalicelib.agents.registry import get_kind, kind_names, register

__all__ = [
    "AgentFailure",
    "AgentKind",
    "KindDeps",
    "Outcome",
    "RunContext",
    "execute",
    "get_kind",
    "kind_names",
    "register",
]
