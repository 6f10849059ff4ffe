"""Dates per de-identification profile: one deterministic shift per patient (``expert_determination``, intervals
preserved) or the year only (``safe_harbor``, 164.514(b)(2)(i)(C)); the 90+ age rule."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import pandas as pd
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import DateType, TimestampNTZType, TimestampType

from silver.deid.keys import EngineKey
from silver.deid.pseudonym import NAMESPACES_USED, namespace_key

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

DATE_SHIFT_NAMESPACE = "date-shift"
MICROS_PER_DAY = 86_400_000_000
AGE_CAP = 90


def _offset(n: int, max_days: int, allow_zero: bool) -> int:
    # n is uniform in [0, 2^32); map it onto [-max, max] (or the same range without 0)
    if allow_zero:
        return n % (2 * max_days + 1) - max_days
    m = n % (2 * max_days)
    return m - max_days if m < max_days else m - max_days + 1


def date_shift_days(patient_pseudonym_col: Column, key: EngineKey, max_days: int, allow_zero: bool = False) -> Column:
    """Days to add to every date of this patient: from the key, in [-max_days, max_days], 0 excluded by default.
    Computed on the engine where the key is read (see silver.deid.pseudonym): no key material in the plan."""
    if max_days < 1:
        raise ValueError("max_days must be at least 1")
    NAMESPACES_USED.add(DATE_SHIFT_NAMESPACE)

    @pandas_udf("int")  # type: ignore[call-overload]
    def _days(pseudonyms: pd.Series) -> pd.Series:
        k = key.load()
        return pseudonyms.map(lambda p: None if p is None or p is pd.NA
                              else date_shift_days_py(str(p), k, max_days, allow_zero)).astype("Int32")

    return _days(patient_pseudonym_col.cast("string")).alias("date_shift_days")


def date_shift_days_py(patient_pseudonym: str, key: bytes, max_days: int, allow_zero: bool = False) -> int:
    """Python twin of :func:`date_shift_days` (for DICOM headers)."""
    digest = hmac.new(namespace_key(key, DATE_SHIFT_NAMESPACE), patient_pseudonym.encode("utf-8"),
                      hashlib.sha256).hexdigest()
    return _offset(int(digest[:8], 16), max_days, allow_zero)


def shift_date(col: Column, days_col: Column) -> Column:
    return F.date_add(col, days_col.cast("int"))


def shift_timestamp(col: Column, days_col: Column) -> Column:
    """Whole days in UTC microseconds: the time of day and the intervals between events are unchanged."""
    return F.timestamp_micros(F.unix_micros(col) + days_col.cast("long") * F.lit(MICROS_PER_DAY))


def year_only(col: Column) -> Column:
    """The year as INT (Safe Harbor keeps the year of a date)."""
    return F.year(col)


def year_floor(col: Column, is_timestamp: bool = False) -> Column:
    """January 1 of the year, same type as ``col``: year-only information that keeps a DATE/TIMESTAMP schema."""
    return F.date_trunc("year", col) if is_timestamp else F.trunc(col, "year")


def apply_date_policy(df: DataFrame, columns: Sequence[str], patient_key_col: str, key: EngineKey,
                      profile: Literal["expert_determination", "safe_harbor"], max_days: int) -> DataFrame:
    """Apply the profile's date rule to DATE/TIMESTAMP ``columns`` of ``df`` in place (same names and types).

    ``expert_determination``: every date of a patient moves by that patient's :func:`date_shift_days`;
    ``safe_harbor``: 1 January of the year (durations that analytics need are computed before, from the true dates).
    String columns are rejected: parse them first, so that nothing unparsed slips through unshifted.
    """
    types = dict((f.name, f.dataType) for f in df.schema.fields)
    for name in columns:
        if name not in types:
            raise ValueError(f"date column {name!r} not in the DataFrame")
        if not isinstance(types[name], DateType | TimestampType | TimestampNTZType):
            raise TypeError(f"date column {name!r} is {types[name].simpleString()}, not date or timestamp")
    if profile == "safe_harbor":
        return df.withColumns({n: year_floor(F.col(n), not isinstance(types[n], DateType)) for n in columns})
    if profile != "expert_determination":
        raise ValueError(f"unknown de-identification profile {profile!r}: use 'expert_determination' or "
                         "'safe_harbor'")
    days = date_shift_days(F.col(patient_key_col), key, max_days)
    out = {}
    for n in columns:
        shifted = shift_date(F.col(n), days) if isinstance(types[n], DateType) else shift_timestamp(F.col(n), days)
        out[n] = shifted.cast(types[n])
    return df.withColumns(out)


def age_years(birth_date_col: Column, ref_date_col: Column) -> Column:
    return F.floor(F.months_between(ref_date_col, birth_date_col) / 12).cast("int")


def is_90_plus(birth_date_col: Column, ref_date_col: Column) -> Column:
    return (age_years(birth_date_col, ref_date_col) >= AGE_CAP).alias("is_age_90_plus")


def age_90plus(birth_date_col: Column, ref_date_col: Column) -> Column:
    """Age in whole years at ``ref_date_col``, with every age over 89 reported as 90 (the 90+ category)."""
    age = age_years(birth_date_col, ref_date_col)
    return F.when(age >= AGE_CAP, F.lit(AGE_CAP)).otherwise(age).alias("age")


def birth_date_90plus_rule(birth_date_col: Column, ref_date_col: Column) -> Column:
    """The birth date, or NULL when the patient is 90+ (their birth year would reveal the age)."""
    return F.when(age_years(birth_date_col, ref_date_col) >= AGE_CAP, F.lit(None)).otherwise(birth_date_col)


def birth_year_90plus_rule(birth_date_col: Column, ref_date_col: Column) -> Column:
    """The birth year, or NULL for 90+ patients."""
    return F.year(birth_date_90plus_rule(birth_date_col, ref_date_col)).alias("birth_year")
