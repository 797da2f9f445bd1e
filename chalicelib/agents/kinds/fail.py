"""``fail``: fails its first ``times`` attempts (always, when ``times`` is absent)."""
from __future__ import annotations

from typing import Any

from chalicelib.agents import validation as v
from chalicelib.agents.base import AgentFailure, KindDeps, RunContext
from chalicelib.domain.model import AgentKindName, ErrorCategory
from chalicelib.errors import ValidationError

CATEGORIES = tuple(c.value for c in ErrorCategory if c is not ErrorCategory.CANCELLED)


class FailKind:
    name = AgentKindName.FAIL.value

    def validate_config(self, config: dict) -> dict:
        config = v.as_dict(config, allowed=("times", "category", "message"))
        out: dict = {"category": ErrorCategory.AGENT_ERROR.value}
        if config.get("times") is not None:
            out["times"] = v.integer(config["times"], "times", minimum=0)
        if config.get("category") is not None:
            category = v.string(config["category"], "category", max_length=64).strip().upper()
            if category not in CATEGORIES:
                raise ValidationError(
                    "config.category",
                    f"unknown category {config['category']!r}; expected one of "
                    + ", ".join(CATEGORIES),
                )
            out["category"] = category
        if config.get("message") is not None:
            out["message"] = v.string(config["message"], "message", max_length=4096)
        return out

    def run(self, config: dict, ctx: RunContext, deps: KindDeps) -> Any:
        config = self.validate_config(config)
        times = config.get("times")
        attempt = ctx.attempt
        if times is None or attempt <= times:
            of = "always" if times is None else f"{times} time(s)"
            message = config.get("message") or f"failing on purpose (attempt {attempt}, {of})"
            raise AgentFailure(ErrorCategory(config["category"]), message)
        return {"attempt": attempt}
