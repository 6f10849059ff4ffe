"""silver.medication_request: FHIR MedicationRequest coded to RxNorm (HL7 RXO/RXE orders are not parsed yet)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from silver.common import FHIR, Deid, fhir_timestamp, flatten, patient_key_or_ref, record_lineage, resolve_references
from silver.deid import pseudonym, scrub_text
from silver.terminology import map_medication_codes


def fhir_medication_requests(resources: DataFrame, patients: DataFrame, encounters: DataFrame,
                             practitioners: DataFrame, known: DataFrame, deid: Deid) -> DataFrame:
    m = resolve_references(flatten(resources, "medication_request"), patients, encounters, practitioners)
    m = m.join(known, "patient_key", "left")
    rows = m.select(
        pseudonym(F.col("id"), deid.key, "medication_request").alias("medication_request_key"),
        patient_key_or_ref(deid),
        "encounter_key", F.col("code_code").alias("code"), F.col("code_system"),
        F.coalesce("code_display", "code_text").alias("display"), "status", "intent",
        fhir_timestamp("authored").alias("authored_at"), "practitioner_key",
        scrub_text(F.col("dosage_text"), F.col("known")).alias("dosage_text"),
        *record_lineage(FHIR))
    mapped = map_medication_codes(rows, "code", "code_system")
    return mapped.withColumn("display", F.coalesce("rxnorm_display", "display"))
