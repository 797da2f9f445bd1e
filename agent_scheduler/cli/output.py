"""What the CLI prints: rich tables for people, JSON for scripts (``--json``)."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

STATUS_STYLES = {
    "SUCCEEDED": "green", "RUNNING": "cyan", "QUEUED": "blue", "RETRYING": "yellow", "DEAD": "bold red",
    "CANCELLED": "magenta", "SKIPPED": "dim", "created": "green", "updated": "yellow", "unchanged": "dim",
    "deleted": "red", "failed": "bold red",
}


def _console(file, is_err: bool = False) -> Console:
    interactive = getattr(file, "isatty", lambda: False)()
    # Not a terminal (a pipe, a test): wide enough that ids and times are never folded.
    return Console(file=file, stderr=is_err, width=None if interactive else 200, soft_wrap=not interactive,
                   highlight=False)


class Output:
    """One per command: ``json`` mode prints exactly one JSON document on stdout."""

    def __init__(self, json_mode: bool, out=None, err=None) -> None:
        self.json_mode = json_mode
        self.out = _console(out or sys.stdout)
        self.err = _console(err or sys.stderr, is_err=True)

    def json(self, data: Any) -> None:
        self.out.file.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
        self.out.file.flush()

    def emit(self, data: Any, human: Callable[[], None]) -> None:
        if self.json_mode:
            self.json(data)
        else:
            human()

    def print(self, *objects: Any, **kw) -> None:
        self.out.print(*objects, **kw)

    def note(self, message: str) -> None:
        """A remark for people (stderr), never mixed into --json output."""
        self.err.print(message, markup=False, style="dim")

    def warn(self, message: str) -> None:
        self.err.print(message, markup=False, style="yellow")

    def error(self, message: str, data: dict | None = None) -> None:
        if self.json_mode and data is not None:
            self.json({"error": data})
        self.err.print(Text("error: ", style="bold red") + Text(message))


def status_text(value: Any) -> Text:
    text = "-" if value is None else str(value)
    return Text(text, style=STATUS_STYLES.get(text, ""))


def cell(value: Any) -> str | Text:
    if value is None or value == "":
        return "-"
    if isinstance(value, Text):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> Table:
    t = Table(title=title, show_edge=False, header_style="bold", pad_edge=False, box=None)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*(cell(v) for v in r))
    return t


def key_values(pairs: Iterable[tuple[str, Any]]) -> Table:
    t = Table(show_header=False, show_edge=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for k, v in pairs:
        t.add_row(k, cell(v))
    return t


def short_time(iso: str | None) -> str | None:
    """``2026-03-02T12:00:00+00:00`` as ``2026-03-02 12:00:00+00:00`` (still exact)."""
    return iso.replace("T", " ", 1) if isinstance(iso, str) else iso


def error_text(error: Any) -> str | None:
    if not error:
        return None
    if isinstance(error, dict):
        cat, msg = error.get("category"), error.get("message")
        return f"{cat}: {msg}" if cat and msg else str(msg or cat or error)
    return str(error)


# --- flow control and cost, in words ----------------------------------------------------------
def _number(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def throttle_text(throttle: Any) -> str | None:
    """``{"limit": 10, "periodSeconds": 60}`` as ``10 per 60 s``."""
    if not isinstance(throttle, dict):
        return None
    return f"{throttle.get('limit')} per {throttle.get('periodSeconds')} s"


def usage_text(usage: Any) -> str | None:
    """A session's ``usage`` as ``1200 in / 300 out tokens, $0.0123``."""
    if not isinstance(usage, dict) or not usage:
        return None
    parts = []
    tokens_in, tokens_out = usage.get("inputTokens"), usage.get("outputTokens")
    if tokens_in is not None or tokens_out is not None:
        parts.append(f"{tokens_in if tokens_in is not None else '?'} in / "
                     f"{tokens_out if tokens_out is not None else '?'} out tokens")
    if usage.get("costUsd") is not None:
        parts.append(f"${usage['costUsd']:g}" if isinstance(usage["costUsd"], (int, float)) else f"${usage['costUsd']}")
    return ", ".join(parts) or None


def progress_text(progress: Any) -> str | None:
    if not isinstance(progress, dict):
        return None if progress is None else str(progress)
    percent = progress.get("percent", progress.get("progress"))
    text = f"{_number(percent)}%" if percent is not None else ""
    if progress.get("message"):
        text = f"{text} {progress['message']}".strip()
    return text or None


def budget_text(budget: Any) -> str | None:
    """``{"maxRunsPerDay": 10, "timezone": "UTC", "onExhausted": "SKIP"}`` as
    ``10 runs/day (UTC; when used up: SKIP)``."""
    if not isinstance(budget, dict):
        return None
    limits = []
    if budget.get("maxRunsPerDay") is not None:
        limits.append(f"{budget['maxRunsPerDay']} runs")
    if budget.get("maxRuntimeSecondsPerDay") is not None:
        limits.append(f"{budget['maxRuntimeSecondsPerDay']} s runtime")
    if budget.get("maxCostUsdPerDay") is not None:
        limits.append(f"${_number(budget['maxCostUsdPerDay'])}")
    return (f"{', '.join(limits) or 'no limit'} per day ({budget.get('timezone') or 'UTC'}; "
            f"when used up: {budget.get('onExhausted') or 'SKIP'})")


def budget_usage_text(usage: Any, budget: Any) -> str | None:
    """Today's ``budgetUsage`` beside the budget's limits: ``runs 3/10, runtime 40 s, $0.12 (2026-03-02)``."""
    if not isinstance(usage, dict):
        return None
    budget = budget if isinstance(budget, dict) else {}

    def of(used: Any, limit_key: str, unit: str = "") -> str:
        limit = budget.get(limit_key)
        return unit + _number(used if used is not None else 0) + (f"/{unit}{_number(limit)}" if limit is not None else "")

    parts = [f"runs {of(usage.get('runs'), 'maxRunsPerDay')}",
             f"runtime {of(usage.get('runtimeSeconds'), 'maxRuntimeSecondsPerDay')} s",
             f"cost {of(usage.get('costUsd'), 'maxCostUsdPerDay', '$')}"]
    return ", ".join(parts) + (f" ({usage['day']})" if usage.get("day") else "")


def pool_row(pool: dict) -> list:
    """NAME, RUNNING/LIMIT, THROTTLE, BLOCKED UNTIL."""
    limit = pool.get("maxConcurrency")
    running = pool.get("running", 0)
    blocked = pool.get("blockedUntil")
    return [pool.get("name"), f"{running}/{limit if limit is not None else '-'}", throttle_text(pool.get("throttle")),
            Text(str(short_time(blocked)), style="yellow") if blocked else None]


POOL_COLUMNS = ["NAME", "RUNNING/LIMIT", "THROTTLE", "BLOCKED UNTIL"]
