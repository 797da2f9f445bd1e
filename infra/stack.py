"""The Agent Scheduler stack: data, queues, alerting, secrets, roles, and the Chalice app on top."""
from __future__ import annotations

import json
from pathlib import Path

from aws_cdk import CfnOutput, Duration, Fn, RemovalPolicy, Stack, Tags
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from chalice.cdk import Chalice
from constructs import Construct

from chalicelib import limits
from chalicelib import settings as app_settings
from chalicelib.api import gateway
from infra import access
from infra.alarms import add_alarms, add_dashboard
from infra.config import (
    ARCHITECTURE,
    FUNCTIONS,
    LAMBDA_ALLOWED_DEFAULT,
    LAMBDA_ALLOWED_ENV,
    PYTHON_RUNTIME,
    REPO_ROOT,
    REST_API_ID,
    REST_HANDLER,
    TABLES,
    WEBSOCKET_API_ID,
    WEBSOCKET_STAGE_ID,
    WORK_QUEUE_ARN_ENV,
    WORKER_BATCH_SIZE,
    StackOptions,
    Stage,
    iam_function_pattern,
)
from infra.tables import build_table

_RETENTION = {
    1: logs.RetentionDays.ONE_DAY, 3: logs.RetentionDays.THREE_DAYS, 5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK, 14: logs.RetentionDays.TWO_WEEKS, 30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS, 90: logs.RetentionDays.THREE_MONTHS, 180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}


# Lambda's application log levels (advanced logging controls) for the app's level names.
ALC_LEVELS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARN", "ERROR": "ERROR"}

# What API Gateway itself answers (no route, throttled, too large, ...): JSON {"code","message"} like
# the app's errors, fixed texts only. $context.error.message is never used: for a request with an
# Authorization header to a missing route it quotes a digest of that header.
GATEWAY_RESPONSES: dict[str, tuple[int | None, str, str]] = {
    # type: (status, or None to keep API Gateway's; code; message)
    "DEFAULT_4XX": (None, "BAD_REQUEST", "the request was refused"),
    "DEFAULT_5XX": (None, "INTERNAL", "internal error"),
    "MISSING_AUTHENTICATION_TOKEN": (404, "NOT_FOUND", "no such route or method"),  # API Gateway's "no route"
    "INCOMPLETE_SIGNATURE": (404, "NOT_FOUND", "no such route or method"),  # the same, with an Authorization header
    "ACCESS_DENIED": (403, "FORBIDDEN", "access denied"),
    "UNAUTHORIZED": (401, "UNAUTHORIZED", "missing or invalid bearer token"),
    "EXPIRED_TOKEN": (401, "UNAUTHORIZED", "missing or invalid bearer token"),
    "INVALID_SIGNATURE": (401, "UNAUTHORIZED", "missing or invalid bearer token"),
    "THROTTLED": (429, "THROTTLED", "too many requests"),
    "QUOTA_EXCEEDED": (429, "THROTTLED", "too many requests"),
    "REQUEST_TOO_LARGE": (413, "PAYLOAD_TOO_LARGE", "the request body is too large"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "UNSUPPORTED_MEDIA_TYPE", "unsupported content type"),
    "BAD_REQUEST_BODY": (400, "MALFORMED_REQUEST", "malformed request"),
    "BAD_REQUEST_PARAMETERS": (400, "MALFORMED_REQUEST", "malformed request"),
    "INTEGRATION_TIMEOUT": (504, "TIMEOUT", "the request took too long"),
    "INTEGRATION_FAILURE": (502, "INTERNAL", "internal error"),
    "API_CONFIGURATION_ERROR": (500, "INTERNAL", "internal error"),
}

# Access logs: who called what, and how it went. Only the resource path: never the query string
# (a WebSocket connect carries its token there), never a header (Authorization).
REST_ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId", "ip": "$context.identity.sourceIp", "time": "$context.requestTime",
    "method": "$context.httpMethod", "resource": "$context.resourcePath", "status": "$context.status",
    "length": "$context.responseLength", "latencyMs": "$context.responseLatency",
    "integrationLatencyMs": "$context.integrationLatency", "errorType": "$context.error.responseType",
}
WEBSOCKET_ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId", "ip": "$context.identity.sourceIp", "time": "$context.requestTime",
    "route": "$context.routeKey", "eventType": "$context.eventType", "connectionId": "$context.connectionId",
    "status": "$context.status", "integrationStatus": "$context.integrationStatus",
    "errorType": "$context.error.responseType",
}


