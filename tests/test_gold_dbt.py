"""Gold with dbt on the embedded engine: one lakehouse root for the module, three real `dbt build` runs.

Silver is made here from small hand-made rows that follow ``silver.schemas`` exactly, so these tests do not
depend on the Silver code. Build 1: initial data. Build 2: nothing changed. Build 3: patient p1 moves (a new
silver.patient_history version with a new ZIP3) and a new inpatient admission arrives.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from helpers import attach, new_lakehouse

from gold.dbt_runner import PROJECT_DIR, _runner, build_gold, dbt_args, docs_generate, gold_versions
from lakehouse.catalog import Catalog
from lakehouse.config import set_settings
from lakehouse.errors import LakehouseError
from lakehouse.runlog import Run
from silver.schemas import TABLES, columns, ddl, natural_key

SEEDS = ("ref_admission_types", "ref_age_bands", "ref_code_systems", "ref_date_spine", "ref_departments",
         "ref_discharge_dispositions", "ref_encounter_classes", "ref_planned_readmission_reasons",
         "ref_vital_signs")
GOLD_MODELS = ("dim_patient", "dim_practitioner", "dim_organization", "dim_department", "dim_date", "dim_code",
               "fct_encounter", "fct_observation", "fct_condition", "fct_medication", "fct_procedure",
               "fct_imaging_study", "mart_readmission_30d", "mart_length_of_stay", "mart_daily_vitals")
T = datetime


OFFSET_ANCHOR = datetime(2000, 1, 1)  # Silver's offsets count from the patient's first admission; any anchor
BIRTH_YEARS = {"p1": 1950, "p2": 1990, "p3": 1930, "p4": 2015}


def enc(key: str, patient: str, cls: str, admit: datetime, discharge: datetime | None, dept: str,
        practitioner: str | None = "dr1") -> dict[str, Any]:
    """A silver.encounter row with the durations Silver computes from the true times (encounter.with_intervals);
    stay_sequence and days_since_previous_discharge are filled by :func:`with_stay_order`."""
    stay = (discharge - admit) if discharge is not None else None
    return dict(encounter_key=key, patient_key=patient, encounter_class=cls, admit_at=admit, discharge_at=discharge,
                department=dept, practitioner_key=practitioner, organization_key="org1", type_code="32485007",
                type_system="http://snomed.info/sct", type_display="Hospital admission", status="finished",
                discharge_disposition="home",
                admit_offset_seconds=int((admit - OFFSET_ANCHOR).total_seconds()),
                discharge_offset_seconds=int((discharge - OFFSET_ANCHOR).total_seconds()) if discharge else None,
                length_of_stay_hours=int(stay.total_seconds() // 3600) if stay is not None else None,
                length_of_stay_days=stay.days if stay is not None else None,
                age_at_admission=min(90, admit.year - BIRTH_YEARS[patient]) if patient in BIRTH_YEARS else None)


def with_stay_order(rows: list[dict[str, Any]], earlier: list[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """``rows`` with stay_sequence and days_since_previous_discharge over the patient's stays in ``earlier`` +
    ``rows`` (by admission time), as Silver numbers them."""
    stays = sorted([*earlier, *rows], key=lambda r: (r["patient_key"], r["admit_at"]))
    order: dict[str, tuple[int, int | None]] = {}
    for i, r in enumerate(stays):
        same = [x for x in stays[:i] if x["patient_key"] == r["patient_key"]]
        gap = (r["admit_at"] - same[-1]["discharge_at"]).days if same and same[-1]["discharge_at"] else None
        order[r["encounter_key"]] = (len(same) + 1, gap)
    return [{**r, "stay_sequence": order[r["encounter_key"]][0],
             "days_since_previous_discharge": order[r["encounter_key"]][1]} for r in rows]


def patient(key: str, zip3: str, updated: datetime, birth_year: int = 1950) -> dict[str, Any]:
    return dict(patient_key=key, gender="female", birth_year=birth_year, is_age_90_plus=False, zip3=zip3,
                state="MA", country="US", deceased=False, insurance="medicare", source_updated_at=updated)


def version(key: str, zip3: str, valid_from: datetime, birth_year: int = 1950) -> dict[str, Any]:
    """A row of silver.patient_history: the patient's de-identified state from ``valid_from`` on."""
    row = patient(key, zip3, valid_from, birth_year)
    del row["source_updated_at"]
    return {**row, "valid_from": valid_from}


