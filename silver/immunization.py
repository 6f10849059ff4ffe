"""silver.immunization: FHIR Immunization with its CVX code (lot numbers are not loaded)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from silver.common import FHIR, Deid, fhir_timestamp, flatten, patient_key_or_ref, record_lineage, resolve_references
from silver.deid import pseudonym

CVX = "http://hl7.org/fhir/sid/cvx"


def fhir_immunizations(resources: DataFrame, patients: DataFrame, encounters: DataFrame, deid: Deid) -> DataFrame:
    i = resolve_references(flatten(resources, "immunization"), patients, encounters)
    return i.select(
        pseudonym(F.col("id"), deid.key, "immunization").alias("immunization_key"), patient_key_or_ref(deid),
        "encounter_key", F.when(F.col("vaccine_system") == CVX, F.col("cvx_code")).alias("cvx_code"), "display",
        "status", fhir_timestamp("occurrence").alias("occurrence_at"),
        *record_lineage(FHIR))
