"""The pseudonym key stays with its holder: not in the engine's environment, not as a plain hash in run records."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from bronze.job import ingest
from lakehouse.catalog import Catalog
from lakehouse.engine import SailServer
from lakehouse.runlog import run_context
from lakehouse.uptodate import key_id
from silver.deid.keys import load_key
from silver.deid.pseudonym import LINEAGE_NAMESPACE, NAMESPACES_USED, namespace_key, pseudonym_py
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


def _key_material(key: bytes, namespaces: set[str]) -> dict[str, bytes]:
    """The key and everything derived from it that would let a reader compute pseudonyms: per namespace the
    derived key and the RFC 2104 inner/outer pads, raw and as hex."""
    found = {"key": key, "key hex": key.hex().encode()}
    for ns in namespaces:
        derived = namespace_key(key, ns)
        block = derived.ljust(64, b"\0")
        for label, value in (("derived", derived), ("ipad", bytes(b ^ 0x36 for b in block)),
                             ("opad", bytes(b ^ 0x5C for b in block))):
            found[f"{ns} {label}"] = value
            found[f"{ns} {label} hex"] = value.hex().encode()
            found[f"{ns} {label} HEX"] = value.hex().upper().encode()
    return found


def test_silver_build_sends_no_key_material_to_the_engine(spark, make_lakehouse, monkeypatch) -> None:
    settings = make_lakehouse()
    generate(patients=6, seed=3, out=settings.landing_dir, bad_rate=0.0)
    with run_context("ingest", settings) as run:
        ingest(settings, [], run)
    sent: list[bytes] = []
    stub = spark.client._stub  # type: ignore[attr-defined]
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

        monkeypatch.setattr(stub, name, recording)
    NAMESPACES_USED.clear()
    with run_context("silver", settings) as run:
        result = build_silver(settings, run, force=True)
    assert result["patient"]["silver"] == 6 and len(sent) > 100
    namespaces = set(NAMESPACES_USED)
    assert {"patient", "encounter", "date-shift", "lineage", "dicom-uid"} <= namespaces
    key = load_key(settings)
    leaks = sorted(label for label, value in _key_material(key, namespaces).items()
                   if any(value in request for request in sent))
    assert leaks == []
    # the check can fail: key material in a plan is found
    probe = spark.createDataFrame([("x",)], "v string").select(F.lit(namespace_key(key, "patient").hex()))
    probe.collect()
    assert any(_key_material(key, {"patient"})["patient derived hex"] in r for r in sent)


def test_silver_lineage_hashes_are_keyed(spark, make_lakehouse) -> None:
    settings = make_lakehouse()
    generate(patients=4, seed=5, out=settings.landing_dir, bad_rate=0.0)
    with run_context("run", settings) as run:
        ingest(settings, [], run)
        build_silver(settings, run)
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
