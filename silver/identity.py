"""Who a patient or a visit is: an identifier value qualified by its canonical assigning authority.

An identifier is only unique within the authority that issued it: MRN 12345 of one hospital is not MRN 12345 of
another. HL7 CX.4 (HD namespace id or universal id), FHIR ``identifier.system`` (``urn:oid:`` dropped) and DICOM
Issuer of Patient ID (0010,0021) name that authority. The seed ``silver/terminology/assigning_authorities.csv``
maps every spelling of an authority to one canonical name, so ``12345^^^GENHOSP^MR``,
``12345^^^&2.16.840.1.113883.3.9999.1&ISO^MR`` and ``{"system": "https://fhir.genhosp.example.org/sid/mrn",
"value": "12345"}`` are one patient. An HD names its authority by its universal id (an OID) when it has one,
else by its namespace id. An authority the seed does not list stands for itself, as sent
(``&2.16.840.1.113883.19.5&ISO`` and ``urn:oid:2.16.840.1.113883.19.5`` match without a seed row). An identifier
sent without an authority belongs to the seed's row with an empty ``sent_authority`` if there is one, else to no
authority (an empty name): unqualified identifiers then match each other only.

The identity is ``<authority>|<value>``; ``patient_key`` and ``encounter_key`` are its keyed pseudonyms.

One fallback order picks the identifier, the same for HL7 PID-3 and MRG-1, FHIR ``Patient.identifier`` and DICOM:
the first identifier typed MR (HL7 table 0203 medical record number), else MRT, PI, PT (temporary record number,
patient internal and external identifiers), else the first untyped one (DICOM's Patient ID is untyped; a type
outside table 0203 counts as none). A type of :data:`NOT_PATIENT_KEYS` (SS social security number, AN account
number, DL, PPN, MA/MC, NPI, ...) never becomes a key: a record with no usable identifier gets a NULL identity and
is quarantined by the domain's suite (``patient_key`` not null). Visits (PV1-19, ``Encounter.identifier``) rank VN
(visit number), then any other repetition: PV1-19 is the visit number whatever type a sender writes there.
"""

from __future__ import annotations

import re
from functools import cache

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.expressions import let, map_literal
from silver.terminology import rows as seed_rows

PATIENT_ID_TYPES = ("MR", "MRT", "PI", "PT")
VISIT_ID_TYPES = ("VN",)
# HL7 table 0203 types that are never a patient's key: person identifiers (SSN, licences, passports, insurance and
# national numbers), accounts, visits, providers, organizations. ``NNxxx`` (national person identifier of country
# xxx) is matched by pattern. A type outside table 0203 (free text some senders put in CX.5) counts as untyped.
NOT_PATIENT_KEYS = ("SS", "SSN", "AN", "AND", "ANON", "ANC", "ANT", "AM", "BA", "BC", "BR", "CC", "DL", "DN", "DEA",
                    "DI", "DR", "DS", "EI", "EN", "GI", "GN", "HC", "JHN", "LN", "LR", "MA", "MB", "MC", "MCD", "MCN",
                    "MCR", "MCT", "MD", "MI", "MS", "NBSNR", "NCT", "NE", "NH", "NI", "NII", "NIIP", "NP", "NPI",
                    "PEN", "PPIN", "PPN", "PRC", "PRN", "QA", "RI", "RN", "RPH", "RR", "RRI", "RRP", "SL", "SN", "SR",
                    "TAX", "TN", "TPR", "UPIN", "USID", "VN", "VS", "WC", "WCN", "WP", "XX")


@cache
def _authorities() -> tuple[dict[str, str], str | None]:
    """(upper-cased sent spelling -> canonical authority, the authority of unqualified identifiers)."""
    mapping = {str(sent).strip().upper(): str(canonical).strip() for sent, canonical in
               seed_rows("assigning_authorities")}
    return {k: v for k, v in mapping.items() if k}, mapping.get("")


def _normalized(sent: Column) -> Column:
    return F.nullif(F.regexp_replace(F.trim(sent), r"(?i)^urn:oid:", ""), F.lit(""))


def canonical_authority(sent: Column) -> Column:
    """The canonical authority of a sent spelling (the seed's, matched case-insensitively), else the spelling as
    sent, else (nothing sent) the seed's authority of unqualified identifiers, else the empty name. Never NULL."""
    mapping, unqualified = _authorities()
    spellings = map_literal(mapping) if mapping else None
    return let(_normalized(sent), lambda name: F.coalesce(
        *([spellings[F.upper(name)]] if spellings is not None else []), name, F.lit(unqualified or "")))


