"""silver.patient: FHIR Patient and HL7 PID harmonized on the MRN pseudonym; the patient index for other domains.

``patient_key = pseudonym(<assigning authority>|<MRN>, key, "patient")``: the identifier and its canonical authority
picked by one fallback order for HL7 PID-3 and FHIR Patient.identifier (MR, then MRT, PI, PT, then untyped; never an
SSN, account number or other type), see :mod:`silver.identity`. A record with no usable identifier has no key and is
quarantined (the FHIR Patient id is no identifier of the patient outside its server). Attributes: the latest
non-null value across sources wins (FHIR meta.lastUpdated vs HL7 message time). Every message's PID counts,
whatever its event: ADT A28 add person, A31 update person and A08 update reach the patient here even without a
PV1 (they create no encounter).

Merges (:func:`patient_merges`, :func:`apply_merges`): ADT A40 merge patient (PID-3 = the surviving patient,
MRG-1 = the prior MRN) and the identifier changes that work the same way (A47 change identifier, and A18, A30,
A34, A36, A39, A46 of v2.3-v2.6) re-key every Silver row of the prior patient to the survivor in every domain
(``silver.job`` applies them before the date policy, so the survivor's date shift applies). A41 merge account and
A44 move account change account numbers only, which Silver does not keep: nothing to re-key. A45 move visit
needs no merge: its PID/PV1 move the visit (silver.encounter takes the latest patient of a visit).
Dates are real here; ``silver.job`` applies the date policy.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window, WindowSpec
from pyspark.sql import functions as F

from silver.common import (
    FHIR,
    HL7V2,
    Deid,
    collect_lineage,
    cx_typed,
    fhir_date,
    fhir_timestamp,
    field,
    flatten,
    invalid_values,
    latest_value,
    local_time,
    segment_fields,
    source_lineage,
    with_index_key,
    with_segment_context,
)
from silver.deid import (
    birth_date_90plus_rule,
    birth_year_90plus_rule,
    generalize_zip3,
    is_90_plus,
    known_identifiers,
    known_identifiers_from_arrays,
    pseudonym,
)
from silver.identity import fhir_identities, hl7_identity
from silver.terminology import map_gender

KNOWN_TYPE = "array<struct<kind:string,value:string>>"
# ADT events whose MRG-1 names a prior patient identifier that the PID before it replaces
MERGE_EVENTS = ("A18", "A30", "A34", "A36", "A39", "A40", "A46", "A47")
# the longest chain of merges resolved (A -> B -> C is two hops)
MERGE_HOPS = 16
ATTRIBUTES = ("gender", "birth_date", "postal_code", "state", "country", "deceased", "deceased_date", "race",
              "ethnicity", "marital_status", "language", "insurance")


# ISO 3166 alpha-3 codes (HL7 table 0399, often in PID-11.6) of the alpha-2 codes FHIR feeds usually send: one
# country is one value whichever source sent it (else a patient's history would change with the source)
COUNTRY_ALPHA3 = {"USA": "US", "CAN": "CA", "MEX": "MX", "GBR": "GB", "DEU": "DE", "FRA": "FR", "PRI": "PR"}


def country_code(col: Column) -> Column:
    """A country as sent, trimmed and upper-cased, with the alpha-3 codes of :data:`COUNTRY_ALPHA3` as alpha-2."""
    code = F.upper(F.trim(col))
    out = code
    for alpha3, alpha2 in COUNTRY_ALPHA3.items():
        out = F.when(code == alpha3, F.lit(alpha2)).otherwise(out)
    return F.when(code != "", out)


def fhir_patient_index(resources: DataFrame, deid: Deid) -> DataFrame:
    """(fhir_id, mrn, patient_key) for every FHIR Patient: resolves ``Patient/<id>`` references. ``mrn`` is the
    patient's identity (:mod:`silver.identity`); NULL, and so is the key, when no identifier is usable."""
    mrn = fhir_identities(flatten(resources, "patient_identifier")).select(F.col("id").alias("fhir_id"),
                                                                           F.col("identity").alias("mrn"))
    pats = flatten(resources, "patient").select(F.col("id").alias("fhir_id"))
    return (pats.join(mrn, "fhir_id", "left")
            .withColumn("patient_key", pseudonym(F.col("mrn"), deid.key, "patient")))


