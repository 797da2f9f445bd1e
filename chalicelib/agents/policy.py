"""What a tenant's agents may reach, from the settings (read once, passed in)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from chalicelib.agents.net import NetPolicy
from chalicelib.settings import DEFAULT_LAMBDA_ALLOWED, Settings


@dataclass(frozen=True)
class AgentPolicy:
    net: NetPolicy = NetPolicy()
    lambda_allowed: str = DEFAULT_LAMBDA_ALLOWED  # function-name pattern with {tenant}

    @classmethod
    def from_settings(cls, settings: Settings) -> "AgentPolicy":
        return cls(net=NetPolicy.from_settings(settings), lambda_allowed=settings.lambda_allowed)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "AgentPolicy":
        return cls.from_settings(Settings.from_env(env))
