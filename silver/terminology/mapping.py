"""Code mapping as joins against the seeds: labs to LOINC, conditions to ICD-10-CM/SNOMED CT, drugs to RxNorm.

Every function keeps every input row: an unmapped code stays in ``code_original``/``code_system_original`` and
gets ``is_mapped = false``. Output columns that already exist in the input are replaced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from silver.terminology.icd10cm import normalize_icd10cm
from silver.terminology.seeds import ICD10CM, LOINC, RXNORM, SNOMED, load, rows


def normalize_system(system: Column) -> Column:
    """A code system name (HL7 v2 table 0396 mnemonic, FHIR URI, common spelling) as its FHIR URI.

    Systems not in ``code_systems.csv`` (local ones such as ``L`` or ``99GHL``) come back upper-cased and trimmed.
    """
    key = F.upper(F.trim(system))
    expr: Column | None = None
    for alias, uri in rows("code_systems"):
        cond = key == str(alias).upper()
        expr = F.when(cond, F.lit(uri)) if expr is None else expr.when(cond, F.lit(uri))
    assert expr is not None
    return expr.otherwise(key)


def map_gender(col: Column) -> Column:
    """HL7 v2 table 0001 (M/F/O/U/A/N) or FHIR spellings -> FHIR AdministrativeGender; NULL when unrecognized."""
    key = F.upper(F.trim(col))
    expr: Column | None = None
    for source_code, fhir_gender, _ in rows("gender"):
        cond = key == str(source_code)
        expr = F.when(cond, F.lit(fhir_gender)) if expr is None else expr.when(cond, F.lit(fhir_gender))
    assert expr is not None
    return expr.otherwise(F.lit(None).cast("string"))


def _with_originals(df: DataFrame, code_col: str, system_col: str, outputs: Sequence[str]) -> DataFrame:
    out = df.withColumn("_tm_code_in", F.col(code_col)).withColumn("_tm_system_in", F.col(system_col))
    out = out.drop(*[c for c in outputs if c in out.columns])
    return out.withColumn("_tm_system", normalize_system(F.col("_tm_system_in"))) \
              .withColumn("_tm_code", F.upper(F.trim(F.col("_tm_code_in"))))


def _finish_originals(df: DataFrame) -> DataFrame:
    return df.withColumn("code_original", F.col("_tm_code_in")) \
             .withColumn("code_system_original", F.col("_tm_system_in"))


def _drop_work(df: DataFrame) -> DataFrame:
    return df.drop(*[c for c in df.columns if c.startswith("_tm_")])


def _map_to_standard(df: DataFrame, code_col: str, system_col: str, target: str, standard: str, local: DataFrame,
                     names: DataFrame, fallback: Column | None = None) -> DataFrame:
    """Add ``<target>_code``, ``<target>_display``, ``is_mapped``, ``code_original``, ``code_system_original``.

    A code of the ``standard`` system is kept; another one is looked up in ``local`` (``_tm_system``, ``_tm_code``
    -> ``_tm_local``); ``fallback`` (a standard code found elsewhere) when neither gives one. The display comes from
    ``names`` (``<target>_code``, ``<target>_display``).
    """
    code, display = f"{target}_code", f"{target}_display"
    local = local.dropDuplicates(["_tm_system", "_tm_code"])
    names = names.select(F.col(code).alias("_tm_target"), F.col(display).alias("_tm_target_display"))
    out = _with_originals(df, code_col, system_col, (code, display, "is_mapped", "code_original",
                                                     "code_system_original"))
    out = out.join(F.broadcast(local), on=["_tm_system", "_tm_code"], how="left")
    mapped = F.when(F.col("_tm_system") == standard, F.trim(F.col("_tm_code_in"))).otherwise(F.col("_tm_local"))
    if fallback is not None:
        mapped = F.coalesce(mapped, fallback)
    out = out.withColumn("_tm_target", mapped).join(F.broadcast(names), on="_tm_target", how="left")
    out = out.withColumn(code, F.col("_tm_target")).withColumn(display, F.col("_tm_target_display")) \
             .withColumn("is_mapped", F.col("_tm_target").isNotNull())
    return _drop_work(_finish_originals(out))


def map_lab_codes(df: DataFrame, code_col: str = "code", system_col: str = "code_system",
                  alt_code_col: str | None = None, alt_system_col: str | None = None) -> DataFrame:
    """Add ``loinc_code``, ``loinc_display``, ``is_mapped``, ``code_original``, ``code_system_original``.

    A LOINC-coded input keeps its code; a local code (system + code, case-insensitive) is looked up in
    ``lab_local_to_loinc.csv``. When the primary code does not map and an alternate LOINC coding is given (HL7 OBX-3
    components 4-6), that one is used.
    """
    spark = df.sparkSession
    local = load(spark, "lab_local_to_loinc").select(
        F.upper(F.trim("local_system")).alias("_tm_system"), F.upper(F.trim("local_code")).alias("_tm_code"),
        F.col("loinc_code").alias("_tm_local"))
    fallback = None
    if alt_code_col and alt_system_col:
        alt_is_loinc = normalize_system(F.col(alt_system_col)) == LOINC
        fallback = F.when(alt_is_loinc, F.trim(F.col(alt_code_col)))
    return _map_to_standard(df, code_col, system_col, "loinc", LOINC, local, load(spark, "loinc"), fallback)


def map_condition_codes(df: DataFrame, code_col: str = "code", system_col: str = "code_system") -> DataFrame:
    """Add ``icd10cm_code``, ``snomed_code``, ``icd10cm_display``, ``is_mapped`` and the original code/system.

    SNOMED CT codes get their ICD-10-CM target from ``snomed_to_icd10cm.csv``; ICD-10-CM codes (normalized to the
    dotted form) get the preferred SNOMED CT source of the same file. ``is_mapped`` means an ICD-10-CM code is
    known (the analysis vocabulary of Gold); check it with :func:`valid_icd10cm`.
    """
    outputs = ("icd10cm_code", "snomed_code", "icd10cm_display", "is_mapped", "code_original",
               "code_system_original")
    seed = load(df.sparkSession, "snomed_to_icd10cm")
    forward = seed.select(F.col("snomed_code").alias("_tm_snomed"), F.col("icd10cm_code").alias("_tm_fw_icd")) \
                  .dropDuplicates(["_tm_snomed"])
    reverse = seed.filter("preferred_for_icd10cm").select(F.col("icd10cm_code").alias("_tm_icd"),
                                                          F.col("snomed_code").alias("_tm_rv_snomed")) \
                  .dropDuplicates(["_tm_icd"])
    names = seed.select(F.col("icd10cm_code").alias("_tm_icd_final"),
                        F.col("icd10cm_display").alias("_tm_icd_display")).dropDuplicates(["_tm_icd_final"])
    out = _with_originals(df, code_col, system_col, outputs)
    is_snomed, is_icd = F.col("_tm_system") == SNOMED, F.col("_tm_system") == ICD10CM
    out = out.withColumn("_tm_snomed", F.when(is_snomed, F.trim(F.col("_tm_code_in")))) \
             .withColumn("_tm_icd", F.when(is_icd, normalize_icd10cm(F.col("_tm_code_in"))))
    out = out.join(F.broadcast(forward), on="_tm_snomed", how="left") \
             .join(F.broadcast(reverse), on="_tm_icd", how="left")
    out = out.withColumn("_tm_icd_final", F.coalesce(F.col("_tm_icd"), F.col("_tm_fw_icd"))) \
             .join(F.broadcast(names), on="_tm_icd_final", how="left")
    out = out.withColumn("icd10cm_code", F.col("_tm_icd_final")) \
             .withColumn("snomed_code", F.coalesce(F.col("_tm_snomed"), F.col("_tm_rv_snomed"))) \
             .withColumn("icd10cm_display", F.col("_tm_icd_display")) \
             .withColumn("is_mapped", F.col("_tm_icd_final").isNotNull())
    return _drop_work(_finish_originals(out))


def map_medication_codes(df: DataFrame, code_col: str = "code", system_col: str = "code_system") -> DataFrame:
    """Add ``rxnorm_code``, ``rxnorm_display``, ``is_mapped``, ``code_original``, ``code_system_original``.

    RxNorm-coded input keeps its RxCUI; NDC and local formulary codes are looked up in ``medication_to_rxnorm.csv``.
    """
    spark = df.sparkSession
    local = load(spark, "medication_to_rxnorm").select(
        normalize_system(F.col("source_system")).alias("_tm_system"), F.upper(F.trim("source_code")).alias("_tm_code"),
        F.col("rxnorm_code").alias("_tm_local"))
    return _map_to_standard(df, code_col, system_col, "rxnorm", RXNORM, local, load(spark, "rxnorm"))


def unmapped_report(frames: Sequence[DataFrame] | Mapping[str, DataFrame], code_col: str = "code_original",
                    system_col: str = "code_system_original") -> DataFrame:
    """Unmapped codes with counts: ``domain, code, system, count``, most frequent first.

    Each frame needs ``is_mapped`` and the code/system columns (falls back to ``code``/``code_system`` when the
    original columns are absent, as in ``silver.condition``). A mapping names the domains; a list numbers them.
    """
    named = frames.items() if isinstance(frames, Mapping) else ((str(i), f) for i, f in enumerate(frames))
    parts = []
    for domain, frame in named:
        code = code_col if code_col in frame.columns else "code"
        system = system_col if system_col in frame.columns else "code_system"
        parts.append(frame.filter(~F.coalesce(F.col("is_mapped"), F.lit(False))).select(
            F.lit(domain).alias("domain"), F.col(code).cast("string").alias("code"),
            F.col(system).cast("string").alias("system")))
    if not parts:
        raise ValueError("unmapped_report needs at least one DataFrame")
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    return union.groupBy("domain", "code", "system").agg(F.count(F.lit(1)).alias("count")) \
                .orderBy(F.desc("count"), "domain", "code", "system")
