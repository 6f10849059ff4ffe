"""BI access: Gold, and nothing else, over Arrow Flight SQL (``lakehouse serve``).

The server is this process: a Flight SQL front end on ``pyarrow.flight`` (gold/flight_sql.py) over a DataFusion
session that holds only the Gold Delta tables, registered read-only as ``gold.<table>`` from their files (delta-rs
Arrow datasets). Every statement is planned with DDL, DML and session statements disabled, and DataFusion reads no
path it was not given (no ``SELECT FROM '<path>'``, no file table functions), so a client can neither reach Bronze,
Silver, quarantine or ``_system`` nor write anything. Tables are re-registered when Gold gets a new Delta commit.
"""

from __future__ import annotations

import ipaddress
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.flight as flight
from deltalake import DeltaTable

from gold.flight_sql import FlightSqlService
from lakehouse.catalog import is_delta_table
from lakehouse.config import Settings
from lakehouse.errors import ConfigError
from lakehouse.logs import get_logger
from lakehouse.runlog import record_read

if TYPE_CHECKING:
    from datafusion import DataFrame

log = get_logger(__name__)

CATALOG, SCHEMA = "datafusion", "gold"
DEFAULT_PORT = 32010
MIN_TOKEN_CHARS = 16
QUERY_MEMORY_BYTES = 2 * 1024**3  # one pool for all queries: a runaway join fails instead of exhausting the host
SETTLED_NS = 2_000_000_000
TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]*")
REFUSED = ("DDL not supported", "DML not supported", "Statement not supported")


class GoldEngine:
    """A DataFusion session whose only tables are ``gold.<table>`` for each Delta table in ``gold_dir``."""

    def __init__(self, gold_dir: Path, memory_bytes: int = QUERY_MEMORY_BYTES) -> None:
        # imported here: DataFusion takes a third of a second to import, and only a Gold server needs it
        from datafusion import RuntimeEnvBuilder, SessionConfig, SessionContext, SQLOptions

        self.gold_dir = gold_dir
        self._read_only = SQLOptions().with_allow_ddl(False).with_allow_dml(False).with_allow_statements(False)
        config = SessionConfig().with_default_catalog_and_schema(CATALOG, SCHEMA).with_information_schema(True)
        runtime = RuntimeEnvBuilder().with_greedy_memory_pool(memory_bytes).with_disk_manager_disabled()
        self.ctx = SessionContext(config, runtime)
        self._schema = self.ctx.catalog(CATALOG).schema(SCHEMA)
        self._served: dict[str, tuple[int, int, pa.Schema]] = {}  # table -> (_delta_log mtime, version, schema)
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> dict[str, int]:
        """Serve new Gold tables, re-read those with a new commit, drop removed ones; ``gold.<table>`` -> version.

        A new commit changes the ``_delta_log`` folder's mtime, so an unchanged Gold costs one stat per table."""
        with self._lock:
            found: dict[str, int] = {}
            if self.gold_dir.is_dir():
                for path in self.gold_dir.iterdir():
                    if TABLE_NAME.fullmatch(path.name) and not path.is_symlink() and is_delta_table(path):
                        try:
                            mtime = (path / "_delta_log").stat().st_mtime_ns
                        except OSError:
                            continue
                        # a second commit within the file system's mtime granularity would not show: re-read
                        # a log changed in the last seconds on every call until it settles
                        found[path.name] = mtime if time.time_ns() - mtime > SETTLED_NS else -1
            for name in set(self._served) - set(found):
                self._schema.deregister_table(name)
                del self._served[name]
            for name, stamp in sorted(found.items()):
                if name in self._served and self._served[name][0] == stamp != -1:
                    continue
                try:
                    table = DeltaTable(str(self.gold_dir / name))
                    dataset = table.to_pyarrow_dataset()
                except Exception as exc:  # noqa: BLE001 - mid-rewrite or unsupported: keep serving the last good one
                    log.warning("gold.%s not (re)loaded: %s", name, str(exc).splitlines()[0][:200])
                    continue
                if name in self._served:
                    self._schema.deregister_table(name)
                self._schema.register_table(name, dataset)
                self._served[name] = (stamp, table.version(), dataset.schema)
            return {f"{SCHEMA}.{name}": served[1] for name, served in sorted(self._served.items())}

    def _plan(self, sql: str) -> DataFrame:
        self.refresh()
        with self._lock:
            try:
                return self.ctx.sql_with_options(sql, self._read_only)
            except Exception as exc:
                message = str(exc).strip()
                if any(marker in message for marker in REFUSED):
                    raise flight.FlightUnauthorizedError(f"read-only Gold server: {message}") from None
                raise flight.FlightServerError(message) from None  # not ArrowInvalid: that sends a traceback

    def schema(self, sql: str) -> pa.Schema:
        return self._plan(sql).schema()

    def execute(self, sql: str) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_stream(self._plan(sql))

    def tables(self) -> list[tuple[str, str, str, pa.Schema]]:
        self.refresh()
        with self._lock:
            return [(CATALOG, SCHEMA, name, served[2]) for name, served in sorted(self._served.items())]


