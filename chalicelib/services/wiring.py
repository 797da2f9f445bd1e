"""The process-wide container, built on first use (never at import time)."""
from __future__ import annotations

import threading

from chalicelib.settings import Settings

_lock = threading.Lock()
_container = None


def container():
    global _container
    with _lock:
        if _container is None:
            from chalicelib.services.container import Container

            settings = Settings.from_env()
            if settings.environment == "aws" and settings.jwt_secret_arn and not settings.jwt_secret:
                settings = settings.with_(jwt_secret=_read_secret(settings))
            _container = Container(settings)
        return _container


def set_container(c) -> None:
    """Install a container (tests and the local runner)."""
    global _container
    with _lock:
        _container = c


def _read_secret(settings: Settings) -> str:
    from chalicelib.adapters import aws
    from chalicelib.adapters.errors import aws_call

    sm = aws.client("secretsmanager", region=settings.region)
    with aws_call("read JWT secret"):
        return sm.get_secret_value(SecretId=settings.jwt_secret_arn)["SecretString"]
