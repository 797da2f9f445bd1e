"""boto3 clients, built once per container (never at import time)."""
from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

_lock = threading.Lock()
_session: boto3.session.Session | None = None


def session() -> boto3.session.Session:
    global _session
    with _lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session


def client(service: str, *, region: str, endpoint_url: str | None = None, **config: Any) -> Any:
    cfg = Config(
        connect_timeout=config.pop("connect_timeout", 5),
        read_timeout=config.pop("read_timeout", 30),
        retries={"max_attempts": config.pop("max_attempts", 3), "mode": "standard"},
        max_pool_connections=config.pop("max_pool_connections", 20),
    )
    return session().client(service, region_name=region, endpoint_url=endpoint_url, config=cfg)
