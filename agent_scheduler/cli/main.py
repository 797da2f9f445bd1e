"""``agent-scheduler``: the command line of Agent Scheduler, a thin shell over the client.

Exit status: 0 success, 1 a failed operation (an API error, no answer, ``run --wait``
ending other than SUCCEEDED), 2 a usage error (bad option, unreadable file, no URL).
"""
from __future__ import annotations

import functools
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.text import Text

from agent_scheduler.cli import apply as applying
from agent_scheduler.cli.output import (
    POOL_COLUMNS,
    Output,
    budget_text,
    budget_usage_text,
    error_text,
    key_values,
    pool_row,
    progress_text,
    short_time,
    status_text,
    table,
    throttle_text,
    usage_text,
)
from agent_scheduler.cli.profile import PROFILE_ENV, TOKEN_ENV, URL_ENV, Endpoint, ProfileError, resolve
from agent_scheduler.client import TERMINAL_STATUSES, ApiError, ClientError, SchedulerClient, Unreachable

HELP = """Agent Scheduler from the command line.

The API URL and token come from --url/--token (before the command), else
SCHEDULER_URL/SCHEDULER_TOKEN, else the profile that `make run` writes
(.local/profile.json). Every command takes --json (after the command).

Example:  agent-scheduler agents apply -f agents.yaml --dry-run
"""

app = typer.Typer(name="agent-scheduler", help=HELP, no_args_is_help=True, add_completion=False,
                  context_settings={"help_option_names": ["-h", "--help"]}, pretty_exceptions_show_locals=False,
                  rich_markup_mode="markdown")
agents_app = typer.Typer(help="Agents: list, get, create, delete, and apply a file of them.", no_args_is_help=True)
schedule_app = typer.Typer(help="An agent's schedule: set, show, rm.", no_args_is_help=True)
runs_app = typer.Typer(help="Run history of an agent: list, show, cancel.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead runs: list, redrive.", no_args_is_help=True)
pools_app = typer.Typer(help="Pools: limits shared by the agents that name them (one provider key, one GPU box).",
                        no_args_is_help=True)
app.add_typer(agents_app, name="agents")
app.add_typer(schedule_app, name="schedule")
app.add_typer(runs_app, name="runs")
app.add_typer(dlq_app, name="dlq")
app.add_typer(pools_app, name="pools")

AGENT_ID_RE = re.compile(r"^ag_[0-9a-f]{20}$")
PRIORITIES = ("CRITICAL", "HIGH", "NORMAL", "LOW")
REPLAYED_NOTE = "replayed: an earlier request with this idempotency key did it; this is its answer"

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]
AgentArg = Annotated[str, typer.Argument(metavar="AGENT", help="Agent id or unique name.", show_default=False)]


class UsageError(typer.BadParameter):
    """A usage problem that is not one option's value (no URL, no token): exit status 2."""

    def format_message(self) -> str:
        return self.message


# --- what a command needs: the endpoint and replaceable outside things (tests pass their own) --
@dataclass
class Deps:
    """Outside things the commands use. Tests hand their own in as ``obj``."""

    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    ws_connect: Callable[[str], Any] | None = None
    env: Mapping[str, str] | None = None
    cwd: Path | None = None


@dataclass
class State:
    deps: Deps
    endpoint: Endpoint
    _client: SchedulerClient | None = field(default=None, repr=False)

    def client(self) -> SchedulerClient:
        if self._client is None:
            e = self.endpoint
            if not e.url:
                raise UsageError(
                    f"no API URL: pass --url, set {URL_ENV}, or start the local system with `make run` "
                    "(it writes .local/profile.json)")
            if not e.token:
                raise UsageError(f"no token: pass --token or set {TOKEN_ENV} (or a profile with a token)")
            try:
                self._client = SchedulerClient(e.url, e.token, transport=self.deps.transport, sleep=self.deps.sleep)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        return self._client


def state(ctx: typer.Context) -> State:
    found = ctx.find_object(State)
    if found is None:  # only when a command is called without the app's callback
        raise UsageError("internal: no endpoint state")
    return found


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option("--url", help=f"REST API base, ending in /api [env {URL_ENV}].", show_default=False)] = None,
    token: Annotated[str | None, typer.Option("--token", help=f"Bearer token [env {TOKEN_ENV}]. Never printed.", show_default=False)] = None,
    ws_url: Annotated[str | None, typer.Option("--ws-url", help="WebSocket API URL, for tail [env SCHEDULER_WS_URL].", show_default=False)] = None,
    profile: Annotated[Path | None, typer.Option("--profile", help=f"Profile file to read [env {PROFILE_ENV}].", show_default=False)] = None,
) -> None:
    deps = ctx.obj if isinstance(ctx.obj, Deps) else Deps()
    env = dict(os.environ if deps.env is None else deps.env)
    if profile is not None:
        env[PROFILE_ENV] = str(profile)
    try:
        endpoint = resolve(url, token, ws_url, env=env, cwd=deps.cwd)
    except ProfileError as exc:
        raise UsageError(str(exc)) from None
    ctx.obj = State(deps, endpoint)