def hd_authority(namespace: Column, universal_id: Column) -> Column:
    """The canonical authority of an HL7 HD (CX.4): its universal id (an OID, globally unique, the same as a FHIR
    ``urn:oid:`` system) when sent, else its namespace id (a local name)."""
    return canonical_authority(F.coalesce(_normalized(universal_id), _normalized(namespace)))


def _rank(type_code: Column, types: tuple[str, ...], never: tuple[str, ...]) -> Column:
    """0.. for ``types`` in their order, NULL for a type of ``never`` (and, when ``never`` is given, for a national
    person identifier ``NNxxx``), else len(types) (untyped)."""
    ranks = {**{t: -1 for t in never}, **{t: i for i, t in enumerate(types)}}
    code = F.upper(F.trim(F.coalesce(type_code, F.lit(""))))
    rank = F.nullif(F.coalesce(map_literal(ranks)[code],
                               F.lit(len(types))), F.lit(-1))
    return F.when(~code.rlike("^NN[A-Z]{3}$"), rank) if never else rank


def identity(authority: Column, value: Column) -> Column:
    """``<authority>|<value>``; NULL without a value."""
    return let(F.nullif(F.trim(value), F.lit("")), lambda v: F.when(
        v.isNotNull(), F.concat(F.coalesce(authority, F.lit("")), F.lit("|"), v)))


def hl7_identity(n: int, types: tuple[str, ...] = PATIENT_ID_TYPES,
                 never: tuple[str, ...] = NOT_PATIENT_KEYS) -> Column:
    """The identity of the best identifier among the repetitions of CX field ``n`` of a segment row (PID-3,
    MRG-1, PV1-19): by rank of ``types`` (CX.5), then repetition order, never one of the types ``never``. NULL when
    none is usable."""
    enc = F.col("encoding_characters")
    comp, rep, sub = F.substring(enc, 1, 1), F.substring(enc, 2, 1), F.substring(enc, 4, 1)
    raw = F.coalesce(F.get(F.col("fields"), n), F.lit(""))
    reps = F.split(F.replace(raw, rep, F.lit("\u0001")), "\u0001")

    def cx(x: Column, i: Column) -> Column:
        hd = F.split_part(x, comp, F.lit(4))
        # each repetition's identity is computed inside the lambda: one copy of the expression in the plan
        return F.struct(_rank(F.split_part(x, comp, F.lit(5)), types, never).alias("rank"), i.alias("position"),
                        identity(hd_authority(F.split_part(hd, sub, F.lit(1)), F.split_part(hd, sub, F.lit(2))),
                                 F.split_part(x, comp, F.lit(1))).alias("identity"))

    usable = F.filter(F.transform(reps, cx), lambda c: c["rank"].isNotNull() & c["identity"].isNotNull())
    return F.get(F.array_sort(usable), 0)["identity"]


def fhir_identities(identifiers: DataFrame, types: tuple[str, ...] = PATIENT_ID_TYPES,
                    never: tuple[str, ...] = NOT_PATIENT_KEYS) -> DataFrame:
    """(id, identity) per resource from rows (id, kind, system, value) of its identifiers (the ``patient_identifier``
    view: ``kind`` is the identifier's type code; its telecom rows are no identifiers): the best identifier by rank of
    ``types``, then value. A resource with no usable identifier gets no row."""
    ids = identifiers.filter(F.coalesce(F.col("kind"), F.lit("")) != "telecom")
    value = F.nullif(F.trim(F.col("value").cast("string")), F.lit(""))
    rank = _rank(F.col("kind"), types, never)
    best = F.when(rank.isNotNull() & value.isNotNull(), F.struct(
        rank.alias("rank"), value.alias("value"), identity(canonical_authority(F.col("system")), value).alias("i")))
    return ids.groupBy("id").agg(F.min(best).alias("b")).filter(F.col("b").isNotNull()) \
              .select("id", F.col("b.i").alias("identity"))


def canonical_authority_py(sent: str | None) -> str:
    """:func:`canonical_authority` on the client (the PHI scan)."""
    mapping, unqualified = _authorities()
    name = re.sub(r"(?i)^urn:oid:", "", (sent or "").strip())
    return mapping.get(name.upper(), name) if name else unqualified or ""


def hd_authority_py(namespace: str | None, universal_id: str | None) -> str:
    """:func:`hd_authority` on the client."""
    return canonical_authority_py((universal_id or "").strip() or namespace)


def identity_py(authority: str, value: str | None) -> str | None:
    """:func:`identity` on the client."""
    v = (value or "").strip()
    return f"{authority}|{v}" if v else None
