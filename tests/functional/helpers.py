"""Drive the tick and the worker by hand, as the event sources would.

moto delays messages by wall time; tests have a fixed clock, so they take
messages straight from moto's queue (with the DelaySeconds they were sent
with) instead of waiting.
"""
from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

from moto.core import DEFAULT_ACCOUNT_ID
from moto.sqs.models import sqs_backends


@dataclass
class Sent:
    body: dict
    delay_seconds: int
    message_id: str


def _queue(url: str):
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_queue(name)


def take(container, url: str | None = None) -> list[Sent]:
    """Remove and return every message on the queue (delayed or not), oldest first."""
    q = _queue(url or container.settings.work_queue_url)
    out = []
    for m in list(q._messages):
        delay = 0
        if m.delayed_until and m.sent_timestamp:
            delay = round((m.delayed_until - int(m.sent_timestamp)) / 1000)
        out.append(Sent(json.loads(m.body), delay, m.id))
    q._messages = []
    return out


def peek(container, url: str | None = None) -> list[dict]:
    q = _queue(url or container.settings.work_queue_url)
    return [json.loads(m.body) for m in q._messages]


def work(container, sent: list[Sent]) -> list[str]:
    return [container.worker.handle(s.body) for s in sent]


def drain(container, rounds: int = 20) -> list[str]:
    """Run the worker on everything queued, including what each run admits next."""
    results: list[str] = []
    for _ in range(rounds):
        sent = take(container)
        if not sent:
            return results
        results += work(container, sent)
    return results


# --- small local HTTP servers that play an agent or a provider ---------------------------------
class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that answers with :meth:`reply` and logs nothing."""

    def reply(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@contextlib.contextmanager
def local_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    """Serve ``handler`` on a free loopback port in a thread while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def base_url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"
