"""silver.procedure: FHIR Procedure (performed dateTime or Period)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from silver.common import FHIR, Deid, fhir_timestamp, flatten
from silver.deid import pseudonym
from silver.terminology import normalize_system
from silver.terminology.seeds import SNOMED


def fhir_procedures(resources: DataFrame, patients: DataFrame, encounters: DataFrame, deid: Deid) -> DataFrame:
    p = flatten(resources, "procedure")
    p = p.join(patients.select(F.col("fhir_id").alias("patient_ref"), "patient_key"), "patient_ref", "left")
    p = p.join(encounters.select(F.col("fhir_id").alias("encounter_ref"), "encounter_key"), "encounter_ref", "left")
    system = normalize_system(F.col("code_system"))
    return p.select(
        pseudonym(F.col("id"), deid.key, "procedure").alias("procedure_key"),
        F.coalesce("patient_key", pseudonym(F.col("patient_ref"), deid.key, "patient")).alias("patient_key"),
        "encounter_key", F.col("code_code").alias("code"), system.alias("code_system"),
        F.col("code_display").alias("display"), F.when(system == SNOMED, F.col("code_code")).alias("snomed_code"),
        "status", fhir_timestamp(F.coalesce("performed", "performed_start")).alias("performed_start"),
        fhir_timestamp(F.coalesce("performed_end", "performed")).alias("performed_end"),
        F.array(F.lit(FHIR)).alias("sources"), F.array("content_hash").alias("bronze_hashes"))
