"""``http``: one HTTP request through the SSRF guard; the scheduler, not urllib3, retries.

Where it may go: :mod:`chalicelib.agents.net` checks every address the host name
resolves to and connects to a checked address; a refused target is PERMANENT and
its message names the address and the rule. Redirects are never followed (a
redirect could lead to an address that was not checked): a 3xx is PERMANENT and
names where it pointed.

Timeouts are always set: connect 5 s, read ``min(ctx.remaining_seconds(), 60)``.
2xx succeeds (a JSON answer's top-level ``usage`` object is the run's usage); 429 is
RATE_LIMITED and 408 and 5xx are TRANSIENT (both with ``Retry-After``, seconds or an
HTTP date); other 3xx/4xx are PERMANENT; connection errors are TRANSIENT; a read
timeout cut short by the run's deadline is TIMEOUT. At most 64 KB of the answer is read.

Secrets: header values marked secret (``Authorization``, ``Cookie``, names like
``X-Api-Key`` and the names in ``secretHeaders``) never appear in a message.
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3 import exceptions as u3

from chalicelib.agents import validation as v
from chalicelib.agents.answers import retry_after_seconds
from chalicelib.agents.base import AgentFailure, KindDeps, Reported, RunContext
from chalicelib.agents.jsonsafe import truncate_text
from chalicelib.agents.net import BadUrl, GuardedHttp, TargetRefused
from chalicelib.clock import Clock
from chalicelib.domain.budget import reported_usage
from chalicelib.domain.model import AgentKindName, ErrorCategory
from chalicelib.errors import ValidationError

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
CONNECT_TIMEOUT = 5.0
MAX_READ_TIMEOUT = 60.0
MAX_BODY_BYTES = 64 * 1024  # read at most this much of a response
MAX_TEXT_CHARS = 8 * 1024  # a non-JSON body is shown up to this many characters
MAX_URL_LENGTH = 2048
MAX_HEADERS = 50
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 header name
_BAD_VALUE = re.compile(r"[\r\n\x00]")


class HttpKind:
    name = AgentKindName.HTTP.value

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or Clock()  # only to read HTTP-date Retry-After

    def validate_config(self, config: dict) -> dict:
        config = v.as_dict(
            config, allowed=("url", "method", "headers", "body", "secretHeaders"), required=("url",)
        )
        out: dict = {"url": _url(config["url"]), "method": "GET", "headers": {}}
        if config.get("method") is not None:
            method = v.string(config["method"], "method", max_length=16).strip().upper()
            if method not in METHODS:
                raise ValidationError(
                    "config.method",
                    f"unsupported method {config['method']!r}; expected one of "
                    + ", ".join(METHODS),
                )
            out["method"] = method
        if config.get("headers") is not None:
            out["headers"] = _headers(config["headers"])
        if "body" in config and config["body"] is not None:
            if out["method"] == "HEAD":
                raise ValidationError("config.body", "a HEAD request cannot have a body")
            out["body"] = v.json_value(config["body"], "body")
        if config.get("secretHeaders") is not None:
            out["secretHeaders"] = _secret_headers(config["secretHeaders"])
        return out

    def run(self, config: dict, ctx: RunContext, deps: KindDeps) -> Any:
        config = self.validate_config(config)
        method, url = config["method"], config["url"]
        headers = dict(config["headers"])
        body = None
        if "body" in config:
            body = v.dumps(config["body"]).encode("utf-8")
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "application/json"

        remaining = ctx.remaining_seconds()
        if remaining <= 0 or ctx.cancelled():
            raise _stopped(ctx, "before the request was sent")
        read_timeout = min(remaining, MAX_READ_TIMEOUT)
        deadline_bound = remaining < MAX_READ_TIMEOUT
        timeout = urllib3.Timeout(connect=min(CONNECT_TIMEOUT, remaining), read=read_timeout)
        target = f"{method} {_redact(url)}"

        http = deps.http if deps.http is not None else GuardedHttp(
            deps.agent_policy().net, resolver=deps.resolver
        )
        try:
            response = http.request(
                method, url, headers=headers, body=body, timeout=timeout, max_body=MAX_BODY_BYTES
            )
        except TargetRefused as exc:
            raise AgentFailure(ErrorCategory.PERMANENT, f"{target}: {exc.message}") from None
        except BadUrl as exc:
            raise AgentFailure(ErrorCategory.PERMANENT, f"{target}: {exc.message}") from None
        except u3.ReadTimeoutError:
            if deadline_bound:
                raise AgentFailure(
                    ErrorCategory.TIMEOUT, f"{target}: deadline reached waiting for the response"
                ) from None
            raise AgentFailure(
                ErrorCategory.TRANSIENT, f"{target}: no response within {read_timeout:g}s"
            ) from None
        except u3.LocationParseError as exc:
            raise AgentFailure(ErrorCategory.PERMANENT, f"{target}: bad URL ({exc})") from None
        except (u3.HTTPError, OSError) as exc:
            # connection refused/reset, DNS, TLS, connect timeout, protocol errors
            raise AgentFailure(
                ErrorCategory.TRANSIENT, f"{target}: {type(exc).__name__}: {_reason(exc)}"
            ) from None

        raw, truncated = response.body, response.truncated
        status = response.status
        content_type = response.headers.get("Content-Type", "")
        if 200 <= status < 300:
            out: dict = {"status": status, "body": _body(raw, content_type, truncated)}
            if truncated:
                out["bodyTruncated"] = True
            usage = reported_usage(out["body"].get("usage")) if isinstance(out["body"], dict) else None
            return Reported(out, usage) if usage is not None else out

        snippet = truncate_text(raw.decode("utf-8", errors="replace").strip(), 300)
        message = f"{target}: HTTP {status}" + (f": {snippet}" if snippet else "")
        if status in (408, 429) or status >= 500:
            retry_after = parse_retry_after(
                response.headers.get("Retry-After"), self._clock.now()
            )
            category = ErrorCategory.RATE_LIMITED if status == 429 else ErrorCategory.TRANSIENT
            raise AgentFailure(category, message, retry_after=retry_after)
        if 300 <= status < 400 and response.headers.get("Location"):
            message += f" (redirect to {_redact(response.headers['Location'])} not followed)"
        raise AgentFailure(ErrorCategory.PERMANENT, message)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date): the one
    reading the agent contract uses, without a deadline."""
    return retry_after_seconds(value, now)


