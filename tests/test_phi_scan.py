"""PHI scan: catches planted leaks in any Delta version on disk, passes de-identified tables, masks values."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pyarrow as pa
import pytest
from deltalake import write_deltalake
from helpers import new_lakehouse
from pyspark.sql import functions as F
from typer.testing import CliRunner

from lakehouse.runlog import runs_path
from lakehouse_app.cli import app
from silver.deid.keys import load_key
from silver.deid.pseudonym import namespace_key, pseudonym_py
from silver.deid.scan import KnownIdentifiers, _FileScan, known_from_bronze, scan

PATIENT = {"resourceType": "Patient", "id": "pat-1",
           "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "MRN7730012"},
                          {"type": {"coding": [{"code": "SS"}]}, "value": "219-09-9999"}],
           "name": [{"family": "Okonkwo", "given": ["Adaeze"]}],
           "telecom": [{"system": "phone", "value": "(617) 555-0188"}, {"system": "email", "value": "ada@example.net"}],
           "address": [{"line": ["77 Juniper Lane"], "city": "Quincy", "postalCode": "02169"}],
           "birthDate": "1961-02-17"}
PID = ("MSH|^~\\&|LAB|HOSP|EHR|HOSP|20240101120000||ADT^A01|MSG1|P|2.5\r"
       "PID|1||MRN5550001^^^HOSP^MR||White^Walter^J||19550912|M|||9 Oak Road^^Salem^MA^01970||555-010-2222|||||"
       "ACCT1|321-54-9876\r")


def _bronze(catalog, spark) -> None:
    catalog.append(spark.createDataFrame([("Patient", "pat-1", json.dumps(PATIENT))],
                                         "resource_type string, resource_id string, raw string"),
                   "bronze.fhir_resources")
    catalog.append(spark.createDataFrame([("MSG1", PID)], "message_control_id string, raw string"),
                   "bronze.hl7v2_messages")


CLEAN_DDL = ("patient_key string, birth_date date, zip3 string, race string, code_system string, study_uid string, "
             "note string, content_hash string")


def _clean(spark, key: bytes):
    pk = pseudonym_py("MRN7730012", key, "patient")
    note = "[NAME] seen for cough; called [PHONE] on [DATE]. Vitals stable, 2 tablets daily."
    return spark.createDataFrame(
        [(pk, dt.date(1961, 5, 30), "021", "White", "http://loinc.org", "2.25.3312", note, "a" * 64)], CLEAN_DDL)


def test_known_identifiers_from_fhir_and_hl7(settings, catalog, spark) -> None:
    _bronze(catalog, spark)
    known = known_from_bronze(settings, load_key(settings))
    assert known.patients == 2
    assert {"okonkwo", "adaeze okonkwo", "mrn7730012", "77 juniper lane", "ada@example.net", "02169",
            "white", "walter white", "mrn5550001", "9 oak road", "salem", "01970"} <= set(known.exact)
    assert {"6175550188", "219099999", "5550102222", "321549876"} <= set(known.digits)
    assert known.birth_dates == {dt.date(1961, 2, 17), dt.date(1955, 9, 12)}
    assert known.birth_date_by_pseudonym[pseudonym_py("MRN7730012", load_key(settings), "patient")] == \
        dt.date(1961, 2, 17)


def test_clean_deidentified_tables_pass(settings, catalog, spark) -> None:
    _bronze(catalog, spark)
    catalog.append(_clean(spark, load_key(settings)), "silver.patient_demo")
    catalog.append(_clean(spark, load_key(settings)).select("patient_key", "note"), "gold.mart_demo")
    assert scan(settings, ["silver", "gold"]) == []


def test_planted_leak_is_found_in_an_old_version_and_masked(settings, catalog, spark) -> None:
    _bronze(catalog, spark)
    key = load_key(settings)
    leak = _clean(spark, key).withColumn("note", F.lit("Adaeze Okonkwo called about her results"))
    leak = leak.withColumn("ssn", F.lit("219-09-9999")).withColumn("birth_date", F.lit(dt.date(1961, 2, 17)))
    catalog.create("silver.patient_demo", CLEAN_DDL + ", ssn string")
    catalog.append(leak, "silver.patient_demo")
    catalog.overwrite(_clean(spark, key).withColumn("ssn", F.lit(None).cast("string")), "silver.patient_demo")
    assert catalog.version("silver.patient_demo") >= 1

    findings = scan(settings, ["silver"])
    kinds = {(f.column, f.kind) for f in findings}
    assert ("ssn", "known_ssn") in kinds
    assert ("note", "text_known_name") in kinds
    assert ("birth_date", "dob") in kinds
    assert all(f.file.startswith("silver/patient_demo/") and f.file.endswith(".parquet") for f in findings)
    for f in findings:  # the report never holds a full value
        assert "219-09-9999" not in f.line() and "Okonkwo" not in f.line() and "1961-02-17" not in f.line()


def test_a_raw_content_hash_is_a_finding(settings, catalog, spark) -> None:
    raw_hash = "b" * 64
    catalog.append(spark.createDataFrame([("Patient", "pat-9", json.dumps(PATIENT), raw_hash)],
                                         "resource_type string, resource_id string, raw string, content_hash string"),
                   "bronze.fhir_resources")
    key = load_key(settings)
    catalog.append(_clean(spark, key).withColumn("content_hash", F.lit(raw_hash)), "silver.patient_demo")
    kinds = {(f.column, f.kind) for f in scan(settings, ["silver"])}
    assert ("content_hash", "raw_content_hash") in kinds


def test_pattern_leaks_without_bronze(settings, catalog, spark) -> None:
    df = spark.createDataFrame([("Pt called from 555-123-4567 about labs", "x@y.org", "02139", "fine text here")],
                               "note string, contact string, postal_code string, other string")
    catalog.append(df, "gold.leaky")
    kinds = {(f.column, f.kind) for f in scan(settings, ["gold"])}
    assert kinds == {("note", "phone"), ("contact", "email"), ("postal_code", "zip5")}


def test_cli_exit_code_and_json(settings, catalog, spark, monkeypatch) -> None:
    _bronze(catalog, spark)
    key = load_key(settings)
    catalog.append(_clean(spark, key), "silver.patient_demo")
    env = {"LAKEHOUSE_PSEUDONYM_KEY": key.decode()}
    runner = CliRunner()
    ok = runner.invoke(app, ["--root", str(settings.root_path), "phi-scan"], env=env)
    assert ok.exit_code == 0, ok.output
    assert "0 finding(s)" in ok.output
    catalog.append(_clean(spark, key).withColumn("note", F.lit("MRN7730012")), "silver.patient_demo")
    bad = runner.invoke(app, ["--root", str(settings.root_path), "phi-scan", "--layer", "silver", "--json"], env=env)
    assert bad.exit_code == 7
    report = json.loads(bad.stdout)  # stdout is the JSON; the error line goes to stderr
    assert [(r["column"], r["kind"]) for r in report] == [("note", "known_mrn")]
    assert "MRN7730012" not in bad.output
    wrong = runner.invoke(app, ["--root", str(settings.root_path), "phi-scan", "--layer", "bronze"], env=env)
    assert wrong.exit_code != 0 and "not bronze" in wrong.output


@pytest.mark.fast
def test_a_clinician_who_shares_a_patients_family_name_is_not_a_leak() -> None:
    known = KnownIdentifiers()
    known.add_name(["Adaeze"], "Okonkwo")
    check = _FileScan("silver/observation/part-0.parquet", known, year_policy=False)
    check.free_text("value_text", "Follow-up visit, medications reviewed. Seen by Dr. Okonkwo.", 0)
    assert check.findings == []
    check.free_text("value_text", "Follow-up visit, medications reviewed. Mrs Okonkwo called.", 1)
    # a titled name is a pattern (text_name) before it is a known family name (text_known_name): either is found
    assert [(f.kind in ("text_name", "text_known_name"), f.row) for f in check.findings] == [(True, 1)]


@pytest.mark.fast
def test_vocabulary_columns_are_not_free_text_but_exact_identifiers_still_count() -> None:
    """A LOINC display naming an allergen that is also a surname, a reference range with a ZIP-like number and a
    local code equal to a short MRN are no leaks; a full MRN or a name in free text still is."""
    known = KnownIdentifiers()
    known.add_name(["Ann"], "Honey")
    known.add("mrn", "12345")
    known.add("mrn", "MRN7730012")
    check = _FileScan("silver/observation/part-0.parquet", known, year_policy=False)
    check.string("display", "Honey bee IgE Ab in Serum", 0, None)
    check.string("ref_text", "4300 to 10800 per uL", 1, None)
    check.string("code", "12345", 2, None)
    assert check.findings == []
    check.string("code", "MRN7730012", 3, None)
    check.string("value_text", "Patient Honey seen today for rash", 4, None)
    assert [(f.kind, f.row) for f in check.findings] == [("known_mrn", 3), ("text_known_name", 4)]


# -- fast: ages over 89, raw content hashes and key material, planted in tiny Delta tables ------------------

AS_OF = dt.date(2026, 6, 1)


def _fast_lakehouse(tmp_path, **overrides):
    return new_lakehouse(tmp_path / "lh", attach_engine=False, as_of_date=AS_OF, **overrides)


def _delta(settings, name: str, rows: list[dict], mode: str = "append") -> None:
    layer, table = name.split(".", 1)
    write_deltalake(str(settings.table_path(layer, table)), pa.Table.from_pylist(rows), mode=mode)


def _bronze_patient(settings, birth: str, content_hash: str = "c" * 64) -> None:
    patient = {**PATIENT, "birthDate": birth}
    _delta(settings, "bronze.fhir_resources", [{"resource_type": "Patient", "resource_id": "pat-1",
                                                 "raw": json.dumps(patient), "content_hash": content_hash}])


@pytest.mark.fast
def test_birth_year_of_a_patient_who_turned_90_is_found_in_every_version(tmp_path) -> None:
    """The patient turned 90 on 2026-02-17 (before the as-of day): the version published while they were 89
    still holds their birth year; the current version suppressed it. Only the old version is a finding."""
    settings = _fast_lakehouse(tmp_path)
    _bronze_patient(settings, "1936-02-17")
    key = settings.pseudonym_key.get_secret_value().encode()
    pk = pseudonym_py("MRN7730012", key, "patient")
    _delta(settings, "gold.dim_patient", [{"patient_key": pk, "birth_year": 1936, "is_age_90_plus": False}])
    _delta(settings, "gold.dim_patient", [{"patient_key": pk, "birth_year": None, "is_age_90_plus": True}],
           mode="overwrite")
    findings = scan(settings, ["gold"])
    assert [(f.column, f.kind, f.row) for f in findings] == [("birth_year", "birth_year_90plus", 0)]
    assert "1936" not in findings[0].line()
    # the same table judged a year earlier (the patient was 89): no finding
    earlier = settings.model_copy(update={"as_of_date": dt.date(2025, 6, 1)})
    assert scan(earlier, ["gold"]) == []


@pytest.mark.fast
def test_a_birth_date_or_age_that_proves_90_plus_is_found_without_a_known_patient(tmp_path) -> None:
    settings = _fast_lakehouse(tmp_path)
    rows = [
        {"patient_key": "x" * 64, "birth_date": dt.date(1930, 3, 1), "birth_year": 1930, "age_at_admission": 95},
        # within the date shift of 90 years: not proven; 90 is the 90+ category itself
        {"patient_key": "y" * 64, "birth_date": dt.date(1936, 9, 1), "birth_year": 1937, "age_at_admission": 90},
        {"patient_key": "z" * 64, "birth_date": dt.date(2030, 1, 1), "birth_year": 2000, "age_at_admission": -3},
    ]
    _delta(settings, "silver.patient_demo", rows)
    kinds = sorted((f.column, f.kind, f.row) for f in scan(settings, ["silver"]))
    assert kinds == [("age_at_admission", "age_over_89", 0), ("age_at_admission", "negative_age", 2),
                     ("birth_date", "birth_date_90plus", 0), ("birth_year", "birth_year_90plus", 0)]
    # the bounds of a reference table (dbt seed ref_age_bands: max_age 200) are not a person's age
    _delta(settings, "silver.ref_bands", [{"age_band": "75+", "min_age": 75, "max_age": 200}])
    assert sorted((f.column, f.kind, f.row) for f in scan(settings, ["silver"])) == kinds


@pytest.mark.fast
def test_a_bronze_content_hash_is_found_alone_in_a_list_or_inside_text(tmp_path) -> None:
    settings = _fast_lakehouse(tmp_path)
    raw = "d" * 64
    _bronze_patient(settings, "1961-02-17", content_hash=raw)
    _delta(settings, "silver.obs_demo", [{"a": raw, "lineage": ["e" * 64], "note": None},
                                         {"a": "f" * 64, "lineage": ["e" * 64, raw], "note": f"sha256:{raw.upper()}"}])
    found = sorted((f.column, f.kind, f.row) for f in scan(settings, ["silver"]))
    assert found == [("a", "raw_content_hash", 0), ("lineage[]", "raw_content_hash", 1),
                     ("note", "raw_content_hash", 1)]


def _pads(secret: bytes) -> tuple[bytes, bytes]:
    block = secret.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block)


@pytest.mark.fast
def test_key_material_is_found_in_values_delta_logs_and_the_run_log_in_any_form(tmp_path) -> None:
    settings = _fast_lakehouse(tmp_path)
    key = settings.pseudonym_key.get_secret_value().encode()
    ipad, _ = _pads(namespace_key(key, "patient"))
    _, opad = _pads(namespace_key(key, "care_plan_activity"))  # a namespace only a recorded run names
    _delta(settings, "silver.clean", [{"patient_key": "a" * 64, "note": "nothing to see here"}])
    assert scan(settings, ["silver"]) == []
    _delta(settings, "silver.leaky", [{"v": f"plan: ... {ipad.hex()} ...", "b": None},
                                      {"v": "x", "b": namespace_key(key, "encounter")}])
    _delta(settings, "silver.leaky", [{"v": "clean", "b": None}], mode="overwrite")  # only version 0 leaks
    # a Delta log entry holding the base64 of the key at an odd offset, and a run record naming a new namespace
    log = settings.table_path("gold", "mart") / "_delta_log"
    log.mkdir(parents=True)
    (log / "00000000000000000000.json").write_bytes(b'{"commitInfo":{"x":"' + base64.b64encode(b"xy" + key) + b'"}}')
    _delta(settings, "_system.runs", [{"seq": 1, "metrics": json.dumps(
        {"pseudonym_namespaces": ["care_plan_activity"], "note": base64.urlsafe_b64encode(opad).decode()})}])
    findings = scan(settings, ["silver", "gold"])
    got = sorted((f.file.split("/")[1], f.kind, f.masked) for f in findings)
    assert got == [("leaky", "key_material", "v1 encounter key"),
                   ("leaky", "key_material", "v1 patient key ipad hex"),
                   ("mart", "key_material", "v1 key base64"),
                   ("runs", "key_material", "metrics: v1 care_plan_activity key opad base64")]
    assert all(key.decode() not in f.line() for f in findings)
    assert runs_path(settings).is_dir()
