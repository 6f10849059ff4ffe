"""BI access: `lakehouse serve` exposes Gold over Arrow Flight SQL; a real ADBC client reads a mart's rows."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake
from helpers import clean_env

from gold.serving import FlightSqlServer, connect
from lakehouse.config import Settings

MART = pa.table({
    "discharge_month": [date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1)],
    "discharges": pa.array([40, 35, 52], pa.int64()),
    "readmissions": pa.array([6, 3, 9], pa.int64()),
    "readmission_rate": [0.15, 3 / 35, 9 / 52],
})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_lakehouse_serve_answers_flight_sql_with_the_mart(tmp_path: Path) -> None:
    root = tmp_path / "lh"
    write_deltalake(str(root / "gold" / "mart_readmission_30d"), MART)
    write_deltalake(str(root / "silver" / "patient"), pa.table({"patient_key": ["p1"]}))  # not served
    port = _free_port()
    cmd = [sys.executable, "-m", "lakehouse_app.cli", "--root", str(root), "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env(),
                            cwd=tmp_path)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        url = re.search(r"grpc://[\d.]+:\d+", banner)
        assert url and url.group(0) == f"grpc://127.0.0.1:{port}", banner
        assert "gold.mart_readmission_30d" in banner and "silver" not in banner
        with connect(url.group(0)) as conn:
            cur = conn.cursor()
            cur.execute("SELECT discharge_month, discharges, readmissions, readmission_rate "
                        "FROM gold.mart_readmission_30d ORDER BY discharge_month")
            got = cur.fetch_arrow_table()
            cur.execute("SHOW TABLES IN gold")
            tables = [row[1] for row in cur.fetchall()]
            cur.close()
        assert got.to_pylist() == MART.to_pylist()
        assert tables == ["mart_readmission_30d"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_refresh_registers_tables_built_after_start(make_lakehouse: Callable[..., Settings]) -> None:
    settings = make_lakehouse(attach_engine=False)
    write_deltalake(str(settings.root_path / "gold" / "dim_patient"), pa.table({"patient_key": ["a", "b"]}))
    with FlightSqlServer(settings) as server:
        assert server.tables == ["gold.dim_patient"]
        write_deltalake(str(settings.root_path / "gold" / "fct_encounter"), pa.table({"encounter_key": ["e1"]}))
        assert server.refresh() == ["gold.dim_patient", "gold.fct_encounter"]
        with connect(server.url) as conn:
            cur = conn.cursor()
            cur.execute("SELECT count(*) FROM gold.fct_encounter")
            assert cur.fetchall() == [(1,)]
            cur.close()
        process = server.sail.process
    assert process is not None and process.poll() is not None, "the server must stop with the context"

