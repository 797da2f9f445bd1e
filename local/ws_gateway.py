"""A local WebSocket gateway that behaves like API Gateway's WebSocket APIs.

- A client connects to ``ws://HOST:PORT/`` (any path); the gateway builds an
  API-Gateway-shaped ``$connect`` event (``requestContext`` with ``routeKey``,
  ``eventType`` CONNECT, ``connectionId``, ``domainName``, ``stage``, ``apiId``,
  ``requestId``...; ``headers`` and ``queryStringParameters``) and invokes the
  app's ``$connect`` handler. A non-2xx ``statusCode`` refuses the handshake
  with that HTTP status; an exception refuses it with 500.
- Each frame becomes a ``$default`` event (eventType MESSAGE, ``body``); frames
  of one connection are handled in order. When the connection closes (either
  side, or ``DELETE @connections``) a ``$disconnect`` event follows.
- The management API: ``POST /@connections/{id}`` sends the body as one frame,
  ``GET`` answers the connection's info, ``DELETE`` closes it. An unknown (or
  closed) id answers 410 with ``x-amzn-ErrorType: GoneException``, so boto3's
  ``apigatewaymanagementapi`` client raises ``GoneException``; a payload over
  128 KB answers 413 ``PayloadTooLargeException``, a client whose send buffer is
  full 429 ``LimitExceededException``. ``/{stage}/@connections/{id}`` works too.

Handlers run in worker threads (they are blocking, like Lambda); frames to a
client go through a bounded per-connection queue, so a slow client never holds
up a POST. Not emulated: IAM signing of ``@connections`` calls, the 10-minute
idle timeout and the 2-hour connection limit (the connections table's TTL
covers the latter).
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

log = logging.getLogger("local.ws")

MAX_PAYLOAD_BYTES = 128 * 1024  # API Gateway's WebSocket message limit
SEND_QUEUE_FRAMES = 1000  # frames buffered for one client before 429 LimitExceeded
API_ID = "local"
STAGE = "local"

Invoker = Callable[[str, dict], Any]  # (route key, event) -> handler result


def _epoch_ms() -> int:
    return int(time.time() * 1000)


def _request_time(ms: int) -> str:
    # API Gateway's format: 09/Apr/2015:12:34:56 +0000
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_connection_id() -> str:
    """16 characters ending in '=' like API Gateway's (URL-safe alphabet)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(11)).decode()[:15] + "="


@dataclass
class Connection:
    connection_id: str
    websocket: WebSocket
    source_ip: str
    user_agent: str
    connected_at: int = field(default_factory=_epoch_ms)
    last_active_at: int = field(default_factory=_epoch_ms)
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(maxsize=SEND_QUEUE_FRAMES))
    closing: bool = False


def _aws_error(status: int, error_type: str, message: str | None = None) -> Response:
    return JSONResponse(
        {"message": message},
        status_code=status,
        headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": str(uuid.uuid4())},
    )


