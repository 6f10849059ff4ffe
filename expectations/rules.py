"""Row-level rules: the ``row_level`` expectations of a suite compiled to Spark predicates, applied on the engine.

``quarantine_invalid`` splits a DataFrame into the rows that pass every row-level rule and the rows that fail one,
with ``failed_rule`` (the first failing rule, in suite order) and ``reason`` (every failure, with the value).
Supported expectation types: not_null, between (with ``row_condition``), in_set, match_regex,
column_pair_values_a_to_be_greater_than_b, and referential rules (``meta.reference``: the column must exist in
another Silver table).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from expectations.suites import LATEST_TIME_PARAMETER, is_referential, latest_plausible_time, load_suite
from lakehouse.errors import LakehouseError
from lakehouse.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class RowRule:
    name: str
    violation: Column  # TRUE when the row breaks the rule (never NULL)
    reason: Column


def _value(kwargs_value: Any, parameters: Mapping[str, Any]) -> Any:
    if isinstance(kwargs_value, dict) and "$PARAMETER" in kwargs_value:
        name = kwargs_value["$PARAMETER"]
        if name not in parameters:
            raise LakehouseError(f"expectation parameter {name!r} has no value")
        return parameters[name]
    return kwargs_value


def _shown(col: str) -> Column:
    return F.coalesce(F.col(col).cast("string"), F.lit("NULL"))


def _compile(exp: dict[str, Any], parameters: Mapping[str, Any]) -> RowRule:
    kind, kw, meta = exp["type"], exp["kwargs"], exp["meta"]
    text = meta.get("description", meta["rule"])
    col = kw.get("column")
    if kind == "expect_column_values_to_not_be_null":
        bad = F.col(col).isNull()
        reason = F.lit(text)
    elif kind == "expect_column_values_to_be_between":
        lo, hi = _value(kw.get("min_value"), parameters), _value(kw.get("max_value"), parameters)
        inside = F.lit(True)
        if lo is not None:
            inside = inside & ((F.col(col) > F.lit(lo)) if kw.get("strict_min") else (F.col(col) >= F.lit(lo)))
        if hi is not None:
            inside = inside & ((F.col(col) < F.lit(hi)) if kw.get("strict_max") else (F.col(col) <= F.lit(hi)))
        bad = F.col(col).isNotNull() & ~inside
        reason = F.concat(F.lit(f"{text}: {col}="), _shown(col))
    elif kind == "expect_column_values_to_be_in_set":
        bad = F.col(col).isNotNull() & ~F.col(col).isin(list(kw["value_set"]))
        reason = F.concat(F.lit(f"{text}: {col}="), _shown(col))
    elif kind == "expect_column_values_to_match_regex":
        bad = F.col(col).isNotNull() & ~F.col(col).cast("string").rlike(kw["regex"])
        reason = F.concat(F.lit(f"{text}: {col}="), _shown(col))
    elif kind == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = kw["column_A"], kw["column_B"]
        ok = (F.col(a) >= F.col(b)) if kw.get("or_equal") else (F.col(a) > F.col(b))
        if kw.get("ignore_row_if", "both_values_are_missing") != "either_value_is_missing":
            raise LakehouseError(f"rule {meta['rule']}: row-level pair rules need "
                                 "ignore_row_if=either_value_is_missing")
        bad = F.col(a).isNotNull() & F.col(b).isNotNull() & ~ok
        reason = F.concat(F.lit(f"{text}: {a}="), _shown(a), F.lit(f", {b}="), _shown(b))
    else:
        raise LakehouseError(f"rule {meta['rule']}: expectation type {kind} cannot be a row-level rule")
    condition = kw.get("row_condition")
    if condition:
        if kw.get("condition_parser") != "spark":
            raise LakehouseError(f"rule {meta['rule']}: row_condition needs condition_parser 'spark'")
        bad = F.expr(condition) & bad
    return RowRule(meta["rule"], F.coalesce(bad, F.lit(False)), reason)


def row_rules(table: str) -> list[dict[str, Any]]:
    """The row-level expectations of the suite of ``silver.<table>``, in suite order."""
    return [e for e in load_suite(table)["expectations"] if e["meta"].get("row_level")]


def quarantine_invalid(df: DataFrame, table: str, reference: Mapping[str, DataFrame] | None = None,
                       latest_time: datetime | None = None) -> tuple[DataFrame, DataFrame]:
    """``(valid, rejected)``: rejected rows carry ``failed_rule`` and ``reason``; no row is lost or duplicated.

    ``reference`` maps Silver table names (``"patient"``) to DataFrames for the referential rules; None skips those
    rules (logged). ``latest_time`` bounds the "not in the future" rules (default: now + 1 day, see
    :func:`expectations.suites.latest_plausible_time`).
    """
    parameters = {LATEST_TIME_PARAMETER: latest_time or latest_plausible_time()}
    out, rules = df, []
    for i, exp in enumerate(row_rules(table)):
        if not is_referential(exp):
            rules.append(_compile(exp, parameters))
            continue
        target, target_col = exp["meta"]["reference"]["table"], exp["meta"]["reference"]["column"]
        col = exp["meta"]["column"]
        if reference is None:
            log.warning("silver.%s: referential rule %s skipped (no reference tables given)", table,
                        exp["meta"]["rule"])
            continue
        if target not in reference:
            raise LakehouseError(f"quarantine_invalid(silver.{table}): rule {exp['meta']['rule']} needs "
                                 f"reference[{target!r}]")
        found = f"_q_ref_{i}"
        keys = reference[target].select(F.col(target_col).alias(f"_q_key_{i}")).distinct() \
                                .withColumn(found, F.lit(True))
        out = out.join(keys, F.col(col) == F.col(f"_q_key_{i}"), "left").drop(f"_q_key_{i}")
        bad = F.col(col).isNotNull() & F.col(found).isNull()
        reason = F.concat(F.lit(f"{exp['meta'].get('description', exp['meta']['rule'])}: {col}="), _shown(col))
        rules.append(RowRule(exp["meta"]["rule"], bad, reason))
    if not rules:
        return out, out.limit(0).withColumn("failed_rule", F.lit(None).cast("string")) \
                                .withColumn("reason", F.lit(None).cast("string"))
    failed = F.coalesce(*[F.when(r.violation, F.lit(r.name)) for r in rules]) if len(rules) > 1 \
        else F.when(rules[0].violation, F.lit(rules[0].name))
    reasons = F.concat_ws("; ", *[F.when(r.violation, F.concat(F.lit(f"[{r.name}] "), r.reason)) for r in rules])
    work = [c for c in out.columns if c.startswith("_q_")]
    flagged = out.withColumn("failed_rule", failed).withColumn("reason", reasons)
    valid = flagged.filter(F.col("failed_rule").isNull()).drop("failed_rule", "reason", *work)
    rejected = flagged.filter(F.col("failed_rule").isNotNull()).drop(*work)
    return valid, rejected
