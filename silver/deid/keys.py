"""The pseudonym key: from settings, from a key file, or (demo only) generated once outside the lakehouse root.

The key never appears in a log, an exception message or a DataFrame column name.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from lakehouse.config import Settings
from lakehouse.errors import ConfigError
from lakehouse.logs import get_logger

log = get_logger(__name__)

KEY_BYTES = 32
MIN_KEY_BYTES = 16


def default_key_file() -> Path:
    """``$XDG_CONFIG_HOME/clinical-lakehouse/pseudonym.key`` (``~/.config`` when XDG_CONFIG_HOME is unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "clinical-lakehouse" / "pseudonym.key"


def _read_key_file(path: Path) -> bytes:
    path = path.expanduser()
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise ConfigError(f"the pseudonym key file {path} is readable by group or others "
                              f"(mode {mode & 0o777:04o}); run `chmod 600 {path}`")
        data = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the pseudonym key file {path} ({exc.strerror}); "
                          "fix LAKEHOUSE_PSEUDONYM_KEY_FILE or remove it to use the demo key") from None
    if len(data) < MIN_KEY_BYTES:
        raise ConfigError(f"the pseudonym key in {path} is shorter than {MIN_KEY_BYTES} bytes; use a longer random key")
    return data


def _is_inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _generate_demo_key(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_hex(KEY_BYTES).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process generated it first: use theirs
        return _read_key_file(path)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    log.warning("no pseudonym key configured: generated a demo key into %s (mode 0600); "
                "set LAKEHOUSE_PSEUDONYM_KEY_FILE for real data", path)
    return key


def load_key(settings: Settings) -> bytes:
    """The HMAC key: ``pseudonym_key``, else ``pseudonym_key_file``, else the demo key file (created once)."""
    if settings.pseudonym_key is not None:
        key = settings.pseudonym_key.get_secret_value().encode()
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"LAKEHOUSE_PSEUDONYM_KEY is shorter than {MIN_KEY_BYTES} bytes; use a longer random key")
        return key
    if settings.pseudonym_key_file is not None:
        return _read_key_file(settings.pseudonym_key_file)
    path = default_key_file()
    if "://" not in str(settings.root) and _is_inside(path, settings.root_path):
        raise ConfigError(f"the demo key file {path} would be inside the lakehouse root; "
                          "set LAKEHOUSE_PSEUDONYM_KEY_FILE to a path outside it")
    if path.exists():
        return _read_key_file(path)
    return _generate_demo_key(path)
