"""Invoking a tenant's Lambda function: the only place the ``lambda`` kind touches boto3.

One call to :meth:`LambdaInvoker.invoke` is exactly one invocation: the client is
built with SDK retries off (``total_max_attempts=1``), because a retried Invoke
would run the tenant's function twice within one attempt; the scheduler retries
whole attempts instead, with backoff and a fresh envelope.

An invocation that outlives its attempt (the run's deadline or the worker's own
time passes first) keeps running in Lambda until it returns or hits the
function's own timeout: nothing can stop a synchronous invocation from the
caller's side. Its result is discarded: the attempt has already ended
``TIMEOUT`` (or the worker died), and the next attempt, if any, invokes the
function again. Functions must therefore tolerate a second invocation for the
same ``sessionId`` while an earlier one may still be running.

AWS errors become :class:`InvokeFailed` with the run's error category.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

from chalicelib.domain.model import ErrorCategory
from chalicelib.errors import SchedulerError

READ_TIMEOUT_SECONDS = 900  # Lambda's longest run
CONNECT_TIMEOUT_SECONDS = 5

_PERMANENT_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "InvalidParameterValueException",
        "InvalidRequestContentException",
        "RequestTooLargeException",
        "UnsupportedMediaTypeException",
        "AccessDeniedException",
        "AccessDeniedExceptionException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ValidationException",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "TooManyRequestsException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "EC2ThrottledException",
        "ResourceConflictException",  # function is being updated
        "ResourceNotReadyException",
        "ServiceException",
        "ServiceUnavailableException",
        "InternalFailure",
    }
)


@dataclass(frozen=True)
class Invocation:
    payload: bytes  # what the function returned (its error document on a function error)
    function_error: str | None  # "Unhandled"/"Handled" when the function failed, else None


class InvokeFailed(SchedulerError):
    """The invocation did not happen or got no answer. ``timed_out``: no answer in time."""

    code = "INVOKE_FAILED"

    def __init__(
        self, category: ErrorCategory, message: str, *, retry_after: float | None = None,
        timed_out: bool = False,
    ) -> None:
        super().__init__(message)
        self.category = category
        self.retry_after = retry_after
        self.timed_out = timed_out
        self.retryable = category.retryable


def build_client(
    *, region: str, endpoint_url: str | None = None, session: Any = None,
    read_timeout: float = READ_TIMEOUT_SECONDS,
) -> Any:
    """A boto3 Lambda client for agent invocations: long read timeout, no SDK retries."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": 1},
    )
    session = session or boto3.session.Session()
    return session.client("lambda", region_name=region, endpoint_url=endpoint_url, config=config)


class LambdaInvoker:
    """``invoke(function_name, payload) -> Invocation``, synchronously (RequestResponse)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def invoke(self, function_name: str, payload: bytes) -> Invocation:
        what = f"lambda {function_name}"
        try:
            response = self.client.invoke(
                FunctionName=function_name, InvocationType="RequestResponse", Payload=payload
            )
            raw = _read(response.get("Payload"))
        except ClientError as exc:
            raise _client_failure(what, exc) from exc
        except ReadTimeoutError as exc:
            raise InvokeFailed(
                ErrorCategory.TRANSIENT, f"{what}: no response in time", timed_out=True
            ) from exc
        except BotoCoreError as exc:  # endpoint unreachable, connect timeout, ...
            raise InvokeFailed(
                ErrorCategory.TRANSIENT, f"{what}: {type(exc).__name__}: {exc}"
            ) from exc
        return Invocation(raw, response.get("FunctionError") or None)


def _read(body: Any) -> bytes:
    if body is None:
        return b""
    if hasattr(body, "read"):
        body = body.read()
    if isinstance(body, str):
        return body.encode("utf-8")
    return bytes(body)


def _client_failure(what: str, exc: ClientError) -> InvokeFailed:
    error = exc.response.get("Error", {}) or {}
    meta = exc.response.get("ResponseMetadata", {}) or {}
    code = str(error.get("Code", ""))
    status = meta.get("HTTPStatusCode") or 0
    message = f"{what}: {code or 'ClientError'}: {error.get('Message', exc)}"[:2000]
    if code in _TRANSIENT_CODES or status == 429 or status >= 500:
        headers = meta.get("HTTPHeaders", {}) or {}
        retry_after = _seconds(headers.get("retry-after") or exc.response.get("retryAfterSeconds"))
        return InvokeFailed(ErrorCategory.TRANSIENT, message, retry_after=retry_after)
    if code in _PERMANENT_CODES or 400 <= status < 500:
        return InvokeFailed(ErrorCategory.PERMANENT, message)
    return InvokeFailed(ErrorCategory.TRANSIENT, message)


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 and seconds == seconds and seconds != float("inf") else None
