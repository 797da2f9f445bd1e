"""The OpenAPI document serves generated clients: named, tagged operations and shared, referenced schemas."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from chalicelib.api.openapi import openapi_document

METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
TAGS = {"agents", "schedules", "sessions", "scheduler", "dlq", "events", "meta", "pools"}
SHARED = ("Agent", "Schedule", "Session", "Error", "Event", "Page")


def operations(doc: dict):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield method.upper(), path, op


def refs(value) -> list[str]:
    """Every ``$ref`` target in ``value``, however deep."""
    if isinstance(value, dict):
        own = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return own + [r for v in value.values() for r in refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in refs(v)]
    return []


def test_every_operation_has_a_unique_camel_case_operation_id_and_one_known_tag():
    seen: dict[str, str] = {}
    for method, path, op in operations(openapi_document()):
        op_id = op.get("operationId")
        assert op_id and re.fullmatch(r"[a-z][a-zA-Z0-9]*", op_id), f"{method} {path}: operationId {op_id!r}"
        assert op_id not in seen, f"{op_id} names both {seen[op_id]} and {method} {path}"
        seen[op_id] = f"{method} {path}"
        assert len(op.get("tags", [])) == 1 and op["tags"][0] in TAGS, f"{method} {path}: tags {op.get('tags')}"
    doc = openapi_document()
    assert {t["name"] for t in doc["tags"]} == TAGS


def test_the_named_operations_are_where_a_client_expects_them():
    ids = {(m, p): op["operationId"] for m, p, op in operations(openapi_document())}
    assert ids[("POST", "/api/agents")] == "createAgent"
    assert ids[("GET", "/api/agents")] == "listAgents"
    assert ids[("GET", "/api/agents/{agent_id}")] == "getAgent"
    assert ids[("PATCH", "/api/agents/{agent_id}")] == "updateAgent"
    assert ids[("DELETE", "/api/agents/{agent_id}")] == "deleteAgent"
    assert ids[("POST", "/api/agents/{agent_id}/run")] == "runAgent"
    assert ids[("GET", "/api/agents/{agent_id}/sessions")] == "listSessions"
    assert ids[("GET", "/api/agents/{agent_id}/sessions/{session_id}")] == "getSession"
    assert ids[("POST", "/api/agents/{agent_id}/sessions/{session_id}/cancel")] == "cancelSession"
    assert ids[("POST", "/api/agents/{agent_id}/schedule")] == "setSchedule"
    assert ids[("GET", "/api/agents/{agent_id}/schedule")] == "getSchedule"
    assert ids[("DELETE", "/api/agents/{agent_id}/schedule")] == "deleteSchedule"


def test_shared_shapes_are_components_referenced_by_the_routes_and_nothing_is_copied_inline():
    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    for name in SHARED:
        assert name in schemas, name
    used = refs(doc["paths"]) + refs(schemas)
    for name in SHARED:
        assert f"#/components/schemas/{name}" in used, f"{name} is never referenced"
    for target in set(used):
        assert target.removeprefix("#/components/schemas/") in schemas, f"dangling {target}"
    # Every JSON answer and body is a reference to a named schema, never an inline object.
    for method, path, op in operations(doc):
        bodies = [op.get("requestBody", {})] + list(op["responses"].values())
        for part in bodies:
            schema = part.get("content", {}).get("application/json", {}).get("schema")
            if schema is not None and path != "/api/openapi.json":
                assert set(schema) == {"$ref"}, f"{method} {path}: inline schema {schema}"
    # The agent's schedule is the Schedule component, not a copy of it; pages narrow the shared Page.
    assert refs(schemas["Agent"]["properties"]["schedule"]) == ["#/components/schemas/Schedule"]
    assert "#/components/schemas/Page" in refs(schemas["AgentPage"])
    assert refs(schemas["AgentPage"]).count("#/components/schemas/Agent") == 1
    for _method, _path, op in operations(doc):
        if op["responses"].get("401"):
            assert refs(op["responses"]["401"]) == ["#/components/schemas/Error"]


def test_the_document_is_valid_openapi():
    from openapi_spec_validator import validate

    validate(openapi_document())


def _generator() -> str | None:
    return os.environ.get("OPENAPI_PYTHON_CLIENT") or shutil.which("openapi-python-client")


@pytest.mark.skipif(
    _generator() is None,
    reason="openapi-python-client is not installed: its only release in the package index (0.29.1) needs "
           "typer<0.28, which conflicts with the CLI's pinned typer; install it in its own environment and "
           "point OPENAPI_PYTHON_CLIENT at its executable to run this test",
)
def test_openapi_python_client_generates_an_importable_client_with_named_models(tmp_path):
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(openapi_document()))
    out = tmp_path / "agent_scheduler_client"
    done = subprocess.run([_generator(), "generate", "--path", str(spec), "--meta", "none", "--output-path", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    apis = {p.stem for p in (out / "api" / "agents").glob("*.py")}
    assert {"create_agent", "list_agents", "get_agent", "update_agent", "delete_agent", "run_agent"} <= apis
    models = {p.stem for p in (out / "models").glob("*.py")}
    assert {"agent", "schedule", "session", "error", "event", "page", "agent_page"} <= models
    assert not [m for m in models if re.search(r"_response_\d{3}", m) and "open_api_document" not in m]
    probe = (
        "from agent_scheduler_client import AuthenticatedClient\n"
        "from agent_scheduler_client.api.agents import create_agent, run_agent\n"
        "from agent_scheduler_client.api.sessions import get_session\n"
        "from agent_scheduler_client.models import Agent, AgentPage, Error, Session\n"
        "a = Agent.from_dict({'id': 'a1', 'name': 'n', 'kind': 'echo', 'schedule': None})\n"
        "assert a.id == 'a1' and a.to_dict()['name'] == 'n'\n"
        "p = AgentPage.from_dict({'items': [{'id': 'a1'}], 'nextToken': None})\n"
        "assert isinstance(p.items[0], Agent)\n"
        "print('ok')\n"
    )
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert imported.returncode == 0 and imported.stdout.strip() == "ok", imported.stdout + imported.stderr
