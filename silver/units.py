"""Unit normalization: every quantity in the one canonical UCUM unit of its LOINC code.

The conversion factors come from ``ucumvert`` (a UCUM grammar on top of ``pint``), computed on the client into a
small table ``(loinc_code, unit_ucum) -> (factor, offset)`` and applied on the engine with a join:
``canonical = value * factor + offset`` (the offset is only non-zero for temperatures).

Mass <-> substance concentrations (glucose mg/dL <-> mmol/L) use the molar mass of ``loinc_units.csv``;
milliequivalents use the ion's charge (1 mEq/L of calcium = 0.5 mmol/L). A unit that is not a known spelling, or
that cannot be converted to the canonical unit of its code, is flagged (``is_unit_known = false``) and its
canonical value is NULL: never guessed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from silver.terminology.seeds import rows

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

CONVERSION_SCHEMA = "_un_loinc STRING, _un_ucum STRING, _un_canonical STRING, _un_factor DOUBLE, _un_offset DOUBLE"
# a value without a unit is only taken as-is when the canonical unit is itself a pure number ({INR}, 1)
UNITY = "1"


@lru_cache(maxsize=1)
def _registry() -> Any:
    # deferred: ucumvert (pint and a Lark grammar) takes a third of a second to import; only a Silver build needs it
    from ucumvert import PintUcumRegistry, UcumToPintTransformer

    ureg = PintUcumRegistry()
    # parse into this registry (ureg.from_ucum builds its quantities in a second, private registry)
    ureg.ucum_to_pint = UcumToPintTransformer(ureg=ureg).transform
    per_mol = ureg.Quantity(1, "g/mol").dimensionality
    _MOLAR_RATIOS[:] = [per_mol, 1 / per_mol]
    return ureg


_MOLAR_RATIOS: list[Any] = []  # [mass]/[substance] and its inverse, filled with the registry


@cache
def _ucum(code: str) -> Any:
    """A UCUM code as a pint Quantity (a lone annotation such as ``{INR}`` is the number 1)."""

    from ucumvert import parse_ucum

    ureg = _registry()
    parsed = ureg.ucum_to_pint(parse_ucum(code, ureg._ucum_parser))
    return parsed if isinstance(parsed, ureg.Quantity) else ureg.Quantity(1, "dimensionless")


def _is_arbitrary(code: str) -> bool:
    """UCUM arbitrary units ([IU], [arb'U], ...) convert to nothing but themselves (prefixes aside)."""
    return "[IU]" in code or "[iU]" in code or "'U]" in code


def _convert(value: float, unit: str, target: str, molar_mass: float | None, charge: int | None) -> float | None:
    """``value`` in ``unit`` expressed in ``target``; None when the units are not commensurable."""
    ureg = _registry()
    scale = 1.0
    if "eq" in unit:  # UCUM defines eq = mol; true only for univalent ions
        if not charge:
            return None
        unit, scale = unit.replace("eq", "mol"), 1.0 / charge
    if _is_arbitrary(unit) != _is_arbitrary(target):
        return None
    source, goal = _ucum(unit), _ucum(target)
    if not goal.dimensionality and unit != target and unit != UNITY:
        return None  # %, {INR}, ratios: different kinds of number, not conversions of one another
    quantity = ureg.Quantity(value * source.magnitude, source.units)
    if source.dimensionality == goal.dimensionality:
        return float(quantity.to(goal.units).magnitude) * scale / goal.magnitude
    if not molar_mass or source.dimensionality / goal.dimensionality not in _MOLAR_RATIOS:
        return None
    molar = ureg.Quantity(molar_mass, "g/mol")
    q = quantity / molar if source.dimensionality / goal.dimensionality == _MOLAR_RATIOS[0] else quantity * molar
    return float(q.to(goal.units).magnitude) * scale / goal.magnitude


def known_ucum_units() -> tuple[str, ...]:
    """Every UCUM unit a spelling in ``unit_synonyms.csv`` resolves to, plus every canonical unit."""
    units = {str(u) for _, u in rows("unit_synonyms")} | {str(r[1]) for r in rows("loinc_units")}
    return tuple(sorted(units))


@lru_cache(maxsize=1)
def conversion_rows() -> tuple[tuple[str, str, str, float, float], ...]:
    """``(loinc_code, unit_ucum, canonical_unit, factor, offset)`` for every convertible pair."""
    out = []
    for loinc, canonical, molar_mass, charge in rows("loinc_units"):
        for unit in known_ucum_units():
            at0 = _convert(0.0, unit, str(canonical), molar_mass, charge)  # type: ignore[arg-type]
            if at0 is None:
                continue
            # a wide span keeps the factor exact to ~1e-16 for offset units (degF -> Cel)
            at1000 = _convert(1000.0, unit, str(canonical), molar_mass, charge)  # type: ignore[arg-type]
            factor, offset = (at1000 - at0) / 1000.0, at0  # type: ignore[operator]
            if unit == UNITY and (not math.isclose(factor, 1.0) or offset != 0.0):
                continue  # a bare number is not "1" for percentages and the like
            out.append((str(loinc), unit, str(canonical), factor, offset))
    return tuple(out)


def conversions(spark: SparkSession) -> DataFrame:
    """The conversion table as a small DataFrame (columns prefixed ``_un_``, for joining)."""
    return spark.createDataFrame(list(conversion_rows()), CONVERSION_SCHEMA)


def unit_spellings(spark: SparkSession) -> DataFrame:
    """Lower-cased unit spelling -> UCUM code (``unit_synonyms.csv`` plus every canonical unit itself)."""
    pairs = {str(text).strip().lower(): str(ucum) for text, ucum in rows("unit_synonyms")}
    for _, canonical, _, _ in rows("loinc_units"):
        pairs.setdefault(str(canonical).lower(), str(canonical))
    return spark.createDataFrame(sorted(pairs.items()), "_un_key STRING, _un_spelled STRING")


def normalize_units(df: DataFrame, code_col: str = "loinc_code", value_col: str = "value", unit_col: str = "unit",
                    convert_also: Sequence[str] = ()) -> DataFrame:
    """Add ``value_num``, ``unit`` (canonical), ``value_original``, ``unit_original``, ``is_unit_known``.

    - code with a canonical unit: converted when the unit is convertible, else flagged with ``value_num`` NULL;
    - code without a canonical unit: value kept, unit spelled as UCUM when the spelling is known, else flagged;
    - no numeric value: ``value_num`` and ``is_unit_known`` NULL (text results are not quantities).
    ``convert_also`` columns (e.g. ``ref_low``, ``ref_high``) are given in the same unit and converted in place.
    """
    spark = df.sparkSession
    canonical_codes = spark.createDataFrame([(str(r[0]), True) for r in rows("loinc_units")],
                                            "_un_loinc STRING, _un_has_canonical BOOLEAN")
    out = df.withColumn("_un_value", F.col(value_col).cast("double")) \
            .withColumn("_un_unit", F.col(unit_col).cast("string")) \
            .withColumn("_un_loinc", F.col(code_col).cast("string")) \
            .withColumn("_un_key", F.lower(F.trim(F.coalesce(F.col(unit_col).cast("string"), F.lit("")))))
    out = out.drop(*[c for c in ("value_num", "unit", "value_original", "unit_original", "is_unit_known")
                     if c in out.columns])
    out = out.join(F.broadcast(unit_spellings(spark)), on="_un_key", how="left") \
             .join(F.broadcast(canonical_codes), on="_un_loinc", how="left") \
             .withColumn("_un_ucum", F.col("_un_spelled")) \
             .join(F.broadcast(conversions(spark)), on=["_un_loinc", "_un_ucum"], how="left")
    has_canonical = F.coalesce(F.col("_un_has_canonical"), F.lit(False))
    converted = F.col("_un_factor").isNotNull()
    known = F.when(F.col("_un_value").isNull(), F.lit(None).cast("boolean")) \
             .when(has_canonical, converted) \
             .otherwise(F.col("_un_spelled").isNotNull())

    def to_canonical(value: str) -> Any:
        return F.when(has_canonical & converted, F.round(F.col(value) * F.col("_un_factor") + F.col("_un_offset"), 9)) \
                .when(~has_canonical & F.col("_un_spelled").isNotNull(), F.col(value))

    out = out.withColumn("is_unit_known", known) \
             .withColumn("value_num", F.when(F.col("_un_value").isNotNull(), to_canonical("_un_value"))) \
             .withColumn("unit", F.when(F.col("_un_value").isNull(), F.col("_un_unit"))
                                  .when(has_canonical & converted, F.col("_un_canonical"))
                                  .when(~has_canonical & F.col("_un_spelled").isNotNull(), F.col("_un_spelled"))) \
             .withColumn("value_original", F.col("_un_value")) \
             .withColumn("unit_original", F.col("_un_unit"))
    for col in convert_also:
        out = out.withColumn(col, F.when(F.col(col).isNotNull(), to_canonical(col)).cast("double"))
    return out.drop(*[c for c in out.columns if c.startswith("_un_")])
