from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest

# Never talk to real AWS from tests.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.pop("AWS_ENDPOINT_URL", None)

T0 = datetime(2026, 3, 2, 11, 59, 30, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _plain_logging():
    """Each test starts with the product's loggers as Python leaves them (propagating to the root,
    where caplog listens), whatever JSON handler an earlier test configured in this process."""
    import logging

    names = ("agent_scheduler", "agent-scheduler", "app")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate) for n in names}
    for n in names:
        logging.getLogger(n).handlers[:] = []
        logging.getLogger(n).propagate = True
    yield
    for n, (handlers, propagate) in saved.items():
        logging.getLogger(n).handlers[:], logging.getLogger(n).propagate = handlers, propagate
