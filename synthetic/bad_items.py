"""Deliberately bad input, planted at a chosen rate, each item recorded with file, position and kind.

Entry- and message-level items are extra entries/messages inside otherwise good files (the good content is
never altered); file-level items are extra files. Positions are 0-based: `entry_index` in Bundle.entry,
`message_index` among the MSH-started messages of a file (FHS/BHS/BTS/FTS envelope lines are not messages).
"""

from __future__ import annotations

import random
from typing import Any

from synthetic.hl7v2 import HL7File, Message

QUARANTINE_KINDS = (
    "fhir_truncated_json", "fhir_entry_without_resource", "fhir_wrong_resource_type", "hl7_missing_msh",
    "hl7_broken_msh", "binary_file", "dicom_truncated", "dicom_no_file_meta",
)
DUPLICATE_KINDS = ("duplicate_file", "duplicate_message")
# planted oddities a reader must accept (not quarantine)
ACCEPTED_KINDS = ("dicom_no_file_meta",)
KINDS = QUARANTINE_KINDS + DUPLICATE_KINDS

# What a reader is expected to do with each kind (the manifest repeats this for the ingestion tests).
READER_EXPECTATIONS: dict[str, str] = {
    "fhir_truncated_json": "quarantine the whole file: not parseable JSON",
    "fhir_entry_without_resource": "quarantine that entry (POST entry with no resource); ingest the other entries",
    "fhir_wrong_resource_type": "quarantine that entry (resourceType is not an R4 type); ingest the other entries",
    "hl7_missing_msh": "quarantine the whole file: segments with no MSH header",
    "hl7_broken_msh": "quarantine that message (MSH lacks MSH-9 type, MSH-10 control id and MSH-12 version); "
                      "ingest the other messages of the file",
    "binary_file": "quarantine the whole file: not text, not JSON, not HL7, not DICOM",
    "dicom_truncated": "quarantine the whole file: a copy of a good instance cut short before its PixelData. "
                       "pydicom.dcmread usually does NOT raise on it (it returns the elements before the cut; a cut "
                       "inside a sequence raises struct.error), so detect the truncation: no PixelData (7FE0,0010) "
                       "in an image SOP class",
    "dicom_no_file_meta": "accept it: no preamble/DICM/file meta, as older scanners write (pydicom reads it with "
                          "force=True as implicit VR little endian). It repeats the UIDs of a good instance: a "
                          "second Bronze copy that must not change the distinct instance count",
    "duplicate_file": "deduplicate: byte-identical copy of an earlier good file under another name",
    "duplicate_message": "deduplicate: same MSH-10 control id and same content as an earlier message",
}


def plan_counts(bad_rate: float, good_files: int, seed: int, available: set[str], cohort: int = 0,
                not_yet_planted: set[str] | None = None) -> dict[str, int]:
    """How many of each kind in one cohort: round(bad_rate * good files), spread evenly over the available kinds,
    plus one of each available kind that no earlier cohort planted (so every kind appears at any rate > 0)."""
    if bad_rate <= 0:
        return {}
    kinds = [k for k in KINDS if k in available]
    if not kinds:
        return {}
    total = round(bad_rate * good_files)
    rng = random.Random(f"synthetic:{seed}:bad:counts:{cohort}")
    order = kinds[:]
    rng.shuffle(order)
    counts = {k: total // len(kinds) for k in kinds}
    for k in order[: total % len(kinds)]:
        counts[k] += 1
    for k in kinds:
        if not_yet_planted is None or k in not_yet_planted:
            counts[k] = max(1, counts[k])
    return counts


def bad_entries(kind: str, rng: random.Random, new_id: str) -> dict[str, Any]:
    if kind == "fhir_entry_without_resource":
        return {"fullUrl": f"urn:uuid:{new_id}", "request": {"method": "POST", "url": "Observation"}}
    return {  # a typo'd type, as hand-edited or badly mapped exports contain
        "fullUrl": f"urn:uuid:{new_id}",
        "resource": {"resourceType": rng.choice(["Observations", "Patinet", "Encounters"]), "id": new_id,
                     "status": "final"},
        "request": {"method": "POST", "url": "Observation"},
    }


def broken_msh_message(source: Message, rng: random.Random) -> Message:
    msh = source.segments[0].split("|")
    if rng.random() < 0.5:
        broken = "|".join(msh[:4])  # cut after MSH-4: no type, control id or version
    else:
        broken = "|".join(msh[:7] + ["", "", "", "P"])  # MSH-9 and MSH-10 empty, no MSH-12
    return Message("", "", "", [broken, *source.segments[1:]], kind="hl7_broken_msh")


def orphan_segments(source: Message) -> list[str]:
    return source.segments[1:]


def insert_messages(files: list[HL7File], counts: dict[str, int], rng: random.Random) -> None:
    """Plant broken-MSH messages and duplicate messages inside the (still in-memory) HL7 files."""
    if not files:
        return
    for _ in range(counts.get("hl7_broken_msh", 0)):
        target = rng.choice(files)
        source = rng.choice([m for m in target.messages if m.kind == "good"])
        target.messages.insert(rng.randint(0, len(target.messages)), broken_msh_message(source, rng))
    for _ in range(counts.get("duplicate_message", 0)):
        src_index = rng.randrange(len(files))
        source_file = files[src_index]
        goods = [i for i, m in enumerate(source_file.messages) if m.kind == "good"]
        original = source_file.messages[rng.choice(goods)]
        target_index = rng.randrange(src_index, len(files))
        target = files[target_index]
        lowest = target.messages.index(original) + 1 if target is source_file else 0
        copy = Message(original.control_id, original.message_type, original.version, list(original.segments),
                       event=original.event, kind="duplicate_message",
                       note={"original_file": source_file.path, "original_control_id": original.control_id,
                             "original": original})
        target.messages.insert(rng.randint(lowest, len(target.messages)), copy)


def message_records(files: list[HL7File]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Bad and duplicate message records with their final positions."""
    bad, dups = [], []
    index_of: dict[int, tuple[str, int]] = {}
    for f in files:
        for i, m in enumerate(f.messages):
            index_of[id(m)] = (f.path, i)
    for f in files:
        for i, m in enumerate(f.messages):
            if m.kind == "hl7_broken_msh":
                bad.append({"kind": m.kind, "source": "hl7v2", "file": f.path, "message_index": i,
                            "expected": "quarantine", "reason": READER_EXPECTATIONS[m.kind]})
            elif m.kind == "duplicate_message":
                original_file, original_index = index_of[id(m.note["original"])]
                dups.append({"kind": m.kind, "source": "hl7v2", "file": f.path, "message_index": i,
                             "control_id": m.control_id, "original_file": original_file,
                             "original_message_index": original_index, "expected": "deduplicate"})
    return bad, dups


def binary_blob(rng: random.Random) -> bytes:
    data = bytearray(b"\x00\x00\x00\x18\x9c\xf1" + rng.randbytes(rng.randint(400, 2000)))
    data[128:132] = b"\x00\x00\x00\x00"  # never a DICM marker by accident
    return bytes(data)
