"""BI access: `lakehouse serve` exposes Gold, and nothing else, read-only, to real ADBC Flight SQL clients.

An attacker's view: a client without the token, a client reading Bronze/Silver/quarantine/_system by name or by
path, registering a path as a table, writing through SQL or DoPut. Gold is tiny Delta tables written with
delta-rs (no engine); the CLI test runs the real `lakehouse serve` process.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from certificates import self_signed
from deltalake import DeltaTable, write_deltalake
from helpers import clean_env
from pydantic import SecretStr

from gold.flight_sql import encode, pack_any
from gold.serving import FlightSqlServer
from lakehouse.config import Settings
from lakehouse.errors import ConfigError
from lakehouse.runlog import read_runs, record_read

TOKEN = "test-token-0123456789abcdef"
MART = pa.table({
    "discharge_month": [date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1)],
    "discharges": pa.array([40, 35, 52], pa.int64()),
    "readmissions": pa.array([6, 3, 9], pa.int64()),
    "readmission_rate": [0.15, 3 / 35, 9 / 52],
})
PHI_LAYERS = {  # table -> a value that must never reach a client
    "bronze.hl7v2_messages": "MRN-778899",
    "silver.patient": "PK-SILVER-1",
    "quarantine.hl7v2_messages": "MRN-QUARANTINED",
    "_system.runs": "RUN-SECRET",
}


def _lakehouse(root: Path) -> Path:
    write_deltalake(str(root / "gold" / "mart_readmission_30d"), MART)
    write_deltalake(str(root / "gold" / "dim_patient"), pa.table({"patient_key": ["p1", "p2"]}))
    for name, value in PHI_LAYERS.items():
        layer, table = name.split(".")
        if layer != "_system":
            write_deltalake(str(root / layer / table), pa.table({"value": [value]}))
    record_read(Settings(root=root), "show", ["bronze.hl7v2_messages"], note=PHI_LAYERS["_system.runs"])  # run log
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _lakehouse(tmp_path_factory.mktemp("serve") / "lh")


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[FlightSqlServer]:
    with FlightSqlServer(Settings(root=root, serve_token=SecretStr(TOKEN))) as running:
        yield running


def connect(url: str, token: str | None = TOKEN, **options: str) -> flightsql.Connection:
    db_kwargs = dict(options)
    if token is not None:
        db_kwargs["adbc.flight.sql.authorization_header"] = f"Bearer {token}"
    with warnings.catch_warnings():  # "Cannot disable autocommit": Flight SQL has no transactions
        warnings.simplefilter("ignore")
        return flightsql.connect(url, db_kwargs=db_kwargs)


def query(url: str, sql: str, token: str | None = TOKEN, **options: str) -> pa.Table:
    with connect(url, token, **options) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def versions(root: Path) -> dict[str, tuple[int, list[str]]]:
    """Every Delta table under the root: its version and files (a write of any kind changes one of them)."""
    return {str(log.parent.relative_to(root)): (DeltaTable(str(log.parent)).version(),
                                                sorted(str(p.relative_to(root)) for p in log.parent.rglob("*")))
            for log in root.rglob("_delta_log")}


@pytest.mark.fast
def test_a_client_with_the_token_reads_gold(server: FlightSqlServer) -> None:
    got = query(server.url, "SELECT discharge_month, discharges, readmissions, readmission_rate "
                            "FROM gold.mart_readmission_30d ORDER BY discharge_month")
    assert got.to_pylist() == MART.to_pylist()
    assert query(server.url, "SELECT count(*) AS n FROM dim_patient").to_pylist() == [{"n": 2}]  # default schema
    listed = query(server.url, "SELECT table_schema, table_name FROM information_schema.tables "
                               "WHERE table_schema <> 'information_schema' ORDER BY table_name").to_pylist()
    assert listed == [{"table_schema": "gold", "table_name": "dim_patient"},
                      {"table_schema": "gold", "table_name": "mart_readmission_30d"}]
    with connect(server.url) as conn:  # the Flight SQL catalog calls a BI tool's schema browser makes
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        schema = conn.adbc_get_table_schema("mart_readmission_30d", db_schema_filter="gold")
        assert conn.adbc_get_info()["vendor_name"].startswith("clinical-lakehouse Gold")  # GetSqlInfo
    assert [(s["db_schema_name"], [t["table_name"] for t in s["db_schema_tables"]])
            for c in objects for s in c["catalog_db_schemas"]] == [("gold", ["dim_patient", "mart_readmission_30d"])]
    assert schema.names == MART.column_names


@pytest.mark.fast
@pytest.mark.parametrize("token", [None, "wrong-token-0123456789abcdef", TOKEN[:-1], ""])
def test_a_client_without_the_right_token_is_refused(server: FlightSqlServer, token: str | None) -> None:
    with pytest.raises(flightsql.Error, match="UNAUTHENTICATED"):
        query(server.url, "SELECT 1", token=token)


@pytest.mark.fast
@pytest.mark.parametrize("table", [*PHI_LAYERS, "datafusion.bronze.hl7v2_messages", "`bronze`.`hl7v2_messages`",
                                   '"_system"."runs"', "gold.`../bronze/hl7v2_messages`"])
def test_other_layers_cannot_be_read_by_name(server: FlightSqlServer, table: str) -> None:
    with pytest.raises(flightsql.Error) as refused:
        query(server.url, f"SELECT * FROM {table}")
    assert not any(value in str(refused.value) for value in PHI_LAYERS.values())


@pytest.mark.fast
def test_other_layers_cannot_be_read_or_registered_by_path(server: FlightSqlServer, root: Path) -> None:
    bronze = root / "bronze" / "hl7v2_messages"
    parquet = next(bronze.glob("*.parquet"))
    attempts = [f"SELECT * FROM '{bronze}'", f"SELECT * FROM '{parquet}'", f"SELECT * FROM \"{parquet}\"",
                f"SELECT * FROM delta.`{bronze}`", f"SELECT * FROM parquet.`{parquet}`",
                f"SELECT * FROM read_parquet('{parquet}')", f"SELECT * FROM parquet_scan('{parquet}')",
                f"CREATE EXTERNAL TABLE b STORED AS PARQUET LOCATION '{parquet}'",
                f"CREATE EXTERNAL TABLE gold.b STORED AS PARQUET LOCATION '{bronze}'",
                f"CREATE TABLE b USING delta LOCATION '{bronze}'", "SELECT * FROM b", "SELECT * FROM gold.b",
                "SET datafusion.catalog.information_schema = false",
                f"SELECT * FROM gold.mart_readmission_30d; CREATE EXTERNAL TABLE c STORED AS PARQUET LOCATION "
                f"'{parquet}'"]
    for sql in attempts:
        with pytest.raises(flightsql.Error) as refused:
            query(server.url, sql)
        assert "MRN-778899" not in str(refused.value), sql
    assert "CreateExternalTable" in _error(server.url, attempts[7])  # refused as DDL, not only "not found"


def _error(url: str, sql: str) -> str:
    with pytest.raises(flightsql.Error) as refused:
        query(url, sql)
    return str(refused.value)


@pytest.mark.fast
def test_writes_are_refused_and_gold_is_unchanged(server: FlightSqlServer, root: Path) -> None:
    before = versions(root)
    writes = {
        "INSERT INTO gold.mart_readmission_30d SELECT * FROM gold.mart_readmission_30d": "DML not supported",
        "DELETE FROM gold.dim_patient": "not supported",
        "UPDATE gold.dim_patient SET patient_key = 'x'": "not supported",
        "CREATE TABLE gold.copy AS SELECT * FROM gold.dim_patient": "DDL not supported",
        "CREATE VIEW gold.v AS SELECT 1": "DDL not supported",
        f"COPY gold.dim_patient TO '{root}/gold/dim_patient/part-x.parquet'": "DML not supported",
        f"COPY (SELECT 1) TO '{root}/bronze/hl7v2_messages/x.parquet' STORED AS PARQUET": "DML not supported",
        "DROP TABLE gold.mart_readmission_30d": "DDL not supported",
        "DROP SCHEMA gold CASCADE": "DDL not supported",
    }
    for sql, reason in writes.items():
        assert reason in _error(server.url, sql), sql
    assert "UNAUTHORIZED" in _error(server.url, "DROP TABLE gold.dim_patient")  # PERMISSION_DENIED for writes

    # below SQL: DoPut (ingest/update) and DoAction (prepared statements, transactions) with the right token
    client = flight.connect(server.url)
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {TOKEN}".encode())])
    update = pack_any("CommandStatementIngest", b"")
    with pytest.raises(flight.FlightUnauthorizedError, match="read-only"):
        writer, _ = client.do_put(flight.FlightDescriptor.for_command(update), MART.schema, options)
        writer.write_table(MART)
        writer.close()
    with pytest.raises(NotImplementedError, match="not supported"):
        list(client.do_action(flight.Action("CreatePreparedStatement", b""), options))
    with pytest.raises(NotImplementedError):
        client.get_flight_info(flight.FlightDescriptor.for_path("bronze", "hl7v2_messages"), options)
    client.close()

    assert versions(root) == before
    assert query(server.url, "SELECT count(*) AS n FROM gold.mart_readmission_30d").to_pylist() == [{"n": 3}]


@pytest.mark.fast
def test_a_forged_ticket_cannot_bypass_the_checks(server: FlightSqlServer, root: Path) -> None:
    """DoGet runs what the ticket says: a hand-made ticket goes through the same read-only planning."""
    client = flight.connect(server.url)
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {TOKEN}".encode())])
    forged = pack_any("TicketStatementQuery", encode((1, "SELECT * FROM bronze.hl7v2_messages")))
    with pytest.raises(flight.FlightError, match="not found"):
        client.do_get(flight.Ticket(forged), options).read_all()
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.do_get(flight.Ticket(pack_any("TicketStatementQuery", encode((1, "SELECT 1"))))).read_all()
    client.close()


@pytest.mark.fast
def test_new_gold_tables_and_commits_are_served_without_a_restart(tmp_path: Path) -> None:
    root = _lakehouse(tmp_path / "lh")
    with FlightSqlServer(Settings(root=root, serve_token=SecretStr(TOKEN))) as server:
        assert server.tables == ["gold.dim_patient", "gold.mart_readmission_30d"]
        write_deltalake(str(root / "gold" / "fct_encounter"), pa.table({"encounter_key": ["e1"]}))
        write_deltalake(str(root / "gold" / "dim_patient"), pa.table({"patient_key": ["p3"]}), mode="append")
        got = query(server.url, "SELECT patient_key FROM gold.dim_patient ORDER BY patient_key").column(0)
        assert got.to_pylist() == ["p1", "p2", "p3"]
        assert query(server.url, "SELECT count(*) AS n FROM gold.fct_encounter").to_pylist() == [{"n": 1}]
        assert server.tables == ["gold.dim_patient", "gold.fct_encounter", "gold.mart_readmission_30d"]
        (root / "gold" / "bronze_link").symlink_to(root / "bronze" / "hl7v2_messages")  # a symlink is not Gold
        assert "gold.bronze_link" not in server.tables


@pytest.mark.fast
def test_tls_round_trip(root: Path, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    settings = Settings(root=root, serve_token=SecretStr(TOKEN))
    with FlightSqlServer(settings, tls_cert=cert, tls_key=key) as server:
        assert server.url.startswith("grpc+tls://127.0.0.1:")
        got = query(server.url, "SELECT count(*) AS n FROM gold.mart_readmission_30d",
                    **{"adbc.flight.sql.client_option.tls_root_certs": cert.read_text()})
        assert got.to_pylist() == [{"n": 3}]
        with pytest.raises(flightsql.Error):  # a client that does not trust the certificate
            query(server.url, "SELECT 1")
        with pytest.raises(flightsql.Error):  # a plaintext client on the TLS port
            query(server.url.replace("grpc+tls://", "grpc://"), "SELECT 1")


@pytest.mark.fast
def test_exposing_beyond_loopback_needs_tls_and_a_token(root: Path, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    tokened = Settings(root=root, serve_token=SecretStr(TOKEN))
    for settings, tls in ((Settings(root=root), {}), (tokened, {}),
                          (Settings(root=root), {"tls_cert": cert, "tls_key": key})):
        for host in ("0.0.0.0", "::", "192.0.2.10"):
            with pytest.raises(ConfigError, match="needs --tls-cert/--tls-key and a token"):
                FlightSqlServer(settings, host=host, **tls)  # type: ignore[arg-type]
    assert FlightSqlServer(tokened, host="0.0.0.0", tls_cert=cert, tls_key=key).service is None  # accepted
    assert FlightSqlServer(Settings(root=root), host="::1").token is None  # loopback: a token is optional

    token_file = tmp_path / "serve.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by group or others"):
        FlightSqlServer(Settings(root=root, serve_token_file=token_file))
    token_file.chmod(0o600)
    assert FlightSqlServer(Settings(root=root, serve_token_file=token_file)).token == TOKEN
    with pytest.raises(ConfigError, match="shorter than 16"):
        FlightSqlServer(Settings(root=root, serve_token=SecretStr("short")))
    assert TOKEN not in repr(tokened) and TOKEN not in str(tokened.redacted())


def test_lakehouse_serve_answers_flight_sql_and_records_the_session(tmp_path: Path) -> None:
    """The real CLI process: banner, a query with the token from the environment, SIGTERM, the run log."""
    root = _lakehouse(tmp_path / "lh")
    cmd = [sys.executable, "-m", "lakehouse_app.cli", "--root", str(root), "serve", "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=clean_env(LAKEHOUSE_SERVE_TOKEN=TOKEN), cwd=tmp_path)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline() + proc.stdout.readline()
        url = re.search(r"grpc://127\.0\.0\.1:\d+", banner)
        assert url, banner
        assert "gold.mart_readmission_30d" in banner and "bronze" not in banner and "silver" not in banner
        assert "bearer token required" in banner
        got = query(url.group(0), "SELECT * FROM gold.mart_readmission_30d ORDER BY discharge_month")
        assert got.to_pylist() == MART.to_pylist()
        with pytest.raises(flightsql.Error):
            query(url.group(0), "SELECT * FROM bronze.hl7v2_messages")
        with pytest.raises(flightsql.Error):
            query(url.group(0), "SELECT 1", token=None)
        proc.send_signal(signal.SIGTERM)  # a service manager's stop (Ctrl-C's SIGINT takes the same path)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    serve_runs = [r for r in read_runs(Settings(root=root)) if r["command"] == "serve"]
    assert len(serve_runs) == 2  # the start (host, port, TLS, token) and the session's totals
    assert '"token": true' in serve_runs[0]["metrics"]
    assert '"queries": 1' in serve_runs[1]["metrics"] and '"refused": 1' in serve_runs[1]["metrics"]
    assert re.search(r'"unauthenticated_calls": [1-9]', serve_runs[1]["metrics"])  # ADBC retries: calls, not 1
    leaked = [p for p in root.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert leaked == [] and TOKEN not in banner + rest  # the token is never printed, logged or recorded
