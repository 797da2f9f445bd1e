"""CloudWatch alarms (each notifies the alert topic) and the operations dashboard.

The app's own metrics are EMF lines written by Powertools (chalicelib/services/metrics.py):
namespace ``AgentScheduler``, one dimension ``service``. infra/README.md has a runbook
entry for every alarm here.
"""
from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from chalicelib.services import metrics as app_metrics

# Metric names the app emits (chalicelib/services/metrics.py), and the reconciler's.
TICK_SUCCEEDED = "TickSucceeded"
TICK_DURATION = "TickDuration"
FIRES = "Fires"
RUNS_ADMITTED = "RunsAdmitted"
LATENESS_METRIC = "StartLateness"
RUNS_STARTED = "RunsStarted"
RUN_OUTCOMES = ("RunsSucceeded", "RunsFailed", "RunsDead")
RUNS_DEAD = "RunsDead"
COUNTER_REPAIRS = "CounterRepairs"  # the reconciler: a slot or counter it had to put right

MINUTE = Duration.minutes(1)
FIVE = Duration.minutes(5)


def app_metric(name: str, statistic: str = "Sum", period: Duration = FIVE, label: str | None = None) -> cw.Metric:
    return cw.Metric(
        namespace=app_metrics.NAMESPACE,
        metric_name=name,
        dimensions_map={"service": app_metrics.metrics.service},
        statistic=statistic,
        period=period,
        label=label,
    )


def lambda_metric(name: str, function_name: str, statistic: str, period: Duration = FIVE,
                  label: str | None = None) -> cw.Metric:
    return cw.Metric(
        namespace="AWS/Lambda",
        metric_name=name,
        dimensions_map={"FunctionName": function_name},
        statistic=statistic,
        period=period,
        label=label,
    )


def api_metric(name: str, api_name: str, api_stage: str, statistic: str = "Sum", period: Duration = FIVE) -> cw.Metric:
    return cw.Metric(
        namespace="AWS/ApiGateway",
        metric_name=name,
        dimensions_map={"ApiName": api_name, "Stage": api_stage},
        statistic=statistic,
        period=period,
    )


def add_alarms(
    scope: Construct,
    *,
    topic: sns.ITopic,
    dlq: sqs.IQueue,
    work_queue: sqs.IQueue,
    tick_function_name: str,
    tick_timeout_seconds: int,
    worker_function_name: str,
    api_name: str,
    api_stage: str,
    stage,
) -> dict[str, cw.Alarm]:
    knobs = stage.knobs
    prefix = f"{stage.app_name}-{stage.name}"
    at_least = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
    above = cw.ComparisonOperator.GREATER_THAN_THRESHOLD
    quiet = cw.TreatMissingData.NOT_BREACHING

    def alarm(key: str, description: str, metric: cw.IMetric, threshold: float, comparison=at_least,
              evaluation_periods: int = 1, missing=quiet, datapoints: int | None = None) -> cw.Alarm:
        return cw.Alarm(
            scope, f"{key}Alarm",
            alarm_name=f"{prefix}-{key}",
            alarm_description=description + " Runbook: infra/README.md#" + key.lower(),
            metric=metric, threshold=threshold, comparison_operator=comparison,
            evaluation_periods=evaluation_periods, datapoints_to_alarm=datapoints, treat_missing_data=missing,
        )

    minutes = knobs.missing_tick_minutes
    alarms = {
        "TickMissing": alarm(
            "TickMissing",
            f"No tick finished successfully for {minutes} minutes: schedules are not being admitted.",
            app_metric(TICK_SUCCEEDED, "Sum", MINUTE), 1, cw.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=minutes, missing=cw.TreatMissingData.BREACHING,  # no data = no tick
        ),
        "TickDuration": alarm(
            "TickDuration",
            f"The tick used more than {knobs.tick_duration_fraction:.0%} of its {tick_timeout_seconds} s budget "
            "in 3 consecutive minutes: it will soon overrun its minute.",
            lambda_metric("Duration", tick_function_name, "Maximum", MINUTE),
            round(tick_timeout_seconds * 1000 * knobs.tick_duration_fraction), above, evaluation_periods=3,
        ),
        "QueueAge": alarm(
            "QueueAge",
            f"The oldest work-queue message is older than {knobs.queue_age_alarm_seconds} s for 10 minutes: "
            "admitted runs are not being started.",
            work_queue.metric_approximate_age_of_oldest_message(statistic="Maximum", period=FIVE),
            knobs.queue_age_alarm_seconds, above, evaluation_periods=2,
        ),
        "WorkerErrors": alarm(
            "WorkerErrors",
            "The worker crashed or timed out (agent failures are recorded outcomes, not errors).",
            lambda_metric("Errors", worker_function_name, "Sum"), 1,
        ),
        "WorkerThrottles": alarm(
            "WorkerThrottles",
            "The worker was throttled (account or function concurrency exhausted): runs start late.",
            lambda_metric("Throttles", worker_function_name, "Sum"), 1,
        ),
        "Api5xx": alarm(
            "Api5xx",
            f"The REST API answered {knobs.api_5xx_per_5_minutes} or more 5xx in 5 minutes.",
            api_metric("5XXError", api_name, api_stage), knobs.api_5xx_per_5_minutes,
        ),
        "DeadRuns": alarm(
            "DeadRuns",
            "Runs went to the dead-letter list (GET /api/dlq): inspect, fix, POST /api/dlq/redrive.",
            app_metric(RUNS_DEAD), 1,
        ),
        "QueueDlqDepth": alarm(
            "QueueDlqDepth",
            "Messages are in the work queue's redrive target (the SQS DLQ): a message crashed the worker "
            "on every receive. GET /api/dlq lists them; POST /api/dlq/redrive runs them again.",
            dlq.metric_approximate_number_of_messages_visible(statistic="Maximum", period=FIVE), 1,
        ),
        "CounterRepairs": alarm(
            "CounterRepairs",
            "The reconciler had to repair a slot or concurrency counter: something let one drift.",
            app_metric(COUNTER_REPAIRS), 0, above,
        ),
        "StartLateness": alarm(
            "StartLateness",
            f"p99 run start lateness above {knobs.lateness_p99_ms:g} ms for 15 minutes "
            "(runs start later than their fire time).",
            app_metric(LATENESS_METRIC, "p99"), knobs.lateness_p99_ms, above, evaluation_periods=3,
        ),
    }
    for a in alarms.values():
        a.add_alarm_action(cw_actions.SnsAction(topic))
    return alarms


