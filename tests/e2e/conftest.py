"""End-to-end: the local system (`make run`) as a subprocess, driven by real clients.

One system per module: ``python -m local.run`` on free ports, a 2 s tick and
short backoff. Tests talk to it only over HTTP (httpx, boto3 against the
``@connections`` API and the emulator) and WebSocket (the ``websockets`` client).
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jwt
import pytest
from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[2]
SECRET = "e2e-secret-0123456789abcdef0123456789abcdef"
TICK_SECONDS = 2.0
START_TIMEOUT = 45.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def token(tenant: str, *, secret: str = SECRET, scope: str = "", ttl: int = 3600) -> str:
    now = int(time.time())
    claims = {"sub": tenant, "iat": now, "exp": now + ttl}
    if scope:
        claims["scope"] = scope
    return jwt.encode(claims, secret, algorithm="HS256")


def system_env(**overrides: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SCHEDULER_", "POWERTOOLS_"))}
    # memory only unless a test gives its own state directory (never the developer's .local/state)
    env.update(PYTHONUNBUFFERED="1", SCHEDULER_JWT_SECRET=SECRET, SCHEDULER_LOCAL_STATE_DIR="")
    env.update(overrides)
    return env


class Events:
    """A WebSocket client that reads JSON events with timeouts and remembers them."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.seen: list[dict] = []

    def send(self, message: dict) -> None:
        self.conn.send(json.dumps(message))

    def next(self, predicate=lambda e: True, timeout: float = 10.0, what: str = "an event") -> dict:
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout:g} s; saw {[e.get('event') for e in self.seen][-20:]}")
            try:
                raw = self.conn.recv(timeout=left)
            except TimeoutError:
                continue
            event = json.loads(raw)
            self.seen.append(event)
            if predicate(event):
                return event

    def expect(self, name: str, timeout: float = 10.0, **data) -> dict:
        def match(e: dict) -> bool:
            return e.get("event") == name and all(e.get("data", {}).get(k) == v for k, v in data.items())

        return self.next(match, timeout, what=f"{name} {data or ''}")

    def drain(self, seconds: float) -> list[dict]:
        """Everything that arrives within ``seconds`` (used only to prove an absence)."""
        got = []
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                got.append(json.loads(self.conn.recv(timeout=left)))
            except TimeoutError:
                break
        self.seen += got
        return got

    def close(self) -> None:
        self.conn.close()


@dataclass
class LocalSystem:
    proc: subprocess.Popen
    api_port: int
    ws_port: int
    moto_port: int
    log_path: Path
    token: str = ""
    admin_token: str = ""
    _clients: list = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.ws_port}"

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def http(self, bearer: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        client = httpx.Client(base_url=self.api_url, headers=headers, timeout=10.0)
        self._clients.append(client)
        return client

    def ws(self, bearer: str | None) -> Events:
        url = self.ws_url + "/" + (f"?token={bearer}" if bearer is not None else "")
        conn = connect(url, open_timeout=10, close_timeout=2, max_queue=1024)
        events = Events(conn)
        self._clients.append(events)
        return events

    def close_clients(self) -> None:
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass


def start_system(log_dir: Path, **env_overrides: str) -> LocalSystem:
    api, ws, moto = free_port(), free_port(), free_port()
    env = system_env(
        SCHEDULER_API_PORT=str(api),
        SCHEDULER_WS_PORT=str(ws),
        SCHEDULER_MOTO_PORT=str(moto),
        SCHEDULER_TICK_SECONDS=str(TICK_SECONDS),
        SCHEDULER_BACKOFF_BASE_SECONDS="0.2",
        SCHEDULER_BACKOFF_MAX_SECONDS="1",
        **env_overrides,
    )
    log_path = log_dir / "local-run.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "local.run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
    system = LocalSystem(proc, api, ws, moto, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"local.run exited with {proc.returncode}:\n{system.log()[-4000:]}")
        if time.monotonic() > deadline:
            stop_system(system)
            raise RuntimeError(f"local.run not ready within {START_TIMEOUT:g} s:\n{system.log()[-4000:]}")
        try:
            ok = httpx.get(system.api_url + "/api/health", timeout=2).status_code == 200
        except httpx.TransportError:
            ok = False
        tokens = dict(re.findall(r"^export (TOKEN|ADMIN_TOKEN)=(\S+)$", system.log(), re.M))
        if ok and len(tokens) == 2:
            system.token, system.admin_token = tokens["TOKEN"], tokens["ADMIN_TOKEN"]
            return system
        time.sleep(0.1)


def stop_system(system: LocalSystem, sig: int = signal.SIGINT) -> int | None:
    """Signal the process group; kill it if it does not stop in time. Returns the exit code."""
    system.close_clients()
    proc = system.proc
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything left in the group
    except (ProcessLookupError, PermissionError):
        pass
    try:
        return proc.wait(5)
    except subprocess.TimeoutExpired:
        return None


@pytest.fixture(scope="module")
def system():
    with tempfile.TemporaryDirectory(prefix="e2e-") as tmp:
        s = start_system(Path(tmp))
        try:
            yield s
        finally:
            stop_system(s)
            if os.environ.get("E2E_SHOW_LOG"):
                print(s.log())