def default_agent_function_arns(allowed: str) -> list[str]:
    """Functions a `lambda` agent may invoke unless the deployer says otherwise: every tenant's pattern."""
    return [Fn.sub("arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:%s"
                   % iam_function_pattern(allowed))]


def gateway_responses(cors_origin: str) -> dict:
    """The OpenAPI extension x-amazon-apigateway-gateway-responses for ``GATEWAY_RESPONSES``."""
    headers = {"gatewayresponse.header.Content-Type": "'application/json'"}
    if cors_origin:  # so the dashboard can read them too
        headers["gatewayresponse.header.Access-Control-Allow-Origin"] = f"'{cors_origin}'"
    out = {}
    for kind, (status, code, message) in GATEWAY_RESPONSES.items():
        response = {
            "responseParameters": dict(headers),
            "responseTemplates": {"application/json": json.dumps({"code": code, "message": message})},
        }
        if status is not None:
            response["statusCode"] = str(status)
        out[kind] = response
    return out


def published_definition(body: dict, cors_origin: str) -> dict:
    """Chalice's OpenAPI body with each route published under the stage (no /api prefix) and our gateway responses."""
    gateway.check_routes(body["paths"])
    return {
        **body,
        "paths": {gateway.published_path(path): ops for path, ops in body["paths"].items()},
        "x-amazon-apigateway-gateway-responses": gateway_responses(cors_origin),
    }


