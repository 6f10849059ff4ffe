"""PHI pattern recognizers: regular expressions written in the subset that Java (classic Spark), Rust (Sail) and
Python ``re`` read the same way (no look-around, no back-references, no ``\\Q``).

Order matters: earlier recognizers run first, so a URL is not half-eaten by the e-mail or ZIP rules, and an
8-digit YYYYMMDD date is a ``[DATE]`` before it could be taken for an identifier.
Presidio's pattern recognizers were considered: presidio-analyzer installs spaCy, thinc and tldextract (which
fetches the public-suffix list at run time) and its engine loads a spaCy model, so these are our own.
"""

from __future__ import annotations

from typing import NamedTuple

_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"


class Recognizer(NamedTuple):
    kind: str          # placeholder label, e.g. PHONE -> "[PHONE]"
    safe_harbor: str   # HIPAA Safe Harbor class (A..R) it protects
    regex: str

    @property
    def placeholder(self) -> str:
        return f"[{self.kind}]"


RECOGNIZERS: tuple[Recognizer, ...] = (
    Recognizer("URL", "N", r"(?i)\b(?:https?://|ftp://|www\.)[^\s<>\"']+"),
    Recognizer("EMAIL", "F", r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b"),
    Recognizer("IP", "O", r"\b" + _OCTET + r"\." + _OCTET + r"\." + _OCTET + r"\." + _OCTET + r"\b"),
    Recognizer("SSN", "G", r"(?i)\b(?:ssn|social security(?: number| no\.?)?)[\s:#]*"
                           r"[0-9]{3}[- ]?[0-9]{2}[- ]?[0-9]{4}\b"),
    Recognizer("SSN", "G", r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b"),
    Recognizer("MRN", "H", r"(?i)\b(?:mrn|medical record(?: number| no\.?)?|patient id|acct|account(?: number| no\.?)?"
                           r"|member id|policy(?: number| no\.?)?)[\s:#]*[a-z]{0,4}[-]?[0-9][a-z0-9-]{3,}\b"),
    Recognizer("PHONE", "D", r"(?:\+?1[\s.-]?)?(?:\([0-9]{3}\)\s?|\b[0-9]{3}[\s.-])[0-9]{3}[\s.-][0-9]{4}\b"),
    Recognizer("DATE", "C", r"\b(?:19|20)[0-9]{2}-(?:0?[1-9]|1[0-2])-(?:0?[1-9]|[12][0-9]|3[01])(?:[T ][0-9:.]+Z?)?\b"),
    Recognizer("DATE", "C", r"\b(?:0?[1-9]|1[0-2])[/.-](?:0?[1-9]|[12][0-9]|3[01])[/.-](?:[0-9]{4}|[0-9]{2})\b"),
    Recognizer("DATE", "C", r"(?i)\b" + _MONTH + r"\s+[0-9]{1,2}(?:st|nd|rd|th)?,?\s+[0-9]{4}\b"),
    Recognizer("DATE", "C", r"(?i)\b[0-9]{1,2}(?:st|nd|rd|th)?\s+" + _MONTH + r",?\s+[0-9]{4}\b"),
    Recognizer("DATE", "C", r"\b(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])(?:[0-9]{4,6})?\b"),
    Recognizer("AGE90+", "C", r"(?i)\b(?:9[0-9]|1[0-4][0-9])[- ](?:years?|yrs?|y/?o)(?:[- ]old)?\b"),
    Recognizer("AGE90+", "C", r"(?i)\baged?[\s:]+(?:9[0-9]|1[0-4][0-9])\b"),
    Recognizer("ZIP", "B", r"\b[0-9]{5}-[0-9]{4}\b"),
    Recognizer("ZIP", "B", r"\b[0-9]{5}\b"),
    Recognizer("ID", "R", r"\b[0-9]{7,}\b"),
)
