"""``make run``: the whole system in one foreground process.

    python -m local.run

- moto server (the AWS emulator) on ``SCHEDULER_MOTO_PORT`` (unset or 0: a free port);
- tables, queues and the alert topic created by ``provision``;
- the REST API (the Chalice app through ``chalice.local.LocalGateway``) on
  ``SCHEDULER_API_PORT``;
- the WebSocket gateway and the ``@connections`` management API on ``SCHEDULER_WS_PORT``;
- the tick every ``SCHEDULER_TICK_SECONDS`` (the first one at once) and the SQS
  poller feeding the worker, both through the app's own Lambda handlers;
- with ``SCHEDULER_LOCAL_STATE_DIR`` (default ``.local/state``; empty: memory only),
  the tables (and the KMS key of the signing secrets) restored from the last snapshot
  before the tick starts, and saved every
  5 s and at shutdown (local/state.py).

Prints the URLs and development tokens, logs one line per run state change,
and stops cleanly on Ctrl-C or SIGTERM. A bad setting stops start-up with a
message naming the variable (exit status 2); a busy port, with exit status 1.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `app` and `chalicelib` live at the repository root
    sys.path.insert(0, str(ROOT))

from chalicelib.errors import ConfigError  # noqa: E402
from chalicelib.settings import API_PORT, WS_PORT, Settings  # noqa: E402
from local.state import StateError, state_dir_from_env  # noqa: E402

if TYPE_CHECKING:  # imported where used: moto and the services load only when the system starts
    from chalicelib.services.container import Container
    from local.loops import SqsPoller, TickLoop
    from local.moto_server import MotoServer
    from local.state import Snapshotter, StateDir

log = logging.getLogger("local.run")

MOTO_PORT = "SCHEDULER_MOTO_PORT"  # local only: the embedded moto server's port (0: any free port)
HOST = "127.0.0.1"
DEV_TENANT = "dev"
TOKEN_TTL_SECONDS = 7 * 86400
SHUTDOWN_GRACE_SECONDS = 1.0
WS_MAX_MESSAGE_BYTES = 128 * 1024  # API Gateway's WebSocket message limit


@dataclass(frozen=True)
class LocalOptions:
    settings: Settings
    moto_port: int
    state_dir: Path | None = None  # None: memory only


def read_options(env=None) -> LocalOptions:
    env = os.environ if env is None else env
    settings = Settings.from_env(env)
    if settings.environment != "local":
        raise ConfigError(f"SCHEDULER_ENV must be 'local' (or unset) for the local system, got {settings.environment!r}")
    raw = (env.get(MOTO_PORT) or "").strip()
    moto_port = 0
    if raw:
        try:
            moto_port = int(raw)
        except ValueError:
            raise ConfigError(f"{MOTO_PORT} must be a whole number, got {raw!r}") from None
        if not 0 <= moto_port <= 65535:
            raise ConfigError(f"{MOTO_PORT} must be between 0 and 65535, got {moto_port}")
    if settings.api_port == settings.ws_port:
        raise ConfigError(f"{API_PORT} and {WS_PORT} must differ (both {settings.api_port})")
    return LocalOptions(settings, moto_port, state_dir_from_env(env, ROOT))


def quiet_warnings() -> None:
    import warnings

    # The documented local secret is short on purpose; metrics are disabled locally.
    warnings.filterwarnings("ignore", message="The HMAC key is .* below the minimum recommended length")
    warnings.filterwarnings("ignore", message="No application metrics to publish")


def configure_logging(level: str | None = None) -> None:
    """JSON lines on standard error, as in Lambda (chalicelib/observability.py): the app's loggers
    and ``local.*`` at ``SCHEDULER_LOG_LEVEL`` (default INFO), everything else from WARNING."""
    from chalicelib import observability
    from chalicelib.settings import read_log_level

    try:
        level = level or read_log_level()
    except ConfigError:  # read_options() reports it and stops, like every other bad setting
        level = "INFO"
    handler = observability.configure(level, stream=sys.stderr, loggers=("local",)).registered_handler
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("werkzeug", "uvicorn", "uvicorn.error", "uvicorn.access", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").addFilter(_DenialNoise())
    logging.getLogger("agent_scheduler.runs").addFilter(_StateChangesOnly())


class _StateChangesOnly(logging.Filter):
    """One line per run state change: progress reports are events, not state changes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.args, tuple) and record.args[:1] == ("agent:progress",))


