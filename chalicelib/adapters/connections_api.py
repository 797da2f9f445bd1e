"""Push events to WebSocket connections through the API Gateway management API.

The endpoint comes from settings (Chalice's own sender hides it). A connection
that answers GoneException is reported gone so the caller deletes it; a slow or
failing connection never blocks the others (a small pool with a deadline).
"""
from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Sequence

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)


class ConnectionPusher:
    def __init__(self, client: Any, *, workers: int = 8, deadline_seconds: float = 3.0) -> None:
        self.client = client
        self.deadline = deadline_seconds
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ws-push")

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
        """Send ``payload`` to every connection; return the ids that are gone."""
        if not connection_ids:
            return []
        data = json.dumps(payload, separators=(",", ":"), default=str).encode()
        futures = {self.pool.submit(self._post, cid, data): cid for cid in connection_ids}
        done, _ = wait(futures, timeout=self.deadline)
        return [futures[f] for f in done if f.result() == "gone"]
