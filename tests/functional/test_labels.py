"""Agent labels: set, changed, returned, selected with ?label=key=value."""
from __future__ import annotations

import pytest

from tests.functional.test_dispatch import make_agent


def test_labels_are_kept_returned_and_changed(api):
    r = api.post("/api/agents", {"name": "a", "kind": "echo", "labels": {"team": "ops", "app.kubernetes.io/part-of": "x"}})
    assert r.status_code == 201 and r.json["labels"] == {"team": "ops", "app.kubernetes.io/part-of": "x"}
    aid = r.json["id"]
    assert api.get(f"/api/agents/{aid}").json["labels"] == r.json["labels"]
    assert api.patch(f"/api/agents/{aid}", {"labels": {"team": "data"}}).json["labels"] == {"team": "data"}
    assert api.patch(f"/api/agents/{aid}", {"description": "kept"}).json["labels"] == {"team": "data"}
    assert api.patch(f"/api/agents/{aid}", {"labels": None}).json["labels"] == {}
    assert api.get(f"/api/agents/{aid}").json["labels"] == {}
    assert make_agent(api, "b") and api.get("/api/agents").json["items"][-1]["labels"] == {}


def test_label_selects_agents(api, other_api):
    a = api.post("/api/agents", {"name": "a", "kind": "echo", "labels": {"team": "ops", "tier": "1"}}).json["id"]
    b = api.post("/api/agents", {"name": "b", "kind": "echo", "labels": {"team": "ops"}}).json["id"]
    api.post("/api/agents", {"name": "c", "kind": "echo", "labels": {"team": "data"}})
    other_api.post("/api/agents", {"name": "d", "kind": "echo", "labels": {"team": "ops"}})
    ids = lambda q: sorted(i["id"] for i in api.get(f"/api/agents?{q}").json["items"])  # noqa: E731
    assert ids("label=team=ops") == sorted([a, b])
    assert ids("label=team=ops&label=tier=1") == [a]
    assert ids("label=team=nobody") == []


def test_label_selection_pages_through_every_agent(api):
    for i in range(7):
        api.post("/api/agents", {"name": f"a{i}", "kind": "echo", "labels": {"pick": str(i % 2)}})
    got, token = [], None
    for _ in range(10):
        page = api.get("/api/agents?limit=2&label=pick=1" + (f"&nextToken={token}" if token else "")).json
        got += [i["name"] for i in page["items"]]
        token = page["nextToken"]
        if not token:
            break
    assert sorted(got) == ["a1", "a3", "a5"]


@pytest.mark.parametrize("labels,field", [
    ({"": "x"}, "labels"),
    ({"k" * 64: "x"}, "labels"),
    ({"bad key": "x"}, "labels"),
    ({"ok": "v" * 256}, "labels.ok"),
    ({"ok": 1}, "labels.ok"),
    ({f"k{i}": "v" for i in range(33)}, "labels"),
    (["a"], "labels"),
])
def test_bad_labels_are_400_naming_the_field(api, labels, field):
    r = api.post("/api/agents", {"name": "a", "kind": "echo", "labels": labels})
    assert r.status_code == 400 and r.json["field"] == field, r.json
    aid = make_agent(api, "x")
    r = api.patch(f"/api/agents/{aid}", {"labels": labels})
    assert r.status_code == 400 and r.json["field"] == field


def test_the_limits_themselves_are_accepted(api):
    labels = {f"k{i}": "v" * 255 for i in range(31)} | {"k" * 63: ""}
    assert api.post("/api/agents", {"name": "a", "kind": "echo", "labels": labels}).json["labels"] == labels


@pytest.mark.parametrize("q", ["label=team", "label==x", "label=bad key=x"])
def test_a_bad_selector_is_400_naming_label(api, q):
    r = api.get(f"/api/agents?{q}")
    assert r.status_code == 400 and r.json["field"] == "label"
