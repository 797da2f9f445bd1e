"""``echo``: succeeds at once with its message and the run's input."""
from __future__ import annotations

from typing import Any

from chalicelib.agents import validation as v
from chalicelib.agents.base import KindDeps, RunContext
from chalicelib.domain.model import AgentKindName


class EchoKind:
    name = AgentKindName.ECHO.value

    def validate_config(self, config: dict) -> dict:
        config = v.as_dict(config, allowed=("message",))
        out: dict = {}
        if config.get("message") is not None:
            out["message"] = v.string(config["message"], "message", max_length=4096)
        return out

    def run(self, config: dict, ctx: RunContext, deps: KindDeps) -> Any:
        config = self.validate_config(config)
        return {"message": config.get("message"), "input": ctx.input}
