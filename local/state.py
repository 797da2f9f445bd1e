"""Local state that survives a restart of ``make run``: snapshots of the emulator's tables.

moto keeps everything in memory and has no snapshot facility of its own (its recorder
replays every request, receives and deletes included), so the local system copies the
state out through the AWS API, as any client could:

- **What**: every item of every DynamoDB table (scanned, in DynamoDB's JSON), except the
  WebSocket connections (they end with the process). The SQS queues are not copied:
  the sessions table is the record of every run. A message of the work queue is always
  an *admitted* run holding a lease, and the DLQ is a parking lot whose dead runs are
  sessions (the DLQ list and redrive read the sessions). On restore every run's lease
  is made to have run out (the process that held it is gone), so the first tick's
  recovery sweep sends each admitted run again and ends each attempt that was running
  as abandoned, retried through admission: queued, admitted and running runs finish
  exactly once (the run path takes duplicate and late deliveries as normal). Async
  attempts keep their lease: their agent, not the process, holds them, and its
  callbacks after the restart count (its heartbeat and deadline still apply).
- **When**: every :data:`INTERVAL_SECONDS` seconds and once more at shutdown, so after a
  ``kill -9`` at most the last few seconds are lost. Each snapshot replaces
  ``state.json`` atomically (written beside it, flushed, renamed over it).
- **Restore**: on start, after the tables are created and before the tick and the
  poller start. One process at a time: ``lock`` is held (flock) while the system runs.
- **The signing key**: webhook agents' signing secrets are stored encrypted with a KMS
  key of the emulator, so the snapshot also keeps that key (its id and key material,
  read from moto's in-process KMS backend: KMS itself never exports key material, and
  moto cannot import it), and a start restores it under the same id before anything
  is provisioned. Without it no webhook agent could sign after a restart. The file is
  private to its owner (0600) for this reason too.

``python -m local.state reset [DIR]`` empties the directory (``make reset``); it refuses
while a system runs on it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("local.state")

STATE_DIR_ENV = "SCHEDULER_LOCAL_STATE_DIR"
DEFAULT_STATE_DIR = ".local/state"
STATE_FILE = "state.json"
LOCK_FILE = "lock"
FORMAT = 1
INTERVAL_SECONDS = 5.0
LEASE_ATTRIBUTE = "run_lease_until"  # sessions: claim (ADMITTED) or finish (RUNNING) by then
ASYNC_ATTRIBUTE = "is_async"  # sessions: the running attempt was accepted (202); its agent holds it
GONE_WITH_THE_PROCESS = ("subs", "live_from")  # the event stream's head: which connections follow it
SIGNING_KEY = "signingKey"  # the snapshot's member that keeps the emulator's signing key


class StateError(Exception):
    pass


def state_dir_from_env(env=None, root: Path | None = None) -> Path | None:
    """``SCHEDULER_LOCAL_STATE_DIR`` (unset: ``.local/state`` under ``root``; empty: None, memory only)."""
    env = os.environ if env is None else env
    raw = env.get(STATE_DIR_ENV)
    if raw is None:
        raw = DEFAULT_STATE_DIR
    raw = raw.strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    return path if path.is_absolute() or root is None else root / path


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None

    @property
    def file(self) -> Path:
        return self.path / STATE_FILE

    def lock(self) -> None:
        """Hold the directory for this process; a second system on it is refused."""
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(f"{STATE_DIR_ENV}: cannot use {self.path} ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StateError(f"{STATE_DIR_ENV}: {self.path} is in use by another running system; stop it, "
                             f"or set {STATE_DIR_ENV} to another directory (empty: memory only)") from None
        os.set_inheritable(fd, False)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def load(self) -> dict | None:
        try:
            text = self.file.read_text()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StateError(f"{self.file} is not readable ({exc}); `make reset` empties it") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise StateError(f"{self.file} has an unknown format; `make reset` empties it")
        return data

    def save(self, data: dict) -> None:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.file.with_name(f".{STATE_FILE}.tmp")
        # 0600 like the CLI's profile: agent configs hold headers and secrets
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            json.dump(data, out, separators=(",", ":"))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.file)

    def reset(self) -> list[str]:
        """Empty the directory (refused while a system holds it); the names removed."""
        if not self.path.exists():
            return []
        self.lock()
        try:
            removed = []
            for p in sorted(self.path.iterdir()):
                if p.name == LOCK_FILE or p.is_dir():
                    continue
                p.unlink()
                removed.append(p.name)
            return removed
        finally:
            self.unlock()


# --- copying the tables out and back -----------------------------------------------------------
def snapshot(dynamodb, *, skip: frozenset[str] = frozenset()) -> dict:
    """Every item of every table but ``skip``, as ``{"format", "takenAt", "tables": {name: [item]}}``."""
    tables: dict[str, list[dict]] = {}
    for page in dynamodb.get_paginator("list_tables").paginate():
        for name in page["TableNames"]:
            if name in skip:
                continue
            items: list[dict] = []
            for scanned in dynamodb.get_paginator("scan").paginate(TableName=name, ConsistentRead=True):
                items += scanned["Items"]
            tables[name] = items
    return {"format": FORMAT, "takenAt": time.time(), "tables": tables}


def _revived(item: dict[str, Any]) -> dict[str, Any]:
    """The item as a new process must see it: no lease held, no connection following.

    An async attempt (the agent answered 202) is the exception: no process of ours holds
    it, the agent works on and calls back, so its lease (heartbeat or deadline) stands."""
    out = {k: v for k, v in item.items() if k not in GONE_WITH_THE_PROCESS}
    if LEASE_ATTRIBUTE in out and not (out.get(ASYNC_ATTRIBUTE) or {}).get("BOOL"):
        out[LEASE_ATTRIBUTE] = {"N": "0"}
    return out


def restore(dynamodb, data: dict) -> dict[str, int]:
    """Write the snapshot's items into the (new, empty) tables; items per table restored."""
    existing: set[str] = set()
    for page in dynamodb.get_paginator("list_tables").paginate():
        existing.update(page["TableNames"])
    counts = {}
    for name, items in (data.get("tables") or {}).items():
        if name not in existing:
            log.warning("state: table %s no longer exists; its %d items are dropped", name, len(items))
            continue
        for i in range(0, len(items), 25):
            requests = [{"PutRequest": {"Item": _revived(item)}} for item in items[i:i + 25]]
            while requests:
                got = dynamodb.batch_write_item(RequestItems={name: requests})
                requests = got.get("UnprocessedItems", {}).get(name, [])
        counts[name] = len(items)
    return counts


