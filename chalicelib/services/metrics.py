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


def tick_finished(fires: int, admitted: int, duration_ms: float) -> None:
    """A tick that ran to the end: ``TickSucceeded`` (its absence raises the missing-tick alarm),
    ``TickDuration``, ``Fires`` (schedules found due) and ``RunsAdmitted``."""
    with _lock:
        metrics.add_metric(name="TickSucceeded", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="TickDuration", unit=MetricUnit.Milliseconds, value=round(max(0.0, duration_ms), 1))
        metrics.add_metric(name="Fires", unit=MetricUnit.Count, value=max(0, fires))
        metrics.add_metric(name="RunsAdmitted", unit=MetricUnit.Count, value=max(0, admitted))


def flush() -> None:
    with _lock:
        metrics.flush_metrics()


def tick_done(report) -> None:
    """What a tick repaired or could not write (the tick's own counts: ``tick_finished``)."""
    with _lock:
        metrics.add_metric(name="RunsRecovered", unit=MetricUnit.Count, value=report.recovered + report.resent)
        metrics.add_metric(name="TickFailedGroups", unit=MetricUnit.Count, value=report.failed_groups)


def counter_repaired() -> None:
    """The reconciler set a slot counter to its holders: alarmed on (should never happen)."""
    with _lock:
        metrics.add_metric(name="CounterRepairs", unit=MetricUnit.Count, value=1)


def cancel_notice_failed() -> None:
    """An async agent's ``agent.cancel`` notice could not be delivered (best effort)."""
    with _lock:
        metrics.add_metric(name="CancelNoticesFailed", unit=MetricUnit.Count, value=1)


def callback_received(action: str) -> None:
    with _lock:
        metrics.add_metric(name="Callbacks", unit=MetricUnit.Count, value=1)
