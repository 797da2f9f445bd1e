"""``lambda`` agents invoke only their tenant's functions, once per attempt."""
from __future__ import annotations

import io

import botocore.awsrequest
import pytest
from botocore.exceptions import ReadTimeoutError

from chalicelib.adapters.lambda_invoke import Invocation, InvokeFailed, LambdaInvoker, build_client
from chalicelib.agents import KindDeps, execute, get_kind
from chalicelib.agents.kinds.lambda_kind import function_name_of, may_invoke
from chalicelib.agents.policy import AgentPolicy
from chalicelib.agents.registry import check_config
from chalicelib.domain.model import ErrorCategory
from chalicelib.errors import ConfigError, ValidationError
from chalicelib.settings import DEFAULT_LAMBDA_ALLOWED, Settings
from tests.unit.test_agents import FakeContext

DEFAULT = DEFAULT_LAMBDA_ALLOWED


@pytest.mark.parametrize(
    "reference, name",
    [
        ("agent-scheduler-agent-acme-report", "agent-scheduler-agent-acme-report"),
        ("agent-scheduler-agent-acme-report:prod", "agent-scheduler-agent-acme-report"),
        ("agent-scheduler-agent-acme-report:$LATEST", "agent-scheduler-agent-acme-report"),
        ("123456789012:function:agent-scheduler-agent-acme-report", "agent-scheduler-agent-acme-report"),
        ("123456789012:function:agent-scheduler-agent-acme-report:7", "agent-scheduler-agent-acme-report"),
        ("arn:aws:lambda:eu-west-1:123456789012:function:agent-scheduler-agent-acme-report",
         "agent-scheduler-agent-acme-report"),
        ("arn:aws-cn:lambda:cn-north-1:123456789012:function:f_1:live", "f_1"),
        ("arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:f", "f"),
    ],
)
def test_function_name_of_every_reference_form(reference, name):
    assert function_name_of(reference) == name


@pytest.mark.parametrize(
    "reference",
    ["", "has space", "f" * 65, "arn:aws:lambda:us-east-1:123:function:f", "arn:aws:s3:::bucket",
     "123456789012:layer:f", "f:a:b", "f/../g"],
)
def test_not_a_function_reference(reference):
    assert function_name_of(reference) is None


@pytest.mark.parametrize(
    "tenant, reference, allowed",
    [
        ("acme", "agent-scheduler-agent-acme-report", True),
        ("acme", "agent-scheduler-agent-acme-daily_report", True),
        ("acme", "arn:aws:lambda:us-east-1:123456789012:function:agent-scheduler-agent-acme-report:prod", True),
        ("acme", "123456789012:function:agent-scheduler-agent-acme-report", True),
        ("acme", "agent-scheduler-agent-globex-report", False),  # another tenant's
        ("acme", "agent-scheduler-agent-acme-corp-report", False),  # tenant acme-corp's
        ("acme-corp", "agent-scheduler-agent-acme-corp-report", True),
        ("acme-corp", "agent-scheduler-agent-acme-report", False),
        ("acme", "agent-scheduler-agent-acme", False),  # the pattern needs "-" and a suffix part
        ("acme", "other-prefix-acme-report", False),
        ("acme", "arn:aws:lambda:us-east-1:123456789012:function:agent-scheduler-agent-globex-x", False),
        ("a.b", "agent-scheduler-agent-aXb-report", False),  # the tenant id is literal, not a regex
        ("*", "agent-scheduler-agent-acme-report", False),  # nor a glob
    ],
)
def test_default_pattern_binds_functions_to_tenants(tenant, reference, allowed):
    assert may_invoke(DEFAULT, tenant, reference) is allowed


def test_custom_patterns():
    assert may_invoke("team-*-{tenant}", "acme", "team-data-acme")
    assert not may_invoke("team-*-{tenant}", "acme", "team-data-globex")
    assert not may_invoke("team-*-{tenant}", "b", "team-x-a-b")  # "*" is one segment
    assert may_invoke("{tenant}", "acme", "acme")
    assert not may_invoke("{tenant}", "acme", "acme-x")


@pytest.mark.parametrize("bad", ["fixed-name", "x{tenant}-*", "{tenant}_*", "{tenant}-{tenant}", "a b-{tenant}",
                                 "arn:aws:lambda:*:*:function:{tenant}-*"])
def test_allowed_setting_is_checked_at_start(bad):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"SCHEDULER_LAMBDA_ALLOWED": bad})
    assert "SCHEDULER_LAMBDA_ALLOWED" in info.value.message


def test_allowed_setting_default_and_override():
    assert Settings.from_env({}).lambda_allowed == "agent-scheduler-agent-{tenant}-*"
    assert Settings.from_env({"SCHEDULER_LAMBDA_ALLOWED": "team-*-{tenant}-*"}).lambda_allowed == "team-*-{tenant}-*"


# --- at save ---------------------------------------------------------------------------
def test_save_refuses_another_tenants_function_naming_the_field():
    with pytest.raises(ValidationError) as info:
        check_config("lambda", {"functionName": "agent-scheduler-agent-globex-report"}, "acme", AgentPolicy())
    assert info.value.field == "config.functionName"
    assert "agent-scheduler-agent-acme-*" in info.value.message
    assert check_config("lambda", {"functionName": "agent-scheduler-agent-acme-x"}, "acme", AgentPolicy()) == {
        "functionName": "agent-scheduler-agent-acme-x"
    }


