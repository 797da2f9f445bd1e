"""Keep secrets out of logs, error messages and events. Pure functions and one log filter.

What counts as secret:
- a value under a key whose name says so (``Authorization``, ``Proxy-Authorization``,
  ``Cookie``, ``Set-Cookie``, and any name holding ``token``, ``secret``, ``password``,
  ``passwd``, ``api-key``/``api_key``/``apikey``, ``credential`` or ``private-key``),
  case-insensitive, at any depth;
- the value of every header an agent's config names in its ``secretHeaders`` list;
- in free text: what follows ``Authorization:``, a token-like word after ``Bearer``,
  and ``whsec_`` signing secrets.

:func:`secret_values` collects an agent config's secret values; :func:`scrub`
replaces them (and the patterns above) in a text; :func:`redact` copies a config
or a header map with secret values replaced. :class:`RedactingFilter` applies the
same to every log record that passes through a handler it is added to.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Iterable

REDACTED = "[redacted]"
SECRET_HEADERS = "secretHeaders"  # the config key that lists more secret header names (not itself secret)
MIN_SECRET_CHARS = 4  # shorter values are not searched for in free text (too many false hits)

_SECRET_KEY = re.compile(
    r"authorization|cookie|token(?!s)|secret|password|passwd|api[-_]?key|credential|private[-_]?key",
    re.IGNORECASE,
)
_TEXT_PATTERNS = (
    # "Authorization: Basic dXNlcjpwYXNz", "authorization=abc"
    (
        re.compile(r"\b((?:proxy-)?authorization\\?[\"']?\s*[:=]\s*\\?[\"']?)(?:(?:bearer|basic|digest|token)\s+)?[^\s\"',;]+",
                   re.IGNORECASE),
        rf"\1{REDACTED}",
    ),
    # "Bearer eyJ...": a token-like word (16+ characters) after "Bearer"
    (re.compile(r"\b(bearer\s+)[A-Za-z0-9._~+/=-]{16,}", re.IGNORECASE), rf"\1{REDACTED}"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"), REDACTED),
)


def is_secret_key(name: Any, extra: Iterable[str] = ()) -> bool:
    """True if a value stored under ``name`` is secret (``extra``: more names, any case)."""
    if not isinstance(name, str) or name == SECRET_HEADERS:
        return False
    lowered = name.lower()
    return bool(_SECRET_KEY.search(name)) or any(lowered == e.lower() for e in extra)


def secret_names(config: Any) -> tuple[str, ...]:
    """The header names a config marks secret in its ``secretHeaders`` list."""
    names = config.get(SECRET_HEADERS) if isinstance(config, dict) else None
    if not isinstance(names, (list, tuple)):
        return ()
    return tuple(n for n in names if isinstance(n, str))


def redact(value: Any, extra: Iterable[str] = ()) -> Any:
    """A copy of ``value`` with every secret value replaced by ``[redacted]``.

    A dict's own ``secretHeaders`` list adds names for everything below it.
    """
    extra = tuple(extra)
    if isinstance(value, dict):
        names = extra + secret_names(value)
        return {
            k: REDACTED if is_secret_key(k, names) and v is not None else redact(v, names)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(v, extra) for v in value]
    return value


def secret_values(config: Any, extra: Iterable[str] = ()) -> frozenset[str]:
    """Every secret string in ``config`` (see the module's docstring), at any depth."""
    found: set[str] = set()

    def walk(value: Any, names: tuple[str, ...], secret: bool) -> None:
        if isinstance(value, dict):
            names = names + secret_names(value)
            for k, v in value.items():
                walk(v, names, secret or is_secret_key(k, names))
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v, names, secret)
        elif secret and isinstance(value, str):
            found.add(value)
            # "Bearer abc": the credential alone may show up elsewhere too
            parts = value.split(None, 1)
            if len(parts) == 2:
                found.add(parts[1])

    walk(config, tuple(extra), False)
    return frozenset(s for s in found if len(s) >= MIN_SECRET_CHARS)


def scrub(text: str, secrets: Iterable[str] = (), *, patterns: bool = True) -> str:
    """``text`` with the given secret values (and, unless ``patterns`` is False, the
    known credential patterns) replaced by ``[redacted]``."""
    for secret in sorted(set(secrets), key=len, reverse=True):  # longest first
        if len(secret) >= MIN_SECRET_CHARS:
            text = text.replace(secret, REDACTED)
    if patterns:
        for pattern, replacement in _TEXT_PATTERNS:
            text = pattern.sub(replacement, text)
    return text


def scrub_value(value: Any, secrets: Iterable[str] = (), *, patterns: bool = True) -> Any:
    """``value`` with :func:`scrub` applied to every string in it (keys included)."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return scrub(value, secrets, patterns=patterns)
    if isinstance(value, dict):
        return {
            scrub_value(k, secrets, patterns=patterns): scrub_value(v, secrets, patterns=patterns)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [scrub_value(v, secrets, patterns=patterns) for v in value]
    return value


_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Scrubs each record: its message, its traceback text, and ``extra`` fields
    (secret-named ones are replaced, dicts redacted, strings scrubbed).

    Add it to the handlers (``handler.addFilter(RedactingFilter())``): a filter on a
    logger does not see records of its child loggers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler to report
            return True
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        for key, value in list(vars(record).items()):
            if key in _RECORD_FIELDS:
                continue
            if is_secret_key(key) and value is not None:
                setattr(record, key, REDACTED)
            elif isinstance(value, (dict, list, tuple)):
                setattr(record, key, scrub_value(redact(value)))
            elif isinstance(value, str):
                setattr(record, key, scrub(value))
        return True
