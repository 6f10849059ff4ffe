"""The two de-identification profiles, built end to end from the same synthetic input (silver/deid/POLICY.md).

``safe_harbor``: no Silver or Gold date keeps a day or month, record keys are random surrogates from the
restricted mapping table (stable across runs, not the HMAC pseudonyms), and Gold's readmissions and lengths of stay
are the same as under ``expert_determination`` because both come from Silver's durations. Every Silver and Gold
table names the profile that built it.
"""

from __future__ import annotations

import json
import re
import shutil
from typing import Any

import pytest
from helpers import TEST_KEY, attach, generated_patient_key, new_lakehouse
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, TimestampNTZType, TimestampType

from lakehouse import engine
from lakehouse.catalog import PROPERTY_PREFIX, Catalog
from lakehouse.config import Settings
from lakehouse.runlog import run_context
from lakehouse.staging import staging
from lakehouse.status import deid_status, table_status
from lakehouse_app import pipeline
from silver.deid.surrogate import SURROGATE_TABLE
from silver.job import _Builder
from synthetic import MANIFEST_PATH, generate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3000)]  # two whole pipelines

PROFILES = ("expert_determination", "safe_harbor")
PATIENTS = 10
HEX64 = re.compile(r"^[0-9a-f]{64}$")
# times of the pipeline's own processing (when a run wrote a row, dbt's snapshot bookkeeping), not events of a
# patient, and the calendar dimension (every day of the years the data spans, no patient in it)
PROCESSING_TIMES = {"silver_updated_at", "dbt_updated_at", "dbt_valid_from", "dbt_valid_to"}
CALENDAR_TABLES = {"dim_date"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, spark: Any) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("deid_profiles")
    source = base / "landing"
    # 10 patients of seed 7: 19 inpatient stays, 15 of them readmissions within 30 days (6 patients have none)
    generate(patients=PATIENTS, seed=7, out=source, bad_rate=0.0)
    lakehouses: dict[str, Settings] = {}
    for profile in PROFILES:
        settings = new_lakehouse(base / profile, deid_profile=profile)
        shutil.copytree(source, settings.landing_dir, dirs_exist_ok=True)
        pipeline.run_all(settings, [])
        lakehouses[profile] = settings
    return {"settings": lakehouses, "manifest": (source / MANIFEST_PATH).read_text()}


def _catalog(built: dict[str, Any], profile: str) -> Catalog:
    settings = attach(built["settings"][profile])
    return Catalog(engine.get_spark(settings), settings)


def _tables(settings: Settings, layers: tuple[str, ...] = ("silver", "gold")) -> list[str]:
    return [f"{t['layer']}.{t['table']}" for t in table_status(settings) if t["layer"] in layers]


def test_safe_harbor_keeps_no_day_or_month_of_any_date(built: dict[str, Any]) -> None:
    catalog = _catalog(built, "safe_harbor")
    checked, offending = 0, {}
    for name in _tables(built["settings"]["safe_harbor"]):
        # the calendar, and the dbt seeds (ref_*: reference data, no patient in them, e.g. the date spine's end)
        if name.split(".")[1] in CALENDAR_TABLES or name.split(".")[1].startswith("ref_"):
            continue
        df = catalog.read(name)
        for f in df.schema.fields:
            if not isinstance(f.dataType, DateType | TimestampType | TimestampNTZType) or f.name in PROCESSING_TIMES:
                continue
            c = F.col(f.name)
            bad = (F.month(c) != 1) | (F.dayofmonth(c) != 1)
            if not isinstance(f.dataType, DateType):
                bad = bad | (F.hour(c) != 0) | (F.minute(c) != 0) | (F.second(c) != 0)
            n = df.filter(c.isNotNull() & bad).count()
            checked += 1
            if n:
                offending[f"{name}.{f.name}"] = n
    assert offending == {}, offending
    assert checked >= 30, f"only {checked} date columns scanned"
    # the same columns carry days under expert_determination: the scan would see them
    shifted = _catalog(built, "expert_determination").read("silver.encounter")
    assert shifted.filter((F.month("admit_at") != 1) | (F.dayofmonth("admit_at") != 1)).count() > 0


