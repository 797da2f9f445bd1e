"""Count AWS requests with botocore event hooks; record and replay responses.

pynamodb builds its own botocore session and client per model connection, so
hooks are registered on each model's client (``Model._get_connection().connection
.client.meta.events``) and on the boto3 clients' ``meta.events``.

- ``before-send`` fires once per HTTP attempt (retries included): that is what
  AWS bills, so it is the request count. ``before-call`` (once per API call)
  is counted too, as a check.
- ``Recorder`` keeps every raw response (status, headers, body) seen by
  ``response-received``; ``Replayer`` answers the same sequence of requests
  from a ``before-send`` hook, so a tick can be re-run with no AWS and no moto.
"""
from __future__ import annotations

import contextlib
from collections import Counter, deque
from typing import Iterable

from botocore.awsrequest import AWSResponse

from chalicelib.adapters.tables import ALL_MODELS


def pynamodb_clients() -> list:
    """The botocore clients pynamodb uses now (one per model connection)."""
    out: list = []
    for model in ALL_MODELS:
        client = model._get_connection().connection.client
        if all(client is not c for c in out):
            out.append(client)
    return out


def container_clients(container, services: Iterable[str] = ("sqs", "sns")) -> list:
    return pynamodb_clients() + [container.client(s) for s in services]


def _op(event_name: str) -> str:
    # "before-send.dynamodb.Query" -> "Query"
    return event_name.rsplit(".", 1)[-1]


class RequestCounter:
    """Counts requests per operation name, attributed to the innermost open phase."""

    def __init__(self) -> None:
        self.sent: Counter = Counter()  # (phase, op) -> HTTP requests (before-send)
        self.calls: Counter = Counter()  # (phase, op) -> API calls (before-call)
        self.bytes_out: Counter = Counter()  # phase -> request body bytes
        self.bytes_in: Counter = Counter()  # phase -> response body bytes
        self._phases: list[str] = ["other"]
        self._hooked: list = []
        self.enabled = True

    # --- hooks -------------------------------------------------------------------
    def _before_send(self, request=None, event_name: str = "", **_):
        if self.enabled:
            phase = self._phases[-1]
            self.sent[(phase, _op(event_name))] += 1
            body = getattr(request, "body", None) or b""
            self.bytes_out[phase] += len(body)
        return None

    def _before_call(self, model=None, event_name: str = "", **_):
        if self.enabled:
            self.calls[(self._phases[-1], model.name if model is not None else _op(event_name))] += 1
        return None

    def _received(self, response_dict=None, **_):
        if self.enabled and response_dict is not None:
            body = response_dict.get("body")
            if isinstance(body, (bytes, bytearray)):
                self.bytes_in[self._phases[-1]] += len(body)

    _HOOKS = (("before-send", "_before_send"), ("before-call", "_before_call"), ("response-received", "_received"))

    def attach(self, clients: Iterable) -> "RequestCounter":
        for client in clients:
            if any(client is c for c in self._hooked):
                continue
            for event, method in self._HOOKS:
                client.meta.events.register(event, getattr(self, method), unique_id=f"bench-{method}-{id(self)}")
            self._hooked.append(client)
        return self

    def detach(self) -> None:
        for client in self._hooked:
            for event, method in self._HOOKS:
                client.meta.events.unregister(event, unique_id=f"bench-{method}-{id(self)}")
        self._hooked = []

    # --- phases ------------------------------------------------------------------
    @contextlib.contextmanager
    def phase(self, name: str):
        self._phases.append(name)
        try:
            yield
        finally:
            self._phases.pop()

    def wrap(self, obj, attr: str, phase: str) -> bool:
        """Attribute every request made inside ``obj.attr(...)`` to ``phase`` (False: no such attribute)."""
        fn = getattr(obj, attr, None)
        if fn is None:
            return False

        def wrapped(*a, **k):
            with self.phase(phase):
                return fn(*a, **k)

        setattr(obj, attr, wrapped)
        return True

    # --- totals ------------------------------------------------------------------
    def total(self, phases: Iterable[str] | None = None) -> int:
        want = None if phases is None else set(phases)
        return sum(n for (p, _), n in self.sent.items() if want is None or p in want)

    def by_op(self, phases: Iterable[str] | None = None) -> Counter:
        want = None if phases is None else set(phases)
        out: Counter = Counter()
        for (p, op), n in self.sent.items():
            if want is None or p in want:
                out[op] += n
        return out

    def reset(self) -> None:
        self.sent.clear()
        self.calls.clear()
        self.bytes_out.clear()
        self.bytes_in.clear()


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_):
        if self.body:
            yield self.body


