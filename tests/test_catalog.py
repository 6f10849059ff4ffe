"""Table catalog: external tables, registration after restart, idempotent writes, time travel, delta-rs."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from lakehouse import catalog as catalog_module
from lakehouse.catalog import Catalog
from lakehouse.engine import SailServer
from lakehouse.errors import LakehouseError

SCHEMA = "id BIGINT, name STRING, value DOUBLE"


def _df(spark, rows):  # type: ignore[no-untyped-def]
    return spark.createDataFrame(rows, SCHEMA)


def test_create_append_and_read(catalog: Catalog, spark) -> None:  # type: ignore[no-untyped-def]
    catalog.create("bronze.things", SCHEMA)
    assert catalog.path("bronze.things").joinpath("_delta_log").is_dir()
    assert catalog.version("bronze.things") == 0
    catalog.append(_df(spark, [(1, "a", 1.0), (2, "b", 2.0)]), "bronze.things")
    assert catalog.read("bronze.things").count() == 2
    assert "bronze.things" in catalog.list_tables()


def test_append_by_name_rejects_bad_casts(catalog: Catalog, spark) -> None:  # type: ignore[no-untyped-def]
    catalog.create("bronze.typed", "id INT")
    bad = spark.createDataFrame([("x",)], "id string")
    with pytest.raises(Exception, match="(?i)cast"):
        catalog.append(bad, "bronze.typed")
    assert catalog.read("bronze.typed").count() == 0


def test_append_new_is_idempotent(catalog: Catalog, spark) -> None:  # type: ignore[no-untyped-def]
    rows = [(1, "a", 1.0), (2, "b", 2.0)]
    assert catalog.append_new(_df(spark, rows), "bronze.events", ["id"]) == 2
    v = catalog.version("bronze.events")
    assert catalog.append_new(_df(spark, rows), "bronze.events", ["id"]) == 0
    assert catalog.version("bronze.events") == v, "no new input must write no new Delta version"
    assert catalog.append_new(_df(spark, rows + [(3, "c", 3.0)]), "bronze.events", ["id"]) == 1
    assert catalog.read("bronze.events").count() == 3


def test_merge_upserts_and_is_idempotent(catalog: Catalog, spark) -> None:  # type: ignore[no-untyped-def]
    catalog.merge(_df(spark, [(1, "a", 1.0), (2, "b", None)]), "silver.things", ["id"])
    v1 = catalog.version("silver.things")
    changes = catalog.merge(_df(spark, [(1, "a", 1.0), (2, "b", None)]), "silver.things", ["id"])
    assert changes == {"inserted": 0, "updated": 0, "deleted": 0}
    assert catalog.version("silver.things") == v1
    changes = catalog.merge(_df(spark, [(2, "b", 5.0), (3, "c", 3.0)]), "silver.things", ["id"])
    assert changes == {"inserted": 1, "updated": 1, "deleted": 0}
    got = {r["id"]: r["value"] for r in catalog.read("silver.things").collect()}
    assert got == {1: 1.0, 2: 5.0, 3: 3.0}
    changes = catalog.merge(_df(spark, [(3, "c", 3.0)]), "silver.things", ["id"], delete_missing=True)
    assert changes["deleted"] == 2
    assert [r["id"] for r in catalog.read("silver.things").collect()] == [3]


def test_replace_where_checks_the_predicate(catalog: Catalog, spark) -> None:  # type: ignore[no-untyped-def]
    catalog.append(_df(spark, [(1, "a", 1.0), (2, "b", 2.0)]), "gold.parts")
    with pytest.raises(LakehouseError, match="do not match"):
        catalog.replace_where(_df(spark, [(3, "a", 9.0)]), "gold.parts", "id = 1")
    catalog.replace_where(_df(spark, [(1, "a", 9.0)]), "gold.parts", "id = 1")
    got = {r["id"]: r["value"] for r in catalog.read("gold.parts").collect()}
    assert got == {1: 9.0, 2: 2.0}


def test_time_travel_by_version_and_timestamp(catalog: Catalog, spark) -> None:  # type: ignore[no-untyped-def]
    catalog.append(_df(spark, [(1, "a", 1.0)]), "gold.report")
    time.sleep(1.1)
    between = datetime.now(UTC)
    time.sleep(1.1)
    catalog.append(_df(spark, [(2, "b", 2.0)]), "gold.report")
    assert catalog.read("gold.report").count() == 2
    assert catalog.read("gold.report", version=1).count() == 1
    assert catalog.read("gold.report", version=0).count() == 0
    assert catalog.read("gold.report", timestamp=between.strftime("%Y-%m-%d %H:%M:%S")).count() == 1


def test_history_optimize_vacuum_restore_via_delta_rs(catalog: Catalog, spark) -> None:  # type: ignore[no-untyped-def]
    for i in range(4):
        catalog.append(_df(spark, [(i, "x", float(i))]), "silver.small")
    ops = [h["operation"] for h in catalog.history("silver.small")]
    assert ops.count("WRITE") == 4 and ops[-1] == "CREATE TABLE"
    metrics = catalog.optimize("silver.small")
    assert metrics["numFilesRemoved"] == 4 and metrics["numFilesAdded"] == 1
    assert catalog.read("silver.small").count() == 4
    catalog.restore("silver.small", 2)
    assert catalog.read("silver.small").count() == 2
    assert catalog.history("silver.small", 1)[0]["operation"] == "RESTORE"
    removed = catalog.vacuum("silver.small", retention_hours=0)
    assert len(removed) == 3, removed  # the compacted file and the two writes after version 2
    assert sorted(r["id"] for r in catalog.read("silver.small").collect()) == [0, 1]


def test_tables_are_registered_again_after_a_server_restart(catalog: Catalog, spark, settings, tmp_path):  # type: ignore[no-untyped-def]
    catalog.append(_df(spark, [(1, "a", 1.0)]), "silver.kept")
    from pyspark.sql import SparkSession

    fresh = SailServer(tmp_path / "logs2").start()  # a new server has an empty in-memory catalog
    try:
        other = SparkSession.builder.remote(fresh.url).create()
        assert other.sql("SHOW TABLES IN default").count() == 0
        saved = dict(catalog_module._registered)
        catalog_module._registered.clear()
        try:
            names = Catalog(other, settings).register_all()
            assert "silver.kept" in names
            assert other.table("silver.kept").collect()[0]["name"] == "a"
        finally:
            catalog_module._registered.clear()
            catalog_module._registered.update(saved)
        other.stop()
    finally:
        fresh.stop()


def test_bad_table_names(catalog: Catalog) -> None:
    with pytest.raises(LakehouseError, match="<layer>.<table>"):
        catalog.path("nolayer")
    with pytest.raises(LakehouseError, match="does not exist"):
        catalog.read("silver.missing")


def test_merge_ignores_volatile_columns(catalog: Catalog, spark) -> None:  # type: ignore[no-untyped-def]
    schema = "id BIGINT, value DOUBLE, run_id STRING"
    catalog.merge(spark.createDataFrame([(1, 1.0, "r1")], schema), "silver.vol", ["id"], ignore_changes=["run_id"])
    v = catalog.version("silver.vol")
    changes = catalog.merge(spark.createDataFrame([(1, 1.0, "r2")], schema), "silver.vol", ["id"],
                            ignore_changes=["run_id"])
    assert changes["updated"] == 0 and catalog.version("silver.vol") == v
    catalog.merge(spark.createDataFrame([(1, 2.0, "r3")], schema), "silver.vol", ["id"], ignore_changes=["run_id"])
    row = catalog.read("silver.vol").collect()[0]
    assert (row["value"], row["run_id"]) == (2.0, "r3")


def test_registered_tables_describe_their_columns(catalog: Catalog, spark) -> None:  # type: ignore[no-untyped-def]
    catalog.append(_df(spark, [(1, "a", 1.0)]), "silver.described")
    catalog_module._registered.pop("silver.described")
    spark.sql("DROP TABLE IF EXISTS silver.described")
    catalog.register("silver.described")
    cols = [r["col_name"] for r in spark.sql("DESCRIBE TABLE silver.described").collect()]
    assert cols[:3] == ["id", "name", "value"]


def test_tables_with_array_columns_register(catalog: Catalog, spark) -> None:  # type: ignore[no-untyped-def]
    catalog.append(spark.createDataFrame([(1, ["fhir", "hl7v2"])], "id BIGINT, sources ARRAY<STRING>"),
                   "silver.arrays")
    catalog_module._registered.pop("silver.arrays")
    spark.sql("DROP TABLE IF EXISTS silver.arrays")
    catalog.register("silver.arrays")
    assert spark.table("silver.arrays").collect()[0]["sources"] == ["fhir", "hl7v2"]


def test_adopt_contract_rebuilds_a_table_whose_columns_changed(catalog: Catalog, spark) -> None:  # type: ignore[no-untyped-def]
    """A release that adds a Silver column: the existing table takes the new schema in one new version (emptied,
    then merged again), earlier versions keep the old shape; an unchanged contract is a no-op."""
    old, new = "k STRING, v INT", "k STRING, v INT, note STRING"
    catalog.create("silver.evolving", old)
    catalog.merge(spark.createDataFrame([("a", 1), ("b", 2)], old), "silver.evolving", ["k"])
    before = catalog.version("silver.evolving")
    assert catalog.adopt_contract("silver.evolving", new) is True
    assert catalog.read("silver.evolving").columns == ["k", "v", "note"]
    assert catalog.read("silver.evolving").count() == 0
    changes = catalog.merge(spark.createDataFrame([("a", 1, "x")], new), "silver.evolving", ["k"])
    assert changes["inserted"] == 1
    assert catalog.adopt_contract("silver.evolving", new) is False
    assert sorted(r["k"] for r in catalog.read("silver.evolving", version=before).collect()) == ["a", "b"]
    assert catalog.read("silver.evolving", version=before).columns == ["k", "v"]