def serve_token(settings: Settings) -> str | None:
    """The bearer token from ``serve_token`` or ``serve_token_file`` (owner-only), or None when none is set."""
    if settings.serve_token is not None:
        token = settings.serve_token.get_secret_value().strip()
    elif settings.serve_token_file is not None:
        path = Path(settings.serve_token_file).expanduser()
        try:
            mode = path.stat().st_mode
            if mode & 0o077:
                raise ConfigError(f"the serve token file {path} is readable by group or others "
                                  f"(mode {mode & 0o777:04o}); run `chmod 600 {path}`")
            token = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the serve token file {path} ({exc.strerror})") from None
    else:
        return None
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"the serve token is shorter than {MIN_TOKEN_CHARS} characters; make one with "
                          "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    return token


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class FlightSqlServer:
    """The Gold Flight SQL server: checked on construction, listening from ``start()`` until ``stop()``.

    Loopback needs nothing; any other ``host`` needs TLS (``tls_cert``/``tls_key``, PEM) and a token."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0,
                 tls_cert: Path | None = None, tls_key: Path | None = None) -> None:
        if (tls_cert is None) != (tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together")
        self.settings = settings
        self.host, self.requested_port = host, port
        self.tls_files = (tls_cert, tls_key) if tls_cert and tls_key else None
        self.token = serve_token(settings)
        if not is_loopback(host) and (self.tls_files is None or self.token is None):
            raise ConfigError(f"--host {host} exposes Gold beyond this machine: it needs --tls-cert/--tls-key and a "
                              "token (serve_token_file or LAKEHOUSE_SERVE_TOKEN); or keep the default 127.0.0.1")
        self.engine: GoldEngine | None = None
        self.service: FlightSqlService | None = None

    @property
    def port(self) -> int:
        return self.service.port if self.service else self.requested_port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"{'grpc+tls' if self.tls_files else 'grpc'}://{host}:{self.port}"

    @property
    def tables(self) -> list[str]:
        return list(self.engine.refresh()) if self.engine else []

    def start(self) -> FlightSqlServer:
        tls = None
        if self.tls_files:
            try:
                tls = (self.tls_files[0].read_bytes(), self.tls_files[1].read_bytes())
            except OSError as exc:
                raise ConfigError(f"cannot read the TLS certificate or key ({exc})") from None
        self.engine = GoldEngine(self.settings.layer_path("gold"))
        host = f"[{self.host}]" if ":" in self.host else self.host
        location = f"{'grpc+tls' if tls else 'grpc'}://{host}:{self.requested_port}"
        try:
            self.service = FlightSqlService(self.engine, location, token=self.token, tls=tls, catalog=CATALOG)
        except (pa.ArrowException, OSError) as exc:  # port taken, bad certificate or key
            raise ConfigError(f"cannot serve on {location} (port in use, or an unreadable TLS certificate or key): "
                              f"{str(exc).splitlines()[0]}") from None
        log.info("flight sql server %s serving %d gold tables", self.url, len(self.tables))
        return self

    def stop(self) -> None:
        if self.service is not None:
            self.service.shutdown()
            self.service = None

    def __enter__(self) -> FlightSqlServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(server: FlightSqlServer, announce: Callable[[str], None] = print) -> None:
    """Run the Gold Flight SQL server until SIGINT/SIGTERM, then record the session's totals in the run log."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        tables = server.tables
        announce(f"Arrow Flight SQL on {server.url} serving {len(tables)} tables: "
                 f"{', '.join(tables) or '(none yet: run `lakehouse gold`)'}")
        auth = "bearer token required" if server.token else "no token (loopback only)"
        announce(f"Read-only, Gold only; {'TLS' if server.tls_files else 'no TLS'}, {auth}; Ctrl-C to stop.")
        while not stop.wait(1.0):
            pass
        announce("stopping")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        service = server.service
        server.stop()
        if service is not None:  # the session's totals (the CLI recorded its start)
            counters = service.counters
            record_read(server.settings, "serve", [], queries=counters.queries, refused=counters.refused,
                        clients=len(counters.peers),
                        unauthenticated_calls=service.auth.refused if service.auth else 0)
