"""The pseudonym key stays with its holder: not in the engine's environment, not as a plain hash in run records."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake
from helpers import attach, new_lakehouse
from pyspark.sql import functions as F

from bronze.job import ingest
from gold.dbt_runner import build_gold
from lakehouse.catalog import Catalog
from lakehouse.config import set_settings
from lakehouse.engine import SailServer
from lakehouse.errors import ConfigError, LakehouseError
from lakehouse.runlog import read_runs, run_context
from lakehouse.uptodate import key_id
from lakehouse_app.rekey import crosswalk_table, migrate_surrogates, rekey, write_crosswalk
from silver.deid.keys import (
    EngineKey,
    add_key_version,
    capturing_crosswalk,
    engine_key,
    key_version,
    load_key,
    load_keyring,
    parse_keys,
)
from silver.deid.pseudonym import (
    LINEAGE_NAMESPACE,
    NAMESPACES_USED,
    _record_crosswalk,
    namespace_key,
    pseudonym,
    pseudonym_array,
    pseudonym_py,
)
from silver.deid.scan import scan
from silver.job import build_silver
from synthetic import generate


def test_engine_subprocess_does_not_inherit_lakehouse_secrets(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_PSEUDONYM_KEY", "a-secret-that-must-stay-in-the-client")
    server = SailServer(tmp_path / "logs", workdir=tmp_path / "engine").start()
    try:
        assert server.process is not None
        environ = Path(f"/proc/{server.process.pid}/environ").read_bytes().split(b"\0")
        assert not [v for v in environ if v.startswith(b"LAKEHOUSE_")]
        assert os.environ["LAKEHOUSE_PSEUDONYM_KEY"]  # the client keeps it
    finally:
        server.stop()


@pytest.mark.fast
def test_key_id_is_a_keyed_digest() -> None:
    key = b"0123456789abcdef0123456789abcdef"
    assert key_id(key) == key_id(key) and len(key_id(key)) == 16
    assert key_id(key) != key_id(key[::-1])
    # not a plain hash of the key, with or without the old prefix
    assert key_id(key) not in {hashlib.sha256(key).hexdigest()[:16],
                               hashlib.sha256(b"lakehouse-key-id\0" + key).hexdigest()[:16]}


def _base64(value: bytes) -> dict[str, bytes]:
    """Standard and URL-safe base64 of ``value`` as it would sit inside a longer base64 text at each of the three
    byte alignments (only the groups that encode bytes of ``value`` alone)."""
    forms = {}
    for shift in range(3):
        data = bytes(shift) + value
        for name, encode in (("b64", base64.b64encode), ("b64url", base64.urlsafe_b64encode)):
            forms[f"{name}@{shift}"] = encode(data)[4 if shift else 0:4 * (len(data) // 3)]
    return forms


def _key_material(key: bytes, namespaces: set[str]) -> dict[str, bytes]:
    """The key and everything derived from it that would let a reader compute pseudonyms: the key's and, per
    namespace, the derived key's RFC 2104 inner/outer pads, raw, as hex and as base64."""
    found: dict[str, bytes] = {}
    secrets = {"key": key, **{f"{ns} derived": namespace_key(key, ns) for ns in namespaces}}
    for name, secret in secrets.items():
        block = secret.ljust(64, b"\0")
        for label, value in ((name, secret), (f"{name} ipad", bytes(b ^ 0x36 for b in block)),
                             (f"{name} opad", bytes(b ^ 0x5C for b in block))):
            found[label] = value
            found[f"{label} hex"] = value.hex().encode()
            found[f"{label} HEX"] = value.hex().upper().encode()
            found.update({f"{label} {form}": v for form, v in _base64(value).items()})
    return found


