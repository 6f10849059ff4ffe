"""The versioned CSV seeds of this folder: read once on the client, handed to the engine as small DataFrames."""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse.catalog import ddl_columns
from lakehouse.errors import LakehouseError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SEED_DIR = Path(__file__).resolve().parent
SEED_VERSION = (SEED_DIR / "VERSION").read_text(encoding="utf-8").strip()

# seed name -> Spark DDL of its columns (CSV header order)
SCHEMAS: dict[str, str] = {
    "code_systems": "alias STRING, system STRING",
    "lab_local_to_loinc": "local_system STRING, local_code STRING, loinc_code STRING, loinc_display STRING",
    "loinc": "loinc_code STRING, loinc_display STRING",
    "snomed_to_icd10cm": "snomed_code STRING, snomed_display STRING, icd10cm_code STRING, icd10cm_display STRING, "
                         "preferred_for_icd10cm BOOLEAN",
    "rxnorm": "rxnorm_code STRING, rxnorm_display STRING",
    "medication_to_rxnorm": "source_system STRING, source_code STRING, rxnorm_code STRING, rxnorm_display STRING",
    "gender": "source_code STRING, fhir_gender STRING, meaning STRING",
    "loinc_units": "loinc_code STRING, canonical_unit STRING, molar_mass_g_per_mol DOUBLE, charge INT",
    "unit_synonyms": "unit_text STRING, ucum STRING",
    "assigning_authorities": "sent_authority STRING, authority STRING",
}

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def _parse(value: str, sql_type: str) -> object:
    if value == "" and sql_type != "STRING":
        return None
    if sql_type == "DOUBLE":
        return float(value)
    if sql_type == "INT":
        return int(value)
    if sql_type == "BOOLEAN":
        return value.strip().lower() == "true"
    return value


@cache
def rows(name: str) -> tuple[tuple[object, ...], ...]:
    """The seed's rows, typed per :data:`SCHEMAS` (client side, cached)."""
    if name not in SCHEMAS:
        raise LakehouseError(f"unknown terminology seed {name!r}; known: {', '.join(sorted(SCHEMAS))}")
    types = ddl_columns(SCHEMAS[name])
    with (SEED_DIR / f"{name}.csv").open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != [c for c, _ in types]:
            raise LakehouseError(f"seed {name}.csv has columns {reader.fieldnames}, expected {[c for c, _ in types]}")
        return tuple(tuple(_parse(r[c], t) for c, t in types) for r in reader)


def load(spark: SparkSession, name: str) -> DataFrame:
    """A seed as a DataFrame (e.g. ``load(spark, "lab_local_to_loinc")``)."""
    return spark.createDataFrame(list(rows(name)), schema=SCHEMAS[name])
