"""A webhook agent in a few lines of the standard library.

    AGENT_SIGNING_SECRET=whsec_... python examples/webhook_agent.py 9000

then create the agent (the answer shows the secret once)::

    agent-scheduler agents create research --kind webhook --config '{"url": "http://127.0.0.1:9000/"}'

A run whose input says ``{"slow": true}`` is answered 202 at once and finished
through the callback from a thread; any other run is answered synchronously with
its output and usage. A session id seen before is answered with the stored
result (delivery is at least once), never a bare 200. A signed ``agent.cancel``
(a user cancelled an async run) is answered 200 and remembered.
"""
from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agent_scheduler.agent import CANCEL_TYPE, EnvelopeError, Run, RunEnvelope, SignatureError, parse, verify


def work(run: RunEnvelope) -> dict:
    """The agent's real work. Here: count the words of the input's text."""
    text = str((run.input or {}).get("text", "")) if isinstance(run.input, dict) else str(run.input or "")
    words = len(text.split())
    return {"output": {"words": words}, "usage": {"inputTokens": words, "outputTokens": 1}}


def make_server(secrets: list[str], port: int = 0, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    results: dict[str, dict] = {}  # session id -> the answer we gave (a real agent stores it durably)
    cancelled: set[str] = set()  # session ids a user cancelled (a real agent stops their work)

    def finish_later(envelope: RunEnvelope) -> None:
        with Run(envelope) as run:
            run.progress(50, "halfway")
            result = work(envelope)
            results[envelope.session_id] = result
            run.complete(result["output"], result["usage"])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                payload = verify(body, dict(self.headers.items()), secrets)
            except SignatureError:
                return self.answer(401, {"error": "bad signature"})
            if payload.get("type") == CANCEL_TYPE:  # stop the work; the scheduler has ended the run
                cancelled.add(str(payload.get("sessionId")))
                return self.answer(200, {"ok": True})
            try:
                envelope = parse(payload)
            except EnvelopeError as exc:
                return self.answer(400, {"error": str(exc)})
            if envelope.session_id in results:  # a repeated delivery: the stored result again
                return self.answer(200, results[envelope.session_id])
            slow = isinstance(envelope.input, dict) and envelope.input.get("slow")
            if slow and envelope.callback is not None:
                threading.Thread(target=finish_later, args=(envelope,), daemon=True).start()
                return self.answer(202, {"accepted": True})
            results[envelope.session_id] = work(envelope)
            return self.answer(200, results[envelope.session_id])

        def answer(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.cancelled = cancelled  # type: ignore[attr-defined]
    return server


if __name__ == "__main__":
    secrets = os.environ["AGENT_SIGNING_SECRET"].split()  # two during a rotation
    server = make_server(secrets, int(sys.argv[1]) if len(sys.argv) > 1 else 9000)
    print(f"agent listening on http://127.0.0.1:{server.server_address[1]}/")
    server.serve_forever()
