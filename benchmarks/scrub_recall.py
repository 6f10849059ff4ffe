"""Recall of free-text scrubbing: how many planted identifiers ``scrub_text`` removes, and what it wrongly takes.

Three measurements, each printed as JSON by ``python -m benchmarks.scrub_recall`` (the README and POLICY.md
quote them; ``tests/test_deid_text_recall.py`` runs the same functions):

* **cases**: the hand-written case list ``silver/deid/scrub_cases.csv`` (text, the patient's known identifiers
  including relatives' and contacts', the fragments that must be gone, the placeholders expected).
  recall = fragments gone / fragments planted.
* **benign**: clinical phrases without PHI (``silver/deid/scrub_benign.csv``): how many the scrubber changes
  (false positives; each should come out as it went in).
* **generated**: the synthetic generator's planted PHI (the patient's and next of kin's names, phones, MRN,
  e-mail, address and unit, ages over 89, dates in partial forms; see ``synthetic.contacts.planted``) after a real
  ingest and Silver build: an identifier planted in a patient's notes counts as removed when it occurs in none of
  that patient's Silver free-text columns (``silver.deid.text.free_text_columns``).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from bronze.job import ingest
from lakehouse import engine
from lakehouse.catalog import Catalog
from lakehouse.config import Settings, load_settings, set_settings
from lakehouse.runlog import run_context
from silver.deid import engine_key, pseudonym, scrub_text
from silver.deid.text import free_text_columns
from silver.identity import canonical_authority, identity
from silver.job import build_silver
from synthetic import contacts, model
from synthetic.generator import generate

DEID_DIR = Path(__file__).resolve().parent.parent / "silver" / "deid"
CASES_CSV = DEID_DIR / "scrub_cases.csv"
BENIGN_CSV = DEID_DIR / "scrub_benign.csv"
KNOWN_TYPE = "array<struct<kind:string,value:string>>"
RECALL_KEY = "scrub-recall-pseudonym-key-not-a-secret-0123"


def load_cases(path: Path = CASES_CSV) -> list[dict[str, Any]]:
    """The case list: ``known`` as [(kind, value)], ``gone`` and ``placeholders`` as lists."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [{"case": r["case"], "text": r["text"],
             "known": [tuple(k.split("=", 1)) for k in r["known"].split(";") if k],
             "gone": [g for g in r["gone"].split("|") if g],
             "placeholders": [p for p in r["placeholders"].split("|") if p]} for r in rows]


def load_benign(path: Path = BENIGN_CSV) -> list[str]:
    with path.open(newline="") as fh:
        return [r["text"] for r in csv.DictReader(fh)]


def scrub_rows(spark: SparkSession, rows: list[tuple[str, list[tuple[str, str]]]]) -> list[str]:
    """``scrub_text`` of each (text, known identifiers) on the engine, in order."""
    df = spark.createDataFrame([(i, t, [{"kind": k, "value": v} for k, v in known])
                                for i, (t, known) in enumerate(rows)], f"i int, text string, known {KNOWN_TYPE}")
    out = df.select("i", scrub_text(F.col("text"), F.col("known"))).collect()
    return [r[1] for r in sorted(out, key=lambda r: r[0])]


def _gone(fragment: str, text: str) -> bool:
    return fragment.lower() not in text.lower()


def case_recall(spark: SparkSession) -> dict[str, Any]:
    cases = load_cases()
    outputs = scrub_rows(spark, [(c["text"], c["known"]) for c in cases])
    planted = removed = 0
    missed: list[dict[str, str]] = []
    placeholders_missing: list[dict[str, str]] = []
    for c, out in zip(cases, outputs, strict=True):
        for fragment in c["gone"]:
            planted += 1
            if _gone(fragment, out):
                removed += 1
            else:
                missed.append({"case": c["case"], "fragment": fragment, "output": out})
        placeholders_missing += [{"case": c["case"], "placeholder": p, "output": out}
                                 for p in c["placeholders"] if p not in out]
    return {"cases": len(cases), "planted": planted, "removed": removed, "recall": round(removed / planted, 4),
            "missed": missed, "placeholders_missing": placeholders_missing,
            "outputs": {c["case"]: out for c, out in zip(cases, outputs, strict=True)}}


def benign_false_positives(spark: SparkSession) -> dict[str, Any]:
    texts = load_benign()
    outputs = scrub_rows(spark, [(t, []) for t in texts])
    changed = [{"text": t, "output": o} for t, o in zip(texts, outputs, strict=True) if t != o]
    return {"texts": len(texts), "changed": len(changed),
            "placeholders": sum(len(re.findall(r"\[[A-Z0-9+]+\]", c["output"])) for c in changed),
            "changes": changed}


