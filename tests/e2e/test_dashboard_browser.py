"""The dashboard in a real headless Chromium (Debian's ``chromium``) against ``python -m local.run``.

Driven with Playwright pointed at /usr/bin/chromium (no browser download). Checks: the
page opens with ``#token=`` and drops it from the URL, shows an agent, a run started
through the API completes on the page without a reload, a dropped WebSocket shows
"reconnecting" and the events missed meanwhile arrive after the resume, a redrive
from the DLQ view (by keyboard), the pools panel (running/limit, throttle), a run
waiting for a full pool says so, a schedule paused after failures says why, a
session shows the usage its agent reported, no console error, no request to another
origin than the API's and the WebSocket API's, no sideways overflow at 390 px.

Screenshots (1280 and 390 px) are saved as test artifacts in ``SCHEDULER_TEST_ARTIFACTS``
(default ``.artifacts/``); with ``SCHEDULER_UPDATE_SCREENSHOTS=1`` also into
``docs/screenshots/`` (the ones the README shows).

Without Chromium the module is skipped with a message, except when
``SCHEDULER_BROWSER_TESTS=required`` (``.ci/run`` sets it): then it fails.
"""
from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import httpx
import pytest

from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("SCHEDULER_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("SCHEDULER_TEST_ARTIFACTS", ROOT / ".artifacts"))
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
TIMEOUT_MS = 20_000


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (requirements-dev.txt)"
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        return f"Chromium is not installed ({CHROMIUM}): apt-get install chromium chromium-driver"
    return None


_missing = _browser_missing()
if _missing:
    if os.environ.get("SCHEDULER_BROWSER_TESTS") == "required":
        raise RuntimeError(f"browser tests are required here, but {_missing}")
    pytest.skip(f"browser tests skipped: {_missing}", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

expect.set_options(timeout=TIMEOUT_MS)  # a loaded machine (make test runs two workers) is slow, not wrong


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
                              args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Watch:
    """Everything the page does that a test may complain about."""

    def __init__(self, page, allowed_origins: set[str]) -> None:
        self.errors: list[str] = []
        self.foreign: list[str] = []
        self.sockets: list[str] = []
        self.allowed = allowed_origins
        page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("request", self._request)
        page.on("websocket", lambda ws: self._socket(ws.url))

    def _origin(self, url: str) -> str:
        u = urlsplit(url)
        return f"{u.scheme}://{u.netloc}"

    def _request(self, request) -> None:
        if request.url.startswith("data:"):
            return
        if self._origin(request.url) not in self.allowed:
            self.foreign.append(request.url)

    def _socket(self, url: str) -> None:
        self.sockets.append(url)
        if self._origin(url) not in self.allowed:
            self.foreign.append(url)


def _agent(api: httpx.Client, **fields) -> dict:
    r = api.post("/api/agents", json=fields)
    assert r.status_code == 201, r.text
    return r.json()


def _wait_session(api: httpx.Client, agent_id: str, session_id: str, statuses: set[str], timeout: float = 20) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s = api.get(f"/api/agents/{agent_id}/sessions/{session_id}").json()
        if s["status"] in statuses:
            return s
        time.sleep(0.1)
    raise AssertionError(f"session {session_id} did not reach {statuses}")


def _connection_ids(system, tenant: str) -> list[str]:
    dynamodb = boto3.client("dynamodb", endpoint_url=system.moto_url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    items = dynamodb.scan(TableName="agent-scheduler-connections")["Items"]
    return [i["connection_id"]["S"] for i in items if i["tenant_id"]["S"] == tenant]


def _screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    if os.environ.get("SCHEDULER_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_SCREENSHOTS / name), full_page=True)


def _wait_for(api: httpx.Client, agent_id: str, session_id: str, check, timeout: float = 20) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s = api.get(f"/api/agents/{agent_id}/sessions/{session_id}").json()
        if check(s):
            return s
        time.sleep(0.1)
    raise AssertionError(f"session {session_id}: {s}")


@pytest.fixture(scope="module")
def tenant(system):
    """A tenant of its own with a scheduled agent, a dead run (which pauses its schedule) and a
    finished one that reported usage; a pool of one slot held by a long run, another run waiting for it."""
    name = f"e2e-dash-{uuid.uuid4().hex[:6]}"
    from tests.e2e.conftest import token

    bearer = token(name)
    api = system.http(bearer)
    report = _agent(api, name="daily-report", kind="echo",
                    config={"message": "quarterly numbers", "usage": {"inputTokens": 1200, "outputTokens": 300, "costUsd": 0.0125}})
    r = api.post(f"/api/agents/{report['id']}/schedule",
                 json={"cronExpression": "30 9 * * MON-FRI", "timezone": "America/New_York", "priority": "HIGH"})
    assert r.status_code == 200, r.text
    flaky = _agent(api, name="flaky-sync", kind="fail", maxRetries=0, config={"category": "PERMANENT"},
                   pauseAfterFailures=1)
    r = api.post(f"/api/agents/{flaky['id']}/schedule", json={"cronExpression": "0 */6 * * *"})
    assert r.status_code == 200, r.text
    dead = api.post(f"/api/agents/{flaky['id']}/run", json={}).json()["sessionId"]
    _wait_session(api, flaky["id"], dead, {"DEAD"})
    done = api.post(f"/api/agents/{report['id']}/run", json={}).json()["sessionId"]
    _wait_session(api, report["id"], done, {"SUCCEEDED"})
    r = api.put("/api/pools/gpu-box", json={"maxConcurrency": 1, "throttle": {"limit": 30, "periodSeconds": 60}})
    assert r.status_code == 200, r.text
    render = _agent(api, name="gpu-render", kind="sleep", config={"seconds": 120, "progressEvery": 60}, pools=["gpu-box"])
    holding = api.post(f"/api/agents/{render['id']}/run", json={}).json()["sessionId"]
    _wait_session(api, render["id"], holding, {"RUNNING"})
    waiting = api.post(f"/api/agents/{render['id']}/run", json={}).json()["sessionId"]
    _wait_for(api, render["id"], waiting, lambda s: s.get("waitingReason") == "POOL_LIMIT")
    yield {"name": name, "token": bearer, "api": api, "report": report, "flaky": flaky, "dead": dead,
           "done": done, "render": render, "waiting": waiting}
    api.post("/api/sessions/cancel", json={"agentIds": [render["id"]]})  # frees the slots for other tests


def _open(browser, system, tenant, width: int, height: int):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    ws_origin = system.ws_url
    watch = Watch(page, {system.api_url, ws_origin})
    page.goto(f"{system.api_url}/dashboard#token={tenant['token']}")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    return context, page, watch


def test_the_page_shows_the_tenant_live_and_resumes_after_a_drop(browser, system, tenant):
    context, page, watch = _open(browser, system, tenant, 1280, 900)
    api, report = tenant["api"], tenant["report"]
    # The token left the URL and lives in the tab's session storage only.
    assert "token" not in page.url
    assert page.evaluate("sessionStorage.getItem('agentScheduler.token')") == tenant["token"]
    assert page.evaluate("localStorage.length") == 0
    row = page.locator(f"#agents tr[data-agent='{report['id']}']")
    expect(row).to_contain_text("daily-report")
    expect(row).to_contain_text("30 9 * * MON-FRI")
    expect(row).to_contain_text("at 09:30 on Mon–Fri")  # the schedule in words
    expect(row).to_contain_text("SUCCEEDED")  # last outcome
    expect(page.locator("#dlq")).to_contain_text("flaky-sync")
    expect(page.locator("#timeline")).to_contain_text("daily-report")

    # Flow control: the pool (running/limit, throttle), the run waiting for it, why a schedule
    # stopped, and what a run used.
    pool_row = page.locator("#pools tr[data-pool='gpu-box']")
    expect(pool_row).to_contain_text("1 / 1")
    expect(pool_row).to_contain_text("30 per 60 s")
    waiting = page.locator(f"#active tr[data-session='{tenant['waiting']}']")
    expect(waiting).to_contain_text("QUEUED")
    expect(waiting).to_contain_text("pool full: gpu-box")
    flaky_row = page.locator(f"#agents tr[data-agent='{tenant['flaky']['id']}'] [data-disabled]")
    expect(flaky_row).to_have_attribute("data-disabled", "CONSECUTIVE_FAILURES")
    expect(flaky_row).to_contain_text("paused after consecutive failures")
    expect(page.locator(f"#sessions tr[data-session='{tenant['done']}'] [data-usage]")).to_have_text(
        "used 1200 in / 300 out tokens · $0.0125")

    # A run started through the API completes on the page, no reload.
    sid = api.post(f"/api/agents/{report['id']}/run", json={}).json()["sessionId"]
    expect(page.locator(f"#log li[data-event='agent:completed'][data-session='{sid}']")).to_have_count(1)
    expect(page.locator(f"#sessions tr[data-session='{sid}']")).to_contain_text("SUCCEEDED")
    _screenshot(page, "dashboard-1280.png")

    # The gateway drops the connection, and the page cannot get back in for a while (its ticket
    # requests fail): it shows "reconnecting" while runs go on.
    page.route("**/api/events/ticket", lambda route: route.abort())
    for cid in _connection_ids(system, tenant["name"]):
        httpx.delete(f"{system.management_url}/@connections/{cid}")
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting", timeout=TIMEOUT_MS)
    expect(page.locator("#conn")).to_contain_text("reconnecting")
    missed = api.post(f"/api/agents/{report['id']}/run", json={}).json()["sessionId"]
    _wait_session(api, report["id"], missed, {"SUCCEEDED"})
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")  # still cut off
    assert page.locator(f"#log li[data-session='{missed}']").count() == 0
    page.unroute("**/api/events/ticket")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=TIMEOUT_MS)
    # The missed events arrive by replay, once each, in seq order.
    expect(page.locator(f"#log li[data-event='agent:completed'][data-session='{missed}']")).to_have_count(1)
    expect(page.locator(f"#log li[data-event='agent:started'][data-session='{missed}']")).to_have_count(1)
    seqs = [int(s) for s in page.locator("#log li[data-seq]").evaluate_all("els => els.map(e => e.dataset.seq)")]
    assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs, reverse=True), seqs  # newest first
    assert len(watch.sockets) >= 2 and all("token=" not in u and "ticket=" in u for u in watch.sockets)
    assert all("net::ERR_FAILED" in e for e in watch.errors), watch.errors  # only the ticket requests refused above
    assert watch.foreign == []
    context.close()


def test_redrive_from_the_dlq_view_by_keyboard(browser, system, tenant):
    context, page, watch = _open(browser, system, tenant, 1280, 900)
    dead = tenant["dead"]
    box = page.locator(f"#dlq tr[data-dead='{dead}'] input[type=checkbox]")
    box.focus()
    page.keyboard.press("Space")
    expect(box).to_be_checked()
    page.locator("#dlq-preview").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#dlq-confirm")).to_be_visible()
    expect(page.locator("#dlq-confirm-list")).to_contain_text(dead)  # the preview names what will be redriven
    expect(page.locator("#dlq-go")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#dlq-result")).to_have_text("Redriven: 1")
    # The redriven run starts (live on the page); this agent fails on purpose, so it dies again.
    started = page.locator("#log li[data-event='agent:started']", has_text="flaky-sync").filter(has_not_text="earlier")
    expect(started).to_have_count(1)
    assert watch.errors == [] and watch.foreign == []
    context.close()


def test_readable_on_a_phone_without_sideways_scrolling(browser, system, tenant):
    context, page, watch = _open(browser, system, tenant, 390, 844)
    expect(page.locator("#agents")).to_contain_text("daily-report")
    expect(page.locator("#timeline")).to_contain_text("flaky-sync")
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{overflow} px of sideways overflow at 390 px"
    _screenshot(page, "dashboard-390.png")
    assert watch.errors == [] and watch.foreign == []
    context.close()


def test_without_a_token_the_page_asks_for_one(browser, system, tenant):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{system.api_url}/dashboard")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#token-input")).to_be_focused()
    page.keyboard.type("not-a-token")
    page.keyboard.press("Enter")
    expect(page.locator("#login-error")).to_contain_text("refused")
    page.locator("#token-input").fill(tenant["token"])
    page.keyboard.press("Enter")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator("#agents")).to_contain_text("daily-report")
    context.close()
