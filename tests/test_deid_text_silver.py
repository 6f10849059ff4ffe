"""Free text in Silver, end to end: one Silver build over a generated landing zone (whose notes carry the
patients' and their next of kin's PHI, unit numbers, ages over 89 and dates in partial forms) plus hand-written
HL7 (NK1, GT1, IN1) and FHIR (Patient.contact, RelatedPerson) records whose relatives are named in notes; no
planted identifier is left in any Silver free-text column. Then ``free_text: exclude`` rebuilds Silver with no
free text at all."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import new_lakehouse, transaction_bundle
from pyspark.sql import functions as F

from benchmarks.scrub_recall import measure_generated, silver_text_by_patient
from bronze.job import ingest
from lakehouse.catalog import Catalog
from lakehouse.config import set_settings
from lakehouse.runlog import run_context
from silver.common import Deid, latest_fhir, latest_messages, segments
from silver.deid import engine_key
from silver.deid.related import fhir_contact_identifiers, fhir_related_person_identifiers, hl7_related_identifiers
from silver.deid.text import free_text_columns
from silver.job import build_silver
from silver.patient import fhir_patient_index
from synthetic import contacts, model
from synthetic.generator import generate

pytestmark = pytest.mark.slow

KEY = "free-text-key-not-secret-0123456789abcdef"
PATIENTS, SEED = 10, 3  # seed 3 has a patient over 89 with notes
HL7_MRN, FHIR_MRN, FHIR_PATIENT = "MRN-REL-7731", "FH-REL-5521", "8a1c2e3f-4b5d-4c6e-8f70-1a2b3c4d5e6f"
# what the hand-written records plant in free text (the relatives' names, phones, addresses, a policy number)
PLANTED = ("Lindqvist", "Berit", "Orchard", "555-0123", "Apt 12", "Brannigan", "Fergus", "Okonkwo", "Chidera",
           "88213377", "Sunniva", "Aldecoa", "555-0177", "Willow", "Unit 4", "Torvald", "Ekwueme", "555-0190",
           "98 y.o.", "3/14", "ACC-2026", "Vantongeren", "Ottilie")


def _seg(name: str, fields: dict[int, str]) -> str:
    values = [""] * max(fields)
    for n, v in fields.items():
        values[n - 1] = v
    return name + "|" + "|".join(values)


def _msh(message_type: str, control_id: str) -> str:
    return f"MSH|^~\\&|HIS|NORTHSIDE_HOSP|LAKEHOUSE|NORTHSIDE_HOSP|20260310083000||{message_type}|{control_id}|P|2.5.1"


PID = _seg("PID", {1: "1", 3: f"{HL7_MRN}^^^NORTHSIDE^MR", 5: "Vantongeren^Ottilie^^^Mrs.", 7: "19280212", 8: "F",
                   11: "9 Harbor Ln^^Quincy^MA^02169^USA^H", 13: "^PRN^PH^^1^617^5550188"})
PV1 = _seg("PV1", {1: "1", 2: "I", 3: "4W^412^A^NORTHSIDE", 19: "V-REL-0001^^^NORTHSIDE^VN", 44: "20260310083000"})


def _hl7() -> str:
    adt = [_msh("ADT^A01^ADT_A01", "ADT-REL-0001"), "EVN|A01|20260310083000", PID,
           _seg("NK1", {1: "1", 2: "Lindqvist^Berit", 3: "CHD^Child^HL70063",
                        4: "31 Orchard Way^Apt 12^Salem^MA^01970^USA", 5: "^PRN^PH^^1^978^5550123"}),
           PV1,
           _seg("GT1", {1: "1", 3: "Brannigan^Fergus", 5: "77 Cedar Ct^^Lowell^MA^01852^USA",
                        6: "^PRN^PH^^1^978^5550166", 12: "012-34-5678"}),
           _seg("IN1", {1: "1", 2: "BCBS01^Blue Cross", 3: "12345", 4: "Blue Cross MA", 16: "Okonkwo-Reyes^Chidera",
                        17: "SPO^Spouse", 19: "5 Birch Row^^Hyannis^MA^02601^USA", 36: "POL-88213377"})]
    oru = [_msh("ORU^R01^ORU_R01", "LAB-REL-0001"), PID, PV1,
           _seg("OBR", {1: "1", 2: "ORD-REL-1^EHR", 3: "ORD-REL-1^LAB", 4: "11502-2^Laboratory report^LN",
                        7: "20260311080000", 25: "F"}),
           _seg("OBX", {1: "1", 2: "TX", 3: "NOTE^Lab comment^L", 5: "Results discussed with Berit Lindqvist at "
                        "(978) 555-0123 and with Fergus Brannigan; Chidera Okonkwo-Reyes holds policy POL-88213377. "
                        "Berit lives at 31 Orchard Way Apt 12. Mrs. Vantongeren agreed.", 11: "F",
                        14: "20260311080000"}),
           _seg("NTE", {1: "1", 2: "L", 3: "Called Berit at 978-555-0123; Ottilie is 98 y.o., seen 3/14, "
                        "accession ACC-2026-004512."})]
    return "\r".join(adt) + "\r\n" + "\r".join(oru) + "\r"


def _bundle() -> dict[str, Any]:
    subject = {"reference": f"urn:uuid:{FHIR_PATIENT}"}
    return transaction_bundle([
        {"resourceType": "Patient", "id": FHIR_PATIENT, "gender": "male", "birthDate": "1950-07-01",
         "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                              "code": "MR"}]}, "system": "urn:oid:2.16.840.1.113883.19.5",
                         "value": FHIR_MRN}],
         "name": [{"family": "Haldane", "given": ["Oswin"]}],
         "contact": [{"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131",
                                                    "code": "N"}]}],
                      "name": {"family": "Aldecoa", "given": ["Sunniva"]},
                      "telecom": [{"system": "phone", "value": "413-555-0177"}],
                      "address": {"line": ["18 Willow Pl Unit 4"], "city": "Pittsfield", "state": "MA"}}]},
        {"resourceType": "RelatedPerson", "id": "rp-1", "patient": subject, "active": True,
         "name": [{"family": "Ekwueme", "given": ["Torvald"]}],
         "telecom": [{"system": "phone", "value": "401-555-0190"}]},
        {"resourceType": "Observation", "id": "obs-note-1", "status": "final", "subject": subject,
         "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                   "code": "exam"}]}],
         "code": {"coding": [{"system": "http://loinc.org", "code": "48767-8",
                              "display": "Annotation comment [Interpretation] Narrative"}]},
         "effectiveDateTime": "2026-03-12T10:15:00-05:00",
         "valueString": "Spoke to Sunniva Aldecoa at 413-555-0177 and to Torvald at 401-555-0190; Sunniva lives "
                        "at 18 Willow Pl Unit 4."},
    ])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, spark: Any) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("free-text")
    settings = new_lakehouse(base / "lh", pseudonym_key=KEY)
    generate(PATIENTS, SEED, settings.landing_dir, bad_rate=0.0)
    written = base / "input"
    written.mkdir()
    (written / "relatives.hl7").write_text(_hl7())
    (written / "relatives.json").write_text(json.dumps(_bundle()))
    with run_context("ingest", settings) as run:
        ingest(settings, sorted(written.iterdir()), run)
    with run_context("silver", settings) as run:
        report = build_silver(settings, run)
    catalog = Catalog(spark, settings)
    population = model.build_population(PATIENTS, SEED)[1]
    yield {"settings": settings, "catalog": catalog, "report": report, "population": population,
           "generated": measure_generated(settings, population),
           "texts": silver_text_by_patient(spark, settings)}
    set_settings(None)


def test_every_planted_identifier_of_the_generator_is_gone(built: dict[str, Any],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    g = built["generated"]
    with capsys.disabled():
        print(f"\ngenerated recall: {g['removed']}/{g['planted']} {g['by_kind']}")
    assert g["survivors"] == [], g["survivors"]
    assert g["planted"] >= 100 and g["removed"] == g["planted"] and g["recall"] == 1.0
    assert set(g["by_kind"]) == {"NAME", "PHONE", "MRN", "EMAIL", "ADDRESS", "DATE", "AGE"}, g["by_kind"]
    with_notes = sum(any(e.notes for e in p.encounters) for p in built["population"])
    assert g["patients_with_silver_text"] == with_notes


def test_generator_plants_relatives_units_ages_and_partial_dates(built: dict[str, Any]) -> None:
    notes = [n.text for p in built["population"] for e in p.encounters for n in e.notes]
    kin = [contacts.next_of_kin(p) for p in built["population"]]
    assert all(any(k.family in t and k.given in t for t in notes) for k, p in zip(kin, built["population"],
               strict=True) if any(e.notes for e in p.encounters))
    assert any("Lives in " in t for t in notes) and any("Patient is " in t for t in notes)
    assert any("Symptoms since " in t for t in notes)


def test_relatives_of_hand_written_records_are_gone(built: dict[str, Any]) -> None:
    every = "\n".join(built["texts"].values())
    assert "[NAME]" in every and "[PHONE]" in every and "[ADDRESS]" in every
    for planted in PLANTED:
        assert planted.lower() not in every.lower(), planted
    obs = built["catalog"].read("silver.observation").filter(F.col("value_text").contains("Results discussed"))
    text = obs.first()["value_text"]
    assert text.startswith("Results discussed with [NAME] [NAME] at [PHONE] and with [NAME] [NAME]; [NAME] "), text
    assert "holds policy [MRN]" in text or "holds policy [ID]" in text, text


def test_related_identifiers_are_collected(built: dict[str, Any]) -> None:
    settings, catalog = built["settings"], built["catalog"]
    deid = Deid(key=engine_key(settings))
    segs = segments(latest_messages(catalog.read("bronze.hl7v2_messages"))).filter(F.col("message_type") == "ADT")
    hl7 = {(k["kind"], k["value"]) for r in hl7_related_identifiers(segs, deid).collect() for k in r["known"]}
    assert {("NAME", "Lindqvist"), ("NAME", "Berit"), ("ADDRESS", "31 Orchard Way"), ("ADDRESS", "Apt 12"),
            ("ADDRESS", "Salem"), ("PHONE", "9785550123"), ("NAME", "Brannigan"), ("NAME", "Fergus"),
            ("SSN", "012-34-5678"), ("PHONE", "9785550166"), ("NAME", "Okonkwo-Reyes"), ("NAME", "Chidera"),
            ("ID", "POL-88213377"), ("ADDRESS", "5 Birch Row"), ("ADDRESS", "Hyannis")} <= hl7, hl7
    resources = latest_fhir(catalog.read("bronze.fhir_resources"))
    index = fhir_patient_index(resources, deid)
    fhir = {(k["kind"], k["value"]) for r in fhir_contact_identifiers(resources, index).collect() for k in r["known"]}
    assert {("NAME", "Aldecoa"), ("NAME", "Sunniva"), ("PHONE", "413-555-0177"),
            ("ADDRESS", "18 Willow Pl Unit 4"), ("ADDRESS", "Pittsfield")} <= fhir
    related = fhir_related_person_identifiers(resources, index, deid).collect()
    assert {(k["kind"], k["value"]) for r in related for k in r["known"]} == {
        ("NAME", "Ekwueme"), ("NAME", "Torvald"), ("PHONE", "401-555-0190")}
    assert len({r["patient_key"] for r in related}) == 1


def test_free_text_exclude_keeps_every_free_text_column_out_of_silver(built: dict[str, Any], spark: Any) -> None:
    """Last in this module: rebuilds the same lakehouse's Silver with ``free_text: exclude``."""
    settings = new_lakehouse(built["settings"].root, pseudonym_key=KEY, free_text="exclude")
    before = {t: built["catalog"].read(f"silver.{t}").count() for t in free_text_columns()
              if built["catalog"].exists(f"silver.{t}")}
    with run_context("silver", settings) as run:
        build_silver(settings, run)
    catalog = Catalog(spark, settings)
    assert sum(before.values()) > 0
    for table, cols in free_text_columns().items():
        if table not in before:
            continue
        df = catalog.read(f"silver.{table}")
        assert df.count() == before[table], table  # the rows stay, only their text goes
        assert df.filter(F.coalesce(*[F.col(c).isNotNull() for c in cols])).count() == 0, table
