"""Great Expectations suites, row-level quarantine and table-level validation on the real engine."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pyspark.sql import DataFrame

from expectations import (
    DQ_TABLE,
    load_suite,
    quarantine_invalid,
    row_rules,
    tables,
    validate,
    write_results,
)
from lakehouse.errors import LakehouseError
from silver.observation import flag_abnormal
from silver.schemas import TABLES, columns, ddl

NOW = datetime(2026, 1, 1, tzinfo=UTC)
T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)


def contract_frame(spark: Any, table: str, rows: list[dict[str, Any]]) -> DataFrame:
    names = columns(table)
    return spark.createDataFrame([tuple(r.get(c) for c in names) for r in rows], ddl(table).replace(" NOT NULL", ""))


def obs(key: str, patient: str = "p1", loinc: str = "8867-4", value: float | None = 72.0, **extra: Any) -> dict:
    return {"observation_key": key, "patient_key": patient, "loinc_code": loinc, "value_num": value,
            "effective_at": T0, "category": "vital-signs", "is_mapped": True, "is_unit_known": True, **extra}


GOOD_OBSERVATIONS = [
    obs("ok_hr"), obs("ok_hr_zero", value=0.0), obs("ok_spo2", loinc="59408-5", value=100.0),
    obs("ok_high_glucose", loinc="2345-7", value=450.0, category="laboratory", ref_low=70.0, ref_high=99.0),
    obs("ok_text", loinc="8867-4", value=None, value_text="see note"), obs("ok_unmapped", loinc=None, value=12.0),
]
# key -> rule it must be quarantined by
BAD_OBSERVATIONS = {
    "bad_hr_negative": (obs("bad_hr_negative", value=-5.0), "observation.heart_rate_range"),
    "bad_hr_high": (obs("bad_hr_high", value=351.0), "observation.heart_rate_range"),
    "bad_spo2": (obs("bad_spo2", loinc="2708-6", value=101.0), "observation.spo2_range"),
    "bad_future": (obs("bad_future", effective_at=NOW + timedelta(days=30)), "observation.effective_at_not_in_future"),
    "bad_patient_null": (obs("bad_patient_null", patient=None), "observation.patient_key_not_null"),
    "bad_patient_unknown": (obs("bad_patient_unknown", patient="p404"), "observation.patient_key_exists_in_patient"),
    "bad_lab_negative": (obs("bad_lab_negative", loinc="2345-7", value=-1.0, category="laboratory"),
                         "observation.concentration_not_negative"),
    "bad_loinc_format": (obs("bad_loinc_format", loinc="GLU", value=1.0), "observation.loinc_code_format"),
}


@pytest.fixture(scope="module")
def patients(spark: Any) -> DataFrame:
    return contract_frame(spark, "patient", [{"patient_key": "p1", "gender": "female"},
                                             {"patient_key": "p2", "gender": "male"}])


@pytest.mark.fast
def test_one_suite_per_silver_table_with_tags_and_contract_columns() -> None:
    assert tables() == sorted(TABLES)
    for table in tables():
        suite = load_suite(table)
        assert suite["name"] == f"silver.{table}"
        for exp in suite["expectations"]:
            kw = exp["kwargs"]
            for key in ("column", "column_A", "column_B"):
                if key in kw:
                    assert kw[key] in columns(table), f"{table}: {kw[key]}"
            if "column_set" in kw:
                assert kw["column_set"] == columns(table)
        assert any(e["meta"]["row_level"] for e in suite["expectations"])
        quantiles = ("expect_column_median_to_be_between", "expect_column_quantile_values_to_be_between")
        assert all(e["type"] not in quantiles for e in suite["expectations"]), "Sail has no approxQuantile"


def test_every_planted_bad_row_is_quarantined_with_its_rule(spark: Any, patients: DataFrame) -> None:
    rows = GOOD_OBSERVATIONS + [row for row, _ in BAD_OBSERVATIONS.values()]
    df = contract_frame(spark, "observation", rows)
    valid, rejected = quarantine_invalid(df, "observation", {"patient": patients}, latest_time=NOW)
    assert valid.columns == df.columns
    assert sorted(r.observation_key for r in valid.collect()) == sorted(r["observation_key"] for r in GOOD_OBSERVATIONS)
    got = {r.observation_key: (r.failed_rule, r.reason) for r in rejected.collect()}
    assert {k: v[0] for k, v in got.items()} == {k: rule for k, (_, rule) in BAD_OBSERVATIONS.items()}
    assert got["bad_hr_high"][1] == "[observation.heart_rate_range] heart rate outside 0-350 /min: value_num=351.0"
    assert "patient_key=p404" in got["bad_patient_unknown"][1]


def test_encounter_discharge_before_admit_and_all_failures_in_reason(spark: Any, patients: DataFrame) -> None:
    df = contract_frame(spark, "encounter", [
        {"encounter_key": "e_ok", "patient_key": "p1", "admit_at": T0, "discharge_at": T0 + timedelta(days=2)},
        {"encounter_key": "e_open", "patient_key": "p1", "admit_at": T0, "discharge_at": None},
        {"encounter_key": "e_same", "patient_key": "p2", "admit_at": T0, "discharge_at": T0},
        {"encounter_key": "e_back", "patient_key": "p1", "admit_at": T0, "discharge_at": T0 - timedelta(hours=3)},
        {"encounter_key": "e_two", "patient_key": "p404", "admit_at": NOW + timedelta(days=9), "discharge_at": T0},
    ])
    valid, rejected = quarantine_invalid(df, "encounter", {"patient": patients}, latest_time=NOW)
    assert sorted(r.encounter_key for r in valid.collect()) == ["e_ok", "e_open", "e_same"]
    got = {r.encounter_key: r for r in rejected.collect()}
    assert got["e_back"].failed_rule == "encounter.discharge_not_before_admit"
    assert got["e_two"].failed_rule == "encounter.admit_at_not_in_future"  # first in suite order
    assert "encounter.patient_key_exists_in_patient" in got["e_two"].reason
    assert "encounter.discharge_not_before_admit" in got["e_two"].reason


def test_referential_rules_need_their_reference(spark: Any) -> None:
    df = contract_frame(spark, "observation", [obs("x", patient="p404")])
    with pytest.raises(LakehouseError, match="reference\\['patient'\\]"):
        quarantine_invalid(df, "observation", {})
    valid, rejected = quarantine_invalid(df, "observation", None, latest_time=NOW)  # skipped, logged
    assert (valid.count(), rejected.count()) == (1, 0)


def test_row_rules_compile_for_every_suite(spark: Any) -> None:
    reference = {t: contract_frame(spark, t, []) for t in tables()}  # any table a rule may refer to
    for table in tables():
        assert row_rules(table)
        empty = reference[table]
        valid, rejected = quarantine_invalid(empty, table, reference, latest_time=NOW)
        assert rejected.columns[-2:] == ["failed_rule", "reason"]


def test_flag_abnormal(spark: Any) -> None:
    df = spark.createDataFrame([(150.0, 70.0, 99.0), (50.0, 70.0, 99.0), (80.0, 70.0, 99.0), (80.0, None, None),
                                (None, 70.0, 99.0), (3.0, None, 2.0)],
                               "value_num DOUBLE, ref_low DOUBLE, ref_high DOUBLE")
    assert [r.abnormal_flag for r in flag_abnormal(df).collect()] == ["H", "L", "N", None, None, "H"]


def test_validate_writes_results_and_data_docs_and_fails_on_critical(spark: Any, catalog: Any,
                                                                     patients: DataFrame) -> None:
    observations = contract_frame(spark, "observation", GOOD_OBSERVATIONS)
    run_id = "dq-test-run"
    obs_result = validate(spark, observations, "observation", run_id, reference={"patient": patients},
                          latest_time=NOW)
    by_rule = {r["expectation"]: r for r in obs_result["results"]}
    assert obs_result["success"] is True, [r for r in obs_result["results"] if not r["success"]]
    assert by_rule["observation.heart_rate_range"]["category"] == "plausibility"
    assert by_rule["observation.patient_key_exists_in_patient"]["success"] is True
    assert len(by_rule) == len(load_suite("observation")["expectations"])

    # duplicate key and an orphan: critical failures
    bad_patients = contract_frame(spark, "encounter", [
        {"encounter_key": "e1", "patient_key": "p1", "admit_at": T0},
        {"encounter_key": "e1", "patient_key": "p404", "admit_at": T0}])
    enc_result = validate(spark, bad_patients, "encounter", run_id, reference={"patient": patients}, latest_time=NOW)
    enc = {r["expectation"]: r for r in enc_result["results"]}
    assert enc["encounter.encounter_key_unique"]["success"] is False
    assert enc["encounter.patient_key_exists_in_patient"]["success"] is False
    assert enc["encounter.patient_key_exists_in_patient"]["unexpected_count"] == 1
    assert enc["encounter.discharge_not_before_admit"]["success"] is True

    with pytest.raises(LakehouseError, match="critical data quality check.*encounter_key_unique"):
        write_results(catalog, [obs_result, enc_result])
    written = catalog.read(DQ_TABLE).collect()
    assert len(written) == len(obs_result["results"]) + len(enc_result["results"])
    assert {r.table for r in written} == {"silver.observation", "silver.encounter"}
    row = next(r for r in written if r.expectation == "encounter.encounter_key_unique")
    assert (row.run_id, row.severity, row.category, row.success) == ("dq-test-run", "critical", "conformance", False)
    docs = catalog.settings.root_path / "_system" / "data_docs"
    index = (docs / "index.html").read_text(encoding="utf-8")
    assert "silver.observation" in index and "silver.encounter" in index
    assert list(docs.glob("validations/silver/observation/**/*.html"))
    json.dumps(obs_result, default=str)  # results are plain data

    summary = write_results(catalog, obs_result)  # no critical failure: no raise
    assert summary["critical_failures"] == [] and summary["rows"] == len(obs_result["results"])
