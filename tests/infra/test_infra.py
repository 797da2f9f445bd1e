"""The CDK app: synthesizes offline, lints clean, and the template says what the app needs.

Two syntheses per module (subprocesses with no AWS credentials at all): the
default options, which most tests read, and every option switched on.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from chalicelib import limits
from chalicelib import settings as app_settings
from chalicelib.adapters import provision
from chalicelib.adapters.tables import ALL_MODELS
from chalicelib.api import gateway
from chalicelib.services import metrics as app_metrics
from chalicelib.settings import Settings
from infra import access
from infra.config import (
    ARCHITECTURE,
    FUNCTIONS,
    LAMBDA_ALLOWED_DEFAULT,
    LAMBDA_ALLOWED_ENV,
    MIN_MAXIMUM_CONCURRENCY,
    PYTHON_RUNTIME,
    REST_HANDLER,
    TABLES,
    TIMEOUTS,
    WORKER_BATCH_SIZE,
    load_stage,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
STAGE = "dev"
SAM_FUNCTION = "AWS::Serverless::Function"


# --- synthesis (once per set of options) ---------------------------------------------------------------
CORS_ORIGIN = "https://dashboard.example.com"
ALL_OPTIONS = ["--tick-reserved-concurrency", "--xray", "--cors-origin", CORS_ORIGIN, "--log-level", "warning"]


def _synthesize(out: Path, *flags: str) -> Path:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_", "SCHEDULER_"))}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(out / "no-credentials"),
        AWS_CONFIG_FILE=str(out / "no-config"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "infra.app", "--stage", STAGE, "--out", str(out), *flags],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"synthesis failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return out


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return _synthesize(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="module")
def options_template_path(tmp_path_factory) -> Path:
    return _synthesize(tmp_path_factory.mktemp("cdk.out.options"), *ALL_OPTIONS) / f"{STAGE}.template.json"


@pytest.fixture(scope="module")
def options_resources(options_template_path) -> dict:
    return json.loads(options_template_path.read_text())["Resources"]


@pytest.fixture(scope="module")
def template_path(synth) -> Path:
    return synth / f"{STAGE}.template.json"


@pytest.fixture(scope="module")
def template(template_path) -> dict:
    return json.loads(template_path.read_text())


@pytest.fixture(scope="module")
def resources(template) -> dict:
    return template["Resources"]


@pytest.fixture(scope="module")
def stage():
    return load_stage(STAGE)


def of_type(resources: dict, type_: str) -> dict:
    return {k: v for k, v in resources.items() if v["Type"] == type_}


def props(resources: dict, logical_id: str) -> dict:
    return resources[logical_id]["Properties"]


def env_of(resources: dict, function_logical_id: str) -> dict:
    return props(resources, function_logical_id)["Environment"]["Variables"]


def ref(value) -> str:
    """The logical id a {"Ref"} or {"Fn::GetAtt"} points at."""
    if isinstance(value, dict) and "Ref" in value:
        return value["Ref"]
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return value["Fn::GetAtt"][0]
    raise AssertionError(f"not a reference: {value!r}")


def env_target(resources: dict, variable: str) -> str:
    """The logical id an environment variable refers to (the same on every function)."""
    targets = {json.dumps(env_of(resources, lid)[variable], sort_keys=True) for lid in FUNCTIONS.values()}
    assert len(targets) == 1, f"{variable} differs between functions: {targets}"
    return ref(json.loads(targets.pop()))


# --- synthesis and lint ------------------------------------------------------------------------------
def test_synthesizes_without_credentials_and_packages_the_app(synth, template):
    assert template["Transform"] == "AWS::Serverless-2016-10-31"  # Chalice's SAM template, included
    functions = of_type(template["Resources"], SAM_FUNCTION)
    assert set(functions) == set(FUNCTIONS.values())
    keys = {f["Properties"]["CodeUri"]["Key"] for f in functions.values()}
    assert len(keys) == 1, keys  # one package, shared
    package = synth / f"asset.{keys.pop()}"
    with zipfile.ZipFile(package) as z:
        names = z.namelist()
        unzipped = sum(i.file_size for i in z.infolist())
        assert z.read("app.py") == (REPO_ROOT / "app.py").read_bytes()  # today's code, not a cached one
    assert "chalicelib/settings.py" in names
    assert not any(n.startswith(("infra/", "tests/", "local/", "aws_cdk/", "cfnlint/")) for n in names)
    assert package.stat().st_size < 50 * 2**20, "over Lambda's 50 MB zipped upload limit"
    assert unzipped < 250 * 2**20, "over Lambda's 250 MB unzipped limit"


def _lint(path: Path) -> list[str]:
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(path, config=ManualArgs(include_checks=["I"], regions=["us-east-1", "eu-west-1"]))
    return [f"{m.rule.id} {m.message} ({m.path})" for m in matches]


def test_cfn_lint_reports_nothing(template_path):
    assert _lint(template_path) == []


def test_cfn_lint_reports_nothing_with_every_option(options_template_path):
    assert _lint(options_template_path) == []


# --- tables -------------------------------------------------------------------------------------------
def _key_schema(ks) -> dict:
    return {k["AttributeName"]: k["KeyType"] for k in ks}


@pytest.mark.parametrize("key", sorted(TABLES))
def test_table_matches_its_pynamodb_model(resources, key):
    model, variable = TABLES[key]
    table = props(resources, env_target(resources, variable))
    schema = model._get_schema()
    types = {d["AttributeName"]: d["AttributeType"] for d in schema["attribute_definitions"]}

    assert _key_schema(table["KeySchema"]) == _key_schema(schema["key_schema"])
    defined = {d["AttributeName"]: d["AttributeType"] for d in table["AttributeDefinitions"]}
    assert defined == types  # every key attribute of the table and its indexes, same types

    expected_gsis = {
        g["index_name"]: (_key_schema(g["key_schema"]), g["projection"]["ProjectionType"],
                          sorted(g["projection"].get("NonKeyAttributes", [])))
        for g in schema["global_secondary_indexes"]
    }
    actual_gsis = {
        g["IndexName"]: (_key_schema(g["KeySchema"]), g["Projection"]["ProjectionType"],
                         sorted(g["Projection"].get("NonKeyAttributes", [])))
        for g in table.get("GlobalSecondaryIndexes", [])
    }
    assert actual_gsis == expected_gsis
    assert "LocalSecondaryIndexes" not in table and not schema["local_secondary_indexes"]

    ttl = model._ttl_attribute()
    if ttl is None:
        assert "TimeToLiveSpecification" not in table
    else:
        assert table["TimeToLiveSpecification"] == {"AttributeName": ttl.attr_name, "Enabled": True}


def test_every_model_has_a_table_and_no_more(resources):
    assert {m for m, _ in TABLES.values()} == set(ALL_MODELS)
    tables = of_type(resources, "AWS::DynamoDB::Table")
    assert set(tables) == {env_target(resources, var) for _, var in TABLES.values()}


def test_tables_are_on_demand_with_pitr_and_no_streams(resources):
    for lid, table in of_type(resources, "AWS::DynamoDB::Table").items():
        p = table["Properties"]
        assert p["BillingMode"] == "PAY_PER_REQUEST", lid
        assert p["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}, lid
        assert "StreamSpecification" not in p, lid  # nothing consumes a stream today
        assert "TableName" not in p, lid  # generated: stages can share an account
        assert table["DeletionPolicy"] == "Retain", lid


# --- queues, topic, secret ------------------------------------------------------------------------------
def test_work_queue_timeouts_fit_the_worker_and_the_attempts(resources):
    work = props(resources, env_target(resources, app_settings.WORK_QUEUE_URL))
    dlq_id = env_target(resources, app_settings.DLQ_URL)
    worker = props(resources, FUNCTIONS["worker"])
    # AWS: six times the function timeout for an SQS event source.
    assert work["VisibilityTimeout"] == limits.WORK_QUEUE_VISIBILITY_SECONDS >= 6 * worker["Timeout"]
    # Above the most deliveries one run can make: 1 + maxRetries (at most 10) + rate-limited waits.
    max_attempts = 1 + limits.MAX_RETRIES_LIMIT + limits.MAX_RATE_LIMITED_WAITS_LIMIT
    assert work["RedrivePolicy"]["maxReceiveCount"] == limits.MAX_RECEIVE_COUNT > max_attempts
    assert limits.MAX_RETRIES_LIMIT >= 10 and limits.MAX_RATE_LIMITED_WAITS_LIMIT >= 10
    # A message outlives every receive before the redrive moves it.
    assert work["MessageRetentionPeriod"] > work["RedrivePolicy"]["maxReceiveCount"] * work["VisibilityTimeout"]
    assert ref(work["RedrivePolicy"]["deadLetterTargetArn"]) == dlq_id
    assert props(resources, dlq_id)["MessageRetentionPeriod"] == limits.DLQ_RETENTION_SECONDS
    # The local queues (make run, tests) are made from the same numbers.
    assert (
        work["VisibilityTimeout"], work["RedrivePolicy"]["maxReceiveCount"], limits.DLQ_RETENTION_SECONDS) == (provision.WORK_QUEUE_VISIBILITY_SECONDS, provision.MAX_RECEIVE_COUNT, provision.DLQ_RETENTION_SECONDS)
    assert env_of(resources, FUNCTIONS["worker"])["SCHEDULER_WORK_QUEUE_ARN"] == {
        "Fn::GetAtt": [env_target(resources, app_settings.WORK_QUEUE_URL), "Arn"]
    }


def test_alert_topic_is_the_one_the_app_publishes_to(resources):
    topic = env_target(resources, app_settings.ALERT_TOPIC_ARN)
    assert resources[topic]["Type"] == "AWS::SNS::Topic"


def test_jwt_secret_is_generated_and_never_in_the_template(resources, template_path):
    secret_id = env_target(resources, app_settings.JWT_SECRET_ARN)
    secret = props(resources, secret_id)
    assert resources[secret_id]["Type"] == "AWS::SecretsManager::Secret"
    assert "SecretString" not in secret
    assert secret["GenerateSecretString"]["PasswordLength"] >= 32
    for lid in FUNCTIONS.values():
        assert app_settings.JWT_SECRET not in env_of(resources, lid)
    assert "local-dev-secret" not in template_path.read_text()


# --- functions -------------------------------------------------------------------------------------------------
def test_worker_event_source_reports_partial_failures_at_the_cap(resources, stage):
    mappings = of_type(resources, "AWS::Lambda::EventSourceMapping")
    assert len(mappings) == 1
    (mapping,) = [m["Properties"] for m in mappings.values()]
    assert mapping["FunctionName"] == {"Ref": FUNCTIONS["worker"]}
    assert ref(mapping["EventSourceArn"]) == env_target(resources, app_settings.WORK_QUEUE_URL)
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == WORKER_BATCH_SIZE == 1
    assert mapping["MaximumBatchingWindowInSeconds"] == 0
    cap = int(stage.environment[app_settings.MAX_CONCURRENT_AGENTS])
    assert mapping["ScalingConfig"]["MaximumConcurrency"] == max(MIN_MAXIMUM_CONCURRENCY, cap)
    # Chalice's own SQS event (app.py's import-time queue ARN) must not survive next to it.
    for lid in FUNCTIONS.values():
        events = props(resources, lid).get("Events", {})
        assert not [e for e in events.values() if e["Type"] == "SQS"], lid


def test_tick_runs_every_minute_without_reserved_concurrency_by_default(resources, options_resources):
    tick = props(resources, FUNCTIONS["tick"])
    assert "ReservedConcurrentExecutions" not in tick  # a new account's quota of 10 can reserve nothing
    assert props(options_resources, FUNCTIONS["tick"])["ReservedConcurrentExecutions"] == 1  # the option
    schedules = [e["Properties"]["Schedule"] for e in tick["Events"].values() if e["Type"] == "Schedule"]
    assert schedules == ["rate(1 minute)"]
    assert tick["Timeout"] == limits.TICK_TIMEOUT_SECONDS <= 60


def test_function_timeouts_come_from_the_limits(resources):
    for fn, lid in FUNCTIONS.items():
        assert props(resources, lid)["Timeout"] == TIMEOUTS[fn], fn
    assert props(resources, FUNCTIONS["worker"])["Timeout"] == limits.WORKER_TIMEOUT_SECONDS == 900
    # The longest synchronous agent run leaves the worker time to record it.
    assert props(resources, FUNCTIONS["worker"])["Timeout"] - 60 >= limits.MAX_AGENT_TIMEOUT_SECONDS
    # API Gateway stops waiting after 29 s: the handlers stop before that.
    assert props(resources, FUNCTIONS["api_handler"])["Timeout"] < 29
    for fn in ("websocket_connect", "websocket_message", "websocket_disconnect"):
        assert props(resources, FUNCTIONS[fn])["Timeout"] < 29, fn


def test_runtime_architecture_and_memory(resources, synth):
    for lid in FUNCTIONS.values():
        p = props(resources, lid)
        assert p["Runtime"] == PYTHON_RUNTIME == "python3.14", lid
        assert p["Architectures"] == [ARCHITECTURE] == ["arm64"], lid
    for fn in ("websocket_connect", "websocket_message", "websocket_disconnect"):
        assert props(resources, FUNCTIONS[fn])["MemorySize"] >= 512, fn


def test_functions_log_json_at_the_configured_level(resources, options_resources):
    for lid in FUNCTIONS.values():
        cfg = props(resources, lid)["LoggingConfig"]
        assert (cfg["LogFormat"], cfg["ApplicationLogLevel"], cfg["SystemLogLevel"]) == ("JSON", "INFO", "INFO"), lid
        assert env_of(resources, lid)[app_settings.LOG_LEVEL] == "INFO"
        assert props(options_resources, lid)["LoggingConfig"]["ApplicationLogLevel"] == "WARN"
        assert env_of(options_resources, lid)[app_settings.LOG_LEVEL] == "WARNING"


def test_xray_tracing_is_an_option(resources, options_resources):
    for lid in FUNCTIONS.values():
        assert props(resources, lid)["Tracing"] == "PassThrough", lid
        assert props(options_resources, lid)["Tracing"] == "Active", lid
    assert "TracingEnabled" not in props(resources, "RestAPI")
    assert props(options_resources, "RestAPI")["TracingEnabled"] is True
    for res in options_resources.values():  # the one statement on "*": X-Ray's, which has no resource ARNs
        for doc in (p["PolicyDocument"] for p in res.get("Properties", {}).get("Policies", [])):
            for st in doc["Statement"]:
                if "*" in _listify(st["Resource"]):
                    assert sorted(_listify(st["Action"])) == sorted(access.XRAY_ACTIONS), st


# --- the REST API ----------------------------------------------------------------------------------------
def test_routes_are_reachable_under_the_stage_without_a_second_prefix(resources, stage):
    from app import app

    assert stage.api_gateway_stage == gateway.STAGE_NAME == "api"
    api = props(resources, "RestAPI")
    assert api["StageName"] == "api"
    paths = set(api["DefinitionBody"]["paths"])
    assert "/health" in paths and not any(p.startswith("/api/") for p in paths)  # https://<api>/api/health
    assert paths == {gateway.published_path(p) for p in app.routes}
    assert props(resources, FUNCTIONS["api_handler"])["Handler"] == REST_HANDLER == "app.rest_handler"
    assert api["Name"] == f"{stage.app_name}-{STAGE}"


def test_gateway_responses_are_json_and_never_echo_the_request(resources, options_resources):
    responses = props(resources, "RestAPI")["DefinitionBody"]["x-amazon-apigateway-gateway-responses"]
    for kind in ("DEFAULT_4XX", "DEFAULT_5XX", "MISSING_AUTHENTICATION_TOKEN", "ACCESS_DENIED", "UNAUTHORIZED",
                 "THROTTLED", "INTEGRATION_TIMEOUT", "REQUEST_TOO_LARGE"):
        assert kind in responses, kind
    for kind, r in responses.items():
        (template,) = r["responseTemplates"].values()
        body = json.loads(template)  # fixed JSON: no $context/$input expression at all
        assert set(body) == {"code", "message"} and "$" not in template, kind
        assert r["responseParameters"]["gatewayresponse.header.Content-Type"] == "'application/json'"
        assert not any("authorization" in k.lower() for k in r["responseParameters"]), kind
    missing = responses["MISSING_AUTHENTICATION_TOKEN"]
    assert missing["statusCode"] == "404" and json.loads(missing["responseTemplates"]["application/json"])["code"] == "NOT_FOUND"
    assert responses["UNAUTHORIZED"]["statusCode"] == "401"
    assert responses["ACCESS_DENIED"]["statusCode"] == "403"
    assert "statusCode" not in responses["DEFAULT_4XX"]  # keeps API Gateway's own status
    with_cors = props(options_resources, "RestAPI")["DefinitionBody"]["x-amazon-apigateway-gateway-responses"]
    for r in with_cors.values():
        assert r["responseParameters"]["gatewayresponse.header.Access-Control-Allow-Origin"] == f"'{CORS_ORIGIN}'"


def test_access_logs_keep_no_query_string_and_no_header(resources):
    rest = props(resources, "RestAPI")["AccessLogSetting"]
    ws = props(resources, "WebsocketAPIStage")["AccessLogSettings"]
    for setting in (rest, ws):
        assert resources[ref(setting["DestinationArn"])]["Type"] == "AWS::Logs::LogGroup"
        fields = json.loads(setting["Format"])
        assert fields["requestId"] == "$context.requestId"
        text = setting["Format"].lower()
        for leak in ("querystring", "header", "authorization", "$context.path", "$input", "authorizer"):
            assert leak not in text, leak
    # REST stages log through the account's API Gateway role, set before the stage exists.
    (account_id,) = of_type(resources, "AWS::ApiGateway::Account")
    assert account_id in _listify(resources["RestAPI"]["DependsOn"])


def test_cors_for_the_dashboard_origin_is_an_option(resources, options_resources):
    paths = props(options_resources, "RestAPI")["DefinitionBody"]["paths"]
    preflight = paths["/agents"]["options"]["x-amazon-apigateway-integration"]["responses"]["default"]
    assert preflight["responseParameters"]["method.response.header.Access-Control-Allow-Origin"] == f"'{CORS_ORIGIN}'"
    for lid in FUNCTIONS.values():
        assert env_of(options_resources, lid)[app_settings.CORS_ORIGIN] == CORS_ORIGIN
        assert app_settings.CORS_ORIGIN not in env_of(resources, lid)
    assert not any("options" in ops for ops in props(resources, "RestAPI")["DefinitionBody"]["paths"].values())


def test_each_function_has_its_own_role_and_log_group(resources):
    roles, groups = set(), set()
    for lid in FUNCTIONS.values():
        p = props(resources, lid)
        role = ref(p["Role"])
        group = ref(p["LoggingConfig"]["LogGroup"])
        assert resources[role]["Type"] == "AWS::IAM::Role"
        assert resources[group]["Type"] == "AWS::Logs::LogGroup"
        assert props(resources, group)["RetentionInDays"] > 0
        roles.add(role)
        groups.add(group)
    assert len(roles) == len(groups) == len(FUNCTIONS)


def test_every_function_gets_every_variable_the_app_reads_in_aws(resources, stage):
    required = {
        app_settings.ENVIRONMENT, app_settings.MAX_CONCURRENT_AGENTS, app_settings.AGENTS_TABLE,
        app_settings.SESSIONS_TABLE, app_settings.CONTROL_TABLE, app_settings.CONNECTIONS_TABLE,
        app_settings.WORK_QUEUE_URL, app_settings.DLQ_URL, app_settings.ALERT_TOPIC_ARN,
        app_settings.WS_ENDPOINT, app_settings.JWT_SECRET_ARN, app_settings.SIGNING_KEY_ID,
    }
    for lid in FUNCTIONS.values():
        env = env_of(resources, lid)
        assert required <= set(env), (lid, required - set(env))
        assert env[app_settings.ENVIRONMENT] == "aws"
        assert env[app_settings.MAX_CONCURRENT_AGENTS] == stage.environment[app_settings.MAX_CONCURRENT_AGENTS]
        # What the function would see at start-up (intrinsics resolved to placeholders) is valid.
        plain = {k: v if isinstance(v, str) else f"resolved-{k}" for k, v in env.items()}
        if not isinstance(env.get(app_settings.PUBLIC_URL, ""), str):  # a URL, checked as one
            plain[app_settings.PUBLIC_URL] = "https://resolved.execute-api.example/api"
        s = Settings.from_env(plain)
        assert s.environment == "aws"
        for field in ("agents_table", "sessions_table", "control_table", "connections_table", "work_queue_url",
                      "dlq_url", "alert_topic_arn", "ws_endpoint", "jwt_secret_arn", "signing_key_id"):
            assert getattr(s, field).startswith("resolved-"), (lid, field)


def test_ws_endpoint_is_this_stacks_websocket_api(resources, stage):
    sub = env_of(resources, FUNCTIONS["worker"])[app_settings.WS_ENDPOINT]["Fn::Sub"]
    assert sub == "https://${WebsocketAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/" + stage.api_gateway_stage
    assert resources["WebsocketAPI"]["Type"] == "AWS::ApiGatewayV2::Api"
    assert props(resources, "WebsocketAPIStage")["StageName"] == stage.api_gateway_stage


def test_the_worker_hands_agents_this_stacks_rest_api_as_their_callback_base(resources, stage):
    sub = env_of(resources, FUNCTIONS["worker"])[app_settings.PUBLIC_URL]["Fn::Sub"]
    assert sub == "https://${RestAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/" + stage.api_gateway_stage
    # Only the worker: the REST API's definition names the API function (its environment naming the API: a cycle).
    assert app_settings.PUBLIC_URL not in env_of(resources, FUNCTIONS["api_handler"])


def test_rest_and_websocket_apis_are_throttled(resources, stage):
    (method,) = props(resources, "RestAPI")["MethodSettings"]
    assert (method["ResourcePath"], method["HttpMethod"]) == ("/*", "*")
    assert method["ThrottlingRateLimit"] == stage.knobs.rest_rate_limit > 0
    assert method["ThrottlingBurstLimit"] == stage.knobs.rest_burst_limit > 0
    ws = props(resources, "WebsocketAPIStage")["DefaultRouteSettings"]
    assert ws["ThrottlingRateLimit"] == stage.knobs.ws_rate_limit > 0
    assert ws["ThrottlingBurstLimit"] == stage.knobs.ws_burst_limit > 0


# --- least privilege ------------------------------------------------------------------------------------------
def _policy_documents(resources):
    for lid, res in resources.items():
        p = res.get("Properties", {})
        for key in ("AssumeRolePolicyDocument", "PolicyDocument"):
            if key in p:
                yield lid, p[key]
        for inline in p.get("Policies", []) if isinstance(p.get("Policies"), list) else []:
            yield lid, inline["PolicyDocument"]


def _listify(v):
    return v if isinstance(v, list) else [v]


def test_no_statement_allows_a_wildcard_action_or_resource(resources):
    seen = 0
    for lid, doc in _policy_documents(resources):
        for st in doc["Statement"]:
            seen += 1
            for action in _listify(st.get("Action", [])) + _listify(st.get("NotAction", [])):
                assert "*" not in action, (lid, st)
            assert "NotResource" not in st, (lid, st)
            assert "*" not in _listify(st.get("Resource", [])), (lid, st)
    assert seen > len(FUNCTIONS)


def _symbol(resource, resources, own_log_group) -> str:
    """A policy statement's resource, named the way infra/access.py names it."""
    by_target = {env_target(resources, var): f"table:{key}" for key, (_, var) in TABLES.items()}
    by_target[env_target(resources, app_settings.WORK_QUEUE_URL)] = "queue:work"
    by_target[env_target(resources, app_settings.DLQ_URL)] = "queue:dlq"
    by_target[env_target(resources, app_settings.ALERT_TOPIC_ARN)] = "topic:alerts"
    by_target[env_target(resources, app_settings.JWT_SECRET_ARN)] = "secret:jwt"
    by_target[env_target(resources, app_settings.SIGNING_KEY_ID)] = "kms:signing"
    if isinstance(resource, dict) and ("Ref" in resource or "Fn::GetAtt" in resource):
        target = ref(resource)
        if target == own_log_group:
            return "logs:self"
        return by_target.get(target, f"?{target}")
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        sub = resource["Fn::Sub"]
        if isinstance(sub, list):
            text, variables = sub
            if text.startswith("${Table}/index/") and set(variables) == {"Table"}:
                return f"index:{by_target[ref(variables['Table'])][len('table:'):]}:{text.rsplit('/', 1)[1]}"
        elif sub.endswith(":${WebsocketAPI}/api/POST/@connections/*"):
            return "ws:connections"
        elif sub.endswith(":${WebsocketAPI}/api/DELETE/@connections/*"):
            return "ws:close"
        elif ":lambda:${AWS::Region}:${AWS::AccountId}:function:agent-scheduler-agent-" in sub:
            return "lambda:agents"
    return f"?{json.dumps(resource)}"


