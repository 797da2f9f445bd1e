"""Bench-only speed-ups for moto at 10,000 items (never used by the app or the tests).

moto answers correctly but some operations cost O(table) or O(queue) per call,
which would make a 10,000-fire tick take tens of minutes and measure moto:

- DynamoDB ``TransactWriteItems`` deep-copies every table it touches to roll back
  on failure (``devtools/moto_fixes`` brings that down to once per transaction,
  still O(table) per transaction). Here the copy is skipped and only the items
  the transaction touches are saved and put back on failure: the same outcome.
- SQS ``SendMessage(Batch)`` builds every queue attribute for each message, which
  counts the queue's messages: O(queue) per message. Here a standard queue's
  send skips that (it only looked at ``ContentBasedDeduplication``, FIFO-only).
- moto serializes each DynamoDB response member by member against the service
  model (about 3 ms per 1,000 items returned). The result dicts of the item
  operations are already DynamoDB JSON, so they are dumped directly; the first
  responses of each operation go both ways and must parse equal, else that
  operation keeps moto's serializer.

Request counts are unaffected: these patch moto's server side, not botocore.
"""
from __future__ import annotations

import copy
import json
import threading
from collections import Counter

_lock = threading.RLock()
_applied = False
_in_send = threading.local()


def apply():
    """Patch moto; returns a function that undoes it (a no-op if it was already patched)."""
    global _applied
    if _applied:
        return lambda: None
    from devtools import moto_fixes

    moto_fixes.apply()
    import moto.dynamodb.models as dyn
    import moto.sqs.models as sqs
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    inner = dyn.DynamoDBBackend.transact_write_items

    def _target(backend, item):
        _, op = next(iter(item.items()))
        table = backend.tables.get(op.get("TableName"))
        if table is None:
            return None
        if "Key" in op:
            key = op["Key"]
        else:
            attrs = op.get("Item", {})
            key = {table.hash_key_attr: attrs.get(table.hash_key_attr)}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = attrs.get(table.range_key_attr)
        try:
            h = DynamoType(key[table.hash_key_attr])
            r = DynamoType(key[table.range_key_attr]) if table.range_key_attr is not None else None
        except (KeyError, TypeError):
            return None
        return table, h, r

    def transact_write_items(self, transact_items):
        with _lock:
            saved = []
            for item in transact_items:
                t = _target(self, item)
                if t is None:
                    continue
                table, h, r = t
                old = table.get_item(h, r) if (r is not None or not table.has_range_key) else None
                saved.append((table, h, r, copy.deepcopy(old) if old is not None else None))
            Table.__deepcopy__ = lambda table, memo: table  # the rollback copy becomes free
            try:
                return inner(self, transact_items)
            except Exception:
                for table, h, r, old in reversed(saved):
                    if old is None:
                        table.delete_item(h, r)
                    elif r is not None:
                        table.items[h][r] = old
                    else:
                        table.items[h] = old
                raise
            finally:
                del Table.__deepcopy__

    dyn.DynamoDBBackend.transact_write_items = transact_write_items

    attributes = sqs.Queue.attributes

    def cheap_attributes(self):
        if getattr(_in_send, "on", False) and not self.fifo_queue:
            return {}
        return attributes.fget(self)

    sqs.Queue.attributes = property(cheap_attributes)
    send = sqs.SQSBackend.send_message

    def send_message(self, *a, **k):
        _in_send.on = True
        try:
            return send(self, *a, **k)
        finally:
            _in_send.on = False

    sqs.SQSBackend.send_message = send_message

    from moto.core.responses import ActionResult

    execute = ActionResult.execute_result
    fast_ops = frozenset({"Query", "Scan", "GetItem", "BatchGetItem", "PutItem", "UpdateItem", "TransactWriteItems"})
    checked: Counter = Counter()
    headers_of: dict = {}
    slow_ops: set = set()

    def execute_result(self, context):
        op = context.operation_model.name
        result = self.result
        if (type(self).__name__ not in ("ActionResult", "DynamoResult") or op not in fast_ops or op in slow_ops or not isinstance(result, dict)
                or context.service_model.service_name != "dynamodb"):
            return execute(self, context)
        try:
            body = json.dumps({k: v for k, v in result.items() if v is not None})
        except (TypeError, ValueError):
            return execute(self, context)
        if checked[op] < 3:
            checked[op] += 1
            status, headers, slow = execute(self, context)
            if status == 200 and json.loads(slow) == json.loads(body):
                headers_of[op] = dict(headers)
            else:
                slow_ops.add(op)
            return status, headers, slow
        return 200, dict(headers_of[op]), body

    ActionResult.execute_result = execute_result
    _applied = True

    def restore() -> None:
        global _applied
        dyn.DynamoDBBackend.transact_write_items = inner
        sqs.Queue.attributes = attributes
        sqs.SQSBackend.send_message = send
        ActionResult.execute_result = execute
        _applied = False

    return restore
