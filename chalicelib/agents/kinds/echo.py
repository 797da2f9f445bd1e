"""``echo``: succeeds at once with its message and the run's input; reports ``config.usage``
(for tests and demos) as the run's usage."""
from __future__ import annotations

from typing import Any

from chalicelib.agents import validation as v
from chalicelib.agents.base import KindDeps, Reported, RunContext
from chalicelib.domain.budget import parse_usage
from chalicelib.domain.model import AgentKindName


class EchoKind:
    name = AgentKindName.ECHO.value

    def validate_config(self, config: dict) -> dict:
        config = v.as_dict(config, allowed=("message", "usage"))
        out: dict = {}
        if config.get("message") is not None:
            out["message"] = v.string(config["message"], "message", max_length=4096)
        if config.get("usage") is not None:
            out["usage"] = parse_usage(config["usage"], "config.usage")
        return out

    def run(self, config: dict, ctx: RunContext, deps: KindDeps) -> Any:
        config = self.validate_config(config)
        output = {"message": config.get("message"), "input": ctx.input}
        return Reported(output, config["usage"]) if config.get("usage") else output