FHIR_GENDERS = ("male", "female", "other", "unknown")  # AdministrativeGender


def fhir_patients(resources: DataFrame, index: DataFrame) -> DataFrame:
    """One row per FHIR Patient (latest version) with raw attributes, ``updated_at``, lineage."""
    p = with_index_key(flatten(resources, "patient"), index)
    return p.select(
        "patient_key", F.col("gender"), fhir_date("birth_date").alias("birth_date"),
        F.col("postal_code"), F.col("state"), country_code(F.col("country")).alias("country"),
        F.coalesce(F.col("deceased_boolean"), F.col("deceased_datetime").isNotNull()).alias("deceased"),
        fhir_date("deceased_datetime").alias("deceased_date"),
        F.lit(None).cast("string").alias("race"), F.lit(None).cast("string").alias("ethnicity"),
        F.col("marital_status"), F.col("language"), F.lit(None).cast("string").alias("insurance"),
        fhir_timestamp("last_updated").alias("updated_at"), *source_lineage(FHIR),
        invalid_values(
            birthDate=F.col("birth_date").isNotNull() & fhir_date("birth_date").isNull(),
            gender=F.col("gender").isNotNull() & ~F.col("gender").isin(*FHIR_GENDERS),
            deceasedDateTime=F.col("deceased_datetime").isNotNull() & fhir_timestamp("deceased_datetime").isNull()))


def hl7_patient_identity() -> Column:
    """The identity (``<authority>|<id>``, :mod:`silver.identity`) of a PID segment's patient, from PID-3; NULL
    when no identifier is usable."""
    return hl7_identity(3)


def hl7_mrn_value() -> Column:
    """The MRN as sent (MR-typed PID-3 repetition, else the first PID-3 ID): a known identifier to scrub."""
    return F.coalesce(cx_typed(3, "MR"), field(3, 1, 1, decode=False))


