"""Usage an agent reports, and an agent's daily budget. Pure: ``now`` is an argument.

Usage is ``{inputTokens?, outputTokens?, costUsd?}``. A budget counts runs, runtime
seconds and cost per calendar day in its own time zone; once one of its limits is
reached, that day's later scheduled fires are skipped (or, with ``onExhausted:
"PAUSE"``, the schedule is disabled) and run-now is refused. A run already started
always finishes (and is counted).
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chalicelib.errors import ValidationError

MAX_TOKENS = 10**12
MAX_COST_USD = 10**6
USAGE_FIELDS = ("inputTokens", "outputTokens", "costUsd")

MAX_RUNS_PER_DAY = 1_000_000
MAX_RUNTIME_SECONDS_PER_DAY = 1000 * 86400
MAX_COST_USD_PER_DAY = 1_000_000
BUDGET_FIELDS = ("maxRunsPerDay", "maxRuntimeSecondsPerDay", "maxCostUsdPerDay", "timezone", "onExhausted")
BUDGET_ITEM_KEEP_SECONDS = 3 * 86400  # a day's counters are kept (TTL) this long after the day ends


class OnExhausted(str, enum.Enum):
    SKIP = "SKIP"  # the day's later fires are SKIPPED (BUDGET_EXHAUSTED)
    PAUSE = "PAUSE"  # the schedule is disabled (disabledReason BUDGET_EXHAUSTED) until enabled again


# --- usage ---------------------------------------------------------------------------
def parse_usage(value: Any, field: str = "usage") -> dict[str, Any] | None:
    """A usage object checked and normalised (None stays None); raises ValidationError naming
    ``field`` (or ``field.member``)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError(field, f"{field} must be an object {{inputTokens?, outputTokens?, costUsd?}}")
    unknown = sorted(set(value) - set(USAGE_FIELDS))
    if unknown:
        raise ValidationError(f"{field}.{unknown[0]}", f"{field}.{unknown[0]} is not a usage field "
                                                       f"(inputTokens, outputTokens, costUsd)")
    out: dict[str, Any] = {}
    for name in ("inputTokens", "outputTokens"):
        v = value.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_TOKENS:
            raise ValidationError(f"{field}.{name}", f"{field}.{name} must be an integer 0..{MAX_TOKENS}")
        out[name] = v
    cost = value.get("costUsd")
    if cost is not None:
        if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not math.isfinite(cost) \
                or not 0 <= cost <= MAX_COST_USD:
            raise ValidationError(f"{field}.costUsd", f"{field}.costUsd must be a number 0..{MAX_COST_USD}")
        out["costUsd"] = float(cost)
    return out


def reported_usage(value: Any) -> dict[str, Any] | None:
    """What an agent reported at run time: a usable usage object, or None when it sent none or
    sent something that is not one (the run's outcome does not depend on it)."""
    try:
        return parse_usage(value) or None
    except ValidationError:
        return None


# --- budgets ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    max_runs_per_day: int | None = None
    max_runtime_seconds_per_day: int | None = None
    max_cost_usd_per_day: float | None = None
    timezone: str = "UTC"
    on_exhausted: OnExhausted = OnExhausted.SKIP

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"timezone": self.timezone, "onExhausted": self.on_exhausted.value}
        if self.max_runs_per_day is not None:
            out["maxRunsPerDay"] = self.max_runs_per_day
        if self.max_runtime_seconds_per_day is not None:
            out["maxRuntimeSecondsPerDay"] = self.max_runtime_seconds_per_day
        if self.max_cost_usd_per_day is not None:
            out["maxCostUsdPerDay"] = self.max_cost_usd_per_day
        return out

    @classmethod
    def from_json(cls, item: dict[str, Any] | None) -> "Budget | None":
        return None if not item else parse_budget(item)


