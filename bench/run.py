"""`python -m bench`: measure every cost and speed figure, write bench/RESULTS.md and the plot.

Options: ``--quick`` (tiny sizes: what the smoke test runs), ``--sizes``,
``--out DIR`` (default: this folder). Wall-clock times are printed, never
asserted.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "POWERTOOLS_METRICS_DISABLED": "true",
}


@contextlib.contextmanager
def _offline_env():
    """Fake credentials, no endpoint override: everything stays in this process."""
    saved = {k: os.environ.get(k) for k in (*_ENV, "AWS_ENDPOINT_URL", "AWS_PROFILE")}
    for k, v in _ENV.items():
        os.environ.setdefault(k, v)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds): the smoke test")
    p.add_argument("--sizes", default=None, help="due schedules on moto, comma separated (default 1000,10000)")
    p.add_argument("--worker-sample", type=int, default=None,
                   help="runs the worker handles per size (default 10; 5 above 1,000 due: each run's admission "
                        "reads the whole pending set from moto)")
    p.add_argument("--sim-schedules", type=int, default=None, help="schedules in the simulated day (default 10000)")
    p.add_argument("--sim-hours", type=float, default=None, help="simulated hours (default 24)")
    p.add_argument("--cron-fires", type=int, default=None, help="successive fires per cron case (default 200)")
    p.add_argument("--repeats", type=int, default=None, help="timed replays per CPU figure (default 2)")
    p.add_argument("--caps", default=None, help="caps of the whole-path figures (default 5,100,1000)")
    p.add_argument("--path-runs", type=int, default=None, help="runs per whole-path scenario (default 100)")
    p.add_argument("--threads", type=int, default=32, help="threads of the contention figure (default 32)")
    p.add_argument("--contention-cap", type=int, default=None, help="cap of the contention figure (default 4)")
    p.add_argument("--contention-runs", type=int, default=None, help="runs of the contention figure (default 100)")
    p.add_argument("--out", default=str(HERE), help="where RESULTS.md and lateness.svg go")
    a = p.parse_args(argv)
    quick = a.quick
    a.sizes = [int(x) for x in (a.sizes or ("20" if quick else "1000,10000")).split(",") if x.strip()]
    a.worker_sample = a.worker_sample if a.worker_sample is not None else (3 if quick else None)
    a.sim_schedules = a.sim_schedules or (60 if quick else 10_000)
    a.sim_hours = a.sim_hours or (1.0 if quick else 24.0)
    a.cron_fires = a.cron_fires or (10 if quick else 200)
    a.repeats = a.repeats or (1 if quick else 2)
    a.caps = [int(x) for x in (a.caps or "5,100,1000").split(",") if x.strip()]
    a.path_runs = a.path_runs or (8 if quick else 100)
    a.contention_cap = a.contention_cap or (2 if quick else 4)
    a.contention_runs = a.contention_runs or (6 if quick else 100)
    return a


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with _offline_env():
        from bench import moto_speed

        restore = moto_speed.apply()
        try:
            return _run(args)
        finally:
            restore()


def _run(args) -> int:
    from bench import capacity, cronrate, data, lateness, report
    from bench.aws_bench import measure_cpu, measure_on_moto, profile_by_package
    from bench.capacity import latency_s, mix_seconds

    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.1f} s] {msg}", flush=True)

    machine = report.machine_info()
    log(f"machine: {machine['nproc']} CPUs, {machine['cpu']}, {machine['python']}")

    # --- 1, 2, 6: on moto, then replayed --------------------------------------------------------
    motos, cpus = {}, {}
    for n in args.sizes:
        sample = args.worker_sample if args.worker_sample is not None else (10 if n <= 1000 else 5)
        log(f"figure 1: {n} due schedules on moto")
        motos[n] = measure_on_moto(n, worker_sample=sample, log=lambda m: log(m.strip()))
        log(f"figures 2 and 6: replaying the {n}-fire ticks")
        cpus[n] = measure_cpu(motos[n], repeats=args.repeats, log=lambda m: log(m.strip()))
    big = max(args.sizes)
    m, cpu = motos[big], cpus[big]
    prof_n = min((n for n in args.sizes if n >= 1000), default=big)
    log(f"CPU by package (cProfile, one replay at {prof_n})")
    packages = profile_by_package(motos[prof_n].settings, motos[prof_n].tick_log)

    # --- 7-11: the whole run path, contention ---------------------------------------------------------
    from bench import pathreport
    from bench.contention import measure_contention
    from bench.runpath import measure_path

    paths = {}
    for cap in args.caps:
        for mode in ("idle", "backlog"):
            log(f"figures 7-10: {mode} at cap {cap:,}, {args.path_runs} runs")
            paths[(cap, mode)] = measure_path(cap, mode, args.path_runs, log=lambda x: log(x.strip()))
    log(f"figure 11: contention, {args.threads} threads, cap {args.contention_cap}, {args.contention_runs} runs")
    cont = measure_contention(args.threads, args.contention_cap, args.contention_runs, log=lambda x: log(x.strip()))

    # --- 3: capacity model ---------------------------------------------------------------------------
    from chalicelib.domain.admission import slot_limits

    item_bytes = m.query_bytes / max(1, m.query_items)
    base_item_bytes = m.scan_bytes / max(1, m.n)
    shards = m.settings.due_shards
    tick_model = capacity.TickModel(cpu_per_fire_s=cpu.warm_s / max(1, cpu.fires), item_bytes=item_bytes, shards=shards,
                                    cap=m.cap, slot_shards=len(slot_limits(m.cap)),
                                    pending_shards=m.settings.pending_shards)
    base_model = capacity.BaselineModel(cpu_per_fire_s=cpu.base_s / max(1, cpu.base_fires), item_bytes=base_item_bytes,
                                        table_items=big)
    cap_rows = capacity.capacity_rows(tick_model, base_model, shards)

    # --- 4: lateness over a simulated day --------------------------------------------------------
    runs = max(1, m.worker_runs)

    def per_run(phase: str, ops=None) -> float:
        mix = {op: k / runs for op, k in m.worker[phase].items() if ops is None or op in ops}
        return mix_seconds(mix)

    costs = lateness.Costs(
        cpu_per_fire=cpu.warm_s / max(1, cpu.fires),
        shards=shards,
        claim=per_run("claim"),
        agent_read=per_run("agent read"),
        finish=max(per_run("finish"), latency_s("TransactWriteItems")),
        handoff_query=latency_s("Query"),
        send=latency_s("SendMessageBatch"),
        base_cpu_per_fire=cpu.base_s / max(1, cpu.base_fires),
        base_scan=max(1, math.ceil(args.sim_schedules * base_item_bytes / capacity.PAGE_BYTES)) * latency_s("Scan"),
    )
    scheds = data.schedules(args.sim_schedules)
    scale = args.sim_schedules / 10_000
    scenarios = [
        lateness.Scenario("slots free", cap=1000, median_s=5.0, sigma=0.8),
        lateness.Scenario("saturated", cap=max(2, round(300 * scale)), median_s=5.0, sigma=0.8),
    ]
    sims = {}
    for sc in scenarios:
        log(f"figure 4: simulated day, {sc.name} (cap {sc.cap}), {args.sim_schedules} schedules, {args.sim_hours:g} h")
        sims[(sc.name, "project")] = lateness.simulate_project(scheds, sc, costs, args.sim_hours)
        sims[(sc.name, "baseline")] = lateness.simulate_baseline(scheds, sc, costs, args.sim_hours)
        if sc is scenarios[0]:  # the other way of computing DelaySeconds, for comparison
            sims[(sc.name, "variant")] = lateness.simulate_project(scheds, sc, costs, args.sim_hours,
                                                                   delay_from_send=not lateness.code_delays_at_send())

    # --- 5: cron libraries ---------------------------------------------------------------------------
    log("figure 5: next-fire computations per second")
    rates = cronrate.measure(k=args.cron_fires, repeats=args.repeats)

    # --- the table -------------------------------------------------------------------------------------
    rows: list[list[str]] = []
    fmt, ratio = report.fmt, report.ratio
    for n in args.sizes:
        mm = motos[n]
        rows.append(["1", "AWS requests per fire, tick path", f"{n:,} due", fmt(mm.tick_per_fire()),
                     fmt(mm.base_tick_per_fire()), ratio(mm.tick_per_fire(), mm.base_tick_per_fire()), "< 0.5",
                     _met(mm.tick_per_fire() < 0.5)])
    for n in args.sizes:
        mm = motos[n]
        rows.append(["1", f"AWS requests per run, worker path (sample of {mm.worker_runs} runs, per-run mean)",
                     f"{n:,} due", fmt(mm.worker_per_run()), fmt(mm.base_worker_per_run()),
                     ratio(mm.worker_per_run(), mm.base_worker_per_run()), "-", "-"])
    for n in args.sizes:
        mm = motos[n]
        p_tot = mm.tick_per_fire() + mm.worker_per_run()
        b_tot = mm.base_tick_per_fire() + mm.base_worker_per_run()
        rows.append(["1", "AWS requests per fire, whole dispatch path (tick + worker, extrapolated)", f"{n:,} due",
                     fmt(p_tot), fmt(b_tot), ratio(p_tot, b_tot), "-", "-"])
    for n in args.sizes:
        c = cpus[n]
        rows.append(["2", "tick CPU per fire, µs: whole tick, AWS answered from a recording (planning + "
                     "pynamodb/botocore serialization and parsing; warm)", f"{n:,} due",
                     fmt(c.per_fire_us), fmt(c.base_per_fire_us), ratio(c.per_fire_us, c.base_per_fire_us),
                     "< 100 µs", _met(c.per_fire_us < 100)])
    for n in args.sizes:
        c = cpus[n]
        rows.append(["2", "tick CPU per fire, µs: planning only (plan_fires + session ids + plan_admission; "
                     "baseline: croniter next fire)", f"{n:,} due", fmt(c.plan_per_fire_us),
                     fmt(c.base_plan_per_fire_us), ratio(c.plan_per_fire_us, c.base_plan_per_fire_us),
                     "< 100 µs", _met(c.plan_per_fire_us < 100)])
    for label, p_cap, b_cap in cap_rows:
        rows.append(["3", f"tick capacity, fires per 60 s tick (model): {label}", f"measured at {big:,}",
                     fmt(p_cap), fmt(b_cap), ratio(p_cap, b_cap), "-", "-"])
    for sc in scenarios:
        p, b = sims[(sc.name, "project")], sims[(sc.name, "baseline")]
        for q, name in ((50, "p50"), (99, "p99"), (None, "max")):
            pv = p.max if q is None else p.pct(q)
            bv = b.max if q is None else b.pct(q)
            target = "< 1 s" if (q == 99 and sc is scenarios[0]) else "-"
            met = _met(pv < 1.0) if target != "-" else "-"
            rows.append(["4", f"start lateness {name}, s: {sc.name} (cap {sc.cap})",
                         f"{args.sim_schedules:,} schedules, {args.sim_hours:g} h, {len(p.lateness):,} runs",
                         fmt(pv), fmt(bv), ratio(pv, bv), target, met])
    ours = rates[0]
    for other in rates[1:]:
        rows.append(["5", f"next-fire computations per second (vs {other.library})",
                     f"{len(data.CRON_LIBRARY_CASES) * len(data.CRON_LIBRARY_ZONES)} cases x {args.cron_fires}",
                     fmt(ours.per_second), fmt(other.per_second), ratio(ours.per_second, other.per_second), "-", "-"])
    rows.append(["6", "tick memory, tracemalloc peak, MB", f"{big:,} due (baseline: its first scan page)", fmt(cpu.peak_bytes / 1e6),
                 fmt(cpu.base_peak_bytes / 1e6), ratio(cpu.peak_bytes, cpu.base_peak_bytes), "-", "-"])
    base_path = m.base_tick_per_fire() + m.base_worker_per_run()
    rows += pathreport.rows(paths, args.caps, cont, tick_model, base_path)
    # --- 12: the callback path of async runs (no baseline: a synchronous run has none) ----------------
    from bench.callbackpath import measure_callback_path

    log("figure 12: the callback path of async runs")
    cbp = measure_callback_path(5 if args.quick else 50)
    for line in cbp.lines():
        log(line)
    rows.append(["12", "own AWS requests per async run, callback path (claim with the token's hash, agent read, "
                 "accept, one progress, one heartbeat, complete; events apart)", f"{cbp.runs} runs",
                 fmt(cbp.own_per_run()), "-", "-", "-", "-"])
    header = ["#", "figure", "data", "project", "baseline", "project ÷ baseline", "target", "met"]

    elapsed = time.perf_counter() - t_start
    extra = pathreport.sections(paths, args.caps, cont, tick_model, tick_model.capacity())
    notes = pathreport.observations(paths, args.caps, cont)
    md = _markdown(args, machine, header, rows, motos, cpus, packages, cap_rows, tick_model, base_model, item_bytes,
                   base_item_bytes, costs, scenarios, sims, rates, elapsed, extra, notes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "RESULTS.md").write_text(md, encoding="utf-8")
    series = []
    for sc, dash in zip(scenarios, ("", "7,4")):
        series.append((f"project, {sc.name}", "project", dash, lateness.tail_points(sims[(sc.name, "project")].lateness)))
        series.append((f"baseline, {sc.name}", "baseline", dash,
                       lateness.tail_points(sims[(sc.name, "baseline")].lateness)))
    series.append((f"project, {lateness.variant_label(not lateness.code_delays_at_send()).replace('DelaySeconds', 'delay')}",
                   "variant", "2,3",
                   lateness.tail_points(sims[(scenarios[0].name, "variant")].lateness)))
    (out / "lateness.svg").write_text(
        report.lateness_svg(series, f"Start lateness, simulated {args.sim_hours:g} h, {args.sim_schedules:,} schedules"),
        encoding="utf-8",
    )
    print()
    print(report.text_table(header, rows))
    print()
    print(f"wrote {out / 'RESULTS.md'} and {out / 'lateness.svg'} in {elapsed:.0f} s")
    return 0


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def _markdown(args, machine, header, rows, motos, cpus, packages, cap_rows, tick_model, base_model, item_bytes,
              base_item_bytes, costs, scenarios, sims, rates, elapsed, extra="", notes=()) -> str:
    from bench import capacity, data, lateness, report
    from bench.aws_bench import WORKER_PHASES

    fmt = report.fmt
    big = max(args.sizes)
    L = []
    L.append("# Benchmarks: cost and speed\n")
    L.append("Generated by `make bench` (`python -m bench`); do not edit by hand. Each figure is measured for the "
             "project and, in the same process and on the same data, for the plain baseline of `bench/baseline.py` "
             "(scan the table, one conditional UpdateItem and one SendMessage per due item, start at the next "
             "minute). *project ÷ baseline* below 1 means fewer requests / less CPU / less lateness / less memory; "
             "for rates and capacity, above 1 means more.\n")
    L.append("## Machine and data\n")
    L.append(f"- machine: nproc {machine['nproc']}, {machine['cpu']}, {machine['python']}, {machine['os']}")
    L.append(f"- packages: {machine['packages']}")
    L.append(f"- figure 1, 2, 6: {', '.join(f'{n:,}' for n in args.sizes)} schedules due in one tick, bulk-loaded "
             f"into moto (the project's agents table, and the same items into the baseline's table); "
             f"`max_concurrent_agents` = {', '.join(str(motos[n].cap) for n in args.sizes)} (1,000 is the setting's "
             f"upper bound); {fmt(item_bytes)} bytes per due item in a Query page; worker sample "
             f"{', '.join(f'{motos[n].worker_runs} runs at {n:,}' for n in args.sizes)}")
    L.append(f"- figure 4: {args.sim_schedules:,} schedules of the mix below, {args.sim_hours:g} simulated hours from "
             f"{lateness.DAY_START.isoformat()}, {sims[(scenarios[0].name, 'project')].fires:,} fires")
    L.append(f"- figure 5: {len(data.CRON_LIBRARY_CASES)} expressions x {len(data.CRON_LIBRARY_ZONES)} zones "
             f"({', '.join(data.CRON_LIBRARY_ZONES)}), {args.cron_fires} successive fires each from "
             f"2026-03-01 (across the March DST changes)")
    L.append(f"- `make bench` took {elapsed:.0f} s\n")
    L.append("Schedule mix (share of 10,000; a fifth of the schedules have up to 30 s of jitter; priorities "
             "5 % CRITICAL, 15 % HIGH, 60 % NORMAL, 20 % LOW; 20 tenants):\n")
    L.append(", ".join(f"`{e}` {z} x{k}" for e, z, k in data.MIX) + "\n")
    L.append("## Results\n")
    L.append(report.markdown_table(header, rows) + "\n")
    L.append("![start lateness](lateness.svg)\n")
    L.append(_observations(motos, cpus, sims, scenarios, big, notes))

    L.append("## 1. Requests per fire, by operation\n")
    L.append("Counted with botocore `before-send` hooks (one per HTTP request, retries included) on pynamodb's "
             "clients (one per model connection) and the boto3 clients; `before-call` counted the same API calls "
             "(no retries on moto). The worker ran on a sample of the admitted runs; its figures are per-run means "
             "over that sample, extrapolated to every run (at 10,000 due the cap binds: the sample's runs hand "
             "their slots to waiting runs). The SQS receive/delete of the Lambda event source mapping is AWS's "
             "and not counted for either system. The whole path per run, idle and under backlog, is section 7.\n")
    hdr = ["size", "path", "requests", "by operation", "KB sent / received"]
    rws = []
    for n in args.sizes:
        mm = motos[n]
        rws.append([f"{n:,}", f"project tick ({mm.tick_report['created']:,} fires, "
                    f"{mm.tick_report['admitted']:,} admitted)", f"{sum(mm.tick.values()):,}", _ops(mm.tick),
                    f"{mm.tick_bytes / 1e3:,.0f} / {mm.tick_bytes_in / 1e3:,.0f}"])
        for ph in WORKER_PHASES:
            out_b, in_b = mm.worker_bytes.get(ph, (0, 0))
            k = max(1, mm.worker_runs)
            rws.append([f"{n:,}", f"project worker: {ph} (per run)", fmt(sum(mm.worker[ph].values()) / k),
                        _ops(mm.worker[ph], k), f"{out_b / k / 1e3:,.1f} / {in_b / k / 1e3:,.1f}"])
        rws.append([f"{n:,}", f"baseline tick ({mm.base_tick_report['sent']:,} fires)",
                    f"{sum(mm.base_tick.values()):,}", _ops(mm.base_tick), "-"])
        rws.append([f"{n:,}", "baseline worker (per run)", fmt(mm.base_worker_per_run()),
                    _ops(mm.base_worker, max(1, mm.base_worker_runs)), "-"])
    L.append(report.markdown_table(hdr, rws) + "\n")

    L.append("## 2. Tick CPU, replayed\n")
    L.append("The tick recorded on moto is run again with every request answered from the recording by a botocore "
             "`before-send` hook (bench/counting.py `Replayer`): the project's code, pynamodb and botocore "
             "(serialization and parsing) run as in Lambda; no moto, no network. `time.process_time` over the "
             f"whole `Dispatcher.tick()`; warm = best of {args.repeats} with the cron cache filled, cold = the "
             "first replay with `cron_for`'s cache empty. *Planning only* times the project's pure planners on the "
             "same schedules outside the tick (`plan_fires`, scheduled session ids, `plan_admission`), against the "
             "baseline's planning (croniter's next fire per item). Memory: `tracemalloc` peak over one more replay; the "
             "baseline streams (one Scan page, then one request per item), so its peak is taken over its first page "
             "and that page's items.\n")
    hdr = ["size", "fires", "cold µs/fire", "warm µs/fire", "baseline µs/fire", "planning only µs/fire",
           "baseline planning µs/fire", "peak MB (tracemalloc)", "baseline peak MB"]
    rws = [[f"{n:,}", f"{cpus[n].fires:,}", fmt(cpus[n].cold_per_fire_us), fmt(cpus[n].per_fire_us),
            fmt(cpus[n].base_per_fire_us), fmt(cpus[n].plan_per_fire_us), fmt(cpus[n].base_plan_per_fire_us),
            fmt(cpus[n].peak_bytes / 1e6), fmt(cpus[n].base_peak_bytes / 1e6)]
           for n in args.sizes]
    L.append(report.markdown_table(hdr, rws) + "\n")
    cpu = cpus[big]
    L.append(f"Where the tick's CPU goes at {big:,} fires (one instrumented warm replay; exclusive time per "
             "section):\n")
    tot = sum(cpu.sections.values()) or 1.0
    rws = [[k, fmt(v / max(1, cpu.fires) * 1e6), f"{v / tot:.0%}"]
           for k, v in sorted(cpu.sections.items(), key=lambda kv: -kv[1])]
    L.append(report.markdown_table(["section", "µs per fire", "share"], rws) + "\n")
    L.append("By where the code lives (cProfile own time, one replay at "
             f"{min((n for n in args.sizes if n >= 1000), default=big):,} fires; profiling inflates small calls):\n")
    L.append(report.markdown_table(["code", "share"], [[k, f"{v:.0%}"] for k, v in packages.items()]) + "\n")

    L.append("## 3. Tick capacity (model)\n")
    lat = ", ".join(f"{op} {ms:g} ms" for op, ms in capacity.LATENCY_MS.items())
    L.append(f"Assumed latency per request (same region, p50): {lat}; a Query/Scan page holds at most 1 MB "
             f"({fmt(item_bytes)} bytes per due item measured, {fmt(base_item_bytes)} per baseline item). "
             f"Tick time(n) = fixed requests (state, last tick, slot counters read twice, "
             f"{tick_model.pending_shards} pending quer{'y' if tick_model.pending_shards == 1 else 'ies'}, and per "
             f"slot counter ({tick_model.slot_shards}) the recovery sweep's and the reconciler's queries, plus the "
             "waiting hints when runs are left waiting) + due pages "
             f"+ n x CPU per fire ({fmt(tick_model.cpu_per_fire_s * 1e6)} µs measured) + n x 2 / 100 "
             "TransactWriteItems + the admission of min(n, cap) runs (one transaction per 99 runs and one "
             f"SendMessageBatch per 10; cap {tick_model.cap:,}; the slot counters are small items of at most 100 "
             "slots each, whatever the cap). "
             "Baseline time(n) = scan pages + n x (UpdateItem + "
             f"SendMessage + {fmt(base_model.cpu_per_fire_s * 1e6)} µs CPU). Capacity = largest n inside 60 s.\n")
    L.append(report.markdown_table(["variant", "project", "baseline"],
                                   [[a, fmt(b), fmt(c)] for a, b, c in cap_rows]) + "\n")

    L.append("## 4. Start lateness, simulated\n")
    L.append("Discrete-event simulation (bench/lateness.py) with the project's own `plan_fires` and "
             "`plan_admission`; a tick each minute at the minute plus an invocation lag of "
             f"{lateness.TICK_LAG[0]:g}-{lateness.TICK_LAG[1]:g} s (same ticks for both); SQS hands a message to a "
             f"worker {lateness.SQS_DELIVERY[0]:g}-{lateness.SQS_DELIVERY[1]:g} s after its delay; run durations "
             "lognormal (median 5 s), the same per fire for both. Request latencies as in 3, request mixes as "
             "measured in 1: "
             f"tick reads {costs.tick_pre * 1e3:.0f} ms + {costs.cpu_per_fire * 1e6:.0f} µs CPU per fire, claim "
             f"{costs.claim * 1e3:.0f} ms and agent read {costs.agent_read * 1e3:.0f} ms before the start, finish "
             f"{costs.finish * 1e3:.0f} ms; when runs wait, the finishing worker looks for the first one "
             f"({costs.handoff_query * 1e3:.0f} ms), hands it the slot in the finish transaction and sends it "
             f"({costs.send * 1e3:.0f} ms); baseline scan {costs.base_scan * 1e3:.0f} ms and "
             f"{(latency_ms('UpdateItem') + latency_ms('SendMessage')):.0f} ms + "
             f"{costs.base_cpu_per_fire * 1e6:.0f} µs per fire. Start = when the agent's code starts (after the "
             "claim and the agent's read); lateness = start - scheduled time (fire + jitter). The code as it is computes "
             f"DelaySeconds {'when each batch is sent' if lateness.code_delays_at_send() else 'from the tick start'}; "
             "the other way is simulated as a variant for comparison.\n")
    hdr = ["scenario", "system", "runs", "p50 s", "p99 s", "max s", "> 1 s late", "waited for a slot",
           "p99 CRITICAL", "p99 HIGH", "p99 NORMAL", "p99 LOW"]
    rws = []
    for (scn, _system), r in sims.items():
        s = lateness.summarize(r)
        label = r.system
        cap = next(x.cap for x in scenarios if x.name == scn)
        rws.append([f"{scn} (cap {cap})", label, f"{s['runs']:,}", fmt(s["p50"]), fmt(s["p99"]), fmt(s["max"]),
                    f"{s['late_over_1s']:.2%}", f"{s['waited']:,}"]
                   + [fmt(s["by_priority_p99"][p]) for p in ("CRITICAL", "HIGH", "NORMAL", "LOW")])
    L.append(report.markdown_table(hdr, rws) + "\n")

    L.append("## 5. Cron libraries\n")
    L.append("Each library parses every (expression, zone) once, then walks successive fires; process time of the "
             "walks, best of the repeats. Agreement = fires equal to the project's (croniter and APScheduler "
             "differ from Vixie cron on some DST instants; APScheduler also on day-of-week rules).\n")
    rws = [[r.library, f"{r.computations:,}", fmt(r.per_second), f"{r.agree / max(1, r.computations):.1%}"]
           for r in rates]
    L.append(report.markdown_table(["library", "computations", "per second", "agree with the project"], rws) + "\n")
    L.append("Expressions: " + ", ".join(f"`{e}`" for e in data.CRON_LIBRARY_CASES) + "\n")
    L.append(extra)
    return "\n".join(L)


def _observations(motos, cpus, sims, scenarios, big, notes=()) -> str:
    """What the numbers say, computed from them (no hand-written figures)."""
    from bench import lateness
    from bench.report import fmt

    m, c = motos[big], cpus[big]
    k = max(1, m.worker_runs)
    top = sorted(c.sections.items(), key=lambda kv: -kv[1])[:3]
    free = scenarios[0].name
    p = lateness.summarize(sims[(free, "project")])
    v = lateness.summarize(sims[(free, "variant")])
    out = ["## Observations (computed from the figures above)\n"]
    out.append(f"- Tick path at {big:,}: {fmt(m.tick_per_fire())} requests per fire "
               f"({m.tick.get('TransactWriteItems', 0):,} TransactWriteItems, "
               f"{m.tick.get('SendMessageBatch', 0):,} SendMessageBatch, {m.tick.get('Query', 0)} Query).")
    out.append(f"- Worker path at {big:,} due (cap {m.cap:,}, runs waiting): {fmt(m.worker_per_run())} requests per "
               "run: " + "; ".join(f"{ph} " + ", ".join(f"{op} {n / k:g}" for op, n in m.worker[ph].most_common())
                                   for ph in m.worker if m.worker[ph]) + ".")
    out += list(notes)
    out.append(f"- Tick CPU at {big:,}: {fmt(c.per_fire_us)} µs per fire in all, {fmt(c.plan_per_fire_us)} µs of it "
               "planning; most of it: " + "; ".join(f"{name} {fmt(t / max(1, c.fires) * 1e6)} µs" for name, t in top)
               + ".")
    other = lateness.variant_label(not lateness.code_delays_at_send())
    line = (f"- Lateness, {free}: p99 {fmt(p['p99'])} s as the code is (p99 LOW {fmt(p['by_priority_p99']['LOW'])} s); "
            f"{fmt(v['p99'])} s with {other} (p99 LOW {fmt(v['by_priority_p99']['LOW'])} s)")
    sat = lateness.summarize(sims[(scenarios[1].name, "project")])
    line += (f". Saturated (cap {scenarios[1].cap}): {sat['waited']:,} of {sat['runs']:,} runs waited for a slot; a run "
             "holds its slot from admission (up to the lookahead before it starts) to the end of its attempt")
    out.append(line + ".\n")
    return "\n".join(out)


def latency_ms(op: str) -> float:
    from bench.capacity import LATENCY_MS

    return LATENCY_MS[op]


def _ops(counter, div: int = 1) -> str:
    from bench.report import fmt

    return ", ".join(f"{op} {fmt(k / div) if div != 1 else f'{k:,}'}" for op, k in counter.most_common()) or "-"
