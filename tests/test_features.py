"""Readmission features on small hand-made Silver tables: values, point-in-time correctness, the job."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest

from gold.charlson import mapping_frame, quan_mapping
from gold.features import FEATURE_TABLE, QUARANTINE_TABLE, build_features, readmission_features
from lakehouse.errors import LakehouseError
from lakehouse.runlog import read_runs, run_context
from silver import schemas

T = datetime


def rows_of(table: str, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    cols = schemas.columns(table)
    unknown = {k for r in rows for k in r} - set(cols)
    assert not unknown, unknown
    return [tuple(r.get(c) for c in cols) for r in rows]


def frame(spark: Any, table: str, rows: list[dict[str, Any]]) -> Any:
    return spark.createDataFrame(rows_of(table, rows), schemas.ddl(table))


E1_ADMIT, E1_DISCHARGE = T(2024, 1, 10, 8), T(2024, 1, 15, 12)


def enc(key: str, patient: str, admit: datetime | None, discharge: datetime | None, cls: str = "IMP") -> dict:
    return {"encounter_key": key, "patient_key": patient, "encounter_class": cls, "status": "finished",
            "admit_at": admit, "discharge_at": discharge}


ENCOUNTERS = [
    enc("E_old", "P1", T(2023, 3, 1), T(2023, 3, 4)),      # 10 months before E1: 12m window only
    enc("E0", "P1", T(2023, 9, 1), T(2023, 9, 3)),         # 4 months before E1
    enc("E_amb", "P1", T(2023, 12, 1), T(2023, 12, 1, 1), cls="AMB"),  # outpatient: not an admission
    enc("E_void", "P1", T(2023, 12, 5), T(2023, 12, 6)) | {"status": "entered-in-error"},
    enc("E1", "P1", E1_ADMIT, E1_DISCHARGE),
    enc("E2", "P1", T(2024, 2, 1), T(2024, 2, 5)),         # 17 days after E1's discharge: E1 is a readmission
    enc("E3", "P2", T(2024, 5, 1), T(2024, 5, 3, 6)),
    enc("E5", "P2", T(2024, 5, 20), None),                 # still admitted: no features, still a readmission of E3
    enc("E4", "P2", T(2025, 1, 2), T(2025, 1, 1)),         # discharge before admit: quarantined
]
# gold.fct_encounter as the dbt model gives it (its rules are tested by dbt unit tests of
# int_encounters_readmissions): E1 is readmitted by E2, E3 by E5 (still in the house); E2 is censored
OUTCOMES = [("E_old", True, False), ("E0", True, False), ("E_amb", False, False), ("E_void", False, False),
            ("E1", True, True), ("E2", True, None), ("E3", True, True), ("E5", False, False), ("E4", False, False)]
OUTCOME_DDL = "encounter_key STRING, is_index_admission BOOLEAN, readmitted_within_30d BOOLEAN"
PATIENTS = [
    {"patient_key": "P1", "gender": "male", "birth_date": date(1950, 6, 15), "birth_year": 1950},
    {"patient_key": "P2", "gender": "female", "is_age_90_plus": True},
]


def obs(key: str, loinc: str, value: float, unit: str, at: datetime, patient: str = "P1", **extra: Any) -> dict:
    return {"observation_key": key, "patient_key": patient, "loinc_code": loinc, "value_num": value, "unit": unit,
            "effective_at": at, "status": "final", **extra}


D = E1_DISCHARGE
OBSERVATIONS = [
    obs("g1", "2345-7", 150.0, "mg/dL", T(2024, 1, 14, 10)),
    obs("g0", "2345-7", 110.0, "mg/dL", T(2024, 1, 11, 10)),
    obs("c1", "2160-0", 1.4, "mg/dL", T(2024, 1, 1)),             # 9 days before admission: carried forward
    obs("h1", "718-7", 12.0, "g/dL", T(2023, 11, 1)),             # 70 days before admission: too old
    obs("na1", "2951-2", 140.0, "mg/dL", T(2024, 1, 12)),         # wrong unit: not comparable, not used
    obs("k1", "2823-3", 3.9, "mmol/L", T(2024, 1, 11)),
    obs("k2", "2823-3", 4.1, "mmol/L", T(2024, 1, 14)),
    obs("k3", "2823-3", 9.9, "mmol/L", T(2024, 1, 14, 12), status="entered-in-error"),
    obs("hr1", "8867-4", 80.0, "/min", D - timedelta(hours=2)),
    obs("hr2", "8867-4", 90.0, "/min", D - timedelta(hours=10)),
    obs("hr0", "8867-4", 140.0, "/min", D - timedelta(hours=30)),  # outside the 24 h window
    obs("bp1", "8480-6", 130.0, "mm[Hg]", D - timedelta(hours=30)),  # only one, 30 h before: carried forward
    obs("t1", "8310-5", 37.0, "Cel", D - timedelta(hours=3)),
    obs("t2", "8310-5", 38.5, "Cel", D - timedelta(hours=20)),
    obs("s1", "59408-5", 95.0, "%", D - timedelta(hours=1)),
    obs("s2", "59408-5", 91.0, "%", D - timedelta(hours=5)),
]
# planted after E1's discharge: must change nothing about E1
LATER_OBSERVATIONS = [
    obs("g_late", "2345-7", 999.0, "mg/dL", D + timedelta(minutes=1)),
    obs("hb_late", "718-7", 5.0, "g/dL", D + timedelta(hours=1)),
    obs("hr_late", "8867-4", 200.0, "/min", D + timedelta(hours=1)),
    obs("t_late", "8310-5", 41.0, "Cel", D + timedelta(hours=1)),
    obs("s_late", "59408-5", 70.0, "%", D + timedelta(hours=1)),
    obs("bp_late", "8480-6", 200.0, "mm[Hg]", D + timedelta(seconds=1)),
]


def cond(key: str, icd: str, recorded: datetime | None, onset: datetime | None = None, patient: str = "P1",
         **extra: Any) -> dict:
    return {"condition_key": key, "patient_key": patient, "icd10cm_code": icd, "recorded_at": recorded,
            "onset_at": onset, "verification_status": "confirmed", **extra}


CONDITIONS = [
    cond("chf", "I50.9", None, onset=T(2023, 9, 2)),       # no recorded_at: onset is the effective time
    cond("dm", "E11.9", T(2024, 1, 12)),                   # diabetes without complication
    cond("dmc", "E11.22", T(2024, 1, 16)),                 # with complication, after E1's discharge
    cond("pud", "K25.0", T(2023, 1, 1), verification_status="refuted"),
    cond("untimed", "I21.0", None),                        # no time: cannot be shown to be known at discharge
]
LATER_CONDITIONS = [cond("meta", "C78.0", D + timedelta(hours=1)), cond("aids", "B20", D + timedelta(days=3))]


@pytest.fixture(scope="module")
def silver_frames(spark: Any) -> dict[str, Any]:
    return {
        "encounter": frame(spark, "encounter", ENCOUNTERS),
        "patient": frame(spark, "patient", PATIENTS),
        "observation": frame(spark, "observation", OBSERVATIONS),
        "condition": frame(spark, "condition", CONDITIONS),
        "outcomes": spark.createDataFrame(OUTCOMES, OUTCOME_DDL),
    }


def build(spark: Any, frames: dict[str, Any]) -> dict[str, dict[str, Any]]:
    df = readmission_features(frames["encounter"], frames["patient"], frames["condition"], frames["observation"],
                              mapping_frame(spark), frames["outcomes"])
    return {r["encounter_key"]: r.asDict() for r in df.collect()}


@pytest.fixture(scope="module")
def features(spark: Any, silver_frames: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return build(spark, silver_frames)


def test_one_row_per_discharged_inpatient_encounter(features: dict) -> None:
    assert sorted(features) == ["E0", "E1", "E2", "E3", "E_old"]


def test_demographics_and_length_of_stay(features: dict) -> None:
    e1, e3 = features["E1"], features["E3"]
    assert (e1["age_at_admission"], e1["age_band"], e1["sex"]) == (73, "65-74", "male")
    assert (e3["age_at_admission"], e3["age_band"], e3["sex"]) == (90, "90+", "female")
    assert e1["length_of_stay_days"] == pytest.approx(5 + 4 / 24, abs=1e-4)


def test_prior_admissions_and_label(features: dict) -> None:
    assert (features["E1"]["prior_admissions_6m"], features["E1"]["prior_admissions_12m"]) == (1, 2)
    assert (features["E2"]["prior_admissions_6m"], features["E2"]["prior_admissions_12m"]) == (2, 3)
    assert features["E_old"]["prior_admissions_12m"] == 0
    labels = {k: v["readmitted_within_30d"] for k, v in features.items()}
    # the label is gold.fct_encounter's, censored (None) included: one definition, the dbt model's
    assert labels == {"E_old": False, "E0": False, "E1": True, "E2": None, "E3": True}


def test_charlson_uses_conditions_known_at_discharge(features: dict) -> None:
    assert features["E0"]["charlson_index"] == 1 and features["E0"]["charlson_categories"] == ["chf"]
    assert features["E1"]["charlson_categories"] == ["chf", "diab"] and features["E1"]["charlson_index"] == 2
    # E2: the complicated diabetes replaces the uncomplicated one (Charlson hierarchy)
    assert features["E2"]["charlson_categories"] == ["chf", "diabwc"] and features["E2"]["charlson_index"] == 3
    assert features["E3"]["charlson_index"] == 0 and features["E3"]["charlson_categories"] == []


def test_last_labs_with_explicit_carry_forward(features: dict) -> None:
    e1 = features["E1"]
    assert (e1["lab_glucose"], e1["lab_glucose_imputed"]) == (150.0, False)
    assert (e1["lab_creatinine"], e1["lab_creatinine_imputed"]) == (1.4, True)
    assert (e1["lab_hemoglobin"], e1["lab_hemoglobin_imputed"]) == (None, False)
    assert (e1["lab_sodium"], e1["lab_sodium_imputed"]) == (None, False)
    assert (e1["lab_potassium"], e1["lab_potassium_imputed"]) == (4.1, False)
    # E2 (admitted 2024-02-01): E1's glucose of 2024-01-14 is within 30 days, carried forward
    assert (features["E2"]["lab_glucose"], features["E2"]["lab_glucose_imputed"]) == (150.0, True)


def test_vitals_in_the_last_24_hours(features: dict) -> None:
    e1 = features["E1"]
    assert (e1["vital_heart_rate_mean"], e1["vital_heart_rate_mean_imputed"]) == (85.0, False)
    assert (e1["vital_systolic_bp_mean"], e1["vital_systolic_bp_mean_imputed"]) == (130.0, True)
    assert (e1["vital_temperature_max"], e1["vital_temperature_max_imputed"]) == (38.5, False)
    assert (e1["vital_spo2_min"], e1["vital_spo2_min_imputed"]) == (91.0, False)
    assert (features["E3"]["vital_spo2_min"], features["E3"]["vital_spo2_min_imputed"]) == (None, False)


def test_data_after_discharge_is_not_used(spark: Any, silver_frames: dict[str, Any], features: dict) -> None:
    planted = dict(silver_frames)
    planted["observation"] = silver_frames["observation"].unionByName(frame(spark, "observation", LATER_OBSERVATIONS))
    planted["condition"] = silver_frames["condition"].unionByName(frame(spark, "condition", LATER_CONDITIONS))
    after = build(spark, planted)
    assert after["E1"] == features["E1"]
    # the planted rows are real data: the next stay (E2, discharged later) does see them
    assert after["E2"]["charlson_index"] == features["E2"]["charlson_index"] + 6 + 6
    assert after["E2"]["lab_hemoglobin"] == 5.0


@pytest.mark.fast
def test_charlson_mapping_is_quan_2005() -> None:
    rows = quan_mapping()
    weights = {cat: w for cat, w, _ in rows}
    assert len(weights) == 17
    assert sum(weights.values()) == 33  # Charlson 1987 weights over the 17 categories
    assert ("ami", 1, "I252") in rows and ("metacanc", 6, "C77") in rows and ("aids", 6, "B20") in rows


def test_build_features_job_writes_merges_and_quarantines(catalog: Any, settings: Any) -> None:
    for name, rows in (("encounter", ENCOUNTERS), ("patient", PATIENTS), ("observation", OBSERVATIONS),
                       ("condition", CONDITIONS)):
        catalog.create(f"silver.{name}", schemas.ddl(name))
        catalog.append(frame(catalog.spark, name, rows), f"silver.{name}")
    with run_context("features", settings) as run, pytest.raises(LakehouseError, match="run `lakehouse gold`"):
        build_features(settings, run)  # the label is Gold's: no Gold, no features
    catalog.create("gold.fct_encounter", OUTCOME_DDL)
    catalog.append(catalog.spark.createDataFrame(OUTCOMES, OUTCOME_DDL), "gold.fct_encounter")
    with run_context("features", settings) as run:
        first = build_features(settings, run)
    assert (first["rows"], first["quarantined"], first["censored"], first["readmission_rate"]) == (5, 1, 1, 0.5)
    q = catalog.read(QUARANTINE_TABLE).collect()
    assert [(r["encounter_key"], r["reason"]) for r in q] == [("E4", "discharge_at is before admit_at")]
    version = catalog.version(FEATURE_TABLE)
    with run_context("features", settings) as run:
        again = build_features(settings, run)
    assert catalog.version(FEATURE_TABLE) == version, "re-running with no new input must not write"
    assert again["inserted"] == again["updated"] == 0
    outputs = read_runs(settings)[-1]["outputs"]
    assert FEATURE_TABLE in outputs


EXPECTED_E1 = {
    "age_at_admission": 73, "age_band": "65-74", "sex": "male", "prior_admissions_6m": 1, "prior_admissions_12m": 2,
    "charlson_index": 2, "charlson_categories": ["chf", "diab"], "lab_glucose": 150.0, "lab_glucose_imputed": False,
    "lab_creatinine": 1.4, "lab_creatinine_imputed": True, "lab_hemoglobin": None, "lab_potassium": 4.1,
    "vital_heart_rate_mean": 85.0, "vital_systolic_bp_mean": 130.0, "vital_systolic_bp_mean_imputed": True,
    "vital_temperature_max": 38.5, "vital_spo2_min": 91.0, "readmitted_within_30d": True,
}


def test_expected_row_summary(features: dict) -> None:
    assert {k: features["E1"][k] for k in EXPECTED_E1} == EXPECTED_E1


@pytest.mark.classic_spark
def test_features_on_classic_spark() -> None:
    """The same transforms on classic local PySpark (the spark-submit / Databricks path) give the same rows."""
    import os

    os.environ.pop("SPARK_REMOTE", None)
    from pyspark.sql import SparkSession

    classic = (SparkSession.builder.master("local[1]").appName("features-classic")
               .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false").getOrCreate())
    try:
        frames = {"encounter": frame(classic, "encounter", ENCOUNTERS), "patient": frame(classic, "patient", PATIENTS),
                  "observation": frame(classic, "observation", OBSERVATIONS),
                  "condition": frame(classic, "condition", CONDITIONS),
                  "outcomes": classic.createDataFrame(OUTCOMES, OUTCOME_DDL)}
        out = build(classic, frames)
        assert sorted(out) == ["E0", "E1", "E2", "E3", "E_old"]
        assert {k: out["E1"][k] for k in EXPECTED_E1} == EXPECTED_E1
        assert out["E2"]["charlson_index"] == 3 and out["E3"]["age_band"] == "90+"
    finally:
        classic.stop()