class AgentSchedulerStack(Stack):
    """Stack id = Chalice stage name (the Chalice construct takes its stage from its scope's path)."""

    def __init__(self, scope: Construct, stage: Stage, *, agent_function_arns: list[str] | None = None,
                 options: StackOptions | None = None, **kwargs):
        super().__init__(
            scope,
            stage.name,
            stack_name=f"{stage.app_name}-{stage.name}",
            description=f"Agent Scheduler ({stage.name}): Chalice app, DynamoDB tables, SQS queues, alerts",
            analytics_reporting=False,
            **kwargs,
        )
        self.stage = stage
        self.options = options = options or StackOptions()
        Tags.of(self).add("app", stage.app_name)
        Tags.of(self).add("stage", stage.name)

        # --- data ---------------------------------------------------------------------
        self.tables = {
            key: build_table(self, key, deletion_protection=stage.knobs.deletion_protection) for key in TABLES
        }

        # --- queues, alerts, secret -----------------------------------------------------
        self.dlq = sqs.Queue(
            self, "DeadLetterQueue",
            retention_period=Duration.seconds(limits.DLQ_RETENTION_SECONDS),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
        )
        self.work_queue = sqs.Queue(
            self, "WorkQueue",
            # chalicelib/limits.py: 6x the worker's timeout; more receives than a run's attempts;
            # kept longer than all those receives take.
            visibility_timeout=Duration.seconds(limits.WORK_QUEUE_VISIBILITY_SECONDS),
            retention_period=Duration.seconds(limits.WORK_QUEUE_RETENTION_SECONDS),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=limits.MAX_RECEIVE_COUNT, queue=self.dlq),
        )
        self.alert_topic = sns.Topic(self, "AlertTopic", display_name=f"Agent Scheduler alerts ({stage.name})")
        self.jwt_secret = secretsmanager.Secret(
            self, "JwtSecret",
            description=f"HS256 secret for Agent Scheduler bearer tokens ({stage.name})",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True, include_space=False
            ),
        )

        # Webhook agents' signing secrets: the API encrypts with it, only the worker decrypts.
        self.signing_key = kms.Key(
            self, "SigningKey",
            description=f"Agent Scheduler webhook signing secrets ({stage.name})",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,  # without it no stored secret can be read again
        )
        # The default key policy (the account administers the key; IAM grants the rest), with the
        # account's root written as Fn::Sub rather than CDK's Fn::Join.
        self.signing_key.node.default_child.add_property_override(  # type: ignore[union-attr]
            "KeyPolicy.Statement.0.Principal.AWS", Fn.sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root"))

        # --- one log group and one role per function ----------------------------------------
        self.ws_connections_arn = Fn.sub(
            "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${%s}/%s/POST/@connections/*"
            % (WEBSOCKET_API_ID, stage.api_gateway_stage)
        )
        self.ws_close_arn = Fn.sub(
            "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${%s}/%s/DELETE/@connections/*"
            % (WEBSOCKET_API_ID, stage.api_gateway_stage)
        )
        self.lambda_allowed = stage.environment.get(LAMBDA_ALLOWED_ENV) or LAMBDA_ALLOWED_DEFAULT
        self.agent_function_arns = agent_function_arns or default_agent_function_arns(self.lambda_allowed)
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
            app_settings.LOG_LEVEL: options.log_level,
            LAMBDA_ALLOWED_ENV: self.lambda_allowed,
            app_settings.SIGNING_KEY_ID: self.signing_key.key_arn,
        }
        if options.cors_origin:
            env[app_settings.CORS_ORIGIN] = options.cors_origin
        for key, (_, var) in TABLES.items():
            env[var] = self.tables[key].table_name
        self.chalice = Chalice(
            self, "App",
            source_dir=str(REPO_ROOT),
            stage_config={
                "api_gateway_stage": stage.api_gateway_stage,
                "lambda_architecture": ARCHITECTURE,
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
            resource.add_override("Properties.LoggingConfig", {
                "LogGroup": self.log_groups[fn].log_group_name,
                # Powertools writes JSON lines itself; JSON here makes Lambda filter them by
                # level and write its own START/REPORT lines as JSON too.
                "LogFormat": "JSON",
                "ApplicationLogLevel": ALC_LEVELS[options.log_level],
                "SystemLogLevel": "INFO",
            })
            resource.add_override("Properties.Runtime", PYTHON_RUNTIME)  # what the package was built for
            resource.add_override("Properties.Tracing", "Active" if options.xray_tracing else "PassThrough")
        # The tick: one concurrent execution reserved only if asked (an account with a concurrency
        # quota of 10 cannot reserve any); overlapping ticks are safe without it (conditional writes).
        if options.tick_reserved_concurrency:
            self.functions["tick"].add_override("Properties.ReservedConcurrentExecutions", 1)
        else:
            self.functions["tick"].add_deletion_override("Properties.ReservedConcurrentExecutions")
        self.functions["api_handler"].add_override("Properties.Handler", REST_HANDLER)
        # The worker hands agents their callback URL: this stack's REST API under its stage. Only the
        # worker gets it (the REST API's definition names the API function: its own environment
        # naming the API would be a cycle).
        self.functions["worker"].add_override(
            f"Properties.Environment.Variables.{app_settings.PUBLIC_URL}",
            Fn.sub("https://${%s}.execute-api.${AWS::Region}.${AWS::URLSuffix}/%s" % (REST_API_ID, stage.api_gateway_stage)),
        )

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

        # --- the REST API: routes under the stage, gateway responses, throttling, logs, tracing ------
        knobs = stage.knobs
        rest_api = self.chalice.get_resource(REST_API_ID)
        rest_api.add_override("Properties.Name", f"{stage.app_name}-{stage.name}")  # the alarms' ApiName
        chalice_body = self._chalice_definition_body()
        body = published_definition(chalice_body, options.cors_origin)
        # An override merges into Chalice's body: add the published paths, then drop the prefixed ones.
        rest_api.add_override("Properties.DefinitionBody", body)
        for path in chalice_body["paths"]:
            if path not in body["paths"]:
                rest_api.add_deletion_override("Properties.DefinitionBody.paths." + path.replace(".", "\\."))
        rest_api.add_override("Properties.MethodSettings", [{
            "ResourcePath": "/*",
            "HttpMethod": "*",
            "ThrottlingRateLimit": knobs.rest_rate_limit,
            "ThrottlingBurstLimit": knobs.rest_burst_limit,
        }])
        if options.xray_tracing:
            rest_api.add_override("Properties.TracingEnabled", True)
        ws_stage = self.chalice.get_resource(WEBSOCKET_STAGE_ID)
        ws_stage.add_override("Properties.DefaultRouteSettings", {
            "ThrottlingRateLimit": knobs.ws_rate_limit,
            "ThrottlingBurstLimit": knobs.ws_burst_limit,
        })
        if options.access_logs:
            self.access_logs = {}
            for key, resource, fmt, prop in (
                ("rest", rest_api, REST_ACCESS_LOG_FORMAT, "AccessLogSetting"),
                ("websocket", ws_stage, WEBSOCKET_ACCESS_LOG_FORMAT, "AccessLogSettings"),
            ):
                group = logs.LogGroup(
                    self, f"{key.capitalize()}AccessLogs",
                    log_group_name=f"/aws/apigateway/{stage.app_name}-{stage.name}/{key}",
                    retention=_RETENTION[knobs.log_retention_days],
                    removal_policy=RemovalPolicy.DESTROY,
                )
                resource.add_override(f"Properties.{prop}", {
                    "DestinationArn": group.log_group_arn, "Format": json.dumps(fmt, separators=(",", ":")),
                })
                self.access_logs[key] = group
            if options.api_gateway_cloudwatch_role:
                # REST stages log through the account's API Gateway CloudWatch role (one per account
                # and region): set it here, before the stage exists.
                role = iam.Role(
                    self, "ApiGatewayCloudWatchRole",
                    assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
                    managed_policies=[iam.ManagedPolicy.from_managed_policy_arn(
                        self, "PushToCloudWatchLogs",
                        Fn.sub("arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"),
                    )],
                )
                role.apply_removal_policy(RemovalPolicy.RETAIN)  # the account setting outlives the stack
                account = apigateway.CfnAccount(self, "ApiGatewayAccount", cloud_watch_role_arn=role.role_arn)
                rest_api.add_resource_dependency(account)

        # --- alarms and the dashboard ------------------------------------------------------------
        alarm_args = dict(
            dlq=self.dlq,
            work_queue=self.work_queue,
            tick_function_name=self.functions["tick"].ref,
            tick_timeout_seconds=stage.timeouts["tick"],
            worker_function_name=self.functions["worker"].ref,
            api_name=f"{stage.app_name}-{stage.name}",
            api_stage=stage.api_gateway_stage,
            stage=stage,
        )
        self.alarms = add_alarms(self, topic=self.alert_topic, **alarm_args)
        self.dashboard = add_dashboard(self, alarms=self.alarms, **alarm_args)

        CfnOutput(self, "AlertTopicArn", value=self.alert_topic.topic_arn,
                  description="Subscribe an email or chat endpoint here to receive alarms and agent alerts")
        CfnOutput(self, "JwtSecretArn", value=self.jwt_secret.secret_arn,
                  description="The HS256 secret for bearer tokens (aws secretsmanager get-secret-value)")
        CfnOutput(self, "DeadLetterQueueUrl", value=self.dlq.queue_url)
        CfnOutput(self, "ApiBaseUrl", description="The REST API's base: <base>/health answers {\"status\":\"ok\"}",
                  value=Fn.sub("https://${%s}.execute-api.${AWS::Region}.${AWS::URLSuffix}/%s"
                               % (REST_API_ID, stage.api_gateway_stage)))

    # --------------------------------------------------------------------------------------------------
    def _chalice_definition_body(self) -> dict:
        """The REST API's OpenAPI body as `chalice package` wrote it (the construct keeps the package)."""
        sam = Path(self.chalice._sam_package_dir) / "sam.json"  # chalice.cdk.Chalice: where it packaged
        return json.loads(sam.read_text())["Resources"][REST_API_ID]["Properties"]["DefinitionBody"]

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
        if symbol == "kms:signing":
            return [self.signing_key.key_arn]
        if symbol == "logs:self":
            return [self.log_groups[fn].log_group_arn]
        raise KeyError(f"unknown resource {symbol!r} in infra/access.py")

    def _statements(self, fn: str) -> list[iam.PolicyStatement]:
        statements = [
            iam.PolicyStatement(actions=list(a.actions), resources=self._resource_arns(fn, a.resource))
            for a in access.grants(fn)
        ]
        if self.options.xray_tracing:  # X-Ray has no resource-level permissions: "*" is the only resource
            statements.append(iam.PolicyStatement(actions=list(access.XRAY_ACTIONS), resources=["*"]))
        return statements
