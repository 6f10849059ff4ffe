"""silver.document: clinical documents from HL7 v2 MDM^T01-T11 (TXA + text OBX) and FHIR DocumentReference.

HL7: one row per document, keyed by the pseudonym of the unique document number TXA-12 (EI.1 with its namespace
EI.2, else EI.3), else by the message and position. Every MDM event about the same document (T03/T04 status
change, T05/T06 addendum, T07/T08 edit, T11 cancel) updates that row: per field the latest message wins. The
body is the OBX segments of value type TX, FT or ST after the TXA, in order, one line per OBX (and per OBX-5
repetition), escapes decoded. A replacement (T09/T10) is a new document (its own TXA-12); its parent TXA-13, when
it is in Silver, becomes ``superseded``.

Statuses follow FHIR DocumentReference: ``status`` (current | superseded | entered-in-error) from TXA-19
availability (HL7 table 0273: AV current, UN current, OB superseded, CA entered-in-error), ``doc_status``
(composition status preliminary | final | amended | entered-in-error) from TXA-17 completion (table 0271: DI, DO,
IN, IP, PA preliminary; AU, LA final; final after an addendum or edit event is amended). T11 (cancel) makes both
entered-in-error.

FHIR: the first ``text/plain`` attachment with inline ``data`` is the text (base64, UTF-8); other attachments
(PDF, images, URLs) are never loaded. Text is PHI: it is stored only scrubbed of the patient's known identifiers
and PHI patterns (``documents_text = deidentified``), or not at all (``exclude``).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.hl7v2 import unescape
from silver.common import (
    FHIR,
    HL7V2,
    Deid,
    collect_lineage,
    fhir_timestamp,
    field,
    first_per_partition,
    flatten,
    latest_value,
    local_time,
    patient_key_or_ref,
    resolve_references,
    source_lineage,
    with_segment_context,
)
from silver.deid import pseudonym, scrub_text
from silver.encounter import hl7_visit_number
from silver.patient import hl7_patient_identity
from silver.service_request import mapped_code
from silver.terminology import normalize_system

TEXT_TYPES = ("TX", "FT", "ST")
V2_DOCUMENT_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0270"
CANCEL = "T11"
AMENDING_EVENTS = ("T05", "T06", "T07", "T08")
REPLACING_EVENTS = ("T09", "T10")
# HL7 table 0273 document availability -> FHIR DocumentReference.status
AVAILABILITY_STATUS = {"AV": "current", "UN": "current", "OB": "superseded", "CA": "entered-in-error"}
# HL7 table 0271 document completion -> FHIR composition status (DocumentReference.docStatus)
COMPLETION_STATUS = {"DI": "preliminary", "DO": "preliminary", "IN": "preliminary", "IP": "preliminary",
                     "PA": "preliminary", "AU": "final", "LA": "final"}

FIELDS = ("patient_key", "encounter_key", "type_code", "type_system", "type_display", "category", "status",
          "doc_status", "content_type", "documented_at", "practitioner_key", "text", "last_event")


def document_identity(number: Column, namespace: Column, fallback: Column) -> Column:
    """What identifies a document: its unique number^namespace (TXA-12 / TXA-13), else ``fallback``."""
    return F.when(number.isNotNull(), F.concat_ws("^", F.lit("document"), F.trim(number),
                                                  F.coalesce(F.trim(namespace), F.lit("")))) \
            .otherwise(F.concat(F.lit("message|"), fallback))


def _txa(segs: DataFrame) -> DataFrame:
    """TXA segments of MDM messages with their raw fields, the closest preceding PID/PV1 and ``document_identity``."""
    mdm = with_segment_context(with_segment_context(segs.filter(F.col("message_type") == "MDM"), "PID", "pid"),
                               "PV1", "pv1")
    msh = mdm.filter(F.col("segment_id") == "MSH").select(
        "content_hash", field(3, decode=False).alias("msh3"), field(4, decode=False).alias("msh4"))
    txa = mdm.filter(F.col("segment_id") == "TXA").select(
        "content_hash", "message_control_id", "segment_index", "trigger_event", "message_ts", "facility_zone",
        "pid_index", "pv1_index", field(2, 1, decode=False).alias("type_code"), field(2, 2).alias("type_display"),
        field(2, 3, decode=False).alias("type_system"), field(4, 1, decode=False).alias("activity_time"),
        field(6, 1, decode=False).alias("origination_time"), field(5, 1, decode=False).alias("provider"),
        field(9, 1, decode=False).alias("originator"), field(12, 1, decode=False).alias("number"),
        F.coalesce(field(12, 2, decode=False), field(12, 3, decode=False)).alias("namespace"),
        field(13, 1, decode=False).alias("parent_number"),
        F.coalesce(field(13, 2, decode=False), field(13, 3, decode=False)).alias("parent_namespace"),
        field(17, decode=False).alias("completion"), field(19, decode=False).alias("availability"))
    txa = txa.join(msh, "content_hash", "left")
    fallback = F.concat_ws("|", F.coalesce("msh3", F.lit("")), F.coalesce("msh4", F.lit("")),
                           F.coalesce("message_control_id", F.lit("")), F.col("segment_index").cast("string"))
    return txa.withColumn("document_identity", document_identity(F.col("number"), F.col("namespace"), fallback))


def hl7_document_identities(segs: DataFrame) -> DataFrame:
    """``document_identity`` of every TXA of the MDM messages (the reconciliation's source count)."""
    return _txa(segs).select("document_identity")


def _text_lines(segs: DataFrame) -> DataFrame:
    """(content_hash, txa_index, body, has_text): the TX/FT/ST OBX values after each TXA, one line per OBX and
    repetition, escapes decoded."""
    mdm = with_segment_context(segs.filter(F.col("message_type") == "MDM"), "TXA", "txa")
    obx = mdm.filter((F.col("segment_id") == "OBX") & F.col("txa_index").isNotNull()).select(
        "content_hash", "txa_index", "segment_index", F.upper(field(2, decode=False)).alias("vtype"),
        F.get(F.col("fields"), 5).alias("raw"), "field_separator", "encoding_characters")
    obx = obx.filter(F.col("vtype").isin(*TEXT_TYPES))
    # repetitions of OBX-5 are lines; split on the raw separator before decoding (\R\ is a literal '~')
    lines = unescape(F.replace(F.col("raw"), F.substring("encoding_characters", 2, 1), F.lit("\n")),
                     F.col("field_separator"), F.col("encoding_characters"))
    obx = obx.select("content_hash", "txa_index", F.struct("segment_index", F.coalesce(lines, F.lit(""))
                                                         .alias("line")).alias("l"))
    return obx.groupBy("content_hash", "txa_index").agg(
        F.array_join(F.transform(F.array_sort(F.collect_list("l")), lambda x: x["line"]), "\n").alias("body"))


def _text(body: Column, deid: Deid) -> Column:
    """The stored text: scrubbed (needs ``known`` joined on patient_key), or NULL under ``documents_text=exclude``."""
    if deid.documents_text == "exclude":
        return F.lit(None).cast("string")
    return scrub_text(F.nullif(body, F.lit("")), F.col("known"))


def hl7_documents(segs: DataFrame, known: DataFrame, deid: Deid) -> DataFrame:
    """One row per TXA of every MDM message, plus a ``superseded`` status row for each replaced parent document
    (:func:`harmonize` keeps those only for documents that are in Silver)."""
    txa = _txa(segs)
    pid = segs.filter((F.col("message_type") == "MDM") & (F.col("segment_id") == "PID")).select(
        "content_hash", F.col("segment_index").alias("pid_index"), hl7_patient_identity().alias("mrn"))
    pv1 = segs.filter((F.col("message_type") == "MDM") & (F.col("segment_id") == "PV1")).select(
        "content_hash", F.col("segment_index").alias("pv1_index"), hl7_visit_number().alias("visit"))
    body = _text_lines(segs).withColumnRenamed("txa_index", "segment_index")
    rows = txa.join(pid, ["content_hash", "pid_index"], "left").join(pv1, ["content_hash", "pv1_index"], "left") \
              .join(body, ["content_hash", "segment_index"], "left") \
              .withColumn("patient_key", pseudonym(F.col("mrn"), deid.key, "patient")) \
              .join(known, "patient_key", "left")
    event = F.upper(F.trim("trigger_event"))
    cancelled = event == CANCEL
    completion = mapped_code(F.col("completion"), COMPLETION_STATUS)
    doc_status = F.when(cancelled, F.lit("entered-in-error")) \
                  .when((completion == "final") & event.isin(*AMENDING_EVENTS), F.lit("amended")) \
                  .otherwise(completion)
    status = F.when(cancelled, F.lit("entered-in-error")).otherwise(mapped_code(F.col("availability"),
                                                                             AVAILABILITY_STATUS))
    system = F.coalesce(normalize_system(F.col("type_system")),
                        F.when(F.col("type_code").isNotNull(), F.lit(V2_DOCUMENT_TYPE)))
    visit = F.when(F.col("pv1_index") > F.coalesce(F.col("pid_index"), F.lit(-1)), F.col("visit"))
    documents = rows.select(
        pseudonym(F.col("document_identity"), deid.key, "document").alias("document_key"), "patient_key",
        pseudonym(visit, deid.key, "encounter").alias("encounter_key"), "type_code",
        system.alias("type_system"), "type_display", F.lit(None).cast("string").alias("category"),
        status.alias("status"), doc_status.alias("doc_status"),
        F.when(F.col("body").isNotNull(), F.lit("text/plain")).alias("content_type"),
        F.coalesce(local_time(F.col("activity_time")),
                   local_time(F.col("origination_time"))).alias("documented_at"),
        pseudonym(F.coalesce("originator", "provider"), deid.key, "practitioner").alias("practitioner_key"),
        _text(F.col("body"), deid).alias("text"), event.alias("last_event"),
        F.col("message_ts").alias("updated_at"), *source_lineage(HL7V2))
    replaced = rows.filter(event.isin(*REPLACING_EVENTS) & F.col("parent_number").isNotNull()).withColumn(
        "parent_identity", document_identity(F.col("parent_number"), F.col("parent_namespace"), F.lit("")))
    replaced = replaced.filter(F.col("parent_identity") != F.col("document_identity"))
    superseded = replaced.select(
        pseudonym(F.col("parent_identity"), deid.key, "document").alias("document_key"),
        *[(F.lit("superseded") if f == "status" else F.lit(None))
          .cast("timestamp" if f == "documented_at" else "string").alias(f) for f in FIELDS],
        F.col("message_ts").alias("updated_at"),
        *source_lineage(HL7V2)).withColumn("supersedes", F.lit(True))
    return documents.withColumn("supersedes", F.lit(False)).unionByName(superseded.select(
        *documents.columns, "supersedes"))


def fhir_documents(resources: DataFrame, patients: DataFrame, encounters: DataFrame, practitioners: DataFrame,
                   known: DataFrame, deid: Deid) -> DataFrame:
    """One row per FHIR DocumentReference: its first text/plain attachment with inline data (else its first)."""
    content = flatten(resources, "document_reference_content").select(
        "id", "content_index", "content_type", "content_data")
    is_text = F.lower(F.trim(F.col("content_type"))).startswith("text/plain") & F.col("content_data").isNotNull()
    content = content.withColumn("_text", F.coalesce(is_text, F.lit(False)))
    content = first_per_partition(content, Window.partitionBy("id").orderBy(F.col("_text").desc(),
                                                                            F.col("content_index")))
    # left join: a reference without content (not valid R4, but sent) is still a document
    d = flatten(resources, "document_reference").join(content, "id", "left") \
        .withColumn("_text", F.coalesce(F.col("_text"), F.lit(False)))
    d = resolve_references(d, patients, encounters, practitioners).join(known, "patient_key", "left")
    # only well-formed base64 is decoded (a bad value must not fail the run), only valid UTF-8 becomes text
    data = F.regexp_replace(F.col("content_data"), r"\s", "")
    raw = F.unbase64(F.when(data.rlike(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"), data))
    body = F.when(F.col("_text") & F.is_valid_utf8(raw), F.decode(F.make_valid_utf8(raw), "UTF-8"))
    return d.select(
        pseudonym(F.col("id"), deid.key, "document").alias("document_key"), patient_key_or_ref(deid),
        "encounter_key", "type_code", normalize_system(F.col("type_system")).alias("type_system"),
        F.coalesce("type_display", "type_text").alias("type_display"), "category", "status", "doc_status",
        "content_type", fhir_timestamp("date").alias("documented_at"), "practitioner_key",
        _text(body, deid).alias("text"), F.lit(None).cast("string").alias("last_event"),
        fhir_timestamp("last_updated").alias("updated_at"), *source_lineage(FHIR),
        F.lit(False).alias("supersedes"))


def harmonize(rows: DataFrame) -> DataFrame:
    """Source rows -> one row per document_key, latest non-null value per field. ``supersedes`` rows (a
    replacement's parent) only update documents that other rows make."""
    made = rows.filter(~F.col("supersedes")).select("document_key").distinct()
    rows = rows.join(made, "document_key", "left_semi")
    out = rows.groupBy("document_key").agg(*[latest_value(f, "updated_at").alias(f) for f in FIELDS],
                                           *collect_lineage())
    return out.withColumn("status", F.coalesce(F.col("status"), F.lit("current")))
