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

            _container = Container(Settings.from_env())
        return _container


def set_container(c) -> None:
    """Install a container (tests and the local runner)."""
    global _container
    with _lock:
        _container = c
