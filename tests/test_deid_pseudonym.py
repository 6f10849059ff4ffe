"""Pseudonyms: Spark HMAC == Python hmac, namespaces, keys, NULLs, re-identification mapping, key handling."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
from pathlib import Path

import pytest
from helpers import engine_key
from pyspark.sql import functions as F

from lakehouse.config import load_settings
from lakehouse.errors import ConfigError
from silver.deid.keys import load_key
from silver.deid.pseudonym import namespace_key, pseudonym, pseudonym_py, reid_mapping, reid_table_name

KEY = b"unit-test-key-0123456789abcdef"
VALUES = ["MRN-000123", "", "Zoë Ñandú 患者", "x" * 300, "12345"]


def test_spark_hmac_equals_python_hmac(spark) -> None:
    df = spark.createDataFrame([(v,) for v in VALUES] + [(None,)], "v string")
    rows = df.select("v", pseudonym(F.col("v"), engine_key(KEY), "patient")).collect()
    for r in rows:
        if r.v is None:
            assert r.patient_key is None
            continue
        expected = hmac.new(namespace_key(KEY, "patient"), r.v.encode(), hashlib.sha256).hexdigest()
        assert r.patient_key == expected == pseudonym_py(r.v, KEY, "patient")


def test_long_key_is_hashed_like_rfc2104(spark) -> None:
    long_key = b"k" * 100
    ns_key = namespace_key(long_key, "encounter")
    row = spark.createDataFrame([("E1",)], "v string").select(
        pseudonym(F.col("v"), engine_key(long_key), "encounter")).first()
    assert row[0] == hmac.new(ns_key, b"E1", hashlib.sha256).hexdigest()


def test_deterministic_namespaced_and_unlinkable_across_keys(spark) -> None:
    df = spark.createDataFrame([("P1",), ("P2",)], "v string")
    run1 = [r[0] for r in df.select(pseudonym(F.col("v"), engine_key(KEY), "patient")).orderBy("v").collect()]
    run2 = [r[0] for r in df.select(pseudonym(F.col("v"), engine_key(KEY), "patient")).orderBy("v").collect()]
    other_ns = [r[0] for r in df.select(pseudonym(F.col("v"), engine_key(KEY), "encounter")).orderBy("v").collect()]
    other_key = [r[0] for r in df.select(pseudonym(F.col("v"), engine_key(b"another-key-0123456789"), "patient"))
                 .orderBy("v").collect()]
    assert run1 == run2 and len(set(run1)) == 2
    assert not set(run1) & set(other_ns)
    assert not set(run1) & set(other_key)


def test_pads_never_reach_column_names(spark) -> None:
    df = spark.createDataFrame([("P1",)], "v string")
    assert df.select(pseudonym(F.col("v"), engine_key(KEY), "patient")).columns == ["patient_key"]
    assert df.select(pseudonym(F.col("v"), engine_key(KEY), "patient", alias="pk")).columns == ["pk"]


def test_reid_mapping_maps_back_only_with_the_key(spark) -> None:
    raw = spark.createDataFrame([("P1", "patient"), ("E9", "encounter"), ("P1", "patient"), (None, "patient")],
                                "raw_id string, namespace string")
    rows = {(r.namespace, r.raw_id): r.pseudonym for r in reid_mapping(raw, engine_key(KEY)).collect()}
    assert rows == {("patient", "P1"): pseudonym_py("P1", KEY, "patient"),
                    ("encounter", "E9"): pseudonym_py("E9", KEY, "encounter")}
    single = reid_mapping(raw.where("namespace = 'patient'"), engine_key(KEY), namespace="patient").collect()
    assert [(r.raw_id, r.pseudonym) for r in single] == [("P1", pseudonym_py("P1", KEY, "patient"))]
    assert reid_table_name("patient") == "_system.reid_patient"


@pytest.mark.fast
def test_load_key_from_setting_and_file(tmp_path: Path) -> None:
    s = load_settings(config_file=None, environ={}, root=tmp_path / "lh", pseudonym_key="a-secret-of-enough-length")
    assert load_key(s) == b"a-secret-of-enough-length"
    key_file = tmp_path / "k.key"
    key_file.write_bytes(b"file-secret-0123456789\n")
    s = load_settings(config_file=None, environ={}, root=tmp_path / "lh", pseudonym_key_file=key_file)
    key_file.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):  # a key anyone on the host can read is refused
        load_key(s)
    key_file.chmod(0o600)
    assert load_key(s) == b"file-secret-0123456789"
    short = load_settings(config_file=None, environ={}, root=tmp_path / "lh", pseudonym_key="short")
    with pytest.raises(ConfigError):
        load_key(short)


@pytest.mark.fast
def test_demo_key_generated_once_outside_root_with_0600(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    s = load_settings(config_file=None, environ={}, root=tmp_path / "lh")
    with caplog.at_level(logging.WARNING):
        key = load_key(s)
    path = tmp_path / "cfg" / "clinical-lakehouse" / "pseudonym.key"
    assert path.exists() and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(key) >= 32 and load_key(s) == key  # generated once, then reused
    assert "demo key" in caplog.text and str(path) in caplog.text
    assert key.decode() not in caplog.text
    inside = load_settings(config_file=None, environ={}, root=tmp_path / "cfg")
    with pytest.raises(ConfigError, match="inside the lakehouse root"):
        load_key(inside)
