"""One exception tree for the whole product.

Every error says whether retrying could help (``retryable``). Domain and API
errors carry an HTTP status and a stable ``code``; AWS errors are translated
into this tree at the adapters (``raise ... from exc``), never further in.
"""
from __future__ import annotations


class SchedulerError(Exception):
    """Base of every error the product raises on purpose."""

    status_code = 500
    code = "INTERNAL"
    retryable = False

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_body(self) -> dict:
        body = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return body


# --- client errors (4xx) -------------------------------------------------
class ValidationError(SchedulerError):
    status_code = 400
    code = "VALIDATION_ERROR"

    def __init__(self, field: str | None, message: str) -> None:
        if field and field not in message:
            message = f"{field}: {message}"
        super().__init__(message, field=field)


class MalformedRequest(SchedulerError):
    status_code = 400
    code = "MALFORMED_REQUEST"


class Unauthorized(SchedulerError):
    status_code = 401
    code = "UNAUTHORIZED"


class Forbidden(SchedulerError):
    status_code = 403
    code = "FORBIDDEN"


class NotFound(SchedulerError):
    status_code = 404
    code = "NOT_FOUND"


class MethodNotAllowed(SchedulerError):
    status_code = 405
    code = "METHOD_NOT_ALLOWED"


class Conflict(SchedulerError):
    status_code = 409
    code = "CONFLICT"


class PayloadTooLarge(SchedulerError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"


# --- configuration -------------------------------------------------------
class ConfigError(SchedulerError):
    """A bad setting: the message names the variable. Stops start-up."""

    code = "CONFIG_ERROR"


# --- infrastructure (translated AWS errors) -------------------------------
class StorageError(SchedulerError):
    """An AWS call failed. ``retryable`` tells the caller whether to try again."""

    code = "STORAGE_ERROR"

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable

    def to_body(self) -> dict:
        # The detail (the backend's own error) goes to the log, not to the client.
        return {"code": self.code, "message": "storage is unavailable; try again" if self.retryable else "storage error"}


class ConditionFailed(SchedulerError):
    """A conditional write lost its race: another tick or worker got there first.

    A normal, counted outcome; never retried blindly.
    """

    status_code = 409
    code = "CONDITION_FAILED"


class WaitingHint(SchedulerError):
    """Runs wait for a slot: the finishing run hands its slot over instead of releasing it."""

    code = "WAITING_HINT"


class BudgetExhausted(SchedulerError):
    """The agent's daily budget is used up: run-now is refused until the day ends."""

    status_code = 429
    code = "BUDGET_EXHAUSTED"

    def __init__(self, message: str, *, limit: str | None = None, day: str | None = None,
                 retry_at: str | None = None) -> None:
        super().__init__(message)
        self.limit, self.day, self.retry_at = limit, day, retry_at

    def to_body(self) -> dict:
        body = super().to_body()
        body.update({k: v for k, v in (("limit", self.limit), ("day", self.day), ("retryAt", self.retry_at)) if v})
        return body
