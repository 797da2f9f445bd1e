"""``webhook``: an HTTP endpoint that speaks the agent contract.

Each attempt is one ``POST config.url`` with ``Content-Type: application/json``,
the agent's static ``config.headers``, the run envelope as its body
(:mod:`chalicelib.agents.envelope`) and Standard Webhooks signature headers
(:mod:`chalicelib.agents.signing`), signed afresh for this delivery with every
active signing secret of the agent.

Where it may go is what the ``http`` kind may reach (:mod:`chalicelib.agents.net`):
never the system's own ports locally, no private ranges in AWS; redirects are never
followed. What the answer means is :mod:`chalicelib.agents.answers`. The wait for
a synchronous answer is bounded by the attempt's deadline and by
``SCHEDULER_SYNC_WAIT_SECONDS``: longer work answers ``202`` and calls back.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import urllib3
from urllib3 import exceptions as u3

from chalicelib.agents import validation as v
from chalicelib.agents.answers import MAX_OUTPUT_BYTES, Accepted, Failed, classify_http
from chalicelib.agents.base import AgentFailure, KindDeps, Reported, RunAccepted, RunContext, tenant_of
from chalicelib.agents.envelope import build_envelope, encode
from chalicelib.agents.kinds.http_kind import CONNECT_TIMEOUT, _headers, _reason, _redact, _stopped, _url
from chalicelib.agents.net import BadUrl, GuardedHttp, TargetRefused
from chalicelib.agents.signing import active_ciphertexts, signature_headers
from chalicelib.clock import Clock
from chalicelib.domain.model import AgentKindName, ErrorCategory
from chalicelib.errors import SchedulerError, ValidationError
from chalicelib.limits import SYNC_WAIT_SECONDS_MAX

log = logging.getLogger("agent_scheduler.agents.webhook")

MAX_ANSWER_BYTES = 1024 * 1024  # read at most this much of an answer; more is kept as a preview
_RESERVED_PREFIXES = ("webhook-", "content-")
_RESERVED_NAMES = ("host",)


class WebhookKind:
    name = AgentKindName.WEBHOOK.value
    # The answer table keeps outputs up to 64 KB of compact JSON; the executor measures with
    # spaces after separators, so its bound leaves room for that.
    max_output_bytes = 2 * MAX_OUTPUT_BYTES

    def __init__(self, clock: Clock | None = None) -> None:
        # The signature's timestamp is the delivery's real time: receivers compare it with theirs.
        self._clock = clock or Clock()

    def validate_config(self, config: dict) -> dict:
        config = v.as_dict(config, allowed=("url", "headers", "secretHeaders"), required=("url",))
        out: dict = {"url": _url(config["url"]), "headers": {}}
        if config.get("headers") is not None:
            raw = config["headers"]
            for name in raw if isinstance(raw, dict) else ():
                lowered = str(name).lower()
                if lowered.startswith(_RESERVED_PREFIXES) or lowered in _RESERVED_NAMES:
                    raise ValidationError(
                        "config.headers",
                        f"config.headers may not set {name!r}: webhook-*, Host and Content-* headers are the "
                        "scheduler's own",
                    )
            out["headers"] = _headers(raw)
        if config.get("secretHeaders") is not None:
            from chalicelib.agents.kinds.http_kind import _secret_headers

            out["secretHeaders"] = _secret_headers(config["secretHeaders"])
        return out

    def run(self, config: dict, ctx: RunContext, deps: KindDeps) -> Any:
        config = self.validate_config(config)
        url = config["url"]
        target = f"POST {_redact(url)}"
        body = encode(build_envelope(ctx, config))
        headers = dict(config["headers"])
        headers["Content-Type"] = "application/json"
        headers.update(self._signature(ctx, deps, body))

        remaining = ctx.remaining_seconds()
        if remaining <= 0 or ctx.cancelled():
            raise _stopped(ctx, "before the request was sent")
        sync_wait = float(deps.sync_wait_seconds or SYNC_WAIT_SECONDS_MAX)
        read_timeout = min(remaining, sync_wait)
        deadline_bound = remaining <= sync_wait
        timeout = urllib3.Timeout(connect=min(CONNECT_TIMEOUT, remaining), read=read_timeout)
        http = deps.http if deps.http is not None else GuardedHttp(deps.agent_policy().net, resolver=deps.resolver)
        try:
            response = http.request("POST", url, headers=headers, body=body, timeout=timeout,
                                    max_body=MAX_ANSWER_BYTES)
        except (TargetRefused, BadUrl) as exc:
            raise AgentFailure(ErrorCategory.PERMANENT, f"{target}: {exc.message}") from None
        except u3.ReadTimeoutError:
            if deadline_bound:
                raise AgentFailure(ErrorCategory.TIMEOUT, f"{target}: no answer by the deadline") from None
            raise AgentFailure(
                ErrorCategory.TIMEOUT,
                f"{target}: no answer within the synchronous limit of {read_timeout:g}s "
                "(SCHEDULER_SYNC_WAIT_SECONDS); longer work answers 202 and calls back",
            ) from None
        except u3.LocationParseError as exc:
            raise AgentFailure(ErrorCategory.PERMANENT, f"{target}: bad URL ({exc})") from None
        except (u3.HTTPError, OSError) as exc:
            raise AgentFailure(ErrorCategory.TRANSIENT, f"{target}: {type(exc).__name__}: {_reason(exc)}") from None

        now = self._clock.now()
        deadline = datetime.fromtimestamp(now.timestamp() + ctx.remaining_seconds(), tz=timezone.utc)
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        verdict = classify_http(
            response.status, response.headers, response.body, now=now, deadline=deadline,
            body_complete=not response.truncated, total_bytes=total,
        )
        if isinstance(verdict, Accepted):
            raise RunAccepted(f"{target}: HTTP 202, the agent reports by callback")
        if isinstance(verdict, Failed):
            raise AgentFailure(verdict.category, f"{target}: {verdict.message}", retry_after=verdict.retry_after)
        for note in verdict.notes:
            log.warning("agent answer: %s", note, extra={"agent_id": ctx.agent_id, "session_id": ctx.session_id})
        return Reported(verdict.output, verdict.usage)

    def _signature(self, ctx: RunContext, deps: KindDeps, body: bytes) -> dict[str, str]:
        agent = getattr(ctx, "agent", None)
        tenant_id = tenant_of(ctx)
        now = self._clock.now()
        # Which secrets sign is judged at the attempt's start (the scheduler's time); the
        # signature's own timestamp is this delivery's real time.
        started = getattr(getattr(ctx, "session", None), "started_at", None)
        at = float(started) if started is not None else now.timestamp()
        ciphertexts = active_ciphertexts(getattr(agent, "signing_keys", None), at)
        if not ciphertexts or tenant_id is None:
            raise AgentFailure(ErrorCategory.PERMANENT, "the agent has no signing secret; rotate it to make one")
        if deps.signing_keys is None:
            raise AgentFailure(ErrorCategory.INTERNAL, "no signing key store configured")
        try:
            secrets = [deps.signing_keys.decrypt(c, tenant_id, ctx.agent_id) for c in ciphertexts]
        except SchedulerError as exc:
            category = ErrorCategory.TRANSIENT if exc.retryable else ErrorCategory.INTERNAL
            raise AgentFailure(category, f"could not read the signing secret: {exc.message}") from None
        return signature_headers(ctx.session_id, body, secrets, now)