def add_dashboard(
    scope: Construct,
    *,
    alarms: dict[str, cw.Alarm],
    dlq: sqs.IQueue,
    work_queue: sqs.IQueue,
    tick_function_name: str,
    tick_timeout_seconds: int,
    worker_function_name: str,
    api_name: str,
    api_stage: str,
    stage,
) -> cw.Dashboard:
    """Tick duration, fires, lateness, runs by outcome, queue age; then workers, API and alarms."""
    w, h = 8, 6
    dashboard = cw.Dashboard(scope, "Dashboard", dashboard_name=f"{stage.app_name}-{stage.name}")
    dashboard.add_widgets(
        cw.GraphWidget(title="Tick duration (ms)", width=w, height=h, left=[
            app_metric(TICK_DURATION, "p50", MINUTE, "p50"), app_metric(TICK_DURATION, "Maximum", MINUTE, "max"),
        ], left_annotations=[cw.HorizontalAnnotation(value=tick_timeout_seconds * 1000, label="timeout")]),
        cw.GraphWidget(title="Fires and admitted runs per minute", width=w, height=h, left=[
            app_metric(FIRES, "Sum", MINUTE, "fires"), app_metric(RUNS_ADMITTED, "Sum", MINUTE, "admitted"),
            app_metric(TICK_SUCCEEDED, "Sum", MINUTE, "ticks"),
        ]),
        cw.GraphWidget(title="Run start lateness (ms)", width=w, height=h, left=[
            app_metric(LATENESS_METRIC, "p50", label="p50"), app_metric(LATENESS_METRIC, "p99", label="p99"),
            app_metric(LATENESS_METRIC, "Maximum", label="max"),
        ]),
    )
    dashboard.add_widgets(
        cw.GraphWidget(title="Runs by outcome", width=w, height=h, stacked=True, left=[
            app_metric(RUNS_STARTED, label="started"),
            *(app_metric(name, label=name.removeprefix("Runs").lower()) for name in RUN_OUTCOMES),
        ]),
        cw.GraphWidget(title="Work queue: oldest message (s) and depth", width=w, height=h, left=[
            work_queue.metric_approximate_age_of_oldest_message(statistic="Maximum", period=MINUTE, label="oldest (s)"),
        ], right=[
            work_queue.metric_approximate_number_of_messages_visible(statistic="Maximum", period=MINUTE, label="visible"),
            work_queue.metric_approximate_number_of_messages_not_visible(statistic="Maximum", period=MINUTE,
                                                                         label="in flight"),
            dlq.metric_approximate_number_of_messages_visible(statistic="Maximum", period=MINUTE, label="SQS DLQ"),
        ]),
        cw.GraphWidget(title="Worker: errors, throttles, concurrency", width=w, height=h, left=[
            lambda_metric("Errors", worker_function_name, "Sum", label="errors"),
            lambda_metric("Throttles", worker_function_name, "Sum", label="throttles"),
            app_metric(COUNTER_REPAIRS, label="counter repairs"),
        ], right=[lambda_metric("ConcurrentExecutions", worker_function_name, "Maximum", label="concurrent")]),
    )
    dashboard.add_widgets(
        cw.GraphWidget(title="REST API", width=w, height=h, left=[
            api_metric("Count", api_name, api_stage), api_metric("4XXError", api_name, api_stage),
            api_metric("5XXError", api_name, api_stage),
        ], right=[api_metric("Latency", api_name, api_stage, "p99")]),
        cw.AlarmStatusWidget(title="Alarms", width=2 * w, height=h, alarms=list(alarms.values())),
    )
    # CDK writes the body as an Fn::Join of JSON text and tokens (cfn-lint's informational I1022).
    dashboard.node.default_child.add_metadata("cfn-lint", {"config": {"ignore_checks": ["I1022"]}})
    return dashboard
