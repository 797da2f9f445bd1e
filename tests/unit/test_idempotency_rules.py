"""What makes two creating requests the same, and what a key may be."""
from __future__ import annotations

import pytest

from chalicelib.domain.idempotency import (
    canonical_json,
    fingerprint,
    header_key,
    keeps_answer,
    scoped_key,
)
from chalicelib.errors import ValidationError


def test_the_same_json_in_another_order_or_spacing_is_the_same_request():
    a = fingerprint("post", "/api/agents", {"name": "a", "config": {"x": 1, "y": [1, 2]}})
    b = fingerprint("POST", "/api/agents", {"config": {"y": [1, 2], "x": 1}, "name": "a"})
    assert a == b and a.digest() == b.digest()
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


@pytest.mark.parametrize("other", [
    ("GET", "/api/agents", {"name": "a"}),
    ("POST", "/api/agents/x/run", {"name": "a"}),
    ("POST", "/api/agents", {"name": "b"}),
    ("POST", "/api/agents", {"name": "a", "kind": "echo"}),
])
def test_method_path_and_body_each_make_another_request(other):
    assert fingerprint(*other).digest() != fingerprint("POST", "/api/agents", {"name": "a"}).digest()


def test_keys_are_per_tenant_and_cannot_be_forged_across_tenants():
    assert scoped_key("t1", "k") != scoped_key("t2", "k")
    assert scoped_key("t1", "a#b") != scoped_key("t1#a", "b")


@pytest.mark.parametrize("value", ["", "x" * 256])
def test_a_key_is_1_to_255_characters(value):
    with pytest.raises(ValidationError) as exc:
        header_key({"Idempotency-Key": value})
    assert exc.value.field == "Idempotency-Key"


def test_the_header_name_is_case_insensitive_and_optional():
    assert header_key({"IDEMPOTENCY-KEY": "x" * 255}) == "x" * 255
    assert header_key({"Other": "x"}) is None


def test_only_2xx_answers_are_kept():
    assert keeps_answer(200) and keeps_answer(201) and keeps_answer(202)
    assert not keeps_answer(400) and not keeps_answer(404) and not keeps_answer(500)
