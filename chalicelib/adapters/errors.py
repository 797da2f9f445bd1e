"""Translate AWS errors into the product's exception tree (adapters only)."""
from __future__ import annotations

from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import PynamoDBException

from chalicelib.errors import ConditionFailed, StorageError

RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "TransactionConflictException",
        "RequestThrottled",
        "KMSThrottlingException",
        "LimitExceededException",
        "TooManyRequestsException",
    }
)


def _code_of(exc: BaseException) -> str | None:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code")
    if isinstance(exc, PynamoDBException):
        # not ``cause_response_code``: it fails on a cause without a response (a read timeout)
        return exc.cause.response.get("Error", {}).get("Code") if isinstance(exc.cause, ClientError) else None
    return None


def translate(exc: BaseException, what: str) -> Exception:
    code = _code_of(exc)
    if code == "ConditionalCheckFailedException":
        return ConditionFailed(f"{what}: another writer got there first")
    if code in RETRYABLE_CODES:
        return StorageError(f"{what}: {code}", retryable=True)
    if isinstance(exc, BotoCoreError) and not isinstance(exc, ClientError):
        return StorageError(f"{what}: {type(exc).__name__}: {exc}", retryable=True)
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BotoCoreError) and not isinstance(cause, ClientError):
        return StorageError(f"{what}: {type(cause).__name__}: {cause}", retryable=True)
    return StorageError(f"{what}: {code or type(exc).__name__}: {exc}", retryable=False)


@contextmanager
def aws_call(what: str):
    """``with aws_call("put agent"): ...`` turns AWS errors into ours."""
    try:
        yield
    except (ClientError, BotoCoreError, PynamoDBException) as exc:
        raise translate(exc, what) from exc
