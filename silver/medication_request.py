"""silver.medication_request: FHIR MedicationRequest coded to RxNorm (HL7 RXO/RXE orders are not parsed yet)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from silver.common import FHIR, Deid, fhir_timestamp, flatten
from silver.deid import pseudonym, scrub_text
from silver.terminology import map_medication_codes


def fhir_medication_requests(resources: DataFrame, patients: DataFrame, encounters: DataFrame,
                             practitioners: DataFrame, known: DataFrame, deid: Deid) -> DataFrame:
    m = flatten(resources, "medication_request")
    m = m.join(patients.select(F.col("fhir_id").alias("patient_ref"), "patient_key"), "patient_ref", "left")
    m = m.join(encounters.select(F.col("fhir_id").alias("encounter_ref"), "encounter_key"), "encounter_ref", "left")
    m = m.join(practitioners.select(F.col("fhir_id").alias("practitioner_ref"), "practitioner_key"),
               "practitioner_ref", "left")
    m = m.join(known, "patient_key", "left")
    rows = m.select(
        pseudonym(F.col("id"), deid.key, "medication_request").alias("medication_request_key"),
        F.coalesce("patient_key", pseudonym(F.col("patient_ref"), deid.key, "patient")).alias("patient_key"),
        "encounter_key", F.col("code_code").alias("code"), F.col("code_system"),
        F.coalesce("code_display", "code_text").alias("display"), "status", "intent",
        fhir_timestamp("authored").alias("authored_at"), "practitioner_key",
        scrub_text(F.col("dosage_text"), F.col("known")).alias("dosage_text"),
        F.array(F.lit(FHIR)).alias("sources"), F.array("content_hash").alias("bronze_hashes"))
    mapped = map_medication_codes(rows, "code", "code_system")
    return mapped.withColumn("display", F.coalesce("rxnorm_display", "display"))
