"""The S3 lane: a lakehouse whose root is ``s3://bucket/prefix`` on an S3-compatible server the test starts itself
(moto's standalone server), driven through the CLI as a user runs it: ingest from a drop prefix in the bucket,
Silver, Gold, status, time travel, audit and maintenance. The engine (Sail), delta-rs and fsspec (listing tables
and inputs) all reach the bucket through the standard AWS environment variables; only landing copies and working
files stay on this machine (``work_dir``)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from helpers import TEST_KEY, clean_env
from moto.server import ThreadedMotoServer

from synthetic.generator import generate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
BUCKET, PREFIX, PATIENTS = "lake", "clinical/lh", 6


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    _client(endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def _client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                        region_name="us-east-1")


def _keys(endpoint: str) -> list[str]:
    pages = _client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX + "/")
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture(scope="module")
def lakehouse(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("s3root")
    env = clean_env(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=s3_endpoint, AWS_ALLOW_HTTP="true", AWS_S3_ALLOW_UNSAFE_RENAME="true",
        LAKEHOUSE_ROOT=f"s3://{BUCKET}/{PREFIX}/", LAKEHOUSE_WORK_DIR=str(tmp / "work"),
        LAKEHOUSE_PSEUDONYM_KEY=TEST_KEY, XDG_STATE_HOME=str(tmp / "state"), XDG_CONFIG_HOME=str(tmp / "config"))
    for name in [n for n in env if n.startswith("AWS_") and n not in {
            "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP",
            "AWS_S3_ALLOW_UNSAFE_RENAME"}]:
        del env[name]  # a developer's own AWS profile must not reach the test's server
    cwd = tmp / "cwd"
    cwd.mkdir()
    generate(PATIENTS, 3, tmp / "export", bad_rate=0.05)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "lakehouse_app.cli", *args], capture_output=True, text=True,
                              env=env, cwd=cwd, timeout=1200)
        assert done.returncode == 0, f"lakehouse {' '.join(args)}: {done.stderr[-3000:]}"
        return done

    # the inputs arrive in the bucket too (an interface engine's drop prefix): landing lists and reads them there
    client = _client(s3_endpoint)
    for path in sorted(p for p in (tmp / "export").rglob("*") if p.is_file()):
        client.upload_file(str(path), BUCKET, f"drop/{path.relative_to(tmp / 'export').as_posix()}")
    ingested = json.loads(cli("ingest", f"s3://{BUCKET}/drop/", "--json").stdout)
    inputs = [p for p in (tmp / "export").rglob("*") if p.is_file()
              and not any(part.startswith(("_", ".")) for part in p.relative_to(tmp / "export").parts)]
    files = ingested["files"]
    assert files["copied"] + files["already_landed"] + files["refused"] == len(inputs) > 20
    assert ingested["hl7v2"]["bronze"] > 0 and ingested["fhir"]["bronze"] > 0 and ingested["dicom"]["bronze"] > 0
    cli("run")
    return {"cli": cli, "tmp": tmp, "cwd": cwd, "endpoint": s3_endpoint}


def test_every_layer_is_written_to_the_bucket_and_nothing_to_a_local_s3_folder(lakehouse: dict[str, Any]) -> None:
    keys = _keys(lakehouse["endpoint"])
    tables = {k.split("/_delta_log/")[0].removeprefix(PREFIX + "/") for k in keys if "/_delta_log/" in k}
    assert {"bronze/hl7v2_messages", "bronze/fhir_resources", "bronze/dicom_instances", "silver/patient",
            "silver/observation", "gold/dim_patient", "gold/fct_encounter", "_system/runs"} <= tables
    assert any(k.endswith(".parquet") and k.startswith(f"{PREFIX}/gold/") for k in keys)
    # the mangling this replaces: s3://bucket became a local folder named "s3:"
    tmp = lakehouse["tmp"]
    assert not [p for p in tmp.rglob("s3:*")], "a local folder named after the URL was created"
    assert not (tmp / "work" / "silver").exists() and not (tmp / "work" / "bronze").exists()
    assert any((tmp / "work" / "landing").rglob("*.hl7")), "landing stays in the local work folder"


def test_status_show_and_time_travel_read_the_bucket(lakehouse: dict[str, Any]) -> None:
    cli = lakehouse["cli"]
    rows = {(r["layer"], r["table"]): r for r in json.loads(cli("status", "--json").stdout)}
    assert rows[("silver", "patient")]["rows"] == PATIENTS
    assert rows[("gold", "dim_patient")]["rows"] == PATIENTS
    assert rows[("bronze", "hl7v2_messages")]["rows"] > 0
    first = rows[("silver", "observation")]["version"]
    shown = json.loads(cli("show", "silver.patient", "--as-of-version", "1", "--json").stdout)
    assert len(shown) == PATIENTS and all(r["patient_key"] for r in shown)
    history = json.loads(cli("history", "silver.observation", "--json").stdout)
    assert history[-1]["operation"] == "CREATE TABLE" and len(history) == first + 1


def test_the_audit_chain_and_maintenance_work_on_the_bucket(lakehouse: dict[str, Any]) -> None:
    cli = lakehouse["cli"]
    assert cli("audit", "verify").stdout.startswith("ok")
    again = json.loads(cli("run", "--json").stdout)  # nothing new: every layer up to date
    assert again["silver"]["up_to_date"] and again["gold"]["up_to_date"]
    cli("maintain", "--retention-hours", "168")
    rows = {(r["layer"], r["table"]): r["rows"] for r in json.loads(cli("status", "--json").stdout)}
    assert rows[("silver", "patient")] == PATIENTS