def patient_merges(segs: DataFrame, deid: Deid) -> DataFrame:
    """(prior_patient_key, patient_key): the survivor of every merged-away patient (ADT A40, A47, ...).

    Each MRG pairs with the PID before it (a message may carry several PID/MRG groups). The prior MRN is the
    identity of MRG-1 (the same fallback order as PID-3), the survivor's that of the PID (:func:`hl7_patient_identity`).
    Merges are ordered by event time (EVN-2, else MSH-7). The latest merge of a prior key wins; a merge is void
    when its prior patient is the survivor of a later merge (it was split off and merged back the other way);
    chains resolve to the last survivor (A -> B -> C: A -> C); self-merges are ignored.
    """
    msgs = segs.filter((F.col("message_type") == "ADT") & F.col("trigger_event").isin(*MERGE_EVENTS))
    ctx = with_segment_context(msgs, "PID", "pid")
    pid = segment_fields(ctx, "PID", {"mrn": hl7_patient_identity()}) \
        .select("content_hash", F.col("segment_index").alias("pid_index"), "mrn")
    mrg = segment_fields(ctx, "MRG", {
        "prior": hl7_identity(1), "pid_index": F.col("pid_index"),
    })
    evn = segment_fields(msgs, "EVN", {"recorded": field(2, 1, decode=False)}) \
        .groupBy("content_hash").agg(F.min("recorded").alias("recorded"))
    pairs = mrg.join(pid, ["content_hash", "pid_index"]).join(evn, "content_hash", "left").select(
        pseudonym(F.col("prior"), deid.key, "patient").alias("prior_patient_key"),
        pseudonym(F.col("mrn"), deid.key, "patient").alias("patient_key"),
        F.coalesce(local_time(F.col("recorded")), F.col("message_ts")).alias("merged_at"),
        "content_hash").filter(F.col("prior_patient_key") != F.col("patient_key"))
    order = F.struct(F.coalesce("merged_at", F.lit("0001-01-01").cast("timestamp")).alias("t"),
                     F.col("content_hash").alias("h"))
    latest = pairs.groupBy("prior_patient_key").agg(F.max(F.struct(order.alias("o"), "patient_key")).alias("m")) \
        .select("prior_patient_key", F.col("m.patient_key").alias("patient_key"), F.col("m.o").alias("o"))
    # a prior patient that later survived another merge is no longer merged away (this also breaks cycles)
    survived = pairs.groupBy(F.col("patient_key").alias("prior_patient_key")).agg(F.max(order).alias("survived"))
    edges = latest.join(survived, "prior_patient_key", "left") \
        .filter(F.col("survived").isNull() | (F.col("survived") < F.col("o"))) \
        .select("prior_patient_key", "patient_key")
    # the merges are few: one map of them all, followed hop by hop (one scan of the segments, not one per hop)
    survivor_of = edges.agg(F.map_from_entries(F.collect_list(F.struct("prior_patient_key", "patient_key")))
                            .alias("_survivor_of"))
    hops = F.sequence(F.lit(1), F.lit(MERGE_HOPS))
    final = F.aggregate(hops, F.col("patient_key"), lambda key, _: F.coalesce(F.col("_survivor_of")[key], key))
    return edges.crossJoin(survivor_of).select("prior_patient_key", final.alias("patient_key")) \
                .filter(F.col("prior_patient_key") != F.col("patient_key"))


def apply_merges(df: DataFrame, merges: DataFrame) -> DataFrame:
    """``df`` with ``patient_key`` replaced by the survivor where :func:`patient_merges` merged it away."""
    survivors = F.broadcast(merges.select(F.col("prior_patient_key").alias("_prior"),
                                          F.col("patient_key").alias("_survivor")))
    return df.join(survivors, F.col("patient_key") == F.col("_prior"), "left") \
             .withColumn("patient_key", F.coalesce(F.col("_survivor"), F.col("patient_key"))) \
             .select(*df.columns)


def pid_fields(segs: DataFrame) -> DataFrame:
    """PID segments, their raw fields as columns (step one of two, see ``silver.common.field``); ``mrn`` is the
    patient's identity, NULL when PID-3 has no usable identifier (the record is quarantined)."""
    return segment_fields(segs, "PID", {
        "mrn": hl7_patient_identity(), "gender": field(8, decode=False), "birth": field(7, 1, decode=False),
        "postal_code": field(11, 5), "state": field(11, 4), "country": field(11, 6),
        "death": field(29, 1, decode=False), "death_flag": field(30, decode=False),
        "race_text": field(10, 2), "race_code": field(10, 1, decode=False), "ethnicity_text": field(22, 2),
        "ethnicity_code": field(22, 1, decode=False), "marital_status": field(16, 1, decode=False),
        "language": field(15, 1, decode=False),
    })


def hl7_patients(segs: DataFrame, deid: Deid) -> DataFrame:
    """One row per PID segment of every (deduplicated) message, same shape as :func:`fhir_patients`."""
    pid = pid_fields(segs)
    flag = F.upper(F.col("death_flag"))
    return pid.select(
        pseudonym(F.col("mrn"), deid.key, "patient").alias("patient_key"), "gender",
        F.to_date(F.try_to_timestamp(F.substring("birth", 1, 8), F.lit("yyyyMMdd"))).alias("birth_date"),
        "postal_code", "state", country_code(F.col("country")).alias("country"),
        F.when(flag == "Y", True).when(flag == "N", False).when(F.col("death").isNotNull(), True).alias("deceased"),
        F.to_date(local_time(F.col("death"))).alias("deceased_date"),
        F.coalesce("race_text", "race_code").alias("race"),
        F.coalesce("ethnicity_text", "ethnicity_code").alias("ethnicity"), "marital_status", "language",
        F.lit(None).cast("string").alias("insurance"), F.col("message_ts").alias("updated_at"),
        *source_lineage(HL7V2))


