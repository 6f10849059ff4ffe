"""Generator ground truth: every good item in Bronze, every bad item in quarantine, duplicates stored once."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from pyspark.sql import functions as F

import bronze.job
import synthetic
from bronze.job import ingest
from bronze.landing import pending_files, read_manifest
from lakehouse.runlog import Run
from synthetic.bad_items import ACCEPTED_KINDS


@pytest.mark.parametrize("batch_bytes", [None, 40_000], ids=["one-batch", "many-small-batches"])
def test_generated_landing_matches_ground_truth(settings, catalog, batch_bytes, monkeypatch) -> None:
    if batch_bytes:  # files read in many byte-bounded groups must land exactly like one group
        monkeypatch.setattr(bronze.job, "BATCH_BYTES", batch_bytes)
    out = settings.landing_dir / "synthetic"
    synthetic.generate(patients=10, seed=11, out=out, bad_rate=0.2)
    truth = json.loads((out / "_generator" / "manifest.json").read_text())
    if batch_bytes:
        pending, _ = pending_files(settings, read_manifest(settings, catalog.path("_system.landing_manifest")))
        groups = bronze.job.batches([f for f in pending if f.format == "fhir"])
        assert len(groups) > 3 and all(sum(f.size for f in g) <= batch_bytes or len(g) == 1 for g in groups)
    report = ingest(settings, [], Run("ingest", settings))
    expected = truth["expected"]

    fhir = catalog.read("bronze.fhir_resources")
    got_types = Counter(r.resource_type for r in fhir.select("resource_type").collect())
    assert got_types == Counter(expected["fhir"]["resources_by_type"])
    hl7 = catalog.read("bronze.hl7v2_messages")
    assert hl7.count() == expected["hl7v2"]["messages"]
    got_msg_types = Counter(f"{r.message_type}^{r.trigger_event}" for r in hl7.collect())
    assert got_msg_types == Counter(expected["hl7v2"]["messages_by_type"])
    dcm = catalog.read("bronze.dicom_instances")
    dup = (dcm.groupBy("sop_instance_uid").count().filter("count > 1").join(dcm, "sop_instance_uid")
           .select("source_file", "file_size").collect())
    # a planted preamble-less copy of a good instance is accepted: a second row with the same SOP Instance UID
    copies = [b for b in truth["bad_items"] if b["kind"] in ACCEPTED_KINDS]
    assert dcm.select("sop_instance_uid").distinct().count() == expected["dicom"]["instances"], dup
    assert dcm.count() == expected["dicom"]["instances"] + len(copies), dup

    quarantined = []
    for name in ("quarantine.hl7v2", "quarantine.fhir", "quarantine.dicom", "quarantine.landing"):
        if catalog.exists(name):
            quarantined += [(r.source_file, r.position, r.reason) for r in catalog.read(name).collect()]
    prefix = out.relative_to(settings.root_path).as_posix() + "/"
    for item in [b for b in truth["bad_items"] if b["kind"] not in ACCEPTED_KINDS]:
        position = item.get("entry_index", item.get("message_index"))
        hits = [q for q in quarantined if q[0] == prefix + item["file"]
                and (position is None or item["kind"] == "hl7_missing_msh" or q[1] == position)]
        assert len(hits) == 1, (item, hits)
    assert len(quarantined) == len(truth["bad_items"]) - len(copies)
    dups = sum(report[s]["duplicates"] for s in ("hl7v2", "fhir", "dicom"))
    assert dups >= len(truth["duplicates"])
    resent = [d for d in truth["duplicates"] if d["kind"] == "duplicate_message"]
    for d in resent:
        assert hl7.filter(F.col("message_control_id") == d["control_id"]).count() == 1

    before = {n: catalog.version(n) for n in catalog.list_tables()}
    ingest(settings, [], Run("ingest", settings))
    assert {n: catalog.version(n) for n in catalog.list_tables()} == before