def parse_budget(value: Any, field: str = "budget") -> Budget | None:
    """The ``budget`` field checked (None removes it); a ValidationError names the member."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError(field, f"{field} must be an object or null")
    unknown = sorted(set(value) - set(BUDGET_FIELDS))
    if unknown:
        raise ValidationError(f"{field}.{unknown[0]}", f"{field}.{unknown[0]} is not a budget field")

    def whole(name: str, top: int) -> int | None:
        v = value.get(name)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= top:
            raise ValidationError(f"{field}.{name}", f"{field}.{name} must be an integer 1..{top}")
        return v

    runs = whole("maxRunsPerDay", MAX_RUNS_PER_DAY)
    runtime = whole("maxRuntimeSecondsPerDay", MAX_RUNTIME_SECONDS_PER_DAY)
    cost = value.get("maxCostUsdPerDay")
    if cost is not None:
        if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not math.isfinite(cost) \
                or not 0 < cost <= MAX_COST_USD_PER_DAY:
            raise ValidationError(f"{field}.maxCostUsdPerDay",
                                  f"{field}.maxCostUsdPerDay must be a number > 0 and <= {MAX_COST_USD_PER_DAY}")
        cost = float(cost)
    if runs is None and runtime is None and cost is None:
        raise ValidationError(field, f"{field} needs at least one of maxRunsPerDay, maxRuntimeSecondsPerDay, "
                                     "maxCostUsdPerDay")
    tz = value.get("timezone", "UTC")
    if not isinstance(tz, str) or not 1 <= len(tz) <= 64:
        raise ValidationError(f"{field}.timezone", f"{field}.timezone must be an IANA time zone name")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{field}.timezone", f"{field}.timezone: unknown time zone {tz!r}") from None
    on = value.get("onExhausted", OnExhausted.SKIP.value)
    if on not in OnExhausted.__members__:
        raise ValidationError(f"{field}.onExhausted", f"{field}.onExhausted must be SKIP or PAUSE")
    return Budget(runs, runtime, cost, tz, OnExhausted(on))


def budget_day(t: float, tz: str) -> str:
    """The calendar day (``YYYY-MM-DD``) instant ``t`` falls on in zone ``tz``."""
    return datetime.fromtimestamp(t, tz=timezone.utc).astimezone(ZoneInfo(tz)).date().isoformat()


def day_end(day: str, tz: str) -> float:
    """The instant (epoch s) the local day ``day`` ends in ``tz`` (the next local midnight)."""
    zone = ZoneInfo(tz)
    d = datetime.fromisoformat(day).date() + timedelta(days=1)
    return datetime(d.year, d.month, d.day, tzinfo=zone).timestamp()


@dataclass(frozen=True)
class DayUsage:
    """One agent's counters for one local day."""

    day: str
    runs: int = 0
    runtime_seconds: float = 0.0
    cost_usd: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"day": self.day, "runs": self.runs, "runtimeSeconds": round(self.runtime_seconds, 3),
                "costUsd": round(self.cost_usd, 6)}


def exhausted(budget: Budget, usage: DayUsage | None) -> str | None:
    """Which limit of ``budget`` the day's ``usage`` has reached (its field name), or None."""
    if usage is None:
        return None
    if budget.max_runs_per_day is not None and usage.runs >= budget.max_runs_per_day:
        return "maxRunsPerDay"
    if budget.max_runtime_seconds_per_day is not None and usage.runtime_seconds >= budget.max_runtime_seconds_per_day:
        return "maxRuntimeSecondsPerDay"
    if budget.max_cost_usd_per_day is not None and usage.cost_usd >= budget.max_cost_usd_per_day - 1e-9:
        return "maxCostUsdPerDay"
    return None


@dataclass(frozen=True)
class BudgetCharge:
    """What one end of an attempt adds to the agent's day (the finish transaction writes it)."""

    day: str
    runs: int
    runtime_seconds: float
    cost_usd: float
    expires_at: float

    @property
    def empty(self) -> bool:
        return not self.runs and not self.runtime_seconds and not self.cost_usd


def charge_for(budget: Budget | None, *, now: float, final: bool, duration_ms: int | None,
               usage: dict[str, Any] | None) -> BudgetCharge | None:
    """What an attempt ending at ``now`` costs the agent's budget day: one run when the run
    ends, the attempt's runtime, the reported cost. None without a budget or when nothing
    is to be counted."""
    if budget is None:
        return None
    day = budget_day(now, budget.timezone)
    c = BudgetCharge(day, 1 if final else 0, max(0.0, (duration_ms or 0) / 1000.0),
                     float((usage or {}).get("costUsd") or 0.0),
                     day_end(day, budget.timezone) + BUDGET_ITEM_KEEP_SECONDS)
    return None if c.empty else c


def fire_blocked(budget: Budget | None, usage: DayUsage | None, fire_at: float) -> bool:
    """Whether a scheduled fire at ``fire_at`` is skipped for the budget: its local day is the
    day ``usage`` counts and a limit is reached (a fire on the next day starts afresh)."""
    if budget is None or usage is None:
        return False
    return budget_day(fire_at, budget.timezone) == usage.day and exhausted(budget, usage) is not None