def vital(key: str, patient_key: str, loinc: str, value: float, unit: str, at: datetime) -> dict[str, Any]:
    return dict(observation_key=key, patient_key=patient_key, category="vital-signs", loinc_code=loinc,
                value_num=value, unit=unit, is_unit_known=True, effective_at=at, status="final", is_mapped=True)


SILVER_1: dict[str, list[dict[str, Any]]] = {
    "patient": [patient("p1", "021", T(2023, 6, 1)), patient("p2", "100", T(2023, 6, 1), 1990),
                patient("p3", "606", T(2023, 6, 1), 1930), patient("p4", "945", T(2023, 6, 1), 2015)],
    "patient_history": [version("p1", "021", T(2023, 6, 1)), version("p2", "100", T(2023, 6, 1), 1990),
                        version("p3", "606", T(2023, 6, 1), 1930), version("p4", "945", T(2023, 6, 1), 2015)],
    "encounter": with_stay_order([
        enc("e1", "p1", "IMP", T(2024, 1, 1, 8), T(2024, 1, 5, 12), "Cardiology"),
        enc("e2", "p1", "inpatient", T(2024, 1, 20, 8), T(2024, 1, 22, 12), " cardiology "),
        enc("e3", "p1", "IMP", T(2024, 2, 21, 8), T(2024, 2, 23, 12), "Cardiology"),       # 30 d 20 h after e2
        enc("e4", "p2", "IMP", T(2024, 1, 10, 9), T(2024, 1, 12, 9), "Surgery"),
        enc("e5", "p2", "EMER", T(2024, 1, 15, 9), T(2024, 1, 15, 13), "Emergency"),      # not inpatient
        enc("e6", "p2", "IMP", T(2024, 2, 11, 9), T(2024, 2, 13, 9), "Surgery"),          # exactly 30 days
        enc("e7", "p3", "IMP", T(2024, 3, 1, 8), T(2024, 3, 10, 8), "ICU"),
        enc("e8", "p3", "IMP", T(2024, 3, 5, 8), T(2024, 3, 12, 8), "ICU"),               # overlapping transfer
        enc("e9", "p4", "IMP", T(2024, 3, 3, 8), None, "Pediatrics", practitioner="dr-missing"),  # still admitted
        enc("e11", "px", "AMB", T(2024, 3, 4, 8), T(2024, 3, 4, 9), None),                # unknown patient/dept
    ]),
    "observation": [
        vital("o1", "p1", "8867-4", 80.0, "/min", T(2024, 1, 2, 8)),
        vital("o2", "p1", "8867-4", 100.0, "/min", T(2024, 1, 2, 20)),
        vital("o3", "p1", "8480-6", 130.0, "mm[Hg]", T(2024, 1, 2, 8)),
        vital("o4", "p1", "8310-5", 101.3, "[degF]", T(2024, 1, 2, 9)),                 # not canonical: left out
        dict(vital("o5", "p2", "2345-7", 250.0, "mg/dL", T(2024, 1, 11, 7)), category="laboratory",
             ref_low=70.0, ref_high=140.0),
    ],
    "condition": [dict(condition_key="c1", patient_key="p1", encounter_key="e1", code="I50.9",
                       code_system="http://hl7.org/fhir/sid/icd-10-cm", display="Heart failure",
                       icd10cm_code="I50.9", snomed_code="84114007", onset_at=T(2024, 1, 1, 9))],
    "medication_request": [dict(medication_request_key="m1", patient_key="p1", encounter_key="e1",
                                rxnorm_code="197361", display="Amlodipine 5 MG", status="active", intent="order",
                                authored_at=T(2024, 1, 1, 10), practitioner_key="dr1")],
    "procedure": [dict(procedure_key="pr1", patient_key="p3", encounter_key="e7", code="232717009",
                       code_system="http://snomed.info/sct", display="CABG", snomed_code="232717009",
                       performed_start=T(2024, 3, 2, 8), performed_end=T(2024, 3, 2, 12, 30))],
    "imaging_study": [dict(imaging_study_key="s1", patient_key="p3", encounter_key="e7", modalities=["CT", "CR"],
                           started_at=T(2024, 3, 1, 10), series_count=2, instance_count=40)],
    "practitioner": [dict(practitioner_key="dr1", gender="male", specialty_code="394579002",
                          specialty_display="Cardiology")],
    "organization": [dict(organization_key="org1", name="General Hospital", zip3="021", state="MA")],
}
P1_MOVED_AT = T(2024, 2, 1)
SILVER_3_PATIENT = [patient("p1", "945", P1_MOVED_AT)]
SILVER_3_HISTORY = [version("p1", "945", P1_MOVED_AT)]
SILVER_3_ENCOUNTER = with_stay_order([enc("e10", "p1", "IMP", T(2024, 3, 1, 8), T(2024, 3, 4, 8), "Cardiology")],
                                     earlier=SILVER_1["encounter"])