def _grants_in_template(resources, logical_id) -> set[tuple[str, str]]:
    p = props(resources, logical_id)
    role = props(resources, ref(p["Role"]))
    own_log_group = ref(p["LoggingConfig"]["LogGroup"])
    out = set()
    attached = [r for r in resources.values() if r["Type"] == "AWS::IAM::Policy"]
    assert not attached and "ManagedPolicyArns" not in role  # everything is inline, in one place
    for inline in role["Policies"]:
        for st in inline["PolicyDocument"]["Statement"]:
            assert st["Effect"] == "Allow" and "Condition" not in st
            for action in _listify(st["Action"]):
                for res in _listify(st["Resource"]):
                    out.add((action, _symbol(res, resources, own_log_group)))
    return out


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_role_grants_exactly_the_access_table(resources, function):
    expected = {(action, a.resource) for a in access.grants(function) for action in a.actions}
    assert _grants_in_template(resources, FUNCTIONS[function]) == expected


def test_sensitive_grants_go_only_where_they_are_used(resources):
    grants = {fn: _grants_in_template(resources, lid) for fn, lid in FUNCTIONS.items()}

    def holders(action, resource=None):
        return {fn for fn, g in grants.items() if any(a == action and (resource in (None, r)) for a, r in g)}

    assert holders("secretsmanager:GetSecretValue") == {"api_handler", "websocket_connect"}  # not tick, worker
    # the tick ends abandoned attempts too, and the REST API agents' callbacks (a dead run alerts)
    assert holders("sns:Publish") == {"worker", "tick", "api_handler"}
    assert holders("lambda:InvokeFunction") == {"worker"}
    assert holders("kms:Decrypt") == {"worker"}  # signing secrets are read only where deliveries are signed
    assert holders("kms:Encrypt") == {"api_handler"}
    assert holders("sqs:ReceiveMessage", "queue:work") == {"worker"}
    assert holders("sqs:ReceiveMessage", "queue:dlq") == {"api_handler"}
    # the API pushes schedule:changed to the tenant's connections
    assert holders("execute-api:ManageConnections") == {"tick", "worker", "websocket_message", "api_handler"}
    assert holders("dynamodb:DeleteItem", "table:agents") == {"api_handler"}
    assert holders("dynamodb:Scan", "table:agents") == set()
    assert holders("dynamodb:Scan", "table:sessions") == set()
    assert grants["websocket_connect"] == {
        ("dynamodb:PutItem", "table:connections"),
        ("dynamodb:GetItem", "table:events"),  # a single-use ticket: read, then deleted
        ("dynamodb:DeleteItem", "table:events"),
        ("secretsmanager:GetSecretValue", "secret:jwt"),
        ("logs:CreateLogStream", "logs:self"),
        ("logs:PutLogEvents", "logs:self"),
    }
    for fn, g in grants.items():  # EMF metrics go through the logs: nobody needs PutMetricData
        assert not any(a.startswith("cloudwatch:") or a == "logs:CreateLogGroup" for a, _ in g), fn


