"""Figures 7-11 (the whole run path): rows of the results table and their sections of RESULTS.md."""
from __future__ import annotations

from bench import capacity, pathmodel
from bench.contention import ContentionResult
from bench.report import fmt, markdown_table, ratio
from bench.runpath import BACKLOG_FREE, OWN_PHASES, WORKER_PHASES, PathResult

TARGET_REQUESTS = 4.0


def _ops(counter, div: int) -> str:
    return ", ".join(f"{op} {fmt(k / div)}" for op, k in counter.most_common()) or "-"


def _shared(limits: list[pathmodel.Limit], tick_fires_per_minute: int | None = None) -> list[pathmodel.Limit]:
    """The limits every run shares (not one tenant's or one agent's keys), the tick's included, lowest first."""
    out = [x for x in limits if not x.resource.startswith(("agents table", "sessions table"))]
    if tick_fires_per_minute is not None:
        out.append(pathmodel.Limit("the tick: fires it creates (one tick a minute, section 3 model)", 1.0,
                                   tick_fires_per_minute / 60, "fires"))
    return sorted(out, key=lambda x: x.starts_per_s)


def rows(paths: dict, caps: list[int], cont: ContentionResult, tick_model, base_per_run: float) -> list[list[str]]:
    big = max(caps)
    out: list[list[str]] = []
    for mode in ("idle", "backlog"):
        r: PathResult = paths[(big, mode)]
        v = r.own_per_run()
        out.append(["7", f"own AWS requests per run, whole path (tick share + claim + agent read + finish + "
                    f"hand-off), {mode}", f"cap {big:,}, {r.runs} runs", fmt(v), fmt(base_per_run),
                    ratio(v, base_per_run), "<= 4", "yes" if v <= TARGET_REQUESTS else "NO"])
    r = paths[(big, "backlog")]
    out.append(["7", "apart: event source receive + delete per run (model, batch size 1)", "-",
                fmt(pathmodel.ESM_REQUESTS_PER_RUN), "-", "-", "-", "-"])
    out.append(["7", "apart: WebSocket events per run (1 connection per tenant, subscribed to all)",
                f"cap {big:,}, backlog", fmt(r.per_run(["ws events"])), "-", "-", "-", "-"])
    for mode in ("idle", "backlog"):
        vals = [paths[(cap, mode)].wcu_per_run() for cap in caps]
        flat = max(vals) <= 1.15 * min(vals)
        out.append(["8", f"write units per run, {mode}, cap " + " / ".join(f"{c:,}" for c in caps),
                    "whole path", " / ".join(fmt(v) for v in vals), "-", "-", "flat in the cap",
                    "yes" if flat else "NO"])
    eb = pathmodel.scheduler_cost().total
    for mode in ("idle", "backlog"):
        r = paths[(big, mode)]
        c = pathmodel.run_cost(r, tick_model.seconds(r.runs))
        out.append(["9", f"dollars per million runs, {mode} (baseline column: EventBridge Scheduler invoking "
                    "a Lambda)", f"cap {big:,}", f"{c.total:.2f}", f"{eb:.2f}", ratio(c.total, eb), "-", "-"])
    for mode in ("idle", "backlog"):
        lim = _shared(pathmodel.partition_limits(paths[(big, mode)]), tick_model.capacity())
        if lim:
            out.append(["10", f"run starts per second at cap {big:,} (model), {mode}: bottleneck {lim[0].resource}",
                        "per-partition limits", fmt(lim[0].starts_per_s), "-", "-", "-", "-"])
    out.append(["11", f"optimistic retries per run, {cont.threads} threads finishing and admitting",
                f"cap {cont.cap}, {cont.succeeded} runs", fmt(cont.retries_per_run), "-", "-", "-", "-"])
    out.append(["11", "most runs executing at once under contention (cap never exceeded)",
                f"cap {cont.cap}", str(cont.max_executing), "-", "-", f"<= {cont.cap}",
                "yes" if cont.max_executing <= cont.cap else "NO"])
    return out