def _source_text(p: model.Patient) -> str:
    """The free text the generator wrote for ``p``: its notes, and the HL7 lab comments that name the patient."""
    notes = [n.text for e in p.encounters for n in e.notes]
    hl7_comments = any((lab.phi_comment or lab.text_result) and lab.route != "fhir"
                       for e in p.encounters for lab in e.labs)
    return "\n".join(notes + ([f"{p.full_name} {p.phone} {p.mrn}"] if hl7_comments else []))


def _occurs(kind: str, value: str, text: str) -> bool:
    if kind == "NAME":  # a whole word: "Lee" is not in "Fleet"
        return re.search(r"(?<![A-Za-z\u00c0-\u024f])" + re.escape(value.lower()) + r"(?![A-Za-z\u00c0-\u024f])",
                         text.lower()) is not None
    return value.lower() in text.lower()


def silver_text_by_patient(spark: SparkSession, settings: Settings) -> dict[str, str]:
    """patient_key -> every value of every Silver free-text column of that patient, one per line."""
    catalog = Catalog(spark, settings)
    frames: list[DataFrame] = []
    for table, cols in free_text_columns().items():
        if not catalog.exists(f"silver.{table}"):
            continue
        df = catalog.read(f"silver.{table}")
        for c in cols:
            frames.append(df.select("patient_key", F.col(c).cast("string").alias("text")))
    if not frames:
        return {}
    union = frames[0]
    for f in frames[1:]:
        union = union.unionByName(f)
    grouped = union.filter(F.col("text").isNotNull()).groupBy("patient_key") \
        .agg(F.concat_ws("\n", F.collect_list("text")).alias("text")).collect()
    return {r["patient_key"]: r["text"] for r in grouped}


def generated_recall(settings: Settings, patients: int, seed: int) -> dict[str, Any]:
    """Generate ``patients`` patients into the landing zone of ``settings``, ingest them, build Silver, and
    measure recall on what the generator planted."""
    generate(patients, seed, settings.landing_dir, bad_rate=0.0)
    with run_context("ingest", settings) as run:
        ingest(settings, [], run)
    with run_context("silver", settings) as run:
        build_silver(settings, run)
    return measure_generated(settings, model.build_population(patients, seed)[1])


def measure_generated(settings: Settings, population: list[model.Patient]) -> dict[str, Any]:
    spark = engine.get_spark(settings)
    mrns = spark.createDataFrame([(p.mrn,) for p in population], "mrn string")
    keys = {r["mrn"]: r["patient_key"] for r in
            mrns.select("mrn", pseudonym(identity(canonical_authority(F.lit(model.ASSIGNING_AUTHORITY)), F.col("mrn")),
                                         engine_key(settings), "patient")).collect()}
    silver = silver_text_by_patient(spark, settings)
    planted = removed = 0
    by_kind: dict[str, dict[str, int]] = {}
    survivors: list[dict[str, str]] = []
    patients_with_text = 0
    for p in population:
        source = _source_text(p)
        if not source:
            continue
        text = silver.get(keys[p.mrn], "")
        patients_with_text += bool(text)
        for kind, values in contacts.planted(p).items():
            for value in dict.fromkeys(values):
                if not _occurs(kind, value, source):
                    continue
                planted += 1
                counts = by_kind.setdefault(kind, {"planted": 0, "removed": 0})
                counts["planted"] += 1
                if _occurs(kind, value, text):
                    survivors.append({"kind": kind, "value_length": str(len(value)), "patient_index": str(p.index)})
                else:
                    removed += 1
                    counts["removed"] += 1
    return {"patients": len(population), "patients_with_silver_text": patients_with_text, "planted": planted,
            "removed": removed, "recall": round(removed / planted, 4) if planted else None, "by_kind": by_kind,
            "survivors": survivors}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scrub_recall", description=__doc__.split("\n\n")[0])
    p.add_argument("--patients", type=int, default=40, help="synthetic patients for the generated measurement")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-generated", dest="generated", action="store_false",
                   help="only the case list and the benign list (no Silver build)")
    p.add_argument("--details", action="store_true", help="print outputs, misses and changes too")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="scrub-recall-") as tmp:
        settings = load_settings(config_file=None, environ={}, root=Path(tmp) / "lakehouse",
                                 pseudonym_key=RECALL_KEY)
        set_settings(settings)
        spark = engine.get_spark(settings)
        report: dict[str, Any] = {"cases": case_recall(spark), "benign": benign_false_positives(spark)}
        if args.generated:
            report["generated"] = generated_recall(settings, args.patients, args.seed)
    if not args.details:
        report["cases"].pop("outputs")
        report["benign"].pop("changes") if not report["benign"]["changed"] else None
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
