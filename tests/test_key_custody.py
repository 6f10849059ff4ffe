"""The pseudonym key stays with its holder: not in the engine's environment, not as a plain hash in run records."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from lakehouse.engine import SailServer
from lakehouse.uptodate import key_id


def test_engine_subprocess_does_not_inherit_lakehouse_secrets(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_PSEUDONYM_KEY", "a-secret-that-must-stay-in-the-client")
    server = SailServer(tmp_path / "logs", workdir=tmp_path / "engine").start()
    try:
        assert server.process is not None
        environ = Path(f"/proc/{server.process.pid}/environ").read_bytes().split(b"\0")
        assert not [v for v in environ if v.startswith(b"LAKEHOUSE_")]
        assert os.environ["LAKEHOUSE_PSEUDONYM_KEY"]  # the client keeps it
    finally:
        server.stop()


@pytest.mark.fast
def test_key_id_is_a_keyed_digest() -> None:
    key = b"0123456789abcdef0123456789abcdef"
    assert key_id(key) == key_id(key) and len(key_id(key)) == 16
    assert key_id(key) != key_id(key[::-1])
    # not a plain hash of the key, with or without the old prefix
    assert key_id(key) not in {hashlib.sha256(key).hexdigest()[:16],
                               hashlib.sha256(b"lakehouse-key-id\0" + key).hexdigest()[:16]}
