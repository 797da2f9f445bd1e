"""The agent author's kit: verify a delivery, read the run, report back.

A ``webhook`` agent receives each run as a signed ``POST`` (Standard Webhooks); a
``lambda`` agent receives the same envelope as its event. With this module::

    from agent_scheduler.agent import Run, parse, verify

    envelope = parse(verify(body, headers, secret))      # SignatureError unless we sent it
    envelope.session_id, envelope.attempt, envelope.input, envelope.deadline

    # answer at once: 200 {"output": ..., "usage": {...}}
    # or answer 202 and report later, from any thread or process:
    with Run(envelope) as run:
        run.progress(40, "reading sources")
        run.heartbeat({"page": 7})                        # the next attempt gets it back
        if run.cancel_requested:
            ...
        run.complete({"summary": "..."}, usage={"inputTokens": 1200, "outputTokens": 300})

Only the standard library, ``httpx`` and ``standardwebhooks``. The contract is
``docs/agents.md``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

import httpx
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

__all__ = [
    "CANCEL_TYPE", "ENVELOPE_TYPE", "AgentRef", "Callback", "CallbackError", "EnvelopeError", "Run", "RunEnvelope", "RunFinished",
    "SignatureError", "parse", "verify",
]

ENVELOPE_TYPE = "agent.run"
CANCEL_TYPE = "agent.cancel"  # the signed notice of a cancelled async run: {"type", "sessionId", "attempt"}
CATEGORIES = ("TRANSIENT", "PERMANENT", "RATE_LIMITED", "AGENT_ERROR")


class SignatureError(Exception):
    """The request was not signed with any of the agent's secrets (or is too old)."""


class EnvelopeError(ValueError):
    """The body is not a run envelope."""


class CallbackError(Exception):
    """The scheduler refused a callback: ``status`` (HTTP), ``code`` and ``message`` as it answered."""

    def __init__(self, status: int, code: str | None, message: str, body: Any = None) -> None:
        super().__init__(f"HTTP {status} {code or ''}: {message}".strip())
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class RunFinished(CallbackError):
    """The attempt already ended (``ended_by``: COMPLETED, FAILED, DEADLINE, HEARTBEAT, CANCELLED,
    SUPERSEDED); stop working on it."""

    @property
    def ended_by(self) -> str | None:
        return self.body.get("endedBy") if isinstance(self.body, dict) else None


def verify(body: bytes | str, headers: Mapping[str, str], secrets: str | Iterable[str]) -> dict:
    """The JSON body of a delivery, once its Standard Webhooks signature checks out.

    ``secrets``: the agent's signing secret (``whsec_...``), or several (during a
    rotation keep both: either verifies). ``headers``: any mapping, for example
    ``dict(handler.headers)``. Raises :class:`SignatureError`.
    """
    plain = {str(k).lower(): str(v) for k, v in headers.items()}
    keys = [secrets] if isinstance(secrets, str) else [s for s in secrets if s]
    if not keys:
        raise SignatureError("no signing secret given")
    last: Exception | None = None
    for secret in keys:
        try:
            return Webhook(secret).verify(body, plain)
        except WebhookVerificationError as exc:
            last = exc
    raise SignatureError(str(last))


@dataclass(frozen=True)
class AgentRef:
    id: str
    name: str | None


@dataclass(frozen=True)
class Callback:
    url: str  # ends with /callbacks/{sessionId}/{attempt}; actions are POSTed below it
    token: str = field(repr=False)
    heartbeat_seconds: int | None = None


@dataclass(frozen=True)
class RunEnvelope:
    """One delivery of a run, typed. ``raw`` is the envelope as received."""

    session_id: str
    attempt: int
    retries_left: int | None
    trigger: str | None
    priority: str | None
    scheduled_for: datetime | None
    timeout_seconds: int | None
    deadline: datetime | None
    redriven_from: str | None
    last_heartbeat_details: Any
    agent: AgentRef
    input: Any
    callback: Callback | None
    raw: dict = field(repr=False, compare=False, default_factory=dict)

    def seconds_left(self, now: datetime | None = None) -> float | None:
        """Seconds until this attempt's deadline (None if it has none)."""
        if self.deadline is None:
            return None
        now = now or datetime.now(timezone.utc)
        return max(0.0, (self.deadline - now).total_seconds())


