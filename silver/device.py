"""silver.device: FHIR Device with its SNOMED CT type, status and dates.

UDI carrier (device identifier, human-readable and machine-readable forms), distinct identifier, lot and serial
numbers are device identifiers (HIPAA Safe Harbor 164.514(b)(2)(i)(M)): the view does not select them. The key is
a pseudonym of the resource id.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from silver.care_plan import untyped_time
from silver.common import (
    FHIR,
    Deid,
    fhir_date,
    flatten,
    invalid_values,
    patient_key_or_ref,
    record_lineage,
    resolve_references,
)
from silver.deid import pseudonym


def fhir_devices(resources: DataFrame, patients: DataFrame, deid: Deid) -> DataFrame:
    d = resolve_references(flatten(resources, "device"), patients)
    return d.select(
        pseudonym(F.col("id"), deid.key, "device").alias("device_key"), patient_key_or_ref(deid),
        "type_code", "type_display", "status", fhir_date("manufacture_date").alias("manufacture_date"),
        fhir_date("expiration_date").alias("expiration_date"), *record_lineage(FHIR),
        invalid_values(manufactureDate=untyped_time("manufacture_date"),
                       expirationDate=untyped_time("expiration_date")))
