"""Idempotency records: Powertools' idempotency utility over the control table.

One record per (tenant, ``Idempotency-Key``), keyed ``idempotency#<sha256>`` in the control
table's ``pk``; Powertools' ``DynamoDBPersistenceLayer`` does the conditional writes:

- the first request puts an ``INPROGRESS`` record with a lease (its own remaining time, or
  :data:`~chalicelib.domain.idempotency.LEASE_SECONDS`); a second request while it is held
  is ``IDEMPOTENCY_KEY_IN_USE``; once the lease ran out (the first request crashed) the key
  is free again;
- the payload hash is the request's fingerprint (method, path, canonical body): another
  fingerprint under the same key is ``IDEMPOTENCY_KEY_REUSED``;
- a 2xx answer is stored (``COMPLETED``) for 24 h (``expires_at``, the table's TTL) and
  replayed; any error deletes the record, so the key can be used again.

The stored answer is sealed (AES-GCM, :class:`Sealer`): a create-agent answer may carry the
agent's signing secret, which must never sit readable in the table, a backup or a snapshot.
"""
from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from typing import Any, Callable

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyInconsistentStateError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.serialization.base import BaseIdempotencySerializer
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from chalicelib.domain.idempotency import (
    LEASE_SECONDS,
    RETENTION_SECONDS,
    Fingerprint,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    keeps_answer,
    scoped_key,
)
from chalicelib.errors import StorageError
from chalicelib.keyset import key_set

KEY_PREFIX = "idempotency"
SEALED = "sealed"
_INFO = b"agent-scheduler idempotency answers v1"


class Sealer:
    """AES-256-GCM with keys derived (HKDF-SHA256) from a secret the deployment already keeps.

    ``secrets``: the first seals; every one opens, so an answer sealed before a rotation of
    that secret (a JWT key set, see :mod:`chalicelib.keyset`) stays readable while its key is
    still in the set.
    """

    def __init__(self, *secrets: str | bytes) -> None:
        if not secrets:
            raise ValueError("a sealer needs a secret")
        self._aeads = [AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
            s.encode() if isinstance(s, str) else s)) for s in secrets]

    @classmethod
    def from_secret(cls, secret: str) -> "Sealer":
        """From the JWT secret's value: its current key seals, every key of the set opens."""
        ks = key_set(secret)
        return cls(ks.signing_key, *[v for k, v in ks.keys.items() if k != ks.current])

    def seal(self, plain: bytes) -> str:
        nonce = os.urandom(12)
        return base64.b64encode(nonce + self._aeads[0].encrypt(nonce, plain, None)).decode()

    def open(self, sealed: str) -> bytes:
        blob = base64.b64decode(sealed)
        for aead in self._aeads:
            try:
                return aead.decrypt(blob[:12], blob[12:], None)
            except InvalidTag:
                continue
        raise InvalidTag()


class _SealedAnswers(BaseIdempotencySerializer):
    def __init__(self, sealer: Sealer) -> None:
        self.sealer = sealer

    def to_dict(self, data: Any) -> dict:
        return {SEALED: self.sealer.seal(json.dumps(data).encode())}

    def from_dict(self, data: dict) -> Any:
        try:
            return json.loads(self.sealer.open(data[SEALED]))
        except (KeyError, ValueError, InvalidTag) as exc:  # sealed with another secret: treat as lost
            raise StorageError("a stored idempotent answer cannot be read", retryable=False) from exc


class _Lease:
    """What Powertools asks of a Lambda context: how long the request may still run."""

    def __init__(self, remaining_ms: int) -> None:
        self._remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining_ms


class _NotKept(Exception):
    """An answer that is not stored (not 2xx): Powertools deletes the record and lets it through."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status, self.body = status, body


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    replayed: bool


class IdempotencyStore:
    """Runs a creating request at most once per (tenant, key) for 24 h; see the module docstring."""

    def __init__(self, client, table_name: str, sealer: Sealer) -> None:
        self._persistence = DynamoDBPersistenceLayer(table_name=table_name, key_attr="pk", expiry_attr="expires_at",
                                                     boto3_client=client)
        self._serializer = _SealedAnswers(sealer)

    def call(self, tenant_id: str, key: str, fp: Fingerprint, fn: Callable[[], tuple[int, Any]],
             *, remaining_ms: int | None = None) -> Answer:
        """``fn`` does the request and returns (status, body) of a 2xx answer, or raises (nothing
        is kept then). ``remaining_ms``: the request's own deadline, the lease on the key."""
        config = IdempotencyConfig(
            event_key_jmespath="key",
            payload_validation_jmespath="fingerprint",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=RETENTION_SECONDS,
            hash_function="sha256",
            response_hook=lambda response, _record: {**response, "replayed": True},
        )
        lease = remaining_ms if remaining_ms is not None and remaining_ms > 0 else LEASE_SECONDS * 1000
        config.register_lambda_context(_Lease(lease))  # type: ignore[arg-type]

        @idempotent_function(data_keyword_argument="request", persistence_store=self._persistence, config=config,
                             output_serializer=self._serializer, key_prefix=KEY_PREFIX)
        def run(request: dict) -> dict:
            status, body = fn()
            if not keeps_answer(status):
                raise _NotKept(status, body)
            return {"status": status, "body": body, "replayed": False}

        try:
            out = run(request={"key": scoped_key(tenant_id, key), "fingerprint": fp.digest()})
        except _NotKept as answer:
            return Answer(answer.status, answer.body, False)
        except IdempotencyValidationError:
            raise IdempotencyKeyReused() from None
        except IdempotencyAlreadyInProgressError:
            raise IdempotencyKeyInUse() from None
        except (IdempotencyPersistenceLayerError, IdempotencyInconsistentStateError) as exc:
            raise StorageError(f"idempotency store: {exc}", retryable=True) from exc
        return Answer(int(out["status"]), out["body"], bool(out.get("replayed")))
