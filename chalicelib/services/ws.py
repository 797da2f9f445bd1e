"""WebSocket handlers: connect (token or single-use ticket checked at the handshake),
subscribe (with ``since``: replay, then live), unsubscribe, ping; and the tickets."""
from __future__ import annotations

import json
import logging
import secrets
from datetime import datetime, timezone

from chalicelib.api import auth
from chalicelib.domain import events as ev
from chalicelib.errors import SchedulerError, Unauthorized

log = logging.getLogger("agent_scheduler.ws")
MAX_SUBSCRIPTIONS = 200
TICKET_SECONDS = 60
MAX_SEQ = 2**53 - 1  # what JSON clients (JavaScript) hold exactly


def issue_ticket(container, principal) -> dict:
    """A single-use ticket for ``?ticket=`` on connect, valid ``TICKET_SECONDS``: a page
    or a CLI never has to put its long-lived bearer token in a URL."""
    ticket = secrets.token_urlsafe(32)
    now = container.clock.now().timestamp()
    expires = now + TICKET_SECONDS
    container.event_store.put_ticket(ticket, principal.tenant_id, " ".join(sorted(principal.scopes)), expires)
    answer = {
        "ticket": ticket,
        "expiresAt": datetime.fromtimestamp(expires, tz=timezone.utc).isoformat(timespec="seconds"),
        "expiresInSeconds": TICKET_SECONDS,
    }
    ws_url = websocket_url(container.settings.ws_endpoint)
    if ws_url:
        answer["url"] = f"{ws_url}?ticket={ticket}"
    return answer


def websocket_url(endpoint: str) -> str:
    """The clients' ``ws(s)://`` URL of the WebSocket API from its management endpoint."""
    if not endpoint:
        return ""
    scheme, _, rest = endpoint.partition("://")
    rest = rest.rstrip("/")
    return ("wss://" if scheme == "https" else "ws://") + rest + ("/" if "/" not in rest else "")


def _principal(container, params: dict) -> auth.Principal:
    ticket = params.get("ticket")
    if ticket and not params.get("token"):
        if len(ticket) > 200:
            raise Unauthorized("invalid ticket")
        found = container.event_store.take_ticket(ticket, container.clock.now().timestamp())
        if found is None:
            raise Unauthorized("invalid ticket: unknown, used or expired (ask POST /api/events/ticket for a new one)")
        return auth.Principal(found.tenant_id, frozenset(found.scopes.split()))
    return auth.verify(params.get("token"), container.jwt_secret)


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
    try:
        principal = _principal(container, params)
    except SchedulerError as exc:
        return {"statusCode": exc.status_code, "body": json.dumps(exc.to_body())}
    cid = event["requestContext"]["connectionId"]
    container.connections.add(cid, principal.tenant_id, container.clock.now().timestamp())
    return {"statusCode": 200}


def on_disconnect(container, event: dict) -> dict:
    cid = event["requestContext"]["connectionId"]
    conn = container.connections.get(cid)
    container.connections.remove(cid)
    if conn is not None:
        container.event_store.forget(conn.tenant_id, [cid])
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
        since = msg.get("since")
        if action == "subscribe" and since is not None and (
            isinstance(since, bool) or not isinstance(since, int) or not 0 <= since <= MAX_SEQ
        ):
            _reply(container, cid, _error("since must be a whole number >= 0 (the last seq you received)", now))
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

        def following(last_seq: int) -> None:
            # ``lastSeq``: the stream's last seq as the subscription took effect; without
            # ``since``, live events follow it; with it, the replay comes next.
            data = {"agentIds": subs, "unknown": unknown, "lastSeq": last_seq}
            _reply(container, cid, ev.envelope(ev.SUBSCRIBED, data, now))

        container.events.subscribe(conn.tenant_id, cid, subs, since if action == "subscribe" else None, following)
        return {"statusCode": 200}
    _reply(container, cid, _error("action must be subscribe, unsubscribe or ping", now))
    return {"statusCode": 200}
