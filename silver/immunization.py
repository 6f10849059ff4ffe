"""silver.immunization: FHIR Immunization with its CVX code (lot numbers are not loaded)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from silver.common import FHIR, Deid, fhir_timestamp, flatten
from silver.deid import pseudonym

CVX = "http://hl7.org/fhir/sid/cvx"


def fhir_immunizations(resources: DataFrame, patients: DataFrame, encounters: DataFrame, deid: Deid) -> DataFrame:
    i = flatten(resources, "immunization")
    i = i.join(patients.select(F.col("fhir_id").alias("patient_ref"), "patient_key"), "patient_ref", "left")
    i = i.join(encounters.select(F.col("fhir_id").alias("encounter_ref"), "encounter_key"), "encounter_ref", "left")
    return i.select(
        pseudonym(F.col("id"), deid.key, "immunization").alias("immunization_key"),
        F.coalesce("patient_key", pseudonym(F.col("patient_ref"), deid.key, "patient")).alias("patient_key"),
        "encounter_key", F.when(F.col("vaccine_system") == CVX, F.col("cvx_code")).alias("cvx_code"), "display",
        "status", fhir_timestamp("occurrence").alias("occurrence_at"),
        F.array(F.lit(FHIR)).alias("sources"), F.array("content_hash").alias("bronze_hashes"))
