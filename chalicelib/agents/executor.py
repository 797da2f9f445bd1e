"""Runs one kind under a hard deadline and turns whatever happens into an Outcome."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from chalicelib.agents.base import AgentFailure, AgentKind, KindDeps, Reported, RunAccepted, RunContext, tenant_of
from chalicelib.agents.jsonsafe import MAX_OUTPUT_BYTES, bounded, truncate_text
from chalicelib.agents.redact import scrub, scrub_value, secret_values
from chalicelib.domain.model import ErrorCategory
from chalicelib.errors import ValidationError

MAX_MESSAGE_CHARS = 2000


@dataclass(frozen=True)
class Outcome:
    ok: bool
    output: Any = None
    category: ErrorCategory | None = None
    message: str | None = None
    retry_after: float | None = None
    usage: dict | None = None  # what the agent reported it used, or None
    accepted: bool = False  # the agent took the run asynchronously: it reports by callback


def execute(
    kind: AgentKind, config: dict, ctx: RunContext, deps: KindDeps, timeout_seconds: float
) -> Outcome:
    """Run ``kind.run`` in a daemon thread, waiting at most ``timeout_seconds``.

    - still running at the timeout -> TIMEOUT (the thread is abandoned; the
      context it holds then reports cancelled and ignores progress);
    - returned -> ok, output made JSON-safe and bounded to 16 KB;
    - AgentFailure -> its category, message and retry_after;
    - ValidationError (bad stored config) -> PERMANENT;
    - any other exception -> AGENT_ERROR "ExcType: message", unless the run was
      cancelled (CANCELLED) or its deadline passed (TIMEOUT) meanwhile.

    The config's secret values (see :mod:`chalicelib.agents.redact`) never leave in
    the outcome: they are replaced in its message and output, as are credentials
    in the message (``Authorization: ...``), because messages reach logs and events.
    """
    outcome = _execute(kind, config, ctx, deps, timeout_seconds)
    secrets = secret_values(config)
    message = outcome.message
    if message is not None:
        message = scrub(message, secrets)
    output = outcome.output
    if secrets and output is not None:
        output = scrub_value(output, secrets, patterns=False)
    if message == outcome.message and output is outcome.output:
        return outcome
    return Outcome(outcome.ok, output, outcome.category, message, outcome.retry_after, outcome.usage,
                   outcome.accepted)


def _execute(
    kind: AgentKind, config: dict, ctx: RunContext, deps: KindDeps, timeout_seconds: float
) -> Outcome:
    timeout_seconds = max(0.0, float(timeout_seconds))
    fenced = _FencedContext(ctx, time.monotonic() + timeout_seconds)
    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["output"] = kind.run(config, fenced, deps)
        except BaseException as exc:  # noqa: BLE001 - reported, never swallowed silently
            box["error"] = exc
        finally:
            done.set()

    name = getattr(kind, "name", type(kind).__name__)
    thread = threading.Thread(
        target=target, name=f"agent-{name}-{getattr(ctx, 'session_id', '')}", daemon=True
    )
    thread.start()
    finished = done.wait(timeout_seconds)
    if not finished:
        fenced.close()
        return Outcome(
            ok=False,
            category=ErrorCategory.TIMEOUT,
            message=f"{name} agent did not finish within {timeout_seconds:g}s",
        )
    fenced.close()

    if "error" not in box:
        result = box.get("output")
        usage = None
        if isinstance(result, Reported):
            result, usage = result.output, result.usage
        try:
            limit = getattr(kind, "max_output_bytes", MAX_OUTPUT_BYTES)  # a kind may keep more than 16 KB
            return Outcome(ok=True, output=bounded(result, limit), usage=usage)
        except Exception as err:  # pragma: no cover - to_jsonable is total
            return _failed(ErrorCategory.INTERNAL, f"output not serialisable: {err}")

    exc = box["error"]
    if isinstance(exc, RunAccepted):
        return Outcome(ok=False, accepted=True, message=truncate_text(exc.message, MAX_MESSAGE_CHARS))
    if isinstance(exc, AgentFailure):
        return _failed(exc.category, exc.message, exc.retry_after)
    if isinstance(exc, ValidationError):
        return _failed(ErrorCategory.PERMANENT, f"invalid config: {exc.message}")
    if _safe(ctx.cancelled):
        if _safe(ctx.remaining_seconds, 1.0) <= 0:
            return _failed(ErrorCategory.TIMEOUT, "deadline reached")
        return _failed(ErrorCategory.CANCELLED, "cancelled")
    return _failed(ErrorCategory.AGENT_ERROR, f"{type(exc).__name__}: {exc}")


def _failed(category: ErrorCategory, message: str, retry_after: float | None = None) -> Outcome:
    return Outcome(
        ok=False,
        category=ErrorCategory(category),
        message=truncate_text(str(message), MAX_MESSAGE_CHARS),
        retry_after=retry_after,
    )


def _safe(fn: Any, default: Any = False) -> Any:
    try:
        return fn()
    except Exception:
        return default


class _FencedContext:
    """The worker's context, cut off when ``execute`` returns.

    After the executor has given up (timeout) or finished, an abandoned thread
    sees ``cancelled()`` True, ``sleep`` False, zero remaining time, and its
    ``progress`` calls are dropped, so it cannot write into a finished run.
    ``remaining_seconds`` is also capped by the executor's own timeout.
    """

    def __init__(self, inner: RunContext, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline  # time.monotonic()
        self._closed = threading.Event()

    @property
    def agent_id(self) -> str:
        return self._inner.agent_id

    @property
    def session_id(self) -> str:
        return self._inner.session_id

    @property
    def tenant_id(self) -> str | None:
        return tenant_of(self._inner)

    @property
    def attempt(self) -> int:
        return self._inner.attempt

    @property
    def input(self) -> dict | None:
        return self._inner.input

    def close(self) -> None:
        self._closed.set()

    def progress(self, percent: float, message: str = "") -> None:
        if not self._closed.is_set():
            self._inner.progress(percent, message)

    def cancelled(self) -> bool:
        return self._closed.is_set() or self._inner.cancelled()

    def remaining_seconds(self) -> float:
        if self._closed.is_set():
            return 0.0
        own = self._deadline - time.monotonic()
        return max(0.0, min(self._inner.remaining_seconds(), own))

    def sleep(self, seconds: float) -> bool:
        if self._closed.is_set():
            return False
        own = self._deadline - time.monotonic()
        if own <= 0:
            return False
        if seconds > own:  # the executor gives up before this sleep would end
            self._inner.sleep(own)
            return False
        return self._inner.sleep(seconds) and not self._closed.is_set()

    def __getattr__(self, name: str) -> Any:  # anything else the worker's context offers
        return getattr(self._inner, name)
