"""The subject index incremental Silver plans from (silver.increment) gives each record its own subjects.

Checked against Python's HMAC of the values read from the raw JSON, over a hospital large enough (some 20,000
records) that an engine defect which moved values between rows shows: ``array_compact`` over the grouped subjects put
other records' subjects on 2-20% of a 1,000-patient Bronze on Sail 0.7.2 (tests/test_sail_rules.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from deltalake import DeltaTable
from helpers import new_lakehouse

from bronze.job import ingest
from lakehouse.config import set_settings
from lakehouse.engine import get_spark
from lakehouse.runlog import run_context
from silver.common import Deid, union_all
from silver.deid import engine_key, load_key
from silver.deid.pseudonym import pseudonym_py
from silver.increment import SUBJECT_ELEMENTS, dicom_subjects, fhir_subjects, hl7_subjects
from synthetic.generator import generate

PATIENTS = 200
REFERENCE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-\.]{1,64})(?:/_history/[^/]+)?$")


def _reference_id(reference: object) -> str | None:
    if not isinstance(reference, str):
        return None
    match = REFERENCE.search(reference)
    if match:
        return match.group(2)
    return reference[9:73] if reference.startswith("urn:uuid:") else None


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("subjects")
    settings = new_lakehouse(tmp / "lh")
    set_settings(settings)
    generate(patients=PATIENTS, seed=11, out=tmp / "landing", bad_rate=0.0)
    with run_context("ingest", settings) as run:
        ingest(settings, [p for p in (tmp / "landing").rglob("*") if p.is_file() and "_generator" not in p.parts],
               run)
    spark = get_spark(settings)
    deid = Deid(key=engine_key(settings), deid_profile=settings.deid_profile, max_shift_days=settings.max_shift_days,
                facility_timezone=settings.facility_timezone, facility_timezones=(), documents_text="deidentified")

    def bronze(table: str):  # type: ignore[no-untyped-def]
        return spark.read.format("delta").load(str(settings.table_path("bronze", table)))

    grouped = union_all([fhir_subjects(bronze("fhir_resources"), deid), hl7_subjects(bronze("hl7v2_messages"), deid),
                         dicom_subjects(bronze("dicom_instances"), deid)])
    subjects = {r["content_hash"]: (r["source"], set(r["subjects"])) for r in grouped.collect()}
    fhir = DeltaTable(str(settings.table_path("bronze", "fhir_resources"))).to_pyarrow_table(
        columns=["content_hash", "resource_type", "resource_id", "raw"]).to_pylist()
    return {"subjects": subjects, "fhir": fhir, "key": load_key(settings)}


def test_the_index_has_one_row_per_bronze_record(index: dict[str, Any]) -> None:
    fhir_records = [s for s, _ in index["subjects"].values() if s == "fhir"]
    assert len(fhir_records) == len(index["fhir"]) > 10_000


def test_each_fhir_record_carries_its_own_subjects(index: dict[str, Any]) -> None:
    key, subjects = index["key"], index["subjects"]
    wrong = []
    for record in index["fhir"]:
        body = json.loads(record["raw"])
        refs = {_reference_id(body[e].get("reference")) for e in SUBJECT_ELEMENTS if isinstance(body.get(e), dict)}
        expected = {pseudonym_py(i, key, "patient") for i in refs if i is not None}
        got = subjects[record["content_hash"]][1]
        if record["resource_type"] == "Patient":  # its own id, and its identity
            ok = pseudonym_py(record["resource_id"], key, "patient") in got and len(got) <= 2
        elif record["resource_type"] == "ImagingStudy":  # and its study UIDs
            ok = expected <= got
        else:
            ok = got == expected
        if not ok:
            wrong.append(f"{record['resource_type']}/{record['resource_id']}")
    assert not wrong, f"{len(wrong)} of {len(index['fhir'])} FHIR records carry other subjects: {wrong[:5]}"
