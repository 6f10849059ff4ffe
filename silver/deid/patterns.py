"""PHI pattern recognizers: regular expressions written in the subset that Java (classic Spark), Rust (Sail) and
Python ``re`` read the same way (no look-around, no back-references, no ``\\Q``, no ``\\p{..}``; scoped flags
``(?i:...)`` are fine in all three).

Order matters: earlier recognizers run first, so a URL is not half-eaten by the e-mail or ZIP rules, an accession
number is one ``[ID]`` before its digits could be taken for a date, and an 8-digit YYYYMMDD date is a ``[DATE]``
before it could be taken for an identifier. A recognizer with ``keep_prefix`` keeps its first group (a cue word
such as "wife " or "on ") and replaces only what follows it.

Trade-offs on clinical text (the figures are in POLICY.md, from ``benchmarks/scrub_recall.py``):
* ages: only ages over 89 are identifiers (164.514(b)(2)(i)(C)); "45-year-old" stays, "92 y.o." becomes
  ``[AGE90+]``. "Temp 99 F" stays: a bare number with M/F is not read as an age.
* month/day without a year: "3/14" is a date when its day is 11-31, or after a date cue ("on 3/5", "since 1/5");
  fractions and scores ("3/4 tablet", "on 1/2 tab", "pain 8/10", "strength 5/5", "murmur 2/6") stay, so "on 3/4"
  (March 4) stays too; "GCS 11/15" is taken for a date (accepted false positive).
* month names without a year count only capitalized ("March 14", "14 May"): "may 2 times", "marked edema" stay.
* unit numbers: "Apt 6", "Suite 200", "Unit 6B" (capitalized), and a number right after an ``[ADDRESS]``;
  "2 units", "unit 2 of PRBCs" and "Disp #30" stay.
* accession, serial, lot and device numbers after their cue word ("ACC-2024-001234", "SN 8C2F-19A3"), and
  letter+digit runs of 6 or more digits ("ACC000123456"); codes such as "LOINC 2345-7", "COVID-19" stay.
* relatives' names after a relation word ("wife Mary", "daughter Ann Lee", "NOK: John Smith") and names after a
  courtesy title ("Mrs. Jones"); "Mother: diabetes" (family history) stays, "Dr. Singh" (the clinician) stays.
"""

from __future__ import annotations

from typing import NamedTuple

_MONTHS = ("jan", "january", "feb", "february", "mar", "march", "apr", "april", "may", "jun", "june", "jul", "july",
           "aug", "august", "sep", "sept", "september", "oct", "october", "nov", "november", "dec", "december")
# a whole month name or its abbreviation (not "marked", "decreased", "mayo")
_MONTH = r"(?:" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\b\.?"
# capitalized or upper case only: for dates without a year, where "may" or "mar" are ordinary words
_MONTH_CAP = r"(?:" + "|".join(sorted({m.capitalize() for m in _MONTHS} | {m.upper() for m in _MONTHS},
                                      key=len, reverse=True)) + r")\b\.?"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DAY = r"(?:3[01]|[12][0-9]|0?[1-9])"
_MON_NUM = r"(?:1[0-2]|0?[1-9])"
_YEAR4 = r"(?:19|20)[0-9]{2}"
_AGE90 = r"(?:1[0-4][0-9]|9[0-9])"
_DATE_CUE = (r"(?i:on|since|from|until|till|through|thru|by|dated?|seen|admitted|discharged|returned|starting|"
             r"started|last|next|due|before|after|effective|dos)")
# month/day with a day up to 10 (after a date cue), except the pairs that read as fractions of a tablet
_FRACTIONS = {(1, 2), (1, 3), (2, 3), (1, 4), (3, 4), (1, 8), (3, 8), (5, 8), (7, 8)}
_CUE_MONTH_DAY = "(?:" + "|".join(f"{'1' if m > 9 else '0?'}{m % 10}/{'10' if d == 10 else '0?' + str(d)}"
                                  for m in range(12, 0, -1) for d in range(10, 0, -1)
                                  if (m, d) not in _FRACTIONS) + ")"
_UNIT = r"(?i:apt|apartment|suite|ste|unit|rm|room|fl|floor|bldg|building)\b\.?"
_STREET = (r"(?:St|Street|Ave|Avenue|Rd|Road|Ln|Lane|Way|Dr|Drive|Blvd|Boulevard|Ct|Court|Pl|Place|Row|Ter|"
           r"Terrace|Hwy|Highway|Pkwy|Parkway|Cir|Circle|Sq|Square)")
_RELATION = (r"(?i:wife|husband|spouse|partner|son|daughter|mother|father|mom|dad|sister|brother|niece|nephew|"
             r"grandson|granddaughter|grandmother|grandfather|aunt|uncle|cousin|guardian|caregiver|friend|neighbou?r|"
             r"fianc[eé]e?)")