class Recorder:
    """Keeps the raw responses of every request, in order (``response-received``)."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int, dict, bytes]] = []
        self._hooked: list = []
        self.enabled = False

    def _received(self, response_dict=None, event_name: str = "", **_):
        if self.enabled and response_dict is not None:
            body = response_dict.get("body", b"")
            if not isinstance(body, (bytes, bytearray)):
                body = b""
            self.log.append((_op(event_name), int(response_dict["status_code"]), dict(response_dict["headers"]), bytes(body)))

    def attach(self, clients: Iterable) -> "Recorder":
        for client in clients:
            if any(client is c for c in self._hooked):
                continue
            client.meta.events.register("response-received", self._received, unique_id=f"bench-rec-{id(self)}")
            self._hooked.append(client)
        return self

    def detach(self) -> None:
        for client in self._hooked:
            client.meta.events.unregister("response-received", unique_id=f"bench-rec-{id(self)}")
        self._hooked = []

    @contextlib.contextmanager
    def recording(self):
        self.log = []
        self.enabled = True
        try:
            yield self
        finally:
            self.enabled = False


class ReplayMismatch(AssertionError):
    pass


class ReplayStop(BaseException):
    """Raised by a ``Replayer`` asked to stop at an operation (``stop_at``); not an error."""


class Replayer:
    """The in-memory stand-in for AWS: answers requests with recorded responses, in order.

    The replayed code must issue the same sequence of operations as the recorded
    run (same data, same clock): a different operation raises ``ReplayMismatch``.
    """

    def __init__(self, log: list[tuple[str, int, dict, bytes]]) -> None:
        self._log = list(log)
        self._queue: deque = deque()
        self._hooked: list = []
        self._stop: tuple[str, int] | None = None
        self._seen: Counter = Counter()

    def rewind(self, stop_at: tuple[str, int] | None = None) -> None:
        """Start over; with ``stop_at=(op, k)``, raise ``ReplayStop`` when the k-th ``op`` is sent."""
        self._queue = deque(self._log)
        self._stop = stop_at
        self._seen = Counter()

    def remaining(self) -> int:
        return len(self._queue)

    def _before_send(self, request=None, event_name: str = "", **_):
        op = _op(event_name)
        self._seen[op] += 1
        if self._stop is not None and self._stop == (op, self._seen[op]):
            raise ReplayStop(op)
        if not self._queue:
            raise ReplayMismatch(f"replay ran out of responses at {op}")
        want, status, headers, body = self._queue.popleft()
        if want != op:
            raise ReplayMismatch(f"replay expected {want}, the code sent {op}")
        return AWSResponse(request.url, status, headers, _Raw(body))

    def attach(self, clients: Iterable) -> "Replayer":
        for client in clients:
            if any(client is c for c in self._hooked):
                continue
            # First: it must answer before anything else would send the request.
            client.meta.events.register_first("before-send", self._before_send, unique_id=f"bench-replay-{id(self)}")
            self._hooked.append(client)
        return self

    def detach(self) -> None:
        for client in self._hooked:
            client.meta.events.unregister("before-send", unique_id=f"bench-replay-{id(self)}")
        self._hooked = []
