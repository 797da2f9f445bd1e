"""Polling for a state of the local system, which runs on the real clock."""
from __future__ import annotations

import time


def until(what: str, check, timeout: float = 30.0, every: float = 0.1, show=lambda: ""):
    """Call ``check`` until it returns something true (returned); fail naming ``what`` after
    ``timeout`` seconds, with ``show()`` appended."""
    end = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"not {what} within {timeout:g} s {show()}".rstrip())
        time.sleep(every)