def harmonize(rows: DataFrame, per_record: bool = False) -> DataFrame:
    """Source rows -> one row per patient_key: latest non-null value per attribute; all sources and hashes.

    ``per_record``: one row per (patient_key, source record) instead, for records quarantined on their own."""
    aggs = [latest_value(a, "updated_at").alias(a) for a in ATTRIBUTES]
    invalid = F.coalesce(F.col("invalid"), F.array().cast("array<string>")) if "invalid" in rows.columns \
        else F.array().cast("array<string>")
    return rows.groupBy("patient_key", *(["content_hash"] if per_record else [])).agg(
        *aggs, F.max("updated_at").alias("source_updated_at"), *collect_lineage(),
        F.array_distinct(F.flatten(F.collect_list(invalid))).alias("invalid"))


def deidentify(patients: DataFrame, as_of: Column | None = None) -> DataFrame:
    """De-identified shape of silver.patient: ZIP3, 90+ (dates still real: the job applies the date policy)."""
    ref = as_of if as_of is not None else F.current_date()
    over_89 = is_90_plus(F.col("birth_date"), F.coalesce(F.col("deceased_date"), ref))
    ref_date = F.coalesce(F.col("deceased_date"), ref)
    return patients.select(
        "patient_key", map_gender(F.col("gender")).alias("gender"),
        birth_date_90plus_rule(F.col("birth_date"), ref_date).alias("birth_date"),
        birth_year_90plus_rule(F.col("birth_date"), ref_date).alias("birth_year"),
        F.coalesce(over_89, F.lit(False)).alias("is_age_90_plus"),
        generalize_zip3(F.col("postal_code")).alias("zip3"), "state", "country",
        F.coalesce(F.col("deceased"), F.lit(False)).alias("deceased"), "deceased_date", "race", "ethnicity",
        "marital_status", "language", "insurance", "source_updated_at", "sources", "bronze_hashes",
        *[c for c in ("invalid",) if c in patients.columns])


def fhir_known_identifiers(resources: DataFrame, index: DataFrame) -> DataFrame:
    """(patient_key, known) from FHIR Patient: names, identifiers, telecom, address parts (to scrub free text)."""
    p = with_index_key(flatten(resources, "patient"), index)
    names = p.select("patient_key", known_identifiers_from_arrays(
        NAME=F.concat(F.coalesce("family_names", F.array().cast("array<string>")),
                      F.coalesce("given_names", F.array().cast("array<string>"))),
        ADDRESS=F.concat(F.coalesce("address_lines", F.array().cast("array<string>")),
                         F.coalesce("cities", F.array().cast("array<string>")))).alias("known"))
    ids = with_index_key(flatten(resources, "patient_identifier"), index)
    kind = F.when(F.upper("kind") == "MR", "MRN").when(F.upper("kind") == "SS", "SSN") \
            .when((F.col("kind") == "telecom") & (F.col("system") == "email"), "EMAIL") \
            .when((F.col("kind") == "telecom") & (F.col("system").isin("phone", "fax", "sms")), "PHONE") \
            .otherwise("ID")
    other = ids.select("patient_key", F.array(F.struct(kind.alias("kind"), F.col("value").cast("string")
                                                       .alias("value"))).alias("known"))
    return names.unionByName(other)


