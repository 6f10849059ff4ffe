"""silver.procedure: FHIR Procedure (performed dateTime or Period)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from silver.common import FHIR, Deid, fhir_timestamp, flatten, patient_key_or_ref, record_lineage, resolve_references
from silver.deid import pseudonym
from silver.terminology import normalize_system
from silver.terminology.seeds import SNOMED


def fhir_procedures(resources: DataFrame, patients: DataFrame, encounters: DataFrame, deid: Deid) -> DataFrame:
    p = resolve_references(flatten(resources, "procedure"), patients, encounters)
    system = normalize_system(F.col("code_system"))
    return p.select(
        pseudonym(F.col("id"), deid.key, "procedure").alias("procedure_key"), patient_key_or_ref(deid),
        "encounter_key", F.col("code_code").alias("code"), system.alias("code_system"),
        F.col("code_display").alias("display"), F.when(system == SNOMED, F.col("code_code")).alias("snomed_code"),
        "status", fhir_timestamp(F.coalesce("performed", "performed_start")).alias("performed_start"),
        fhir_timestamp(F.coalesce("performed_end", "performed")).alias("performed_end"),
        *record_lineage(FHIR))
