"""Keyed pseudonyms: RFC 2104 HMAC-SHA256, computed where the key is.

``pseudonym(col, key, ns)`` on the engine and ``pseudonym_py(value, key, ns)`` in Python give the same 64-hex
string. Namespaces ("patient", "encounter", ...) use derived keys, so the same raw value gives unrelated
pseudonyms in different namespaces.

On the engine the HMAC runs in a vectorized (Arrow) Python UDF that reads the key from an
:class:`~silver.deid.keys.EngineKey`: the query plan carries the key file's path and key id, never the key or a
derived key (an HMAC spelled in SQL would put its inner and outer pads into every plan, where the Spark UI, event
logs and query history keep them).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from silver.deid.keys import EngineKey

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

NAMESPACE_PREFIX = "clinical-lakehouse/"
LINEAGE_NAMESPACE = "lineage"
# every namespace an engine-side keyed hash was built for in this process (the key-custody test checks them all)
NAMESPACES_USED: set[str] = set()


def namespace_key(key: bytes, namespace: str) -> bytes:
    """The key for one namespace: HMAC(key, "clinical-lakehouse/" + namespace)."""
    if not namespace:
        raise ValueError("a pseudonym namespace must not be empty")
    return hmac.new(key, f"{NAMESPACE_PREFIX}{namespace}".encode(), hashlib.sha256).digest()


def _hex(ns_key: bytes, value: object) -> str:
    """HMAC-SHA256(ns_key, UTF-8 of value) as lower-case hex: the one computation behind every pseudonym."""
    return hmac.new(ns_key, str(value).encode("utf-8"), hashlib.sha256).hexdigest()


def _hmac_hex(values: pd.Series, ns_key: bytes) -> pd.Series:
    return values.map(lambda v: None if v is None or v is pd.NA else _hex(ns_key, v))


def _record_crosswalk(key: EngineKey, namespace: str, values: pd.Series, new: pd.Series) -> None:
    """During a key rotation (``key.crosswalk_dir`` set, see lakehouse_app/rekey.py): write this batch's
    (namespace, old pseudonym, new pseudonym) pairs into the restricted crosswalk folder, where the key is."""
    if key.crosswalk_dir is None:
        return
    old = _hmac_hex(values, namespace_key(key.load_previous(), namespace))
    pairs = pd.DataFrame({"namespace": namespace, "old_pseudonym": old, "new_pseudonym": new}).dropna()
    if len(pairs):
        pairs.drop_duplicates().to_parquet(Path(key.crosswalk_dir) / f"{namespace}-{uuid.uuid4().hex}.parquet")


def keyed_hex(col: Column, key: EngineKey, namespace: str) -> Column:
    """HMAC-SHA256(namespace key, UTF-8 of col) as lower-case hex, on the engine; NULL stays NULL. Un-aliased."""
    if not namespace:
        raise ValueError("a pseudonym namespace must not be empty")
    NAMESPACES_USED.add(namespace)

    @pandas_udf("string")  # type: ignore[call-overload]
    def _keyed(values: pd.Series) -> pd.Series:
        out = _hmac_hex(values, namespace_key(key.load(), namespace))
        _record_crosswalk(key, namespace, values, out)
        return out

    return _keyed(col.cast("string"))


def keyed_lineage(hashes: Column, key: EngineKey) -> Column:
    """An array of Bronze content hashes as keyed hashes (namespace "lineage"), sorted; NULL stays NULL.

    Whoever holds the key can still follow a Silver row back to its Bronze records (:func:`pseudonym_py` of each
    ``content_hash``); whoever holds only a copy of a source message cannot find its row."""

    NAMESPACES_USED.add(LINEAGE_NAMESPACE)

    @pandas_udf("array<string>")  # type: ignore[call-overload]
    def _keyed(arrays: pd.Series) -> pd.Series:
        ns_key = namespace_key(key.load(), LINEAGE_NAMESPACE)
        return arrays.map(lambda a: None if a is None else sorted(_hex(ns_key, h) for h in a))

    return _keyed(hashes)


def pseudonym(col: Column, key: EngineKey, namespace: str, alias: str | None = None) -> Column:
    """The pseudonym of ``col`` in ``namespace`` (64 hex chars), aliased ``<namespace>_key`` unless told."""
    return keyed_hex(col, key, namespace).alias(alias or f"{namespace}_key")


def pseudonym_array(col: Column, key: EngineKey, namespace: str) -> Column:
    """Each item of an array column as its pseudonym in ``namespace``, sorted and distinct, NULL items left out;
    an empty array for NULL. Un-aliased. For references to other resources (the condition keys of a care plan)
    without exploding and re-joining the rows."""
    if not namespace:
        raise ValueError("a pseudonym namespace must not be empty")
    NAMESPACES_USED.add(namespace)

    @pandas_udf("array<string>")  # type: ignore[call-overload]
    def _keyed(arrays: pd.Series) -> pd.Series:
        ns_key = namespace_key(key.load(), namespace)
        if key.crosswalk_dir is not None:
            items = pd.Series([v for a in arrays if a is not None for v in a if v is not None], dtype=object)
            _record_crosswalk(key, namespace, items, _hmac_hex(items, ns_key))
        return arrays.map(lambda a: [] if a is None else sorted({_hex(ns_key, v) for v in a if v is not None}))

    return _keyed(col.cast("array<string>"))


def pseudonym_py(value: str | None, key: bytes, namespace: str) -> str | None:
    """Python twin of :func:`pseudonym` (for DICOM headers, the PHI scan and tests)."""
    if value is None:
        return None
    return _hex(namespace_key(key, namespace), value)


def reid_mapping(df_of_raw_ids: DataFrame, key: EngineKey, id_col: str = "raw_id", namespace_col: str = "namespace",
                 namespace: str | None = None) -> DataFrame:
    """(namespace, pseudonym, raw_id) rows: the re-identification table.

    RESTRICTED: write it only to ``reid_table_name(namespace)`` (``<root>/_system/reid_<namespace>``), never to
    Silver or Gold. Give either a ``namespace`` for all rows or a ``namespace_col`` holding one per row.
    """
    if namespace is not None:
        ns_col = F.lit(namespace)
        pseudo = pseudonym(F.col(id_col), key, namespace, alias="pseudonym")
    else:
        namespaces = [r[0] for r in df_of_raw_ids.select(namespace_col).distinct().collect() if r[0] is not None]
        ns_col = F.col(namespace_col)
        pseudo = F.lit(None).cast("string")
        for ns in sorted(namespaces):
            pseudo = F.when(ns_col == F.lit(ns), keyed_hex(F.col(id_col), key, ns)).otherwise(pseudo)
        pseudo = pseudo.alias("pseudonym")
    return (df_of_raw_ids.where(F.col(id_col).isNotNull())
            .select(ns_col.alias("namespace"), pseudo, F.col(id_col).cast("string").alias("raw_id"))
            .dropDuplicates(["namespace", "raw_id"]))


def reid_table_name(namespace: str) -> str:
    """Catalog name of the restricted mapping table for one namespace (``_system.reid_<namespace>``)."""
    return f"_system.reid_{namespace}"