_CONTACT = r"(?i:nok|next of kin|emergency contact|contact person|poa|power of attorney|health care proxy|hcp)"
_PERSON = r"[A-Z][A-Za-z'-]+(?: [A-Z][A-Za-z'-]+){0,2}"
_SERIAL_CUE = (r"(?i:accession|acc|serial|s/n|sn|lot|udi|device id|specimen id|requisition|license|licence|vin|"
               r"imei|mac|barcode)")
_SERIAL_VALUE = r"(?i:[0-9][a-z0-9-]{2,}[a-z0-9]|[a-z]{1,6}-?[0-9][a-z0-9-]*[a-z0-9])\b"


class Recognizer(NamedTuple):
    kind: str          # placeholder label, e.g. PHONE -> "[PHONE]"
    safe_harbor: str   # HIPAA Safe Harbor class (A..R) it protects
    regex: str
    keep_prefix: bool = False  # the regex's first group is a cue word kept in the text

    @property
    def placeholder(self) -> str:
        return f"[{self.kind}]"

    @property
    def replacement(self) -> str:
        """The replacement for Spark's ``regexp_replace`` (Java and Sail both read ``$1``)."""
        return ("$1" if self.keep_prefix else "") + self.placeholder

    @property
    def python_replacement(self) -> str:
        """The replacement for Python's ``re.sub``."""
        return (r"\g<1>" if self.keep_prefix else "") + self.placeholder


