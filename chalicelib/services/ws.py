"""WebSocket handlers: connect (token checked at the handshake), subscribe, ping."""
from __future__ import annotations

import json
import logging

from chalicelib.api import auth
from chalicelib.domain import events as ev
from chalicelib.errors import SchedulerError

log = logging.getLogger("agent_scheduler.ws")
MAX_SUBSCRIPTIONS = 200


def _reply(container, connection_id: str, payload: dict) -> None:
    """Answer one connection; a failed answer is logged, never raised (the handler has done its work)."""
    try:
        gone = container.pusher.push([connection_id], payload)
        if gone:
            container.connections.remove(connection_id)
    except Exception:
        log.exception("reply to %s failed", connection_id, extra={"connection_id": connection_id})


def on_connect(container, event: dict) -> dict:
    params = event.get("queryStringParameters") or {}
    token = params.get("token")
    try:
        principal = auth.verify(token, container.jwt_secret)
    except SchedulerError as exc:
        return {"statusCode": exc.status_code, "body": json.dumps(exc.to_body())}
    cid = event["requestContext"]["connectionId"]
    container.connections.add(cid, principal.tenant_id, container.clock.now().timestamp())
    container.events.invalidate(principal.tenant_id)
    return {"statusCode": 200}


def on_disconnect(container, event: dict) -> dict:
    cid = event["requestContext"]["connectionId"]
    conn = container.connections.get(cid)
    container.connections.remove(cid)
    if conn is not None:
        container.events.invalidate(conn.tenant_id)
    return {"statusCode": 200}


def _error(message: str, now: float) -> dict:
    return ev.envelope("error", {"message": message}, now)


def on_message(container, event: dict) -> dict:
    cid = event["requestContext"]["connectionId"]
    now = container.clock.now().timestamp()
    conn = container.connections.get(cid)
    if conn is None:
        return {"statusCode": 410}
    try:
        msg = json.loads(event.get("body") or "")
    except ValueError:
        _reply(container, cid, _error("message must be JSON", now))
        return {"statusCode": 200}
    if not isinstance(msg, dict):
        _reply(container, cid, _error("message must be a JSON object", now))
        return {"statusCode": 200}
    action = msg.get("action")
    if action == "ping":
        _reply(container, cid, ev.envelope(ev.PONG, {}, now))
        return {"statusCode": 200}
    if action in ("subscribe", "unsubscribe"):
        ids = msg.get("agentIds")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and 0 < len(i) <= 100 for i in ids):
            _reply(container, cid, _error("agentIds must be a non-empty list of agent ids (or [\"*\"])", now))
            return {"statusCode": 200}
        if len(ids) > MAX_SUBSCRIPTIONS:
            _reply(container, cid, _error(f"agentIds: at most {MAX_SUBSCRIPTIONS} agent ids per message", now))
            return {"statusCode": 200}
        ids = list(dict.fromkeys(ids))
        subs = list(conn.subscriptions or [])
        if action == "subscribe":
            allowed = [i for i in ids if i == "*" or container.agents.get(conn.tenant_id, i) is not None]
            unknown = [i for i in ids if i not in allowed]
            subs = list(dict.fromkeys(subs + allowed))[:MAX_SUBSCRIPTIONS]
        else:
            unknown = []
            subs = [s for s in subs if s not in ids]
        container.connections.set_subscriptions(cid, subs)
        container.events.invalidate(conn.tenant_id)
        _reply(container, cid, ev.envelope(ev.SUBSCRIBED, {"agentIds": subs, "unknown": unknown}, now))
        return {"statusCode": 200}
    _reply(container, cid, _error("action must be subscribe, unsubscribe or ping", now))
    return {"statusCode": 200}