def test_other_kinds_have_no_tenancy_rule():
    assert check_config("echo", None, "acme", AgentPolicy()) == {}


# --- at run ----------------------------------------------------------------------------
class FakeInvoker:
    def __init__(self, result: Invocation | Exception) -> None:
        self.result = result
        self.calls: list[tuple[str, bytes]] = []

    def invoke(self, function_name: str, payload: bytes) -> Invocation:
        self.calls.append((function_name, payload))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


DEFAULT_POLICY = AgentPolicy()


def run(config: dict, invoker, ctx=None, policy=DEFAULT_POLICY):
    kind = get_kind("lambda")
    return execute(kind, kind.validate_config(config), ctx or FakeContext(), KindDeps(policy=policy, lambda_invoker=invoker), 5.0)


def test_run_refuses_another_tenants_function_without_invoking():
    invoker = FakeInvoker(Invocation(b"{}", None))
    out = run({"functionName": "agent-scheduler-agent-globex-report"}, invoker)  # the context's tenant is t1
    assert out.category is ErrorCategory.PERMANENT
    assert "refused function 'agent-scheduler-agent-globex-report'" in out.message
    assert "agent-scheduler-agent-t1-*" in out.message
    assert invoker.calls == []


def test_run_checks_the_setting_in_force_at_run_time():
    invoker = FakeInvoker(Invocation(b'{"ok": 1}', None))
    config = {"functionName": "agent-scheduler-agent-t1-report"}
    assert run(config, invoker).output == {"ok": 1}
    out = run(config, invoker, policy=AgentPolicy(lambda_allowed="team-{tenant}-*"))
    assert out.category is ErrorCategory.PERMANENT
    assert len(invoker.calls) == 1


def test_run_without_a_tenant_is_refused():
    ctx = FakeContext()
    del ctx.tenant_id
    invoker = FakeInvoker(Invocation(b"{}", None))
    out = run({"functionName": "agent-scheduler-agent-t1-report"}, invoker, ctx)
    assert out.category is ErrorCategory.PERMANENT and invoker.calls == []


def test_the_tenant_of_a_worker_context_comes_from_its_session():
    class Session:
        tenant_id = "t9"

    class WorkerContext(FakeContext):
        def __init__(self):
            super().__init__()
            del self.tenant_id
            self.session = Session()

    invoker = FakeInvoker(Invocation(b"{}", None))
    assert run({"functionName": "agent-scheduler-agent-t9-x"}, invoker, WorkerContext()).ok
    assert run({"functionName": "agent-scheduler-agent-t1-x"}, invoker, WorkerContext()).category is ErrorCategory.PERMANENT


def test_invocation_timeout_at_the_deadline_is_timeout():
    failure = InvokeFailed(ErrorCategory.TRANSIENT, "lambda f: no response in time", timed_out=True)
    config = {"functionName": "agent-scheduler-agent-t1-x"}
    assert run(config, FakeInvoker(failure)).category is ErrorCategory.TRANSIENT
    ctx = FakeContext(deadline=10.0)
    ctx.now = 10.0
    assert run(config, FakeInvoker(failure), ctx).category is ErrorCategory.TIMEOUT


# --- the adapter: one invocation per attempt ---------------------------------------------
def test_client_has_sdk_retries_off():
    client = build_client(region="us-east-1", endpoint_url="http://127.0.0.1:1")
    assert client.meta.config.retries["total_max_attempts"] == 1
    assert client.meta.config.read_timeout == 900


@pytest.mark.parametrize("status, code", [(500, "ServiceException"), (429, "TooManyRequestsException")])
def test_a_failed_invoke_is_sent_once(status, code, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = build_client(region="us-east-1")
    sends: list[str] = []

    def answer(request, **kwargs):  # botocore hook: answers instead of the network
        sends.append(request.url)
        body = ('{"__type": "' + code + '", "message": "try later"}').encode()
        return botocore.awsrequest.AWSResponse(request.url, status, {"x-amzn-errortype": code}, _Raw(body))

    client.meta.events.register("before-send.lambda.Invoke", answer)
    with pytest.raises(InvokeFailed) as info:
        LambdaInvoker(client).invoke("agent-scheduler-agent-t1-x", b"{}")
    assert info.value.category is ErrorCategory.TRANSIENT
    assert len(sends) == 1


def test_a_read_timeout_is_reported_as_timed_out():
    class Client:
        def invoke(self, **kwargs):
            raise ReadTimeoutError(endpoint_url="https://lambda")

    with pytest.raises(InvokeFailed) as info:
        LambdaInvoker(Client()).invoke("f", b"{}")
    assert info.value.timed_out is True


def test_invoker_returns_payload_and_function_error():
    class Client:
        def invoke(self, **kwargs):
            assert kwargs == {"FunctionName": "f", "InvocationType": "RequestResponse", "Payload": b"{}"}
            return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": io.BytesIO(b'{"errorMessage": "x"}')}

    assert LambdaInvoker(Client()).invoke("f", b"{}") == Invocation(b'{"errorMessage": "x"}', "Unhandled")


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = io.BytesIO(body)

    def stream(self, **kwargs):
        yield self._body.read()
