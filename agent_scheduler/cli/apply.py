"""Agents as code: ``agents apply -f FILE``, declarative, in two steps.

1. :func:`plan` compares the file with the tenant's agents (matched by name) and
   decides, per agent, ``created``/``updated``/``unchanged``/``deleted`` (or
   ``failed``: a name two agents share) with each changed field's old and new
   value. A field the file leaves out counts as its default; an agent without
   ``schedule`` has none. Pure: no HTTP.
2. :func:`execute` carries the plan out through the client, one agent at a time;
   a failing agent does not stop the others.

The apply set: agents this command creates carry the set's name in the label
:data:`APPLYSET_LABEL`, and ``--prune`` deletes only agents of that set that the
file no longer names. Agents created before labels existed carry it at the end of
their ``description`` as ``[applyset: NAME]`` (see :func:`split_description`): it is
still read, and the next apply that touches such an agent moves it into the label.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from agent_scheduler.client import ApiError, ClientError, SchedulerClient

APPLYSET_RE = re.compile(r"^[A-Za-z0-9._-]{1,63}$")
APPLYSET_LABEL = "agent-scheduler/applyset"
_MARKER_RE = re.compile(r"(?:\n\n)?\[applyset: ([A-Za-z0-9._-]{1,63})\]\Z")

DEFAULT_TIMEOUT_SECONDS = 300
DEFAULT_MAX_RETRIES = 3  # SCHEDULER_MAX_RETRIES' documented default, when the server publishes none

# The fields of an agent that a file describes, with the value they return to when left out
# ("maxRetries" is filled in from the server's published default). Limits that only some
# servers know are compared when the file or the server's record has them; left out, they are null.
AGENT_DEFAULTS: dict[str, Any] = {"config": {}, "description": None, "timeoutSeconds": DEFAULT_TIMEOUT_SECONDS,
                                   "labels": {}}
OPTIONAL_AGENT_FIELDS = ("maxConcurrency", "throttle", "budget", "heartbeatSeconds", "pauseAfterFailures", "pools")
# The server fills these into a kind's config when absent; a file that leaves them out agrees.
KIND_CONFIG_DEFAULTS: dict[str, dict] = {
    "fail": {"category": "AGENT_ERROR"},
    "http": {"method": "GET", "headers": {}},
    "webhook": {"headers": {}},
    "sleep": {"progressEvery": 1},
}
# The server fills these into a budget the file writes without them; a file that leaves them out agrees.
BUDGET_DEFAULTS: dict[str, Any] = {"timezone": "UTC", "onExhausted": "SKIP"}
SCHEDULE_DEFAULTS: dict[str, Any] = {
    "timezone": "UTC", "priority": "NORMAL", "enabled": True, "catchup": "LATEST", "catchupWindowSeconds": 3600,
    "overlapPolicy": "SKIP", "startAt": None, "endAt": None, "jitterSeconds": 0,
}
OPTIONAL_SCHEDULE_FIELDS = ("excludeDates", "pausedUntil")
TIME_FIELDS = frozenset({"startAt", "endAt", "pausedUntil"})
EXPRESSION_KEYS = ("expression", "cronExpression")


class FileError(Exception):
    """The file cannot be applied as written (a usage error); the message says where."""


# --- the apply set's mark in the description --------------------------------------------
def split_description(description: str | None) -> tuple[str | None, str | None]:
    """``"nightly report\\n\\n[applyset: prod]"`` -> ``("nightly report", "prod")``."""
    if not description:
        return description, None
    m = _MARKER_RE.search(description)
    if not m:
        return description, None
    rest = description[: m.start()]
    return (rest or None), m.group(1)


def join_description(description: str | None, applyset: str | None) -> str | None:
    if not applyset:
        return description
    return f"{description}\n\n[applyset: {applyset}]" if description else f"[applyset: {applyset}]"


def applyset_of(agent: dict) -> str | None:
    """The apply set an agent belongs to: its label, else the older mark in its description."""
    label = (agent.get("labels") or {}).get(APPLYSET_LABEL)
    return label or split_description(agent.get("description"))[1]


def _with_set(labels: dict | None, applyset: str | None) -> dict:
    return {**(labels or {}), **({APPLYSET_LABEL: applyset} if applyset else {})}


def default_applyset(path: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "-", Path(path).name)[:63]
    return name or "default"


# --- the file ------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """YAML as written: timestamps and dates stay strings (the API parses them)."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load(text: str, source: str) -> list[dict]:
    """The file's agents (YAML or JSON ``{agents: [...]}``), checked for shape."""
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise FileError(f"{source}: not valid YAML or JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("agents"), list):
        raise FileError(f"{source}: expected an object with a list 'agents'")
    unknown = sorted(set(data) - {"agents"})
    if unknown:
        raise FileError(f"{source}: unknown top-level field {unknown[0]!r} (only 'agents')")
    seen: dict[str, int] = {}
    agents = []
    for i, spec in enumerate(data["agents"]):
        where = f"{source}: agents[{i}]"
        if not isinstance(spec, dict):
            raise FileError(f"{where} must be an object")
        name = spec.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 200:
            raise FileError(f"{where}.name must be a string of 1..200 characters")
        if not isinstance(spec.get("kind"), str):
            raise FileError(f"{where}.kind must be a string (echo, sleep, fail, http, lambda, ...)")
        if name in seen:
            raise FileError(f"{where}.name {name!r} is already agents[{seen[name]}]'s")
        seen[name] = i
        if spec.get("description") is not None and not isinstance(spec["description"], str):
            raise FileError(f"{where}.description must be a string")
        if spec.get("config") is not None and not isinstance(spec["config"], dict):
            raise FileError(f"{where}.config must be an object")
        labels = spec.get("labels")
        if labels is not None and (not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values())):
            raise FileError(f"{where}.labels must be an object of strings")
        schedule = spec.get("schedule")
        if schedule is not None:
            if not isinstance(schedule, dict):
                raise FileError(f"{where}.schedule must be an object")
            given = [k for k in EXPRESSION_KEYS if schedule.get(k) is not None]
            if len(given) != 1:
                raise FileError(f"{where}.schedule needs exactly one of expression or cronExpression")
        agents.append(spec)
    return agents


