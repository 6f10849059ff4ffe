"""De-identification building blocks (engine-side, pure) and the PHI scan; which HIPAA method: POLICY.md.

The policy is ``rules.csv`` (rendered in ``POLICY.md``); Silver jobs apply these functions before every write.
"""

from silver.deid.dates import (
    age_90plus,
    apply_date_policy,
    birth_date_90plus_rule,
    birth_year_90plus_rule,
    date_shift_days,
    date_shift_days_py,
    is_90_plus,
    shift_date,
    shift_timestamp,
    year_floor,
    year_only,
)
from silver.deid.dicom import deidentify_dicom_column, deidentify_dicom_json, dicom_uid_py
from silver.deid.geo import generalize_zip3, generalize_zip3_py, restricted_zip3
from silver.deid.keys import EngineKey, engine_key, load_key, write_key_file
from silver.deid.pseudonym import keyed_lineage, pseudonym, pseudonym_py, reid_mapping, reid_table_name
from silver.deid.rules import load_rules, rules_for, shifted_date_columns
from silver.deid.text import known_identifiers, known_identifiers_from_arrays, scrub_text

__all__ = [
    "EngineKey", "engine_key", "keyed_lineage", "write_key_file",
    "age_90plus", "apply_date_policy", "birth_date_90plus_rule", "birth_year_90plus_rule", "date_shift_days",
    "date_shift_days_py", "deidentify_dicom_column", "deidentify_dicom_json", "dicom_uid_py", "generalize_zip3",
    "generalize_zip3_py", "is_90_plus", "known_identifiers", "known_identifiers_from_arrays", "load_key",
    "load_rules", "pseudonym", "pseudonym_py", "reid_mapping", "reid_table_name", "restricted_zip3", "rules_for",
    "scrub_text", "shift_date", "shift_timestamp", "shifted_date_columns", "year_floor", "year_only",
]
