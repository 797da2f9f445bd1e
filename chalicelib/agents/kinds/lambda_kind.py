"""``lambda``: invokes an AWS Lambda function synchronously (RequestResponse).

The boto3 client is handed in (``deps.lambda_client``), never created here at
import time; :func:`build_lambda_client` makes one with the settings this kind
needs (long read timeout, no SDK retries: the scheduler retries).
"""
from __future__ import annotations

import json
import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

from chalicelib.agents import validation as v
from chalicelib.agents.base import AgentFailure, KindDeps, RunContext
from chalicelib.agents.jsonsafe import truncate_text
from chalicelib.domain.model import AgentKindName, ErrorCategory
from chalicelib.errors import ValidationError

# Name, partial ARN or full ARN, optionally with :version/:alias (AWS allows 1..170).
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9\-_:.$]{1,170}$")
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


def build_lambda_client(session: Any = None, *, read_timeout: float = 900.0) -> Any:
    """A boto3 Lambda client suited to this kind (call it at run time, not import)."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=5,
        read_timeout=read_timeout,
        retries={"mode": "standard", "max_attempts": 1},
    )
    return (session or boto3.session.Session()).client("lambda", config=config)


class LambdaKind:
    name = AgentKindName.LAMBDA.value

    def validate_config(self, config: dict) -> dict:
        config = v.as_dict(config, allowed=("functionName", "payload"), required=("functionName",))
        name = v.string(config["functionName"], "functionName", max_length=170).strip()
        if not _FUNCTION_NAME.match(name):
            raise ValidationError(
                "config.functionName", "must be a Lambda function name or ARN"
            )
        out: dict = {"functionName": name}
        if config.get("payload") is not None:
            out["payload"] = v.json_value(config["payload"], "payload")
        return out

    def run(self, config: dict, ctx: RunContext, deps: KindDeps) -> Any:
        config = self.validate_config(config)
        client = deps.lambda_client
        if client is None:
            raise AgentFailure(ErrorCategory.INTERNAL, "no Lambda client configured")
        name = config["functionName"]
        if "payload" in config:
            payload = config["payload"]
        else:  # nothing configured: tell the function which run this is
            payload = {
                "agentId": ctx.agent_id,
                "sessionId": ctx.session_id,
                "attempt": ctx.attempt,
                "input": ctx.input,
            }
        try:
            response = client.invoke(
                FunctionName=name,
                InvocationType="RequestResponse",
                Payload=v.dumps(payload).encode("utf-8"),
            )
            raw = _read(response.get("Payload"))
        except ClientError as exc:
            raise _client_failure(name, exc) from None
        except ReadTimeoutError:
            category = ErrorCategory.TIMEOUT if ctx.remaining_seconds() <= 0 else (
                ErrorCategory.TRANSIENT
            )
            raise AgentFailure(category, f"lambda {name}: no response in time") from None
        except BotoCoreError as exc:  # endpoint unreachable, connect timeout, ...
            raise AgentFailure(
                ErrorCategory.TRANSIENT, f"lambda {name}: {type(exc).__name__}: {exc}"
            ) from None

        result = _parse(raw)
        if response.get("FunctionError"):
            raise AgentFailure(ErrorCategory.AGENT_ERROR, _error_message(name, response, result))
        return result


def _read(body: Any) -> bytes:
    if body is None:
        return b""
    if hasattr(body, "read"):
        body = body.read()
    if isinstance(body, str):
        return body.encode("utf-8")
    return bytes(body)


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _error_message(name: str, response: dict, result: Any) -> str:
    if isinstance(result, dict) and result.get("errorMessage") is not None:
        message = str(result["errorMessage"])
        if result.get("errorType"):
            message = f"{result['errorType']}: {message}"
    elif isinstance(result, str) and result:
        message = result
    else:
        message = f"function error ({response.get('FunctionError')})"
    return truncate_text(message, 2000)


def _client_failure(name: str, exc: ClientError) -> AgentFailure:
    error = exc.response.get("Error", {}) or {}
    meta = exc.response.get("ResponseMetadata", {}) or {}
    code = str(error.get("Code", ""))
    status = meta.get("HTTPStatusCode") or 0
    message = f"lambda {name}: {code or 'ClientError'}: {error.get('Message', exc)}"
    message = truncate_text(message, 2000)
    if code in _TRANSIENT_CODES or status == 429 or status >= 500:
        headers = meta.get("HTTPHeaders", {}) or {}
        retry_after = _seconds(headers.get("retry-after") or exc.response.get("retryAfterSeconds"))
        return AgentFailure(ErrorCategory.TRANSIENT, message, retry_after=retry_after)
    if code in _PERMANENT_CODES or 400 <= status < 500:
        return AgentFailure(ErrorCategory.PERMANENT, message)
    return AgentFailure(ErrorCategory.TRANSIENT, message)


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 and seconds == seconds and seconds != float("inf") else None
