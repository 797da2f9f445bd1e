"""What the stack is built from: the Chalice config, the app's own constants, per-stage knobs, options.

Nothing here duplicates the application: table shapes come from the pynamodb
models, timeouts and queue settings from ``chalicelib.limits``, variable names
from ``chalicelib.settings``, the route prefix and stage name from
``chalicelib.api.gateway``; ``.chalice/config.json`` declares each function's
timeout and memory for Chalice, and synthesis stops if a timeout there
disagrees with ``chalicelib.limits``.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # infra imports chalicelib (models, constants)
    sys.path.insert(0, str(REPO_ROOT))

from chalicelib import limits  # noqa: E402
from chalicelib import settings as app_settings  # noqa: E402
from chalicelib.adapters.tables import (  # noqa: E402
    AgentTenantModel,
    ConnectionModel,
    ControlModel,
    EventModel,
    SessionModel,
)
from chalicelib.api import gateway  # noqa: E402
from chalicelib.settings import Settings  # noqa: E402

CHALICE_CONFIG = REPO_ROOT / ".chalice" / "config.json"
DEFAULT_STAGE = "dev"

# Chalice's name for each Lambda function (config keys) -> its logical id in the packaged template.
FUNCTIONS: dict[str, str] = {
    "api_handler": "APIHandler",
    "tick": "Tick",
    "worker": "Worker",
    "websocket_connect": "WebsocketConnect",
    "websocket_message": "WebsocketMessage",
    "websocket_disconnect": "WebsocketDisconnect",
}
REST_API_ID = "RestAPI"
REST_HANDLER = "app.rest_handler"  # serves routes published without /api under the stage `api`
WEBSOCKET_API_ID = "WebsocketAPI"
WEBSOCKET_STAGE_ID = "WebsocketAPIStage"

# Events to a worker invocation. One: the worker runs a batch's records one after
# another (Powertools BatchProcessor), so a second record in a batch would start
# late by the first one's whole run, and share its 900 s budget. Parallelism comes
# from the event source's MaximumConcurrency instead (= the concurrency cap).
WORKER_BATCH_SIZE = 1
MIN_MAXIMUM_CONCURRENCY = 2  # the smallest ScalingConfig.MaximumConcurrency SQS event sources accept

# The tables: key -> (pynamodb model, the environment variable that carries the table's name).
TABLES = {
    "agents": (AgentTenantModel, app_settings.AGENTS_TABLE),
    "sessions": (SessionModel, app_settings.SESSIONS_TABLE),
    "control": (ControlModel, app_settings.CONTROL_TABLE),
    "connections": (ConnectionModel, app_settings.CONNECTIONS_TABLE),
    "events": (EventModel, app_settings.EVENTS_TABLE),
}


def index_name(model, attr: str) -> str:
    """The DynamoDB name of a model's index attribute, e.g. ``index_name(SessionModel, "pending_index")``."""
    return getattr(model, attr).Meta.index_name


WORK_QUEUE_ARN_ENV = "SCHEDULER_WORK_QUEUE_ARN"  # read by app.py's @on_sqs_message at import

# The newest Python runtime Chalice 1.34 packages for (its packager picks wheels by this ABI);
# the runtime dependencies are pure Python, so the package built here runs on it.
PYTHON_RUNTIME = "python3.14"
ARCHITECTURE = "arm64"  # Graviton: cheaper per GB-second; every dependency is pure Python

