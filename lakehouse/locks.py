"""One writer at a time per lakehouse root.

Two ingestion runs started at once would both see the same new files and both append them; Delta's optimistic
concurrency cannot tell (appends never conflict). A file lock under ``_system/`` serializes writers: the second
run waits for the first, then finds nothing new.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

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
            yield
        finally:
            _held.pop(path, None)
            fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        fh.close()
