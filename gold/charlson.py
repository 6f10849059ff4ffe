"""Charlson comorbidity index from ICD-10 codes: Quan et al. (2005) coding algorithm, Charlson (1987) weights.

The mapping ships as ``charlson_quan2005_icd10.csv`` next to this module (source and transcription in its header).
comorbidipy, the obvious package, is pandas-only and its 0.5.0 release does not import with pandas 2.2+, so the
score is computed engine-side here: prefix-match the codes, keep each category once, apply the Charlson hierarchy
(a severe form replaces its mild form), sum the weights.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

MAPPING_FILE = Path(__file__).with_name("charlson_quan2005_icd10.csv")

# (severe, mild): when both are present only the severe category counts (Charlson 1987; Quan 2005)
HIERARCHY = (("msld", "mld"), ("diabwc", "diab"), ("metacanc", "canc"))


@lru_cache(maxsize=1)
def quan_mapping() -> tuple[tuple[str, int, str], ...]:
    """(category, weight, ICD-10 prefix without dot) rows of the Quan 2005 mapping."""
    with open(MAPPING_FILE, newline="") as fh:
        rows = csv.DictReader(line for line in fh if not line.startswith("#"))
        return tuple((r["category"], int(r["weight"]), r["icd10_prefix"]) for r in rows)


def category_weights() -> dict[str, int]:
    return {cat: weight for cat, weight, _ in quan_mapping()}


def mapping_frame(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(list(quan_mapping()), "category STRING, weight INT, icd10_prefix STRING")


def normalize_icd10(code: str) -> Column:
    """'i25.2 ' -> 'I252': the mapping's prefixes carry no dot."""
    return F.upper(F.regexp_replace(F.col(code), r"[^A-Za-z0-9]", ""))


def charlson_index(codes: DataFrame, mapping: DataFrame, key: str = "encounter_key") -> DataFrame:
    """Per ``key``: ``charlson_index`` INT and ``charlson_categories`` ARRAY<STRING> (sorted).

    ``codes`` has ``key`` and ``icd10`` (any case, with or without the dot); keys without a matching code
    are absent from the result (the caller fills 0).
    """
    norm = codes.select(F.col(key), normalize_icd10("icd10").alias("code")).where(F.col("code") != "")
    categories = (
        norm.join(F.broadcast(mapping), F.col("code").startswith(F.col("icd10_prefix")))
        .groupBy(key).agg(F.collect_set("category").alias("cats"))
    )
    # array expressions rather than anti-join + union: Sail trips on the nullability of a union of NOT NULL keys
    superseded = " OR ".join(f"(c = '{mild}' AND array_contains(cats, '{severe}'))" for severe, mild in HIERARCHY)
    weights = ", ".join(f"'{cat}', {weight}" for cat, weight in category_weights().items())
    kept = F.expr(f"array_sort(filter(cats, c -> NOT ({superseded})))")
    total = F.expr(f"aggregate(transform(kept, c -> map({weights})[c]), 0, (acc, w) -> acc + w)")
    return categories.withColumn("kept", kept).select(
        key, total.cast("int").alias("charlson_index"), F.col("kept").alias("charlson_categories"))
