"""The local system keeps the emulator's KMS key of the signing secrets across a restart."""
from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from moto.kms.models import kms_backends

from chalicelib.adapters.signing_keys import SigningKeys, create_key
from chalicelib.errors import SchedulerError
from local.state import StateError, restore_signing_key, signing_key_snapshot

REGION = "us-east-1"


@pytest.fixture
def kms(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("kms", region_name=REGION)


def emulator_restarts() -> None:
    """What a new process of the local system starts with: an emulator without keys."""
    for regions in kms_backends.values():
        for backend in regions.values():
            backend.reset()


def test_a_secret_encrypted_before_a_restart_decrypts_after_it_under_the_same_key_id(kms):
    key_id = create_key(kms)
    ciphertext = SigningKeys(kms, key_id).encrypt("whsec_c2VjcmV0", "dev", "ag_1")
    kept = json.loads(json.dumps(signing_key_snapshot(key_id)))  # as state.json holds it

    emulator_restarts()
    with pytest.raises(SchedulerError):  # the new emulator has no such key
        SigningKeys(kms, key_id).decrypt(ciphertext, "dev", "ag_1")

    assert restore_signing_key(kept) == key_id
    assert SigningKeys(kms, key_id).decrypt(ciphertext, "dev", "ag_1") == "whsec_c2VjcmV0"
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyId"] == key_id
    # the restored key still encrypts, and a second restore (same process) changes nothing
    again = SigningKeys(kms, key_id).encrypt("whsec_bmV3", "dev", "ag_2")
    assert restore_signing_key(kept) == key_id
    assert SigningKeys(kms, key_id).decrypt(again, "dev", "ag_2") == "whsec_bmV3"


def test_an_unknown_key_is_not_kept_and_a_damaged_one_stops_start_up(kms):
    assert signing_key_snapshot("00000000-0000-0000-0000-000000000000") is None
    kept = signing_key_snapshot(create_key(kms))
    with pytest.raises(StateError, match="signing key"):
        restore_signing_key({**kept, "material": "not base64!"})
    with pytest.raises(StateError, match="signing key"):
        restore_signing_key({"keyId": "k"})