def silver_frame(spark: Any, table: str, rows: list[dict[str, Any]], run_id: str, at: datetime) -> Any:
    lineage = {"sources": ["fhir"], "bronze_hashes": [f"{run_id}-{i}" for i in range(1)], "silver_run_id": run_id,
               "silver_updated_at": at}
    full = [{c: {**row, **lineage}.get(c) for c in columns(table)} for row in rows]
    return spark.createDataFrame(full, schema=spark.table(f"silver.{table}").schema)


@dataclass
class GoldBuilds:
    settings: Any
    catalog: Catalog
    results: list[dict[str, Any]] = field(default_factory=list)
    versions: list[dict[str, int]] = field(default_factory=list)
    marts: list[pd.DataFrame] = field(default_factory=list)
    silver_encounters: list[pd.DataFrame] = field(default_factory=list)


def _mart(catalog: Catalog) -> pd.DataFrame:
    df = catalog.read("gold.mart_readmission_30d").toPandas()
    return df.sort_values(["discharge_month", "department_key"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def gold(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GoldBuilds]:
    settings = new_lakehouse(tmp_path_factory.mktemp("gold") / "lh")
    catalog = Catalog(spark, settings)  # type: ignore[arg-type]
    for table in TABLES:
        catalog.create(f"silver.{table}", ddl(table))
        if SILVER_1.get(table):
            catalog.append(silver_frame(spark, table, SILVER_1[table], "s1", T(2024, 4, 1)), f"silver.{table}")
    builds = GoldBuilds(settings, catalog)

    def build() -> None:
        builds.silver_encounters.append(catalog.read("silver.encounter").toPandas())
        builds.results.append(build_gold(settings, Run("gold", settings)))
        builds.versions.append(gold_versions(settings))
        builds.marts.append(_mart(catalog))

    build()
    build()
    for table, rows in (("patient", SILVER_3_PATIENT), ("patient_history", SILVER_3_HISTORY),
                        ("encounter", SILVER_3_ENCOUNTER)):
        catalog.merge(silver_frame(spark, table, rows, "s3", T(2024, 4, 2)), f"silver.{table}",
                      natural_key(table), ignore_changes=("silver_run_id", "silver_updated_at"))
    build()
    yield builds
    set_settings(None)


def test_build_passes_and_writes_external_delta_tables(gold: GoldBuilds, spark: Any) -> None:
    nodes = gold.results[0]["nodes"]
    assert set(nodes) == {"model", "seed", "test", "unit_test"}
    assert nodes["model"] == {"success": nodes["model"]["success"]} and nodes["model"]["success"] >= 30
    assert set(nodes["test"]) <= {"pass", "warn"} and nodes["test"]["pass"] > 100
    assert set(nodes["unit_test"]) == {"pass"} and nodes["unit_test"]["pass"] >= 6  # dbt unit_tests: in models/
    assert nodes["test"].get("warn") == 1  # fct_encounter.patient_sk is null for the unknown patient px
    root = gold.settings.root_path
    for name in GOLD_MODELS + SEEDS:
        assert (root / "gold" / name / "_delta_log").is_dir(), name
        assert gold.results[0]["tables"][f"gold.{name}"]["rows"] >= 0
    info = spark.sql("SHOW TABLE EXTENDED IN gold LIKE 'fct_encounter'").collect()[0]["information"]
    assert f"Location: {root / 'gold' / 'fct_encounter'}" in info and "Type: EXTERNAL" in info
    assert not list((root / "gold").glob("*-*-*-*-*")), "no managed <name>-<uuid> tables"
    fct = gold.catalog.read("gold.fct_encounter").toPandas().set_index("encounter_key")
    assert len(fct) == len(SILVER_1["encounter"]) + 1
    assert fct.loc["e1", "length_of_stay_days"] == pytest.approx(4 + 4 / 24, abs=1e-4)
    assert fct.loc["e5", "encounter_class_group"] == "emergency" and fct.loc["e11", "department_key"] == "UNKNOWN"
    assert pd.isna(fct.loc["e11", "patient_sk"]) and not fct.loc["e9", "is_index_admission"]
    practitioners = gold.catalog.read("gold.dim_practitioner").toPandas().set_index("practitioner_key")
    assert bool(practitioners.loc["dr-missing", "is_inferred"]) and not practitioners.loc["dr1", "is_inferred"]


def test_fact_columns_and_vitals(gold: GoldBuilds) -> None:
    obs = gold.catalog.read("gold.fct_observation").toPandas().set_index("observation_key")
    assert obs.loc["o5", "abnormal_flag"] == "H" and bool(obs.loc["o5", "is_abnormal"])
    vitals = gold.catalog.read("gold.mart_daily_vitals").toPandas().set_index(["patient_key", "vital_date"])
    day = vitals.loc[("p1", pd.Timestamp(2024, 1, 2).date())]
    assert (day["heart_rate_mean"], day["heart_rate_min"], day["heart_rate_max"]) == (90.0, 80.0, 100.0)
    assert day["systolic_bp_max"] == 130.0 and pd.isna(day["temperature_mean"]) and day["measurement_count"] == 3
    imaging = gold.catalog.read("gold.fct_imaging_study").toPandas()
    assert imaging["modalities"].tolist() == ["CR,CT"]
    codes = gold.catalog.read("gold.dim_code").toPandas().set_index(["code_system", "code"])
    assert codes.loc[("http://hl7.org/fhir/sid/icd-10-cm", "I50.9"), "standard_code"] == "I50.9"
    assert codes.loc[("http://loinc.org", "8867-4"), "code_system_name"] == "LOINC"


def test_second_build_without_silver_changes_writes_nothing(gold: GoldBuilds) -> None:
    first, second = gold.versions[0], gold.versions[1]
    for name in GOLD_MODELS + SEEDS:
        assert second[name] == first[name], f"{name} got a new Delta version without any Silver change"
    assert gold.results[1]["changed_tables"] == []
    pd.testing.assert_frame_equal(gold.marts[0], gold.marts[1])


def test_scd2_address_change_adds_a_version_and_repoints_later_facts(gold: GoldBuilds) -> None:
    dim = gold.catalog.read("gold.dim_patient").toPandas()
    p1 = dim[dim.patient_key == "p1"].sort_values("valid_from").reset_index(drop=True)
    assert p1["zip3"].tolist() == ["021", "945"]
    assert p1["is_current"].tolist() == [False, True]
    assert p1.loc[0, "valid_to"] == P1_MOVED_AT == p1.loc[1, "valid_from"]
    assert (dim.groupby("patient_key")["is_current"].sum() == 1).all()
    old_sk, new_sk = p1.loc[0, "patient_sk"], p1.loc[1, "patient_sk"]
    fct = gold.catalog.read("gold.fct_encounter").toPandas().set_index("encounter_key")
    assert fct.loc[["e1", "e2"], "patient_sk"].tolist() == [old_sk, old_sk]     # before the move
    assert fct.loc[["e3", "e10"], "patient_sk"].tolist() == [new_sk, new_sk]    # after (e3 existed already)
    changed = set(gold.results[2]["changed_tables"])
    assert {"gold.dim_patient", "gold.fct_encounter", "gold.mart_readmission_30d"} <= changed
    assert "gold.fct_procedure" not in changed and "gold.dim_date" not in changed
    assert not changed & {f"gold.{s}" for s in SEEDS}
    assert gold.catalog.read("gold.ref_departments").count() == 16  # reloading kept one copy of each row


def independent_readmissions(encounters: pd.DataFrame) -> pd.DataFrame:
    """The 30-day readmission mart computed with pandas straight from silver.encounter, by the definition in
    int_encounters_readmissions (the reference tables are the dbt seeds, read as CSV)."""
    seeds = PROJECT_DIR / "seeds"
    dispositions = pd.read_csv(seeds / "ref_discharge_dispositions.csv", dtype=str)
    category = dict(zip(dispositions.discharge_disposition.str.lower(), dispositions.disposition_category,
                        strict=True))
    types = pd.read_csv(seeds / "ref_admission_types.csv", dtype=str)
    planned_types = set(types[types.is_planned == "true"].admission_type.str.upper())
    planned_reasons = pd.read_csv(seeds / "ref_planned_readmission_reasons.csv", dtype=str) \
        .reason_code_prefix.str.replace(".", "").str.upper().tolist()
    inpatient_classes = {"imp", "inpatient", "i", "acute", "nonac"}
    e = encounters.copy()
    status = e["status"].fillna("").str.strip().str.lower()
    e = e[e["encounter_class"].str.strip().str.lower().isin(inpatient_classes) & e["admit_at"].notna()
          & ~status.isin({"cancelled", "entered-in-error", "planned"})].sort_values(["patient_key", "admit_at"])
    e["category"] = [category.get(str(d).strip().lower(), "other") if isinstance(d, str) and d.strip() else None
                     for d in e["discharge_disposition"]]
    reason = e["reason_code"].fillna("").str.replace(".", "").str.upper()
    e["planned"] = e["admission_type"].fillna("").str.strip().str.upper().isin(planned_types) | reason.map(
        lambda r: bool(r) and any(r.startswith(p) for p in planned_reasons))
    nxt = e.groupby("patient_key")["admit_at"].shift(-1)
    e["continues"] = e["discharge_at"].notna() & nxt.notna() & (
        (nxt <= e["discharge_at"])
        | ((e["category"] == "transfer_acute") & (nxt - e["discharge_at"] <= timedelta(days=1))))
    e["transfer_in"] = e.groupby("patient_key")["continues"].shift(1, fill_value=False).astype(bool)
    index = e[e["discharge_at"].notna() & (e["discharge_at"] >= e["admit_at"]) & ~e["continues"]
              & ~e["category"].isin({"died", "against_advice", "transfer_acute", "still_patient"})].copy()

    def outcome(row: pd.Series) -> bool | None:
        later = e[(e.patient_key == row.patient_key) & (e.encounter_key != row.encounter_key) & ~e.transfer_in
                  & (e.admit_at > row.discharge_at)]
        first = later.sort_values("admit_at").head(1)
        if len(first) and first.admit_at.iloc[0] - row.discharge_at <= timedelta(days=30):
            return not bool(first.planned.iloc[0])
        followed = row.get("has_30_day_follow_up")
        return None if followed is not None and not pd.isna(followed) and not bool(followed) else False

    index["readmitted"] = index.apply(outcome, axis=1)
    dept = index["department"].fillna("").str.strip().str.upper()
    index["department_key"] = dept.where(dept != "", "UNKNOWN")
    index["discharge_month"] = index["discharge_at"].dt.to_period("M").dt.start_time.dt.date
    known = index[index["readmitted"].notna()]
    out = known.groupby(["discharge_month", "department_key"]).agg(
        index_discharges=("encounter_key", "count"), readmissions_30d=("readmitted", "sum")).reset_index()
    out["readmission_rate"] = (out.readmissions_30d / out.index_discharges).round(6)
    return out.sort_values(["discharge_month", "department_key"]).reset_index(drop=True)


@pytest.mark.parametrize("build", [0, 2])
def test_readmission_mart_equals_independent_pandas(gold: GoldBuilds, build: int) -> None:
    expected = independent_readmissions(gold.silver_encounters[build])
    got = gold.marts[build][["discharge_month", "department_key", "index_discharges", "readmissions_30d",
                             "readmission_rate"]]
    assert len(got) == len(expected) > 0
    for col in expected.columns:
        assert got[col].tolist() == pytest.approx(expected[col].tolist()) if "rate" in col \
            else got[col].tolist() == expected[col].tolist(), col
    assert got["readmissions_30d"].sum() >= 2  # e1 (within 15 days) and e4 (exactly 30 days) at least


def test_time_travel_returns_the_old_report(gold: GoldBuilds) -> None:
    old_version = gold.versions[0]["mart_readmission_30d"]
    assert gold.versions[2]["mart_readmission_30d"] > old_version
    old = gold.catalog.read("gold.mart_readmission_30d", version=old_version).toPandas()
    old = old.sort_values(["discharge_month", "department_key"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(old, gold.marts[0])
    now = _mart(gold.catalog)
    feb = (now.year_month == "2024-02") & (now.department_key == "CARDIOLOGY")
    feb_old = (old.year_month == "2024-02") & (old.department_key == "CARDIOLOGY")
    assert old.loc[feb_old, "readmissions_30d"].item() == 0     # e3 had no readmission yet
    assert now.loc[feb, "readmissions_30d"].item() == 1         # e10 readmits e3 within 30 days
    assert not now.equals(old)


def _compiled_sql(settings: Any, inline: str) -> str:
    result = _runner().invoke(dbt_args(settings, ["compile", "--quiet", "--inline", inline]))
    assert result.success, result.exception
    return str(result.result.results[0].node.compiled_code)


def test_scd2_generic_test_catches_overlaps_and_double_current_rows(gold: GoldBuilds, spark: Any) -> None:
    bad = pd.DataFrame([
        ("a", T(1900, 1, 1), T(2024, 3, 1), False),
        ("a", T(2024, 2, 1), T(2200, 1, 1), True),     # overlaps the first range
        ("b", T(1900, 1, 1), T(2024, 1, 1), True),
        ("b", T(2024, 1, 1), T(2200, 1, 1), True),     # two current rows
        ("c", T(1900, 1, 1), T(2024, 1, 1), False),
        ("c", T(2024, 1, 1), T(2200, 1, 1), True),     # valid
    ], columns=["patient_key", "valid_from", "valid_to", "is_current"])
    spark.createDataFrame(bad).createOrReplaceTempView("bad_patient_versions")
    sql = _compiled_sql(gold.settings,
                        "{{ test_scd2_valid_ranges(model='bad_patient_versions', entity_column='patient_key') }}")
    violations = spark.sql(sql).toPandas()
    assert set(violations.entity) == {"a", "b"}
    assert violations[violations.entity == "a"].reason.str.contains("overlaps").any()
    assert "has 2 current rows" in violations[violations.entity == "b"].reason.tolist()
    good = spark.sql(sql.replace("bad_patient_versions", "gold.dim_patient")).toPandas()
    assert good.empty


def test_build_failure_names_the_failing_test(gold: GoldBuilds, spark: Any, tmp_path: Path) -> None:
    try:
        settings = new_lakehouse(tmp_path / "lh")
        catalog = Catalog(spark, settings)  # type: ignore[arg-type]
        for table in TABLES:
            catalog.create(f"silver.{table}", ddl(table))
        twice = [patient("dup", "021", T(2024, 1, 1)), patient("dup", "100", T(2024, 1, 1))]
        catalog.append(silver_frame(spark, "patient", twice, "bad", T(2024, 1, 2)), "silver.patient")
        with pytest.raises(LakehouseError, match=r"test source_unique_silver_patient_patient_key fail: 1 failing"):
            build_gold(settings, Run("gold", settings), select=["source:silver.patient"])
    finally:
        attach(gold.settings)


def test_docs_generate_writes_the_site_with_gold_columns(gold: GoldBuilds) -> None:
    index = docs_generate(gold.settings)
    assert index.name == "index.html" and index.stat().st_size > 0
    assert index.is_relative_to(gold.settings.root_path / "_system" / "dbt")
    catalog = json.loads((index.parent / "catalog.json").read_text())
    node = catalog["nodes"]["model.clinical_lakehouse.fct_encounter"]
    assert {"encounter_key", "patient_sk", "readmitted_within_30d"} <= set(node["columns"])
    manifest = json.loads((index.parent / "manifest.json").read_text())
    marts = [n for n in manifest["nodes"].values() if n["resource_type"] == "model" and "/marts/" in n["path"]
             or n["path"].startswith("marts/")]
    assert marts and all(n["description"] for n in marts)
    for n in (m for m in marts if m["resource_type"] == "model"):  # every output column is documented
        built = set(catalog["nodes"][n["unique_id"]]["columns"])
        undocumented = built - {c for c, doc in n["columns"].items() if doc["description"]}
        assert not undocumented, f"{n['name']}: {sorted(undocumented)}"