# --- lambda agents -------------------------------------------------------------------------------------------
def test_agent_functions_are_scoped_by_the_tenant_pattern(resources):
    pattern = env_of(resources, FUNCTIONS["worker"])[LAMBDA_ALLOWED_ENV]
    assert pattern == LAMBDA_ALLOWED_DEFAULT == "agent-scheduler-agent-{tenant}-*"
    (statement,) = [
        st for p in props(resources, props(resources, FUNCTIONS["worker"])["Role"]["Fn::GetAtt"][0])["Policies"]
        for st in p["PolicyDocument"]["Statement"] if st["Action"] == "lambda:InvokeFunction"
    ]
    (arn,) = _listify(statement["Resource"])
    assert arn["Fn::Sub"].endswith(":function:agent-scheduler-agent-*-*")


# --- alarms and dashboard ---------------------------------------------------------------------------------------
def _alarms(resources) -> dict:
    return {p["AlarmName"].rsplit("-", 1)[-1]: p
            for p in (a["Properties"] for a in of_type(resources, "AWS::CloudWatch::Alarm").values())}


def _dims(alarm) -> dict:
    return {d["Name"]: d["Value"] for d in alarm["Dimensions"]}


def test_every_alarm_notifies_the_alert_topic_and_has_a_runbook(resources):
    topic = env_target(resources, app_settings.ALERT_TOPIC_ARN)
    alarms = _alarms(resources)
    assert set(alarms) == {"TickMissing", "TickDuration", "QueueAge", "WorkerErrors", "WorkerThrottles", "Api5xx",
                           "DeadRuns", "QueueDlqDepth", "CounterRepairs", "StartLateness"}
    readme = (REPO_ROOT / "infra" / "README.md").read_text()
    for key, alarm in alarms.items():
        assert alarm["AlarmActions"] == [{"Ref": topic}], key
        assert f"infra/README.md#{key.lower()}" in alarm["AlarmDescription"], key
        assert f"### {key}" in readme, f"no runbook entry for {key}"


