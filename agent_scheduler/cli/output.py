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
