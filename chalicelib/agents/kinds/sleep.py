"""``sleep``: waits ``seconds`` (cooperatively), reporting progress."""
from __future__ import annotations

import math
from typing import Any

from chalicelib.agents import validation as v
from chalicelib.agents.base import AgentFailure, KindDeps, RunContext
from chalicelib.domain.model import AgentKindName, ErrorCategory

MAX_SECONDS = 900
MAX_STEPS = 1000  # progressEvery is widened so a run reports at most this many times


class SleepKind:
    name = AgentKindName.SLEEP.value

    def validate_config(self, config: dict) -> dict:
        config = v.as_dict(config, allowed=("seconds", "progressEvery"), required=("seconds",))
        seconds = v.number(config["seconds"], "seconds", minimum=0, maximum=MAX_SECONDS)
        every = config.get("progressEvery")
        every = 1 if every is None else v.number(
            every, "progressEvery", minimum=0, exclusive_minimum=True
        )
        return {"seconds": seconds, "progressEvery": every}

    def run(self, config: dict, ctx: RunContext, deps: KindDeps) -> Any:
        config = self.validate_config(config)
        total, every = config["seconds"], config["progressEvery"]
        if total > 0:
            every = max(every, total / MAX_STEPS)
            steps = max(1, math.ceil(total / every - 1e-9))
            done = 0.0
            for i in range(1, steps + 1):
                target = total if i == steps else i * every
                if not ctx.sleep(target - done):
                    raise _stopped(ctx)
                done = target
                ctx.progress(round(100.0 * done / total, 2), f"slept {done:g}s of {total:g}s")
        elif ctx.cancelled():
            raise _stopped(ctx)
        return {"slept": total}


def _stopped(ctx: RunContext) -> AgentFailure:
    """ctx.sleep stopped early: the run was cancelled, or its deadline passed."""
    if ctx.remaining_seconds() <= 0:
        return AgentFailure(ErrorCategory.TIMEOUT, "deadline reached while sleeping")
    return AgentFailure(ErrorCategory.CANCELLED, "cancelled")
