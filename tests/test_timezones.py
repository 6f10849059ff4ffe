"""HL7 v2 times without an offset are the facility's local time in an IANA zone (daylight saving included)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from helpers import new_lakehouse
from pyspark.sql import functions as F

from bronze.job import ingest
from lakehouse import config
from lakehouse.catalog import Catalog
from lakehouse.config import get_settings, load_settings
from lakehouse.errors import ConfigError
from lakehouse.hl7v2 import hl7_time
from lakehouse.runlog import run_context
from lakehouse_app import cli
from lakehouse_app.pipeline import with_generator_timezone
from silver import encounter
from silver.common import Deid, latest_messages, segments
from silver.deid import engine_key


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
    # the generator now also writes the zone on its own (the manifest is large); that file is read first
    (manifest.parent / "facility.json").write_text(json.dumps({"facility_timezone": "Asia/Kolkata"}))
    assert with_generator_timezone(load_settings(environ={}, root=tmp_path)).facility_timezone == "Asia/Kolkata"


@pytest.mark.fast
def test_every_command_on_generated_data_reads_the_generators_zone(tmp_path: Path, monkeypatch) -> None:
    """Not only `demo`: a later `lakehouse silver` or `run` on the same lakehouse must give the same facts."""
    manifest = tmp_path / "landing" / "_generator" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"facility_timezone": "Etc/GMT+5"}))
    for key in [k for k in os.environ if k.startswith("LAKEHOUSE_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no lakehouse.yaml here
    monkeypatch.setattr(config, "_current", None)  # the settings this test sets are undone after it
    cli.main(root=tmp_path, config=None, engine=None, verbose=False)
    assert get_settings().facility_timezone == "Etc/GMT+5"
    monkeypatch.setenv("LAKEHOUSE_FACILITY_TIMEZONE", "Europe/Berlin")
    cli.main(root=tmp_path, config=None, engine=None, verbose=False)
    assert get_settings().facility_timezone == "Europe/Berlin"


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


@pytest.mark.fast
def test_zones_per_sending_facility_from_yaml_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "lakehouse.yaml"
    config.write_text("facility_timezones:\n  easthosp: America/New_York\n  2.16.840.1.113883.19.5: Europe/Berlin\n")
    assert load_settings(config_file=config, environ={}).facility_timezones == {
        "EASTHOSP": "America/New_York", "2.16.840.1.113883.19.5": "Europe/Berlin"}
    env = {"LAKEHOUSE_FACILITY_TIMEZONES": "EASTHOSP=America/New_York, WESTHOSP=America/Los_Angeles"}
    assert load_settings(environ=env, root=tmp_path).facility_timezones == {
        "EASTHOSP": "America/New_York", "WESTHOSP": "America/Los_Angeles"}
    with pytest.raises(ConfigError, match="facility_timezones.*IANA"):
        load_settings(environ={"LAKEHOUSE_FACILITY_TIMEZONES": "EASTHOSP=-05:00"}, root=tmp_path)
    with pytest.raises(ConfigError, match="facility_timezones.*FACILITY=Zone"):
        load_settings(environ={"LAKEHOUSE_FACILITY_TIMEZONES": "America/New_York"}, root=tmp_path)


def test_times_follow_the_zone_of_their_sending_facility(spark, tmp_path: Path) -> None:
    """One lakehouse, three facilities: MSH-4 matched by namespace id or by universal id, else the default zone;
    Bronze's message_ts and Silver's event and admission times of the same wall-clock time differ by the zones."""
    settings = new_lakehouse(tmp_path / "lh", facility_timezone="America/Chicago", facility_timezones={
        "EASTHOSP": "America/New_York", "2.16.840.1.113883.19.5": "Europe/Berlin"})
    folder = settings.landing_dir / "hl7v2"
    folder.mkdir(parents=True)
    facilities = {"EASTHOSP": "EastHosp^1.2.3^ISO", "BERLIN": "^2.16.840.1.113883.19.5^ISO", "CENTRAL": "CENTRAL"}
    for n, (name, msh4) in enumerate(facilities.items()):
        pv1 = {1: "1", 2: "I", 3: "W1^1^1", 19: f"VN{n}", 44: "20240115080000"}
        (folder / f"{name}.hl7").write_text(
            f"MSH|^~\\&|EHR|{msh4}|LAKE|LAKE|20240115093000||ADT^A01|TZ-{n}|P|2.3\r"
            f"EVN|A01|20240115093000\rPID|1||MRN{n}^^^{name}^MR||DOE^JANE\r"
            + "|".join(["PV1", *(pv1.get(i, "") for i in range(1, 45))]) + "\r")
    with run_context("ingest", settings) as run:
        ingest(settings, [], run)
    messages = Catalog(spark, settings).read("bronze.hl7v2_messages")
    utc = {"EASTHOSP": dt.datetime(2024, 1, 15, 14, 30), "BERLIN": dt.datetime(2024, 1, 15, 8, 30),
           "CENTRAL": dt.datetime(2024, 1, 15, 15, 30)}
    sent = {r.message_control_id: r.message_ts.replace(tzinfo=None) for r in messages.collect()}
    assert sent == {f"TZ-{n}": utc[name] for n, name in enumerate(facilities)}

    deid = Deid(key=engine_key(settings), facility_timezone=settings.facility_timezone,
                facility_timezones=tuple(sorted(settings.facility_timezones.items())))
    events = encounter.hl7_adt_events(segments(latest_messages(messages), deid), deid).collect()
    admitted = {r.event_at.replace(tzinfo=None): r.admit_at.replace(tzinfo=None) for r in events}
    # PV1-44 is 08:00 local, 90 minutes before the event in every zone
    assert admitted == {t: t - dt.timedelta(minutes=90) for t in utc.values()}
