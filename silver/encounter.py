"""silver.encounter: FHIR Encounter and HL7 ADT (PV1/EVN) folded into one row per visit.

``encounter_key = pseudonym(visit number, key, "encounter")`` (FHIR Encounter.identifier of type VN, HL7 PV1-19),
falling back to the FHIR Encounter id. ADT messages without a PV1 visit number (A28 add person, A31 update
person, ...) create no encounter; their PID still updates the patient (silver.patient).

The ADT events of a visit (HL7 v2.3-v2.8) are folded in event-time order: EVN-2 recorded time, else MSH-7 (not
arrival order), ties by message time then content hash (:func:`resolve_adt`, :func:`fold_adt`):

- A01 admit, A04 register, A05 pre-admit, A06 outpatient -> inpatient, A07 inpatient -> outpatient, A08 update, A03
  discharge, ...: per field the latest non-null value wins (``encounter_class`` is PV1-2 of the latest event,
  ``admit_at`` PV1-44, ``discharge_at`` PV1-45, ``discharge_disposition`` PV1-36); ``status`` follows
  ``EVENT_STATUS`` (A05 planned, A04 arrived, A01/A02/A06/A07 in-progress, A03 finished, A21 on leave, ...).
- A02 transfer moves ``location`` (PV1-3.1 point of care; room and bed are not kept) and ``department`` (PV1-10
  hospital service, else the point of care); ``transfer_count`` counts the A02s not cancelled.
- A12 cancel transfer cancels the latest A02 not yet cancelled (nested cancels pair like brackets): that A02 does
  not count, and location and department go back to where the visit was before it (PV1-3 of the A12 when the
  history before the A02 is unknown).
- A11 cancel admit / visit: ``status`` cancelled (the visit stays, marked cancelled); A38 cancel pre-admit too.
- A13 cancel discharge: ``discharge_at`` and ``discharge_disposition`` are cleared (only events after the latest
  A13 may set them again, e.g. a later A03) and ``status`` is in-progress again.
- A14/A15/A16 pending admit/transfer/discharge and A25/A26/A27 cancel pending change no actual status, time,
  location or department: they are counted in ``adt_event_count`` (and fill class/patient/practitioner only
  when no actual event has them).

``last_adt_event`` is the latest event, ``adt_event_count`` the number of ADT messages of the visit;
``transfer_count`` is NULL for a visit known from FHIR only. The stays between transfers are the rows of
silver.encounter_location (:func:`location_history`). FHIR and HL7 rows of one visit then merge per field, the
latest non-null value winning (:func:`harmonize`): a FHIR value fills a field the HL7 fold left empty (for FHIR,
``location`` and ``department`` are both Encounter.location's display); the admission and discharge times are one
pair from one source row, never the admission of one feed with the discharge of the other.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.expressions import code_lookup, let
from silver.common import (
    FHIR,
    HL7V2,
    Deid,
    fhir_timestamp,
    field,
    flatten,
    latest_value,
    local_time,
    merge_lineage,
    patient_key_or_ref,
    record_lineage,
    resolve_references,
    segment_fields,
    with_index_key,
    with_segment_context,
)
from silver.deid import pseudonym
from silver.identity import VISIT_ID_TYPES, canonical_authority, hl7_identity, identity
from silver.patient import hl7_patient_identity

FIELDS = ("patient_key", "encounter_class", "type_code", "type_system", "type_display", "status", "admit_at",
          "discharge_at", "department", "location", "organization_key", "practitioner_key", "admission_type",
          "admit_source", "discharge_disposition", "reason_code", "reason_system", "transfer_count")

# HL7 PV1-2 and FHIR v3 ActCode class codes -> the class words of silver.encounter
CLASS_WORDS = {"I": "inpatient", "IMP": "inpatient", "ACUTE": "inpatient", "NONAC": "inpatient",
               "E": "emergency", "EMER": "emergency", "O": "outpatient", "AMB": "outpatient",
               "OBSENC": "observation", "P": "pre-admission", "PRENC": "pre-admission", "R": "recurring",
               "B": "obstetrics", "VR": "virtual", "HH": "home-health", "SS": "short-stay"}
# ADT trigger -> encounter status it implies (A08 updates, A12 cancel transfer and others imply none; a cancelled
# A02 implies nothing either, see fold_adt)
EVENT_STATUS = {"A01": "in-progress", "A02": "in-progress", "A03": "finished", "A04": "arrived",
                "A05": "planned", "A06": "in-progress", "A07": "in-progress", "A11": "cancelled",
                "A13": "in-progress", "A21": "onleave", "A22": "in-progress", "A38": "cancelled"}
# pending events and their cancellations: counted, but they change no actual status, time or place
PENDING_EVENTS = ("A14", "A15", "A16", "A25", "A26", "A27")
TRANSFER, CANCEL_TRANSFER, CANCEL_DISCHARGE = "A02", "A12", "A13"


def _mapped(col: Column, mapping: dict[str, str]) -> Column:
    """The mapped word of a code, else the code itself in lower case."""
    return let(col, lambda c: F.coalesce(code_lookup(c, mapping), F.lower(F.trim(c))))


def encounter_class(col: Column) -> Column:
    return _mapped(col, CLASS_WORDS)


def fhir_encounter_index(resources: DataFrame, deid: Deid) -> DataFrame:
    """(fhir_id, encounter_key) for every FHIR Encounter: resolves ``Encounter/<id>`` references."""
    e = flatten(resources, "encounter")
    # the visit number: value and system of the first identifier whose own type is VN (one element in the view),
    # qualified by its authority as HL7 PV1-19 is; an Encounter without one is keyed by its resource id
    visit = identity(canonical_authority(F.col("visit_number_system")), F.col("visit_number"))
    return e.select(F.col("id").alias("fhir_id"),
                    pseudonym(F.coalesce(visit, F.col("id")), deid.key, "encounter").alias("encounter_key"))


def fhir_encounters(resources: DataFrame, patients: DataFrame, encounters: DataFrame, practitioners: DataFrame,
                    deid: Deid) -> DataFrame:
    """FHIR Encounter rows. ``patients``/``encounters``/``practitioners`` are (fhir_id, <x>_key) indexes."""
    e = with_index_key(flatten(resources, "encounter"), encounters)
    e = resolve_references(e, patients, practitioners=practitioners)
    return e.select(
        "encounter_key", patient_key_or_ref(deid),
        encounter_class(F.col("class_code")).alias("encounter_class"), "type_code", "type_system", "type_display",
        "status", fhir_timestamp("period_start").alias("admit_at"), fhir_timestamp("period_end").alias("discharge_at"),
        "department", F.col("department").alias("location"),
        pseudonym(F.col("organization_ref"), deid.key, "organization").alias("organization_key"),
        "practitioner_key", F.upper(F.trim("admission_type")).alias("admission_type"), "admit_source",
        "discharge_disposition", "reason_code", "reason_system", F.lit(None).cast("int").alias("transfer_count"),
        F.lit(None).cast("string").alias("last_adt_event"),
        F.lit(None).cast("int").alias("adt_event_count"), fhir_timestamp("last_updated").alias("updated_at"),
        *record_lineage(FHIR))


def hl7_visit_number() -> Column:
    """The visit's identity (``<authority>|<visit number>``, :mod:`silver.identity`) from PV1-19: VN-typed, else
    untyped."""
    return hl7_identity(19, VISIT_ID_TYPES, never=())


def hl7_adt_events(segs: DataFrame, deid: Deid) -> DataFrame:
    """One row per ADT message with a PV1 visit number: the event, its time, the PV1 values (raw codes, UTC times).

    The PV1 pairs with the PID before it. ``event_at`` (EVN-2 recorded time, else MSH-7) orders the events;
    ``occurred_at`` (EVN-6 event occurred, else the event time) dates the stays of silver.encounter_location.
    ORU PV1 segments only link results (see silver.observation).
    """
    adt = with_segment_context(segs.filter(F.col("message_type") == "ADT"), "PID", "pid")
    pid = segment_fields(adt, "PID", {"mrn": hl7_patient_identity()}) \
        .select("content_hash", F.col("segment_index").alias("pid_index"), "mrn")
    evn = segment_fields(adt, "EVN", {"evn_type": field(1, decode=False), "recorded": field(2, 1, decode=False),
                                      "occurred": field(6, 1, decode=False)}) \
        .groupBy("content_hash").agg(F.min("evn_type").alias("evn_type"), F.min("recorded").alias("recorded"),
                                     F.min("occurred").alias("occurred"))
    pv1 = segment_fields(adt, "PV1", {
        "visit": hl7_visit_number(), "pid_index": F.col("pid_index"), "class_code": field(2, decode=False),
        "location": field(3, 1), "admission_type": field(4, decode=False), "service": field(10, decode=False),
        "admit": field(44, 1, decode=False),
        "discharge": field(45, 1, decode=False), "attending": field(7, 1, decode=False),
        "admit_source": field(14, decode=False), "disposition": field(36, decode=False),
    }).filter(F.col("visit").isNotNull())
    rows = pv1.join(pid, ["content_hash", "pid_index"], "left").join(evn, "content_hash", "left")
    event = F.upper(F.trim(F.coalesce(F.col("trigger_event"), F.col("evn_type"))))
    status = _mapped(event, EVENT_STATUS)
    event_at = F.coalesce(local_time(F.col("recorded")), F.col("message_ts"))
    return rows.select(
        pseudonym(F.col("visit"), deid.key, "encounter").alias("encounter_key"),
        pseudonym(F.col("mrn"), deid.key, "patient").alias("patient_key"), event.alias("adt_event"),
        event_at.alias("event_at"),
        F.coalesce(local_time(F.col("occurred")), event_at).alias("occurred_at"),
        "message_ts", encounter_class(F.col("class_code")).alias("encounter_class"),
        F.when(status.isin(*EVENT_STATUS.values()), status).alias("_status"), "location",
        F.trim("service").alias("service"),
        local_time(F.col("admit")).alias("admit_at"),
        local_time(F.col("discharge")).alias("discharge_at"),
        pseudonym(F.col("attending"), deid.key, "practitioner").alias("practitioner_key"),
        F.upper(F.trim("admission_type")).alias("admission_type"), "admit_source",
        F.col("disposition").alias("discharge_disposition"), "content_hash")


def _last(value: Column | str, when: Column | None = None) -> Column:
    """Aggregate: the non-null ``value`` of the latest event (``_pos``) where ``when`` holds."""
    v = F.col(value) if isinstance(value, str) else value
    keep = v.isNotNull() if when is None else (v.isNotNull() & when)
    return F.max(F.when(keep, F.struct(F.col("_pos").alias("p"), v.alias("v"))))["v"]


def resolve_adt(events: DataFrame) -> DataFrame:
    """ADT events (:func:`hl7_adt_events`) in event order with what each one means once cancellations are undone.

    Adds ``_pos`` (1.. per visit in event-time order), ``_actual`` (neither a pending event nor an A02 that an A12
    cancelled), ``_after_a13`` (after the visit's latest A13), and the effective ``_location``/``_service`` (an A12
    puts back the place of the visit before the A02 it cancels).
    """
    order = Window.partitionBy("encounter_key").orderBy(
        F.col("event_at").asc_nulls_first(), F.col("message_ts").asc_nulls_first(), F.col("content_hash"))
    running = order.rowsBetween(Window.unboundedPreceding, 0)
    pending = F.col("adt_event").isin(*PENDING_EVENTS)
    step = F.when(F.col("adt_event") == TRANSFER, 1).when(F.col("adt_event") == CANCEL_TRANSFER, -1).otherwise(0)
    ev = events.withColumn("_pos", F.row_number().over(order)) \
               .withColumn("_depth", F.sum(step).over(running)) \
               .withColumn("_last_a13", F.max(F.when(F.col("adt_event") == CANCEL_DISCHARGE, F.col("_pos")))
                           .over(Window.partitionBy("encounter_key")))
    # an A12 cancels the latest A02 before it whose depth (A02s minus A12s so far) is one more than its own
    a02 = ev.filter(F.col("adt_event") == TRANSFER).select(
        "encounter_key", F.col("_pos").alias("_a02_pos"), F.col("_depth").alias("_a02_depth"))
    a12 = ev.filter(F.col("adt_event") == CANCEL_TRANSFER).select("encounter_key", "_pos", "_depth")
    matched = a12.join(a02, "encounter_key") \
        .filter((F.col("_a02_pos") < F.col("_pos")) & (F.col("_a02_depth") == F.col("_depth") + 1)) \
        .groupBy("encounter_key", "_pos").agg(F.max("_a02_pos").alias("_cancels"))
    cancelled = matched.select("encounter_key", F.col("_cancels").alias("_pos"), F.lit(True).alias("_cancelled"))
    # where the visit was before the cancelled A02: the latest place of the actual events before it
    before = ev.filter(~pending & (F.col("adt_event") != CANCEL_TRANSFER)) \
        .join(cancelled, ["encounter_key", "_pos"], "left_anti") \
        .select("encounter_key", F.col("_pos").alias("_p"), "location", "service")
    restored = matched.join(before, "encounter_key").filter(F.col("_p") < F.col("_cancels")) \
        .groupBy("encounter_key", "_pos").agg(
            F.max(F.when(F.col("location").isNotNull(), F.struct(F.col("_p"), F.col("location"))))["location"]
            .alias("_restored_location"),
            F.max(F.when(F.col("service").isNotNull(), F.struct(F.col("_p"), F.col("service"))))["service"]
            .alias("_restored_service"))
    ev = ev.join(cancelled, ["encounter_key", "_pos"], "left").join(restored, ["encounter_key", "_pos"], "left")
    is_a12 = F.col("adt_event") == CANCEL_TRANSFER
    return ev.select(
        *events.columns, "_pos", (~pending & F.col("_cancelled").isNull()).alias("_actual"),
        (F.col("_pos") > F.coalesce(F.col("_last_a13"), F.lit(0))).alias("_after_a13"),
        F.when(is_a12, F.coalesce("_restored_location", "location")).otherwise(F.col("location")).alias("_location"),
        F.when(is_a12, F.coalesce("_restored_service", "service")).otherwise(F.col("service")).alias("_service"))


def fold_adt(resolved: DataFrame) -> DataFrame:
    """Resolved ADT events (:func:`resolve_adt`) -> one row per visit (see the module docstring)."""
    actual, not_pending = F.col("_actual"), ~F.col("adt_event").isin(*PENDING_EVENTS)
    # a discharge an A13 cancelled is gone: only events after the latest A13 (not the A13 itself) may set it
    discharged = actual & F.col("_after_a13")
    return resolved.groupBy("encounter_key").agg(
        F.coalesce(_last("patient_key", not_pending), _last("patient_key")).alias("patient_key"),
        F.coalesce(_last("encounter_class", actual), _last("encounter_class")).alias("encounter_class"),
        _last("_status", actual).alias("status"),
        _last("admit_at", actual).alias("admit_at"),
        _last("discharge_at", discharged).alias("discharge_at"),
        _last("discharge_disposition", discharged).alias("discharge_disposition"),
        F.coalesce(_last("_service", actual), _last("_location", actual)).alias("department"),
        _last("_location", actual).alias("location"),
        F.coalesce(_last("practitioner_key", actual), _last("practitioner_key")).alias("practitioner_key"),
        F.coalesce(_last("admission_type", actual), _last("admission_type")).alias("admission_type"),
        F.coalesce(_last("admit_source", actual), _last("admit_source")).alias("admit_source"),
        F.count(F.when((F.col("adt_event") == TRANSFER) & actual, True)).cast("int").alias("transfer_count"),
        _last("adt_event").alias("last_adt_event"), F.count("*").cast("int").alias("adt_event_count"),
        F.max("event_at").alias("updated_at"), F.array(F.lit(HL7V2)).alias("sources"),
        F.collect_set("content_hash").alias("bronze_hashes"))


def hl7_encounters(resolved: DataFrame) -> DataFrame:
    """One row per HL7 visit: its resolved ADT events (:func:`resolve_adt`) folded (:func:`fold_adt`), in the
    shape of :func:`fhir_encounters`."""
    folded = fold_adt(resolved)
    nothing = F.lit(None).cast("string")
    return folded.select(
        "encounter_key", "patient_key", "encounter_class", nothing.alias("type_code"), nothing.alias("type_system"),
        nothing.alias("type_display"), "status", "admit_at", "discharge_at", "department", "location",
        nothing.alias("organization_key"), "practitioner_key", "admission_type", "admit_source",
        "discharge_disposition",
        nothing.alias("reason_code"), nothing.alias("reason_system"), "transfer_count", "last_adt_event",
        "adt_event_count", "updated_at", "sources", "bronze_hashes")


def location_history(resolved: DataFrame) -> DataFrame:
    """silver.encounter_location: one row per stay of an HL7 visit in one place (location and department).

    A stay starts at each actual event (:func:`resolve_adt`) that puts the visit somewhere else than the event
    before it (an A02, or the first event with a place); a cancelled transfer leaves no stay. ``start_at`` is the
    event's occurrence (EVN-6, else its event time), the first stay's the visit's admission (PV1-44) if earlier;
    ``end_at`` is the next stay's start, the last stay's the visit's discharge (NULL while in the house).
    """
    order = Window.partitionBy("encounter_key").orderBy("_pos")
    so_far = order.rowsBetween(Window.unboundedPreceding, 0)
    placed = resolved.filter(F.col("_actual")) \
        .withColumn("_loc", F.last("_location", ignorenulls=True).over(so_far)) \
        .withColumn("_svc", F.last("_service", ignorenulls=True).over(so_far)) \
        .filter(F.col("_loc").isNotNull() | F.col("_svc").isNotNull())
    changed = ~(F.lag("_loc").over(order).eqNullSafe(F.col("_loc"))
                & F.lag("_svc").over(order).eqNullSafe(F.col("_svc"))) | F.lag("_pos").over(order).isNull()
    stays = placed.withColumn("_changed", changed).filter("_changed") \
        .withColumn("sequence", F.row_number().over(order).cast("int"))
    visit = fold_adt(resolved).select("encounter_key", F.col("patient_key").alias("_patient"),
                                      F.col("admit_at").alias("_admit"), F.col("discharge_at").alias("_discharge"))
    # an admission (PV1-44) recorded later than it happened opens the first stay; a planned one does not
    first = F.least(F.coalesce("_admit", "occurred_at"), F.col("occurred_at"))
    start = F.when(F.col("sequence") == 1, first).otherwise(F.col("occurred_at"))
    by_seq = Window.partitionBy("encounter_key").orderBy("sequence")
    return stays.join(visit, "encounter_key").withColumn("start_at", start).select(
        "encounter_key", "sequence", F.col("_patient").alias("patient_key"), F.col("_loc").alias("location"),
        F.coalesce("_svc", "_loc").alias("department"), "start_at",
        F.coalesce(F.lead("start_at").over(by_seq), F.col("_discharge")).alias("end_at"),
        F.col("adt_event").alias("start_event"), F.array(F.lit(HL7V2)).alias("sources"),
        F.array("content_hash").alias("bronze_hashes"))


# taken together from one source row (harmonize): a stay's admission and discharge from one feed, never the
# admission of one and the discharge of the other
PERIOD = ("admit_at", "discharge_at")


def harmonize(rows: DataFrame) -> DataFrame:
    """FHIR rows and folded HL7 visits -> one row per encounter_key, the latest non-null value per field; the
    period (admit_at and discharge_at) as a pair from the latest row that has an admission time (its discharge may
    be NULL: that source says the patient is still in the house), else from the latest row with a discharge."""
    tiebreak = F.array_join(F.array_sort("bronze_hashes"), ",")
    period = F.struct(*[F.col(c).alias(c) for c in PERIOD])
    # the latest row with an admission; only when no row has one, the latest row with a discharge
    pair = F.coalesce(
        latest_value(F.when(F.col("admit_at").isNotNull(), period), "updated_at", tiebreak),
        latest_value(F.when(F.col("discharge_at").isNotNull(), period), "updated_at", tiebreak))
    return rows.groupBy("encounter_key").agg(
        *[latest_value(f, "updated_at", tiebreak).alias(f) for f in FIELDS if f not in PERIOD],
        pair["admit_at"].alias("admit_at"), pair["discharge_at"].alias("discharge_at"),
        latest_value("last_adt_event", "updated_at", tiebreak).alias("last_adt_event"),
        F.coalesce(F.sum("adt_event_count"), F.lit(0)).cast("int").alias("adt_event_count"), *merge_lineage())


def event_end() -> Column:
    """The latest time of an encounter row (admission or discharge) in epoch microseconds: the end of the data is
    its maximum over all encounters."""
    return F.greatest(F.unix_micros("admit_at"), F.unix_micros("discharge_at"))


def latest_events(encounters: DataFrame) -> DataFrame:
    """(patient_key, data_end): each patient's latest encounter time (:func:`event_end`); patients without one are
    left out."""
    return encounters.groupBy("patient_key").agg(F.max(event_end()).alias("data_end")) \
                     .filter(F.col("data_end").isNotNull())


def with_intervals(encounters: DataFrame, birth_dates: DataFrame, data_end_floor: int | None = None) -> DataFrame:
    """The durations analytics need, from the TRUE times (before the job de-identifies the dates), as integers.

    They are the same numbers under both de-identification profiles, so Gold's length of stay and readmissions do
    not depend on whether dates are shifted or reduced to the year. ``birth_dates`` is (patient_key, birth_date)
    of the true birth dates. Added columns:

    - ``length_of_stay_hours`` / ``length_of_stay_days``: whole hours / whole 24 h periods from admission to
      discharge (NULL when either is unknown or the discharge is before the admission);
    - ``age_at_admission``: whole years at admission, 90 for every age over 89 (the 90+ category);
    - ``stay_sequence``: 1.. over the patient's encounters with an admission time, in true admission order (ties
      by encounter_key);
    - ``days_since_previous_discharge``: whole 24 h periods from the discharge of the patient's previous stay
      (``stay_sequence - 1``) to this admission (negative when the stays overlap);
    - ``admit_offset_seconds`` / ``discharge_offset_seconds``: seconds from the patient's first admission (the
      anchor itself is never published) to this admission / discharge: any interval between two events of one
      patient (days to the next inpatient admission) is their difference;
    - ``has_30_day_follow_up``: the data reach at least 30 x 24 h past this discharge (the end of the data is the
      latest admission or discharge of any encounter); an index stay without it is censored for 30-day
      readmission, not "not readmitted". Only the flag is published: the number of days to the end of the data
      would give away the true discharge date, and so the patient's date shift. ``data_end_floor`` (epoch
      microseconds): the end of the data is at least this (the end over the patients an incremental run leaves
      alone).
    """
    admit, discharge = F.unix_micros("admit_at"), F.unix_micros("discharge_at")
    micros = F.when(discharge >= admit, discharge - admit)
    by_patient = Window.partitionBy("patient_key")
    order = by_patient.orderBy(F.col("admit_at").asc_nulls_last(), "encounter_key")
    admitted = F.col("admit_at").isNotNull()
    anchor = F.min(admit).over(by_patient)
    age = F.floor(F.months_between(F.to_date("admit_at"), F.col("_birth_date")) / 12).cast("int")
    births = birth_dates.select("patient_key", F.col("birth_date").alias("_birth_date")).dropDuplicates(["patient_key"])
    data_end = encounters.agg(F.greatest(F.max(event_end()), F.lit(data_end_floor).cast("long")).alias("_data_end"))
    out = encounters.join(births, "patient_key", "left").crossJoin(data_end) \
        .withColumn("stay_sequence", F.when(admitted, F.row_number().over(order)).cast("int")) \
        .withColumn("_previous_discharge", F.when(admitted, F.lag(discharge).over(order)))
    return out.withColumns({
        "length_of_stay_hours": F.floor(micros / 3_600_000_000).cast("int"),
        "length_of_stay_days": F.floor(micros / 86_400_000_000).cast("int"),
        "age_at_admission": F.when(age >= 90, F.lit(90)).when(age >= 0, age).cast("int"),
        "days_since_previous_discharge": F.floor((admit - F.col("_previous_discharge")) / 86_400_000_000).cast("int"),
        "admit_offset_seconds": F.floor((admit - anchor) / 1_000_000).cast("long"),
        "discharge_offset_seconds": F.floor((discharge - anchor) / 1_000_000).cast("long"),
        "has_30_day_follow_up": F.when(discharge.isNotNull(), F.col("_data_end") - discharge >= 30 * 86_400_000_000),
    }).drop("_birth_date", "_previous_discharge", "_data_end")
