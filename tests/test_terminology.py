"""Terminology seeds and mapping joins on the real engine: mapped and unmapped codes, ICD-10-CM validity, gender."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import clean_env
from pyspark.sql import functions as F

import synthetic.vocab as synthetic
from silver import terminology as term
from silver.schemas import columns, ddl
from silver.terminology.seeds import SCHEMAS, SEED_DIR


@pytest.mark.fast
def test_seeds_parse_have_unique_keys_and_a_readme_entry() -> None:
    readme = (SEED_DIR / "README.md").read_text(encoding="utf-8")
    keys = {"lab_local_to_loinc": (0, 1), "loinc": (0,), "snomed_to_icd10cm": (0,), "rxnorm": (0,),
            "medication_to_rxnorm": (0, 1), "gender": (0,), "loinc_units": (0,), "code_systems": (0,)}
    for name in SCHEMAS:
        rows = term.rows(name)
        assert rows, name
        assert f"{name}.csv" in readme, f"{name}.csv has no source/licence entry in README.md"
        if name in keys:
            seen = [tuple(str(r[i]).upper() for i in keys[name]) for r in rows]
            assert len(seen) == len(set(seen)), f"duplicate keys in {name}.csv"
    loinc = {r[0]: r[1] for r in term.rows("loinc")}
    for _, _, code, display in term.rows("lab_local_to_loinc"):
        assert loinc[code] == display, f"{code}: display differs from loinc.csv"
    preferred = [r[2] for r in term.rows("snomed_to_icd10cm") if r[4]]
    assert len(preferred) == len(set(preferred)), "one preferred SNOMED CT code per ICD-10-CM code"


@pytest.mark.fast
def test_every_icd10cm_target_in_the_map_is_a_billable_code() -> None:
    valid = set(term.billable_codes())
    assert [r[2] for r in term.rows("snomed_to_icd10cm") if r[2] not in valid] == []


@pytest.mark.fast
def test_generator_local_lab_codes_are_mapped() -> None:
    mapped = {(str(s).upper(), str(c).upper()): loinc for s, c, loinc, _ in term.rows("lab_local_to_loinc")}
    for test in synthetic.LAB_TESTS.values():
        for system in ("L", "99GHL"):
            assert mapped[(system, test.local_code.upper())] == test.loinc, test.key


def test_map_lab_codes_keeps_unmapped_rows_and_originals(spark) -> None:
    df = spark.createDataFrame([
        ("r1", "GLU", "L"), ("r2", "glu", "99ghl"), ("r3", "2951-2", "LN"), ("r4", "2823-3", "http://loinc.org"),
        ("r5", "XYZ", "L"), ("r6", "GLU", "OTHERLAB"), ("r7", None, None),
    ], "id STRING, code STRING, system STRING")
    out = {r.id: r for r in term.map_lab_codes(df, "code", "system").collect()}
    assert len(out) == 7
    assert (out["r1"].loinc_code, out["r1"].is_mapped) == ("2345-7", True)
    assert out["r1"].loinc_display == "Glucose [Mass/volume] in Serum or Plasma"
    assert (out["r2"].loinc_code, out["r2"].code_original, out["r2"].code_system_original) == ("2345-7", "glu", "99ghl")
    assert (out["r3"].loinc_code, out["r4"].loinc_code) == ("2951-2", "2823-3")
    for rid in ("r5", "r6", "r7"):
        assert out[rid].is_mapped is False and out[rid].loinc_code is None
    assert (out["r5"].code_original, out["r5"].code_system_original) == ("XYZ", "L")


def test_map_lab_codes_falls_back_to_the_alternate_loinc_coding(spark) -> None:
    df = spark.createDataFrame([("NEWTEST", "L", "1234-5", "LN"), ("GLU", "L", "9999-9", "LN")],
                               "code STRING, system STRING, alt STRING, alt_system STRING")
    out = term.map_lab_codes(df, "code", "system", "alt", "alt_system").orderBy("code").collect()
    assert [(r.code, r.loinc_code, r.is_mapped) for r in out] == [("GLU", "2345-7", True), ("NEWTEST", "1234-5", True)]


def test_map_condition_codes_both_directions(spark) -> None:
    df = spark.createDataFrame([
        ("c1", "44054006", "http://snomed.info/sct"), ("c2", "E119", "I10"), ("c3", "I10", "ICD-10-CM"),
        ("c4", "999999999", "SCT"), ("c5", "Z99.89", "http://hl7.org/fhir/sid/icd-10-cm"), ("c6", "X1", "LOCALDX"),
    ], "id STRING, code STRING, code_system STRING")
    out = {r.id: r for r in term.map_condition_codes(df).collect()}
    assert (out["c1"].icd10cm_code, out["c1"].snomed_code, out["c1"].is_mapped) == ("E11.9", "44054006", True)
    assert (out["c2"].icd10cm_code, out["c2"].snomed_code) == ("E11.9", "44054006")
    assert (out["c3"].icd10cm_code, out["c3"].snomed_code) == ("I10", "59621000")
    assert (out["c4"].icd10cm_code, out["c4"].snomed_code, out["c4"].is_mapped) == (None, "999999999", False)
    assert (out["c5"].icd10cm_code, out["c5"].snomed_code, out["c5"].is_mapped) == ("Z99.89", None, True)
    assert (out["c6"].is_mapped, out["c6"].code_original, out["c6"].code_system_original) == (False, "X1", "LOCALDX")


def test_map_medication_codes(spark) -> None:
    df = spark.createDataFrame([("860975", "http://www.nlm.nih.gov/research/umls/rxnorm"), ("METF500ER", "L"),
                                ("NOPE", "L")], "code STRING, code_system STRING")
    out = {r.code_original: r for r in term.map_medication_codes(df).collect()}
    assert out["METF500ER"].rxnorm_code == "860975" and out["METF500ER"].is_mapped
    assert out["860975"].rxnorm_display.startswith("24 HR Metformin")
    assert (out["NOPE"].rxnorm_code, out["NOPE"].is_mapped) == (None, False)


def test_valid_icd10cm_against_the_cdc_code_set(spark) -> None:
    assert term.icd10cm_release().endswith("2026")
    df = spark.createDataFrame([("E11.9",), ("e119",), ("E11.99X",), ("E11",), ("S52.501A",), (None,)], "code STRING")
    out = [(r.code, r.is_icd10cm_valid) for r in term.valid_icd10cm(df, "code").collect()]
    assert sorted(out, key=str) == sorted([("E11.9", True), ("e119", True), ("E11.99X", False), ("E11", False),
                                           ("S52.501A", True), (None, None)], key=str)


def test_map_gender_v2_table_0001_and_fhir(spark) -> None:
    values = ["M", "f", "O", "U", "A", "N", "female", "X", None]
    df = spark.createDataFrame([(v,) for v in values], "g STRING")
    out = [r.fhir for r in df.select(term.map_gender(F.col("g")).alias("fhir")).collect()]
    assert out == ["male", "female", "other", "unknown", "other", "other", "female", None, None]


def test_unmapped_report_counts_per_code(spark) -> None:
    labs = term.map_lab_codes(spark.createDataFrame([("XYZ", "L"), ("XYZ", "L"), ("GLU", "L"), ("ABC", "99GHL")],
                                                    "code STRING, system STRING"), "code", "system")
    conds = term.map_condition_codes(spark.createDataFrame([("X1", "LOCALDX")], "code STRING, code_system STRING"))
    report = [tuple(r) for r in term.unmapped_report({"observation": labs, "condition": conds}).collect()]
    assert report == [("observation", "XYZ", "L", 2), ("condition", "X1", "LOCALDX", 1),
                      ("observation", "ABC", "99GHL", 1)]


@pytest.mark.fast
def test_readme_states_licences() -> None:
    text = Path(SEED_DIR / "README.md").read_text(encoding="utf-8")
    for needle in ("Regenstrief", "SNOMED", "public domain", "simple-icd-10-cm"):
        assert needle in text
    with (SEED_DIR / "loinc.csv").open(encoding="utf-8") as f:
        assert next(csv.reader(f)) == ["loinc_code", "loinc_display"]


def test_cli_report_unmapped_lists_codes_of_the_silver_tables(spark, catalog, settings) -> None:
    def frame(table: str, rows: list[dict]):
        return spark.createDataFrame([tuple(r.get(c) for c in columns(table)) for r in rows],
                                     ddl(table).replace(" NOT NULL", ""))

    labs = spark.createDataFrame([("o1", "GLU", "L"), ("o2", "XYZ", "L"), ("o3", "XYZ", "L")],
                                 "observation_key STRING, code STRING, system STRING")
    mapped = term.map_lab_codes(labs, "code", "system").withColumn("patient_key", F.lit("p1"))
    for table in ("observation", "condition"):
        catalog.create(f"silver.{table}", ddl(table))
    catalog.append(frame("observation", [r.asDict() for r in mapped.collect()]), "silver.observation")
    conds = term.map_condition_codes(spark.createDataFrame([("c1", "X1", "LOCALDX")],
                                                           "condition_key STRING, code STRING, code_system STRING"))
    catalog.append(frame("condition", [dict(r.asDict(), patient_key="p1") for r in conds.collect()]),
                   "silver.condition")

    proc = subprocess.run([sys.executable, "-m", "lakehouse_app.cli", "--root", str(settings.root_path), "report",
                           "unmapped", "--json"], capture_output=True, text=True, env=clean_env(), timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [{"domain": "observation", "code": "XYZ", "system": "L", "count": 2},
                                       {"domain": "condition", "code": "X1", "system": "LOCALDX", "count": 1}]
