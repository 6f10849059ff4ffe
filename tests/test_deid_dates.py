"""Dates: per-patient shifts preserve intervals; year policy; the 90+ age rule; ZIP3; the rules table."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from helpers import engine_key
from pyspark.sql import functions as F

import silver.deid
from silver.deid.dates import (
    age_90plus,
    apply_date_policy,
    birth_date_90plus_rule,
    birth_year_90plus_rule,
    date_shift_days,
    date_shift_days_py,
    is_90_plus,
)
from silver.deid.geo import generalize_zip3, generalize_zip3_py, restricted_zip3
from silver.deid.rules import SAFE_HARBOR, classes_covered, load_rules

KEY = b"unit-test-key-0123456789abcdef"


def _events(spark):
    rows = [(f"p{p}", dt.date(2020, 1, 1) + dt.timedelta(days=7 * e + p),
             dt.datetime(2020, 1, 1, 8, 30) + dt.timedelta(days=3 * e, hours=p)) for p in range(40) for e in range(3)]
    return spark.createDataFrame(rows, "patient_key string, d date, ts timestamp")


def test_shift_is_per_patient_in_range_and_matches_python(spark) -> None:
    shift = date_shift_days(F.col("patient_key"), engine_key(KEY), 30)
    rows = _events(spark).select("patient_key", shift).distinct().collect()
    days = {r.patient_key: r.date_shift_days for r in rows}
    assert len(days) == 40  # one offset per patient
    assert all(-30 <= d <= 30 and d != 0 for d in days.values())
    assert len(set(days.values())) > 10
    assert all(date_shift_days_py(p, KEY, 30) == d for p, d in days.items())
    assert days != {p: date_shift_days_py(p, b"other-key-0123456789", 30) for p in days}


def test_shift_preserves_every_interval_of_a_patient(spark) -> None:
    df = _events(spark)
    shifted = apply_date_policy(df, ["d", "ts"], "patient_key", engine_key(KEY), "expert_determination", 365)
    assert shifted.schema == df.schema
    before = df.orderBy("patient_key", "d").collect()
    after = shifted.orderBy("patient_key", "d").collect()
    moved = 0
    for b, a in zip(before, after, strict=True):
        assert a.patient_key == b.patient_key
        offset = date_shift_days_py(b.patient_key, KEY, 365)
        assert a.d - b.d == dt.timedelta(days=offset)
        assert a.ts - b.ts == dt.timedelta(days=offset)  # time of day kept
        moved += a.d != b.d
    assert moved == len(before)


def test_year_policy_keeps_only_the_year(spark) -> None:
    out = apply_date_policy(_events(spark), ["d", "ts"], "patient_key", engine_key(KEY), "safe_harbor", 365).collect()
    assert all(r.d == dt.date(r.d.year, 1, 1) and (r.ts.month, r.ts.day, r.ts.hour) == (1, 1, 0) for r in out)
    with pytest.raises(TypeError):
        apply_date_policy(_events(spark).withColumn("s", F.lit("2020-01-01")), ["s"], "patient_key",
                          engine_key(KEY), "expert_determination", 9)


def test_ages_over_89_become_90_and_lose_the_birth_year(spark) -> None:
    df = spark.createDataFrame([(dt.date(1930, 6, 1),), (dt.date(1934, 6, 2),), (dt.date(1980, 1, 1),), (None,)],
                               "birth date").withColumn("ref", F.lit(dt.date(2024, 6, 1)))
    rows = df.select(age_90plus(F.col("birth"), F.col("ref")), is_90_plus(F.col("birth"), F.col("ref")),
                     birth_date_90plus_rule(F.col("birth"), F.col("ref")).alias("b"),
                     birth_year_90plus_rule(F.col("birth"), F.col("ref"))).collect()
    assert [(r.age, r.is_age_90_plus, r.b, r.birth_year) for r in rows] == [
        (90, True, None, None),                       # 94 years old
        (89, False, dt.date(1934, 6, 2), 1934),       # 89 until tomorrow
        (44, False, dt.date(1980, 1, 1), 1980),
        (None, None, None, None),
    ]


def test_zip3_generalization(spark) -> None:
    cases = {"02139": "021", " 02139-4307 ": "021", "021394307": "021", "03601": "000", "89301": "000",
             "1234": None, "K1A 0B1": None, "ABCDE": None, "": None, None: None, "02139 4307": "021"}
    df = spark.createDataFrame([(k,) for k in cases], "zip string")
    got = {r.zip: r.zip3 for r in df.select("zip", generalize_zip3(F.col("zip"))).collect()}
    assert got == cases
    assert all(generalize_zip3_py(k) == v for k, v in cases.items())
    assert len(restricted_zip3()) == 17 and "036" in restricted_zip3()


@pytest.mark.fast
def test_rules_cover_all_18_safe_harbor_classes() -> None:
    assert set(SAFE_HARBOR) == set("ABCDEFGHIJKLMNOPQR")
    assert classes_covered() == set(SAFE_HARBOR)
    assert {r.domain for r in load_rules()} >= {"patient", "encounter", "observation", "imaging_instance", "*"}


@pytest.mark.fast
def test_policy_page_lists_every_rule() -> None:
    policy = (Path(silver.deid.__file__).parent / "POLICY.md").read_text()
    for r in load_rules():
        assert f"| {r.domain} | {r.column_or_field} | {r.action} |" in policy, r
