"""Agents' signing secrets, encrypted with KMS: the only code that calls KMS.

The API encrypts a new secret (``kms:Encrypt``) and keeps only the ciphertext on
the agent's item; the worker decrypts it (``kms:Decrypt``) when it signs a
delivery. The encryption context names the tenant and the agent, so a ciphertext
copied onto another agent does not decrypt. Decrypted secrets are kept in this
process, keyed by ciphertext (a rotation makes a new ciphertext, so nothing stale
is served), at most ``cache_size`` of them.
"""
from __future__ import annotations

import base64
import threading
from collections import OrderedDict
from typing import Any

from chalicelib.adapters.errors import aws_call
from chalicelib.errors import ConfigError


class SigningKeys:
    def __init__(self, kms_client: Any, key_id: str, cache_size: int = 1000) -> None:
        self.kms = kms_client
        self.key_id = key_id
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str, str], str] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _context(tenant_id: str, agent_id: str) -> dict[str, str]:
        return {"tenantId": tenant_id, "agentId": agent_id}

    def encrypt(self, secret: str, tenant_id: str, agent_id: str) -> str:
        """The ciphertext (base64 text) of ``secret``, bound to this tenant's agent."""
        if not self.key_id:
            raise ConfigError("SCHEDULER_SIGNING_KEY_ID must name a KMS key to keep webhook agents' signing secrets")
        with aws_call("encrypt signing secret"):
            blob = self.kms.encrypt(
                KeyId=self.key_id, Plaintext=secret.encode("utf-8"),
                EncryptionContext=self._context(tenant_id, agent_id),
            )["CiphertextBlob"]
        return base64.b64encode(blob).decode("ascii")

    def decrypt(self, ciphertext: str, tenant_id: str, agent_id: str) -> str:
        """The secret a ciphertext of :meth:`encrypt` holds (cached)."""
        key = (ciphertext, tenant_id, agent_id)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        with aws_call("decrypt signing secret"):
            plain = self.kms.decrypt(
                CiphertextBlob=base64.b64decode(ciphertext), EncryptionContext=self._context(tenant_id, agent_id),
            )["Plaintext"]
        secret = plain.decode("utf-8")
        with self._lock:
            self._cache[key] = secret
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return secret


def create_key(kms_client: Any, description: str = "agent-scheduler signing secrets") -> str:
    """A new symmetric KMS key (the local system creates one in its emulator); its id."""
    with aws_call("create signing key"):
        return kms_client.create_key(Description=description, KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
