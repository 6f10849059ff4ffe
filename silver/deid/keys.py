"""The pseudonym key: from settings, from a key file, or (demo only) generated once outside the lakehouse root.

The key never appears in a log, an exception message, a DataFrame column name or a query plan: the engine gets an
:class:`EngineKey` (where to read the key, and its keyed id), and reads the key itself when it computes pseudonyms.

Key versions. A key file holds either one key (its whole content, stripped: version ``v1``) or several versions,
one a line, ``<label> <key> [active]``::

    # clinical-lakehouse pseudonym keys
    v1 3f5c...e1
    v2 9a07...4b active

Labels are ``v`` and a number; the line marked ``active`` (else the last line) is the key pseudonyms are computed
with; older versions stay so that a rotation (``lakehouse rekey``, lakehouse_app/rekey.py) can write the
old-to-new crosswalk and the engine can still check an older key id. A key is the UTF-8 text of its token (so
``v1 <content of a plain key file>`` keeps that file's pseudonyms). A key given as a value
(``LAKEHOUSE_PSEUDONYM_KEY``) is version ``v1`` and cannot be rotated: rotate with a key file.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from lakehouse.config import Settings
from lakehouse.errors import ConfigError
from lakehouse.logs import get_logger
from lakehouse.uptodate import key_id

log = get_logger(__name__)

KEY_BYTES = 32
MIN_KEY_BYTES = 16
FIRST_VERSION = "v1"
ACTIVE_MARK = "active"
VERSION_LINE_RE = re.compile(rb"(v[0-9]{1,6})[ \t]+(\S+)(?:[ \t]+(" + ACTIVE_MARK.encode() + rb"))?")
FILE_HEADER = b"# clinical-lakehouse pseudonym keys: <version> <key> [active]; keep this file mode 0600\n"


@dataclass(frozen=True)
class KeyVersion:
    """One version of the key: its label (``v2``), the key (never in a repr) and its keyed id."""

    label: str
    key: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        return key_id(self.key)


@dataclass(frozen=True)
class KeyRing:
    """Every version a key file holds and the active one."""

    versions: tuple[KeyVersion, ...]
    active_label: str

    @property
    def active(self) -> KeyVersion:
        return next(v for v in self.versions if v.label == self.active_label)

    def by_id(self, wanted: str) -> KeyVersion | None:
        return next((v for v in self.versions if v.key_id == wanted), None)

    def next_label(self) -> str:
        return f"v{max(int(v.label[1:]) for v in self.versions) + 1}"


def parse_keys(data: bytes, where: str) -> KeyRing:
    """The :class:`KeyRing` of a key file's content (see the module docstring for the format)."""
    lines = [line.strip() for line in data.splitlines()]
    lines = [line for line in lines if line and not line.startswith(b"#")]
    matches = [VERSION_LINE_RE.fullmatch(line) for line in lines]
    if not lines or not all(matches):  # one plain key: the whole content
        key = data.strip()
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"the pseudonym key in {where} is shorter than {MIN_KEY_BYTES} bytes; "
                              "use a longer random key")
        return KeyRing((KeyVersion(FIRST_VERSION, key),), FIRST_VERSION)
    versions: list[KeyVersion] = []
    marked: list[str] = []
    for m in matches:
        assert m is not None
        label = m.group(1).decode()
        if any(v.label == label for v in versions):
            raise ConfigError(f"the key file {where} holds version {label} twice")
        if len(m.group(2)) < MIN_KEY_BYTES:
            raise ConfigError(f"key version {label} in {where} is shorter than {MIN_KEY_BYTES} bytes")
        versions.append(KeyVersion(label, m.group(2)))
        if m.group(3):
            marked.append(label)
    if len(marked) > 1:
        raise ConfigError(f"the key file {where} marks {len(marked)} versions active ({', '.join(marked)}); "
                          "mark one")
    if len({v.key_id for v in versions}) < len(versions):
        raise ConfigError(f"the key file {where} holds the same key under two versions")
    return KeyRing(tuple(versions), marked[0] if marked else versions[-1].label)


def format_keys(ring: KeyRing) -> bytes:
    """The key file content of ``ring`` (every version, the active one marked)."""
    lines = [v.label.encode() + b" " + v.key + (b" " + ACTIVE_MARK.encode() if v.label == ring.active_label else b"")
             for v in ring.versions]
    return FILE_HEADER + b"\n".join(lines) + b"\n"


