"""Free-text scrubbing, engine-side: the patient's own known identifiers, then pattern recognizers.

Known identifiers are an ``array<struct<kind:string, value:string>>`` per row (build it with
:func:`known_identifiers` from the patient's Bronze record); each becomes a case-insensitive, word-bounded
regular expression built in SQL, so the whole scrub is ``aggregate`` + ``regexp_replace`` with no Python UDF.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from silver.deid.patterns import MERGED_RECOGNIZERS
from silver.deid.rules import load_rules

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

NAME_KINDS = ("NAME",)
ADDRESS_KINDS = ("ADDRESS",)
DIGIT_KINDS = {"PHONE": 10, "FAX": 10, "SSN": 9}  # kind -> significant trailing digits
SEP = r"[^\p{L}\p{N}]"
MIN_TOKEN = 2
MIN_DIGITS = 7


def known_identifiers(**kinds: Column | list[Column]) -> Column:
    """``known_identifiers(NAME=[given, family], MRN=mrn, PHONE=[home, mobile], ...)`` -> array of (kind, value).

    Each argument is a string column or a list of them; NULL and blank values are left out.
    """
    parts = []
    for kind, cols in kinds.items():
        for col in cols if isinstance(cols, list) else [cols]:
            parts.append(F.array(F.struct(F.lit(kind.upper()).alias("kind"), col.cast("string").alias("value"))))
    if not parts:
        return F.array().cast("array<struct<kind:string,value:string>>")
    merged = F.flatten(F.array(*parts))
    return F.filter(merged, lambda x: x["value"].isNotNull() & (F.trim(x["value"]) != ""))


def known_identifiers_from_arrays(**kinds: Column) -> Column:
    """Like :func:`known_identifiers` for columns that are ``array<string>`` (e.g. all given names)."""
    def tagged(kind: str) -> Callable[[Column], Column]:
        # one-argument lambda: PySpark passes (element, index) to a two-argument one
        return lambda v: F.struct(F.lit(kind.upper()).alias("kind"), v.alias("value"))

    parts = [F.transform(F.coalesce(col, F.array().cast("array<string>")), tagged(kind))
             for kind, col in kinds.items()]
    merged = F.flatten(F.array(*parts))
    return F.filter(merged, lambda x: x["value"].isNotNull() & (F.trim(x["value"]) != ""))


def _tokens(value: Column) -> Column:
    return F.filter(F.split(value, SEP + "+"), lambda t: F.length(t) >= MIN_TOKEN)


def _digit_pattern(value: Column, significant: int, prefix: str) -> Column:
    digits = F.regexp_replace(value, "[^0-9]", "")
    digits = F.when(F.length(digits) > significant, F.substring(digits, -significant, significant)).otherwise(digits)
    n = F.length(digits)
    head = F.regexp_replace(F.substring(digits, 1, n - 1), "([0-9])", "$1[^0-9A-Za-z]{0,3}")
    pattern = F.concat(F.lit(prefix), head, F.substring(digits, -1, 1), F.lit(r"\b"))
    return F.when(n >= MIN_DIGITS, pattern)


def identifier_pattern(kind: Column, value: Column) -> Column:
    """The regular expression that finds one known identifier in text (NULL when it is too short to search)."""
    tokens = _tokens(value)
    all_tokens = F.filter(F.split(value, SEP + "+"), lambda t: F.length(t) > 0)
    # the whole name first (keeps "O'Brien" together), then each part of two or more letters
    name = F.when(F.size(tokens) > 0, F.concat(F.lit(r"(?i)\b(?:"), F.array_join(all_tokens, SEP + "{1,3}"),
                                               F.lit("|"), F.array_join(tokens, "|"), F.lit(r")\b")))
    phrase = F.when((F.size(tokens) > 0) & (F.length(F.array_join(tokens, "")) >= 3),
                    F.concat(F.lit(r"(?i)\b"), F.array_join(tokens, SEP + "{1,3}"), F.lit(r"\b")))
    # an address: its first two parts, then each further part optionally ("12 Oak St Apt 6" also finds "12 Oak St",
    # and one-character parts such as the unit "6" or "B" go with it instead of surviving as "[ADDRESS] 6")
    rest = F.reverse(F.slice(all_tokens, 3, F.greatest(F.size(all_tokens) - 2, F.lit(1))))
    optional = F.aggregate(rest, F.lit(""), lambda acc, t: F.concat(F.lit("(?:" + SEP + "{1,3}"), t, acc, F.lit(")?")))
    address = F.when(F.size(all_tokens) >= 2,
                     F.concat(F.lit(r"(?i)\b"), F.array_join(F.slice(all_tokens, 1, 2), SEP + "{1,3}"), optional,
                              F.lit(r"\b")))
    out = F.when(kind.isin(*NAME_KINDS), name).when(kind.isin(*ADDRESS_KINDS) & address.isNotNull(), address)
    for digit_kind, significant in DIGIT_KINDS.items():
        prefix = r"(?:\+?1[^0-9A-Za-z]{0,3})?\(?\b" if significant == 10 else r"\b"
        out = out.when(kind == digit_kind, _digit_pattern(value, significant, prefix))
    return out.otherwise(phrase)


IDENTIFIERS_TYPE = "array<struct<kind:string,value:string>>"


def _identifiers(known_identifiers_col: Column) -> Column:
    return F.coalesce(known_identifiers_col, F.array().cast(IDENTIFIERS_TYPE))


def _is_digit_kind(x: Column) -> Column:
    return x["kind"].isin(*DIGIT_KINDS)


def _digit_tail(value: Column) -> Column:
    """The last MIN_DIGITS digits of a phone, fax or SSN (NULL when it has fewer)."""
    digits = F.regexp_replace(value, "[^0-9]", "")
    return F.when(F.length(digits) >= MIN_DIGITS, F.substring(digits, -MIN_DIGITS, MIN_DIGITS))


def _lower_tokens(value: Column) -> Column:
    return F.transform(_tokens(value), lambda t: F.lower(t))


def _may_occur(lower_text: Column, text_digits: Column, x: Column) -> Column:
    """A cheap necessary condition for ``identifier_pattern`` to match the text: a token of the identifier occurs
    in it (case-insensitively), or for phones, faxes and SSNs its last seven digits occur in the text's digits.
    Building and running one regular expression per identifier per row is the expensive part of scrubbing."""
    return F.coalesce(F.when(_is_digit_kind(x), F.instr(text_digits, _digit_tail(x["value"])) > 0)
                      .otherwise(F.exists(_lower_tokens(x["value"]), lambda t: F.instr(lower_text, t) > 0)),
                      F.lit(False))


def _any_may_occur(lower_text: Column, text_digits: Column, identifiers: Column) -> Column:
    """``_may_occur`` for any of the identifiers at once: the tokens and digit tails of all of them are gathered
    first (lambdas that mention only the identifier), then each is looked up in the text once."""
    tokens = F.flatten(F.transform(F.filter(identifiers, lambda x: ~_is_digit_kind(x)),
                                   lambda x: _lower_tokens(x["value"])))
    tails = F.filter(F.transform(F.filter(identifiers, _is_digit_kind), lambda x: _digit_tail(x["value"])),
                     lambda d: d.isNotNull())
    return F.exists(tokens, lambda t: F.instr(lower_text, t) > 0) \
        | F.exists(tails, lambda d: F.instr(text_digits, d) > 0)


def scrub_known(text_col: Column, identifiers: Column, names: bool | None = None) -> Column:
    """Replace each of ``identifiers`` (kind, value) in the text with ``[<KIND>]`` (only names / only others if
    told). Lambdas re-evaluate every outer expression they mention once per array element (the engines have no
    common-subexpression elimination inside them), so pass identifiers narrowed on the original text
    (:func:`scrub_text` does) rather than filtering them here against a partly scrubbed one."""
    def step(acc: Column, x: Column) -> Column:
        # NULL (too short to search) replaces nothing; the pattern is mentioned once (it is a large expression)
        return F.coalesce(F.regexp_replace(acc, identifier_pattern(x["kind"], x["value"]),
                                           F.concat(F.lit("["), x["kind"], F.lit("]"))), acc)

    ids = identifiers
    if names is not None:
        ids = F.filter(ids, lambda x: x["kind"].isin(*NAME_KINDS) if names else ~x["kind"].isin(*NAME_KINDS))
    return F.aggregate(ids, text_col.cast("string"), step)


EARLY_KINDS = ("URL", "EMAIL")  # before name parts, so "john@x.org" is one [EMAIL], not "[NAME]@x.org"


def scrub_patterns(text_col: Column, kinds: tuple[str, ...] | None = None, skip: tuple[str, ...] = ()) -> Column:
    out = text_col.cast("string")
    for r in MERGED_RECOGNIZERS:
        if (kinds is None or r.kind in kinds) and r.kind not in skip:
            out = F.regexp_replace(out, r.regex, r.replacement)
    return out


def scrub_text(text_col: Column, known_identifiers_col: Column | None = None) -> Column:
    """Scrub one free-text column: the patient's known identifiers (other than names), URLs and e-mails, the
    patient's names, then every other pattern. Placeholders are typed: ``[NAME]``, ``[MRN]``, ``[PHONE]``...

    The passes appear once in the plan (the pattern expressions are large): a row whose text holds none of the
    patient's identifiers runs them with an empty list of identifiers. Pass a column or a small expression: the
    text is mentioned several times (binding it to a lambda variable would put the CASE below inside a lambda,
    where engines evaluate every branch)."""
    text = text_col.cast("string")
    occurring: Column | None = None
    if known_identifiers_col is not None:
        lower_text, text_digits = F.lower(text), F.regexp_replace(text, "[^0-9]", "")
        identifiers = _identifiers(known_identifiers_col)
        # scrubbing only removes text, so an identifier absent from the original is absent after each pass; most
        # rows carry no text, and most texts none of the patient's identifiers: skip the per-identifier test and
        # regular expression for them (CASE evaluates a branch only for the rows that take it)
        occurring = F.when(_any_may_occur(lower_text, text_digits, identifiers),
                           F.filter(identifiers, lambda x: _may_occur(lower_text, text_digits, x))) \
                     .otherwise(F.array().cast(IDENTIFIERS_TYPE))
    out = text if occurring is None else scrub_known(text, occurring, names=False)
    out = scrub_patterns(out, kinds=EARLY_KINDS)
    out = out if occurring is None else scrub_known(out, occurring, names=True)
    out = scrub_patterns(out, skip=EARLY_KINDS)
    return F.when(text.isNull() | (F.trim(text) == ""), text).otherwise(out).alias("scrubbed_text")


def free_text_columns() -> dict[str, tuple[str, ...]]:
    """Silver table -> its free-text columns: the ``scrub_text`` rules' ``silver_columns`` in rules.csv."""
    out: dict[str, tuple[str, ...]] = {}
    for r in load_rules():
        if r.action == "scrub_text" and r.silver_columns:
            out[r.domain] = out.get(r.domain, ()) + tuple(r.silver_columns.split())
    return out


def exclude_free_text(df: DataFrame, table: str) -> DataFrame:
    """``free_text: exclude``: every free-text column of ``table`` (see :func:`free_text_columns`) becomes NULL,
    so no text of any kind (scrubbed or not) is stored; the row and its codes, dates and statuses stay."""
    for column in free_text_columns().get(table, ()):
        if column in df.columns:
            df = df.withColumn(column, F.lit(None).cast("string"))
    return df