def test_a_missing_tick_alarms_after_three_minutes(resources):
    tick = _alarms(resources)["TickMissing"]
    assert (tick["Namespace"], tick["MetricName"], tick["Statistic"]) == (app_metrics.NAMESPACE, "TickSucceeded", "Sum")
    assert _dims(tick) == {"service": app_metrics.metrics.service}
    assert tick["Period"] == 60 and tick["EvaluationPeriods"] == 3
    assert (tick["ComparisonOperator"], tick["Threshold"]) == ("LessThanThreshold", 1)
    assert tick["TreatMissingData"] == "breaching"  # no tick, no data point


def test_the_tick_emits_the_metric_the_alarm_watches(capsys, monkeypatch):
    from chalicelib.services import metrics

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # tests/conftest.py turns them off
    metrics.metrics.clear_metrics()  # nothing left over from other tests in this process
    metrics.tick_finished(fires=3, admitted=2, duration_ms=120.0)
    metrics.flush()
    emf = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (directive,) = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == app_metrics.NAMESPACE and directive["Dimensions"] == [["service"]]
    assert {m["Name"] for m in directive["Metrics"]} == {"TickSucceeded", "TickDuration", "Fires", "RunsAdmitted"}
    assert (emf["TickSucceeded"], emf["Fires"], emf["RunsAdmitted"]) == ([1.0], [3.0], [2.0])


