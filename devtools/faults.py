"""Deterministic AWS faults for tests and ``make chaos``: one seam under every botocore client.

``Faults`` wraps ``BaseClient._make_api_call`` (pynamodb's client and boto3's alike) and,
for the operations a rule names, either fails the call before it reaches the service
(throttling, a 5xx), or lets it commit and then fails it (a lost answer), or lets it commit
and then repeats it, as the SDK does when an answer is lost (the retry of a committed
write). Which calls fail is decided by a seeded ``random.Random`` or by a countdown, never
by time.
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass, field

from botocore.client import BaseClient
from botocore.exceptions import ClientError, ReadTimeoutError

BEFORE = ("throttle", "server_error")
AFTER = ("lost_answer", "retried_commit")


@dataclass
class Rule:
    operations: tuple[str, ...]  # e.g. ("TransactWriteItems", "UpdateItem"); () for every call
    mode: str  # throttle | server_error | lost_answer | retried_commit
    share: float = 1.0  # probability per matching call
    times: int | None = None  # at most this many faults, then the rule is spent
    fired: int = 0

    def matches(self, operation: str) -> bool:
        return (not self.operations or operation in self.operations) and (self.times is None or self.fired < self.times)


@dataclass
class Faults:
    seed: int = 0
    rules: list[Rule] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    injected: dict[str, int] = field(default_factory=dict)
    enabled: bool = True

    def __post_init__(self) -> None:
        self.rand = random.Random(self.seed)
        self._depth = 0

    def add(self, operations, mode: str, share: float = 1.0, times: int | None = None) -> Rule:
        assert mode in BEFORE + AFTER, mode
        ops = (operations,) if isinstance(operations, str) else tuple(operations)
        rule = Rule(ops, mode, share, times)
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    def _pick(self, operation: str) -> Rule | None:
        if not self.enabled or self._depth:
            return None
        for rule in self.rules:
            if rule.matches(operation) and (rule.share >= 1.0 or self.rand.random() < rule.share):
                rule.fired += 1
                self.injected[rule.mode] = self.injected.get(rule.mode, 0) + 1
                return rule
        return None

    def call(self, original, client, operation: str, params: dict):
        self.calls[operation] = self.calls.get(operation, 0) + 1
        rule = self._pick(operation)
        if rule is not None and rule.mode == "throttle":
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "injected"}}, operation)
        if rule is not None and rule.mode == "server_error":
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, operation)
        result = original(client, operation, params)
        if rule is not None and rule.mode == "lost_answer":
            raise ReadTimeoutError(endpoint_url=f"injected://{operation}")
        if rule is not None and rule.mode == "retried_commit":
            self._depth += 1
            try:  # the SDK's retry of a write whose first answer was lost: same parameters
                return original(client, operation, params)
            finally:
                self._depth -= 1
        return result

    @contextmanager
    def installed(self):
        original = BaseClient._make_api_call
        faults = self

        def _make_api_call(client, operation, params):
            return faults.call(original, client, operation, params)

        BaseClient._make_api_call = _make_api_call
        try:
            yield self
        finally:
            BaseClient._make_api_call = original
