"""The declared scope (silver/hl7v2_scope.csv, silver/fhir_scope.csv) agrees with the Silver contract."""

from __future__ import annotations

import pytest

from silver.coverage import load_scope
from silver.schemas import TABLES

pytestmark = pytest.mark.fast


def test_every_table_a_scope_line_names_exists() -> None:
    for rule in load_scope():
        assert set(rule.silver_tables) <= set(TABLES), rule
        assert rule.in_scope or rule.reason, f"{rule.record_type} is out of scope without a reason"


def test_every_silver_table_is_fed_by_a_declared_type() -> None:
    fed = {t for rule in load_scope() for t in rule.silver_tables}
    assert set(TABLES) - fed == set()


def test_each_type_is_declared_once() -> None:
    keys = [(r.source, r.record_type) for r in load_scope()]
    assert len(keys) == len(set(keys))


def test_synthea_export_types_are_all_declared() -> None:
    """Every resource type of a standard Synthea R4 export is modelled or declared out of scope."""
    synthea = {"Patient", "Encounter", "Condition", "Observation", "DiagnosticReport", "Procedure",
               "MedicationRequest", "MedicationAdministration", "Medication", "Immunization", "AllergyIntolerance",
               "CarePlan", "CareTeam", "Goal", "Device", "DocumentReference", "ImagingStudy", "Organization",
               "Practitioner", "PractitionerRole", "Location", "Provenance", "Claim", "ExplanationOfBenefit",
               "SupplyDelivery"}
    declared = {r.record_type for r in load_scope() if r.source == "fhir"}
    assert synthea - declared == set()