def test_queue_worker_api_dlq_and_repair_alarms(resources, stage):
    alarms = _alarms(resources)
    work = env_target(resources, app_settings.WORK_QUEUE_URL)
    dlq = env_target(resources, app_settings.DLQ_URL)
    age = alarms["QueueAge"]
    assert age["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert _dims(age) == {"QueueName": {"Fn::GetAtt": [work, "QueueName"]}}
    assert age["Threshold"] == stage.knobs.queue_age_alarm_seconds >= limits.WORKER_TIMEOUT_SECONDS
    for key, metric in (("WorkerErrors", "Errors"), ("WorkerThrottles", "Throttles")):
        assert alarms[key]["MetricName"] == metric
        assert _dims(alarms[key]) == {"FunctionName": {"Ref": FUNCTIONS["worker"]}}
    api = alarms["Api5xx"]
    assert (api["Namespace"], api["MetricName"]) == ("AWS/ApiGateway", "5XXError")
    assert _dims(api) == {"ApiName": props(resources, "RestAPI")["Name"], "Stage": stage.api_gateway_stage}
    sqs_dlq = alarms["QueueDlqDepth"]
    assert _dims(sqs_dlq) == {"QueueName": {"Fn::GetAtt": [dlq, "QueueName"]}}
    assert sqs_dlq["MetricName"] == "ApproximateNumberOfMessagesVisible" and sqs_dlq["Threshold"] == 1
    for key, metric in (("DeadRuns", "RunsDead"), ("CounterRepairs", "CounterRepairs")):
        a = alarms[key]
        assert (a["Namespace"], a["MetricName"]) == (app_metrics.NAMESPACE, metric)
        assert _dims(a) == {"service": app_metrics.metrics.service}
    repairs = alarms["CounterRepairs"]
    assert (repairs["ComparisonOperator"], repairs["Threshold"]) == ("GreaterThanThreshold", 0)


def test_tick_duration_and_lateness_alarms(resources, stage):
    alarms = _alarms(resources)
    duration = alarms["TickDuration"]
    assert _dims(duration) == {"FunctionName": {"Ref": FUNCTIONS["tick"]}}
    tick_timeout_ms = props(resources, FUNCTIONS["tick"])["Timeout"] * 1000
    assert tick_timeout_ms / 2 <= duration["Threshold"] < tick_timeout_ms
    lateness = alarms["StartLateness"]
    assert lateness["Namespace"] == app_metrics.NAMESPACE
    assert _dims(lateness) == {"service": app_metrics.metrics.service}
    assert lateness["ExtendedStatistic"] == "p99"
    assert lateness["Threshold"] == stage.knobs.lateness_p99_ms


def test_dashboard_shows_ticks_fires_lateness_outcomes_and_queue_age(resources):
    (dashboard,) = of_type(resources, "AWS::CloudWatch::Dashboard").values()
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else json.dumps(p) for p in parts)
    for name in ("TickDuration", "Fires", "StartLateness", "RunsSucceeded", "RunsFailed", "RunsDead",
                 "ApproximateAgeOfOldestMessage", "TickSucceeded", "CounterRepairs"):
        assert f'"{name}"' in text, name


def test_the_dashboard_shows_the_sqs_dlq_depth_the_alarm_watches(resources):
    """The work queue's redrive target: its visible messages on the dashboard, next to the alarm on them."""
    (dashboard,) = of_type(resources, "AWS::CloudWatch::Dashboard").values()
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    dlq = env_target(resources, app_settings.DLQ_URL)
    at = parts.index({"Fn::GetAtt": [dlq, "QueueName"]})
    line = parts[at - 1].rsplit("[", 1)[-1] + "QUEUE" + parts[at + 1].split("]", 1)[0]
    assert line.startswith('"AWS/SQS","ApproximateNumberOfMessagesVisible","QueueName","'), line
    assert '"label":"SQS DLQ"' in line and '"stat":"Maximum"' in line, line
    alarm = _alarms(resources)["QueueDlqDepth"]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == (
        "AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum")
    assert _dims(alarm) == {"QueueName": {"Fn::GetAtt": [dlq, "QueueName"]}}