def test_safe_harbor_keys_are_random_surrogates_not_pseudonyms(built: dict[str, Any]) -> None:
    mrns = [p["mrn"] for p in json.loads(built["manifest"])["patients"]]
    hmac_patients = {generated_patient_key(m, TEST_KEY.encode()) for m in mrns}
    expert = _catalog(built, "expert_determination")
    # expert_determination publishes the keyed pseudonyms themselves
    assert {r.patient_key for r in expert.read("silver.patient").select("patient_key").collect()} == hmac_patients
    expert_keys: set[str] = set()
    for name in _tables(built["settings"]["expert_determination"], ("silver",)):
        df = expert.read(name)
        for c in (c for c in df.columns if c.endswith("_key")):
            expert_keys |= {r[0] for r in df.select(c).distinct().collect() if r[0] is not None}
    safe = _catalog(built, "safe_harbor")
    patients = {r.patient_key for r in safe.read("silver.patient").select("patient_key").collect()}
    assert len(patients) == len(mrns) == PATIENTS and all(HEX64.match(k) for k in patients)
    for name in _tables(built["settings"]["safe_harbor"]):
        df = safe.read(name)
        for c in (c for c in df.columns if c.endswith("_key")):
            values = {r[0] for r in df.select(c).distinct().collect() if r[0] is not None}
            assert not values & expert_keys, f"{name}.{c} publishes expert_determination pseudonyms"
    # one surrogate per patient in every table; the mapping table holds the pseudonyms, in the restricted zone
    for table in ("encounter", "observation", "condition"):
        used = {r.patient_key for r in safe.read(f"silver.{table}").select("patient_key").distinct().collect()}
        assert used and used <= patients, table
    mapping = safe.read(SURROGATE_TABLE).filter("namespace = 'patient'").collect()
    assert {r.pseudonym for r in mapping} >= hmac_patients
    assert {r.surrogate for r in mapping} >= patients
    assert len({r.surrogate for r in mapping}) == len(mapping)
    # DICOM headers: no pseudonym of the patient, no UID derived from identifiers (the expert profile's UIDs)
    headers = [r.header_json for r in safe.read("silver.imaging_instance").select("header_json").collect()]
    expert_headers = " ".join(r.header_json for r in expert.read("silver.imaging_instance").select("header_json")
                              .collect())
    expert_uids = set(re.findall(r'"(2\.25\.[0-9]+)"', expert_headers))
    assert headers and expert_uids
    for h in headers:
        assert not any(p in h for p in hmac_patients)
        assert not set(re.findall(r'"(2\.25\.[0-9]+)"', h)) & expert_uids


