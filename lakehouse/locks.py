"""One writer at a time per lakehouse root.

Two ingestion runs started at once would both see the same new files and both append them; Delta's optimistic
concurrency cannot tell (appends never conflict). A file lock under ``_system/`` serializes writers: the second
run waits for the first, then finds nothing new.

An object-store root is written from several machines, where a file lock does not reach: there the lock is also a
lease object ``<root>/_system/writer.lock`` created with an exclusive (conditional) put, which the store grants to
one writer only. It names its holder and an expiry (``LAKEHOUSE_LOCK_TTL`` seconds, default 6 h: longer than any
run); a lease past its expiry is taken over (its holder crashed), and its holder deletes it when done.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lakehouse.config import Settings
from lakehouse.errors import LakehouseError
from lakehouse.logs import get_logger

log = get_logger(__name__)

_held: dict[str, int] = {}  # lock path -> re-entry depth in this process


@contextmanager
def writer_lock(settings: Settings, timeout: float | None = None) -> Iterator[None]:
    timeout = float(os.environ.get("LAKEHOUSE_LOCK_TIMEOUT", "900")) if timeout is None else timeout
    settings.system_dir.mkdir(parents=True, exist_ok=True)
    path = str(settings.system_dir / "writer.lock")
    if _held.get(path):
        _held[path] += 1
        try:
            yield
        finally:
            _held[path] -= 1
        return
    fh = open(path, "a+")
    try:
        deadline = time.monotonic() + timeout
        waited = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if not waited:
                    log.warning("another run is writing to %s; waiting for it", settings.root_path)
                    waited = True
                if time.monotonic() > deadline:
                    raise LakehouseError(
                        f"another run has held the writer lock on {settings.root_path} for over {timeout:.0f}s; "
                        "wait for it to finish, or remove _system/writer.lock if no lakehouse process is running"
                    ) from None
                time.sleep(0.2)
        _held[path] = 1
        try:
            if settings.remote_root:
                with _object_store_lease(settings, deadline - time.monotonic()):
                    yield
            else:
                yield
        finally:
            _held.pop(path, None)
            fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        fh.close()


def _read_lease(lease: Any) -> dict[str, Any] | None:
    try:
        return dict(json.loads(lease.read_bytes()))
    except FileNotFoundError:
        return None
    except ValueError:  # cut or foreign content: treat as expired so that it cannot block forever
        return {"owner": "unreadable lease", "expires_at": 0.0}


@contextmanager
def _object_store_lease(settings: Settings, timeout: float) -> Iterator[None]:
    lease = settings.layer_path("_system") / "writer.lock"
    ttl = float(os.environ.get("LAKEHOUSE_LOCK_TTL", str(6 * 3600)))
    token = uuid.uuid4().hex
    deadline = time.monotonic() + max(timeout, 0.0)
    waited = False
    while True:
        mine = {"owner": f"{socket.gethostname()}:{os.getpid()}", "token": token, "acquired_at": time.time(),
                "expires_at": time.time() + ttl}
        try:
            with lease.open("xb") as out:  # exclusive create: a conditional put (If-None-Match) on S3
                out.write(json.dumps(mine).encode())
            break
        except FileExistsError:
            held = _read_lease(lease)
            if held is None:
                continue  # released between our put and our read
            if float(held.get("expires_at", 0)) < time.time():
                log.warning("taking over the expired writer lease of %s on %s", held.get("owner"),
                            settings.root_uri)
                again = _read_lease(lease)
                if again is not None and again.get("token") == held.get("token"):  # not someone's new lease
                    lease.unlink(missing_ok=True)
                continue
            if not waited:
                log.warning("%s holds the writer lease on %s; waiting for it", held.get("owner"), settings.root_uri)
                waited = True
            if time.monotonic() > deadline:
                raise LakehouseError(
                    f"{held.get('owner')} has held the writer lease on {settings.root_uri} for over "
                    f"{timeout:.0f}s; wait for it to finish, or delete {lease} if that process is gone"
                ) from None
            time.sleep(1.0)
    try:
        yield
    finally:
        held = _read_lease(lease)
        if held is not None and held.get("token") == token:
            lease.unlink(missing_ok=True)