def sections(paths: dict, caps: list[int], cont: ContentionResult, tick_model, fires_per_tick_cap: int) -> str:
    big = max(caps)
    L: list[str] = []
    L.append("## 7. The whole run path, per run\n")
    L.append("On moto (bench/runpath.py): one tick over the due schedules, then the worker handles every message the "
             "tick and the hand-offs send until the queue is empty; every request counted by botocore hooks "
             "(`before-call`/`after-call`, bench/units.py) under the phase it belongs to. *Idle*: the cap does not "
             f"bind (every run admitted by the tick). *Backlog*: all but {BACKLOG_FREE} slots are held by long runs "
             "(loaded as RUNNING sessions with counters to match), so the tick admits a few runs, the rest wait "
             "and each finish hands its slot to the next waiting run. The tick's share is its requests over the "
             "runs of the scenario (the tick's fixed requests amortize over more runs in a bigger tick). The "
             "Lambda event source's ReceiveMessage/DeleteMessage are AWS's and not seen on moto (the bench takes "
             "the messages off the queue): modelled as one each per run (batch size 1). WebSocket fan-out (one "
             "connection per tenant, subscribed to everything) is reported apart.\n")
    hdr = ["cap", "mode", "runs", "tick share", "claim", "agent read", "finish", "hand-off", "own total",
           "WS events", "WS status (per tick)", "requests by operation (own, per run)"]
    rws = []
    for cap in caps:
        for mode in ("idle", "backlog"):
            r: PathResult = paths[(cap, mode)]
            k = max(1, r.runs)
            rws.append([f"{cap:,}", mode, str(r.runs)] + [fmt(r.per_run([p])) for p in ("tick",) + WORKER_PHASES]
                       + [fmt(r.own_per_run()), fmt(r.per_run(["ws events"])), fmt(r.meter.total(["ws status"])),
                          _ops(r.meter.by_op(OWN_PHASES), k)])
    L.append(markdown_table(hdr, rws) + "\n")
    r = paths[(big, "backlog")]
    k = max(1, r.runs)
    L.append(f"Backlog at cap {big:,}, by phase (per run): " + "; ".join(
        f"{p}: {_ops(r.meter.by_op([p]), k)}" for p in OWN_PHASES) + ". The tick's requests: "
        + _ops(r.meter.by_op(["tick"]), 1) + f" ({r.tick_report['created']} fires, {r.tick_report['admitted']} "
        "admitted by the tick).\n")

    L.append("## 8. Write units per run against the cap\n")
    L.append("DynamoDB write request units computed from what the hooks see (moto does not return ConsumedCapacity "
             "reliably): per item ceil(size / 1 KB) of the larger of the item before and after the write (both "
             "read from moto's backend around the call), doubled inside TransactWriteItems (condition checks "
             "included), plus ceil(projected size / 1 KB) for every global secondary index entry the write adds, "
             "removes or changes (not doubled); a write whose condition fails still costs its units. Read units: "
             "ceil(size / 4 KB) per item (GetItem, BatchGetItem) or per Query page, half for eventually "
             "consistent reads.\n")
    hdr = ["cap", "mode", "WRU per run, whole path", "tick share", "worker (claim + finish + hand-off)",
           "RRU per run", "busiest write key (WRU per run)"]
    rws = []
    for cap in caps:
        for mode in ("idle", "backlog"):
            r = paths[(cap, mode)]
            top = r.meter.wcu_by_key.most_common(1)
            rws.append([f"{cap:,}", mode, fmt(r.wcu_per_run()), fmt(r.wcu_per_run(["tick"])),
                        fmt(r.wcu_per_run(WORKER_PHASES)), fmt(r.rru_per_run()),
                        f"{top[0][0]} ({fmt(top[0][1] / max(1, r.runs))})" if top else "-"])
    L.append(markdown_table(hdr, rws) + "\n")

    for mode in ("idle", "backlog"):
        r = paths[(big, mode)]
        by: dict[str, float] = {}
        for key, u in r.meter.wcu_by_key.items():
            name = key.split(" ", 1)[0].replace("agent-scheduler-", "")
            by[name] = by.get(name, 0.0) + u / max(1, r.runs)
        L.append(f"Where the write units go at cap {big:,}, {mode} (WRU per run, by table or index): "
                 + ", ".join(f"{k} {fmt(v)}" for k, v in sorted(by.items(), key=lambda kv: -kv[1])) + ".\n")

    L.append("## 9. Dollars per million runs\n")
    P = pathmodel.PRICES
    L.append(f"AWS list prices, us-east-1, on-demand: DynamoDB ${P['dynamodb_write_per_m']:.3f} per million write "
             f"request units and ${P['dynamodb_read_per_m']:.3f} per million read request units; SQS "
             f"${P['sqs_per_m']:.2f} per million requests (a 64 KB chunk of payload is one request; a SendMessageBatch "
             f"of small messages is one); Lambda ${P['lambda_request_per_m']:.2f} per million requests and "
             f"${P['lambda_gb_s']:.10f} per GB-second on arm64; EventBridge Scheduler ${P['scheduler_per_m']:.2f} per "
             f"million invocations after the free tier. Assumptions: the worker and the tick at "
             f"{pathmodel.WORKER_GB:g} GB (.chalice/config.json); the worker's bookkeeping time is its own requests "
             "one after another at the latencies of section 3 (the agent's run is the same with any scheduler and is "
             "left out, as is the Lambda invoked by EventBridge Scheduler beyond its request); the tick's time is the "
             "section 3 model for the scenario's fires, spread over its runs; the event source mapping is billed one "
             "ReceiveMessage and one DeleteMessage per run (batch size 1; its empty long polls are a fixed monthly "
             "cost and left out); WebSocket fan-out and storage are left out.\n")
    costs = [pathmodel.run_cost(paths[(big, m)], tick_model.seconds(paths[(big, m)].runs)) for m in ("idle", "backlog")]
    eb = pathmodel.scheduler_cost()
    hdr = ["line"] + [f"project, {c.label}" for c in costs] + [eb.label]
    names = [n for n, _, _ in costs[0].lines]
    rws = []
    for i, n in enumerate(names):
        rws.append([n] + [f"${c.lines[i][1]:.3f} ({c.lines[i][2]})" for c in costs] + ["-"])
    for n, v, how in eb.lines:
        rws.append([n] + ["-" for _ in costs] + [f"${v:.2f} ({how})"])
    rws.append(["**total per million runs**"] + [f"**${c.total:.2f}**" for c in costs] + [f"**${eb.total:.2f}**"])
    L.append(markdown_table(hdr, rws) + "\n")

    L.append(f"## 10. Run starts per second at cap {big:,} (model)\n")
    L.append(f"DynamoDB serves at most {pathmodel.PARTITION_WCU:,.0f} write units and {pathmodel.PARTITION_RCU:,.0f} "
             "read units per second for one partition key value. For every key the run path touches, the units "
             f"per run measured in section 7 at cap {big:,} give the starts per second that key allows; the slot "
             f"counters are {len(_counters(paths[(big, 'idle')]))} items of at most 100 slots, the pending index "
             "has SCHEDULER_PENDING_SHARDS partitions (default 1). Keys that belong to one tenant (agents table) or "
             "one agent (sessions table) are shown for a single tenant / agent starting every run; the others are "
             "shared by all runs. The tick's side: one tick creates at most "
             f"{fires_per_tick_cap:,} fires per minute (section 3, as implemented), {fires_per_tick_cap / 60:,.0f} per "
             "second.\n")
    for mode in ("idle", "backlog"):
        lim = pathmodel.partition_limits(paths[(big, mode)])
        rws = [[x.resource, fmt(x.units_per_start), f"{x.limit:,.0f}", fmt(x.starts_per_s)] for x in lim[:10]]
        rws.append(["tick: fires created per second (one tick a minute, section 3 model)", "-", "-",
                    fmt(fires_per_tick_cap / 60)])
        L.append(f"*{mode}*:\n")
        L.append(markdown_table(["partition key", "units per start", "limit per second", "starts per second"],
                                rws) + "\n")
        shared = _shared(lim, fires_per_tick_cap)
        if shared:
            nxt = f"; next: {shared[1].resource}, {fmt(shared[1].starts_per_s)}" if len(shared) > 1 else ""
            L.append(f"Bottleneck ({mode}, what all runs share): **{shared[0].resource}**, "
                     f"{fmt(shared[0].starts_per_s)} starts per second{nxt}.\n")

    L.append("## 11. Contention\n")
    L.append(f"bench/contention.py: {cont.threads} threads share one container on moto (moto answers one request at a "
             "time, the threads interleave between requests; the clock moves 1 ms at every reading, as real time "
             f"does). Cap {cont.cap}, {cont.runs} runs due in one tick. Each thread takes the next run message and "
             "handles it with `Worker.handle` (claim, run, end of the attempt with hand-off); a thread that finds no "
             "message runs the admission itself (`Dispatcher.admit`), as a run-now or the tick would. A run counts "
             "as executing from its successful claim until its worker starts the end of the attempt.\n")
    rws = [[str(cont.threads), str(cont.cap), f"{cont.succeeded}/{cont.runs}", str(cont.executions),
            str(cont.max_executing), fmt(cont.retries_per_run),
            ", ".join(f"{k} {v}" for k, v in cont.failures.most_common()) or "-", str(cont.admit_calls),
            f"{cont.counters_left} / {cont.holders_left}", f"{cont.seconds:.0f} s"]]
    L.append(markdown_table(["threads", "cap", "runs succeeded", "executions", "most executing at once",
                             "optimistic retries per run", "conditional failures by phase", "admission calls",
                             "slots counted / held after", "wall time"], rws) + "\n")
    return "\n".join(L)


