"""`generate`: write FHIR, HL7 v2 and DICOM for the same synthetic patients into a landing dir, plus the manifest."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

from synthetic import bad_items, dicom, fhir, hl7v2, manifest, model
from synthetic.model import Patient, Pool


def _write(out: Path, rel: str, data: bytes) -> None:
    target = out / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def _bundle_path(p: Patient) -> str:
    return f"fhir/bundles/{p.id}.json"


def _write_bundles(patients: list[Patient], pool: Pool, seed: int, out: Path, counts: dict[str, int], cohort: int,
                   shared_seen: set[str], keep: bool) -> tuple[Counter[str], list[dict[str, Any]],
                                                               dict[str, list[dict[str, Any]]]]:
    """Write one transaction Bundle per patient; plant entry-level bad items. Returns (distinct good resources
    by type, bad entry records, and if `keep` the cohort's distinct good resources by type)."""
    rng = random.Random(f"synthetic:{seed}:bad:fhir:{cohort}")
    planted: dict[int, list[tuple[str, dict[str, Any]]]] = {}
    for kind in ("fhir_entry_without_resource", "fhir_wrong_resource_type"):
        for _ in range(counts.get(kind, 0)):
            i = rng.choice(patients).index
            planted.setdefault(i, []).append((kind, bad_items.bad_entries(kind, rng, model.new_uuid(rng))))
    by_type: Counter[str] = Counter()
    bad: list[dict[str, Any]] = []
    distinct: dict[str, list[dict[str, Any]]] = {}
    for p in patients:
        resources = fhir.patient_resources(p, pool)
        for res in resources:
            rtype = res["resourceType"]
            if rtype in fhir.SHARED_TYPES:
                if res["id"] in shared_seen:
                    continue
                shared_seen.add(res["id"])
            by_type[rtype] += 1
            if keep:
                distinct.setdefault(rtype, []).append(res)
        entries = [fhir.entry(r) for r in resources]
        prng = random.Random(f"synthetic:{seed}:bundle:{p.index}")
        markers = planted.get(p.index, [])
        for _, bad_entry in markers:
            entries.insert(prng.randint(1, len(entries)), bad_entry)
        rel = _bundle_path(p)
        _write(out, rel, fhir.dump_bundle(fhir.transaction_bundle(entries), pretty=prng.random() < 0.1))
        for kind, bad_entry in markers:
            position = next(i for i, e in enumerate(entries) if e is bad_entry)
            bad.append({"kind": kind, "source": "fhir", "file": rel, "entry_index": position,
                        "expected": "quarantine", "reason": bad_items.READER_EXPECTATIONS[kind]})
    return by_type, bad, distinct


def _append_ndjson(out: Path, resources: dict[str, list[dict[str, Any]]], pool: Pool,
                   started: set[str]) -> dict[str, int]:
    """Append a cohort's resources to fhir/ndjson/<Type>.ndjson (the first cohort truncates stale files)."""
    type_of = {r["id"]: rtype for rtype, items in resources.items() for r in items}
    type_of.update({o.id: "Organization" for o in [pool.hospital, *pool.clinics]})
    type_of.update({pr.id: "Practitioner" for pr in pool.practitioners})
    written = {}
    for rtype in sorted(resources):
        target = out / f"fhir/ndjson/{rtype}.ndjson"
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a" if rtype in started else "w", encoding="utf-8") as fh:
            fh.writelines(fhir.ndjson_line(r, type_of) + "\n" for r in resources[rtype])
        started.add(rtype)
        written[rtype] = len(resources[rtype])
    return written


def _file_level_bad_items(out: Path, seed: int, counts: dict[str, int], patients: list[Patient], pool: Pool,
                          hl7_files: list[hl7v2.HL7File], instances: list[dicom.Instance], clean_files: list[str],
                          cohort: int, planted: Counter[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Extra bad files. `planted` counts what earlier cohorts planted, so file names stay unique."""
    rng = random.Random(f"synthetic:{seed}:bad:files:{cohort}")
    bad: list[dict[str, Any]] = []
    dups: list[dict[str, Any]] = []

    def numbers(kind: str) -> range:
        return range(planted[kind], planted[kind] + counts.get(kind, 0))

    def record(kind: str, source: str, rel: str, **extra: Any) -> None:
        bad.append({"kind": kind, "source": source, "file": rel, "expected": "quarantine",
                    "reason": bad_items.READER_EXPECTATIONS[kind], **extra})

    for n in numbers("fhir_truncated_json"):
        p = rng.choice(patients)
        data = (out / _bundle_path(p)).read_bytes()
        rel = f"fhir/bundles/{p.id}_partial{n:03d}.json"
        _write(out, rel, data[: int(len(data) * rng.uniform(0.3, 0.9))])
        record("fhir_truncated_json", "fhir", rel, truncated_copy_of=_bundle_path(p))
    adt_messages = [m for f in hl7_files if f.feed == "adt" for m in f.messages if m.kind == "good"]
    for n in numbers("hl7_missing_msh"):
        source = rng.choice(adt_messages)
        rel = f"hl7v2/adt_orphan_{n:03d}{rng.choice(hl7v2.EXTENSIONS)}"
        _write(out, rel, ("\r".join(bad_items.orphan_segments(source)) + "\r").encode())
        record("hl7_missing_msh", "hl7v2", rel, message_index=0)
    for n in numbers("binary_file"):
        rel = rng.choice([f"hl7v2/feed_{n:03d}.dat", f"fhir/bundles/export_{n:03d}.json", f"dicom/blob_{n:03d}"])
        _write(out, rel, bad_items.binary_blob(rng))
        record("binary_file", rel.split("/", 1)[0], rel)
    for n in numbers("dicom_truncated"):
        inst = rng.choice(instances)
        data = (out / inst.path).read_bytes()
        stem, dot, ext = inst.path.rpartition(".") if inst.path.endswith(".dcm") else (inst.path, "", "")
        rel = f"{stem}_partial{n:03d}{dot}{ext}"
        pixel_data_at = data.rindex(b"\xe0\x7f\x10\x00")  # (7FE0,0010) is the last element
        _write(out, rel, data[: rng.randint(len(data) // 3, pixel_data_at - 1)])
        record("dicom_truncated", "dicom", rel, truncated_copy_of=inst.path)
    for n in numbers("dicom_no_file_meta"):
        inst = rng.choice(instances)
        rel = f"dicom/legacy/IMG{n:05d}"
        _write(out, rel, dicom.to_bytes(dicom.dataset_for(inst, pool, seed), file_meta=False))
        record("dicom_no_file_meta", "dicom", rel, same_uids_as=inst.path, sop_instance_uid=inst.sop_uid)
    for n in numbers("duplicate_file") if clean_files else []:  # a tiny export may have no clean file to resend
        original = rng.choice(clean_files)
        stem, dot, ext = original.rpartition(".") if "." in original.rsplit("/", 1)[-1] else (original, "", "")
        rel = f"{stem}_resent{n:03d}{dot}{ext}"
        _write(out, rel, (out / original).read_bytes())
        dups.append({"kind": "duplicate_file", "source": original.split("/", 1)[0], "file": rel,
                     "original_file": original, "expected": "deduplicate"})
    return bad, dups


COHORT_SIZE = 1000  # patients generated, rendered and written together; bounds memory at any N


def generate(patients: int, seed: int, out: Path, bad_rate: float, ndjson: bool = False) -> dict[str, Any]:
    """Write the synthetic landing zone for `patients` patients; returns a summary and the expected counts.

    Patients are processed in cohorts of COHORT_SIZE (each cohort's HL7 feed files are time-ordered within the
    cohort), so memory stays bounded. Writes into `out` without deleting anything already there; use an empty dir
    to make the manifest exact.
    """
    if patients < 1:
        raise ValueError("patients must be >= 1")
    if not 0.0 <= bad_rate <= 1.0:
        raise ValueError("bad_rate must be between 0 and 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pool = model.build_pool(seed)
    writer = manifest.ManifestWriter(out, seed, bad_rate, pool)
    counters = hl7v2.FeedCounters()
    shared_seen: set[str] = set()
    ndjson_started: set[str] = set()
    planted: Counter[str] = Counter()
    for cohort, start in enumerate(range(0, patients, COHORT_SIZE)):
        population = [model.build_patient(i, seed, pool) for i in range(start, min(patients, start + COHORT_SIZE))]
        hl7_files = hl7v2.build_files(hl7v2.build_events(population), pool, seed, counters)
        n_instances = sum(st.instance_count for p in population for e in p.encounters for st in e.studies)
        available = set(bad_items.KINDS)
        if n_instances == 0:
            available -= {"dicom_truncated", "dicom_no_file_meta"}
        if not hl7_files:
            available -= {"hl7_missing_msh", "hl7_broken_msh", "duplicate_message"}
        counts = bad_items.plan_counts(bad_rate, len(population) + len(hl7_files) + n_instances, seed, available,
                                       cohort, not_yet_planted={k for k in bad_items.KINDS if not planted[k]})

        fhir_counts, fhir_bad, resources = _write_bundles(population, pool, seed, out, counts, cohort, shared_seen,
                                                         keep=ndjson)
        if ndjson:
            writer.add_ndjson(_append_ndjson(out, resources, pool, ndjson_started))
        del resources

        bad_items.insert_messages(hl7_files, counts, random.Random(f"synthetic:{seed}:bad:hl7:{cohort}"))
        for f in hl7_files:
            created = max(m.event.time for m in f.messages if m.event is not None)
            _write(out, f.path, f.to_bytes("HIS_ADT" if f.feed == "adt" else "LIS_LAB", created))
        hl7_bad, hl7_dups = bad_items.message_records(hl7_files)

        instances = dicom.write_studies(population, pool, seed, out)

        tainted = {b["file"] for b in fhir_bad + hl7_bad} | {d["file"] for d in hl7_dups}
        clean = [_bundle_path(p) for p in population] + [f.path for f in hl7_files] + [i.path for i in instances]
        clean = [c for c in clean if c not in tainted]
        file_bad, file_dups = _file_level_bad_items(out, seed, counts, population, pool, hl7_files, instances,
                                                    clean, cohort, planted)
        planted.update(counts)
        writer.add_cohort(patients=population, hl7_files=hl7_files, instances=instances, fhir_counts=fhir_counts,
                          bad=fhir_bad + hl7_bad + file_bad, duplicates=hl7_dups + file_dups,
                          bundle_path=_bundle_path)
    doc = writer.finish()
    expected = doc["expected"]
    n_files = expected["hl7v2"]["files"]
    summary = (f"{patients} patients (seed {seed}) -> {out}: {expected['fhir']['resources']} FHIR resources in "
               f"{patients} bundles, {expected['hl7v2']['messages']} HL7 messages in {n_files} files, "
               f"{expected['dicom']['instances']} DICOM instances in {expected['dicom']['studies']} studies, "
               f"{len(doc['bad_items'])} bad items, {len(doc['duplicates'])} duplicates; "
               f"manifest {manifest.MANIFEST_PATH}")
    return {"summary": summary, "out": str(out), "manifest": str(out / manifest.MANIFEST_PATH),
            "patients": patients, "seed": seed, "fhir_resources": expected["fhir"]["resources"],
            "hl7_messages": expected["hl7v2"]["messages"], "hl7_files": n_files,
            "dicom_instances": expected["dicom"]["instances"], "bad_items": len(doc["bad_items"]),
            "duplicates": len(doc["duplicates"]), "harmonization_pairs": doc["harmonization_pair_count"]}
