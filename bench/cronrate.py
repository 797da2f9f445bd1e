"""Figure 5: next-fire computations per second, on the same expressions and zones.

The project's ``CronSchedule.parse(...).next_after`` against plain croniter
(``croniter(expr, start).get_next``) and APScheduler 3
(``CronTrigger.from_crontab(...).get_next_fire_time``). Each library parses
each (expression, zone) once, then walks ``k`` successive fires from the same
start; the time is process time of the walks only. Agreement: the share of the
fires each library returns that equal the project's (the libraries differ on
DST gaps/overlaps and APScheduler on day-of-week/day-of-month rules).
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from bench.data import CRON_LIBRARY_CASES, CRON_LIBRARY_ZONES
from chalicelib.domain.cron import CronSchedule

START = datetime(2026, 3, 1, tzinfo=timezone.utc)  # walks cross the March DST changes


@dataclass
class CronRate:
    library: str
    computations: int
    seconds: float
    agree: int

    @property
    def per_second(self) -> float:
        return self.computations / self.seconds if self.seconds > 0 else float("inf")


def _prep_project(expr, zone):
    cs = CronSchedule.parse(expr, zone)

    def walk(k):
        out, t = [], START
        for _ in range(k):
            t = cs.next_after(t)
            out.append(t)
        return out

    return walk


def _prep_croniter(expr, zone):
    from croniter import croniter

    def walk(k):
        it = croniter(expr, START.astimezone(ZoneInfo(zone)))
        return [it.get_next(datetime) for _ in range(k)]

    return walk


def _prep_apscheduler(expr, zone):
    from apscheduler.triggers.cron import CronTrigger

    trig = CronTrigger.from_crontab(expr, timezone=ZoneInfo(zone))

    def walk(k):
        out = []
        t = trig.get_next_fire_time(None, START + timedelta(microseconds=1))  # strictly after, like the others
        while t is not None and len(out) < k:
            out.append(t)
            t = trig.get_next_fire_time(t, t)
        return out

    return walk


LIBRARIES = (("project (chalicelib.domain.cron)", _prep_project), ("croniter 7", _prep_croniter),
             ("APScheduler 3.11", _prep_apscheduler))


def measure(k: int = 200, repeats: int = 3) -> list[CronRate]:
    cases = [(e, z) for e in CRON_LIBRARY_CASES for z in CRON_LIBRARY_ZONES]
    reference = {c: [t.timestamp() for t in _prep_project(*c)(k)] for c in cases}
    out = []
    for name, prep in LIBRARIES:
        walks = {c: prep(*c) for c in cases}
        best = float("inf")
        n = agree = 0
        for _ in range(max(1, repeats)):
            gc.collect()
            n = 0
            t0 = time.process_time()
            results = {}
            for c, walk in walks.items():
                results[c] = walk(k)
                n += len(results[c])
            best = min(best, time.process_time() - t0)
        agree = sum(
            sum(1 for a, b in zip(results[c], reference[c]) if abs(a.timestamp() - b) < 1e-6) for c in cases
        )
        out.append(CronRate(name, n, best, agree))
    return out
