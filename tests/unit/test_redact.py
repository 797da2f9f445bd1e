"""Secrets in agent configs never reach a log line, an error message or an event."""
from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chalicelib.agents import KindDeps, execute, get_kind
from chalicelib.agents.net import NetPolicy
from chalicelib.agents.policy import AgentPolicy
from chalicelib.agents.redact import REDACTED, RedactingFilter, is_secret_key, redact, scrub, secret_values
from chalicelib.errors import ValidationError
from tests.unit.test_agents import FakeContext

TOKEN = "sk-live-4f9a1c2b7e"
CONFIG = {
    "url": "http://127.0.0.1:1/",
    "headers": {
        "Authorization": f"Bearer {TOKEN}",
        "X-Api-Key": "key-123456",
        "X-Tenant-Pass": "hunter2-hunter2",
        "X-Trace": "trace-visible",
    },
    "secretHeaders": ["x-tenant-pass"],
}


@pytest.mark.parametrize(
    "name",
    ["Authorization", "proxy-authorization", "Cookie", "Set-Cookie", "X-Api-Key", "api_key", "apikey",
     "accessToken", "client_secret", "password", "DB_PASSWD", "privateKey", "credentials"],
)
def test_secret_key_names(name):
    assert is_secret_key(name)


@pytest.mark.parametrize("name", ["X-Trace", "Content-Type", "inputTokens", "outputTokens", "secretHeaders", "url"])
def test_ordinary_key_names(name):
    assert not is_secret_key(name)


def test_redact_replaces_secret_values_and_listed_headers():
    assert redact(CONFIG) == {
        "url": "http://127.0.0.1:1/",
        "headers": {
            "Authorization": REDACTED,
            "X-Api-Key": REDACTED,
            "X-Tenant-Pass": REDACTED,
            "X-Trace": "trace-visible",
        },
        "secretHeaders": ["x-tenant-pass"],
    }
    assert CONFIG["headers"]["Authorization"] == f"Bearer {TOKEN}"  # a copy; the config is untouched


def test_secret_values_include_the_bare_credential():
    values = secret_values(CONFIG)
    assert {f"Bearer {TOKEN}", TOKEN, "key-123456", "hunter2-hunter2"} <= values
    assert "trace-visible" not in values


def test_scrub_free_text():
    text = f"HTTP 401: echo Authorization: Bearer {TOKEN}; key=key-123456 whsec_c2VjcmV0c2VjcmV0"
    cleaned = scrub(text, secret_values(CONFIG))
    assert TOKEN not in cleaned and "key-123456" not in cleaned and "whsec_" not in cleaned
    assert "HTTP 401" in cleaned
    assert scrub("Basic auth failed; bearer token missing") == "Basic auth failed; bearer token missing"


def test_secret_headers_must_be_header_names():
    kind = get_kind("http")
    assert kind.validate_config({"url": "https://x.example/", "secretHeaders": ["X-Pass"]})["secretHeaders"] == ["X-Pass"]
    for bad in ("X-Pass", ["bad name"], [3]):
        with pytest.raises(ValidationError) as info:
            kind.validate_config({"url": "https://x.example/", "secretHeaders": bad})
        assert info.value.field == "config.secretHeaders"


# --- a server that echoes every header back in an error answer ---------------------------
class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        body = "\n".join(f"{k}: {v}" for k, v in self.headers.items()).encode()
        status = 200 if self.path == "/ok" else 401
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def echo_url():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def run_http(config):
    kind = get_kind("http")
    deps = KindDeps(policy=AgentPolicy(net=NetPolicy(allow_loopback=True)))
    return execute(kind, kind.validate_config(config), FakeContext(), deps, 5.0)


def test_echoed_secrets_leave_no_trace_in_the_outcome(echo_url):
    failed = run_http({**CONFIG, "url": f"{echo_url}/denied"})
    assert "HTTP 401" in failed.message and "trace-visible" in failed.message
    for secret in (TOKEN, "key-123456", "hunter2-hunter2"):
        assert secret not in failed.message
    ok = run_http({**CONFIG, "url": f"{echo_url}/ok"})
    assert ok.ok and "trace-visible" in ok.output["body"]
    for secret in (TOKEN, "key-123456", "hunter2-hunter2"):
        assert secret not in ok.output["body"]


def test_the_run_log_line_carries_no_secret(echo_url, caplog):
    """What the worker logs for a failed run is the outcome's message."""
    out = run_http({**CONFIG, "url": f"{echo_url}/denied"})
    log = logging.getLogger("agent_scheduler.runs")
    with caplog.at_level(logging.INFO, logger="agent_scheduler.runs"):
        log.info("%s agent=%s error=%s: %s", "agent:failed", "agt_1", out.category.value, out.message)
    assert caplog.records and "HTTP 401" in caplog.text
    for secret in (TOKEN, "key-123456", "hunter2-hunter2"):
        assert secret not in caplog.text


# --- the log filter -------------------------------------------------------------------------
@pytest.fixture
def filtered(caplog):
    flt = RedactingFilter()
    caplog.handler.addFilter(flt)
    try:
        yield caplog
    finally:
        caplog.handler.removeFilter(flt)


def test_filter_scrubs_messages_arguments_and_extras(filtered):
    log = logging.getLogger("agent_scheduler.test")
    with filtered.at_level(logging.INFO):
        log.info("calling with Authorization: Bearer %s", TOKEN)
        log.info("agent saved", extra={"config": CONFIG, "token": TOKEN, "agent_id": "agt_1"})
        log.warning("push failed: %s", {"Authorization": f"Bearer {TOKEN}"})
    text = filtered.text + repr([vars(r) for r in filtered.records])
    assert TOKEN not in text and "key-123456" not in text and "hunter2-hunter2" not in text
    assert filtered.records[1].agent_id == "agt_1"
    assert filtered.records[1].config["headers"]["X-Trace"] == "trace-visible"


def test_filter_scrubs_tracebacks(filtered):
    log = logging.getLogger("agent_scheduler.test")
    with filtered.at_level(logging.INFO):
        try:
            raise RuntimeError(f"upstream said: authorization={TOKEN}")
        except RuntimeError:
            log.exception("executor failed")
    assert "RuntimeError" in filtered.text and TOKEN not in filtered.text