@pytest.fixture(scope="module")
def recorded_build(spark, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One Silver build, every request the client sent to the engine during it recorded (both tests read it)."""
    settings = new_lakehouse(tmp_path_factory.mktemp("key-custody") / "lh")
    generate(patients=6, seed=3, out=settings.landing_dir, bad_rate=0.0)
    with run_context("ingest", settings) as run:
        ingest(settings, [], run)
    sent: list[bytes] = []
    stub = spark.client._stub  # type: ignore[attr-defined]
    with pytest.MonkeyPatch.context() as patch:
        for name in ("ExecutePlan", "AnalyzePlan", "Config", "AddArtifacts", "ReattachExecute"):
            call = getattr(stub, name, None)
            if call is None:
                continue

            def recording(request, *args, _call=call, **kwargs):  # type: ignore[no-untyped-def]
                if hasattr(request, "SerializeToString"):
                    sent.append(request.SerializeToString())
                else:  # a stream of requests (AddArtifacts)
                    request = list(request)
                    sent.extend(r.SerializeToString() for r in request)
                return _call(request, *args, **kwargs)

            patch.setattr(stub, name, recording)
        NAMESPACES_USED.clear()
        with run_context("silver", settings) as run:
            result = build_silver(settings, run, force=True)
        namespaces = set(NAMESPACES_USED)
        yield {"settings": settings, "sent": sent, "result": result, "namespaces": namespaces}
    set_settings(None)


def test_silver_build_sends_no_key_material_to_the_engine(spark, recorded_build) -> None:
    settings, sent = attach(recorded_build["settings"]), recorded_build["sent"]
    assert recorded_build["result"]["patient"]["silver"] == 6 and len(sent) > 100
    namespaces = recorded_build["namespaces"]
    assert {"patient", "encounter", "date-shift", "lineage", "dicom-uid"} <= namespaces
    key = load_key(settings)
    leaks = sorted(label for label, value in _key_material(key, namespaces).items()
                   if any(value in request for request in sent))
    assert leaks == []
    # the check can fail: key material in a plan is found
    n_sent = len(sent)
    probe = spark.createDataFrame([("x",)], "v string").select(F.lit(namespace_key(key, "patient").hex()))
    probe.collect()
    assert len(sent) > n_sent and any(_key_material(key, {"patient"})["patient derived hex"] in r for r in sent)
    probe = spark.createDataFrame([("x",)], "v string").select(
        F.lit(base64.b64encode(b"\x01" + namespace_key(key, "encounter")).decode()))
    probe.collect()
    assert any(_key_material(key, {"encounter"})["encounter derived b64@1"] in r for r in sent)


def test_silver_lineage_hashes_are_keyed(spark, recorded_build) -> None:
    settings = attach(recorded_build["settings"])
    catalog = Catalog(spark, settings)
    raw = {r.content_hash for t in ("bronze.hl7v2_messages", "bronze.fhir_resources", "bronze.dicom_instances")
           for r in catalog.read(t).select("content_hash").collect()}
    key = load_key(settings)
    for table in ("patient", "observation", "imaging_instance"):
        rows = catalog.read(f"silver.{table}").select("bronze_hashes").collect()
        published = {h for r in rows for h in r.bronze_hashes}
        assert published and not published & raw
        # whoever holds the key can still follow a row back to Bronze
        assert published <= {pseudonym_py(h, key, LINEAGE_NAMESPACE) for h in raw}


# -- key versions and rotation ------------------------------------------------------------------------

V1 = b"first-key-0123456789abcdef0123456789"
V2 = b"second-key-0123456789abcdef012345678"
V3 = b"third-key-0123456789abcdef0123456789"


def _key_file(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "keys" / "pseudonym.key"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    path.chmod(0o600)
    return path


@pytest.mark.fast
def test_a_plain_key_file_is_version_1_and_a_versioned_file_names_its_active_version() -> None:
    plain = parse_keys(V1 + b"\n", "k")
    assert [(v.label, v.key) for v in plain.versions] == [("v1", V1)] and plain.active.key == V1
    ring = parse_keys(b"# comment\nv1 " + V1 + b"\nv2 " + V2 + b" active\nv3 " + V3 + b"\n", "k")
    assert ring.active_label == "v2" and ring.active.key == V2 and ring.next_label() == "v4"
    assert ring.by_id(key_id(V3)).label == "v3"
    assert parse_keys(b"v1 " + V1 + b"\nv2 " + V2 + b"\n", "k").active.key == V2  # none marked: the last line
    for bad, why in ((b"v1 " + V1 + b" active\nv2 " + V2 + b" active\n", "mark one"),
                     (b"v1 " + V1 + b"\nv1 " + V2 + b"\n", "twice"),
                     (b"v1 " + V1 + b"\nv2 " + V1 + b"\n", "same key"),
                     (b"v1 " + V1 + b"\nv2 short\n", "shorter")):
        with pytest.raises(ConfigError, match=why):
            parse_keys(bad, "k")
    assert V1 not in repr(ring).encode()


@pytest.mark.fast
def test_add_key_version_keeps_old_versions_activates_the_new_one_and_stays_0600(tmp_path: Path) -> None:
    path = _key_file(tmp_path, V1 + b"\n")
    settings = new_lakehouse(tmp_path / "lh", attach_engine=False, pseudonym_key=None, pseudonym_key_file=path)
    before = engine_key(settings)
    assert key_version(settings) == {"version": "v1", "key_id": key_id(V1)}
    old, new = add_key_version(path, V2)
    assert (old.label, new.label) == ("v1", "v2") and load_key(settings) == V2
    assert path.read_bytes().splitlines()[1:] == [b"v1 " + V1, b"v2 " + V2 + b" active"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and not list(path.parent.glob(".*tmp"))
    assert key_version(settings) == {"version": "v2", "key_id": key_id(V2)}
    # an engine that was given the v1 key id still finds v1 in the rotated file; v2 under its own id
    assert before.load() == V1 and engine_key(settings).load() == V2
    _, third = add_key_version(path)
    assert third.label == "v3" and len(third.key) == 64 and load_keyring(settings).active_label == "v3"
    with pytest.raises(ConfigError, match="already a version"):
        add_key_version(path, V1)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_key(settings)


@pytest.mark.fast
def test_rotation_engine_key_carries_ids_and_a_folder_never_key_material(tmp_path: Path) -> None:
    path = _key_file(tmp_path, b"v1 " + V1 + b"\nv2 " + V2 + b" active\n")
    settings = new_lakehouse(tmp_path / "lh", attach_engine=False, pseudonym_key=None, pseudonym_key_file=path)
    assert engine_key(settings).crosswalk_dir is None
    with capturing_crosswalk(key_id(V1), tmp_path / "capture"):
        key = engine_key(settings)
    assert (key.previous_id, key.key_id) == (key_id(V1), key_id(V2)) and key.load_previous() == V1
    assert engine_key(settings).crosswalk_dir is None  # only while the rotation runs
    shipped = pickle.dumps(key)  # what travels to the engine inside a UDF
    assert not any(form in shipped for secret in (V1, V2) for form in _key_material(secret, {"patient"}).values())


@pytest.mark.fast
def test_the_crosswalk_pairs_old_and_new_pseudonyms_per_namespace(tmp_path: Path) -> None:
    path = _key_file(tmp_path, b"v1 " + V1 + b"\nv2 " + V2 + b" active\n")
    settings = new_lakehouse(tmp_path / "lh", attach_engine=False, pseudonym_key=None, pseudonym_key_file=path)
    folder = tmp_path / "capture"
    folder.mkdir()
    key = EngineKey(str(path), key_id(V2), key_id(V1), str(folder))
    for ns, values in (("patient", ["MRN1", "MRN2", None]), ("patient", ["MRN1"]), ("encounter", ["V9"])):
        series = pd.Series(values, dtype=object)
        _record_crosswalk(key, ns, series, series.map(lambda v, ns=ns: pseudonym_py(v, V2, ns)))
    assert write_crosswalk(settings, folder, "v1", "v2") == {"encounter": 1, "patient": 2}
    table = pq.read_table(settings.table_path("_system", "rekey_v1_v2")).to_pylist()
    assert crosswalk_table("v1", "v2") == "_system.rekey_v1_v2"
    assert sorted(table, key=str) == sorted(
        [{"namespace": ns, "old_pseudonym": pseudonym_py(raw, V1, ns), "new_pseudonym": pseudonym_py(raw, V2, ns)}
         for ns, raw in (("patient", "MRN1"), ("patient", "MRN2"), ("encounter", "V9"))], key=str)
    assert stat.S_IMODE(settings.table_path("_system", "rekey_v1_v2").stat().st_mode) == 0o700
    # one old pseudonym with two new ones: two rotations mixed in one folder
    bad = pd.Series(["MRN1"], dtype=object)
    _record_crosswalk(key, "patient", bad, pd.Series(["0" * 64]))
    with pytest.raises(LakehouseError, match="more than one new one"):
        write_crosswalk(settings, folder, "v1", "v2")


def _rows(settings, layer: str, table: str) -> list[dict]:
    return DeltaTable(str(settings.table_path(layer, table))).to_pyarrow_table().to_pylist()


def _values(settings, layer: str, table: str) -> set[str]:
    """Every string value of the current version of a table (nested lists flattened)."""
    out: set[str] = set()
    for row in _rows(settings, layer, table):
        for v in row.values():
            out.update(x for x in (v if isinstance(v, list) else [v]) if isinstance(x, str))
    return out


def test_the_engine_records_the_crosswalk_where_the_key_is(spark, make_lakehouse, tmp_path) -> None:
    """Pseudonyms computed on the engine during a rotation leave (namespace, old, new) pairs in the capture folder;
    the plan carries only key ids and the folder."""
    path = _key_file(tmp_path, b"v1 " + V1 + b"\nv2 " + V2 + b" active\n")
    settings = make_lakehouse(pseudonym_key=None, pseudonym_key_file=path)
    folder = tmp_path / "capture"
    folder.mkdir()
    df = spark.createDataFrame([("MRN1", ["c1", "c2"]), ("MRN2", None), (None, ["c1"])],
                               "mrn string, refs array<string>")
    with capturing_crosswalk(key_id(V1), folder):
        key = engine_key(settings)
    rows = df.select(pseudonym(F.col("mrn"), key, "patient").alias("p"),
                     pseudonym_array(F.col("refs"), key, "condition").alias("c")).collect()
    assert {r.p for r in rows} == {pseudonym_py("MRN1", V2, "patient"), pseudonym_py("MRN2", V2, "patient"), None}
    assert write_crosswalk(settings, folder, "v1", "v2") == {"condition": 2, "patient": 2}
    got = {(r["namespace"], r["old_pseudonym"], r["new_pseudonym"]) for r in _rows(settings, "_system", "rekey_v1_v2")}
    assert got == {(ns, pseudonym_py(v, V1, ns), pseudonym_py(v, V2, ns))
                   for ns, v in (("patient", "MRN1"), ("patient", "MRN2"), ("condition", "c1"), ("condition", "c2"))}


@pytest.mark.slow
@pytest.mark.timeout(3000)  # two Silver and two Gold builds
def test_rekey_rebuilds_silver_and_gold_under_the_new_version_with_a_crosswalk(make_lakehouse, tmp_path) -> None:
    path = _key_file(tmp_path, V1 + b"\n")
    settings = make_lakehouse(pseudonym_key=None, pseudonym_key_file=path)
    generate(patients=6, seed=11, out=settings.landing_dir, bad_rate=0.0)
    with run_context("run", settings) as run:
        ingest(settings, [], run)
        build_silver(settings, run)
        build_gold(settings, run)
    old_patients = {r["patient_key"] for r in _rows(settings, "silver", "patient")}
    old_encounters = {r["encounter_key"] for r in _rows(settings, "silver", "encounter")}
    gold_tables = [p.name for p in settings.layer_path("gold").iterdir() if (p / "_delta_log").is_dir()]

    report = rekey(settings)

    assert (report["old_version"], report["new_version"]) == ("v1", "v2") and load_key(settings) != V1
    new_key = load_key(settings)
    crosswalk = _rows(settings, "_system", "rekey_v1_v2")
    pairs = {(r["namespace"], r["old_pseudonym"]): r["new_pseudonym"] for r in crosswalk}
    new_patients = {r["patient_key"] for r in _rows(settings, "silver", "patient")}
    # every published patient and encounter pseudonym has its new one, and Silver holds exactly the new ones
    assert len(new_patients) == len(old_patients) == 6 and not new_patients & old_patients
    assert {pairs[("patient", k)] for k in old_patients} == new_patients
    assert {pairs[("encounter", k)] for k in old_encounters} == \
        {r["encounter_key"] for r in _rows(settings, "silver", "encounter")}
    ns_pairs = [(o, n) for (ns, o), n in pairs.items() if ns == "patient"]
    assert len(ns_pairs) >= 6 and report["crosswalk_pairs"]["patient"] == len(ns_pairs)
    # Gold was rebuilt in full: no current Gold table holds a pseudonym of the old version
    old_all = {o for (_, o) in pairs}
    assert sorted(gold_tables) == sorted(p.name for p in settings.layer_path("gold").iterdir()
                                         if (p / "_delta_log").is_dir())
    for table in gold_tables:
        assert not _values(settings, "gold", table) & old_all, table
    dim = _rows(settings, "gold", "dim_patient")
    assert {r["patient_key"] for r in dim} == new_patients
    # the run record names the active version, never the key
    record = [r for r in read_runs(settings) if r["command"] == "rekey"][-1]
    metrics = json.loads(record["metrics"])
    assert metrics["deid_key"] == {"version": "v2", "key_id": key_id(new_key)}
    assert metrics["rekey"]["crosswalk"] == "_system.rekey_v1_v2"
    # old and new versions on disk: no key material of either version, no raw content hash, no stray capture
    findings = scan(settings)
    assert [f for f in findings if f.kind in ("key_material", "raw_content_hash")] == []
    assert not (settings.layer_path("_system") / "rekey_capture" / "v1_v2").exists()


@pytest.mark.fast
def test_safe_harbor_surrogates_survive_a_rotation(tmp_path: Path) -> None:
    """The mapping table is re-keyed to the new pseudonyms: a rebuild then publishes the same surrogates."""
    settings = new_lakehouse(tmp_path / "lh", attach_engine=False)
    old_p, new_p, other = "a" * 64, "b" * 64, "c" * 64
    when = pd.Timestamp("2026-01-01", tz="UTC")
    write_deltalake(str(settings.table_path("_system", "surrogate_keys")), pa.Table.from_pylist([
        {"namespace": "patient", "pseudonym": old_p, "surrogate": "s-old", "issued_run_id": "r1", "issued_at": when},
        {"namespace": "patient", "pseudonym": new_p, "surrogate": "s-issued-by-rekey", "issued_run_id": "r2",
         "issued_at": when},
        {"namespace": "goal", "pseudonym": other, "surrogate": "s-goal", "issued_run_id": "r1", "issued_at": when}]))
    write_deltalake(str(settings.table_path("_system", "rekey_v1_v2")), pa.Table.from_pylist(
        [{"namespace": "patient", "old_pseudonym": old_p, "new_pseudonym": new_p}]))
    assert migrate_surrogates(settings, "v1", "v2")
    rows = DeltaTable(str(settings.table_path("_system", "surrogate_keys"))).to_pyarrow_table().to_pylist()
    assert sorted((r["namespace"], r["pseudonym"], r["surrogate"]) for r in rows) == [
        ("goal", other, "s-goal"), ("patient", new_p, "s-old")]


@pytest.mark.fast
def test_rekey_needs_a_key_file_and_resume_needs_a_rotation(tmp_path: Path) -> None:
    valued = new_lakehouse(tmp_path / "a", attach_engine=False)  # the key as a value
    with pytest.raises(ConfigError, match="key versions live in a key file"):
        rekey(valued)
    path = _key_file(tmp_path, V1 + b"\n")
    settings = new_lakehouse(tmp_path / "b", attach_engine=False, pseudonym_key=None, pseudonym_key_file=path)
    with pytest.raises(LakehouseError, match="no key version of this key file"):  # no Silver build yet
        rekey(settings, resume=True)
    assert load_keyring(settings).active_label == "v1"  # a refused resume adds no key