def hl7_known_identifiers(segs: DataFrame, deid: Deid) -> DataFrame:
    """(patient_key, known) from HL7 PID: names, MRN, SSN, phones, e-mail, address parts."""
    pid = segment_fields(segs, "PID", {
        "mrn": hl7_patient_identity(), "mrn_value": hl7_mrn_value(), "family": field(5, 1), "given": field(5, 2),
        "middle": field(5, 3),
        "maiden": field(6, 1), "alias": field(9, 1), "ssn": field(19, decode=False),
        "phone1": field(13, 1, 1, decode=False), "phone2": field(13, 1, 2, decode=False),
        "phone3": field(14, 1, 1, decode=False), "email1": field(13, 4, 1, decode=False),
        "email2": field(13, 4, 2, decode=False), "street": field(11, 1), "city": field(11, 3),
    }).filter(F.col("mrn").isNotNull())
    known = known_identifiers(
        NAME=[F.col(c) for c in ("family", "given", "middle", "maiden", "alias")], MRN=[F.col("mrn_value")],
        SSN=[F.col("ssn")], PHONE=[F.col(c) for c in ("phone1", "phone2", "phone3")],
        EMAIL=[F.col("email1"), F.col("email2")], ADDRESS=[F.col("street"), F.col("city")])
    return pid.select(pseudonym(F.col("mrn"), deid.key, "patient").alias("patient_key"), known.alias("known"))


def known_by_patient(frames: list[DataFrame]) -> DataFrame:
    """(patient_key, known): every known identifier of each patient across sources, once."""
    typed = [f.select("patient_key", F.col("known").cast(KNOWN_TYPE).alias("known")) for f in frames]
    rows = typed[0]
    for f in typed[1:]:
        rows = rows.unionByName(f)
    return rows.groupBy("patient_key").agg(F.array_distinct(F.flatten(F.collect_list("known"))).alias("known"))



# -- patient history (the SCD2 source of gold.dim_patient) ------------------------------------------------------
# ADT events whose PID can change the patient's demographics (admit, register, update, add and update person)
DEMOGRAPHIC_EVENTS = ("A01", "A04", "A08", "A28", "A31")
# the de-identified attributes a version tracks (birth_year follows birth_date; is_age_90_plus is per patient)
TRACKED = ("gender", "birth_date", "is_age_90_plus", "zip3", "state", "country", "deceased", "deceased_date", "race",
           "ethnicity", "marital_status", "language", "insurance")
LOW_TIME = "1900-01-01 00:00:00"  # the change time of a record that carries none: before every other record


def demographic_segments(segs: DataFrame) -> DataFrame:
    """The segments of the ADT messages that can change demographics (:data:`DEMOGRAPHIC_EVENTS`)."""
    return segs.filter((F.col("message_type") == "ADT") & F.col("trigger_event").isin(*DEMOGRAPHIC_EVENTS))


def fhir_patient_versions(resources: DataFrame) -> DataFrame:
    """Every version of every FHIR Patient that Bronze holds (not only the latest), each content once."""
    versions = resources.filter((F.col("resource_type") == "Patient") & F.col("resource_id").isNotNull())
    return versions.dropDuplicates(["content_hash"])