def _url(value: Any) -> str:
    url = v.string(value, "url", max_length=MAX_URL_LENGTH, allow_empty=False).strip()
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise ValidationError("config.url", f"is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValidationError("config.url", "must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValidationError("config.url", "must include a host")
    if any(ch.isspace() for ch in url):
        raise ValidationError("config.url", "must not contain whitespace")
    return url


def _headers(value: Any) -> dict:
    if not isinstance(value, dict):
        raise ValidationError("config.headers", "must be an object of string to string")
    if len(value) > MAX_HEADERS:
        raise ValidationError("config.headers", f"at most {MAX_HEADERS} headers")
    out = {}
    for name, val in value.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ValidationError("config.headers", f"invalid header name {name!r}")
        if not isinstance(val, str):
            raise ValidationError(
                f"config.headers.{name}", f"config.headers.{name} must be a string"
            )
        if _BAD_VALUE.search(val) or len(val) > 8192:
            raise ValidationError(
                f"config.headers.{name}", f"config.headers.{name} has an invalid value"
            )
        if name.lower() in ("host", "content-length", "transfer-encoding", "connection"):
            raise ValidationError(
                f"config.headers.{name}", f"config.headers.{name} cannot be set"
            )
        out[name] = val
    return out


def _secret_headers(value: Any) -> list:
    """Names of headers whose values are secret: kept out of logs, messages and events
    (``Authorization``, ``Cookie`` and names holding ``token``, ``secret``, ``api-key``,
    ... are secret without being listed)."""
    if not isinstance(value, list) or len(value) > MAX_HEADERS:
        raise ValidationError(
            "config.secretHeaders", f"must be a list of at most {MAX_HEADERS} header names"
        )
    for name in value:
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ValidationError("config.secretHeaders", f"invalid header name {name!r}")
    return list(value)


def _body(raw: bytes, content_type: str, truncated: bool) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    looks_json = "json" in content_type.lower() or not content_type
    if looks_json and not truncated:
        try:
            return json.loads(text)
        except ValueError:
            pass
    return truncate_text(text, MAX_TEXT_CHARS)


def _stopped(ctx: RunContext, when: str) -> AgentFailure:
    if ctx.remaining_seconds() <= 0:
        return AgentFailure(ErrorCategory.TIMEOUT, f"deadline reached {when}")
    return AgentFailure(ErrorCategory.CANCELLED, "cancelled")


def _redact(url: str) -> str:
    """The URL without user-info or query string (they may hold secrets)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<url>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return truncate_text(str(reason), 300)
