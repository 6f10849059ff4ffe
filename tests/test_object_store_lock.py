"""The writer lock on an object-store root: a lease object created with a conditional put, so writers on different
machines (here: different work folders, which share no file lock) exclude each other."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from helpers import new_lakehouse
from moto.server import ThreadedMotoServer

from lakehouse.errors import LakehouseError
from lakehouse.locks import writer_lock

pytestmark = pytest.mark.fast


@pytest.fixture
def s3_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="lake")
    import fsspec

    fsspec.filesystem("s3").clear_instance_cache()  # a cached client would keep an earlier test's endpoint
    yield "s3://lake/lh"
    server.stop()


def _machine(root: str, work: Path):  # type: ignore[no-untyped-def]
    """Settings of one writer machine: the same root, its own local work folder (so no shared file lock)."""
    return new_lakehouse(root, attach_engine=False, work_dir=work)  # type: ignore[arg-type]


def test_a_second_machine_waits_for_the_lease_and_gets_it_after_release(s3_root: str, tmp_path: Path) -> None:
    first, second = _machine(s3_root, tmp_path / "a"), _machine(s3_root, tmp_path / "b")
    lease = first.layer_path("_system") / "writer.lock"
    with writer_lock(first, timeout=5):
        assert json.loads(lease.read_bytes())["owner"]
        with pytest.raises(LakehouseError, match="holds? the writer lease|held the writer lease"):
            with writer_lock(second, timeout=1.5):
                pass
        got = threading.Event()

        def wait_for_it() -> None:
            with writer_lock(second, timeout=30):
                got.set()

        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        time.sleep(1.5)
        assert not got.is_set(), "the second machine wrote while the first held the lease"
    waiter.join(timeout=30)
    assert got.is_set()
    assert not lease.exists(), "the lease is deleted by its holder"


def test_an_expired_lease_of_a_crashed_writer_is_taken_over(s3_root: str, tmp_path: Path) -> None:
    settings = _machine(s3_root, tmp_path / "a")
    lease = settings.layer_path("_system") / "writer.lock"
    lease.write_bytes(json.dumps({"owner": "crashed-host:1", "token": "x", "expires_at": time.time() - 1}).encode())
    with writer_lock(settings, timeout=5):
        assert json.loads(lease.read_bytes())["token"] != "x"
    assert not lease.exists()
