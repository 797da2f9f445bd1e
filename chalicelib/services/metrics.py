"""Run metrics in CloudWatch EMF through Powertools. No-ops outside Lambda's flush."""
from __future__ import annotations

import threading

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

NAMESPACE = "AgentScheduler"
metrics = Metrics(namespace=NAMESPACE, service="agent-scheduler")
_lock = threading.Lock()


def run_started(lateness_seconds: float) -> None:
    with _lock:
        metrics.add_metric(name="RunsStarted", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="StartLateness", unit=MetricUnit.Milliseconds, value=round(lateness_seconds * 1000, 1))


def run_finished(outcome: str, duration_ms: int) -> None:
    name = {"succeeded": "RunsSucceeded", "failed": "RunsFailed", "dead": "RunsDead"}[outcome]
    with _lock:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="RunDuration", unit=MetricUnit.Milliseconds, value=max(0, duration_ms))
        if outcome == "dead":
            metrics.add_metric(name="RunsFailed", unit=MetricUnit.Count, value=1)


def flush() -> None:
    with _lock:
        metrics.flush_metrics()


def tick_done(report) -> None:
    """One tick: how many schedules were due, runs created and admitted, repairs made."""
    with _lock:
        metrics.add_metric(name="Ticks", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="Fires", unit=MetricUnit.Count, value=report.created)
        metrics.add_metric(name="RunsAdmitted", unit=MetricUnit.Count, value=report.admitted)
        metrics.add_metric(name="RunsRecovered", unit=MetricUnit.Count, value=report.recovered + report.resent)
        metrics.add_metric(name="TickFailedGroups", unit=MetricUnit.Count, value=report.failed_groups)


def counter_repaired() -> None:
    """The reconciler set a slot counter to its holders: alarmed on (should never happen)."""
    with _lock:
        metrics.add_metric(name="CounterRepairs", unit=MetricUnit.Count, value=1)
