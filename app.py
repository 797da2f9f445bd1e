"""Agent Scheduler: routes and event handlers only. The work is in chalicelib."""
from __future__ import annotations

import functools
import logging
import os
import time
from typing import Literal

from chalice import Chalice, CORSConfig, Response

from chalicelib import observability, settings
from chalicelib.api import auth, gateway
from chalicelib.api.openapi import openapi_document
from chalicelib.api.routing_errors import add_method_not_allowed
from chalicelib.api.validation import no_unknown_query, parse_json_body, query_int, query_str
from chalicelib.errors import SchedulerError
from chalicelib.services import wiring

app = Chalice(app_name="agent-scheduler")
app.experimental_feature_flags.update(["WEBSOCKETS"])  # `chalice package` requires the opt-in
app.log.setLevel(logging.INFO)
if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):  # in Lambda: JSON lines at SCHEDULER_LOG_LEVEL (make run sets its own)
    observability.configure()
log = logging.getLogger("agent_scheduler.app")
# Before the routes (Chalice gives each route the CORS config it sees then): a dashboard on another
# origin gets that one origin, nothing wider; unset, no CORS at all.
if settings.read_cors_origin():
    app.api.cors = CORSConfig(
        allow_origin=settings.read_cors_origin(),
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        expose_headers=["Idempotent-Replayed"],
        max_age=600,
    )

