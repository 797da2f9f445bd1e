"""``tail``: the WebSocket event stream, resumed after a dropped connection.

Each connection authenticates with a single-use ticket (``POST /api/events/ticket``)
when the API offers one, else with the token (``?token=``); it subscribes to the
chosen agents (``["*"]``: all), with ``since`` = the last ``seq`` seen when events
carry one, so the server replays what was missed; events at or below that ``seq``
are dropped as duplicates. Without ``seq`` a gap cannot be replayed; the CLI says so.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from agent_scheduler.client import ApiError, SchedulerClient, _redact

RECONNECT_ATTEMPTS = 10  # consecutive failed connections before giving up
KEEPALIVE_SECONDS = 240.0  # a ping well inside API Gateway's 10-minute idle timeout
QUIET = {"subscribed", "pong"}


class Connection(Protocol):
    def send(self, message: str) -> None: ...

    def recv(self, timeout: float | None = None) -> str | bytes: ...

    def close(self) -> None: ...


class TailError(Exception):
    """The stream cannot be followed (refused handshake, too many failed reconnects)."""


def default_connect(url: str) -> Connection:
    from websockets.sync.client import connect

    return connect(url, open_timeout=10, close_timeout=2, max_size=2**20)


@dataclass
class Follow:
    client: SchedulerClient
    ws_url: str
    token: str
    agent_ids: list[str]
    on_event: Callable[[dict], None]
    note: Callable[[str], None]
    connect: Callable[[str], Connection] = default_connect
    sleep: Callable[[float], None] = lambda s: None
    since: int | None = None
    count: int | None = None
    use_ticket: bool = True

    def __post_init__(self) -> None:
        self.last_seq = self.since
        self.received = 0

    def _url(self) -> str:
        if self.use_ticket:
            try:
                ticket = (self.client.event_ticket() or {}).get("ticket")
            except ApiError as exc:
                if exc.status not in (403, 404, 405):
                    raise
                ticket = None
            if ticket:
                return self._with_query({"ticket": ticket})
            self.use_ticket = False  # this API has no tickets: the token it is
        return self._with_query({"token": self.token})

    def _with_query(self, query: dict) -> str:
        base = self.ws_url.rstrip("/")
        sep = "/?" if urlsplit(base).path == "" else "?"  # ws://host:port/ ; wss://.../stage
        return f"{base}{sep}{urlencode(query)}"

    def _subscribe(self, conn: Connection) -> None:
        msg: dict[str, Any] = {"action": "subscribe", "agentIds": self.agent_ids or ["*"]}
        if self.last_seq is not None:
            msg["since"] = self.last_seq
        conn.send(json.dumps(msg))

    def _redacted(self, exc: BaseException) -> str:
        return _redact(str(exc) or type(exc).__name__, self.token)

    def run(self) -> int:
        """Follow until ``count`` events arrived (forever without one); answers the count."""
        failures = 0
        connected_once = False
        while True:
            try:
                conn = self.connect(self._url())
            except InvalidStatus as exc:
                status = exc.response.status_code
                if 400 <= status < 500:
                    raise TailError(f"the WebSocket API refused the connection (HTTP {status}): check the token") from None
                failures += 1
                problem = f"HTTP {status}"
            except InvalidURI:
                raise TailError(f"not a WebSocket URL: {self.ws_url}") from None
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                failures += 1
                problem = self._redacted(exc)
            else:
                try:
                    self._subscribe(conn)
                    if connected_once:
                        self.note(f"reconnected; resuming after seq {self.last_seq}" if self.last_seq is not None
                                  else "reconnected; events during the gap are not replayed (they carry no seq)")
                    connected_once = True
                    failures = 0
                    if self._read(conn):
                        return self.received
                    problem = "closed by the server"
                except ConnectionClosed as exc:
                    problem = f"dropped ({self._redacted(exc)})"
                except (OSError, TimeoutError) as exc:
                    problem = f"dropped ({self._redacted(exc)})"
                finally:
                    try:
                        conn.close()
                    except Exception:  # closing a broken connection: nothing left to do
                        pass
                failures += 1
            if failures > RECONNECT_ATTEMPTS:
                raise TailError(f"gave up after {RECONNECT_ATTEMPTS} failed connections: {problem}")
            delay = min(0.5 * 2 ** (failures - 1), 30.0)
            self.note(f"connection {problem}; retrying in {delay:g} s")
            self.sleep(delay)

    def _read(self, conn: Connection) -> bool:
        """Events until ``count`` (True) or until the connection ends (False)."""
        while True:
            try:
                raw = conn.recv(timeout=KEEPALIVE_SECONDS)
            except TimeoutError:
                conn.send(json.dumps({"action": "ping"}))
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            name = event.get("event")
            if name in QUIET:
                continue
            if name == "resync":
                oldest = (event.get("data") or {}).get("oldestSeq")
                self.note(f"events after seq {self.last_seq} are no longer kept; resuming from seq {oldest}")
            if name == "error":
                self.note(f"the server said: {(event.get('data') or {}).get('message')}")
                continue
            seq = event.get("seq")
            if isinstance(seq, int):
                if self.last_seq is not None and seq <= self.last_seq:
                    continue  # replayed twice across a reconnect
                self.last_seq = seq
            if name == "resync":
                continue
            self.on_event(event)
            self.received += 1
            if self.count is not None and self.received >= self.count:
                return True
