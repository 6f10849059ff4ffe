"""Safe Harbor record keys: random surrogates issued from a protected mapping table (45 CFR 164.514(c)).

Under ``safe_harbor`` no key published in Silver may be derived from information about the individual (the keyed
pseudonyms are: they are HMACs of MRNs, visit numbers, NPIs...). Each pseudonym gets a surrogate of 32 random
bytes (hex), issued once and kept in ``_system.surrogate_keys`` (the restricted zone, never Silver or Gold):
``(namespace, pseudonym, surrogate, issued_run_id, issued_at)``. The mapping is per namespace, so one patient has one
surrogate in every table; mappings already issued are reused, so surrogates are stable across runs.

Issuance is deterministic per run because the random values are drawn once, appended to the mapping table, and
every row reads its surrogate back from the table (never from the random expression, which the engine may evaluate
more than once). The Silver job is the table's only writer and writes it sequentially (race-free).

Everything here is a pure ``DataFrame -> DataFrame`` function; silver.job reads and appends the table.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING

import pandas as pd
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import ArrayType, StringType

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

SURROGATE_TABLE = "_system.surrogate_keys"
SURROGATE_DDL = ("namespace STRING NOT NULL, pseudonym STRING NOT NULL, surrogate STRING NOT NULL, "
                 "issued_run_id STRING, issued_at TIMESTAMP")
SURROGATE_KEYS = ("namespace", "pseudonym")
SURROGATE_BYTES = 32


def key_columns(df: DataFrame) -> dict[str, str]:
    """Record-key columns of ``df`` -> their surrogate namespace: ``<x>_key STRING`` -> ``x``, ``<x>_keys
    ARRAY<STRING>`` -> ``x`` (patient_key is "patient" in every table, condition_keys "condition")."""
    out: dict[str, str] = {}
    for f in df.schema.fields:
        if f.name.endswith("_key") and isinstance(f.dataType, StringType):
            out[f.name] = f.name.removesuffix("_key")
        elif f.name.endswith("_keys") and isinstance(f.dataType, ArrayType) \
                and isinstance(f.dataType.elementType, StringType):
            out[f.name] = f.name.removesuffix("_keys")
    return out


def random_hex(anchor: Column) -> Column:
    """32 random bytes as 64 hex characters per row of ``anchor`` (whose value is unused), from the OS CSPRNG on
    the engine: nothing about the individual."""
    @pandas_udf("string")  # type: ignore[call-overload]
    def _draw(rows: pd.Series) -> pd.Series:
        return pd.Series([secrets.token_hex(SURROGATE_BYTES) for _ in range(len(rows))], index=rows.index)

    return _draw(anchor)


def pseudonyms_used(df: DataFrame, columns: Mapping[str, str]) -> DataFrame:
    """Distinct (namespace, pseudonym) of the record-key ``columns`` (name -> namespace) of ``df``, NULLs left out.

    Stage it before appending what :func:`to_issue` makes of it: Sail's NOT NULL check of the mapping table's
    write sees the NULLs this filters out when the filter is still in the plan (seen with pysail 0.7.2)."""
    types = {f.name: f.dataType for f in df.schema.fields}
    parts = []
    for name, namespace in columns.items():
        if isinstance(types[name], ArrayType):
            part = df.select(F.explode(F.col(name)).alias("pseudonym"))
        else:
            part = df.select(F.col(name).alias("pseudonym"))
        parts.append(part.filter(F.col("pseudonym").isNotNull())
                     .select(F.lit(namespace).alias("namespace"), "pseudonym"))
    if not parts:
        return df.sparkSession.createDataFrame([], "namespace STRING, pseudonym STRING")
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out.distinct()


def to_issue(used: DataFrame, issued: DataFrame, run_id: str, now: Column) -> DataFrame:
    """Mapping rows for the pseudonyms of ``used`` that ``issued`` (the mapping table) has no surrogate for yet."""
    new = used.join(issued.select(*SURROGATE_KEYS), list(SURROGATE_KEYS), "left_anti")
    return new.select(*SURROGATE_KEYS, random_hex(F.col("pseudonym")).alias("surrogate"),
                      F.lit(run_id).alias("issued_run_id"), now.cast("timestamp").alias("issued_at"))


def apply_surrogates(df: DataFrame, columns: Mapping[str, str], mapping: DataFrame) -> DataFrame:
    """Replace every record-key column (name -> namespace) of ``df`` by its surrogate from ``mapping`` (the
    mapping table, which must hold every pseudonym of ``df``: see :func:`to_issue`). Arrays keep their order."""
    types = {f.name: f.dataType for f in df.schema.fields}
    order = df.columns
    for name, namespace in columns.items():
        m = mapping.filter(F.col("namespace") == namespace)
        if isinstance(types[name], ArrayType):
            df = _map_array(df, name, m)
        else:
            m = m.select(F.col("pseudonym").alias("_pseudonym"), F.col("surrogate").alias("_surrogate"))
            df = df.join(m, F.col(name) == F.col("_pseudonym"), "left") \
                   .withColumn(name, F.col("_surrogate")).drop("_pseudonym", "_surrogate")
    return df.select(*order)


def _map_array(df: DataFrame, name: str, mapping: DataFrame) -> DataFrame:
    # each distinct array is mapped once (exploded with positions, joined, put back in order) and joined back on
    # its text (keys are hex: no separator inside them)
    text = F.array_join(F.col(name), "\u0001")
    distinct = df.filter(F.size(F.col(name)) > 0).select(text.alias("_arr"), F.col(name).alias("_values")).distinct()
    exploded = distinct.select("_arr", F.posexplode("_values").alias("_pos", "pseudonym"))
    mapped = exploded.join(mapping.select("pseudonym", "surrogate"), "pseudonym", "left") \
        .groupBy("_arr").agg(F.array_sort(F.collect_list(F.struct("_pos", "surrogate"))).alias("_pairs")) \
        .select("_arr", F.transform("_pairs", lambda p: p["surrogate"]).alias("_mapped"))
    return df.withColumn("_arr", text).join(mapped, "_arr", "left") \
             .withColumn(name, F.when(F.size(F.col(name)) > 0, F.col("_mapped")).otherwise(F.col(name))) \
             .drop("_arr", "_mapped")


# -- DICOM headers: the UIDs silver.deid.dicom derived from the original UIDs (2.25.<HMAC>) and the PatientID
UID_NAMESPACE = "dicom_uid"
_DERIVED_UID = re.compile(r'"(2\.25\.[0-9]+)"')


def surrogate_uid(surrogate: str) -> str:
    """A DICOM UID from a surrogate: ``2.25.<128-bit integer>`` (PS3.5 B.2), random like the surrogate."""
    return "2.25." + str(int(surrogate[:32], 16))


def header_uids(header_col: Column) -> Column:
    """The derived UIDs (``2.25.<integer>``) a de-identified DICOM JSON header holds, in order of appearance."""
    @pandas_udf("array<string>")  # type: ignore[call-overload]
    def _uids(headers: pd.Series) -> pd.Series:
        return headers.map(lambda h: list(dict.fromkeys(_DERIVED_UID.findall(h))) if isinstance(h, str) else None)

    return _uids(header_col)


def rewrite_header(header_col: Column, uids_from: Column, uids_to: Column, patient_from: Column,
                   patient_to: Column) -> Column:
    """The header with each derived UID replaced by :func:`surrogate_uid` of its surrogate and the PatientID
    (the patient pseudonym) by the patient surrogate."""
    @pandas_udf("string")  # type: ignore[call-overload]
    def _rewrite(headers: pd.Series, old: pd.Series, new: pd.Series, p_old: pd.Series, p_new: pd.Series) -> pd.Series:
        out = []
        for h, o, n, po, pn in zip(headers, old, new, p_old, p_new, strict=True):
            if not isinstance(h, str):
                out.append(None)
                continue
            table = {f'"{a}"': f'"{surrogate_uid(b)}"' for a, b in zip(list(o), list(n), strict=True)
                     if isinstance(b, str)} if o is not None and n is not None else {}
            if isinstance(po, str) and isinstance(pn, str):
                table[f'"{po}"'] = f'"{pn}"'
            out.append(re.sub("|".join(map(re.escape, table)), lambda m, t=table: t[m.group(0)], h) if table else h)
        return pd.Series(out, index=headers.index)

    return _rewrite(header_col, uids_from, uids_to, patient_from, patient_to)
