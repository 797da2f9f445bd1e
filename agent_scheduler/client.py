"""One typed HTTP client of the Agent Scheduler REST API (httpx).

    with SchedulerClient("http://127.0.0.1:8000/api", token) as api:
        agent = api.create_agent({"name": "report", "kind": "echo"})
        queued = api.run_agent(agent["id"], input={"day": "monday"})
        print(api.get_session(agent["id"], queued["sessionId"])["status"])

- One method per API operation, named after it; each is registered with its
  route (``SchedulerClient.operations()``), so a test can hold the client
  against the served OpenAPI document.
- Errors are one tree: :class:`ApiError` carries the server's ``code``,
  ``message``, ``field`` and HTTP status; :class:`Unreachable` means no answer.
  Neither ever contains the bearer token, even when a gateway echoes it.
- Creating calls (create agent, run now, backfill) send an ``Idempotency-Key``
  (a fresh one unless given); :class:`RetryTransport` retries connection
  failures, and 5xx answers of requests that are safe to repeat (idempotent
  methods, or a request carrying an ``Idempotency-Key``), with the same request,
  hence the same key.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypedDict
from urllib.parse import quote

import httpx

from agent_scheduler import __version__

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
DEFAULT_TIMEOUT = 30.0
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "DEAD", "CANCELLED", "SKIPPED"})


# --- shapes (the JSON the API answers; documented in GET /api/openapi.json) -------------
class Schedule(TypedDict, total=False):
    agentId: str
    cronExpression: str
    timezone: str
    priority: str
    enabled: bool
    nextRunAt: str | None
    nextRuns: list[str]


class Agent(TypedDict, total=False):
    id: str
    name: str
    kind: str
    config: dict
    description: str | None
    timeoutSeconds: int
    maxRetries: int
    createdAt: str
    updatedAt: str
    schedule: Schedule | None


class Session(TypedDict, total=False):
    sessionId: str
    agentId: str
    status: str
    trigger: str
    priority: str
    attempt: int
    error: dict | None
    output: Any
    waitingReason: str | None


class Page(TypedDict):
    items: list
    nextToken: str | None


# --- errors ------------------------------------------------------------------------------
class ClientError(Exception):
    """Base of every error this client raises."""


class Unreachable(ClientError):
    """No answer from the API (connection refused, timeout), after the retries."""


class ApiError(ClientError):
    """The API answered with an error: ``status``, ``code``, ``message``, ``field``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None, body: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.body = body

    def to_dict(self) -> dict:
        out = {"status": self.status, "code": self.code, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


def _redact(text: str, secret: str | None) -> str:
    if secret and secret in text:
        text = text.replace(secret, "***")
    return text


def _scrub(value: Any, secret: str | None) -> Any:
    if not secret:
        return value
    if isinstance(value, str):
        return _redact(value, secret)
    if isinstance(value, dict):
        return {k: _scrub(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secret) for v in value]
    return value


def error_from_response(response: httpx.Response, secret: str | None = None) -> ApiError:
    """Our ``{code, message, field?}``, or whatever a gateway said, with the token taken out."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str) and isinstance(body.get("message"), str):
        return ApiError(response.status_code, body["code"], _redact(body["message"], secret),
                        body.get("field") if isinstance(body.get("field"), str) else None, _scrub(body, secret))
    gateway_message = (body.get("message") or body.get("Message")) if isinstance(body, dict) else None
    if isinstance(gateway_message, str):
        message = gateway_message  # API Gateway's own answers
    else:
        message = response.text[:500] or response.reason_phrase or "error"
    code = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
            409: "CONFLICT", 413: "PAYLOAD_TOO_LARGE", 429: "TOO_MANY_REQUESTS"}.get(response.status_code, "HTTP_ERROR")
    return ApiError(response.status_code, code, _redact(message, secret), None, _scrub(body, secret))


# --- retries -------------------------------------------------------------------------------
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({500, 502, 503, 504})


class RetryTransport(httpx.BaseTransport):
    """Retries with exponential backoff: connection failures always (nothing was sent);
    read failures and 5xx answers only when the request is safe to repeat."""

    def __init__(self, inner: httpx.BaseTransport | None = None, *, retries: int = 3, backoff: float = 0.5,
                 max_backoff: float = 8.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.inner = inner or httpx.HTTPTransport()
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep = sleep

    @staticmethod
    def repeatable(request: httpx.Request) -> bool:
        return request.method in SAFE_METHODS or IDEMPOTENCY_HEADER.lower() in {k.lower() for k in request.headers}

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        if response is not None:
            retry_after = response.headers.get("Retry-After", "")
            if retry_after.isdigit():
                return min(float(retry_after), self.max_backoff)
        return min(self.backoff * (2 ** attempt), self.max_backoff)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self.inner.handle_request(request)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if attempt >= self.retries:
                    raise
            except (httpx.ReadError, httpx.ReadTimeout, httpx.RemoteProtocolError):
                if attempt >= self.retries or not self.repeatable(request):
                    raise
            else:
                if response.status_code not in RETRY_STATUSES or attempt >= self.retries or not self.repeatable(request):
                    return response
                response.read()
                response.close()
                self.sleep(self.delay(attempt, response))
                attempt += 1
                continue
            self.sleep(self.delay(attempt))
            attempt += 1

    def close(self) -> None:
        self.inner.close()


# --- the client ------------------------------------------------------------------------------
def operation(method: str, route: str):
    """Register a client method as the caller of one API operation."""

    def mark(fn):
        fn.__api_operation__ = (method, route)
        return fn

    return mark


def api_base(url: str) -> str:
    """The REST base ends in ``/api`` (``http://127.0.0.1:8000`` is taken as ``.../api``)."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"the API URL must start with http:// or https://, got {url!r}")
    return url if url.endswith("/api") else url + "/api"


class SchedulerClient:
    """The REST API of Agent Scheduler. ``transport``: any httpx transport (tests pass a
    ``MockTransport``); it is wrapped in :class:`RetryTransport` unless ``retries=0``."""

    def __init__(self, url: str, token: str | None, *, transport: httpx.BaseTransport | None = None,
                 retries: int = 3, timeout: float = DEFAULT_TIMEOUT, sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = api_base(url)
        self._token = token
        headers = {"User-Agent": f"agent-scheduler/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.last_headers: httpx.Headers = httpx.Headers()
        inner = transport if transport is not None else httpx.HTTPTransport()
        self._http = httpx.Client(
            base_url=self.url + "/", headers=headers, timeout=timeout,
            transport=RetryTransport(inner, retries=retries, sleep=sleep) if retries else inner,
        )

    def __repr__(self) -> str:  # never the token
        return f"SchedulerClient({self.url!r})"

    def __enter__(self) -> SchedulerClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @classmethod
    def operations(cls) -> dict[tuple[str, str], str]:
        """``{(METHOD, route template): method name}`` for every operation this client calls."""
        out = {}
        for name in dir(cls):
            op = getattr(getattr(cls, name), "__api_operation__", None)
            if op:
                out[op] = name
        return out

    # --- plumbing ---------------------------------------------------------------------
    def request(self, method: str, route: str, *, path: dict | None = None, params: dict | None = None,
                json: Any = None, headers: dict | None = None, raw: bool = False) -> Any:
        """Call one route (``/api/agents/{agent_id}``); answers the JSON (None for 204)."""
        rel = route.removeprefix("/api/")
        for key, value in (path or {}).items():
            rel = rel.replace("{" + key + "}", quote(str(value), safe=""))
        params = {k: v for k, v in (params or {}).items() if v is not None}
        kwargs: dict = {"params": params, "headers": headers or {}}
        if json is not None:
            kwargs["json"] = json
        try:
            response = self._http.request(method, rel, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {self.url}: {type(exc).__name__}: {_redact(str(exc), self._token) or 'no answer'}") from None
        self.last_headers = response.headers
        if response.status_code >= 400:
            raise error_from_response(response, self._token)
        if raw:
            return response
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(response.status_code, "BAD_RESPONSE", f"{method} {route}: the answer is not JSON") from None

    @property
    def replayed(self) -> bool:
        """The last answer repeats an earlier one (its ``Idempotency-Key`` was used before)."""
        return self.last_headers.get(REPLAYED_HEADER, "").lower() == "true"

    @staticmethod
    def new_idempotency_key() -> str:
        return str(uuid.uuid4())

    def _creating(self, key: str | None) -> dict:
        return {IDEMPOTENCY_HEADER: key or self.new_idempotency_key()}

    def paginate(self, fn: Callable[..., Any], *args, page_size: int = 100, **kwargs) -> Iterator[Any]:
        token = None
        while True:
            page = fn(*args, limit=page_size, next_token=token, **kwargs)
            yield from page.get("items") or []
            token = page.get("nextToken")
            if not token:
                return

    # --- health and docs -----------------------------------------------------------------
    @operation("GET", "/api/health")
    def health(self) -> dict:
        return self.request("GET", "/api/health")

    @operation("GET", "/api/openapi.json")
    def openapi(self) -> dict:
        return self.request("GET", "/api/openapi.json")

    # --- agents ------------------------------------------------------------------------------
    @operation("POST", "/api/agents")
    def create_agent(self, body: dict, *, idempotency_key: str | None = None) -> Agent:
        return self.request("POST", "/api/agents", json=body, headers=self._creating(idempotency_key))

    @operation("GET", "/api/agents")
    def list_agents(self, *, limit: int | None = None, next_token: str | None = None,
                    labels: dict[str, str] | None = None) -> Page:
        """``labels``: only agents carrying every one of them."""
        selectors = [f"{k}={v}" for k, v in (labels or {}).items()] or None
        return self.request("GET", "/api/agents", params={"limit": limit, "nextToken": next_token, "label": selectors})

    def iter_agents(self, labels: dict[str, str] | None = None) -> Iterator[Agent]:
        return self.paginate(self.list_agents, labels=labels) if labels else self.paginate(self.list_agents)

    @operation("GET", "/api/agents/{agent_id}")
    def get_agent(self, agent_id: str) -> Agent:
        return self.request("GET", "/api/agents/{agent_id}", path={"agent_id": agent_id})

    @operation("PATCH", "/api/agents/{agent_id}")
    def update_agent(self, agent_id: str, changes: dict) -> Agent:
        return self.request("PATCH", "/api/agents/{agent_id}", path={"agent_id": agent_id}, json=changes)

    @operation("DELETE", "/api/agents/{agent_id}")
    def delete_agent(self, agent_id: str) -> None:
        self.request("DELETE", "/api/agents/{agent_id}", path={"agent_id": agent_id})

    @operation("POST", "/api/agents/{agent_id}/signing-secret")
    def rotate_signing_secret(self, agent_id: str, *, revoke_previous: bool = False) -> dict:
        return self.request("POST", "/api/agents/{agent_id}/signing-secret", path={"agent_id": agent_id},
                            json={"revokePrevious": revoke_previous})

    # --- schedules ------------------------------------------------------------------------------
    @operation("POST", "/api/agents/{agent_id}/schedule")
    def set_schedule(self, agent_id: str, schedule: dict) -> Schedule:
        return self.request("POST", "/api/agents/{agent_id}/schedule", path={"agent_id": agent_id}, json=schedule)

    @operation("GET", "/api/agents/{agent_id}/schedule")
    def get_schedule(self, agent_id: str) -> Schedule:
        return self.request("GET", "/api/agents/{agent_id}/schedule", path={"agent_id": agent_id})

    @operation("DELETE", "/api/agents/{agent_id}/schedule")
    def delete_schedule(self, agent_id: str) -> None:
        self.request("DELETE", "/api/agents/{agent_id}/schedule", path={"agent_id": agent_id})

    @operation("GET", "/api/agents/{agent_id}/schedule/history")
    def schedule_history(self, agent_id: str, *, limit: int | None = None, next_token: str | None = None) -> Page:
        return self.request("GET", "/api/agents/{agent_id}/schedule/history", path={"agent_id": agent_id},
                            params={"limit": limit, "nextToken": next_token})

    @operation("GET", "/api/agents/{agent_id}/fires")
    def list_fires(self, agent_id: str, *, start: str | None = None, end: str | None = None) -> dict:
        return self.request("GET", "/api/agents/{agent_id}/fires", path={"agent_id": agent_id},
                            params={"from": start, "to": end})

    @operation("POST", "/api/schedules/validate")
    def validate_schedule(self, body: dict) -> dict:
        return self.request("POST", "/api/schedules/validate", json=body)

    @operation("POST", "/api/schedules/bulk")
    def bulk_schedules(self, operations: list[dict]) -> dict:
        return self.request("POST", "/api/schedules/bulk", json={"operations": operations})

    @operation("GET", "/api/schedules/conflicts")
    def schedule_conflicts(self, *, start: str | None = None, hours: int | None = None) -> dict:
        return self.request("GET", "/api/schedules/conflicts", params={"from": start, "hours": hours})

    # --- runs --------------------------------------------------------------------------------------
    @operation("POST", "/api/agents/{agent_id}/run")
    def run_agent(self, agent_id: str, *, input: Any = None, priority: str | None = None,
                  idempotency_key: str | None = None) -> dict:
        body: dict = {}
        if input is not None:
            body["input"] = input
        if priority is not None:
            body["priority"] = priority
        return self.request("POST", "/api/agents/{agent_id}/run", path={"agent_id": agent_id}, json=body,
                            headers=self._creating(idempotency_key))

    @operation("POST", "/api/agents/{agent_id}/backfill")
    def backfill(self, agent_id: str, body: dict, *, idempotency_key: str | None = None) -> dict:
        return self.request("POST", "/api/agents/{agent_id}/backfill", path={"agent_id": agent_id}, json=body,
                            headers=self._creating(idempotency_key))

    @operation("GET", "/api/agents/{agent_id}/sessions")
    def list_sessions(self, agent_id: str, *, limit: int | None = None, next_token: str | None = None,
                      status: str | None = None) -> Page:
        return self.request("GET", "/api/agents/{agent_id}/sessions", path={"agent_id": agent_id},
                            params={"limit": limit, "nextToken": next_token, "status": status})

    @operation("GET", "/api/agents/{agent_id}/sessions/{session_id}")
    def get_session(self, agent_id: str, session_id: str) -> Session:
        return self.request("GET", "/api/agents/{agent_id}/sessions/{session_id}",
                            path={"agent_id": agent_id, "session_id": session_id})

    @operation("POST", "/api/agents/{agent_id}/sessions/{session_id}/cancel")
    def cancel_session(self, agent_id: str, session_id: str) -> Session:
        return self.request("POST", "/api/agents/{agent_id}/sessions/{session_id}/cancel",
                            path={"agent_id": agent_id, "session_id": session_id})

    @operation("POST", "/api/sessions/cancel")
    def cancel_sessions(self, body: dict) -> dict:
        return self.request("POST", "/api/sessions/cancel", json=body)

    # --- scheduler -------------------------------------------------------------------------------
    @operation("GET", "/api/scheduler/status")
    def status(self) -> dict:
        return self.request("GET", "/api/scheduler/status")

    @operation("POST", "/api/scheduler/pause")
    def pause(self) -> dict:
        return self.request("POST", "/api/scheduler/pause")

    @operation("POST", "/api/scheduler/resume")
    def resume(self) -> dict:
        return self.request("POST", "/api/scheduler/resume")

    # --- DLQ ----------------------------------------------------------------------------------------
    @operation("GET", "/api/dlq")
    def list_dlq(self, *, limit: int | None = None, next_token: str | None = None) -> Page:
        return self.request("GET", "/api/dlq", params={"limit": limit, "nextToken": next_token})

    def iter_dlq(self) -> Iterator[dict]:
        return self.paginate(self.list_dlq)

    @operation("POST", "/api/dlq/redrive")
    def redrive(self, session_ids: list[str] | None = None) -> dict:
        return self.request("POST", "/api/dlq/redrive", json={"sessionIds": session_ids} if session_ids else {})

    # --- events ---------------------------------------------------------------------------------------
    @operation("GET", "/api/events")
    def list_events(self, *, since: int | None = None, limit: int | None = None) -> dict:
        return self.request("GET", "/api/events", params={"since": since, "limit": limit})

    @operation("POST", "/api/events/ticket")
    def event_ticket(self) -> dict:
        return self.request("POST", "/api/events/ticket")

    # --- pools ----------------------------------------------------------------------------------------
    @operation("PUT", "/api/pools/{name}")
    def put_pool(self, name: str, body: dict) -> dict:
        return self.request("PUT", "/api/pools/{name}", path={"name": name}, json=body)

    @operation("GET", "/api/pools")
    def list_pools(self) -> dict:
        return self.request("GET", "/api/pools")

    @operation("GET", "/api/pools/{name}")
    def get_pool(self, name: str) -> dict:
        return self.request("GET", "/api/pools/{name}", path={"name": name})

    @operation("DELETE", "/api/pools/{name}")
    def delete_pool(self, name: str) -> None:
        self.request("DELETE", "/api/pools/{name}", path={"name": name})

    # --- the agent side: callbacks with a per-attempt token (not the tenant's) ---------------------------
    @operation("POST", "/api/callbacks/{session_id}/{attempt}/{action}")
    def callback(self, session_id: str, attempt: int, action: str, callback_token: str, body: dict | None = None) -> dict:
        return self.request("POST", "/api/callbacks/{session_id}/{attempt}/{action}",
                            path={"session_id": session_id, "attempt": attempt, "action": action},
                            json=body or {}, headers={"Authorization": f"Bearer {callback_token}"})
