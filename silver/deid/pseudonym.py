"""Keyed pseudonyms: RFC 2104 HMAC-SHA256 in plain Spark SQL (Sail has no ``hmac`` function) and in Python.

``pseudonym(col, key, ns)`` in Spark and ``pseudonym_py(value, key, ns)`` in Python give the same 64-hex string.
Namespaces ("patient", "encounter", ...) use derived keys, so the same raw value gives unrelated pseudonyms in
different namespaces. The inner/outer pads are literals in the query plan and can reveal the derived key: every
column built here is aliased, and query plans of these columns must never be logged.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

BLOCK = 64  # SHA-256 block size in bytes


def namespace_key(key: bytes, namespace: str) -> bytes:
    """The key for one namespace: HMAC(key, "clinical-lakehouse/" + namespace)."""
    if not namespace:
        raise ValueError("a pseudonym namespace must not be empty")
    return hmac.new(key, f"clinical-lakehouse/{namespace}".encode(), hashlib.sha256).digest()


def _pads(key: bytes) -> tuple[str, str]:
    if len(key) > BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in key).hex(), bytes(b ^ 0x5C for b in key).hex()


def hmac_sha256_hex(col: Column, key: bytes) -> Column:
    """HMAC-SHA256(key, UTF-8 of col) as lower-case hex; NULL stays NULL. Un-aliased: wrap it before use."""
    ipad, opad = _pads(key)
    inner = F.sha2(F.concat(F.unhex(F.lit(ipad)), F.encode(col.cast("string"), "UTF-8")), 256)
    return F.sha2(F.concat(F.unhex(F.lit(opad)), F.unhex(inner)), 256)


def pseudonym(col: Column, key: bytes, namespace: str, alias: str | None = None) -> Column:
    """The pseudonym of ``col`` in ``namespace`` (64 hex chars), aliased ``<namespace>_key`` unless told."""
    return hmac_sha256_hex(col, namespace_key(key, namespace)).alias(alias or f"{namespace}_key")


def pseudonym_py(value: str | None, key: bytes, namespace: str) -> str | None:
    """Python twin of :func:`pseudonym` (for DICOM headers, the PHI scan and tests)."""
    if value is None:
        return None
    return hmac.new(namespace_key(key, namespace), str(value).encode("utf-8"), hashlib.sha256).hexdigest()


def reid_mapping(df_of_raw_ids: DataFrame, key: bytes, id_col: str = "raw_id", namespace_col: str = "namespace",
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
            hashed = hmac_sha256_hex(F.col(id_col), namespace_key(key, ns))
            pseudo = F.when(ns_col == F.lit(ns), hashed).otherwise(pseudo)
        pseudo = pseudo.alias("pseudonym")
    return (df_of_raw_ids.where(F.col(id_col).isNotNull())
            .select(ns_col.alias("namespace"), pseudo, F.col(id_col).cast("string").alias("raw_id"))
            .dropDuplicates(["namespace", "raw_id"]))


def reid_table_name(namespace: str) -> str:
    """Catalog name of the restricted mapping table for one namespace (``_system.reid_<namespace>``)."""
    return f"_system.reid_{namespace}"