class _DenialNoise(logging.Filter):
    """uvicorn (sans-I/O WebSockets) logs a refused handshake's denial response as an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing handshake."


def bind(port: int, variable: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        hint = " (0: any free port)" if variable == MOTO_PORT else ""
        raise PortError(f"{variable}: cannot listen on {HOST}:{port} ({exc.strerror or exc}); "
                        f"set {variable} to a free port{hint}") from None
    sock.set_inheritable(False)
    return sock


class PortError(Exception):
    pass


def prepare_environment(moto_url: str, ws_port: int) -> None:
    """Point every AWS client of this process at moto, with fake credentials."""
    env = os.environ
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        env.pop(name, None)
    env["AWS_ACCESS_KEY_ID"] = "testing"
    env["AWS_SECRET_ACCESS_KEY"] = "testing"
    env.setdefault("AWS_DEFAULT_REGION", env.get("AWS_REGION") or "us-east-1")
    env["AWS_ACCOUNT_ID_ENDPOINT_MODE"] = "disabled"
    env["AWS_ENDPOINT_URL"] = moto_url
    env["SCHEDULER_WS_ENDPOINT"] = f"http://{HOST}:{ws_port}"
    env["POWERTOOLS_METRICS_DISABLED"] = "true"
    env.setdefault("POWERTOOLS_SERVICE_NAME", "agent-scheduler")


def write_cli_profile(url: str, token: str, ws_url: str, env=None) -> str | None:
    """The CLI's profile (URL and development token, mode 0600) at ``SCHEDULER_PROFILE``
    (``make run`` sets it to .local/profile.json; unset or empty: none is written)."""
    from agent_scheduler.cli.profile import PROFILE_ENV, write_profile

    path = ((os.environ if env is None else env).get(PROFILE_ENV) or "").strip()
    if not path:
        return None
    try:
        write_profile(Path(path), url, token, ws_url)
    except OSError as exc:
        log.warning("cannot write the CLI profile %s: %s", path, exc)
        return None
    return path


class System:
    """Everything ``make run`` starts, in start order; ``stop`` undoes it in reverse."""

    def __init__(self, options: LocalOptions) -> None:
        self.options = options
        self.api_sock: socket.socket | None = None
        self.ws_sock: socket.socket | None = None
        self.moto: MotoServer | None = None
        self.container: Container | None = None
        self.tick: TickLoop | None = None
        self.poller: SqsPoller | None = None
        self.servers: list = []
        self.stopping = threading.Event()
        self.failed = False
        self.state: StateDir | None = None
        self.snapshots: Snapshotter | None = None
        self.restored: dict[str, int] = {}

    # --- start ----------------------------------------------------------------------
    def prepare(self) -> None:
        s = self.options.settings
        if self.options.state_dir is not None:
            from local.state import StateDir

            self.state = StateDir(self.options.state_dir)
            self.state.lock()
        self.api_sock = bind(s.api_port, API_PORT)
        self.ws_sock = bind(s.ws_port, WS_PORT)
        from devtools import moto_fixes
        from local.moto_server import MotoServer

        moto_fixes.apply()  # transactions from the tick and the workers at once would crash moto
        self.moto = MotoServer(bind(self.options.moto_port, MOTO_PORT)).start()
        prepare_environment(self.moto.url, s.ws_port)
        settings = Settings.from_env()  # now with AWS_ENDPOINT_URL and SCHEDULER_WS_ENDPOINT

        from chalicelib.adapters import aws
        from chalicelib.adapters.provision import provision
        from chalicelib.services import wiring
        from chalicelib.services.container import Container

        sqs = aws.client("sqs", region=settings.region, endpoint_url=settings.aws_endpoint_url)
        sns = aws.client("sns", region=settings.region, endpoint_url=settings.aws_endpoint_url)
        kms = aws.client("kms", region=settings.region, endpoint_url=settings.aws_endpoint_url)
        data = self.state.load() if self.state is not None else None
        kept_key = self.restore_signing_key(data)
        if kept_key and not settings.signing_key_id:
            settings = settings.with_(signing_key_id=kept_key)
        settings = provision(settings, sqs, sns, kms)  # a KMS key for webhook agents' signing secrets
        os.environ.setdefault("SCHEDULER_SIGNING_KEY_ID", settings.signing_key_id)
        self.container = Container(settings)
        wiring.set_container(self.container)
        self.settings = settings
        if self.state is not None:
            self.keep_state(self.state, data)

    @staticmethod
    def restore_signing_key(data: dict | None) -> str | None:
        """The kept KMS key of the signing secrets, back in the new emulator under its old id."""
        from local.state import SIGNING_KEY, restore_signing_key

        saved = (data or {}).get(SIGNING_KEY)
        if not saved:
            if data is not None:  # kept by a version that did not keep the key
                log.warning("state: no signing key was kept; webhook agents made before cannot sign until "
                            "their signing secret is rotated")
            return None
        return restore_signing_key(saved)

    def keep_state(self, state: StateDir, data: dict | None) -> None:
        """Restore the last snapshot into the new tables, then snapshot from now on (local/state.py)."""
        from local.state import SIGNING_KEY, Snapshotter, restore, signing_key_snapshot, snapshot

        assert self.container is not None
        dynamodb = self.container.client("dynamodb")
        if data is not None:
            self.restored = restore(dynamodb, data)
            log.info("state restored from %s: %s", state.file,
                     ", ".join(f"{name} {n}" for name, n in sorted(self.restored.items())) or "empty")
        skip = frozenset({self.settings.connections_table})  # connections end with the process
        key = signing_key_snapshot(self.settings.signing_key_id) if self.settings.signing_key_id else None
        kept = {SIGNING_KEY: key} if key else {}  # the key never changes while the system runs
        self.snapshots = Snapshotter(state, lambda: {**snapshot(dynamodb, skip=skip), **kept})

    def build_servers(self):
        import uvicorn

        from app import app as chalice_app
        from local import handlers
        from local.rest import rest_app
        from local.ws_gateway import WebSocketGateway

        s = self.settings
        self.chalice_app = chalice_app
        self.gateway = WebSocketGateway(
            lambda route, event: handlers.invoke(chalice_app, route, event),
            domain_name=f"{HOST}:{s.ws_port}",
        )

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self):  # this process handles signals itself
                yield

        common = dict(
            log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=int(SHUTDOWN_GRACE_SECONDS),
        )
        self.servers = [
            (Server(uvicorn.Config(rest_app(chalice_app), ws="none", **common)), self.api_sock),
            (Server(uvicorn.Config(self.gateway.app, ws_max_size=WS_MAX_MESSAGE_BYTES, **common)), self.ws_sock),
        ]

    def start_loops(self) -> None:
        from local import handlers
        from local.loops import SqsPoller, TickLoop

        s = self.settings
        invoke = lambda name, event: handlers.invoke(self.chalice_app, name, event)  # noqa: E731
        self.tick = TickLoop(invoke, s.tick_seconds, region=s.region)
        from chalicelib.adapters import aws

        poll_client = aws.client("sqs", region=s.region, endpoint_url=s.aws_endpoint_url, read_timeout=10)
        self.poller = SqsPoller(invoke, poll_client, s.work_queue_url, concurrency=s.max_concurrent_agents,
                                region=s.region)
        self.poller.start()
        self.tick.start()
        if self.snapshots is not None:
            self.snapshots.start()

    def banner(self) -> str:
        from chalicelib.api.auth import issue

        s = self.settings
        assert self.moto is not None, "the banner is printed once the system runs"
        token = issue(DEV_TENANT, s.jwt_secret, ttl_seconds=TOKEN_TTL_SECONDS)
        admin = issue(DEV_TENANT, s.jwt_secret, scopes="admin", ttl_seconds=TOKEN_TTL_SECONDS)
        api = f"http://{HOST}:{s.api_port}"
        ws = f"ws://{HOST}:{s.ws_port}"
        days = TOKEN_TTL_SECONDS // 86400
        profile = write_cli_profile(f"{api}/api", token, ws)
        return "\n".join([
            "",
            "Agent Scheduler is running locally.",
            f"  REST API       {api}/api   (GET {api}/api/health, {api}/api/openapi.json)",
            f"  Dashboard      {api}/dashboard#token={token}",
            f"  WebSocket      {ws}/?token=$TOKEN   (or ?ticket= from POST {api}/api/events/ticket)",
            f"  @connections   http://{HOST}:{s.ws_port}/@connections/{{connectionId}}",
            f"  AWS (moto)     {self.moto.url}   (aws --endpoint-url {self.moto.url} sqs list-queues)",
            f"  tick every {s.tick_seconds:g} s, at most {s.max_concurrent_agents} agents at once",
            (f"  state kept in  {self.state.path}   (`make reset` empties it)" if self.state is not None
             else "  state kept in memory only (SCHEDULER_LOCAL_STATE_DIR is empty)"),
            "",
            f"Development token (tenant {DEV_TENANT!r}, valid {days} days):",
            f"export TOKEN={token}",
            f"Admin token (tenant {DEV_TENANT!r}, scope admin):",
            f"export ADMIN_TOKEN={admin}",
            "",
            f'Try: curl -s -H "Authorization: Bearer $TOKEN" {api}/api/agents',
            *([f"  or: .venv/bin/agent-scheduler status   (the CLI reads {profile})"] if profile else []),
            "Press Ctrl-C to stop.",
            "",
        ])

    # --- run ---------------------------------------------------------------------------
    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop, sig)
        tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in self.servers]
        while not all(server.started for server, _ in self.servers):
            if any(t.done() for t in tasks):  # a server failed to start
                break
            await asyncio.sleep(0.02)
        if all(server.started for server, _ in self.servers):
            self.start_loops()
            print(self.banner(), flush=True)
            log.info("ready")
        else:
            log.error("a server did not start")
            self.failed = True
            self.request_stop(None)
        stop_waiter = asyncio.create_task(asyncio.to_thread(self.stopping.wait))
        await asyncio.wait([stop_waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        self.request_stop(None)
        # Stop producing work and events first, then close connections, then the emulator.
        await asyncio.to_thread(self.stop_loops)
        for server, _ in self.servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        await stop_waiter

    def request_stop(self, sig) -> None:
        if sig is not None and self.stopping.is_set():
            log.warning("second signal: exiting at once")
            os._exit(130)
        if sig is not None:
            log.info("stopping (%s)", signal.Signals(sig).name)
        self.stopping.set()

    def stop_loops(self) -> None:
        if self.tick is not None:
            self.tick.stop()
        if self.poller is not None and not self.poller.stop(SHUTDOWN_GRACE_SECONDS):
            log.info("runs still in progress are abandoned (with a state directory, the next start retries them)")

    def close(self) -> None:
        if self.container is not None:
            pusher = self.container.__dict__.get("pusher")
            if pusher is not None:
                pusher.shutdown()
        if self.snapshots is not None and self.snapshots.stop():
            log.info("state saved to %s", self.snapshots.state.file)
        if self.moto is not None:
            self.moto.stop()
        if self.state is not None:
            self.state.unlock()
        for sock in (self.api_sock, self.ws_sock):
            if sock is not None:
                sock.close()


def main() -> int:
    configure_logging()
    quiet_warnings()
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 <pid>` prints every thread's stack (diagnosing a hang)
        import faulthandler

        faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        options = read_options()
    except ConfigError as exc:
        print(f"agent-scheduler: configuration error: {exc}", file=sys.stderr)
        return 2
    system = System(options)
    try:
        try:
            system.prepare()
            system.build_servers()
        except (PortError, StateError) as exc:
            print(f"agent-scheduler: {exc}", file=sys.stderr)
            return 1
        except ConfigError as exc:
            print(f"agent-scheduler: configuration error: {exc}", file=sys.stderr)
            return 2
        asyncio.run(system.serve())
    except KeyboardInterrupt:  # Ctrl-C during start-up, before the signal handlers
        print("agent-scheduler: interrupted during start-up", file=sys.stderr)
        return 130
    finally:
        system.close()
    log.info("stopped")
    return 1 if system.failed else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Agent threads (daemon) may still sleep; nothing of ours needs joining any more.
    stray = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if stray:
        logging.getLogger("local.run").warning("not waiting for threads: %s", ", ".join(t.name for t in stray))
        os._exit(code)
    sys.exit(code)