# --- the emulator's KMS key of the signing secrets ----------------------------------------------
def signing_key_snapshot(key_id: str) -> dict | None:
    """The KMS key ``key_id`` of the in-process emulator as plain JSON (None if it has none)."""
    import base64

    from moto.kms.models import kms_backends

    for account_id, regions in list(kms_backends.items()):
        for region, backend in list(regions.items()):
            key = backend.keys.get(key_id)
            if key is None:
                continue
            return {"keyId": key.id, "account": account_id, "region": region, "description": key.description,
                    "createdAt": key.creation_date, "material": base64.b64encode(key.key_material).decode("ascii")}
    return None


def restore_signing_key(saved: dict) -> str:
    """Put a key of :func:`signing_key_snapshot` back into the in-process emulator under its old
    id, so the ciphertexts kept on the agents decrypt again; its id."""
    import base64

    from moto.kms.models import kms_backends

    try:
        key_id, account_id, region = str(saved["keyId"]), str(saved["account"]), str(saved["region"])
        material = base64.b64decode(str(saved["material"]), validate=True)
    except (KeyError, TypeError, ValueError):
        raise StateError("the kept signing key is not readable; `make reset` empties the state") from None
    backend = kms_backends[account_id][region]
    if key_id not in backend.keys:
        key = backend.create_key(None, "ENCRYPT_DECRYPT", "SYMMETRIC_DEFAULT", str(saved.get("description") or ""),
                                 None)
        del backend.keys[key.id]
        key.arn = key.arn.replace(key.id, key_id)
        key.id = key_id
        backend.keys[key_id] = key
    key = backend.keys[key_id]
    key.key_material = material
    if isinstance(saved.get("createdAt"), (int, float)):
        key.creation_date = saved["createdAt"]
    return key_id


class Snapshotter:
    """Saves a snapshot every ``interval`` seconds in a thread, and once more on :meth:`stop`."""

    def __init__(self, state: StateDir, take, interval: float = INTERVAL_SECONDS) -> None:
        self.state = state
        self.take = take
        self.interval = interval
        self.stop_event = threading.Event()
        self.saved = 0
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="state-snapshots", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def save_now(self) -> bool:
        with self._lock:
            try:
                self.state.save(self.take())
            except Exception as exc:  # a snapshot that failed is taken again next time
                log.warning("state: snapshot failed: %s", exc)
                return False
            self.saved += 1
            return True

    def _run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.save_now()

    def stop(self) -> bool:
        """Stop the thread and save a last snapshot (the caller has stopped all work)."""
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(30)
        return self.save_now()


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "reset" or len(argv) > 2:
        print("usage: python -m local.state reset [DIR]", file=sys.stderr)
        return 2
    root = Path(__file__).resolve().parent.parent
    path = Path(argv[1]) if len(argv) == 2 else state_dir_from_env(root=root)
    if path is None:
        print(f"{STATE_DIR_ENV} is empty: the local system keeps no state; nothing to reset")
        return 0
    try:
        removed = StateDir(path).reset()
    except StateError as exc:
        print(f"agent-scheduler: {exc}", file=sys.stderr)
        return 1
    print(f"reset {path}: " + (", ".join(removed) + " removed" if removed else "already empty"))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main(sys.argv[1:]))