def command(fn):
    """One error mapping for every command: API errors and no answer exit 1, with the
    server's code and message (``--json``: ``{"error": {...}}`` on stdout)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        out = Output(kwargs.get("json_output", False))
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            out.error(f"{exc.code}: {exc.message}", exc.to_dict())
            raise typer.Exit(1) from None
        except Unreachable as exc:
            out.error(str(exc), {"code": "UNREACHABLE", "message": str(exc)})
            raise typer.Exit(1) from None

    return wrapper


def parse_json_option(value: str | None, option: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise typer.BadParameter(f"not valid JSON ({exc})", param_hint=option) from None


def find_agent(client: SchedulerClient, ref: str) -> dict:
    """An agent by id or by a name unique in the tenant."""
    if AGENT_ID_RE.match(ref):
        try:
            return dict(client.get_agent(ref))
        except ApiError as exc:
            if exc.status != 404:
                raise
    matches = [dict(a) for a in client.iter_agents() if a.get("name") == ref or a.get("id") == ref]
    if len(matches) > 1:
        ids = ", ".join(str(a["id"]) for a in matches)
        raise typer.BadParameter(f"{len(matches)} agents are named {ref!r} ({ids}): use an id", param_hint="AGENT")
    if not matches:
        raise ApiError(404, "NOT_FOUND", f"no agent with the id or name {ref!r}")
    return matches[0]


def _hide_secret(agent: dict, show: bool) -> tuple[dict, bool]:
    if "signingSecret" in agent and not show:
        return {k: v for k, v in agent.items() if k != "signingSecret"}, True
    return agent, False


def _schedule_label(schedule: Mapping[str, Any] | None) -> str | None:
    if not schedule:
        return None
    expr = schedule.get("expression") or schedule.get("cronExpression")
    tz = schedule.get("timezone")
    label = f"{expr} ({tz})" if tz and tz != "UTC" else str(expr)
    return label if schedule.get("enabled", True) else f"{label} [disabled]"


def _agent_table(out: Output, agent: dict) -> None:
    description, applyset = applying.split_description(agent.get("description"))[0], applying.applyset_of(agent)
    pairs = [("name", agent.get("name")), ("id", agent.get("id")), ("kind", agent.get("kind")),
             ("description", description), ("applyset", applyset), ("config", agent.get("config"))]
    limits = [("maxConcurrency", agent.get("maxConcurrency")), ("throttle", throttle_text(agent.get("throttle"))),
              ("pools", ", ".join(agent.get("pools") or []) or None), ("budget", budget_text(agent.get("budget"))),
              ("budgetUsage", budget_usage_text(agent.get("budgetUsage"), agent.get("budget"))),
              ("pauseAfterFailures", agent.get("pauseAfterFailures")), ("heartbeatSeconds", agent.get("heartbeatSeconds"))]
    pairs += limits
    skip = {"name", "id", "kind", "description", "config", "schedule", "signingSecret"} | {k for k, _ in limits}
    pairs += [(k, v) for k, v in agent.items() if k not in skip]
    out.print(key_values(pairs))
    if agent.get("schedule"):
        out.print()
        _schedule_table(out, agent["schedule"])


def _schedule_table(out: Output, schedule: dict) -> None:
    pairs = [("schedule", _schedule_label(schedule))]
    pairs += [(k, v) for k, v in schedule.items()
              if k not in ("agentId", "cronExpression", "expression", "nextRuns", "warnings", "conflicts")]
    out.print(key_values(pairs))
    runs = schedule.get("nextRuns") or []
    if runs:
        out.print(table(["NEXT RUNS"], [[short_time(r)] for r in runs]))
    for w in schedule.get("warnings") or []:
        out.warn(f"warning: {w}")
    for c in schedule.get("conflicts") or []:
        out.warn(f"conflict: {c.get('message') if isinstance(c, dict) else c}")


def _session_rows(items: list[dict]) -> list[list]:
    return [[s.get("sessionId"), status_text(s.get("status")), s.get("trigger"), s.get("priority"),
             short_time(s.get("scheduledFor")), s.get("attempt"),
             None if s.get("durationMs") is None else f"{s['durationMs'] / 1000:.1f} s",
             _waiting_cell(s) or error_text(s.get("error"))] for s in items]


def _waiting_cell(s: dict) -> str | None:
    reason = s.get("waitingReason")
    if not reason:
        return None
    return reason + (f" ({s['waitingFor']})" if s.get("waitingFor") else "")


SESSION_COLUMNS = ["SESSION", "STATUS", "TRIGGER", "PRIORITY", "SCHEDULED FOR", "ATTEMPT", "DURATION", "WAITING / ERROR"]


# --- status ---------------------------------------------------------------------------------------
@app.command("status")
@command
def status_cmd(ctx: typer.Context, json_output: JsonOpt = False) -> None:
    """The scheduler's state: paused or not, slots in use, your running and waiting runs, DLQ depth.

    Example:  agent-scheduler status
    """
    st = state(ctx)
    out = Output(json_output)
    data = st.client().status()

    def human() -> None:
        paused = data.get("paused")
        out.print(key_values([("scheduler", Text("PAUSED", style="bold yellow") if paused else Text("running", style="green")),
                              ("api", f"{st.client().url}  (from {st.endpoint.source})")]
                             + [(k, v) for k, v in data.items() if k != "paused"]))

    out.emit(data, human)


# --- agents ---------------------------------------------------------------------------------------
@agents_app.command("list")
@command
def agents_list(
    ctx: typer.Context,
    label: Annotated[list[str] | None, typer.Option("--label", help="KEY=VALUE: only agents with this label (repeat: all must hold).", show_default=False)] = None,
    json_output: JsonOpt = False,
) -> None:
    """Every agent of your tenant, with its schedule and next run.

    Example:  agent-scheduler agents list --label team=ops --json | jq -r '.items[].name'
    """
    out = Output(json_output)
    wanted: dict[str, str] = {}
    for raw in label or []:
        key, sep, value = raw.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"KEY=VALUE, got {raw!r}", param_hint="--label")
        wanted[key] = value
    items: list[dict] = [dict(a) for a in state(ctx).client().iter_agents(wanted or None)]

    def human() -> None:
        rows = []
        for a in items:
            sched = a.get("schedule") or {}
            rows.append([a.get("name"), a.get("id"), a.get("kind"), _schedule_label(a.get("schedule")),
                         short_time(sched.get("nextRunAt")), applying.applyset_of(a)])
        out.print(table(["NAME", "ID", "KIND", "SCHEDULE", "NEXT RUN", "APPLYSET"], rows))
        if not items:
            out.note("no agents yet: agent-scheduler agents create NAME --kind echo")

    out.emit({"items": items}, human)


@agents_app.command("get")
@command
def agents_get(ctx: typer.Context, agent: AgentArg, json_output: JsonOpt = False) -> None:
    """One agent with its schedule.

    Example:  agent-scheduler agents get nightly-report
    """
    out = Output(json_output)
    found = find_agent(state(ctx).client(), agent)
    out.emit(found, lambda: _agent_table(out, found))


@agents_app.command("create")
@command
def agents_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Agent name (1..200 characters).", show_default=False)],
    kind: Annotated[str, typer.Option("--kind", "-k", help="echo, sleep, fail, http, lambda, ...")] = "echo",
    config: Annotated[str | None, typer.Option("--config", "-c", help="Kind settings as a JSON object.", show_default=False)] = None,
    description: Annotated[str | None, typer.Option("--description", show_default=False)] = None,
    timeout_seconds: Annotated[int | None, typer.Option("--timeout-seconds", show_default=False)] = None,
    max_retries: Annotated[int | None, typer.Option("--max-retries", show_default=False)] = None,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key", help="Reuse to make a repeated create return the first agent (default: a fresh key, kept across retries).", show_default=False)] = None,
    show_secrets: Annotated[bool, typer.Option("--show-secrets", help="Print the agent's signing secret.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Create an agent.

    Example:  agent-scheduler agents create report --kind echo --config '{"message": "hi"}'
    """
    out = Output(json_output)
    body: dict = {"name": name, "kind": kind}
    cfg = parse_json_option(config, "--config")
    if cfg is not None:
        if not isinstance(cfg, dict):
            raise typer.BadParameter("must be a JSON object", param_hint="--config")
        body["config"] = cfg
    for key, value in (("description", description), ("timeoutSeconds", timeout_seconds), ("maxRetries", max_retries)):
        if value is not None:
            body[key] = value
    client = state(ctx).client()
    created, hidden = _hide_secret(client.create_agent(body, idempotency_key=idempotency_key), show_secrets)
    if client.replayed:
        out.note(REPLAYED_NOTE)

    def human() -> None:
        out.print(f"created {created.get('name')} ({created.get('id')})")
        if hidden:
            out.note("its signing secret is not shown; --show-secrets prints it")

    out.emit(created, human)