# The timeout each function must have (chalicelib.limits), checked against .chalice/config.json.
TIMEOUTS: dict[str, int] = {
    "api_handler": limits.API_TIMEOUT_SECONDS,
    "tick": limits.TICK_TIMEOUT_SECONDS,
    "worker": limits.WORKER_TIMEOUT_SECONDS,
    "websocket_connect": limits.WEBSOCKET_TIMEOUT_SECONDS,
    "websocket_message": limits.WEBSOCKET_TIMEOUT_SECONDS,
    "websocket_disconnect": limits.WEBSOCKET_TIMEOUT_SECONDS,
}
# The functions a tenant's `lambda` agents may invoke: `{tenant}` stands for the tenant id. The
# worker checks it per tenant at save and at run (SCHEDULER_LAMBDA_ALLOWED); IAM, one role for
# every tenant, allows the pattern with `{tenant}` widened to `*`.
LAMBDA_ALLOWED_ENV = "SCHEDULER_LAMBDA_ALLOWED"
LAMBDA_ALLOWED_DEFAULT = "agent-scheduler-agent-{tenant}-*"


def iam_function_pattern(allowed: str) -> str:
    """The IAM function-name pattern covering every tenant's functions: ``{tenant}`` becomes ``*``."""
    if "{tenant}" not in allowed:
        raise SystemExit(f"{LAMBDA_ALLOWED_ENV} must contain {{tenant}}, got {allowed!r}")
    return allowed.replace("{tenant}", "*")


MIN_WEBSOCKET_MEMORY_MB = 512  # CPU scales with memory: a 128 MB handler makes the first handshake slow


@dataclass(frozen=True)
class StageKnobs:
    """Per-stage operational settings (not application settings)."""

    rest_rate_limit: float = 50.0  # requests per second, steady
    rest_burst_limit: int = 100
    ws_rate_limit: float = 50.0  # WebSocket messages (and connects) per second
    ws_burst_limit: int = 100
    log_retention_days: int = 30
    deletion_protection: bool = False  # DynamoDB tables
    lateness_p99_ms: float = 1000.0  # run start lateness p99 should stay under 1 s
    tick_duration_fraction: float = 0.8  # alarm when the tick uses this much of its timeout
    missing_tick_minutes: int = 3  # alarm when no tick succeeded for this many minutes
    # Alarm when the oldest work-queue message is older than this: a message may wait out the
    # largest SQS delay and then be held by a worker for its whole timeout, so older means stuck.
    queue_age_alarm_seconds: int = limits.MAX_SQS_DELAY_SECONDS + limits.WORKER_TIMEOUT_SECONDS + 300
    api_5xx_per_5_minutes: int = 5  # API Gateway 5xx answers in 5 minutes before the alarm


KNOBS: dict[str, StageKnobs] = {
    "dev": StageKnobs(rest_rate_limit=20, rest_burst_limit=40, ws_rate_limit=20, ws_burst_limit=40,
                      log_retention_days=14),
    "prod": StageKnobs(rest_rate_limit=100, rest_burst_limit=200, ws_rate_limit=100, ws_burst_limit=200,
                       log_retention_days=90, deletion_protection=True),
}


@dataclass(frozen=True)
class Stage:
    name: str
    app_name: str
    api_gateway_stage: str
    environment: dict[str, str]  # from .chalice/config.json (top level + stage)
    timeouts: dict[str, int]  # per Chalice function name
    max_concurrent_agents: int
    knobs: StageKnobs = field(default_factory=StageKnobs)
    memory: dict[str, int] = field(default_factory=dict)  # MB, per Chalice function name

    @property
    def worker_maximum_concurrency(self) -> int:
        return max(MIN_MAXIMUM_CONCURRENCY, self.max_concurrent_agents)


