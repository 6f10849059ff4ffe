"""The embedded engine: start, stop, clear errors, no orphan server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import clean_env, new_lakehouse

from lakehouse import engine
from lakehouse.config import load_settings
from lakehouse.engine import SailServer, classic_spark_conf
from lakehouse.errors import ConfigError, EngineError


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_session_answers_and_sets_spark_remote(spark) -> None:  # type: ignore[no-untyped-def]
    assert spark.sql("SELECT 1 + 1 AS two").collect()[0]["two"] == 2
    assert os.environ["SPARK_REMOTE"].startswith("sc://127.0.0.1:")
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"


def test_server_start_stop_and_log(tmp_path: Path) -> None:
    server = SailServer(tmp_path / "logs").start()
    try:
        assert server.alive() and _port_open(server.port)  # type: ignore[arg-type]
        assert server.log_file is not None and server.log_file.parent == tmp_path / "logs"
    finally:
        server.stop()
    assert not server.alive()
    time.sleep(0.2)
    assert not _port_open(server.port)  # type: ignore[arg-type]


@pytest.mark.fast
def test_missing_sail_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="install pysail"):
        SailServer(tmp_path, executable=str(tmp_path / "no-such-sail")).start()


@pytest.mark.fast
def test_port_that_never_opens_is_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "fake-sail"
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    with pytest.raises(EngineError, match="did not open port"):
        SailServer(tmp_path, executable=str(fake)).start(timeout=1.5)


@pytest.mark.fast
def test_server_that_exits_is_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "crashing-sail"
    fake.write_text("#!/bin/sh\necho boom >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(EngineError, match="exited with code 3"):
        SailServer(tmp_path, executable=str(fake)).start(timeout=10)


def test_kill_9_of_the_client_stops_the_server(tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    script.write_text(
        "import sys, time\n"
        "from lakehouse.config import load_settings\n"
        "from lakehouse import engine\n"
        f"engine.get_spark(load_settings(environ={{}}, root={str(tmp_path / 'lh')!r}))\n"
        "print(engine.server().process.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    client = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=clean_env())
    try:
        line = client.stdout.readline()  # type: ignore[union-attr]
        server_pid = int(line.strip())
        os.kill(server_pid, 0)
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(server_pid, 0)
            except ProcessLookupError:
                break
            try:  # reap if it became our zombie (it is not our child, so this normally raises)
                os.waitpid(server_pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.2)
        else:
            os.kill(server_pid, signal.SIGKILL)
            pytest.fail("the Sail server outlived its killed client")
    finally:
        if client.poll() is None:
            client.kill()


@pytest.mark.fast
def test_a_fast_test_cannot_start_the_engine(tmp_path: Path) -> None:
    """The fast lane's guard (tests/conftest.py): starting the engine in a test marked fast fails that test."""
    with pytest.raises(pytest.fail.Exception, match="marked fast but started the engine"):
        engine.get_spark(new_lakehouse(tmp_path / "lh", attach_engine=False))


@pytest.mark.fast
def test_classic_spark_conf_configures_delta(tmp_path: Path) -> None:
    conf = classic_spark_conf(load_settings(environ={}, root=tmp_path, engine="spark", spark_master="yarn"))
    assert conf["spark.master"] == "yarn"
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert conf["spark.sql.catalog.spark_catalog"] == "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    assert conf["spark.databricks.delta.properties.defaults.enableDeletionVectors"] == "false"
    assert conf["spark.sql.session.timeZone"] == "UTC"


@pytest.mark.classic_spark
def test_delta_spark_builder_adds_the_delta_package() -> None:
    """configure_spark_with_delta_pip only adds the Maven coordinate; nothing is downloaded here."""
    from delta import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    builder = configure_spark_with_delta_pip(SparkSession.builder.master("local[1]"))
    packages = builder._options.get("spark.jars.packages", "")
    assert "io.delta:delta-spark" in packages