RECOGNIZERS: tuple[Recognizer, ...] = (
    Recognizer("URL", "N", r"(?i)\b(?:https?://|ftp://|www\.)[^\s<>\"']+"),
    Recognizer("EMAIL", "F", r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b"),
    Recognizer("IP", "O", r"\b" + _OCTET + r"\." + _OCTET + r"\." + _OCTET + r"\." + _OCTET + r"\b"),
    Recognizer("SSN", "G", r"(?i)\b(?:ssn|social security(?: number| no\.?)?)[\s:#]*"
                           r"[0-9]{3}[- ]?[0-9]{2}[- ]?[0-9]{4}\b"),
    Recognizer("SSN", "G", r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b"),
    Recognizer("MRN", "H", r"(?i)\b(?:mrn|medical record(?: number| no\.?)?|patient id|acct|account(?: number| no\.?)?"
                           r"|member id|policy(?: number| no\.?)?)[\s:#]*[a-z]{0,4}[-]?[0-9][a-z0-9-]{3,}\b"),
    # accession, serial, lot, device and licence numbers: after their cue word, or a letter prefix with a long number
    Recognizer("ID", "K,L,M,R", r"\b" + _SERIAL_CUE + r"\b(?:\s*(?i:no|num|number|#|id)\b\.?)?[\s:#.-]*"
                                + _SERIAL_VALUE),
    Recognizer("ID", "R", r"\b[A-Z]{2,5}-(?:19|20)[0-9]{2}-[0-9]{3,}\b"),
    Recognizer("ID", "R", r"\b[A-Z]{2,5}-?[0-9]{6,}\b"),
    Recognizer("PHONE", "D", r"(?:\+?1[\s.-]?)?(?:\([0-9]{3}\)\s?|\b[0-9]{3}[\s.-])[0-9]{3}[\s.-][0-9]{4}\b"),
    Recognizer("DATE", "C", r"\b" + _YEAR4 + r"-" + _MON_NUM + r"-" + _DAY + r"(?:[T ][0-9:.]+Z?)?\b"),
    Recognizer("DATE", "C", r"\b" + _MON_NUM + r"[/.-]" + _DAY + r"[/.-](?:[0-9]{4}|[0-9]{2})\b"),
    # day first (European): 14.03.2024, 31/12/24
    Recognizer("DATE", "C", r"\b" + _DAY + r"[/.-]" + _MON_NUM + r"[/.-](?:[0-9]{4}|[0-9]{2})\b"),
    Recognizer("DATE", "C", r"(?i)\b" + _MONTH + r"[\s-]*[0-9]{1,2}(?:st|nd|rd|th)?,?[\s-]+[0-9]{4}\b"),
    Recognizer("DATE", "C", r"(?i)\b[0-9]{1,2}(?:st|nd|rd|th)?[\s/.-]*" + _MONTH + r"[\s/.,-]*[0-9]{4}\b"),
    Recognizer("DATE", "C", r"(?i)\b[0-9]{1,2}-" + _MONTH + r"-[0-9]{2}\b"),
    Recognizer("DATE", "C", r"\b" + _YEAR4 + r"(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])(?:[0-9]{4,6})?\b"),
    # partial dates: month and year, month and day
    Recognizer("DATE", "C", r"(?i)\b" + _MONTH + r"[\s,/-]*" + _YEAR4 + r"\b"),
    Recognizer("DATE", "C", r"\b" + _YEAR4 + r"[-/](?:1[0-2]|0[1-9])\b"),
    Recognizer("DATE", "C", r"\b" + _MON_NUM + r"/" + _YEAR4 + r"\b"),
    Recognizer("DATE", "C", r"\b" + _MONTH_CAP + r"\s*(?:3[01]|[12][0-9]|0?[1-9])(?:st|nd|rd|th)?\b"),
    Recognizer("DATE", "C", r"\b(?:3[01]|[12][0-9]|0?[1-9])(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH_CAP),
    Recognizer("DATE", "C", r"\b" + _MON_NUM + r"/(?:3[01]|2[0-9]|1[1-9])\b"),
    Recognizer("DATE", "C", r"(\b" + _DATE_CUE + r"[\s:]+)" + _CUE_MONTH_DAY + r"\b", keep_prefix=True),
    # ages over 89 (ages up to 89 are not identifiers under Safe Harbor and stay)
    Recognizer("AGE90+", "C", r"(?i)\b" + _AGE90 + r"\s*-?\s*(?:(?:years?|yrs?|yo)\b(?:[- ]old\b)?|y/o\b"
                              r"|y\.\s?o\b\.?)"),
    Recognizer("AGE90+", "C", r"(?i)\baged?\b[\s:]*" + _AGE90 + r"\b"),
    Recognizer("AGE90+", "C", r"(?i)\b(?:nonagenarian|centenarian)\b"),
    # unit numbers: right after an address the known identifiers replaced, then on their own
    Recognizer("ADDRESS", "B", r"\[ADDRESS\](?:\s*,?\s*(?:" + _UNIT + r"|#)\s*#?\s*|\s+#?\s*)[0-9]{1,4}[A-Za-z]?\b"),
    Recognizer("ADDRESS", "B", r"\b[0-9]{1,5}\s+(?:[A-Z][A-Za-z'-]+\s+){1,3}" + _STREET + r"\b\.?"
                               r"(?:,?\s*(?:" + _UNIT + r"|#)\s*#?\s*[0-9]{1,5}[A-Za-z]?\b)?"),
    Recognizer("ADDRESS", "B", r"\b(?i:apt|apartment|suite|ste)\b\.?\s*#?\s*[0-9]{1,5}[A-Za-z]?\b"),
    Recognizer("ADDRESS", "B", r"\b(?:Unit|UNIT)\s*#?\s*[0-9]{1,5}[A-Za-z]?\b"),
    # names of other people: relatives and contacts after a relation word, anyone after a courtesy title
    Recognizer("NAME", "A", r"(\b" + _RELATION + r"(?:'s)?(?:,\s*|\s*\(\s*|\s+)(?:(?i:is|named)\s+)?)" + _PERSON,
               keep_prefix=True),
    Recognizer("NAME", "A", r"(\b" + _CONTACT + r"(?:,\s*|\s*[:(]\s*|\s+)(?:(?i:is)\s+)?)" + _PERSON,
               keep_prefix=True),
    Recognizer("NAME", "A", r"(\b(?:Mr|Mrs|Ms|Miss|Mx)\b\.?\s+)" + _PERSON, keep_prefix=True),
    Recognizer("ZIP", "B", r"\b[0-9]{5}-[0-9]{4}\b"),
    Recognizer("ZIP", "B", r"\b[0-9]{5}\b"),
    Recognizer("ID", "R", r"\b[0-9]{7,}\b"),
)


def _scoped(regex: str) -> str:
    """``regex`` as one group whose flags stay inside it (a leading ``(?i)`` becomes ``(?i:...)``)."""
    return f"(?i:{regex[4:]})" if regex.startswith("(?i)") else f"(?:{regex})"


def merged(recognizers: tuple[Recognizer, ...] = RECOGNIZERS) -> tuple[Recognizer, ...]:
    """Consecutive recognizers of one kind as one alternation, earlier first (what the engine runs: a chain of
    one ``regexp_replace`` per recognizer nests too deep for a Spark Connect plan). Recognizers that keep a prefix
    group stay on their own."""
    runs: list[list[Recognizer]] = []
    for r in recognizers:
        if runs and not r.keep_prefix and not runs[-1][0].keep_prefix and runs[-1][0].kind == r.kind:
            runs[-1].append(r)
        else:
            runs.append([r])
    return tuple(run[0] if len(run) == 1 else
                 Recognizer(run[0].kind, ",".join(dict.fromkeys(c for r in run for c in r.safe_harbor.split(","))),
                            "|".join(_scoped(r.regex) for r in run))
                 for run in runs)


MERGED_RECOGNIZERS = merged()
