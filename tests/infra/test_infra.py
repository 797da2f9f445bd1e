"""The CDK app: synthesizes offline, lints clean, and the template says what the app needs.

One synthesis per module (a subprocess with no AWS credentials at all); every
test reads the same template.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from chalicelib import settings as app_settings
from chalicelib.adapters import provision
from chalicelib.adapters.tables import ALL_MODELS
from chalicelib.services import metrics as app_metrics
from chalicelib.settings import Settings
from infra import access
from infra.config import FUNCTIONS, MIN_MAXIMUM_CONCURRENCY, TABLES, WORKER_BATCH_SIZE, load_stage

REPO_ROOT = Path(__file__).resolve().parents[2]
STAGE = "dev"
SAM_FUNCTION = "AWS::Serverless::Function"


# --- synthesis (once) ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("cdk.out")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(out / "no-credentials"),
        AWS_CONFIG_FILE=str(out / "no-config"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "infra.app", "--stage", STAGE, "--out", str(out)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"synthesis failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return out


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


def test_cfn_lint_reports_nothing(template_path):
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(template_path, config=ManualArgs(include_checks=["I"], regions=["us-east-1", "eu-west-1"]))
    assert [f"{m.rule.id} {m.message} ({m.path})" for m in matches] == []


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
def test_work_queue_dead_letters_and_outlasts_the_worker(resources):
    work = props(resources, env_target(resources, app_settings.WORK_QUEUE_URL))
    dlq_id = env_target(resources, app_settings.DLQ_URL)
    worker = props(resources, FUNCTIONS["worker"])
    assert work["VisibilityTimeout"] == provision.WORK_QUEUE_VISIBILITY_SECONDS
    assert work["VisibilityTimeout"] > worker["Timeout"]
    assert ref(work["RedrivePolicy"]["deadLetterTargetArn"]) == dlq_id
    assert work["RedrivePolicy"]["maxReceiveCount"] == provision.MAX_RECEIVE_COUNT
    assert props(resources, dlq_id)["MessageRetentionPeriod"] == provision.DLQ_RETENTION_SECONDS
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


def test_tick_runs_every_minute_alone(resources):
    tick = props(resources, FUNCTIONS["tick"])
    assert tick["ReservedConcurrentExecutions"] == 1
    schedules = [e["Properties"]["Schedule"] for e in tick["Events"].values() if e["Type"] == "Schedule"]
    assert schedules == ["rate(1 minute)"]
    assert tick["Timeout"] <= 60


def test_worker_timeout_bounds_agent_deadlines(resources):
    assert props(resources, FUNCTIONS["worker"])["Timeout"] == provision.WORKER_TIMEOUT_SECONDS == 900


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
        app_settings.WS_ENDPOINT, app_settings.JWT_SECRET_ARN,
    }
    for lid in FUNCTIONS.values():
        env = env_of(resources, lid)
        assert required <= set(env), (lid, required - set(env))
        assert env[app_settings.ENVIRONMENT] == "aws"
        assert env[app_settings.MAX_CONCURRENT_AGENTS] == stage.environment[app_settings.MAX_CONCURRENT_AGENTS]
        # What the function would see at start-up (intrinsics resolved to placeholders) is valid.
        plain = {k: v if isinstance(v, str) else f"resolved-{k}" for k, v in env.items()}
        s = Settings.from_env(plain)
        assert s.environment == "aws"
        for field in ("agents_table", "sessions_table", "control_table", "connections_table", "work_queue_url",
                      "dlq_url", "alert_topic_arn", "ws_endpoint", "jwt_secret_arn"):
            assert getattr(s, field).startswith("resolved-"), (lid, field)


def test_ws_endpoint_is_this_stacks_websocket_api(resources, stage):
    sub = env_of(resources, FUNCTIONS["worker"])[app_settings.WS_ENDPOINT]["Fn::Sub"]
    assert sub == "https://${WebsocketAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/" + stage.api_gateway_stage
    assert resources["WebsocketAPI"]["Type"] == "AWS::ApiGatewayV2::Api"
    assert props(resources, "WebsocketAPIStage")["StageName"] == stage.api_gateway_stage


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

    assert holders("sns:Publish") == {"worker"}
    assert holders("lambda:InvokeFunction") == {"worker"}
    assert holders("sqs:ReceiveMessage", "queue:work") == {"worker"}
    assert holders("sqs:ReceiveMessage", "queue:dlq") == {"api_handler"}
    assert holders("execute-api:ManageConnections") == {"tick", "worker", "websocket_message"}
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


# --- alarms ---------------------------------------------------------------------------------------------------
def test_alarms_notify_the_alert_topic(resources, stage):
    topic = env_target(resources, app_settings.ALERT_TOPIC_ARN)
    alarms = {p["MetricName"]: p for p in (a["Properties"] for a in of_type(resources, "AWS::CloudWatch::Alarm").values())}
    assert set(alarms) == {"ApproximateNumberOfMessagesVisible", "Errors", "Duration", "Throttles", "StartLateness"}
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": topic}]
        assert alarm["TreatMissingData"] == "notBreaching"

    dims = lambda a: {d["Name"]: d["Value"] for d in a["Dimensions"]}  # noqa: E731
    dlq = env_target(resources, app_settings.DLQ_URL)
    assert dims(alarms["ApproximateNumberOfMessagesVisible"]) == {"QueueName": {"Fn::GetAtt": [dlq, "QueueName"]}}
    assert alarms["ApproximateNumberOfMessagesVisible"]["Threshold"] == 1
    assert dims(alarms["Errors"]) == {"FunctionName": {"Ref": FUNCTIONS["tick"]}}
    assert dims(alarms["Duration"]) == {"FunctionName": {"Ref": FUNCTIONS["tick"]}}
    tick_timeout_ms = props(resources, FUNCTIONS["tick"])["Timeout"] * 1000
    assert tick_timeout_ms / 2 <= alarms["Duration"]["Threshold"] < tick_timeout_ms
    assert dims(alarms["Throttles"]) == {"FunctionName": {"Ref": FUNCTIONS["worker"]}}
    lateness = alarms["StartLateness"]
    assert lateness["Namespace"] == app_metrics.NAMESPACE
    assert dims(lateness) == {"service": app_metrics.metrics.service}
    assert lateness["ExtendedStatistic"] == "p99"
    assert lateness["Threshold"] == stage.knobs.lateness_p99_ms