def parse(envelope: dict | bytes | str) -> RunEnvelope:
    """A :class:`RunEnvelope` from the body (bytes or text) or the event (a dict)."""
    if isinstance(envelope, (bytes, str)):
        try:
            envelope = json.loads(envelope)
        except ValueError as exc:
            raise EnvelopeError(f"not JSON: {exc}") from None
    if not isinstance(envelope, dict) or envelope.get("type") != ENVELOPE_TYPE:
        raise EnvelopeError(f"not a run envelope (type must be {ENVELOPE_TYPE!r})")
    session_id, attempt = envelope.get("sessionId"), envelope.get("attempt")
    if not isinstance(session_id, str) or not session_id:
        raise EnvelopeError("sessionId must be a non-empty string")
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
        raise EnvelopeError("attempt must be a positive integer")
    agent = envelope.get("agent") or {}
    callback = envelope.get("callback")
    cb = None
    if isinstance(callback, dict) and callback.get("url") and callback.get("token"):
        cb = Callback(str(callback["url"]), str(callback["token"]), callback.get("heartbeatSeconds"))
    return RunEnvelope(
        session_id=session_id,
        attempt=attempt,
        retries_left=envelope.get("retriesLeft"),
        trigger=envelope.get("trigger"),
        priority=envelope.get("priority"),
        scheduled_for=_time(envelope.get("scheduledFor"), "scheduledFor"),
        timeout_seconds=envelope.get("timeoutSeconds"),
        deadline=_time(envelope.get("deadline"), "deadline"),
        redriven_from=envelope.get("redrivenFrom"),
        last_heartbeat_details=envelope.get("lastHeartbeatDetails"),
        agent=AgentRef(str(agent.get("id") or ""), agent.get("name")),
        input=envelope.get("input"),
        callback=cb,
        raw=envelope,
    )


class Run:
    """Reports on one attempt through its callback: ``progress``, ``heartbeat``, ``complete``,
    ``fail``. Each answers ``{status, cancelRequested}``; :attr:`cancel_requested` is the last
    one seen. The token goes in ``Authorization: Bearer``, never in the URL.
    """

    def __init__(self, envelope: RunEnvelope | Callback, *, client: httpx.Client | None = None,
                 timeout: float = 10.0) -> None:
        callback = envelope.callback if isinstance(envelope, RunEnvelope) else envelope
        if callback is None:
            raise ValueError("this delivery has no callback: answer it synchronously")
        self.callback = callback
        self._own = client is None
        self._client = client or httpx.Client(timeout=timeout)
        self.cancel_requested = False
        self.status: str | None = None

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._own:
            self._client.close()

    def progress(self, percent: float, message: str | None = None) -> dict:
        """Tell watchers how far along it is (0..100); shown as an ``agent:progress`` event."""
        body: dict[str, Any] = {"progress": percent}
        if message is not None:
            body["message"] = message
        return self._post("progress", body)

    def heartbeat(self, details: Any = None) -> dict:
        """Still alive; ``details`` (any JSON, up to 32 KB) reach the next attempt as
        ``lastHeartbeatDetails`` if this one fails."""
        return self._post("heartbeat", {} if details is None else {"details": details})

    def complete(self, output: Any = None, usage: Mapping[str, Any] | None = None) -> dict:
        """The run succeeded with ``output``; ``usage``: ``{inputTokens?, outputTokens?, costUsd?}``."""
        body: dict[str, Any] = {}
        if output is not None:
            body["output"] = output
        if usage is not None:
            body["usage"] = dict(usage)
        return self._post("complete", body)

    def fail(self, message: str, category: str | None = None, *, non_retryable: bool | None = None,
             retry_after_seconds: float | None = None) -> dict:
        """The attempt failed. ``category``: TRANSIENT, PERMANENT, RATE_LIMITED or AGENT_ERROR."""
        if category is not None and category not in CATEGORIES:
            raise ValueError(f"category must be one of {', '.join(CATEGORIES)}")
        body: dict[str, Any] = {"message": message}
        if category is not None:
            body["category"] = category
        if non_retryable is not None:
            body["nonRetryable"] = non_retryable
        if retry_after_seconds is not None:
            body["retryAfterSeconds"] = retry_after_seconds
        return self._post("fail", body)

    def _post(self, action: str, body: dict) -> dict:
        url = self.callback.url.rstrip("/") + "/" + action
        response = self._client.post(url, json=body, headers={"Authorization": f"Bearer {self.callback.token}"})
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code >= 300:
            code = answer.get("code") if isinstance(answer, dict) else None
            message = answer.get("message", "") if isinstance(answer, dict) else response.text[:300]
            error = RunFinished if response.status_code == 409 else CallbackError
            raise error(response.status_code, code, str(message), answer)
        if isinstance(answer, dict):
            self.status = answer.get("status", self.status)
            self.cancel_requested = bool(answer.get("cancelRequested", self.cancel_requested))
            return answer
        return {}


def _time(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise EnvelopeError(f"{name} must be an ISO 8601 time") from None
