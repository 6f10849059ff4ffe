"""One regression test per Sail rule in docs/engine.md, each asserting today's behaviour.

When one of these fails, Sail changed: simplify the workaround the rule asks for, then update the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_managed_tables_land_at_a_uuid_path(spark, session_root: Path) -> None:  # type: ignore[no-untyped-def]
    spark.sql("CREATE SCHEMA IF NOT EXISTS rules")
    spark.sql("DROP TABLE IF EXISTS rules.managed")
    spark.createDataFrame([(1,)], "id int").write.format("delta").saveAsTable("rules.managed")
    warehouse = session_root / "_system" / "engine" / "spark-warehouse"
    landed = [p.name for p in warehouse.iterdir() if p.name.startswith("managed")]
    assert len(landed) == 1 and landed[0] != "managed" and len(landed[0]) > len("managed-") + 30, landed
    spark.sql("DROP TABLE rules.managed")


def test_path_append_silently_casts_bad_values(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "t")
    spark.createDataFrame([(1,)], "id int").write.format("delta").save(path)
    spark.createDataFrame([("x",), ("3000000000",)], "id string").write.format("delta").mode("append").save(path)
    values = sorted((r["id"] for r in spark.read.format("delta").load(path).collect()), key=lambda v: (v is None, v))
    assert values == [1, None, None], "Sail now rejects bad path appends: the by-name rule can be relaxed"


def test_dynamic_partition_overwrite_is_a_full_overwrite(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "p")
    spark.createDataFrame([(1, "a"), (2, "b")], "id int, part string").write.format("delta").partitionBy(
        "part").save(path)
    (spark.createDataFrame([(3, "a")], "id int, part string").write.format("delta").mode("overwrite")
     .option("partitionOverwriteMode", "dynamic").save(path))
    rows = spark.read.format("delta").load(path).collect()
    assert [(r["id"], r["part"]) for r in rows] == [(3, "a")], "partition b survived: dynamic overwrite works now"


def test_replace_where_accepts_rows_outside_the_predicate(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "r")
    spark.createDataFrame([(1,), (2,)], "id int").write.format("delta").save(path)
    (spark.createDataFrame([(9,)], "id int").write.format("delta").mode("overwrite")
     .option("replaceWhere", "id = 1").save(path))
    assert sorted(r["id"] for r in spark.read.format("delta").load(path).collect()) == [2, 9]


def test_read_change_feed_is_silently_ignored(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "c")
    spark.createDataFrame([(1,)], "id int").write.format("delta").save(path)
    spark.createDataFrame([(2,)], "id int").write.format("delta").mode("append").save(path)
    df = spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 1).load(path)
    assert "_change_type" not in df.columns
    assert df.count() == 2, "readChangeFeed returned changes: CDF may be usable now"


def test_change_data_feed_tables_cannot_be_created(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spark.sql("CREATE SCHEMA IF NOT EXISTS rules")
    with pytest.raises(Exception, match="(?i)ChangeDataFeed"):
        spark.sql(f"CREATE TABLE rules.cdf (id INT) USING delta LOCATION '{tmp_path / 'cdf'}' "
                  "TBLPROPERTIES ('delta.enableChangeDataFeed' = 'true')")
        spark.sql("INSERT INTO rules.cdf VALUES (1)")


def test_range_interval_over_date_gives_wrong_sums(spark) -> None:  # type: ignore[no-untyped-def]
    spark.createDataFrame([("2024-01-01", 1), ("2024-01-02", 2), ("2024-01-03", 3)], "d string, v int") \
        .selectExpr("CAST(d AS DATE) AS d", "v").createOrReplaceTempView("rule_dates")
    over_date = spark.sql("SELECT d, SUM(v) OVER (ORDER BY d RANGE BETWEEN INTERVAL 1 DAY PRECEDING AND CURRENT ROW)"
                          " AS s FROM rule_dates ORDER BY d").collect()
    over_ts = spark.sql("SELECT d, SUM(v) OVER (ORDER BY CAST(d AS TIMESTAMP) RANGE BETWEEN INTERVAL 1 DAY "
                        "PRECEDING AND CURRENT ROW) AS s FROM rule_dates ORDER BY d").collect()
    assert [r["s"] for r in over_ts] == [1, 3, 5], "the timestamp workaround must stay correct"
    assert [r["s"] for r in over_date] != [1, 3, 5], "DATE ranges are right now: the workaround can go"


@pytest.mark.parametrize("sql", ["OPTIMIZE rules.t", "VACUUM rules.t", "DESCRIBE HISTORY rules.t",
                                 "DESCRIBE DETAIL rules.t", "RESTORE TABLE rules.t TO VERSION AS OF 0"])
def test_maintenance_sql_is_not_supported(spark, tmp_path: Path, sql: str) -> None:  # type: ignore[no-untyped-def]
    spark.sql("CREATE SCHEMA IF NOT EXISTS rules")
    spark.sql(f"CREATE TABLE IF NOT EXISTS rules.t (id INT) USING delta LOCATION '{tmp_path / 'm'}'")
    with pytest.raises(Exception):  # noqa: B017 - any parser or planner error
        spark.sql(sql).collect()
    spark.sql("DROP TABLE rules.t")


def test_no_approx_quantile_but_exact_percentile(spark) -> None:  # type: ignore[no-untyped-def]
    df = spark.range(1, 101).selectExpr("CAST(id AS DOUBLE) AS x")
    with pytest.raises(Exception, match="(?i)quantile"):
        df.approxQuantile("x", [0.5], 0.01)
    assert df.selectExpr("percentile(x, 0.5) AS m").collect()[0]["m"] == 50.5


def test_no_hmac_function(spark) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Exception, match="(?i)hmac"):
        spark.sql("SELECT hmac('k', 'v')").collect()


def test_no_semantic_hash(spark) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Exception, match="(?i)semantic"):
        spark.range(3).semanticHash()


def test_no_multiline_json_but_wholetext_works(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    doc = tmp_path / "bundle.json"
    doc.write_text(json.dumps({"resourceType": "Bundle", "entry": [{"resource": {"id": "a"}}]}, indent=2))
    with pytest.raises(Exception):  # noqa: B017
        spark.read.json(str(doc), multiLine=True).collect()
    text = spark.read.text(str(doc), wholetext=True)
    parsed = text.selectExpr("from_json(value, 'entry array<struct<resource:string>>') AS b")
    assert json.loads(parsed.collect()[0]["b"]["entry"][0]["resource"]) == {"id": "a"}


def test_no_input_file_name(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "x.txt").write_text("hello\n")
    with pytest.raises(Exception):  # noqa: B017
        spark.read.text(str(tmp_path / "x.txt")).selectExpr("input_file_name()").collect()
    binary = spark.read.format("binaryFile").load(str(tmp_path / "x.txt")).collect()[0]
    assert binary["path"].endswith("x.txt") and bytes(binary["content"]) == b"hello\n"


def test_no_streaming_file_source_to_delta(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.json").write_text('{"id": 1}\n')
    with pytest.raises(Exception):  # noqa: B017
        q = (spark.readStream.format("json").schema("id int").load(str(tmp_path / "in")).writeStream
             .format("delta").option("checkpointLocation", str(tmp_path / "cp")).trigger(availableNow=True)
             .start(str(tmp_path / "out")))
        q.awaitTermination(30)


def test_system_is_a_reserved_schema_name(spark) -> None:  # type: ignore[no-untyped-def]
    """Why the system layer is registered as `_system`."""
    with pytest.raises(Exception, match="(?i)namespace"):
        spark.sql("CREATE SCHEMA IF NOT EXISTS system").collect()
    spark.sql("CREATE SCHEMA IF NOT EXISTS `_system`").collect()


def test_table_registered_without_columns_describes_nothing(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Why Catalog.register spells out the columns from the Delta log."""
    path = tmp_path / "d"
    spark.createDataFrame([(1,)], "id int").write.format("delta").save(str(path))
    spark.sql("CREATE SCHEMA IF NOT EXISTS rules")
    spark.sql(f"CREATE TABLE rules.undescribed USING delta LOCATION '{path}'")
    try:
        assert spark.sql("DESCRIBE TABLE rules.undescribed").count() == 0
        assert spark.table("rules.undescribed").count() == 1
    finally:
        spark.sql("DROP TABLE rules.undescribed")


