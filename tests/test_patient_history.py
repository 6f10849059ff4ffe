"""Patient history (silver.patient_history -> gold.dim_patient): SCD2 on changes of de-identified attributes only,
rebuilt from all of Bronze, 90+ judged at the as-of day across every version, and no old version keeping a value
that is suppressed later (Catalog.purge_history).

One lakehouse for the module: a small synthetic landing plus hand-written HL7 v2.5.1 ADT messages for two patients:
HX1001 moves (ZIP 02139 -> 94110) months before the first load, then sends an A08 with the same values and is
admitted after the move; HY2002 is born 1935-06-15. Build 1 judges ages at 2025-01-01 (HY2002 is 89), build 2, after
the generator's address-change batch, at 2025-09-01 (HY2002 is 90).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pyarrow.parquet as pq
import pytest
from helpers import attach, generated_patient_key, new_lakehouse

from lakehouse import engine
from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.runlog import read_runs
from lakehouse_app import pipeline
from silver.deid import generalize_zip3_py
from synthetic import MANIFEST_PATH, generate, generate_address_changes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3000)]

KEY = "history-test-key-5e6f7a8b9c0d"
AS_OF_1, AS_OF_2 = date(2025, 1, 1), date(2025, 9, 1)
MOVER, OLD = "HX1001", "HY2002"


def _adt(event: str, control: str, at: str, mrn: str, birth: str, street: str, city: str, zip_code: str,
         visit: str, admit: str = "") -> str:
    pv1 = ["PV1", "1", "I" if event == "A01" else "O", "WARD1^^^GENHOSP", *[""] * 15, visit,
           *[""] * 24, admit]
    return "\r".join([
        f"MSH|^~\\&|HIS|GENHOSP|LAKE|LAKE|{at}||ADT^{event}^ADT_A01|{control}|P|2.5.1",
        f"EVN|{event}|{at}",
        f"PID|1||{mrn}^^^GENHOSP^MR||Doe^Alex||{birth}|F|||{street}^^{city}^MA^{zip_code}^US||555-0100|||S",
        "|".join(pv1),
    ]) + "\r"


HANDWRITTEN = [
    _adt("A04", "HX-1", "20240110080000", MOVER, "19600310", "1 Main St", "Cambridge", "02139", "VX1"),
    _adt("A08", "HX-2", "20240501090000", MOVER, "19600310", "9 Mission St", "San Francisco", "94110", "VX1"),
    _adt("A08", "HX-3", "20240601090000", MOVER, "19600310", "9 Mission St", "San Francisco", "94110", "VX1"),
    _adt("A01", "HX-4", "20240801080000", MOVER, "19600310", "9 Mission St", "San Francisco", "94110", "VX2",
         "20240801080000"),
    _adt("A04", "HY-1", "20240201080000", OLD, "19350615", "5 Elm St", "Boston", "02118", "VY1"),
]


def _tables(settings: Settings) -> list[str]:
    return [f"{layer}.{p.name}" for layer in ("silver", "gold") if (settings.root_path / layer).is_dir()
            for p in sorted((settings.root_path / layer).iterdir()) if (p / "_delta_log").is_dir()]


@pytest.fixture(scope="module")
def built(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("history") / "lh"
    settings = new_lakehouse(root, pseudonym_key=KEY, as_of_date=AS_OF_1)
    generate(patients=4, seed=23, out=settings.landing_dir, bad_rate=0.0)
    (settings.landing_dir / "hl7v2").mkdir(parents=True, exist_ok=True)
    (settings.landing_dir / "hl7v2" / "handwritten_adt.hl7").write_bytes("".join(HANDWRITTEN).encode())
    manifest = json.loads((settings.landing_dir / MANIFEST_PATH).read_text())
    first = pipeline.run_all(settings, [])
    catalog = Catalog(engine.get_spark(settings), settings)
    key = KEY.encode()
    old_key = generated_patient_key(OLD, key)
    before = catalog.read("silver.patient").filter(f"patient_key = '{old_key}'").first().asDict()
    dim_1 = catalog.read("gold.dim_patient").toPandas()
    changes = generate_address_changes(settings.landing_dir, manifest, count=2, seed=5)
    settings = new_lakehouse(root, pseudonym_key=KEY, as_of_date=AS_OF_2)
    second = pipeline.run_all(settings, [])
    return {"settings": settings, "first": first, "second": second, "changes": changes, "old_before": before,
            "dim_1": dim_1, "mover_key": generated_patient_key(MOVER, key), "old_key": old_key}


@pytest.fixture()
def settings(built: dict[str, Any]) -> Settings:
    return attach(built["settings"])


def test_patient_moved_before_first_load_has_two_versions(built: dict[str, Any]) -> None:
    dim = built["dim_1"]
    mover = dim[dim.patient_key == built["mover_key"]].sort_values("valid_from")
    # A04 (02139), A08 (94110), A08 with the same values (no version), A01 (same values: no version)
    assert mover["zip3"].tolist() == ["021", "941"]
    assert mover["is_current"].tolist() == [False, True]
    assert str(mover["valid_from"].iloc[0]) == "1900-01-01 00:00:00"
    report = built["first"]["silver"]["patient_history"]
    assert report["bronze_input"] == report["silver"] + report["quarantined"]


def test_address_change_batch_opens_a_second_version_and_later_facts_join_it(built: dict[str, Any],
                                                                            settings: Settings) -> None:
    catalog = Catalog(engine.get_spark(settings), settings)
    dim = catalog.read("gold.dim_patient").toPandas()
    facts = catalog.read("gold.fct_encounter").toPandas()
    key = KEY.encode()
    for change in built["changes"]["changed"]:
        rows = dim[dim.patient_key == generated_patient_key(change["mrn"], key)].sort_values("valid_from")
        assert len(rows) == 2, (change, rows.to_dict("records"))
        assert rows["zip3"].tolist() == [generalize_zip3_py(change["old"]["zip"]),
                                         generalize_zip3_py(change["new"]["zip"])]
        assert rows["is_current"].tolist() == [False, True]
    # the mover's inpatient admission (A01, after the move) joins the version that opened at the move
    mover = dim[dim.patient_key == built["mover_key"]].sort_values("valid_from")
    first, second = mover.iloc[0], mover.iloc[1]
    timed = facts[(facts.patient_key == built["mover_key"]) & facts.admitted_at.notna()]
    after = timed[timed.admitted_at >= second["valid_from"]]
    assert len(after) >= 1, facts[facts.patient_key == built["mover_key"]].to_dict("records")
    assert (after.patient_sk == second["patient_sk"]).all()
    assert (timed[timed.admitted_at < second["valid_from"]].patient_sk == first["patient_sk"]).all()


def test_history_reconciles_and_collapses_unchanged_records(built: dict[str, Any], settings: Settings) -> None:
    report = built["second"]["silver"]["patient_history"]
    assert report["bronze_input"] == report["silver"] + report["quarantined"]
    catalog = Catalog(engine.get_spark(settings), settings)
    history = catalog.read("silver.patient_history").toPandas()
    mover = history[history.patient_key == built["mover_key"]]
    assert len(mover) == 2 and mover["valid_from"].is_unique
    # every patient of silver.patient has a history, and its last version is silver.patient's state
    patients = catalog.read("silver.patient").toPandas().set_index("patient_key")
    last = history.sort_values("valid_from").groupby("patient_key").tail(1).set_index("patient_key")
    assert set(last.index) == set(patients.index)
    for col in ("zip3", "gender", "birth_year", "is_age_90_plus", "state"):
        assert last[col].equals(patients.loc[last.index, col]), col


def test_purge_is_recorded_in_the_run_log(settings: Settings) -> None:
    metrics = [json.loads(r["metrics"] or "{}") for r in read_runs(settings)]
    purges = [m[name] for m in metrics for name in ("silver_purged_history", "gold_purged_history") if name in m]
    assert len(purges) == 2, purges  # Silver, then Gold, of the second run
    assert all("90+ status of a patient changed" in p["reasons"] for p in purges)
    assert {t["table"] for t in purges[0]["tables"]} >= {"silver.patient", "silver.patient_history"}
    assert {t["table"] for t in purges[1]["tables"]} >= {"gold.dim_patient", "gold.fct_encounter"}


def test_patient_turned_90_leaves_no_birth_year_in_any_version(built: dict[str, Any], settings: Settings) -> None:
    before = built["old_before"]
    assert before["birth_year"] is not None and not before["is_age_90_plus"]  # 89 at the first as-of day
    assert before["birth_year"] == before["birth_date"].year
    birth_date = before["birth_date"].isoformat()
    catalog = Catalog(engine.get_spark(settings), settings)
    checked = 0
    for name in _tables(settings):
        table = catalog.delta(name)
        versions = {int(h["version"]) for h in table.history() if "version" in h} | {table.version()}
        for version in sorted(versions):
            df = catalog.read(name, version=version)
            cols = set(df.columns)
            if "patient_key" in cols and cols & {"birth_year", "birth_date"}:
                mine = df.filter(f"patient_key = '{built['old_key']}'")
                for col in cols & {"birth_year", "birth_date"}:
                    assert mine.filter(f"{col} IS NOT NULL").count() == 0, (name, version, col)
                checked += 1
            if {"birth_year", "birth_date"} <= cols:
                assert df.filter("NOT (birth_year <=> year(birth_date)) AND birth_date IS NOT NULL").count() == 0, \
                    (name, version)
            for col in (c for c in cols if c.startswith("age") or c.endswith("_age") or "_age_" in c):
                if dict(df.dtypes)[col] in ("int", "bigint", "double", "float", "smallint", "decimal"):
                    assert df.filter(f"{col} < 0").count() == 0, (name, version, col)
        log_dir = settings.table_path(*name.split(".", 1)) / "_delta_log"
        for path in log_dir.iterdir():
            if path.suffix == ".json":
                assert birth_date not in path.read_text(), (name, path.name)
            elif path.name.endswith(".checkpoint.parquet"):
                assert birth_date not in json.dumps(pq.read_table(path).to_pylist(), default=str), (name, path.name)
    assert checked >= 3  # silver.patient, silver.patient_history, gold.dim_patient at least
    dim = catalog.read("gold.dim_patient").filter(f"patient_key = '{built['old_key']}'").collect()
    assert dim and all(r["is_age_90_plus"] and r["birth_year"] is None for r in dim)
