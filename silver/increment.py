"""Which Bronze records an incremental Silver run recomputes: the subjects of each record and their closure.

Every Silver row is about one patient (or, for practitioners and organizations, about no patient), and is made
only from Bronze records about that patient. So a run that adds records needs to recompute only the patients those
records are about, from all of those patients' records, and leave every other patient's rows alone.

A record's ``subjects`` are the keyed pseudonyms (namespace ``patient``, the values of Silver's ``patient_key``
before merges and Safe Harbor surrogates) it can be keyed by, plus the Study Instance UIDs of imaging (namespace
``dicom-uid``), since one study's rows gather several records:

- HL7 v2: the identity of PID-3 of every PID segment and of MRG-1 of every MRG segment (a merge joins both);
- FHIR: a Patient's own id and its identity (best identifier); any other resource's ``subject``, ``patient`` or
  ``beneficiary`` reference (read as ``getReferenceKey`` reads it); an ImagingStudy's study UIDs;
- DICOM: Patient ID qualified by its issuer, and the Study Instance UID.

Records that share a subject are about the same patient; :func:`closure` joins subjects linked by a record into
one set (a FHIR Patient links its id and its MRN, a merge its two MRNs). A record with no subject (a Practitioner,
an Organization, a message without a usable PID) is recomputed by every run: it is cheap and keyed by nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from silver.common import Deid, flatten, segment_fields, segments, union_all
from silver.deid import pseudonym
from silver.identity import fhir_identities, hl7_identity
from silver.imaging import UID_NS, dicom_patient_identity

SUBJECTS_DDL = "source STRING, content_hash STRING, record_id STRING, lineage_hash STRING, subjects ARRAY<STRING>"
# a reference as getReferenceKey reads it (silver/views/fhirpath_sql.py): Type/id[/_history/v] or urn:uuid:id
REFERENCE = r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-\.]{1,64})(?:/_history/[^/]+)?$"
SUBJECT_ELEMENTS = ("subject", "patient", "beneficiary")


def _reference_id(reference: Column) -> Column:
    return F.when(reference.rlike(REFERENCE), F.regexp_extract(reference, REFERENCE, 2)) \
            .when(reference.startswith("urn:uuid:"), F.substring(reference, 10, 64))


def _subjects(source: str, rows: DataFrame, record_id: Column) -> DataFrame:
    """(source, content_hash, record_id, subjects) from rows (content_hash, subject): one row per record.

    NULLs are dropped with ``filter``, not ``array_compact``: on Sail 0.7.2 ``array_compact`` over an aggregate's
    arrays puts other rows' values on a row once the groups pass a few thousand (tests/test_sail_rules.py); here it
    gave 2-20% of a 1,000-patient Bronze the subjects of other records (tests/test_subject_index.py)."""
    return rows.groupBy("content_hash").agg(
        F.array_sort(F.filter(F.collect_set("subject"), lambda s: s.isNotNull())).alias("subjects")) \
        .select(F.lit(source).alias("source"), "content_hash", "subjects") \
        .join(record_id, "content_hash", "left")


def fhir_subjects(resources: DataFrame, deid: Deid) -> DataFrame:
    """Subjects of every FHIR resource row (each version its own row)."""
    def key(value: Column, namespace: str = "patient") -> Column:
        return pseudonym(value, deid.key, namespace, "subject")

    refs = [key(_reference_id(F.get_json_object("raw", f"$.{e}.reference"))) for e in SUBJECT_ELEMENTS]
    own = F.when(F.col("resource_type") == "Patient", key(F.col("resource_id")))
    direct = resources.select("content_hash", F.explode(F.array(own, *refs)).alias("subject"))
    identifiers = flatten(resources, "patient_identifier").withColumn("id", F.col("content_hash"))
    identified = fhir_identities(identifiers).select(F.col("id").alias("content_hash"), key(F.col("identity")))
    studies = resources.filter(F.col("resource_type") == "ImagingStudy").select(
        "content_hash", F.explode(F.from_json(F.get_json_object("raw", "$.identifier"),
                                              "array<struct<system:string,value:string>>")).alias("i")) \
        .filter(F.col("i.system") == "urn:dicom:uid") \
        .select("content_hash", key(F.regexp_replace("i.value", "^urn:oid:", ""), UID_NS))
    record_id = resources.select("content_hash", F.concat_ws("/", "resource_type", "resource_id").alias("record_id"))
    return _subjects("fhir", union_all([direct, identified, studies]), record_id)


def hl7_subjects(messages: DataFrame, deid: Deid) -> DataFrame:
    """Subjects of every HL7 v2 message row: its PID-3 and MRG-1 identities."""
    segs = segments(messages.withColumn("message_key", F.lit(None).cast("string")), deid)
    pid = segment_fields(segs, "PID", {"i": hl7_identity(3)})
    mrg = segment_fields(segs, "MRG", {"i": hl7_identity(1)})
    rows = union_all([s.select("content_hash", pseudonym(F.col("i"), deid.key, "patient", "subject"))
                      for s in (pid, mrg)])
    # messages without a PID or MRG still get their row (no subject)
    every = messages.select("content_hash", F.lit(None).cast("string").alias("subject"))
    return _subjects("hl7v2", rows.unionByName(every), messages.select("content_hash",
                                                                       F.lit(None).cast("string").alias("record_id")))


def dicom_subjects(instances: DataFrame, deid: Deid) -> DataFrame:
    """Subjects of every DICOM instance row: its patient and its study."""
    rows = instances.select("content_hash", F.explode(F.array(
        pseudonym(dicom_patient_identity(), deid.key, "patient"),
        pseudonym(F.col("study_instance_uid"), deid.key, UID_NS))).alias("subject"))
    return _subjects("dicom", rows, instances.select("content_hash", F.col("sop_instance_uid").alias("record_id")))


def closure(links: Iterable[Sequence[str]], seeds: Iterable[str]) -> set[str]:
    """Every subject connected to a seed through ``links`` (each a set of subjects of one record)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for link in links:
        items = [s for s in link if s]
        for item in items:
            parent.setdefault(item, item)
        for other in items[1:]:
            a, b = find(items[0]), find(other)
            if a != b:
                parent[b] = a
    roots = {find(s) for s in seeds if s}
    members = {s for s in parent if find(s) in roots}
    return members | {s for s in seeds if s}
