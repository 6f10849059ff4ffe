"""DICOM StudyDate/StudyTime to UTC: Timezone Offset From UTC (0008,0201) when sent, else the facility's zone."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pyspark.sql import functions as F

from silver.imaging import dicom_time

T = datetime


def test_dicom_date_and_time_become_utc(spark: Any) -> None:
    rows = spark.createDataFrame([
        ("offset", "20240305", "081500", "-0500"),         # exact: the header says the local offset
        ("east", "20240305", "0815", "+0100"),             # truncated TM, an offset east of UTC
        ("zone", "20240305", "081500.25", None),           # no offset: the facility's zone (UTC-05:00 here)
        ("colons", "20240305", "08:15:00", None),          # ACR-NEMA style TM
        ("no_time", "20240305", None, None),               # a date alone: local midnight
        ("dst", "20240705", "081500", None),               # July: still UTC-05:00 (Etc/GMT+5 has no DST)
        ("bad_date", "2024035", "081500", None),
        ("bad_offset", "20240305", "081500", "EST"),      # not an offset: ignored, the zone applies
    ], "k STRING, d STRING, t STRING, o STRING")
    out = {r["k"]: r["at"] for r in rows.select(
        "k", dicom_time(F.col("d"), F.col("t"), F.col("o"), "Etc/GMT+5").alias("at")).collect()}
    assert out["offset"] == T(2024, 3, 5, 13, 15)
    assert out["east"] == T(2024, 3, 5, 7, 15)
    assert out["zone"] == T(2024, 3, 5, 13, 15, 0, 250000)
    assert out["colons"] == T(2024, 3, 5, 13, 15)
    assert out["no_time"] == T(2024, 3, 5, 5, 0)
    assert out["dst"] == T(2024, 7, 5, 13, 15)
    assert out["bad_date"] is None
    assert out["bad_offset"] == T(2024, 3, 5, 13, 15)


def test_a_zone_with_daylight_saving(spark: Any) -> None:
    rows = spark.createDataFrame([("20240115", "120000"), ("20240715", "120000")], "d STRING, t STRING")
    got = [r[0] for r in rows.select(dicom_time(F.col("d"), F.col("t"), F.lit(None).cast("string"),
                                                "America/New_York")).orderBy(F.col("d")).collect()]
    assert got == [T(2024, 1, 15, 17, 0), T(2024, 7, 15, 16, 0)]  # EST in winter, EDT in summer
