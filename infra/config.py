"""What the stack is built from: the Chalice config, the app's own constants, per-stage knobs.

Nothing here duplicates the application: table shapes come from the pynamodb
models, queue settings from ``chalicelib.adapters.provision``, variable names
from ``chalicelib.settings``, function timeouts and the concurrency cap from
``.chalice/config.json``.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # infra imports chalicelib (models, constants)
    sys.path.insert(0, str(REPO_ROOT))

from chalicelib import settings as app_settings  # noqa: E402
from chalicelib.adapters.tables import (  # noqa: E402
    AgentTenantModel,
    ConnectionModel,
    ControlModel,
    EventModel,
    SessionModel,
)
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


@dataclass(frozen=True)
class StageKnobs:
    """Per-stage operational settings (not application settings)."""

    rest_rate_limit: float = 50.0  # requests per second, steady
    rest_burst_limit: int = 100
    ws_rate_limit: float = 50.0  # WebSocket messages (and connects) per second
    ws_burst_limit: int = 100
    log_retention_days: int = 30
    deletion_protection: bool = False  # DynamoDB tables
    lateness_p99_ms: float = 1000.0  # DESIGN 2.3: run start lateness p99 under 1 s
    tick_duration_fraction: float = 0.8  # alarm when the tick uses this much of its timeout


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
    timeouts = {}
    for fn in FUNCTIONS:
        t = stage_fns.get(fn, {}).get("lambda_timeout") or top_fns.get(fn, {}).get("lambda_timeout")
        t = t or stage_cfg.get("lambda_timeout") or cfg.get("lambda_timeout") or 60  # Chalice's default
        timeouts[fn] = int(t)
    # The app validates the cap itself; parse it the same way (and fail the same way).
    cap = Settings.from_env({app_settings.MAX_CONCURRENT_AGENTS: env.get(app_settings.MAX_CONCURRENT_AGENTS, "")})
    return Stage(
        name=name,
        app_name=cfg["app_name"],
        api_gateway_stage=stage_cfg.get("api_gateway_stage") or cfg.get("api_gateway_stage") or "api",
        environment=env,
        timeouts=timeouts,
        max_concurrent_agents=cap.max_concurrent_agents,
        knobs=KNOBS.get(name, StageKnobs()),
    )
