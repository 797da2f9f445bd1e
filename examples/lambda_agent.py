"""A Lambda agent: the scheduler invokes it with the run envelope as its event.

Deploy it as ``agent-scheduler-agent-<tenant>-<name>`` (the functions a tenant may
use) and create an agent of kind ``lambda`` with ``{"functionName": ...}``. Return
``{"output", "usage"}``; ``{"rateLimited": true, "retryAfterSeconds": n}`` when a
provider throttles you; ``{"async": true}`` to report later through
``agent_scheduler.agent.Run(envelope)``.
"""
from __future__ import annotations

from agent_scheduler.agent import parse


def handler(event, context=None):
    run = parse(event)
    if isinstance(run.input, dict) and run.input.get("throttled"):
        return {"rateLimited": True, "retryAfterSeconds": 30}
    text = str(run.input.get("text", "")) if isinstance(run.input, dict) else ""
    return {
        "output": {"sessionId": run.session_id, "attempt": run.attempt, "words": len(text.split())},
        "usage": {"inputTokens": len(text.split()), "outputTokens": 1},
    }