def _issue(settings: Settings, rows: list[tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
    """One Silver run's surrogate step (silver.job._Builder._surrogates) over observation-shaped rows; the result
    by ``label`` (not a key: kept as is) as (observation_key, patient_key, encounter_key, condition_keys)."""
    spark = engine.get_spark(settings)
    df = spark.createDataFrame(rows, "label STRING, observation_key STRING, patient_key STRING, "
                                     "encounter_key STRING, condition_keys ARRAY<STRING>")
    with run_context("silver", settings) as run, staging(spark, settings, run.run_id) as scratch:
        builder = _Builder(spark, Catalog(spark, settings), settings, run, scratch)
        out = builder._surrogates("observation", df).collect()
    return {r.label: tuple(r)[1:] for r in out}


RUN_1 = [("a", "o1", "p1", "e1", ["c1", "c2"]), ("b", "o2", "p1", None, None), ("c", "o3", "p2", "e2", [])]


def test_surrogates_are_stable_across_runs_and_new_pseudonyms_get_new_ones(spark: Any, make_lakehouse: Any) -> None:
    settings = make_lakehouse("surrogates", deid_profile="safe_harbor")
    catalog = Catalog(engine.get_spark(settings), settings)
    first = _issue(settings, RUN_1)
    version = catalog.version(SURROGATE_TABLE)
    again = _issue(settings, RUN_1)
    assert again == first and catalog.version(SURROGATE_TABLE) == version, "a second run issues nothing new"
    keys = {k for row in first.values() for k in row if isinstance(k, str)} | set(first["a"][3])
    assert len(keys) == 3 + 2 + 2 + 2 and all(HEX64.match(k) for k in keys)
    assert first["a"][1] == first["b"][1] != first["c"][1], "one surrogate per patient"
    assert first["b"][2] is None and first["b"][3] is None and first["c"][3] == []
    more = _issue(settings, [("d", "o4", "p1", "e3", ["c2", "c3"])])
    assert more["d"][1] == first["a"][1] and more["d"][3][0] == first["a"][3][1], "existing mappings reused"
    assert more["d"][3][1] not in keys and more["d"][2] not in keys and more["d"][0] not in keys
    mapping = catalog.read(SURROGATE_TABLE).collect()
    assert len(mapping) == 4 + 2 + 3 + 3  # observations o1-o4, patients p1-p2, encounters e1-e3, conditions c1-c3
    assert len({r.surrogate for r in mapping}) == len(mapping)
    issued = {r.pseudonym: r.issued_run_id for r in mapping}
    assert issued["o4"] != issued["o1"] == issued["p1"]


def _encounter_facts(catalog: Catalog) -> list[tuple[Any, ...]]:
    rows = catalog.read("gold.fct_encounter").select(
        "encounter_class_group", "length_of_stay_days", "length_of_stay_hours", "age_at_admission",
        "is_index_admission", "days_to_next_admission", "readmitted_within_30d", "stay_sequence",
        "days_since_previous_discharge").collect()
    return sorted((tuple(r) for r in rows), key=repr)


def test_readmissions_are_the_same_under_both_profiles(built: dict[str, Any]) -> None:
    expert = _encounter_facts(_catalog(built, "expert_determination"))
    safe = _encounter_facts(_catalog(built, "safe_harbor"))
    assert expert == safe
    totals = {}
    for profile in PROFILES:
        mart = _catalog(built, profile).read("gold.mart_readmission_30d")
        row = mart.agg(F.sum("index_discharges").alias("i"), F.sum("readmissions_30d").alias("r")).collect()[0]
        grains = {r.period_grain for r in mart.select("period_grain").distinct().collect()}
        totals[profile] = (row.i, row.r, grains)
    assert totals["expert_determination"][:2] == totals["safe_harbor"][:2]
    assert totals["safe_harbor"][1] > 0, "the input has readmissions"
    assert totals["expert_determination"][2] == {"month"} and totals["safe_harbor"][2] == {"year"}
    # the durations are positive where a stay is complete, ages within 0..90
    ages = [r[3] for r in safe if r[3] is not None]
    assert ages and all(0 <= a <= 90 for a in ages)


def test_daily_vitals_say_they_are_unavailable_under_safe_harbor(built: dict[str, Any]) -> None:
    assert _catalog(built, "expert_determination").read("gold.mart_daily_vitals").count() > 0
    assert _catalog(built, "safe_harbor").read("gold.mart_daily_vitals").count() == 0
    status = deid_status(built["settings"]["safe_harbor"])
    assert status["deid_profile"] == "safe_harbor" and "gold.mart_daily_vitals" in status["unavailable"]
    assert status["built_with_other_profile"] == []


def test_every_silver_and_gold_table_names_its_profile(built: dict[str, Any]) -> None:
    for profile in PROFILES:
        settings = built["settings"][profile]
        catalog = _catalog(built, profile)
        names = _tables(settings)
        assert any(n.startswith("silver.") for n in names) and any(n.startswith("gold.") for n in names)
        for name in names:
            props = catalog.properties(name)
            assert props.get(f"{PROPERTY_PREFIX}deid_profile") == profile, (name, props)
            assert props.get(f"{PROPERTY_PREFIX}deid_key_id"), name
        assert {t["deid_profile"] for t in table_status(settings) if t["layer"] in ("silver", "gold")} == {profile}
