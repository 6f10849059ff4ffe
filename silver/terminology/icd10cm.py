"""ICD-10-CM code validity against the CDC code set shipped by ``simple-icd-10-cm`` (April 2026 release)."""

from __future__ import annotations

import gc
from functools import lru_cache
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F


@lru_cache(maxsize=1)
def billable_codes() -> tuple[str, ...]:
    """Every leaf (billable) ICD-10-CM code, dotted (e.g. ``E11.9``, ``S52.501A``).

    Categories with children (``E11``), blocks and chapters are not valid on a claim, so they are not here.
    """
    # The library builds a 98k-node tree from XML on import; with GX/pyspark loaded, the cyclic garbage collector
    # re-scans the growing heap many times over (measured: 16 s instead of 2 s), so it is paused meanwhile.
    enabled = gc.isenabled()
    gc.disable()
    try:
        # deferred: the ICD-10-CM code set takes 2-3 s to load (measured)
        import simple_icd_10_cm as cm

        return tuple(c for c in cm.get_all_codes(with_dots=True) if not cm.is_chapter_or_block(c) and cm.is_leaf(c))
    finally:
        if enabled:
            gc.enable()


def icd10cm_release() -> str:
    # deferred: the ICD-10-CM code set takes 2-3 s to load (measured)
    import simple_icd_10_cm as cm

    files = sorted(p.name for p in Path(cm.__file__).parent.joinpath("data").glob("code-list-*"))
    return files[0].removeprefix("code-list-").removesuffix(".txt") if files else "unknown"


def normalize_icd10cm(code: Column) -> Column:
    """Upper case, no blanks, the dot after the third character (``e119`` and ``E11.9`` both give ``E11.9``)."""
    bare = F.regexp_replace(F.upper(F.trim(code)), r"[.\s]", "")
    return F.when(bare == "", F.lit(None)).when(
        F.length(bare) > 3, F.concat(F.substring(bare, 1, 3), F.lit("."), F.substring(bare, 4, 10))
    ).otherwise(bare)


def valid_icd10cm(df: DataFrame, code_col: str, out_col: str = "is_icd10cm_valid") -> DataFrame:
    """Add ``is_icd10cm_valid``: the code (normalized) is a billable ICD-10-CM code; NULL when the code is NULL."""
    codes = df.sparkSession.createDataFrame([(c,) for c in billable_codes()], "_tm_icd10 STRING")
    codes = codes.withColumn("_tm_icd10_ok", F.lit(True))
    out = df.drop(out_col).withColumn("_tm_icd10", normalize_icd10cm(F.col(code_col)))
    out = out.join(F.broadcast(codes), on="_tm_icd10", how="left")
    valid = F.when(F.col("_tm_icd10").isNull(), F.lit(None).cast("boolean")).otherwise(
        F.coalesce(F.col("_tm_icd10_ok"), F.lit(False)))
    return out.withColumn(out_col, valid).drop("_tm_icd10", "_tm_icd10_ok")
