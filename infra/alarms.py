"""CloudWatch alarms, each notifying the alert topic."""
from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from chalicelib.services import metrics as app_metrics

LATENESS_METRIC = "StartLateness"  # chalicelib/services/metrics.py: run_started()


def _lambda_metric(name: str, function_name: str, statistic: str, period: Duration) -> cw.Metric:
    return cw.Metric(
        namespace="AWS/Lambda",
        metric_name=name,
        dimensions_map={"FunctionName": function_name},
        statistic=statistic,
        period=period,
    )


def add_alarms(
    scope: Construct,
    *,
    topic: sns.ITopic,
    dlq: sqs.IQueue,
    tick_function_name: str,
    tick_timeout_seconds: int,
    worker_function_name: str,
    stage,
) -> list[cw.Alarm]:
    knobs = stage.knobs
    prefix = f"{stage.app_name}-{stage.name}"
    minute = Duration.minutes(1)
    five = Duration.minutes(5)
    alarms = [
        cw.Alarm(
            scope, "DlqNotEmptyAlarm",
            alarm_name=f"{prefix}-dlq-not-empty",
            alarm_description="Dead runs are waiting in the DLQ: inspect GET /api/dlq, fix, POST /api/dlq/redrive.",
            metric=dlq.metric_approximate_number_of_messages_visible(statistic="Maximum", period=five),
            threshold=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        ),
        cw.Alarm(
            scope, "TickErrorsAlarm",
            alarm_name=f"{prefix}-tick-errors",
            alarm_description="The minute tick failed in 2 of the last 3 minutes: schedules are not being admitted.",
            metric=_lambda_metric("Errors", tick_function_name, "Sum", minute),
            threshold=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        ),
        cw.Alarm(
            scope, "TickDurationAlarm",
            alarm_name=f"{prefix}-tick-duration",
            alarm_description=(
                f"The tick used more than {knobs.tick_duration_fraction:.0%} of its {tick_timeout_seconds} s budget "
                "in 3 consecutive minutes: it will soon overrun its minute."
            ),
            metric=_lambda_metric("Duration", tick_function_name, "Maximum", minute),
            threshold=round(tick_timeout_seconds * 1000 * knobs.tick_duration_fraction),
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        ),
        cw.Alarm(
            scope, "WorkerThrottlesAlarm",
            alarm_name=f"{prefix}-worker-throttles",
            alarm_description="The worker was throttled (account or function concurrency exhausted): runs start late.",
            metric=_lambda_metric("Throttles", worker_function_name, "Sum", five),
            threshold=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        ),
        cw.Alarm(
            scope, "StartLatenessAlarm",
            alarm_name=f"{prefix}-start-lateness",
            alarm_description=(
                f"p99 run start lateness above {knobs.lateness_p99_ms:g} ms for 15 minutes "
                "(runs start later than their fire time)."
            ),
            metric=cw.Metric(
                namespace=app_metrics.NAMESPACE,
                metric_name=LATENESS_METRIC,
                dimensions_map={"service": app_metrics.metrics.service},
                statistic="p99",
                period=five,
            ),
            threshold=knobs.lateness_p99_ms,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        ),
    ]
    for alarm in alarms:
        alarm.add_alarm_action(cw_actions.SnsAction(topic))
    return alarms
