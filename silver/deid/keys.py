"""The pseudonym key: from settings, from a key file, or (demo only) generated once outside the lakehouse root.

The key never appears in a log, an exception message, a DataFrame column name or a query plan: the engine gets an
:class:`EngineKey` (where to read the key, and its keyed id), and reads the key itself when it computes pseudonyms.
"""

from __future__ import annotations

import atexit
import os
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lakehouse.config import Settings
from lakehouse.errors import ConfigError
from lakehouse.logs import get_logger
from lakehouse.uptodate import key_id

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
        _write_private(path, key, os.O_EXCL)
    except FileExistsError:  # another process generated it first: use theirs
        return _read_key_file(path)
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


@dataclass(frozen=True)
class EngineKey:
    """Where the engine reads the pseudonym key (a file only its owner can read) and the keyed id the key must
    have. It holds no key material, so it may travel in query plans; :meth:`load` runs where pseudonyms are
    computed (the engine's Python workers) and refuses a different key."""

    path: str
    key_id: str

    def load(self) -> bytes:
        return _load_engine_key(self.path, self.key_id)


@lru_cache(maxsize=8)
def _load_engine_key(path: str, expected_id: str) -> bytes:
    key = _read_key_file(Path(path))
    if key_id(key) != expected_id:
        raise ConfigError(f"the pseudonym key at {path} is not the key this run uses (key id {expected_id}); "
                          "give every engine node the same key file")
    return key


def engine_key(settings: Settings) -> EngineKey:
    """The :class:`EngineKey` of the configured key. A key given as a value (``LAKEHOUSE_PSEUDONYM_KEY``) is put
    into a private file (0600, in a 0700 folder outside the lakehouse, removed at exit) for the engine to read.
    On a cluster, set ``pseudonym_key_file`` to a path every engine node can read."""
    key = load_key(settings)
    if settings.pseudonym_key is None:
        path = settings.pseudonym_key_file or default_key_file()
        return EngineKey(str(Path(path).expanduser().resolve()), key_id(key))
    return EngineKey(str(_private_key_file(key)), key_id(key))


@lru_cache(maxsize=8)
def _private_key_file(key: bytes) -> Path:
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or Path.home() / ".cache") / "clinical-lakehouse"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(base, 0o700)
    path = base / f"engine-key-{key_id(key)}-{os.getpid()}"
    write_key_file(path, key)
    atexit.register(path.unlink, missing_ok=True)
    return path


def _write_private(path: Path, key: bytes, flags: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")


def write_key_file(path: Path, key: bytes) -> EngineKey:
    """Write ``key`` to ``path`` (mode 0600) and return its :class:`EngineKey` (tests, key rotation tooling)."""
    _write_private(path, key, os.O_TRUNC)
    return EngineKey(str(path.resolve()), key_id(key))
