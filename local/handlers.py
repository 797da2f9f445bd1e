"""Invoke the Chalice app's Lambda handlers exactly as the Lambda runtime would.

Chalice registers every handler (``@app.schedule``, ``@app.on_sqs_message``,
``@app.on_ws_*``) in ``app.handler_map`` under its function name; the value is
the wrapped entry point the deployed Lambda calls as ``handler(event, context)``
(for WebSocket handlers a ``WebsocketEventSourceHandler``, which turns the
event into a ``WebsocketEvent`` and normalises the return value).
"""
from __future__ import annotations

from typing import Any

from chalice.local import LambdaContext

# Same limits as the deployed functions (.chalice/config.json, provision.py).
TIMEOUT_MS = {"worker": 900_000, "tick": 60_000}
DEFAULT_TIMEOUT_MS = 60_000


def function_name(app, handler_name: str) -> str:
    """The function name of a WebSocket route (``$connect``...) or a plain handler name."""
    config = app.websocket_handlers.get(handler_name)
    return config.name if config is not None else handler_name


def invoke(app, name: str, event: dict, *, timeout_ms: int | None = None) -> Any:
    fn_name = function_name(app, name)
    try:
        handler = app.handler_map[fn_name]
    except KeyError:
        raise LookupError(f"the Chalice app has no handler {name!r}") from None
    ms = timeout_ms or TIMEOUT_MS.get(fn_name, DEFAULT_TIMEOUT_MS)
    context = LambdaContext(function_name=f"{app.app_name}-local-{fn_name}", memory_size=512, max_runtime_ms=ms)
    return handler(event, context)
