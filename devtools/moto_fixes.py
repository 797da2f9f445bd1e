"""Work around moto's DynamoDB transactions for tests and the local system.

moto 5.2's ``transact_write_items`` deep-copies a whole table *once per item*
in the transaction (to roll back on failure), so a 100-item transaction on a
10,000-item table copies a million items, and two threads transacting at once
crash in ``deepcopy`` ("dictionary changed size during iteration"). This copies
each table once per transaction and serialises transactions, which is what
DynamoDB guarantees anyway. Dev/test only: never imported by the Lambda code.
"""
from __future__ import annotations

import copy as _copy
import threading

_lock = threading.RLock()
_applied = False


class _TableCopyOnce:
    """Stands in for the ``copy`` module inside one transaction: a Table is copied once."""

    def __init__(self, table_cls) -> None:
        self._table_cls = table_cls
        self._cache: dict[int, object] = {}

    def deepcopy(self, x, memo=None):
        if isinstance(x, self._table_cls):
            key = id(x)
            if key not in self._cache:
                self._cache[key] = _copy.deepcopy(x)
            return self._cache[key]
        return _copy.deepcopy(x, memo)

    def __getattr__(self, name):
        return getattr(_copy, name)


def apply() -> None:
    global _applied
    if _applied:
        return
    import moto.dynamodb.models as models
    from moto.dynamodb.models.table import Table

    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        with _lock:
            saved = models.copy
            models.copy = _TableCopyOnce(Table)
            try:
                return original(self, transact_items)
            finally:
                models.copy = saved

    models.DynamoDBBackend.transact_write_items = transact_write_items
    _applied = True
