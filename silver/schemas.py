"""The Silver tables: public contract for notebooks, dbt staging models and BI.

Every Silver table is de-identified (no direct identifiers: keys are HMAC pseudonyms, dates follow the
date policy, ZIPs are ZIP3, free text is scrubbed), coded, and carries the same lineage columns.
Column lists are Spark DDL so they can be used in CREATE TABLE and as documentation.
"""

from __future__ import annotations

from lakehouse.catalog import ddl_columns

LINEAGE = (
    "sources ARRAY<STRING>, "          # e.g. ['fhir'], ['hl7v2'], ['fhir', 'hl7v2'], ['dicom']
    "bronze_hashes ARRAY<STRING>, "    # content_hash of every Bronze row that contributed
    "silver_run_id STRING, "           # run that last changed this row
    "silver_updated_at TIMESTAMP"      # when that run wrote it
)
# lineage columns that change on every run and must not count as a change in MERGE
VOLATILE = ("silver_run_id", "silver_updated_at")

TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (columns DDL, natural key)
    "patient": (
        "patient_key STRING NOT NULL, gender STRING, birth_date DATE, birth_year INT, is_age_90_plus BOOLEAN, "
        "zip3 STRING, state STRING, country STRING, deceased BOOLEAN, deceased_date DATE, race STRING, "
        "ethnicity STRING, marital_status STRING, language STRING, insurance STRING, "
        "source_updated_at TIMESTAMP, " + LINEAGE,
        ("patient_key",),
    ),
    "patient_history": (  # SCD2 source of gold.dim_patient: one row per change of the de-identified attributes
        "patient_key STRING NOT NULL, valid_from TIMESTAMP NOT NULL, gender STRING, birth_date DATE, birth_year INT, "
        "is_age_90_plus BOOLEAN, zip3 STRING, state STRING, country STRING, deceased BOOLEAN, deceased_date DATE, "
        "race STRING, ethnicity STRING, marital_status STRING, language STRING, insurance STRING, " + LINEAGE,
        ("patient_key", "valid_from"),
    ),
    "encounter": (
        "encounter_key STRING NOT NULL, patient_key STRING NOT NULL, encounter_class STRING, type_code STRING, "
        "type_system STRING, type_display STRING, status STRING, admit_at TIMESTAMP, discharge_at TIMESTAMP, "
        "department STRING, location STRING, organization_key STRING, practitioner_key STRING, admission_type STRING, "
        "admit_source STRING, discharge_disposition STRING, reason_code STRING, reason_system STRING, "
        "transfer_count INT, "
        "last_adt_event STRING, adt_event_count INT, "
        # durations from the true times, the same under both de-identification profiles (encounter.with_intervals)
        "length_of_stay_hours INT, length_of_stay_days INT, age_at_admission INT, stay_sequence INT, "
        "days_since_previous_discharge INT, admit_offset_seconds BIGINT, discharge_offset_seconds BIGINT, "
        "has_30_day_follow_up BOOLEAN, "
        + LINEAGE,
        ("encounter_key",),
    ),
    "encounter_location": (  # the stays of an HL7 visit: one row per place between transfers (silver.encounter)
        "encounter_key STRING NOT NULL, sequence INT NOT NULL, patient_key STRING NOT NULL, location STRING, "
        "department STRING, start_at TIMESTAMP, end_at TIMESTAMP, start_event STRING, " + LINEAGE,
        ("encounter_key", "sequence"),
    ),
    "condition": (
        "condition_key STRING NOT NULL, patient_key STRING NOT NULL, encounter_key STRING, code STRING, "
        "code_system STRING, display STRING, icd10cm_code STRING, snomed_code STRING, is_icd10cm_valid BOOLEAN, "
        "is_mapped BOOLEAN, category STRING, clinical_status STRING, verification_status STRING, "
        "onset_at TIMESTAMP, abatement_at TIMESTAMP, recorded_at TIMESTAMP, " + LINEAGE,
        ("condition_key",),
    ),
    "observation": (
        "observation_key STRING NOT NULL, patient_key STRING NOT NULL, encounter_key STRING, category STRING, "
        "loinc_code STRING, display STRING, code_original STRING, code_system_original STRING, "
        "is_mapped BOOLEAN, value_num DOUBLE, unit STRING, value_original DOUBLE, unit_original STRING, "
        "is_unit_known BOOLEAN, value_text STRING, value_code STRING, effective_at TIMESTAMP, status STRING, "
        "interpretation STRING, ref_low DOUBLE, ref_high DOUBLE, abnormal_flag STRING, value_comparator STRING, "
        "value_low DOUBLE, value_high DOUBLE, value_code_system STRING, value_display STRING, "
        "value_time TIMESTAMP, ref_text STRING, performing_organization STRING, specimen_type STRING, "
        "specimen_display STRING, " + LINEAGE,
        ("observation_key",),
    ),
    "medication_request": (
        "medication_request_key STRING NOT NULL, patient_key STRING NOT NULL, encounter_key STRING, "
        "rxnorm_code STRING, code_original STRING, code_system_original STRING, display STRING, is_mapped BOOLEAN, "
        "status STRING, intent STRING, authored_at TIMESTAMP, practitioner_key STRING, dosage_text STRING, "
        "route STRING, " + LINEAGE,
        ("medication_request_key",),
    ),
    "medication_dispense": (
        "medication_dispense_key STRING NOT NULL, patient_key STRING NOT NULL, encounter_key STRING, "
        "medication_request_key STRING, rxnorm_code STRING, code_original STRING, code_system_original STRING, "
        "display STRING, is_mapped BOOLEAN, status STRING, dispensed_at TIMESTAMP, quantity DOUBLE, "
        "quantity_unit STRING, " + LINEAGE,
        ("medication_dispense_key",),
    ),
    "procedure": (
        "procedure_key STRING NOT NULL, patient_key STRING NOT NULL, encounter_key STRING, code STRING, "
        "code_system STRING, display STRING, snomed_code STRING, status STRING, performed_start TIMESTAMP, "
        "performed_end TIMESTAMP, " + LINEAGE,
        ("procedure_key",),
    ),
    "diagnostic_report": (
        "diagnostic_report_key STRING NOT NULL, patient_key STRING NOT NULL, encounter_key STRING, code STRING, "
        "code_system STRING, display STRING, category STRING, status STRING, effective_at TIMESTAMP, "
        "issued_at TIMESTAMP, result_count INT, conclusion STRING, " + LINEAGE,
        ("diagnostic_report_key",),
    ),
    "imaging_study": (
        "imaging_study_key STRING NOT NULL, patient_key STRING NOT NULL, encounter_key STRING, "
        "modalities ARRAY<STRING>, started_at TIMESTAMP, description STRING, series_count INT, "
        "instance_count INT, " + LINEAGE,
        ("imaging_study_key",),
    ),
    "imaging_series": (
        "imaging_series_key STRING NOT NULL, imaging_study_key STRING NOT NULL, patient_key STRING NOT NULL, "
        "modality STRING, body_site STRING, series_number INT, description STRING, instance_count INT, " + LINEAGE,
        ("imaging_series_key",),
    ),
    "imaging_instance": (
        "imaging_instance_key STRING NOT NULL, imaging_series_key STRING NOT NULL, imaging_study_key STRING NOT NULL, "
        "patient_key STRING NOT NULL, sop_class_uid STRING, instance_number INT, rows INT, columns INT, "
        "number_of_frames INT, transfer_syntax_uid STRING, header_json STRING, " + LINEAGE,
        ("imaging_instance_key",),
    ),
    "practitioner": (
        "practitioner_key STRING NOT NULL, gender STRING, specialty_code STRING, specialty_display STRING, "
        + LINEAGE,
        ("practitioner_key",),
    ),
    "organization": (
        "organization_key STRING NOT NULL, name STRING, type_code STRING, type_display STRING, zip3 STRING, "
        "state STRING, " + LINEAGE,
        ("organization_key",),
    ),
    "allergy": (
        "allergy_key STRING NOT NULL, patient_key STRING NOT NULL, code STRING, code_system STRING, display STRING, "
        "category STRING, criticality STRING, clinical_status STRING, recorded_at TIMESTAMP, " + LINEAGE,
        ("allergy_key",),
    ),
    "immunization": (
        "immunization_key STRING NOT NULL, patient_key STRING NOT NULL, encounter_key STRING, cvx_code STRING, "
        "display STRING, code_original STRING, code_system_original STRING, status STRING, "
        "occurrence_at TIMESTAMP, dose_quantity DOUBLE, dose_unit STRING, route STRING, " + LINEAGE,
        ("immunization_key",),
    ),
    "service_request": (
        "service_request_key STRING NOT NULL, patient_key STRING NOT NULL, encounter_key STRING, code STRING, "
        "code_system STRING, display STRING, loinc_code STRING, status STRING, intent STRING, priority STRING, "
        "order_control STRING, ordered_at TIMESTAMP, practitioner_key STRING, reason_code STRING, "
        "reason_system STRING, " + LINEAGE,
        ("service_request_key",),
    ),
    "document": (
        "document_key STRING NOT NULL, patient_key STRING NOT NULL, encounter_key STRING, type_code STRING, "
        "type_system STRING, type_display STRING, category STRING, status STRING, doc_status STRING, "
        "content_type STRING, documented_at TIMESTAMP, practitioner_key STRING, text STRING, last_event STRING, "
        + LINEAGE,
        ("document_key",),
    ),
    "care_plan": (
        "care_plan_key STRING NOT NULL, patient_key STRING NOT NULL, encounter_key STRING, status STRING, "
        "intent STRING, category_code STRING, category_display STRING, period_start TIMESTAMP, "
        "period_end TIMESTAMP, condition_keys ARRAY<STRING>, goal_keys ARRAY<STRING>, activity_count INT, "
        + LINEAGE,
        ("care_plan_key",),
    ),
    "care_plan_activity": (
        "care_plan_activity_key STRING NOT NULL, care_plan_key STRING NOT NULL, patient_key STRING NOT NULL, "
        "activity_index INT, code STRING, display STRING, status STRING, " + LINEAGE,
        ("care_plan_activity_key",),
    ),
    "care_team": (
        "care_team_key STRING NOT NULL, patient_key STRING NOT NULL, encounter_key STRING, status STRING, "
        "period_start TIMESTAMP, period_end TIMESTAMP, reason_code STRING, reason_display STRING, "
        "organization_key STRING, participant_count INT, participant_roles ARRAY<STRING>, " + LINEAGE,
        ("care_team_key",),
    ),
    "device": (
        "device_key STRING NOT NULL, patient_key STRING NOT NULL, type_code STRING, type_display STRING, "
        "status STRING, manufacture_date DATE, expiration_date DATE, " + LINEAGE,
        ("device_key",),
    ),
    "goal": (
        "goal_key STRING NOT NULL, patient_key STRING NOT NULL, lifecycle_status STRING, achievement_status STRING, "
        "description_code STRING, description STRING, start_date DATE, target_due_date DATE, "
        "condition_keys ARRAY<STRING>, " + LINEAGE,
        ("goal_key",),
    ),
}


def ddl(table: str) -> str:
    return TABLES[table][0]


def natural_key(table: str) -> tuple[str, ...]:
    return TABLES[table][1]


def columns(table: str) -> list[str]:
    """Column names in declared order."""
    return [name for name, _ in ddl_columns(ddl(table))]
