"""BI access: Gold over Arrow Flight SQL (``sail flight server`` as a subprocess, Gold tables registered in it).

Sail's Flight SQL server keeps its catalog in memory, so every Gold Delta table found under ``<root>/gold`` is
registered through Flight SQL itself (ADBC driver) right after the server starts. Sail does not implement the
Flight SQL metadata calls (GetObjects/GetTables): BI tools see the tables through SQL (``SHOW TABLES IN gold``),
not through their schema browser.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lakehouse.catalog import is_delta_table
from lakehouse.config import Settings
from lakehouse.engine import SailServer
from lakehouse.errors import ConfigError, EngineError
from lakehouse.logs import get_logger

log = get_logger(__name__)

SERVED_LAYERS = ("gold",)
DEFAULT_PORT = 32010


def served_tables(settings: Settings, layers: tuple[str, ...] = SERVED_LAYERS) -> dict[str, Path]:
    """``layer.table`` -> Delta location of every table to expose."""
    out: dict[str, Path] = {}
    for layer in layers:
        layer_dir = settings.layer_path(layer)
        if layer_dir.is_dir():
            out.update({f"{layer}.{p.name}": p for p in sorted(layer_dir.iterdir()) if is_delta_table(p)})
    return out


def connect(url: str) -> Any:
    """A DB-API connection to a Flight SQL server (``grpc://host:port``) through the ADBC driver."""
    try:
        # deferred: the ADBC driver takes ~1.5 s to import (measured); only `serve` uses it
        import adbc_driver_flightsql.dbapi as flightsql
    except ImportError as exc:
        raise ConfigError("Flight SQL needs the ADBC driver: pip install adbc-driver-flightsql") from exc

    with warnings.catch_warnings():  # "Cannot disable autocommit": Flight SQL has no transactions
        warnings.simplefilter("ignore")
        return flightsql.connect(url)


def _quote(name: str) -> str:
    return ".".join(f"`{part}`" for part in name.split("."))


def register_tables(url: str, tables: dict[str, Path]) -> list[str]:
    """CREATE SCHEMA / CREATE TABLE ... USING delta LOCATION for each table, through Flight SQL."""
    with connect(url) as conn:
        cur = conn.cursor()
        for schema in sorted({name.split(".")[0] for name in tables}):
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS `{schema}`")
        for name, location in tables.items():
            escaped = str(location).replace("'", "\\'")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {_quote(name)} USING delta LOCATION '{escaped}'")
        cur.close()
    return sorted(tables)


class FlightSqlServer:
    """``sail flight server`` with the lakehouse's Gold tables registered."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int | None = None,
                 layers: tuple[str, ...] = SERVED_LAYERS) -> None:
        self.settings = settings
        self.layers = layers
        self.sail = SailServer(settings.system_dir / "logs", debug=settings.sail_debug, ip=host, port=port,
                               workdir=settings.system_dir / "engine")
        self.tables: list[str] = []

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.sail.ip in ("0.0.0.0", "::") else self.sail.ip
        return f"grpc://{host}:{self.sail.port}"

    def start(self) -> FlightSqlServer:
        self.sail.start(args=("flight", "server"))
        try:
            self.tables = register_tables(self.url, served_tables(self.settings, self.layers))
        except Exception:
            self.sail.stop()
            raise
        log.info("flight sql server %s serving %d tables", self.url, len(self.tables))
        return self

    def refresh(self) -> list[str]:
        """Register tables created since start (e.g. after a new `lakehouse gold`)."""
        self.tables = register_tables(self.url, served_tables(self.settings, self.layers))
        return self.tables

    def stop(self) -> None:
        self.sail.stop()

    def __enter__(self) -> FlightSqlServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(settings: Settings, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          announce: Callable[[str], None] = print, refresh_seconds: float = 60.0) -> None:
    """Run the Flight SQL server until Ctrl-C, re-registering new Gold tables every ``refresh_seconds``."""
    server = FlightSqlServer(settings, host=host, port=port).start()
    try:
        announce(f"Arrow Flight SQL on {server.url} serving {len(server.tables)} tables: "
                 f"{', '.join(server.tables) or '(none yet: run `lakehouse gold`)'}")
        announce("Connect with ADBC/JDBC Flight SQL (no TLS, no auth); Ctrl-C to stop.")
        last = time.monotonic()
        while server.sail.alive():
            time.sleep(0.5)
            if time.monotonic() - last >= refresh_seconds:
                server.refresh()
                last = time.monotonic()
        raise EngineError(f"the Flight SQL server exited; see {server.sail.log_file}")
    except KeyboardInterrupt:
        announce("stopping")
    finally:
        server.stop()
