"""HL7 v2 times without an offset are the facility's local time in an IANA zone (daylight saving included)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from helpers import new_lakehouse
from pyspark.sql import functions as F

from bronze.job import ingest
from lakehouse.catalog import Catalog
from lakehouse.config import load_settings
from lakehouse.errors import ConfigError
from lakehouse.hl7v2 import hl7_time
from lakehouse.runlog import run_context
from lakehouse_app.pipeline import with_generator_timezone


@pytest.mark.fast
def test_facility_timezone_must_be_an_iana_zone(tmp_path: Path) -> None:
    assert load_settings(environ={}, root=tmp_path, facility_timezone="America/New_York").facility_timezone \
        == "America/New_York"
    with pytest.raises(ConfigError, match="facility_timezone.*IANA"):
        load_settings(environ={}, root=tmp_path, facility_timezone="-05:00")


@pytest.mark.fast
def test_demo_takes_the_generators_zone_unless_one_is_configured(tmp_path: Path) -> None:
    manifest = tmp_path / "landing" / "_generator" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"facility_timezone": "Etc/GMT+5"}))
    assert with_generator_timezone(load_settings(environ={}, root=tmp_path)).facility_timezone == "Etc/GMT+5"
    configured = load_settings(environ={}, root=tmp_path, facility_timezone="Europe/Berlin")
    assert with_generator_timezone(configured).facility_timezone == "Europe/Berlin"


def test_local_times_follow_daylight_saving_and_explicit_offsets_win(spark) -> None:
    rows = spark.createDataFrame(  # type: ignore[attr-defined]
        [("20240115093000",), ("20240715093000",), ("20240715093000-0200",), ("202407",)], "v string")
    got = [r.t for r in rows.select(hl7_time(F.col("v"), "America/New_York").alias("t")).collect()]
    as_naive = [t.replace(tzinfo=None) if t is not None else None for t in got]
    assert as_naive == [dt.datetime(2024, 1, 15, 14, 30), dt.datetime(2024, 7, 15, 13, 30),  # EST, EDT
                        dt.datetime(2024, 7, 15, 11, 30), dt.datetime(2024, 7, 1, 4, 0)], got


def test_bronze_message_ts_uses_the_facility_zone(spark, tmp_path: Path) -> None:
    settings = new_lakehouse(tmp_path / "lh", facility_timezone="America/Chicago")
    folder = settings.landing_dir / "hl7v2"
    folder.mkdir(parents=True)
    (folder / "adt.hl7").write_text("MSH|^~\\&|EHR|GENHOSP|LAKE|LAKE|20240115093000||ADT^A01|MSG-TZ-1|P|2.3\r"
                                    "PID|1||MRN1^^^GENHOSP^MR||DOE^JANE\r")
    with run_context("ingest", settings) as run:
        ingest(settings, [], run)
    row = Catalog(spark, settings).read("bronze.hl7v2_messages").select("message_ts").first()
    assert row.message_ts.replace(tzinfo=None) == dt.datetime(2024, 1, 15, 15, 30)  # CST = UTC-6