# --- the plan --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    field: str
    old: Any
    new: Any

    def to_dict(self) -> dict:
        return {"field": self.field, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class Step:
    name: str
    action: str  # created, updated, unchanged, deleted, failed
    agent_id: str | None = None
    changes: tuple[Change, ...] = ()
    create: dict | None = None  # POST /api/agents body
    patch: dict | None = None  # PATCH body (changed fields only)
    schedule: dict | None = None  # schedule body to save
    delete_schedule: bool = False
    error: str | None = None


def _empty(v: Any) -> bool:
    return v is None or v == [] or v == {}


def _instant(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return datetime.fromisoformat(v.strip().replace("Z", "+00:00")).timestamp()
        except ValueError:
            return v
    return v


def _same(field_name: str, old: Any, new: Any) -> bool:
    if _empty(old) and _empty(new):
        return True
    if field_name.rsplit(".", 1)[-1] in TIME_FIELDS:
        return _instant(old) == _instant(new)
    return old == new


def normalized_config(kind: str, config: dict | None) -> dict:
    given = {k: v for k, v in (config or {}).items() if v is not None}
    return {**KIND_CONFIG_DEFAULTS.get(kind, {}), **given}


def normalized_budget(budget: Any) -> Any:
    """A budget with the server's defaults filled in (None and {} stay: no budget)."""
    if not isinstance(budget, dict) or not budget:
        return budget
    return {**BUDGET_DEFAULTS, **{k: v for k, v in budget.items() if v is not None}}


def desired_fields(spec: dict, max_retries_default: int) -> dict:
    """Every field the file decides, with defaults for what it leaves out."""
    out = {"kind": spec["kind"], **AGENT_DEFAULTS, "maxRetries": max_retries_default}
    for k, v in spec.items():
        if k not in ("name", "schedule"):
            out[k] = v
    return out


def _expression(schedule: dict) -> str | None:
    for k in EXPRESSION_KEYS:
        if isinstance(schedule.get(k), str):
            return schedule[k].strip()
    return None


def schedule_changes(current: dict | None, desired: dict | None) -> list[Change]:
    if desired is None:
        return [] if current is None else [Change("schedule", _schedule_summary(current), None)]
    if current is None:
        return [Change("schedule", None, desired)]
    changes = []
    old_expr, new_expr = _expression(current), _expression(desired)
    if old_expr != new_expr:
        changes.append(Change("schedule.expression", old_expr, new_expr))
    fields = dict(SCHEDULE_DEFAULTS)
    fields.update({k: None for k in OPTIONAL_SCHEDULE_FIELDS if k in current})
    fields.update({k: None for k in desired if k not in EXPRESSION_KEYS})
    for k, default in fields.items():
        new = desired.get(k, default)
        old = current.get(k, default if k in SCHEDULE_DEFAULTS else None)
        if not _same(k, old, new):
            changes.append(Change(f"schedule.{k}", old, new))
    return changes


def _schedule_summary(schedule: dict) -> dict:
    out = {"expression": _expression(schedule)}
    for k in ("timezone", "priority", "enabled"):
        if k in schedule:
            out[k] = schedule[k]
    return out


def plan(specs: list[dict], current: list[dict], *, applyset: str, prune: bool,
         max_retries_default: int = DEFAULT_MAX_RETRIES) -> list[Step]:
    by_name: dict[str, list[dict]] = {}
    for a in current:
        by_name.setdefault(str(a.get("name")), []).append(a)
    steps = []
    for spec in specs:
        name = spec["name"]
        found = by_name.get(name, [])
        desired = desired_fields(spec, max_retries_default)
        if len(found) > 1:
            ids = ", ".join(a["id"] for a in found)
            steps.append(Step(name, "failed", error=f"name {name!r} is used by {len(found)} agents ({ids}): "
                                                    "rename or delete all but one, then apply again"))
            continue
        if not found:
            steps.append(_create_step(name, desired, spec.get("schedule"), applyset))
        else:
            steps.append(_update_step(found[0], desired, spec.get("schedule")))
    if prune:
        named = {s["name"] for s in specs}
        for a in current:
            if a.get("name") not in named and applyset_of(a) == applyset:
                steps.append(Step(a["name"], "deleted", a["id"], (Change("agent", a["id"], None),)))
    return steps


def _create_step(name: str, desired: dict, schedule: dict | None, applyset: str) -> Step:
    body = {"name": name}
    for k, v in desired.items():
        if k == "labels":
            v = _with_set(v, applyset)
        if v is not None:
            body[k] = v
    changes = [Change(k, None, v) for k, v in desired.items() if not _empty(v)]
    if schedule is not None:
        changes.append(Change("schedule", None, schedule))
    return Step(name, "created", None, tuple(changes), create=body, schedule=schedule)


def _update_step(agent: dict, desired: dict, schedule: dict | None) -> Step:
    kind = desired["kind"]
    applyset = applyset_of(agent)  # kept: an agent stays in (or out of) its set
    fields = dict(desired)
    fields["labels"] = _with_set(desired.get("labels"), applyset)
    for k in OPTIONAL_AGENT_FIELDS:
        if k in agent:
            fields.setdefault(k, None)
    changes, patch = [], {}
    for k, new in fields.items():
        if k == "config":
            old, new_cmp = agent.get("config") or {}, normalized_config(kind, new)
        elif k == "budget":
            old, new_cmp = normalized_budget(agent.get("budget")), normalized_budget(new)
        else:  # an older set mark in the description moves into the labels
            old, new_cmp = agent.get(k), new
        if not _same(k, old, new_cmp):
            changes.append(Change(k, old, new))
            patch[k] = new
    if "kind" in patch:
        patch["config"] = fields.get("config") or {}
    sched_changes = schedule_changes(agent.get("schedule"), schedule)
    changes += sched_changes
    action = "updated" if changes else "unchanged"
    return Step(agent["name"], action, agent["id"], tuple(changes), patch=patch or None,
                schedule=schedule if sched_changes and schedule is not None else None,
                delete_schedule=bool(sched_changes) and schedule is None)


# --- carrying it out ----------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    action: str
    agent_id: str | None
    changes: tuple[Change, ...]
    error: str | None = None
    signing_secret: str | None = field(default=None, repr=False)

    def to_dict(self, show_secrets: bool = False) -> dict:
        out = {"name": self.name, "action": self.action, "id": self.agent_id,
               "changes": [c.to_dict() for c in self.changes]}
        if self.error:
            out["error"] = self.error
        if self.signing_secret and show_secrets:
            out["signingSecret"] = self.signing_secret
        return out


def _describe(exc: ClientError) -> str:
    if isinstance(exc, ApiError):
        return f"{exc.code}: {exc.message}"
    return str(exc)


def execute(client: SchedulerClient, steps: list[Step], *, dry_run: bool) -> list[Result]:
    results = []
    for step in steps:
        result = Result(step.name, step.action, step.agent_id, step.changes, step.error)
        results.append(result)
        if dry_run or step.action in ("unchanged", "failed"):
            continue
        done = []
        try:
            if step.action == "created":
                created = client.create_agent(step.create)
                result.agent_id = created["id"]
                result.signing_secret = created.get("signingSecret")
                done.append("created")
            elif step.action == "deleted":
                client.delete_agent(step.agent_id)
                continue
            elif step.patch:
                client.update_agent(step.agent_id, step.patch)
                done.append("agent updated")
            if step.schedule is not None:
                client.set_schedule(result.agent_id, step.schedule)
            elif step.delete_schedule:
                client.delete_schedule(result.agent_id)
        except ClientError as exc:
            result.action = "failed"
            result.error = ("; ".join(done) + "; then " if done else "") + _describe(exc)
    return results


def summary(results: list[Result]) -> dict:
    counts = {k: 0 for k in ("created", "updated", "unchanged", "deleted", "failed")}
    for r in results:
        counts[r.action] = counts.get(r.action, 0) + 1
    return counts


def show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if value == "" or value != value.strip() else value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
