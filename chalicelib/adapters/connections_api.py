"""Push events to WebSocket connections through the API Gateway management API.

The endpoint comes from settings (Chalice's own sender hides it). A connection
that answers GoneException is reported gone so the caller deletes it; a slow or
failing connection never blocks the others: each connection is its own post in a
small pool, the caller waits at most a deadline, and a connection that was slow or
failed recently is sent to from a separate "slow lane" pool whose posts nobody
waits for, so a few stuck clients cannot fill the pool the healthy ones use.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Sequence

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)


SLOW_AFTER_SECONDS = 1.0  # a post slower than this moves its connection to the slow lane
SLOW_LANE_SECONDS = 60.0  # ... for this long


class ConnectionPusher:
    def __init__(self, client: Any, *, workers: int = 8, deadline_seconds: float = 3.0, slow_workers: int = 2,
                 monotonic=time.monotonic) -> None:
        self.client = client
        self.deadline = deadline_seconds
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ws-push")
        self.slow_pool = ThreadPoolExecutor(max_workers=slow_workers, thread_name_prefix="ws-push-slow")
        self._monotonic = monotonic
        self._slow: dict[str, float] = {}  # connection id -> until when it stays in the slow lane
        self._gone_later: set[str] = set()  # found gone by a slow-lane post: reported by the next push
        self._lock = threading.Lock()

    def is_slow(self, connection_id: str) -> bool:
        with self._lock:
            until = self._slow.get(connection_id)
            if until is not None and until <= self._monotonic():
                del self._slow[connection_id]
                return False
            return until is not None

    def _timed_post(self, connection_id: str, data: bytes) -> str:
        started = self._monotonic()
        result = self._post(connection_id, data)
        if result == "error" or self._monotonic() - started > SLOW_AFTER_SECONDS:
            with self._lock:
                self._slow[connection_id] = self._monotonic() + SLOW_LANE_SECONDS
        return result

    def _slow_post(self, connection_id: str, data: bytes) -> None:
        if self._timed_post(connection_id, data) == "gone":
            with self._lock:
                self._gone_later.add(connection_id)

    def _post(self, connection_id: str, data: bytes) -> str:
        try:
            self.client.post_to_connection(ConnectionId=connection_id, Data=data)
            return "ok"
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "GoneException" or status == 410:
                return "gone"
            log.warning("push to %s failed: %s", connection_id, code or status,
                        extra={"connection_id": connection_id, "code": code})
            return "error"
        except BotoCoreError as exc:
            log.warning("push to %s failed: %s", connection_id, exc,
                        extra={"connection_id": connection_id, "error": str(exc)})
            return "error"
        except Exception as exc:  # never let one connection's failure hide the others' results
            log.warning("push to %s failed: %r", connection_id, exc,
                        extra={"connection_id": connection_id, "error": repr(exc)})
            return "error"

    def push(self, connection_ids: Sequence[str], payload: dict) -> list[str]:
        """Send ``payload`` to every connection; return the ids that are gone (waits at most
        the deadline, and never for a connection in the slow lane)."""
        with self._lock:
            gone = list(self._gone_later)
            self._gone_later.clear()
        if not connection_ids:
            return gone
        data = _encode(payload)
        fast = []
        for cid in connection_ids:
            if self.is_slow(cid):
                self.slow_pool.submit(self._slow_post, cid, data)
            else:
                fast.append(cid)
        futures = {self.pool.submit(self._timed_post, cid, data): cid for cid in fast}
        done, _ = wait(futures, timeout=self.deadline)
        return gone + [futures[f] for f in done if f.result() == "gone"]

    def send_in_order(self, connection_id: str, payloads: Sequence[dict]) -> str:
        """Send several events to one connection, one after another (a replay): ``ok``,
        ``gone`` or ``error`` (stops at the first failure)."""
        for payload in payloads:
            result = self._post(connection_id, _encode(payload))
            if result != "ok":
                return result
        return "ok"

    def close(self, connection_id: str) -> None:
        """Close a connection (best effort): its client reconnects and resumes."""
        try:
            self.client.delete_connection(ConnectionId=connection_id)
        except Exception as exc:  # gone already, or unreachable: nothing more to do
            log.warning("closing %s failed: %r", connection_id, exc, extra={"connection_id": connection_id})

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.slow_pool.shutdown(wait=False, cancel_futures=True)


def _encode(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), default=str).encode()