def demographic_states(records: DataFrame, as_of: Column) -> DataFrame:
    """Source records (rows of :func:`fhir_patients` / :func:`hl7_patients`, merged-away keys already replaced)
    -> one row per record: its ``changed_at``, the patient's de-identified state at that instant, the
    ``version`` number that state belongs to, and ``opens_version`` (True for one record per version).

    The state at an instant is, per attribute, the latest non-null value of the patient's records up to it
    (ordered by time, then content hash: the order of :func:`harmonize`, so the last state is silver.patient's),
    or the first value ever sent when none was known yet;
    several records at one instant are one change. A new version opens when the de-identified state differs
    from the one before (a lab or an update with the same de-identified values opens none). 90+ is judged per
    patient at ``as_of`` (or the death date) on every birth date the patient ever had, and applied to every
    state: once a patient is 90+, no version carries a birth date.
    """
    rows = records.withColumn("changed_at", F.coalesce(F.col("updated_at"), F.lit(LOW_TIME).cast("timestamp")))
    upto = Window.partitionBy("patient_key").orderBy("changed_at", "content_hash") \
                 .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    whole = Window.partitionBy("patient_key")
    # an attribute not known before a source first sends it (a feed that never carries the language) was not
    # changed by that source: its first known value holds from the first record on
    cumulative = rows.select(
        "patient_key", "changed_at", "source", "content_hash",
        *[F.coalesce(_latest_over(a, upto), _earliest_over(a, whole)).alias(a) for a in ATTRIBUTES],
        _latest_over("deceased_date", whole).alias("_final_deceased_date"))
    ref = F.coalesce(F.col("_final_deceased_date"), as_of)
    over_89 = F.max(F.coalesce(is_90_plus(F.col("birth_date"), ref), F.lit(False))).over(whole)
    deid = cumulative.withColumn("is_age_90_plus", over_89).select(
        "patient_key", "changed_at", "source", "content_hash", "is_age_90_plus",
        map_gender(F.col("gender")).alias("gender"),
        F.when(F.col("is_age_90_plus"), F.lit(None).cast("date")).otherwise(F.col("birth_date")).alias("birth_date"),
        generalize_zip3(F.col("postal_code")).alias("zip3"), "state", "country",
        F.coalesce(F.col("deceased"), F.lit(False)).alias("deceased"), "deceased_date", "race", "ethnicity",
        "marital_status", "language", "insurance")
    # the state after the last record of an instant stands for the instant
    last = Window.partitionBy("patient_key", "changed_at").orderBy(F.col("content_hash").desc())
    deid = deid.withColumn("_last", F.row_number().over(last) == 1)
    order = Window.partitionBy("patient_key").orderBy("changed_at")
    running = order.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    instants = deid.filter("_last").select("patient_key", "changed_at", *TRACKED) \
                   .withColumn("_state", F.to_json(F.struct(*[F.col(a).cast("string") for a in TRACKED])))
    previous = F.lag("_state").over(order)
    instants = instants.withColumn("_opens", previous.isNull() | ~previous.eqNullSafe(F.col("_state"))) \
                       .withColumn("version", F.sum(F.col("_opens").cast("int")).over(running))
    return deid.select("patient_key", "changed_at", "source", "content_hash", "_last") \
               .join(instants, ["patient_key", "changed_at"]) \
               .select("patient_key", "changed_at", "version",
                       (F.col("_opens") & F.col("_last")).alias("opens_version"), *TRACKED, "source", "content_hash")


def _latest_over(value: str, window: WindowSpec) -> Column:
    """:func:`latest_value` (by ``changed_at``, then content hash) as a window function over ``window``."""
    ordered = F.struct(F.col("changed_at").alias("t"), F.coalesce(F.col("content_hash"), F.lit("")).alias("b"),
                       F.col(value).alias("v"))
    return F.max(F.when(F.col(value).isNotNull(), ordered)).over(window)["v"]


def _earliest_over(value: str, window: WindowSpec) -> Column:
    """The non-null ``value`` with the earliest ``changed_at`` (then content hash) over ``window``."""
    ordered = F.struct(F.col("changed_at").alias("t"), F.coalesce(F.col("content_hash"), F.lit("")).alias("b"),
                       F.col(value).alias("v"))
    return F.min(F.when(F.col(value).isNotNull(), ordered)).over(window)["v"]


def patient_history(states: DataFrame) -> DataFrame:
    """:func:`demographic_states` -> silver.patient_history: one row per version; ``valid_from`` = the time of the
    change that opened it; lineage = every record from that change up to the next version (real dates: the job
    applies the date policy, and birth_year then becomes the year of the published birth date)."""
    return states.groupBy("patient_key", "version").agg(
        F.min("changed_at").alias("valid_from"), *[F.max(a).alias(a) for a in TRACKED], *collect_lineage()) \
        .withColumn("birth_year", F.year("birth_date")).drop("version")
