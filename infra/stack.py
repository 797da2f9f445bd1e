"""The Agent Scheduler stack: data, queues, alerting, secrets, roles, and the Chalice app on top."""
from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Fn, RemovalPolicy, Stack, Tags
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from chalice.cdk import Chalice
from constructs import Construct

from chalicelib import settings as app_settings
from chalicelib.adapters import provision
from infra import access
from infra.alarms import add_alarms
from infra.config import (
    FUNCTIONS,
    REPO_ROOT,
    REST_API_ID,
    TABLES,
    WEBSOCKET_API_ID,
    WEBSOCKET_STAGE_ID,
    WORK_QUEUE_ARN_ENV,
    WORKER_BATCH_SIZE,
    Stage,
)
from infra.tables import build_table

_RETENTION = {
    1: logs.RetentionDays.ONE_DAY, 3: logs.RetentionDays.THREE_DAYS, 5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK, 14: logs.RetentionDays.TWO_WEEKS, 30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS, 90: logs.RetentionDays.THREE_MONTHS, 180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}


def default_agent_function_arns(app_name: str) -> list[str]:
    """Functions a `lambda` agent may invoke unless the deployer says otherwise: a name prefix."""
    return [Fn.sub("arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:%s-agent-*" % app_name)]


class AgentSchedulerStack(Stack):
    """Stack id = Chalice stage name (the Chalice construct takes its stage from its scope's path)."""

    def __init__(self, scope: Construct, stage: Stage, *, agent_function_arns: list[str] | None = None, **kwargs):
        super().__init__(
            scope,
            stage.name,
            stack_name=f"{stage.app_name}-{stage.name}",
            description=f"Agent Scheduler ({stage.name}): Chalice app, DynamoDB tables, SQS queues, alerts",
            analytics_reporting=False,
            **kwargs,
        )
        self.stage = stage
        Tags.of(self).add("app", stage.app_name)
        Tags.of(self).add("stage", stage.name)
        self._check_timeouts()

        # --- data ---------------------------------------------------------------------
        self.tables = {
            key: build_table(self, key, deletion_protection=stage.knobs.deletion_protection) for key in TABLES
        }

        # --- queues, alerts, secret -----------------------------------------------------
        self.dlq = sqs.Queue(
            self, "DeadLetterQueue",
            retention_period=Duration.seconds(provision.DLQ_RETENTION_SECONDS),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
        )
        self.work_queue = sqs.Queue(
            self, "WorkQueue",
            visibility_timeout=Duration.seconds(provision.WORK_QUEUE_VISIBILITY_SECONDS),
            retention_period=Duration.days(4),  # SQS default, made explicit; runs are consumed within seconds
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=provision.MAX_RECEIVE_COUNT, queue=self.dlq),
        )
        self.alert_topic = sns.Topic(self, "AlertTopic", display_name=f"Agent Scheduler alerts ({stage.name})")
        self.jwt_secret = secretsmanager.Secret(
            self, "JwtSecret",
            description=f"HS256 secret for Agent Scheduler bearer tokens ({stage.name})",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True, include_space=False
            ),
        )

        # --- one log group and one role per function ----------------------------------------
        self.ws_connections_arn = Fn.sub(
            "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${%s}/%s/POST/@connections/*"
            % (WEBSOCKET_API_ID, stage.api_gateway_stage)
        )
        self.ws_close_arn = Fn.sub(
            "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${%s}/%s/DELETE/@connections/*"
            % (WEBSOCKET_API_ID, stage.api_gateway_stage)
        )
        self.agent_function_arns = agent_function_arns or default_agent_function_arns(stage.app_name)
        self.log_groups: dict[str, logs.LogGroup] = {}
        self.roles: dict[str, iam.Role] = {}
        for fn, logical_id in FUNCTIONS.items():
            self.log_groups[fn] = logs.LogGroup(
                self, f"{logical_id}Logs",
                log_group_name=f"/aws/lambda/{stage.app_name}-{stage.name}/{fn}",
                retention=_RETENTION[stage.knobs.log_retention_days],
                removal_policy=RemovalPolicy.DESTROY,
            )
            # Inline (not attached) so the permissions exist when the function and its
            # event source mapping are created: no ordering to get wrong.
            self.roles[fn] = iam.Role(
                self, f"{logical_id}Role",
                assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                description=f"{stage.app_name} {stage.name} {fn}: least privilege (infra/access.py)",
                inline_policies={"access": iam.PolicyDocument(statements=self._statements(fn))},
            )

        # --- the Chalice app ---------------------------------------------------------------------
        env = {
            app_settings.ENVIRONMENT: "aws",
            app_settings.MAX_CONCURRENT_AGENTS: str(stage.max_concurrent_agents),
            app_settings.WORK_QUEUE_URL: self.work_queue.queue_url,
            WORK_QUEUE_ARN_ENV: self.work_queue.queue_arn,
            app_settings.DLQ_URL: self.dlq.queue_url,
            app_settings.ALERT_TOPIC_ARN: self.alert_topic.topic_arn,
            app_settings.JWT_SECRET_ARN: self.jwt_secret.secret_arn,
            app_settings.WS_ENDPOINT: Fn.sub(
                "https://${%s}.execute-api.${AWS::Region}.${AWS::URLSuffix}/%s" % (WEBSOCKET_API_ID, stage.api_gateway_stage)
            ),
        }
        for key, (_, var) in TABLES.items():
            env[var] = self.tables[key].table_name
        self.chalice = Chalice(
            self, "App",
            source_dir=str(REPO_ROOT),
            stage_config={
                "api_gateway_stage": stage.api_gateway_stage,
                "autogen_policy": False,
                "manage_iam_role": False,
                # Chalice reads per-function roles only from .chalice/config.json; every
                # function's Role is replaced with its own below.
                "iam_role_arn": self.roles["api_handler"].role_arn,
                "environment_variables": env,
            },
        )
        self.functions = {fn: self.chalice.get_resource(logical_id) for fn, logical_id in FUNCTIONS.items()}
        for fn, resource in self.functions.items():
            resource.add_override("Properties.Role", self.roles[fn].role_arn)
            resource.add_override("Properties.LoggingConfig", {"LogGroup": self.log_groups[fn].log_group_name})

        # --- the worker's event source: partial batch responses, concurrency = the cap -------------
        # Chalice's own SQS event (from app.py's queue_arn, read at import) is replaced by
        # one that points at this stack's queue and carries the scaling settings.
        worker = self.functions["worker"]
        worker.add_deletion_override("Properties.Events")
        self.worker_event_source = lambda_.CfnEventSourceMapping(
            self, "WorkerQueueEventSource",
            function_name=worker.ref,
            event_source_arn=self.work_queue.queue_arn,
            batch_size=WORKER_BATCH_SIZE,
            maximum_batching_window_in_seconds=0,
            function_response_types=["ReportBatchItemFailures"],
            scaling_config=lambda_.CfnEventSourceMapping.ScalingConfigProperty(
                maximum_concurrency=stage.worker_maximum_concurrency
            ),
        )

        # --- API throttling -------------------------------------------------------------------------
        knobs = stage.knobs
        self.chalice.get_resource(REST_API_ID).add_override("Properties.MethodSettings", [{
            "ResourcePath": "/*",
            "HttpMethod": "*",
            "ThrottlingRateLimit": knobs.rest_rate_limit,
            "ThrottlingBurstLimit": knobs.rest_burst_limit,
        }])
        self.chalice.get_resource(WEBSOCKET_STAGE_ID).add_override("Properties.DefaultRouteSettings", {
            "ThrottlingRateLimit": knobs.ws_rate_limit,
            "ThrottlingBurstLimit": knobs.ws_burst_limit,
        })

        # --- alarms -----------------------------------------------------------------------------------
        self.alarms = add_alarms(
            self,
            topic=self.alert_topic,
            dlq=self.dlq,
            tick_function_name=self.functions["tick"].ref,
            tick_timeout_seconds=stage.timeouts["tick"],
            worker_function_name=self.functions["worker"].ref,
            stage=stage,
        )

        CfnOutput(self, "AlertTopicArn", value=self.alert_topic.topic_arn,
                  description="Subscribe an email or chat endpoint here to receive alarms and agent alerts")
        CfnOutput(self, "JwtSecretArn", value=self.jwt_secret.secret_arn,
                  description="The HS256 secret for bearer tokens (aws secretsmanager get-secret-value)")
        CfnOutput(self, "DeadLetterQueueUrl", value=self.dlq.queue_url)

    # --------------------------------------------------------------------------------------------------
    def _check_timeouts(self) -> None:
        worker = self.stage.timeouts["worker"]
        if worker != provision.WORKER_TIMEOUT_SECONDS:
            raise SystemExit(
                f".chalice/config.json gives the worker a {worker} s timeout but "
                f"chalicelib.adapters.provision.WORKER_TIMEOUT_SECONDS is {provision.WORKER_TIMEOUT_SECONDS}"
            )
        if provision.WORK_QUEUE_VISIBILITY_SECONDS <= worker:
            raise SystemExit("the work queue's visibility timeout must exceed the worker's timeout")

    def _resource_arns(self, fn: str, symbol: str) -> list[str]:
        kind, _, rest = symbol.partition(":")
        if kind == "table":
            return [self.tables[rest].table_arn]
        if kind == "index":
            key, _, index = rest.partition(":")
            return [Fn.sub("${Table}/index/%s" % index, {"Table": self.tables[key].table_arn})]
        if symbol == "queue:work":
            return [self.work_queue.queue_arn]
        if symbol == "queue:dlq":
            return [self.dlq.queue_arn]
        if symbol == "topic:alerts":
            return [self.alert_topic.topic_arn]
        if symbol == "secret:jwt":
            return [self.jwt_secret.secret_arn]
        if symbol == "ws:connections":
            return [self.ws_connections_arn]
        if symbol == "ws:close":  # DELETE @connections/{id}: close a connection whose replay failed
            return [self.ws_close_arn]
        if symbol == "lambda:agents":
            return list(self.agent_function_arns)
        if symbol == "logs:self":
            return [self.log_groups[fn].log_group_arn]
        raise KeyError(f"unknown resource {symbol!r} in infra/access.py")

    def _statements(self, fn: str) -> list[iam.PolicyStatement]:
        return [
            iam.PolicyStatement(actions=list(a.actions), resources=self._resource_arns(fn, a.resource))
            for a in access.grants(fn)
        ]
