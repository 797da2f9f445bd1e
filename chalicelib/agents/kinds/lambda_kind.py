"""``lambda``: invokes an AWS Lambda function synchronously, only one its tenant may.

Tenancy: ``SCHEDULER_LAMBDA_ALLOWED`` is a function-name pattern with a
``{tenant}`` placeholder (default ``agent-scheduler-agent-{tenant}-*``). A config
may name the function by name, partial ARN (``123456789012:function:name``) or full
ARN, with or without a version or alias; the function name part must match the
pattern with the run's tenant put in. ``*`` stands for one name segment (letters,
digits and ``_``, no ``-``), so tenant ``acme`` cannot reach the functions of a
tenant called ``acme-corp`` (``agent-scheduler-agent-acme-corp-x``). It is checked
when the agent is saved (a 400 naming ``config.functionName``) and again at every
run (PERMANENT), since the setting may have changed meanwhile.

The invocation goes through an invoker handed in (``deps.invoker()``, see
:mod:`chalicelib.adapters.lambda_invoke`): one invocation per attempt, no SDK
retries. An invocation that outlives its attempt keeps running in Lambda; its
result is discarded and a retry invokes the function again.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

from chalicelib.agents import validation as v
from chalicelib.agents.answers import MAX_OUTPUT_BYTES, Accepted, Failed, classify_result
from chalicelib.agents.base import AgentFailure, KindDeps, Reported, RunAccepted, RunContext, tenant_of
from chalicelib.agents.envelope import build_envelope, encode
from chalicelib.agents.jsonsafe import truncate_text
from chalicelib.clock import Clock
from chalicelib.domain.model import AgentKindName, ErrorCategory
from chalicelib.errors import ValidationError

_NAME = r"(?P<name>[A-Za-z0-9_-]{1,64})"
_QUALIFIER = r"(?::(?P<qualifier>\$LATEST|[A-Za-z0-9_-]{1,128}))?"
_REFERENCES = (
    re.compile(rf"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{{12}}:function:{_NAME}{_QUALIFIER}$"),
    re.compile(rf"^\d{{12}}:function:{_NAME}{_QUALIFIER}$"),
    re.compile(rf"^{_NAME}{_QUALIFIER}$"),
)
_SEGMENT = "[A-Za-z0-9_]*"  # what "*" stands for in the allowed pattern


def function_name_of(reference: str) -> str | None:
    """The function name in a name, partial ARN or full ARN (qualifier dropped), or None."""
    for pattern in _REFERENCES:
        match = pattern.match(reference)
        if match:
            return match.group("name")
    return None


def allowed_names(pattern: str, tenant_id: str) -> str:
    """The pattern as this tenant sees it (``{tenant}`` filled in)."""
    return pattern.replace("{tenant}", tenant_id)


def may_invoke(pattern: str, tenant_id: str, reference: str) -> bool:
    """True if ``tenant_id`` may invoke the function ``reference`` names."""
    name = function_name_of(reference)
    if name is None or not tenant_id:
        return False
    regex = "".join(
        re.escape(tenant_id) if piece == "{tenant}" else _SEGMENT if piece == "*" else re.escape(piece)
        for piece in re.split(r"(\{tenant\}|\*)", pattern)
        if piece
    )
    return re.fullmatch(regex, name) is not None


class LambdaKind:
    name = AgentKindName.LAMBDA.value
    max_output_bytes = 2 * MAX_OUTPUT_BYTES  # outputs up to 64 KB (compact JSON) are kept whole

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or Clock()  # only to cap a result's retryAfterSeconds at the deadline

    def validate_config(self, config: dict) -> dict:
        config = v.as_dict(config, allowed=("functionName", "payload"), required=("functionName",))
        name = v.string(config["functionName"], "functionName", max_length=256).strip()
        if function_name_of(name) is None:
            raise ValidationError(
                "config.functionName",
                "must be a Lambda function name, partial ARN or ARN (with an optional version or alias)",
            )
        out: dict = {"functionName": name}
        if config.get("payload") is not None:
            out["payload"] = v.json_value(config["payload"], "payload")
        return out

    def authorize(self, config: dict, tenant_id: str, policy: Any) -> None:
        """At save: a 400 naming ``config.functionName`` unless the tenant may invoke it."""
        if not may_invoke(policy.lambda_allowed, tenant_id, config["functionName"]):
            raise ValidationError("config.functionName", _refusal(config["functionName"], policy, tenant_id))

    def run(self, config: dict, ctx: RunContext, deps: KindDeps) -> Any:
        config = self.validate_config(config)
        name = config["functionName"]
        tenant_id = tenant_of(ctx)
        if tenant_id is None:
            raise AgentFailure(ErrorCategory.PERMANENT, f"lambda {name}: the run's tenant is unknown")
        policy = deps.agent_policy()
        if not may_invoke(policy.lambda_allowed, tenant_id, name):
            raise AgentFailure(ErrorCategory.PERMANENT, f"lambda {name}: {_refusal(name, policy, tenant_id)}")
        invoker = deps.invoker()
        if invoker is None:
            raise AgentFailure(ErrorCategory.INTERNAL, "no Lambda invoker configured")
        # The run envelope, as a webhook agent gets it (config.payload is the input when the run has none).
        payload = build_envelope(ctx, config)
        from chalicelib.adapters.lambda_invoke import InvokeFailed

        try:
            invocation = invoker.invoke(name, encode(payload))
        except InvokeFailed as exc:
            category = exc.category
            if exc.timed_out and ctx.remaining_seconds() <= 0:
                category = ErrorCategory.TIMEOUT
            raise AgentFailure(category, exc.message, retry_after=exc.retry_after) from None

        result = _parse(invocation.payload)
        if invocation.function_error:
            raise AgentFailure(ErrorCategory.AGENT_ERROR, _error_message(invocation, result))
        now = self._clock.now()
        deadline = datetime.fromtimestamp(now.timestamp() + ctx.remaining_seconds(), tz=timezone.utc)
        verdict = classify_result(result, now=now, deadline=deadline)
        if isinstance(verdict, Accepted):
            raise RunAccepted(f"lambda {name}: the function reports by callback")
        if isinstance(verdict, Failed):
            raise AgentFailure(verdict.category, f"lambda {name}: {verdict.message}", retry_after=verdict.retry_after)
        return Reported(verdict.output, verdict.usage) if verdict.usage is not None else verdict.output


def _refusal(reference: str, policy: Any, tenant_id: str) -> str:
    shown = function_name_of(reference) or reference
    return (
        f"refused function {shown!r}: this tenant may invoke only functions named "
        f"{allowed_names(policy.lambda_allowed, tenant_id)!r} (SCHEDULER_LAMBDA_ALLOWED)"
    )


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _error_message(invocation: Any, result: Any) -> str:
    if isinstance(result, dict) and result.get("errorMessage") is not None:
        message = str(result["errorMessage"])
        if result.get("errorType"):
            message = f"{result['errorType']}: {message}"
    elif isinstance(result, str) and result:
        message = result
    else:
        message = f"function error ({invocation.function_error})"
    return truncate_text(message, 2000)