JSON_TYPES = ["application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]


def container():
    return wiring.container()


@app.middleware("http")
def _correlation_id(event, get_response):
    """Every log line of a request carries API Gateway's request id as ``correlation_id``."""
    with observability.request_scope(event.to_original_event()):
        return get_response(event)


def rest_handler(event, context):
    """The REST function's handler in AWS, where routes are published under the stage ``api``
    without their ``/api`` prefix (chalicelib/api/gateway.py)."""
    return app(gateway.to_app_route(event, app.routes), context)


def _error(exc: SchedulerError) -> Response:
    return Response(body=exc.to_body(), status_code=exc.status_code, headers={"Content-Type": "application/json"})


def api(*, auth_required: bool = True, admin: bool = False, body: Literal["required", "optional"] | None = None,
        status: int = 200, idempotent: bool = False):
    """Wrap a view: auth, JSON body, one error mapping, never a 500 for bad input.
    ``idempotent``: an ``Idempotency-Key`` makes the request happen once (chalicelib/api/idempotent.py)."""

    def decorate(fn):
        @functools.wraps(fn)
        def view(**params):
            try:
                req = app.current_request
                kwargs = dict(params)
                if auth_required:
                    c = container()
                    principal = auth.verify(auth.bearer(req.headers), c.jwt_secret)
                    if admin:
                        principal.require_admin()
                    kwargs["principal"] = principal
                if body:
                    kwargs["body"] = parse_json_body(req.raw_body, required=body == "required")
                extra: dict[str, str] = {}
                if idempotent:
                    from chalicelib.api.idempotent import answer

                    code, result, extra = answer(container(), kwargs["principal"].tenant_id, req, kwargs.get("body"),
                                                 status, lambda: fn(**kwargs))
                else:
                    code, result = status, fn(**kwargs)
                if result is None:
                    return Response(body="", status_code=204)
                return Response(body=result, status_code=code, headers={"Content-Type": "application/json", **extra})
            except SchedulerError as exc:
                if exc.status_code >= 500:
                    log.exception("request failed")
                return _error(exc)
            except Exception:  # a bug of ours: a JSON 500, logged
                log.exception("unhandled error")
                return Response(
                    body={"code": "INTERNAL", "message": "internal error"},
                    status_code=500,
                    headers={"Content-Type": "application/json"},
                )

        return view

    return decorate


def _q():
    return app.current_request.query_params or {}


# --- health and docs ---------------------------------------------------------------
@app.route("/api/health", methods=["GET"])
@api(auth_required=False)
def health():
    return {"status": "ok"}


@app.route("/api/openapi.json", methods=["GET"])
@api(auth_required=False)
def openapi():
    return openapi_document()


# --- agents ----------------------------------------------------------------------------
@app.route("/api/agents", methods=["POST"], content_types=JSON_TYPES)
@api(body="required", status=201, idempotent=True)
def create_agent(principal, body):
    return container().agent_service.create(principal.tenant_id, body)


@app.route("/api/agents", methods=["GET"])
@api()
def list_agents(principal):
    q = _q()
    no_unknown_query(q, {"limit", "nextToken", "label"})
    labels = [] if "label" not in q else q.getlist("label") if hasattr(q, "getlist") else [q["label"]]
    return container().agent_service.list(principal.tenant_id, query_int(q, "limit", 50, 1, 100), query_str(q, "nextToken"),
                                          labels)


@app.route("/api/agents/{agent_id}", methods=["GET"])
@api()
def get_agent(principal, agent_id):
    return container().agent_service.get(principal.tenant_id, agent_id)


@app.route("/api/agents/{agent_id}", methods=["PATCH"], content_types=JSON_TYPES)
@api(body="required")
def patch_agent(principal, agent_id, body):
    return container().agent_service.patch(principal.tenant_id, agent_id, body)


@app.route("/api/agents/{agent_id}", methods=["DELETE"])
@api()
def delete_agent(principal, agent_id):
    container().agent_service.delete(principal.tenant_id, agent_id)


@app.route("/api/agents/{agent_id}/signing-secret", methods=["POST"], content_types=JSON_TYPES)
@api(body="optional")
def rotate_signing_secret(principal, agent_id, body=None):
    return container().agent_service.rotate_signing_secret(principal.tenant_id, agent_id, body)


# --- schedules ---------------------------------------------------------------------------
@app.route("/api/agents/{agent_id}/schedule", methods=["POST"], content_types=JSON_TYPES)
@api(body="required")
def put_schedule(principal, agent_id, body):
    return container().agent_service.put_schedule(principal.tenant_id, agent_id, body)


@app.route("/api/agents/{agent_id}/schedule", methods=["GET"])
@api()
def get_schedule(principal, agent_id):
    return container().agent_service.get_schedule(principal.tenant_id, agent_id)


@app.route("/api/agents/{agent_id}/schedule", methods=["DELETE"])
@api()
def delete_schedule(principal, agent_id):
    container().agent_service.delete_schedule(principal.tenant_id, agent_id)


@app.route("/api/schedules/validate", methods=["POST"], content_types=JSON_TYPES)
@api(body="required")
def validate_schedule(principal, body):
    return container().agent_service.validate_expression(body)


# --- runs and sessions ---------------------------------------------------------------------
@app.route("/api/agents/{agent_id}/run", methods=["POST"], content_types=JSON_TYPES)
@api(body="optional", status=202, idempotent=True)
def run_agent(principal, agent_id, body):
    return container().agent_service.run_now(principal.tenant_id, agent_id, body)


@app.route("/api/agents/{agent_id}/sessions", methods=["GET"])
@api()
def list_sessions(principal, agent_id):
    q = _q()
    no_unknown_query(q, {"limit", "nextToken", "status"})
    return container().agent_service.list_sessions(
        principal.tenant_id, agent_id, query_int(q, "limit", 50, 1, 100), query_str(q, "nextToken"), query_str(q, "status")
    )


@app.route("/api/agents/{agent_id}/sessions/{session_id}", methods=["GET"])
@api()
def get_session(principal, agent_id, session_id):
    return container().agent_service.get_session(principal.tenant_id, agent_id, session_id)


@app.route("/api/agents/{agent_id}/sessions/{session_id}/cancel", methods=["POST"], content_types=JSON_TYPES)
@api(status=202)
def cancel_session(principal, agent_id, session_id):
    return container().agent_service.cancel(principal.tenant_id, agent_id, session_id)


@app.route("/api/sessions/cancel", methods=["POST"], content_types=JSON_TYPES)
@api(body="required", status=202)
def cancel_sessions(principal, body):
    return container().agent_service.bulk_cancel(principal.tenant_id, body)


# --- scheduler ------------------------------------------------------------------------------
@app.route("/api/scheduler/status", methods=["GET"])
@api()
def scheduler_status(principal):
    return container().dispatcher.status(principal.tenant_id, admin=False)


@app.route("/api/scheduler/pause", methods=["POST"], content_types=JSON_TYPES)
@api(admin=True)
def pause(principal):
    c = container()
    c.dispatcher.set_paused(True)
    return c.dispatcher.status(principal.tenant_id, admin=False)


@app.route("/api/scheduler/resume", methods=["POST"], content_types=JSON_TYPES)
@api(admin=True)
def resume(principal):
    c = container()
    c.dispatcher.set_paused(False)
    return c.dispatcher.status(principal.tenant_id, admin=False)


# --- DLQ ---------------------------------------------------------------------------------------
@app.route("/api/dlq", methods=["GET"])
@api()
def list_dlq(principal):
    q = _q()
    no_unknown_query(q, {"limit", "nextToken"})
    return container().agent_service.list_dlq(
        principal.tenant_id, principal.admin, query_int(q, "limit", 50, 1, 100), query_str(q, "nextToken")
    )


@app.route("/api/dlq/redrive", methods=["POST"], content_types=JSON_TYPES)
@api(body="optional", status=202)
def redrive(principal, body):
    return container().agent_service.redrive(principal.tenant_id, principal.admin, body)


# --- the tick and the worker ----------------------------------------------------------------------
@app.schedule("rate(1 minute)", name="tick")
def tick(event):
    from chalicelib.services import metrics

    started = time.monotonic()
    report = container().dispatcher.tick()
    metrics.tick_finished(report.due, report.admitted, (time.monotonic() - started) * 1000)
    metrics.flush()
    return {"due": report.due, "admitted": report.admitted, "skipped": report.skipped, "resent": report.resent}


@app.on_sqs_message(queue_arn=os.environ.get("SCHEDULER_WORK_QUEUE_ARN", "arn:aws:sqs:us-east-1:000000000000:agent-scheduler-work"), batch_size=1, name="worker")
def worker(event):
    from chalicelib.services.batch import process_sqs_event

    return process_sqs_event(container(), event.to_dict(), event.context)


# --- WebSocket API ---------------------------------------------------------------------------------
@app.on_ws_connect()
def ws_connect(event):
    from chalicelib.services.ws import on_connect

    return on_connect(container(), event.to_dict())


@app.on_ws_disconnect()
def ws_disconnect(event):
    from chalicelib.services.ws import on_disconnect

    return on_disconnect(container(), event.to_dict())


@app.on_ws_message()
def ws_message(event):
    from chalicelib.services.ws import on_message

    return on_message(container(), event.to_dict())


# --- schedule management (bulk, conflicts, fire ledger) ----------------------------------------------
@app.route("/api/schedules/bulk", methods=["POST"], content_types=JSON_TYPES)
@api(body="required")
def bulk_schedules(principal, body):
    return container().schedule_service.bulk(principal.tenant_id, body)


@app.route("/api/schedules/conflicts", methods=["GET"])
@api()
def schedule_conflicts(principal):
    q = _q()
    no_unknown_query(q, {"from", "hours"})
    return container().schedule_service.conflicts(principal.tenant_id, query_str(q, "from", 64), query_str(q, "hours", 16))


@app.route("/api/agents/{agent_id}/fires", methods=["GET"])
@api()
def agent_fires(principal, agent_id):
    q = _q()
    no_unknown_query(q, {"from", "to"})
    return container().schedule_service.fires(principal.tenant_id, agent_id, query_str(q, "from", 64), query_str(q, "to", 64))


# --- schedules beyond cron: backfill and history -------------------------------------------------------
@app.route("/api/agents/{agent_id}/backfill", methods=["POST"], content_types=JSON_TYPES)
@api(body="required", status=202, idempotent=True)
def backfill_agent(principal, agent_id, body):
    return container().schedule_service.backfill(principal.tenant_id, agent_id, body)


@app.route("/api/agents/{agent_id}/schedule/history", methods=["GET"])
@api()
def schedule_history(principal, agent_id):
    q = _q()
    no_unknown_query(q, {"limit", "nextToken"})
    return container().agent_service.schedule_history(
        principal.tenant_id, agent_id, query_int(q, "limit", 50, 1, 100), query_str(q, "nextToken")
    )
# --- the event stream and the dashboard --------------------------------------------------------------
@app.route("/api/events", methods=["GET"])
@api()
def list_events(principal):
    q = _q()
    no_unknown_query(q, {"since", "limit"})
    return container().events.page(principal.tenant_id, query_int(q, "since", 0, 0, 2**53 - 1), query_int(q, "limit", 100, 1, 500))


@app.route("/api/events/ticket", methods=["POST"], content_types=JSON_TYPES)
@api()
def events_ticket(principal):
    from chalicelib.services.ws import issue_ticket

    return issue_ticket(container(), principal)


@app.route("/dashboard", methods=["GET"])
def dashboard():
    from chalicelib.dashboard import render
    from chalicelib.services.ws import websocket_url

    body, headers = render(websocket_url(container().settings.ws_endpoint))
    return Response(body=body, status_code=200, headers=headers)


# --- pools: limits shared across agents --------------------------------------------------------
@app.route("/api/pools", methods=["GET"])
@api()
def list_pools(principal):
    return container().pool_service.list(principal.tenant_id)


@app.route("/api/pools/{name}", methods=["PUT"], content_types=JSON_TYPES)
@api(body="optional")
def put_pool(principal, name, body):
    return container().pool_service.put(principal.tenant_id, name, body)


@app.route("/api/pools/{name}", methods=["GET"])
@api()
def get_pool(principal, name):
    return container().pool_service.get(principal.tenant_id, name)


@app.route("/api/pools/{name}", methods=["DELETE"])
@api()
def delete_pool(principal, name):
    container().pool_service.delete(principal.tenant_id, name)

# --- the agents' callbacks: no tenant JWT, the attempt's own callback token ---------------------------
@app.route("/api/callbacks/{session_id}/{attempt}/{action}", methods=["POST"], content_types=JSON_TYPES)
@api(auth_required=False)
def agent_callback(session_id, attempt, action):
    from chalicelib.api.callbacks import handle

    req = app.current_request
    return handle(container().callbacks, session_id, attempt, action, req.headers, req.raw_body)


# Last, once every route is registered: a wrong method on a known path answers our 405 with Allow.
add_method_not_allowed(app)