def _counters(r: PathResult) -> list[str]:
    from chalicelib.domain.admission import slot_limits

    return [n for n, _ in slot_limits(r.cap)]


def observations(paths: dict, caps: list[int], cont: ContentionResult) -> list[str]:
    big = max(caps)
    out = []
    i, b = paths[(big, "idle")], paths[(big, "backlog")]
    kb = max(1, b.runs)
    out.append(f"- Whole path at cap {big:,}: {fmt(i.own_per_run())} own requests per run idle, "
               f"{fmt(b.own_per_run())} under backlog (claim {fmt(b.per_run(['claim']))}, agent read "
               f"{fmt(b.per_run(['agent read']))}, finish {fmt(b.per_run(['finish']))}, hand-off "
               f"{fmt(b.per_run(['hand-off']))}: {_ops(b.meter.by_op(['hand-off']), kb)}; tick share "
               f"{fmt(b.per_run(['tick']))}). The agent read is a GetItem whenever this worker has not read that "
               "agent in the last few seconds (every run of a different agent, as here).")
    vals = {m: [paths[(c, m)].wcu_per_run(WORKER_PHASES) for c in caps] for m in ("idle", "backlog")}
    out.append("- Write units per run on the worker's side, cap " + " / ".join(f"{c:,}" for c in caps) + ": idle "
               + " / ".join(fmt(v) for v in vals["idle"]) + ", backlog " + " / ".join(fmt(v) for v in vals["backlog"])
               + " (the slot counters are items of at most 100 slots: a counter write costs the same at any cap).")
    fin = sum(v for k, v in cont.failures.items() if not k.startswith("admission"))
    out.append(f"- Contention ({cont.threads} threads, cap {cont.cap}): {fmt(cont.retries_per_run)} optimistic retries "
               f"per run ({fmt(fin / max(1, cont.succeeded))} per run on the worker's side, the rest admissions "
               f"started by idle threads racing for the same waiting runs), at most {cont.max_executing} runs "
               "executing at once; every run executed exactly once.")
    st = {cap: paths[(cap, "idle")] for cap in caps}
    out.append("- WebSocket `scheduler:status` after a tick that changed the counters: "
               + ", ".join(f"{fmt(r.meter.total(['ws status']) / max(1, r.tenants_connected))} requests per connected "
                           f"tenant at cap {cap:,}" for cap, r in st.items())
               + " (each tenant's status reads the state, the slot counters and counts the holders of every slot "
               "counter, the pending runs and the dead-letter list, then pushes).")
    return out


def latency_note() -> str:
    return ", ".join(f"{op} {ms:g} ms" for op, ms in capacity.LATENCY_MS.items())