class WebSocketGateway:
    def __init__(self, invoke: Invoker, *, domain_name: str, stage: str = STAGE, api_id: str = API_ID) -> None:
        self._invoke = invoke
        self.domain_name = domain_name
        self.stage = stage
        self.api_id = api_id
        self.connections: dict[str, Connection] = {}
        self.app = Starlette(
            routes=[
                Route("/@connections/{connection_id}", self.management, methods=["GET", "POST", "DELETE"]),
                Route("/{stage}/@connections/{connection_id}", self.management, methods=["GET", "POST", "DELETE"]),
                WebSocketRoute("/{path:path}", self.websocket),
                Route("/{path:path}", self.not_websocket, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
            ]
        )

    # --- events ---------------------------------------------------------------------
    def _context(self, conn_id: str, route_key: str, event_type: str, source_ip: str, user_agent: str,
                 connected_at: int, **extra) -> dict:
        now = _epoch_ms()
        request_id = base64.urlsafe_b64encode(secrets.token_bytes(6)).decode() + "="
        ctx = {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": _request_time(now),
            "messageDirection": "IN",
            "stage": self.stage,
            "connectedAt": connected_at,
            "requestTimeEpoch": now,
            "identity": {"sourceIp": source_ip, "userAgent": user_agent},
            "requestId": request_id,
            "domainName": self.domain_name,
            "connectionId": conn_id,
            "apiId": self.api_id,
        }
        ctx.update(extra)
        return ctx

    def connect_event(self, ws: WebSocket, conn_id: str, connected_at: int) -> dict:
        headers: dict[str, str] = {}
        multi_headers: dict[str, list[str]] = {}
        for k, v in ws.headers.items():
            # API Gateway keeps the client's spelling; Starlette lower-cases: title-case them.
            name = "-".join(p.capitalize() for p in k.split("-"))
            multi_headers.setdefault(name, []).append(v)
            headers[name] = v
        multi_query: dict[str, list[str]] = {}
        for k, v in ws.query_params.multi_items():
            multi_query.setdefault(k, []).append(v)
        query = {k: vs[-1] for k, vs in multi_query.items()}
        ip, ua = self._client(ws)
        return {
            "headers": headers,
            "multiValueHeaders": multi_headers,
            "queryStringParameters": query or None,
            "multiValueQueryStringParameters": multi_query or None,
            "requestContext": self._context(conn_id, "$connect", "CONNECT", ip, ua, connected_at),
            "isBase64Encoded": False,
        }

    def message_event(self, conn: Connection, body: str, is_base64: bool) -> dict:
        ctx = self._context(
            conn.connection_id, "$default", "MESSAGE", conn.source_ip, conn.user_agent, conn.connected_at,
            messageId=base64.urlsafe_b64encode(secrets.token_bytes(6)).decode() + "=",
        )
        return {"requestContext": ctx, "body": body, "isBase64Encoded": is_base64}

    def disconnect_event(self, conn: Connection, code: int, reason: str) -> dict:
        ctx = self._context(
            conn.connection_id, "$disconnect", "DISCONNECT", conn.source_ip, conn.user_agent, conn.connected_at,
            disconnectStatusCode=code, disconnectReason=reason or "",
        )
        return {
            "headers": {"Host": self.domain_name, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""},
            "multiValueHeaders": {},
            "requestContext": ctx,
            "isBase64Encoded": False,
        }

    @staticmethod
    def _client(ws: WebSocket) -> tuple[str, str]:
        ip = ws.client.host if ws.client else "127.0.0.1"
        return ip, ws.headers.get("user-agent", "")

    async def _call(self, route_key: str, event: dict) -> Any:
        return await run_in_threadpool(self._invoke, route_key, event)

    # --- the WebSocket endpoint --------------------------------------------------------
    async def websocket(self, ws: WebSocket) -> None:
        conn_id = new_connection_id()
        connected_at = _epoch_ms()
        try:
            result = await self._call("$connect", self.connect_event(ws, conn_id, connected_at))
        except Exception:
            log.exception("$connect handler failed")
            result = {"statusCode": 500, "body": json.dumps({"message": "Internal server error"})}
        status = _status(result)
        if not 200 <= status < 300:
            await self._refuse(ws, status, result)
            return
        ip, ua = self._client(ws)
        conn = Connection(conn_id, ws, ip, ua, connected_at=connected_at)
        self.connections[conn_id] = conn
        # Like API Gateway, a subprotocol is agreed only if $connect answers it as a header.
        subprotocol = next(
            (str(v) for k, v in _headers(result).items() if k.lower() == "sec-websocket-protocol"), None
        )
        sender: asyncio.Task | None = None
        code, reason = 1005, ""
        try:
            await ws.accept(subprotocol=subprotocol)
            sender = asyncio.create_task(self._sender(conn), name=f"ws-send-{conn_id}")
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    code, reason = message.get("code", 1005), message.get("reason") or ""
                    break
                conn.last_active_at = _epoch_ms()
                if message.get("text") is not None:
                    body, b64 = message["text"], False
                else:
                    raw = message.get("bytes") or b""
                    try:
                        body, b64 = raw.decode("utf-8"), False
                    except UnicodeDecodeError:
                        body, b64 = base64.b64encode(raw).decode("ascii"), True
                try:
                    await self._call("$default", self.message_event(conn, body, b64))
                except Exception:
                    log.exception("$default handler failed", extra={"connection_id": conn_id})
        except WebSocketDisconnect as exc:
            code, reason = exc.code, exc.reason or ""
        except Exception as exc:  # the client vanished mid-handshake, or the server is stopping
            code, reason = 1006, type(exc).__name__
        finally:
            await self._forget(conn)
            if sender is not None:
                sender.cancel()
                try:
                    await sender
                except (asyncio.CancelledError, Exception):
                    pass
            if (ws.application_state == WebSocketState.CONNECTED
                    and ws.client_state == WebSocketState.CONNECTED):
                try:
                    await ws.close(code=1000)
                except Exception:
                    pass
            try:
                await self._call("$disconnect", self.disconnect_event(conn, code, reason))
            except Exception:
                log.exception("$disconnect handler failed", extra={"connection_id": conn_id})

    async def _refuse(self, ws: WebSocket, status: int, result: Any) -> None:
        body = result.get("body") if isinstance(result, dict) else None
        headers = {k: str(v) for k, v in _headers(result).items() if k.lower() != "content-length"}
        media = "application/json"
        for k in list(headers):
            if k.lower() == "content-type":
                media = headers.pop(k)
        content = body if isinstance(body, (str, bytes)) else json.dumps({"message": "Forbidden"})
        try:
            await ws.send_denial_response(Response(content, status_code=status, headers=headers, media_type=media))
        except RuntimeError:  # the server lacks the denial extension: a bare 403
            await ws.close(code=1008)

    async def _sender(self, conn: Connection) -> None:
        while True:
            data: bytes = await conn.queue.get()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                await conn.websocket.send_bytes(data)
            else:
                await conn.websocket.send_text(text)

    async def _forget(self, conn: Connection) -> None:
        conn.closing = True
        if self.connections.get(conn.connection_id) is conn:
            del self.connections[conn.connection_id]

    # --- the management API -----------------------------------------------------------------
    async def management(self, request: Request) -> Response:
        conn_id = request.path_params["connection_id"]
        conn = self.connections.get(conn_id)
        if conn is None or conn.closing:
            if request.method == "POST":
                await request.body()
            return _aws_error(410, "GoneException")
        if request.method == "GET":
            return JSONResponse(
                {
                    "connectedAt": _iso(conn.connected_at),
                    "identity": {"sourceIp": conn.source_ip, "userAgent": conn.user_agent},
                    "lastActiveAt": _iso(conn.last_active_at),
                }
            )
        if request.method == "DELETE":
            await self._forget(conn)
            asyncio.create_task(_close(conn.websocket))
            return Response(status_code=204)
        data = await request.body()
        if len(data) > MAX_PAYLOAD_BYTES:
            return _aws_error(413, "PayloadTooLargeException", "Message too long")
        try:
            conn.queue.put_nowait(data)
        except asyncio.QueueFull:
            return _aws_error(429, "LimitExceededException", "the client's buffer is full")
        return Response(status_code=200)

    async def not_websocket(self, request: Request) -> Response:
        return PlainTextResponse(
            "This is the WebSocket endpoint: connect with ws://.../?token=<JWT> "
            "or ws://.../?ticket=<ticket from POST /api/events/ticket>\n", status_code=426,
            headers={"Upgrade": "websocket"},
        )


async def _close(ws: WebSocket) -> None:
    try:
        await ws.close(code=1000)
    except Exception:
        pass


def _status(result: Any) -> int:
    if isinstance(result, dict):
        try:
            return int(result.get("statusCode", 200))
        except (TypeError, ValueError):
            return 500
    return 200


def _headers(result: Any) -> dict:
    if isinstance(result, dict) and isinstance(result.get("headers"), dict):
        return result["headers"]
    return {}
