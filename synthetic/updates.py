"""A later batch of demographic changes (patients moving to another ZIP3), for SCD2 tests downstream."""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

from synthetic import fhir, hl7v2, model


def generate_address_changes(out: Path, manifest: dict[str, Any], count: int, seed: int) -> dict[str, Any]:
    """Move `count` living patients of a generated landing dir to an address in a different ZIP3.

    Writes one HL7 file of ADT^A08 messages (`hl7v2/batch2_adt_a08_<seed>.hl7`) and one transaction Bundle per
    moved patient (`fhir/bundles/<patient id>_update_<seed>.json`: PUT Patient/<id>, same id, newer
    meta.lastUpdated), plus `_generator/address_changes_<seed>.json`. Returns what changed.
    """
    out = Path(out)
    base_seed = manifest["seed"]
    pool = model.build_pool(base_seed)
    living = []  # indices only: patients are rebuilt from the seed, one at a time, to keep memory flat
    for i in range(manifest["patient_count"]):
        p = model.build_patient(i, base_seed, pool)
        if p.deceased is None and p.encounters:
            living.append(i)
    rng = random.Random(f"synthetic:{base_seed}:address-change:{seed}")
    chosen = [model.build_patient(i, base_seed, pool) for i in sorted(rng.sample(living, k=min(count, len(living))))]
    changed_at = (model.BASE_TIME + timedelta(days=rng.randint(7, 60), hours=rng.randint(0, 8))).replace(minute=0)
    style = hl7v2.FileStyle(version="2.5.1", eol="CR", bom=False, envelope=False, local_system="L",
                            hd_subcomponents=False, z_segments=False, ssn_repetition=False)
    messages: list[hl7v2.Message] = []
    changes: list[dict[str, Any]] = []
    files: list[str] = []
    for n, old in enumerate(chosen):
        moved = dataclasses.replace(old, address=model.random_address(rng, exclude_zip3=old.address.zip[:3]))
        when = changed_at + timedelta(minutes=n)
        control_id = f"UPD{seed % 10000:04d}{n:06d}"
        event = hl7v2.Event(when, "adt", "A08", moved, moved.encounters[-1], 0)
        messages.append(hl7v2.render(event, control_id, style, pool))
        patient = fhir.patient_resource(moved, pool, when)
        entries = [fhir.entry(patient, method="PUT")] + [fhir.entry(r) for r in fhir.shared_for(moved, pool)]
        rel = f"fhir/bundles/{moved.id}_update_{seed}.json"
        _write(out, rel, fhir.dump_bundle(fhir.transaction_bundle(entries), pretty=False))
        files.append(rel)
        changes.append({
            "patient_id": moved.id, "mrn": moved.mrn, "effective": fhir.ts(when), "hl7_control_id": control_id,
            "bundle": rel, "old": dataclasses.asdict(old.address), "new": dataclasses.asdict(moved.address),
        })
    hl7_rel = f"hl7v2/batch2_adt_a08_{seed}.hl7"
    if messages:
        _write(out, hl7_rel, hl7v2.HL7File(hl7_rel, "adt", style, messages).to_bytes("HIS_ADT", changed_at))
        files.insert(0, hl7_rel)
    result = {"seed": seed, "count": len(changes), "effective_from": fhir.ts(changed_at), "files": files,
              "changed": changes}
    _write(out, f"_generator/address_changes_{seed}.json", json.dumps(result, ensure_ascii=False, indent=1).encode())
    return result


def _write(out: Path, rel: str, data: bytes) -> None:
    target = out / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