def load_stage(name: str = DEFAULT_STAGE, config_path: Path = CHALICE_CONFIG) -> Stage:
    cfg = json.loads(config_path.read_text())
    stages = cfg.get("stages", {})
    if name not in stages:
        raise SystemExit(f"stage {name!r} is not in {config_path} (stages: {', '.join(sorted(stages))})")
    stage_cfg = stages[name]
    env = {**cfg.get("environment_variables", {}), **stage_cfg.get("environment_variables", {})}
    top_fns = cfg.get("lambda_functions", {})
    stage_fns = stage_cfg.get("lambda_functions", {})
    def lookup(fn: str, key: str, default: int) -> int:  # Chalice's search order
        v = stage_fns.get(fn, {}).get(key) or stage_cfg.get(key) or top_fns.get(fn, {}).get(key) or cfg.get(key)
        return int(v or default)

    timeouts = {fn: lookup(fn, "lambda_timeout", 60) for fn in FUNCTIONS}  # 60 s, 128 MB: Chalice's defaults
    memory = {fn: lookup(fn, "lambda_memory_size", 128) for fn in FUNCTIONS}
    wrong = {fn: (timeouts[fn], TIMEOUTS[fn]) for fn in FUNCTIONS if timeouts[fn] != TIMEOUTS[fn]}
    if wrong:
        raise SystemExit("function timeouts in .chalice/config.json differ from chalicelib/limits.py "
                         + ", ".join(f"{fn}: {have} s, not {want} s" for fn, (have, want) in sorted(wrong.items())))
    small = [fn for fn in FUNCTIONS if fn.startswith("websocket_") and memory[fn] < MIN_WEBSOCKET_MEMORY_MB]
    if small:
        raise SystemExit(f"WebSocket handlers need at least {MIN_WEBSOCKET_MEMORY_MB} MB: {', '.join(small)}")
    for fn in FUNCTIONS:
        if stage_fns.get(fn, {}).get("reserved_concurrency") or top_fns.get(fn, {}).get("reserved_concurrency"):
            raise SystemExit(f"{fn}: reserved concurrency is a stack option (--tick-reserved-concurrency), "
                             "not a .chalice/config.json setting")
    api_stage = stage_cfg.get("api_gateway_stage") or cfg.get("api_gateway_stage") or "api"
    if api_stage != gateway.STAGE_NAME:
        raise SystemExit(f"api_gateway_stage must be {gateway.STAGE_NAME!r} (chalicelib/api/gateway.py), "
                         f"got {api_stage!r}")
    # The app validates the cap itself; parse it the same way (and fail the same way).
    cap = Settings.from_env({app_settings.MAX_CONCURRENT_AGENTS: env.get(app_settings.MAX_CONCURRENT_AGENTS, "")})
    return Stage(
        name=name,
        app_name=cfg["app_name"],
        api_gateway_stage=api_stage,
        environment=env,
        timeouts=timeouts,
        max_concurrent_agents=cap.max_concurrent_agents,
        knobs=KNOBS.get(name, StageKnobs()),
        memory=memory,
    )


@dataclass(frozen=True)
class StackOptions:
    """Deploy-time choices (``python -m infra.app --help``; CDK context keys in brackets)."""

    # [tickReservedConcurrency] Reserve one concurrent execution for the tick. Off by default:
    # an account whose concurrency quota is 10 can reserve nothing. Single-tick safety never
    # depended on it: a second tick loses the conditional writes and admits nothing twice.
    tick_reserved_concurrency: bool = False
    xray_tracing: bool = False  # [xrayTracing] active X-Ray tracing on every function and the REST stage
    cors_origin: str = ""  # [corsOrigin] the dashboard's origin (SCHEDULER_CORS_ORIGIN); "" = no CORS
    log_level: str = "INFO"  # [logLevel] SCHEDULER_LOG_LEVEL and the functions' application log level
    access_logs: bool = True  # [accessLogs] API access logs (no query strings, no headers)
    # [apiGatewayCloudWatchRole] REST access logs need a CloudWatch role in the account's API Gateway
    # settings (one per account and region). Set false where another stack already manages it.
    api_gateway_cloudwatch_role: bool = True

    def __post_init__(self) -> None:
        # The same validation the app applies to the variables these become.
        object.__setattr__(self, "cors_origin", app_settings.read_cors_origin({app_settings.CORS_ORIGIN: self.cors_origin}))
        object.__setattr__(self, "log_level", app_settings.read_log_level({app_settings.LOG_LEVEL: self.log_level}))
