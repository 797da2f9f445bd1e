"""Time and retry limits that must fit together, derived here once.

Read by the settings (their bounds), by ``adapters/provision.py`` (the local
queues) and by the CDK stack in ``infra/`` (function timeouts, the work queue);
``tests/infra`` checks the synthesized template agrees. Plain constants: no AWS.

How they fit:

- The worker Lambda runs one attempt of one run and may live at most
  ``WORKER_TIMEOUT_SECONDS`` (Lambda's maximum).
- An agent's synchronous work must end before the worker does, with time left
  to record the outcome: ``MAX_AGENT_TIMEOUT_SECONDS``.
- While the worker holds a message it stays invisible; AWS advises a visibility
  timeout of six times the function timeout for an SQS event source, so a
  message is not delivered twice while a slow invocation (or Lambda's own
  retries of a throttled one) still holds it.
- A run makes at most ``MAX_ATTEMPTS`` deliveries (first try, every retry,
  every rate-limited wait); the queue's ``maxReceiveCount`` sits above that
  with a margin for crashes, so only a message that crashes the handler again
  and again reaches the queue's dead-letter queue.
- The message must outlive all those receives: retention above
  ``MAX_RECEIVE_COUNT`` visibility timeouts.
"""
from __future__ import annotations

# --- Lambda functions --------------------------------------------------------------
WORKER_TIMEOUT_SECONDS = 900  # Lambda's maximum: one attempt of one run
TICK_TIMEOUT_SECONDS = 60  # the tick must finish inside its minute
API_GATEWAY_INTEGRATION_LIMIT_SECONDS = 29  # REST and WebSocket APIs answer 504 after this
API_TIMEOUT_SECONDS = 25  # REST handler: under the gateway's limit, so Lambda never runs on unheard
WEBSOCKET_TIMEOUT_SECONDS = 25  # WebSocket handlers: the same limit applies

# --- agents ------------------------------------------------------------------------
AGENT_TIMEOUT_MARGIN_SECONDS = 60  # left to the worker to record, retry or dead-letter
MAX_AGENT_TIMEOUT_SECONDS = WORKER_TIMEOUT_SECONDS - AGENT_TIMEOUT_MARGIN_SECONDS  # 840: the longest synchronous run
SYNC_WAIT_SECONDS_MAX = MAX_AGENT_TIMEOUT_SECONDS  # SCHEDULER_SYNC_WAIT_SECONDS: default and largest value
MAX_CONTRACT_TIMEOUT_SECONDS = 86400  # webhook and lambda agents: longer work answers 202 and calls back

# --- attempts ----------------------------------------------------------------------
MAX_RETRIES_LIMIT = 10  # the largest maxRetries an agent (or SCHEDULER_MAX_RETRIES) may set
MAX_RATE_LIMITED_WAITS_DEFAULT = 10
MAX_RATE_LIMITED_WAITS_LIMIT = 20  # the largest SCHEDULER_MAX_RATE_LIMITED_WAITS
MAX_ATTEMPTS = 1 + MAX_RETRIES_LIMIT + MAX_RATE_LIMITED_WAITS_LIMIT  # 31 deliveries of one run at most

# --- the work queue ----------------------------------------------------------------
VISIBILITY_TIMEOUT_FACTOR = 6  # AWS: six times the function timeout for an SQS event source
WORK_QUEUE_VISIBILITY_SECONDS = VISIBILITY_TIMEOUT_FACTOR * WORKER_TIMEOUT_SECONDS  # 5,400 s
RECEIVE_MARGIN = 4  # handler crashes tolerated on top of the attempts themselves
MAX_RECEIVE_COUNT = MAX_ATTEMPTS + RECEIVE_MARGIN  # 35
WORK_QUEUE_RETENTION_SECONDS = 4 * 86400  # SQS's default, made explicit
DLQ_RETENTION_SECONDS = 14 * 86400  # SQS's maximum
MAX_SQS_DELAY_SECONDS = 900  # SQS's largest DelaySeconds


def check() -> None:
    """Raise ``AssertionError`` naming the rule a change to the constants above breaks."""
    rules = {
        "the API handler must time out before API Gateway gives up on it":
            API_TIMEOUT_SECONDS < API_GATEWAY_INTEGRATION_LIMIT_SECONDS,
        "WebSocket handlers must time out before API Gateway gives up on them":
            WEBSOCKET_TIMEOUT_SECONDS < API_GATEWAY_INTEGRATION_LIMIT_SECONDS,
        "the worker's timeout is at most Lambda's 900 s": WORKER_TIMEOUT_SECONDS <= 900,
        "the longest agent run must leave the worker time to record it":
            0 < MAX_AGENT_TIMEOUT_SECONDS < WORKER_TIMEOUT_SECONDS,
        "the visibility timeout must be at least six times the worker's timeout":
            WORK_QUEUE_VISIBILITY_SECONDS >= 6 * WORKER_TIMEOUT_SECONDS,
        "SQS visibility timeouts are at most 12 hours": WORK_QUEUE_VISIBILITY_SECONDS <= 12 * 3600,
        "maxReceiveCount must exceed the most deliveries a run can make": MAX_RECEIVE_COUNT > MAX_ATTEMPTS,
        "SQS maxReceiveCount is at most 1000": MAX_RECEIVE_COUNT <= 1000,
        "a message must outlive every receive it may get before the dead-letter queue":
            MAX_RECEIVE_COUNT * WORK_QUEUE_VISIBILITY_SECONDS < WORK_QUEUE_RETENTION_SECONDS,
        "the default rate-limited waits must be allowed": MAX_RATE_LIMITED_WAITS_DEFAULT <= MAX_RATE_LIMITED_WAITS_LIMIT,
    }
    broken = [rule for rule, holds in rules.items() if not holds]
    if broken:
        raise AssertionError("; ".join(broken))


check()
