"""What anchors the run log: the audit key and the anchor file, both outside the lakehouse root.

The run log's hash chain (``lakehouse.runlog``) is an HMAC chain under the audit key, so a whole chain cannot be
rewritten and re-hashed by someone who can write the root but cannot read the key. After every record the head
(root, seq, hash) is appended, with its own HMAC, to the anchor file, opened append-only outside the root (point
``audit_anchor`` at a WORM mount, a syslog-forwarded file or another host's share for a stronger anchor).
``audit verify`` checks the chain and that it still ends where the anchor says: deleting the last records,
restoring an older version of the run log, or rewriting it are all detected.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lakehouse.config import Settings
from lakehouse.errors import ConfigError

KEY_BYTES = 32
MAC_PREFIX = "hmac-sha256:"


def _config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config").expanduser() / "clinical-lakehouse"


def _state_home() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state").expanduser() \
        / "clinical-lakehouse"


def _outside_root(path: Path, settings: Settings, what: str, setting: str) -> Path:
    if settings.remote_root is None:
        try:
            path.resolve().relative_to(settings.root_path)
        except ValueError:
            return path
        raise ConfigError(f"the {what} {path} is inside the lakehouse root: it must live elsewhere to protect the "
                          f"run log; set LAKEHOUSE_{setting.upper()} to a path outside it")
    return path


def audit_key_path(settings: Settings) -> Path:
    path = settings.audit_key_file or _config_home() / "audit.key"
    return _outside_root(Path(path).expanduser(), settings, "audit key file", "audit_key_file")


def audit_key(settings: Settings) -> bytes:
    """The audit key (created once, mode 0600, when none exists); a key file others can read is refused."""
    path = audit_key_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(KEY_BYTES) + "\n")
        except FileExistsError:
            pass
    mode = path.stat().st_mode
    if mode & 0o077:
        raise ConfigError(f"the audit key file {path} is readable by group or others (mode {mode & 0o777:04o}); "
                          f"run `chmod 600 {path}`")
    key = path.read_bytes().strip()
    if len(key) < 16:
        raise ConfigError(f"the audit key in {path} is shorter than 16 bytes; use a longer random key")
    return key


def anchor_path(settings: Settings) -> Path:
    """The anchor file of this root (one per root: the root's path digest names it)."""
    if settings.audit_anchor is not None:
        path = Path(settings.audit_anchor).expanduser()
    else:
        digest = hashlib.sha256(settings.root_uri.encode()).hexdigest()[:16]
        path = _state_home() / "anchors" / f"{digest}.log"
    return _outside_root(path, settings, "audit anchor", "audit_anchor")


def mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def _anchor_text(root: str, seq: int, head: str) -> str:
    return f"{root}|{seq}|{head}"


def append_anchor(settings: Settings, key: bytes, seq: int, head: str) -> None:
    """Append the chain head to the anchor file (O_APPEND: earlier lines are never rewritten by this code)."""
    path = anchor_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    root = settings.root_uri
    line = json.dumps({"root": root, "seq": seq, "hash": head, "at": datetime.now(UTC).isoformat(),
                       "mac": mac(key, _anchor_text(root, seq, head))}, sort_keys=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_anchors(settings: Settings, key: bytes) -> tuple[list[dict[str, Any]], str | None]:
    """The anchor lines of this root, and the first problem found in the file (a forged or altered line)."""
    path = anchor_path(settings)
    if not path.exists():
        return [], None
    root = settings.root_uri
    anchors = []
    for n, text in enumerate(path.read_text().splitlines(), start=1):
        try:
            item = json.loads(text)
            ok = hmac.compare_digest(item["mac"], mac(key, _anchor_text(item["root"], int(item["seq"]),
                                                                         item["hash"])))
        except (ValueError, KeyError, TypeError):
            return anchors, f"anchor file {path} line {n} is not an anchor record"
        if not ok:
            return anchors, f"anchor file {path} line {n} was altered or forged (its MAC does not match)"
        if item["root"] == root:
            anchors.append(item)
    return anchors, None