def test_filter_on_a_lambda_column_breaks_in_a_delta_scan_unless_repartitioned(  # type: ignore[no-untyped-def]
        spark, tmp_path: Path) -> None:
    from pyspark.sql import functions as F

    path = str(tmp_path / "lam")
    spark.createDataFrame([("a,b",), ("c",)], "raw string").write.format("delta").save(path)

    def first_upper(df):  # type: ignore[no-untyped-def]
        return df.select(F.get(F.transform(F.split("raw", ","), lambda x: F.upper(x)), 0).alias("v"))

    scanned = first_upper(spark.read.format("delta").load(path)).filter(F.col("v").rlike("^[A-Z]$"))
    with pytest.raises(Exception, match="No field named"):
        scanned.count()
    barrier = first_upper(spark.read.format("delta").load(path).repartition(2)).filter(F.col("v").rlike("^[A-Z]$"))
    assert barrier.count() == 2, "lakehouse.staging relies on repartition() as the plan barrier"


def test_array_compact_of_an_aggregate_puts_other_rows_values_on_a_row(spark) -> None:  # type: ignore[no-untyped-def]
    """Rule: drop NULLs from an aggregate's arrays with ``filter(a, x -> x IS NOT NULL)``, never ``array_compact``
    (silver.increment._subjects). Over arrays built in the same row (``array(...)``, ``from_json``) it is right."""
    from pyspark.sql import functions as F

    n = 20_000  # below ~10,000 groups every row came out right
    rows = spark.range(n).select("id", F.array(F.when(F.col("id") % 3 == 0, F.lit(None)).otherwise(F.col("id")),
                                               F.col("id")).alias("a"))
    grouped = rows.groupBy("id").agg(F.flatten(F.collect_list("a")).alias("a"))

    def wrong(column) -> int:  # type: ignore[no-untyped-def]
        return sum(list(r["c"]) != ([r["id"]] if r["id"] % 3 == 0 else [r["id"], r["id"]])
                   for r in grouped.select("id", column.alias("c")).collect())

    assert wrong(F.filter("a", lambda x: x.isNotNull())) == 0
    assert wrong(F.array_compact(F.array(F.when(F.col("id") % 3 == 0, F.lit(None)).otherwise(F.col("id")),
                                         F.col("id")))) == 0
    assert wrong(F.array_compact("a")) > 0, "array_compact over an aggregate is right now: the filter rule can go"
