"""The one session factory: ``get_spark()`` for the embedded Sail server, a Spark Connect URL or classic Spark."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark.sql import SparkSession

from lakehouse.catalog import Catalog
from lakehouse.config import PRIVATE_UMASK, Settings, get_settings
from lakehouse.errors import ConfigError, EngineError
from lakehouse.logs import get_logger

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = get_logger(__name__)

SESSION_CONF = {
    # All timestamps are UTC in storage and in SQL; clients render local time if they want it.
    "spark.sql.session.timeZone": "UTC",
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Started in front of the server: SIGKILL it when the parent dies, even by kill -9 (Linux), then exec the server.
# A launcher instead of ``preexec_fn``: forking with code to run in the child is unsafe while gRPC threads of an
# open Spark Connect session run (seen: the child aborting in epoll_wait).
_LAUNCHER = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
except OSError:
    pass
os.umask(int(sys.argv[2], 8))  # restrict_new_files() for the engine: the Delta files it writes hold PHI
if os.getppid() != int(sys.argv[1]):
    sys.exit("the client exited before the engine started")
os.execv(sys.argv[3], sys.argv[3:])
"""


def find_sail() -> str:
    candidate = Path(sys.executable).parent / "sail"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("sail")
    if found:
        return found
    raise ConfigError("the `sail` command was not found: install the project (`make install` or `pip install pysail`)")


class SailServer:
    """``sail spark server`` as a subprocess on a free loopback port."""

    def __init__(self, log_dir: Path, executable: str | None = None, debug: bool = False,
                 ip: str = "127.0.0.1", port: int | None = None, workdir: Path | None = None,
                 mode: str = "local") -> None:
        self.log_dir = log_dir
        # the server's working directory: where Sail puts its own spark-warehouse (never used by us)
        self.workdir = workdir or log_dir
        self.executable = executable
        self.debug = debug
        self.mode = mode
        self.ip = ip
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.log_file: Path | None = None

    @property
    def url(self) -> str:
        return f"sc://{self.ip}:{self.port}"

    def start(self, timeout: float = 60.0, args: tuple[str, ...] = ("spark", "server")) -> SailServer:
        executable = self.executable or find_sail()
        resolved = str(Path(executable).absolute()) if Path(executable).exists() else shutil.which(executable)
        if resolved is None:
            raise ConfigError(f"the Sail executable {executable!r} does not exist: install pysail (`make install`)")
        self.port = self.port or _free_port()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_file = self.log_dir / f"sail-{'-'.join(args)}-{os.getpid()}-{self.port}.log"
        env = dict(os.environ)
        env["RUST_LOG"] = "info" if self.debug else env.get("RUST_LOG_SAIL", "warn")
        env["SAIL_MODE"] = self.mode
        env.pop("SPARK_REMOTE", None)
        for name in [n for n in env if n.startswith("LAKEHOUSE_")]:  # the engine needs none; some are secrets
            del env[name]
        with open(self.log_file, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, str(os.getpid()), f"{PRIVATE_UMASK:o}", resolved, *args,
                 "--ip", self.ip, "--port", str(self.port), "-C", str(self.workdir)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                process_group=0,  # keep terminal Ctrl-C for the parent, which then stops the server cleanly
                env=env,
            )
        self._wait_until_listening(timeout)
        log.info("sail server pid %s listening on %s (log %s)", self.process.pid, self.url, self.log_file)
        return self

    def _wait_until_listening(self, timeout: float) -> None:
        assert self.process is not None and self.port is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EngineError(
                    f"the Sail server exited with code {self.process.returncode} before it listened; "
                    f"see {self.log_file}"
                )
            try:
                with socket.create_connection((self.ip, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise EngineError(
            f"the Sail server did not open port {self.port} within {timeout:.0f}s; see {self.log_file}"
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


_server: SailServer | None = None
_spark: SparkSession | None = None
_attached_root: str | None = None


def classic_spark_conf(settings: Settings) -> dict[str, str]:
    """Spark conf for engine=spark (spark-submit on a cluster with delta-spark)."""
    return {
        "spark.master": settings.spark_master,
        "spark.app.name": "clinical-lakehouse",
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.warehouse.dir": str(settings.system_dir / "warehouse"),
        # keep tables readable by delta-rs (see docs/engine.md)
        "spark.databricks.delta.properties.defaults.enableDeletionVectors": "false",
        # local master: the Python UDF workers (pseudonyms, DICOM) run this interpreter, which has the project
        **({"spark.pyspark.python": sys.executable} if settings.spark_master.startswith("local") else {}),
    }


def _classic_session(settings: Settings) -> SparkSession:

    try:  # deferred: delta-spark is needed only by engine=spark (classic Spark on a cluster)
        from delta import configure_spark_with_delta_pip
    except ImportError as exc:
        raise ConfigError("engine=spark needs delta-spark: pip install delta-spark") from exc
    builder = SparkSession.builder
    for key, value in classic_spark_conf(settings).items():
        builder = builder.config(key, value)
    return configure_spark_with_delta_pip(builder).getOrCreate()


def _connect_session(url: str, conf: dict[str, str] | None = None) -> SparkSession:

    os.environ["SPARK_REMOTE"] = url
    try:
        spark = SparkSession.builder.remote(url).getOrCreate()
        for key, value in {**SESSION_CONF, **(conf or {})}.items():
            spark.conf.set(key, value)
        spark.sql("SELECT 1").collect()
    except Exception as exc:  # noqa: BLE001 - any client error means the engine is unreachable
        raise EngineError(f"cannot reach Spark Connect at {url}: {str(exc).splitlines()[0]}") from exc
    return spark


def get_spark(settings: Settings | None = None, attach: bool = True) -> SparkSession:
    """The session for the configured engine; tables under the root are registered on first use."""
    global _server, _spark, _attached_root
    settings = settings or get_settings()
    if _spark is None:
        if settings.engine == "local":
            if _server is None or not _server.alive():
                _server = SailServer(settings.system_dir / "logs", debug=settings.sail_debug,
                                     workdir=settings.system_dir / "engine", mode=settings.sail_mode).start()
            # Sail plans one partition per core but reports Spark's 200 shuffle partitions, which an explicit
            # repartition (lakehouse.staging) would then use: 200 tiny partitions cost a quarter of a Silver build
            _spark = _connect_session(_server.url, {"spark.sql.shuffle.partitions": str(os.cpu_count() or 2)})
        elif settings.engine == "connect":
            assert settings.spark_remote
            _spark = _connect_session(settings.spark_remote)
        else:
            _spark = _classic_session(settings)
    if attach and _attached_root != settings.root_uri:
        Catalog(_spark, settings).register_all()
        _attached_root = settings.root_uri
    return _spark


def stop_spark() -> None:
    """Stop the session and the embedded server (also runs at exit)."""
    global _server, _spark, _attached_root
    server_gone = _server is not None and not _server.alive()
    if _spark is not None and not server_gone:
        try:
            _spark.stop()
        except Exception:  # noqa: BLE001 - the server may already be gone
            pass
    _spark = None
    _attached_root = None
    if _server is not None:
        _server.stop()
    _server = None
    os.environ.pop("SPARK_REMOTE", None)


def server() -> SailServer | None:
    return _server


atexit.register(stop_spark)