def default_key_file() -> Path:
    """``$XDG_CONFIG_HOME/clinical-lakehouse/pseudonym.key`` (``~/.config`` when XDG_CONFIG_HOME is unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "clinical-lakehouse" / "pseudonym.key"


def _read_keyring(path: Path) -> KeyRing:
    path = path.expanduser()
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise ConfigError(f"the pseudonym key file {path} is readable by group or others "
                              f"(mode {mode & 0o777:04o}); run `chmod 600 {path}`")
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the pseudonym key file {path} ({exc.strerror}); "
                          "fix LAKEHOUSE_PSEUDONYM_KEY_FILE or remove it to use the demo key") from None
    return parse_keys(data, str(path))


def _read_key_file(path: Path) -> bytes:
    return _read_keyring(path).active.key


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


def key_file(settings: Settings) -> Path | None:
    """The file that holds the key (the configured one or the demo key file); None for a key given as a value."""
    if settings.pseudonym_key is not None:
        return None
    if settings.pseudonym_key_file is not None:
        return Path(settings.pseudonym_key_file).expanduser()
    path = default_key_file()
    if settings.remote_root is None and _is_inside(path, settings.root_path):
        raise ConfigError(f"the demo key file {path} would be inside the lakehouse root; "
                          "set LAKEHOUSE_PSEUDONYM_KEY_FILE to a path outside it")
    return path


def load_keyring(settings: Settings) -> KeyRing:
    """Every key version: ``pseudonym_key`` (one version, ``v1``), else the key file (the demo one created once)."""
    if settings.pseudonym_key is not None:
        key = settings.pseudonym_key.get_secret_value().encode()
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"LAKEHOUSE_PSEUDONYM_KEY is shorter than {MIN_KEY_BYTES} bytes; use a longer random key")
        return KeyRing((KeyVersion(FIRST_VERSION, key),), FIRST_VERSION)
    path = key_file(settings)
    assert path is not None
    if settings.pseudonym_key_file is None and not path.exists():
        _generate_demo_key(path)
    return _read_keyring(path)


def load_key(settings: Settings) -> bytes:
    """The active HMAC key: ``pseudonym_key``, else ``pseudonym_key_file``, else the demo key file (created once)."""
    return load_keyring(settings).active.key


def key_version(settings: Settings) -> dict[str, str]:
    """``{"version": "v2", "key_id": ...}`` of the active key: what run records and table metadata name."""
    active = load_keyring(settings).active
    return {"version": active.label, "key_id": active.key_id}


@dataclass(frozen=True)
class EngineKey:
    """Where the engine reads the pseudonym key (a file only its owner can read) and the keyed id the key must
    have. It holds no key material, so it may travel in query plans; :meth:`load` runs where pseudonyms are
    computed (the engine's Python workers) and refuses a key file without that version.

    During a rotation (:func:`capturing_crosswalk`) it also names the previous version's id and a restricted
    folder: the pseudonym functions then write (namespace, old pseudonym, new pseudonym) rows there."""

    path: str
    key_id: str
    previous_id: str | None = None
    crosswalk_dir: str | None = None

    def load(self) -> bytes:
        return _load_engine_key(self.path, self.key_id)

    def load_previous(self) -> bytes:
        if self.previous_id is None:
            raise ConfigError("no previous key version: not in a key rotation")
        return _load_engine_key(self.path, self.previous_id)


@lru_cache(maxsize=8)
def _load_engine_key(path: str, expected_id: str) -> bytes:
    version = _read_keyring(Path(path)).by_id(expected_id)
    if version is None:
        raise ConfigError(f"the pseudonym key file {path} holds no key with id {expected_id} (the key this run "
                          "uses); give every engine node the same key file")
    return version.key


_CROSSWALK: dict[str, str] = {}  # set by capturing_crosswalk: previous_id, crosswalk_dir


@contextmanager
def capturing_crosswalk(previous_id: str, folder: Path) -> Iterator[None]:
    """While open, :func:`engine_key` returns keys that also record the old-to-new pseudonym crosswalk into
    ``folder`` (see :class:`EngineKey`); for ``lakehouse rekey`` only."""
    _CROSSWALK.update(previous_id=previous_id, crosswalk_dir=str(folder.resolve()))
    try:
        yield
    finally:
        _CROSSWALK.clear()


def engine_key(settings: Settings) -> EngineKey:
    """The :class:`EngineKey` of the active key. A key given as a value (``LAKEHOUSE_PSEUDONYM_KEY``) is put
    into a private file (0600, in a 0700 folder outside the lakehouse, removed at exit) for the engine to read.
    On a cluster, set ``pseudonym_key_file`` to a path every engine node can read."""
    key = load_key(settings)
    path = key_file(settings)
    found = EngineKey(str((path or _private_key_file(key)).resolve()), key_id(key))
    return replace(found, **_CROSSWALK) if _CROSSWALK else found


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


def write_keyring(path: Path, ring: KeyRing) -> None:
    """Replace the key file at ``path`` by ``ring`` atomically (a 0600 temporary file beside it, then rename): a
    reader sees the old or the new file, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(format_keys(ring))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def add_key_version(path: Path, key: bytes | None = None) -> tuple[KeyVersion, KeyVersion]:
    """Append a new version (a fresh random key unless ``key``) to the key file at ``path`` and make it active;
    returns (previous active version, new version). A plain one-key file becomes ``v1`` and ``v2``."""
    ring = _read_keyring(path)
    new = KeyVersion(ring.next_label(), key if key is not None else secrets.token_hex(KEY_BYTES).encode())
    if len(new.key) < MIN_KEY_BYTES or VERSION_LINE_RE.fullmatch(b"v1 " + new.key) is None:
        raise ConfigError(f"a new key version must be one token of at least {MIN_KEY_BYTES} bytes")
    if ring.by_id(new.key_id) is not None:
        raise ConfigError("the new key is already a version of this key file")
    write_keyring(path, KeyRing((*ring.versions, new), new.label))
    return ring.active, new
