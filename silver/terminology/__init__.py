"""Terminology: versioned CSV seeds (see README.md) and pure DataFrame -> DataFrame mapping functions."""

from silver.terminology.icd10cm import billable_codes, icd10cm_release, normalize_icd10cm, valid_icd10cm
from silver.terminology.mapping import (
    map_condition_codes,
    map_gender,
    map_lab_codes,
    map_medication_codes,
    normalize_system,
    unmapped_report,
)
from silver.terminology.seeds import ICD10CM, LOINC, RXNORM, SEED_VERSION, SNOMED, load, rows

__all__ = [
    "ICD10CM", "LOINC", "RXNORM", "SEED_VERSION", "SNOMED", "billable_codes", "icd10cm_release", "load",
    "map_condition_codes", "map_gender", "map_lab_codes", "map_medication_codes", "normalize_icd10cm",
    "normalize_system", "rows", "unmapped_report", "valid_icd10cm",
]
