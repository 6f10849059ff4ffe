"""The de-identification transforms on classic local PySpark (Java regex instead of Rust regex)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.classic_spark
KEY = b"unit-test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def classic() -> Iterator[object]:
    os.environ.pop("SPARK_REMOTE", None)
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[1]").appName("deid-classic")
             .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false").getOrCreate())
    yield spark
    spark.stop()


def test_transforms_agree_with_python_on_classic_spark(classic) -> None:
    from helpers import engine_key
    from pyspark.sql import functions as F

    from silver.deid import (
        date_shift_days,
        date_shift_days_py,
        generalize_zip3,
        known_identifiers,
        pseudonym,
        pseudonym_py,
        scrub_text,
        shift_timestamp,
    )

    df = classic.createDataFrame(  # type: ignore[attr-defined]
        [("P1", "Maria O'Brien called 617.555.0142 on 03/14/2021, MRN: 99812345", "Maria", "O'Brien",
          "617-555-0142", " 03601-1234", dt.datetime(2020, 1, 1, 8, 0))],
        "pid string, note string, given string, family string, phone string, zip string, ts timestamp")
    ids = known_identifiers(NAME=[F.col("given"), F.col("family")], PHONE=F.col("phone"))
    ek = engine_key(KEY)
    days = date_shift_days(F.col("pid"), ek, 365)
    row = df.select(pseudonym(F.col("pid"), ek, "patient"), scrub_text(F.col("note"), ids),
                    generalize_zip3(F.col("zip")), shift_timestamp(F.col("ts"), days).alias("ts")).first()
    assert row.patient_key == pseudonym_py("P1", KEY, "patient")
    assert row.scrubbed_text == "[NAME] [NAME] called [PHONE] on [DATE], [MRN]"
    assert row.zip3 == "000"
    assert row.ts == dt.datetime(2020, 1, 1, 8, 0) + dt.timedelta(days=date_shift_days_py("P1", KEY, 365))
