"""DynamoDB transactions with a deterministic ClientRequestToken and per-item outcomes.

Every transaction carries a token derived from what it writes, so a retry of a
write that committed (by the SDK, or by us after a timeout) is accepted by
DynamoDB as the same request instead of failing its conditions. Callers also
stamp the token on the items they write (``tx``), so when a retry does fail
its conditions they can read an item back and ask "was it me?".
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.adapters.errors import _code_of, translate
from chalicelib.adapters.tables import SessionModel
from chalicelib.errors import StorageError

TRANSACTION_LIMIT = 100
_SENT_ORDER = ("check", "delete", "save", "update")  # how pynamodb orders the items it sends


def request_token(*parts: object) -> str:
    """A ClientRequestToken (at most 36 characters) that depends only on ``parts``."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:32]


@dataclass
class Op:
    kind: str  # check | delete | save | update
    apply: Callable[[TransactWrite], None]
    key: str = ""  # what the caller calls this item (for reporting)


@dataclass
class TxResult:
    ok: bool
    failed: list[str] = field(default_factory=list)  # keys of ops whose condition failed


@dataclass
class Tx:
    token: str
    ops: list[Op] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ops)

    def check(self, key: str, model_cls: Any, hash_key: Any, range_key: Any, condition) -> None:
        self.ops.append(Op("check", lambda tw: tw.condition_check(model_cls, hash_key, range_key, condition=condition), key))

    def save(self, key: str, item: Any, condition=None) -> None:
        self.ops.append(Op("save", lambda tw: tw.save(item, condition=condition), key))

    def update(self, key: str, item: Any, actions: list, condition=None) -> None:
        self.ops.append(Op("update", lambda tw: tw.update(item, actions=actions, condition=condition), key))

    def delete(self, key: str, item: Any, condition=None) -> None:
        self.ops.append(Op("delete", lambda tw: tw.delete(item, condition=condition), key))

    def commit(self, what: str) -> TxResult:
        """Commit; a cancellation by conditions is a normal outcome (``ok=False`` with the
        failed keys), anything else raises a StorageError that says whether to retry."""
        if not self.ops:
            return TxResult(True)
        if len(self.ops) > TRANSACTION_LIMIT:
            raise ValueError(f"{what}: {len(self.ops)} items in one transaction (limit {TRANSACTION_LIMIT})")
        try:
            with TransactWrite(connection=SessionModel._get_connection().connection, client_request_token=self.token) as tw:
                for op in self.ops:
                    op.apply(tw)
            return TxResult(True)
        except TransactWriteError as exc:
            reasons = exc.cancellation_reasons or []
            if _code_of(exc) != "TransactionCanceledException" or not reasons:
                raise translate(exc, what) from exc
            sent = [op for kind in _SENT_ORDER for op in self.ops if op.kind == kind]
            failed = [op.key for op, r in zip(sent, reasons)
                      if r is not None and getattr(r, "code", None) == "ConditionalCheckFailed"]
            if not failed:  # a conflict with another transaction, or throttling: retryable
                raise translate(exc, what) from exc
            return TxResult(False, failed)


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, StorageError) and exc.retryable
