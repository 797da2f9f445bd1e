"""Structured logs: one Powertools ``Logger``, one JSON object per line, fixed keys.

Modules keep logging through the standard library under ``agent_scheduler.*``
(``logging.getLogger("agent_scheduler.worker")``); :func:`configure` routes
those records, and Chalice's own ``app.log``, through the Powertools handler,
so every line carries ``level``, ``location``, ``message``, ``timestamp``,
``service``, ``name`` (the module's logger name) and whatever keys are bound
at the time:

- per request: ``correlation_id``, API Gateway's request id
  (``correlation_paths.API_GATEWAY_REST``), bound by :func:`request_scope`;
- per run: ``tenant_id``, ``agent_id``, ``session_id``, ``attempt``,
  ``fire_time``, bound by :func:`bind_run`;
- per schedule the tick plans: ``tenant_id``, ``agent_id``, ``fire_time``, bound
  by :func:`bind_schedule`.

Bound keys live in a context variable (Powertools' thread-safe keys), so the
local system's concurrent threads never see each other's keys.

The level comes from ``SCHEDULER_LOG_LEVEL`` (default INFO). In Lambda the
stack sets the function's application log level to the same value.

    >>> configure("INFO")                                   # doctest: +SKIP
    >>> with bind_run(tenant_id="t1", agent_id="a1", session_id="s1", attempt=1, fire_time=None):
    ...     logging.getLogger("agent_scheduler.worker").info("run started")  # doctest: +SKIP
    {"level":"INFO","location":"...","message":"run started",...,"tenant_id":"t1","agent_id":"a1",...}
"""
from __future__ import annotations

import contextlib
import logging
import sys
from datetime import datetime, timezone
from typing import IO, Any, Iterator, Mapping

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.jmespath_utils import query

from chalicelib.agents.redact import RedactingFilter  # noqa: E402
from chalicelib.settings import read_log_level

SERVICE = "agent-scheduler"  # also the name of Chalice's app.log
APP_LOGGER = "agent_scheduler"  # the parent of every chalicelib module's logger
RUN_KEYS = ("tenant_id", "agent_id", "session_id", "attempt", "fire_time")
CORRELATION_KEY = "correlation_id"
CORRELATION_PATH = correlation_paths.API_GATEWAY_REST  # requestContext.requestId

_logger: Logger | None = None


def configure(level: str | None = None, *, stream: IO[str] | None = None, loggers: tuple[str, ...] = ()) -> Logger:
    """Send ``agent_scheduler.*``, Chalice's ``app.log`` and ``loggers`` through one JSON handler.

    Idempotent: a second call changes the level (and the stream, if given).
    ``level`` defaults to ``SCHEDULER_LOG_LEVEL``; ``stream`` to standard output.
    """
    global _logger
    level = (level or read_log_level()).upper()
    if _logger is None:
        # name: the module's logger name (agent_scheduler.worker, local.run), to filter on
        _logger = Logger(service=SERVICE, level=level, stream=stream or sys.stdout, utc=True, name="%(name)s")
    handler = _logger.registered_handler
    if stream is not None and isinstance(handler, logging.StreamHandler):
        handler.setStream(stream)
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter())  # tokens, Authorization and secret headers never reach a log
    _logger.setLevel(level)
    for name in (APP_LOGGER, SERVICE, *loggers):
        std = logging.getLogger(name)
        std.handlers[:] = [handler]  # Chalice puts a plain-text handler on app.log: replaced
        std.setLevel(level)
        std.propagate = False  # one line per record (Lambda's runtime has its own root handler)
    return _logger


def logger() -> Logger:
    """The configured Powertools logger (configured with the defaults on first use)."""
    return _logger or configure()


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return aware.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    return value


@contextlib.contextmanager
def bind(**keys: Any) -> Iterator[None]:
    """Add ``keys`` to every line logged in this thread (or task) until the block ends.

    Keys bound outside the block get their earlier values back afterwards;
    ``None`` values are left out. Datetimes are written as ISO 8601 UTC.
    """
    log = logger()
    before = dict(log.thread_safe_get_current_keys())
    saved = {k: before[k] for k in keys if k in before}
    fresh = {k: _value(v) for k, v in keys.items() if v is not None}
    _replace_keys(log, {k: v for k, v in before.items() if k not in keys} | fresh)
    try:
        yield
    finally:
        now = dict(log.thread_safe_get_current_keys())
        _replace_keys(log, {k: v for k, v in now.items() if k not in keys} | saved)


def _replace_keys(log: Logger, keys: dict[str, Any]) -> None:
    # A new mapping each time: Powertools' remove_keys edits the context's dict in place,
    # and a thread started with a copied context (Starlette's thread pool) shares that dict.
    log.thread_safe_clear_keys()
    if keys:
        log.thread_safe_append_keys(**keys)


def bind_run(*, tenant_id: str, agent_id: str, session_id: str, attempt: int | None = None,
             fire_time: datetime | float | str | None = None, **extra: Any):
    """Bind the run keys for the handling of one attempt (a context manager).

    ``fire_time``: a datetime, epoch seconds, or an ISO string.
    """
    if isinstance(fire_time, (int, float)) and not isinstance(fire_time, bool):
        fire_time = datetime.fromtimestamp(fire_time, tz=timezone.utc)
    return bind(tenant_id=tenant_id, agent_id=agent_id, session_id=session_id, attempt=attempt,
                fire_time=fire_time, **extra)


def bind_schedule(*, tenant_id: str, agent_id: str, fire_time: datetime | float | None):
    """Bind the keys of one schedule while the tick plans it (a context manager):
    ``tenant_id``, ``agent_id`` and ``fire_time``, the schedule's next fire (epoch or datetime)."""
    if isinstance(fire_time, (int, float)) and not isinstance(fire_time, bool):
        fire_time = datetime.fromtimestamp(fire_time, tz=timezone.utc)
    return bind(tenant_id=tenant_id, agent_id=agent_id, fire_time=fire_time)


def correlation_id(event: Mapping[str, Any] | None) -> str | None:
    """API Gateway's request id in a Lambda proxy event, if there is one."""
    if not isinstance(event, Mapping):
        return None
    try:
        found = query(data=dict(event), envelope=CORRELATION_PATH)
    except Exception:  # a malformed event is not the logger's problem
        return None
    return found if isinstance(found, str) and found else None


def request_scope(event: Mapping[str, Any] | None):
    """Bind ``correlation_id`` (API Gateway's request id) while one request is handled."""
    return bind(**{CORRELATION_KEY: correlation_id(event)})