@agents_app.command("delete")
@command
def agents_delete(ctx: typer.Context, agent: AgentArg, json_output: JsonOpt = False) -> None:
    """Delete an agent and its schedule (its run history stays until it expires).

    Example:  agent-scheduler agents delete old-report
    """
    out = Output(json_output)
    client = state(ctx).client()
    found = find_agent(client, agent)
    client.delete_agent(found["id"])
    out.emit({"deleted": found["id"], "name": found.get("name")},
             lambda: out.print(f"deleted {found.get('name')} ({found['id']})"))


@agents_app.command("rotate-secret")
@command
def agents_rotate_secret(
    ctx: typer.Context,
    agent: AgentArg,
    revoke_previous: Annotated[bool, typer.Option("--revoke-previous", help="Drop the old secret now (otherwise deliveries carry both signatures for 24 h).")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Give a webhook agent a new signing secret and print it: this is the only time it is shown.

    Example:  agent-scheduler agents rotate-secret my-webhook --revoke-previous
    """
    out = Output(json_output)
    client = state(ctx).client()
    found = find_agent(client, agent)
    rotated = client.rotate_signing_secret(found["id"], revoke_previous=revoke_previous)

    def human() -> None:
        out.print(f"signingSecret: {rotated.get('signingSecret')}")
        until = rotated.get("previousValidUntil")
        out.note(f"the previous secret stays valid until {short_time(until)}" if until
                 else "the previous secret no longer verifies")
        out.note("this secret is not shown again: store it with the agent now")

    out.emit(rotated, human)


def _published_max_retries(client: SchedulerClient) -> int:
    """The server's default ``maxRetries`` when its OpenAPI document publishes one."""
    try:
        doc = client.openapi()
    except ClientError:
        return applying.DEFAULT_MAX_RETRIES
    schemas = list(((doc.get("components") or {}).get("schemas") or {}).values())
    post = ((doc.get("paths") or {}).get("/api/agents") or {}).get("post") or {}
    schemas.append((((post.get("requestBody") or {}).get("content") or {}).get("application/json") or {}).get("schema") or {})
    for schema in schemas:
        default = ((schema.get("properties") or {}).get("maxRetries") or {}).get("default") if isinstance(schema, dict) else None
        if isinstance(default, int):
            return default
    return applying.DEFAULT_MAX_RETRIES


@agents_app.command("apply")
@command
def agents_apply(
    ctx: typer.Context,
    file: Annotated[str, typer.Option("--file", "-f", help="YAML or JSON {agents: [...]}; - reads stdin.", show_default=False)],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show each change (old and new), change nothing.")] = False,
    prune: Annotated[bool, typer.Option("--prune", help="Delete agents of this apply set that the file no longer names.")] = False,
    applyset: Annotated[str | None, typer.Option("--applyset", help="Name of the apply set [default: the file's name].", show_default=False)] = None,
    show_secrets: Annotated[bool, typer.Option("--show-secrets", help="Print signing secrets of created agents.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Make your agents what the file says: create, update, and with --prune delete.

    Agents are matched by name. A field the file leaves out returns to its default and an
    agent without `schedule` loses its schedule. Applying the same file twice changes nothing.

    Example:  agent-scheduler agents apply -f agents.yaml --dry-run
    """
    out = Output(json_output)
    if file == "-":
        text, source = sys.stdin.read(), "stdin"
        if applyset is None:
            raise typer.BadParameter("reading stdin, name the apply set with --applyset", param_hint="--file")
    else:
        try:
            text, source = Path(file).read_text(), file
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {file}: {exc.strerror or exc}", param_hint="--file") from None
    name = applyset or applying.default_applyset(file)
    if not applying.APPLYSET_RE.match(name):
        raise typer.BadParameter("1..63 characters of A-Z a-z 0-9 . _ -", param_hint="--applyset")
    try:
        specs = applying.load(text, source)
    except applying.FileError as exc:
        raise typer.BadParameter(str(exc), param_hint="--file") from None
    client = state(ctx).client()
    needs_default = any("maxRetries" not in s for s in specs)
    steps = applying.plan(specs, [dict(a) for a in client.iter_agents()], applyset=name, prune=prune,
                          max_retries_default=_published_max_retries(client) if needs_default else applying.DEFAULT_MAX_RETRIES)
    results = applying.execute(client, steps, dry_run=dry_run)
    counts = applying.summary(results)
    data = {"applyset": name, "dryRun": dry_run, "results": [r.to_dict(show_secrets) for r in results], "summary": counts}

    def human() -> None:
        rows = []
        for r in results:
            lines = [f"{c.field}: {applying.show(c.old)} -> {applying.show(c.new)}"
                     for c in r.changes if r.action in ("updated", "failed") or dry_run]
            if r.error:
                lines.append(r.error)
            if r.signing_secret:
                lines.append(f"signingSecret: {r.signing_secret}" if show_secrets else "signing secret not shown (--show-secrets)")
            rows.append([r.name, status_text(r.action), r.agent_id, "\n".join(lines)])
        out.print(table(["NAME", "ACTION", "ID", "CHANGES"], rows,
                        title=f"apply set {name}" + (" (dry run: nothing changed)" if dry_run else "")))
        would = dry_run and {"created", "updated", "deleted"}
        out.print(", ".join(f"{n} {'would be ' if would and k in would else ''}{k}" for k, n in counts.items() if n))

    out.emit(data, human)
    if counts["failed"]:
        raise typer.Exit(1)


# --- schedules ----------------------------------------------------------------------------------------
@schedule_app.command("set")
@command
def schedule_set(
    ctx: typer.Context,
    agent: AgentArg,
    expression: Annotated[str, typer.Argument(metavar="EXPRESSION", help="Cron (5 fields, @daily, H) as the API accepts.", show_default=False)],
    timezone: Annotated[str | None, typer.Option("--timezone", "--tz", help="IANA zone [default: UTC].", show_default=False)] = None,
    priority: Annotated[str | None, typer.Option("--priority", help="CRITICAL, HIGH, NORMAL, LOW.", show_default=False)] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Save it disabled.")] = False,
    catchup: Annotated[str | None, typer.Option("--catchup", show_default=False)] = None,
    catchup_window_seconds: Annotated[int | None, typer.Option("--catchup-window-seconds", show_default=False)] = None,
    overlap_policy: Annotated[str | None, typer.Option("--overlap-policy", show_default=False)] = None,
    jitter_seconds: Annotated[int | None, typer.Option("--jitter-seconds", show_default=False)] = None,
    start_at: Annotated[str | None, typer.Option("--start-at", help="ISO 8601 with offset.", show_default=False)] = None,
    end_at: Annotated[str | None, typer.Option("--end-at", help="ISO 8601 with offset.", show_default=False)] = None,
    json_output: JsonOpt = False,
) -> None:
    """Create or replace an agent's schedule; prints its next runs.

    Example:  agent-scheduler schedule set report "30 9 * * MON-FRI" --tz America/New_York
    """
    out = Output(json_output)
    if priority is not None and priority.upper() not in PRIORITIES:
        raise typer.BadParameter(f"one of {', '.join(PRIORITIES)}", param_hint="--priority")
    body: dict = {"cronExpression": expression}
    for key, value in (("timezone", timezone), ("priority", priority.upper() if priority else None),
                       ("catchup", catchup), ("catchupWindowSeconds", catchup_window_seconds),
                       ("overlapPolicy", overlap_policy), ("jitterSeconds", jitter_seconds),
                       ("startAt", start_at), ("endAt", end_at)):
        if value is not None:
            body[key] = value
    if disabled:
        body["enabled"] = False
    client = state(ctx).client()
    saved = client.set_schedule(find_agent(client, agent)["id"], body)
    out.emit(saved, lambda: _schedule_table(out, saved))


@schedule_app.command("show")
@command
def schedule_show(ctx: typer.Context, agent: AgentArg, json_output: JsonOpt = False) -> None:
    """An agent's schedule with its next 5 runs.

    Example:  agent-scheduler schedule show report
    """
    out = Output(json_output)
    client = state(ctx).client()
    schedule = client.get_schedule(find_agent(client, agent)["id"])
    out.emit(schedule, lambda: _schedule_table(out, schedule))


@schedule_app.command("rm")
@command
def schedule_rm(ctx: typer.Context, agent: AgentArg, json_output: JsonOpt = False) -> None:
    """Remove an agent's schedule; the agent stays.

    Example:  agent-scheduler schedule rm report
    """
    out = Output(json_output)
    client = state(ctx).client()
    found = find_agent(client, agent)
    client.delete_schedule(found["id"])
    out.emit({"agentId": found["id"], "schedule": None},
             lambda: out.print(f"removed the schedule of {found.get('name')} ({found['id']})"))


# --- runs ------------------------------------------------------------------------------------------------
@app.command("run")
@command
def run_cmd(
    ctx: typer.Context,
    agent: AgentArg,
    input: Annotated[str | None, typer.Option("--input", "-i", help="The run's input, as JSON.", show_default=False)] = None,
    priority: Annotated[str | None, typer.Option("--priority", help="CRITICAL, HIGH, NORMAL, LOW [default: the schedule's].", show_default=False)] = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Wait for the outcome; exit 1 unless it SUCCEEDED.")] = False,
    timeout: Annotated[float | None, typer.Option("--timeout", help="With --wait: give up after this many seconds (exit 1).", show_default=False)] = None,
    poll_seconds: Annotated[float, typer.Option("--poll-seconds", help="With --wait: how often to look.", min=0.1)] = 1.0,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key", help="Reuse to make a repeated run-now start nothing new (default: a fresh key, kept across retries).", show_default=False)] = None,
    json_output: JsonOpt = False,
) -> None:
    """Run an agent now (through the same admission as scheduled runs).

    Example:  agent-scheduler run report --input '{"day": "monday"}' --wait
    """
    st = state(ctx)
    out = Output(json_output)
    payload = parse_json_option(input, "--input")
    if priority is not None and priority.upper() not in PRIORITIES:
        raise typer.BadParameter(f"one of {', '.join(PRIORITIES)}", param_hint="--priority")
    client = st.client()
    found = find_agent(client, agent)
    queued = client.run_agent(found["id"], input=payload, priority=priority.upper() if priority else None,
                              idempotency_key=idempotency_key)
    if client.replayed:
        out.note(REPLAYED_NOTE)
    session_id = queued.get("sessionId")
    reason = queued.get("waitingReason")
    if not wait:
        def human() -> None:
            out.print(f"{queued.get('status')} {session_id} ({found.get('name')})")
            if reason:
                out.warn(_waiting_hint(reason, queued.get("waitingFor")))

        out.emit(queued, human)
        return
    if not json_output:
        out.note(f"{queued.get('status')} {session_id}: waiting for the outcome")
        if reason:
            out.warn(_waiting_hint(reason, queued.get("waitingFor")))
    deps = st.deps
    started = deps.monotonic()
    last_status = queued.get("status")
    while True:
        session = client.get_session(found["id"], session_id)
        status = session.get("status")
        if status in TERMINAL_STATUSES:
            break
        if status != last_status and not json_output:
            out.note(f"{status}" + (f" ({_waiting_cell(session)})" if session.get("waitingReason") else ""))
        last_status = status
        if timeout is not None and deps.monotonic() - started >= timeout:
            if json_output:
                out.json(session)
            out.error(f"still {status} after {timeout:g} s: {session_id}")
            raise typer.Exit(1)
        deps.sleep(poll_seconds)
    out.emit(session, lambda: _session_view(out, session))
    if status != "SUCCEEDED":
        raise typer.Exit(1)


def _waiting_hint(reason: str, waiting_for: str | None = None) -> str:
    hints = {"SCHEDULER_PAUSED": "the scheduler is paused: nothing starts until an admin resumes it",
             "CAPACITY": "every slot is taken: it starts when one frees up",
             "POOL_LIMIT": "a pool it draws from is full: it starts when the pool allows",
             "RATE_LIMITED": "the provider asked to wait: it starts after Retry-After"}
    held = f" {waiting_for}" if waiting_for else ""
    return f"waiting: {reason}{held}" + (f" ({hints[reason]})" if reason in hints else "")


SESSION_FORMATS: dict[str, Callable[[Any], Any]] = {"usage": usage_text, "progress": progress_text}


def _session_view(out: Output, s: dict) -> None:
    pairs = [("session", s.get("sessionId")), ("agent", s.get("agentId")), ("status", status_text(s.get("status")))]
    if s.get("waitingReason"):
        waiting = s["waitingReason"] + (f" ({s['waitingFor']})" if s.get("waitingFor") else "")
        pairs.append(("waiting", Text(waiting, style="yellow")))
    shown = {"sessionId", "agentId", "status", "error", "waitingReason", "waitingFor"}
    for k, v in s.items():
        if k in shown:
            continue
        if k in SESSION_FORMATS:
            v = SESSION_FORMATS[k](v)
        elif k.endswith("At") or k == "scheduledFor":
            v = short_time(v)
        pairs.append((k, v))
    if s.get("error"):
        pairs.append(("error", error_text(s["error"])))
    out.print(key_values(pairs))


@runs_app.command("list")
@command
def runs_list(
    ctx: typer.Context,
    agent: AgentArg,
    status: Annotated[str | None, typer.Option("--status", help="Only runs with this status.", show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many, newest first.", min=1, max=1000)] = 20,
    json_output: JsonOpt = False,
) -> None:
    """An agent's runs, newest first.

    Example:  agent-scheduler runs list report --status DEAD
    """
    out = Output(json_output)
    client = state(ctx).client()
    found = find_agent(client, agent)
    items: list[dict] = []
    for s in client.paginate(client.list_sessions, found["id"], page_size=min(limit, 100),
                             status=status.upper() if status else None):
        items.append(s)
        if len(items) >= limit:
            break
    out.emit({"items": items}, lambda: out.print(table(SESSION_COLUMNS, _session_rows(items))))


@runs_app.command("show")
@command
def runs_show(ctx: typer.Context, agent: AgentArg,
              session: Annotated[str, typer.Argument(metavar="SESSION", help="Session id.", show_default=False)],
              json_output: JsonOpt = False) -> None:
    """One run: status, times, attempt, error, output.

    Example:  agent-scheduler runs show report 20260302T120000000Z-m1a2b3c4d5e6
    """
    out = Output(json_output)
    client = state(ctx).client()
    s = client.get_session(find_agent(client, agent)["id"], session)
    out.emit(s, lambda: _session_view(out, s))


CANCELLABLE = ("QUEUED", "RETRYING", "RUNNING")


def _aware_time(value: str, option: str) -> str:
    """An ISO 8601 time with an offset (``Z`` allowed), as the API wants it."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"an ISO 8601 time with an offset, got {value!r}", param_hint=option) from None
    if parsed.tzinfo is None:
        raise typer.BadParameter(f"give the offset too (e.g. {value}Z or {value}+02:00)", param_hint=option)
    return parsed.isoformat()


@runs_app.command("cancel")
@command
def runs_cancel(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Argument(metavar="AGENT", help="Agent id or unique name (one run).", show_default=False)] = None,
    session: Annotated[str | None, typer.Argument(metavar="SESSION", help="Session id (one run).", show_default=False)] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Cancel every waiting or running run the filters select (at least --agent or --scheduled-before).")] = False,
    agents: Annotated[list[str] | None, typer.Option("--agent", "-a", help="With --all: runs of this agent (id or name; repeatable).", show_default=False)] = None,
    statuses: Annotated[list[str] | None, typer.Option("--status", help="With --all: QUEUED, RETRYING or RUNNING (repeatable) [default: all three].", show_default=False)] = None,
    scheduled_before: Annotated[str | None, typer.Option("--scheduled-before", help="With --all: runs scheduled before this time (ISO 8601 with offset).", show_default=False)] = None,
    json_output: JsonOpt = False,
) -> None:
    """Cancel a run, or with --all every run the filters select: a queued run never
    starts, a running one stops at its next check (an async one at once).

    Example:  agent-scheduler runs cancel report 20260302T120000000Z-m1a2b3c4d5e6

    Example:  agent-scheduler runs cancel --all --agent report --status QUEUED
    """
    out = Output(json_output)
    if all_runs:
        if agent or session:
            raise typer.BadParameter("with --all, name agents with --agent, not as arguments", param_hint="AGENT")
        if not agents and scheduled_before is None:
            raise typer.BadParameter("--all needs a filter: --agent AGENT and/or --scheduled-before TIME",
                                     param_hint="--all")
        wanted = [v.upper() for v in statuses or []]
        for v in wanted:
            if v not in CANCELLABLE:
                raise typer.BadParameter(f"one of {', '.join(CANCELLABLE)}, got {v!r}", param_hint="--status")
        body: dict = {}
        before = _aware_time(scheduled_before, "--scheduled-before") if scheduled_before is not None else None
        client = state(ctx).client()
        found = [find_agent(client, a) for a in agents or []]
        if found:
            body["agentIds"] = [a["id"] for a in found]
        if wanted:
            body["statuses"] = wanted
        if before is not None:
            body["scheduledBefore"] = before
        result = client.cancel_sessions(body)
        names = ", ".join(str(a.get("name")) for a in found)
        out.emit(result, lambda: out.print(f"cancelled {result.get('cancelled')} run(s)" + (f" of {names}" if names else "")))
        return
    if statuses or scheduled_before is not None or agents:
        raise typer.BadParameter("--agent, --status and --scheduled-before go with --all", param_hint="--all")
    if not agent or not session:
        raise typer.BadParameter("give AGENT and SESSION, or --all with filters", param_hint="AGENT SESSION")
    client = state(ctx).client()
    s = client.cancel_session(find_agent(client, agent)["id"], session)
    out.emit(s, lambda: out.print(f"{s.get('status')} {s.get('sessionId')}"))


# --- pools ----------------------------------------------------------------------------------------------------
PoolArg = Annotated[str, typer.Argument(metavar="NAME", help="Pool name (1..64 of A-Z a-z 0-9 . _ -).", show_default=False)]
_THROTTLE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_throttle(value: str) -> dict:
    """``10/60s`` (also ``10/60``, ``5/1m``, ``100/1h``, ``1000/1d``) as ``{limit: 10, periodSeconds: 60}``."""
    m = _THROTTLE_RE.match(value)
    if not m:
        raise typer.BadParameter(f"LIMIT/PERIOD such as 10/60s, 5/1m or 100/1h, got {value!r}", param_hint="--throttle")
    return {"limit": int(m.group(1)), "periodSeconds": int(m.group(2)) * _UNIT_SECONDS[m.group(3)]}


def _pool_view(out: Output, pool: dict) -> None:
    out.print(key_values([("name", pool.get("name")), ("running", pool.get("running")),
                          ("maxConcurrency", pool.get("maxConcurrency")), ("throttle", throttle_text(pool.get("throttle"))),
                          ("blockedUntil", short_time(pool.get("blockedUntil"))),
                          ("createdAt", short_time(pool.get("createdAt"))), ("updatedAt", short_time(pool.get("updatedAt")))]))


@pools_app.command("list")
@command
def pools_list(ctx: typer.Context, json_output: JsonOpt = False) -> None:
    """Your pools: runs holding each, its limits, and until when a provider's 429 blocks it.

    Example:  agent-scheduler pools list
    """
    out = Output(json_output)
    data = state(ctx).client().list_pools()
    items = list(data.get("items") or [])

    def human() -> None:
        out.print(table(POOL_COLUMNS, [pool_row(p) for p in items]))
        if not items:
            out.note("no pools yet: agent-scheduler pools set openai --max-concurrency 4")

    out.emit({**data, "items": items}, human)


@pools_app.command("get")
@command
def pools_get(ctx: typer.Context, name: PoolArg, json_output: JsonOpt = False) -> None:
    """One pool with its running count and blockedUntil.

    Example:  agent-scheduler pools get openai
    """
    out = Output(json_output)
    pool = state(ctx).client().get_pool(name)
    out.emit(pool, lambda: _pool_view(out, pool))


@pools_app.command("set")
@command
def pools_set(
    ctx: typer.Context,
    name: PoolArg,
    max_concurrency: Annotated[int | None, typer.Option("--max-concurrency", help="At most this many runs of the pool's agents at once (1..1000).", min=1, max=1000, show_default=False)] = None,
    throttle: Annotated[str | None, typer.Option("--throttle", help="At most LIMIT starts per PERIOD: 10/60s, 5/1m, 100/1h.", show_default=False)] = None,
    no_max_concurrency: Annotated[bool, typer.Option("--no-max-concurrency", help="Remove the concurrency limit.")] = False,
    no_throttle: Annotated[bool, typer.Option("--no-throttle", help="Remove the throttle.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Create a pool or change its limits; a limit you do not mention keeps its value.

    Agents draw from it by naming it in their `pools` field (up to 4).

    Example:  agent-scheduler pools set openai --max-concurrency 4 --throttle 60/1m
    """
    out = Output(json_output)
    if max_concurrency is not None and no_max_concurrency:
        raise typer.BadParameter("give --max-concurrency or --no-max-concurrency, not both", param_hint="--max-concurrency")
    if throttle is not None and no_throttle:
        raise typer.BadParameter("give --throttle or --no-throttle, not both", param_hint="--throttle")
    new_throttle = parse_throttle(throttle) if throttle is not None else None
    client = state(ctx).client()
    try:
        current = client.get_pool(name)
    except ApiError as exc:
        if exc.status != 404:
            raise
        current = {}
    body = {"maxConcurrency": current.get("maxConcurrency"), "throttle": current.get("throttle")}
    if max_concurrency is not None or no_max_concurrency:
        body["maxConcurrency"] = max_concurrency
    if new_throttle is not None or no_throttle:
        body["throttle"] = new_throttle
    body = {k: v for k, v in body.items() if v is not None}
    saved = client.put_pool(name, body)

    def human() -> None:
        out.print(f"{'updated' if current else 'created'} pool {name}")
        _pool_view(out, saved)

    out.emit(saved, human)


@pools_app.command("rm")
@command
def pools_rm(ctx: typer.Context, name: PoolArg, json_output: JsonOpt = False) -> None:
    """Delete a pool (refused while an agent names it: exit 1).

    Example:  agent-scheduler pools rm openai
    """
    out = Output(json_output)
    state(ctx).client().delete_pool(name)
    out.emit({"deleted": name}, lambda: out.print(f"deleted pool {name}"))


# --- DLQ -------------------------------------------------------------------------------------------------------
@dlq_app.command("list")
@command
def dlq_list(ctx: typer.Context, json_output: JsonOpt = False) -> None:
    """Dead runs you can see (an admin token: everyone's).

    Example:  agent-scheduler dlq list
    """
    out = Output(json_output)
    items = list(state(ctx).client().iter_dlq())

    def human() -> None:
        out.print(table(["SESSION", "AGENT", "ATTEMPT", "FAILED AT", "ERROR"],
                        [[d.get("sessionId"), d.get("agentId"), d.get("attempt"), short_time(d.get("failedAt")),
                          error_text(d.get("error"))] for d in items]))
        if not items:
            out.note("the DLQ is empty")

    out.emit({"items": items}, human)


@dlq_app.command("redrive")
@command
def dlq_redrive(
    ctx: typer.Context,
    sessions: Annotated[list[str] | None, typer.Argument(help="Dead sessions to redrive [default: all you can see].", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be redriven; change nothing.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Give dead runs a new attempt.

    Example:  agent-scheduler dlq redrive --dry-run
    """
    out = Output(json_output)
    client = state(ctx).client()
    if dry_run:
        dead = list(client.iter_dlq())
        chosen = [d for d in dead if not sessions or d.get("sessionId") in sessions]
        missing = sorted(set(sessions or ()) - {d.get("sessionId") for d in dead})
        data = {"dryRun": True, "wouldRedrive": chosen, "notInDlq": missing}

        def human() -> None:
            out.print(table(["SESSION", "AGENT", "ATTEMPT", "ERROR"],
                            [[d.get("sessionId"), d.get("agentId"), d.get("attempt"), error_text(d.get("error"))] for d in chosen],
                            title=f"{len(chosen)} would be redriven (dry run: nothing changed)"))
            for m in missing:
                out.warn(f"not in the DLQ: {m}")

        out.emit(data, human)
        if missing:
            raise typer.Exit(1)
        return
    result = client.redrive(list(sessions) if sessions else None)
    out.emit(result, lambda: out.print(f"redriven: {result.get('redriven')}"))


# --- tail ------------------------------------------------------------------------------------------------------
@app.command("tail")
@command
def tail_cmd(
    ctx: typer.Context,
    agent: Annotated[list[str] | None, typer.Option("--agent", "-a", help="Only this agent (id or name; repeatable) [default: all].", show_default=False)] = None,
    since: Annotated[int | None, typer.Option("--since", help="Replay the retained events after this seq first.", min=0, show_default=False)] = None,
    count: Annotated[int | None, typer.Option("--count", "-n", help="Stop after this many events.", min=1, show_default=False)] = None,
    json_output: JsonOpt = False,
) -> None:
    """Follow the live event stream (WebSocket); reconnects and resumes after a drop.

    With --json, one JSON event per line. Ctrl-C stops.

    Example:  agent-scheduler tail --agent report --since 120
    """
    from agent_scheduler.cli.tail import Follow, TailError, default_connect

    st = state(ctx)
    out = Output(json_output)
    if not st.endpoint.ws_url:
        raise UsageError("tail needs the WebSocket URL: pass --ws-url, set SCHEDULER_WS_URL, "
                               "or add wsUrl to the profile (`make run` writes it)")
    client = st.client()
    found = [find_agent(client, a) for a in agent or []]
    names = {a["id"]: a.get("name") for a in found}
    if not found:
        names = {a["id"]: a.get("name") for a in client.iter_agents()}

    def show(event: dict) -> None:
        if json_output:
            out.out.file.write(json.dumps(event, ensure_ascii=False) + "\n")
            out.out.file.flush()
            return
        data = event.get("data") or {}
        who = names.get(data.get("agentId")) or data.get("agentId") or ""
        detail = {k: v for k, v in data.items() if k not in ("agentId", "sessionId", "attempt")}
        seq = event.get("seq")
        out.print(Text.assemble(
            (short_time(event.get("timestamp")) or "", "dim"), "  ",
            (f"#{seq} " if seq is not None else "", "dim"),
            (str(event.get("event")), "bold"), "  ", who,
            (f"  {data['sessionId']}" if data.get("sessionId") else ""),
            (f"  attempt {data['attempt']}" if data.get("attempt") else ""),
            ("  " + json.dumps(detail, ensure_ascii=False) if detail else "", "dim"),
        ))

    follow = Follow(client, st.endpoint.ws_url, st.endpoint.token or "", [a["id"] for a in found], show, out.note,
                    connect=st.deps.ws_connect or default_connect, sleep=st.deps.sleep, since=since, count=count)
    if not json_output:
        out.note(f"following {', '.join(a.get('name') or a['id'] for a in found) or 'every agent'}; Ctrl-C stops")
    try:
        follow.run()
    except TailError as exc:
        out.error(str(exc), {"code": "TAIL_FAILED", "message": str(exc)})
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


if __name__ == "__main__":  # python -m agent_scheduler.cli.main
    app()
