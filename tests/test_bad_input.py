"""Bad input is data: the generator's bad items and crafted broken files go through the real pipeline once.

Nothing crashes; every bad item is in a ``quarantine.*`` table with a precise reason; every good item is in
Bronze (and Silver, once it exists); ``received = bronze + quarantined + duplicates`` per source; the bytes of
wrongly encoded files are kept; and the pseudonym key is in no file of the lakehouse afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer.main
from bad_inputs import (
    DICOM,
    FHIR,
    HL7V2,
    HUGE_OBX_BYTES,
    Q_DICOM,
    Q_FHIR,
    Q_HL7V2,
    Q_LANDING,
    WRONG_ALL_FIELDS,
    WRONG_ONE_FIELD,
    Crafted,
    crafted_files,
    hl7_message,
    write_crafted,
)
from deltalake import DeltaTable
from helpers import attach, new_lakehouse

from bronze.job import ingest
from bronze.mllp import BackgroundListener, ListenerConfig
from gold.serving import FlightSqlServer
from lakehouse import metrics
from lakehouse.config import set_settings
from lakehouse.runlog import run_context
from lakehouse_app import pipeline
from lakehouse_app.cli import app
from synthetic import generate

KEY = "bad-input-key-5b1f0e7d2c9a4468"
SEED = 23
BRONZE = {"hl7v2": HL7V2, "fhir": FHIR, "dicom": DICOM}
QUARANTINE = {"hl7v2": Q_HL7V2, "fhir": Q_FHIR, "dicom": Q_DICOM, "unknown": Q_LANDING}
# generator bad-item kind -> (quarantine table, fragment its reason must contain)
KIND_REASONS = {
    "fhir_truncated_json": (Q_FHIR, "invalid json"),
    "fhir_entry_without_resource": (Q_FHIR, "has no resource"),
    "fhir_wrong_resource_type": (Q_FHIR, "is not a fhir r4 type"),
    "hl7_missing_msh": (Q_LANDING, "without an msh header"),
    "hl7_broken_msh": (Q_HL7V2, "msh-9 message type is missing"),
    "binary_file": (Q_LANDING, "binary content"),
    # a cut that falls exactly between two elements cannot be told from an image written without pixel data
    "dicom_truncated": (Q_DICOM, ("truncated dicom", "image without pixel data")),
}
# planted oddities a reader accepts: they land in Bronze (a preamble-less DICOM copy of a good instance)
ACCEPTED = {"dicom_no_file_meta": DICOM}
pytestmark = pytest.mark.filterwarnings("ignore:Unknown encoding 'ISO_IR 999'")


@dataclass
class Lake:
    settings: Any
    landing_prefix: str  # source_file prefix of generated files
    truth: dict[str, Any]
    crafted: dict[str, Crafted]
    report: dict[str, Any]
    runs: list[Any] = field(default_factory=list)
    silver: dict[str, Any] | None = None
    silver_error: BaseException | None = None

    def table(self, name: str, columns: list[str] | None = None) -> list[dict[str, Any]]:
        layer, table = name.split(".", 1)
        path = self.settings.table_path(layer, table)
        if not (path / "_delta_log").is_dir():
            return []
        return DeltaTable(str(path)).to_pyarrow_table(columns=columns).to_pylist()


@pytest.fixture(scope="module")
def lake(spark: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    """One landing with every bad input, ingested once (and built into Silver once, if Silver exists)."""
    root = tmp_path_factory.mktemp("bad-input") / "lh"
    settings = new_lakehouse(root, pseudonym_key=KEY)
    generated = settings.landing_dir / "generated"
    generate(patients=6, seed=SEED, out=generated, bad_rate=0.3)
    truth = json.loads((generated / "_generator" / "manifest.json").read_text())
    crafted = write_crafted(settings.landing_dir, crafted_files(truth["patients"][0]["id"]))

    # every log record of the runs goes to a file under the root, so the key grep covers the logs too
    log_file = settings.system_dir / "logs" / "bad-input-test.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file)
    handler.setLevel(logging.DEBUG)
    root_logger = logging.getLogger()
    old_level = root_logger.level
    root_logger.setLevel(logging.DEBUG)
    root_logger.addHandler(handler)
    try:
        lake = Lake(settings, generated.relative_to(settings.root_path).as_posix() + "/", truth, crafted, {})
        with run_context("ingest", settings) as run:
            lake.report = ingest(settings, [], run)
        lake.runs.append(run)
        try:
            with run_context("silver", settings) as silver_run:
                lake.silver = pipeline.silver(settings, silver_run)
            lake.runs.append(silver_run)
        except Exception as exc:  # noqa: BLE001 - a Silver crash on bad input is a finding for its tests
            lake.silver_error = exc
        for done in lake.runs:  # batch metrics textfile, unless the run log writes it already
            if not metrics.textfile_path(settings.system_dir / "metrics", done.command).exists():
                metrics.record_run(done, "ok")
        yield lake
    finally:
        root_logger.removeHandler(handler)
        root_logger.setLevel(old_level)
        handler.close()
        set_settings(None)


@pytest.fixture(autouse=True)
def _attached(request: pytest.FixtureRequest) -> None:
    """Tests that read the lake: another module's test may have attached the engine to its own root."""
    if "lake" in request.fixturenames:
        attach(request.getfixturevalue("lake").settings)


def _rows_of_file(lake: Lake, table: str, source_file: str) -> list[dict[str, Any]]:
    return [r for r in lake.table(table) if r["source_file"] == source_file]


# -- Bronze --------------------------------------------------------------------------------------------------
def test_every_source_reconciles_against_the_tables(lake: Lake) -> None:
    """received = bronze + quarantined + duplicates per source, and the report's numbers are the table rows."""
    for source in ("hl7v2", "fhir", "dicom", "unknown"):
        r = lake.report[source]
        assert r["received"] == r["bronze"] + r["quarantined"] + r["duplicates"], (source, r)
        assert r["quarantined"] == len(lake.table(QUARANTINE[source])), source
        if source in BRONZE:
            assert r["bronze"] == len(lake.table(BRONZE[source], ["content_hash"])), source


def test_good_items_are_all_in_bronze(lake: Lake) -> None:
    """Bronze = the generator's distinct good items + the crafted good items: no good item lost, none doubled.

    A shared resource (Organization, Practitioner) sent with different whitespace in two bundles is two verbatim
    Bronze rows, so FHIR is compared by distinct (type, id)."""
    expected = lake.truth["expected"]
    crafted_good = Counter(e.table for c in lake.crafted.values() for e in c.expect if e.table.startswith("bronze."))
    fhir = {(r["resource_type"], r["resource_id"]): r["source_file"]
            for r in lake.table(FHIR, ["resource_type", "resource_id", "source_file"])}
    generated_fhir = Counter(t for (t, _), f in fhir.items() if f.startswith(lake.landing_prefix))
    assert generated_fhir == Counter(expected["fhir"]["resources_by_type"])
    assert len(fhir) == expected["fhir"]["resources"] + crafted_good[FHIR]
    hl7 = lake.table(HL7V2, ["message_type", "trigger_event"])
    assert len(hl7) == expected["hl7v2"]["messages"] + crafted_good[HL7V2]
    # a preamble-less copy of a good instance is a second Bronze row with the same SOP Instance UID
    copies = sum(1 for b in lake.truth["bad_items"] if b["kind"] == "dicom_no_file_meta")
    assert len(lake.table(DICOM, ["sop_instance_uid"])) == expected["dicom"]["instances"] + crafted_good[DICOM] \
        + copies


def test_every_generated_bad_item_is_quarantined_with_a_precise_reason(lake: Lake) -> None:
    planted = lake.truth["bad_items"]
    assert {b["kind"] for b in planted} == set(KIND_REASONS) | set(ACCEPTED), "a kind this test does not know"
    for item in planted:
        if item["kind"] in ACCEPTED:
            assert len(_rows_of_file(lake, ACCEPTED[item["kind"]], lake.landing_prefix + item["file"])) == 1, item
    bad = [b for b in planted if b["kind"] not in ACCEPTED]
    for item in bad:
        table, fragment = KIND_REASONS[item["kind"]]
        source_file = lake.landing_prefix + item["file"]
        rows = _rows_of_file(lake, table, source_file)
        position = item.get("entry_index", item.get("message_index"))
        if position is not None and item["kind"] != "hl7_missing_msh":
            rows = [r for r in rows if r["position"] == position]
        assert len(rows) == 1, (item, rows)
        fragments = (fragment,) if isinstance(fragment, str) else fragment
        assert any(f in rows[0]["reason"].lower() for f in fragments), (item["kind"], rows[0]["reason"])
    generated_quarantined = sum(1 for q in QUARANTINE.values() for r in lake.table(q, ["source_file"])
                                if r["source_file"].startswith(lake.landing_prefix))
    assert generated_quarantined == len(bad)


def test_every_crafted_item_lands_exactly_where_expected(lake: Lake) -> None:
    """Each crafted file's items are in the expected table at the expected position, and nowhere else."""
    tables = [HL7V2, FHIR, DICOM, *QUARANTINE.values()]
    for source_file, item in lake.crafted.items():
        found = [(t, r.get("position", 0), r.get("reason"))  # a DICOM file is one instance: position 0
                 for t in tables for r in _rows_of_file(lake, t, source_file)]
        assert sorted((t, p) for t, p, _ in found) == sorted((e.table, e.position) for e in item.expect), \
            (item.what, found)
        for e in item.expect:
            reason = next(r for t, p, r in found if (t, p) == (e.table, e.position))
            if e.reason is not None:
                assert e.reason in reason.lower(), (item.what, reason)


def test_every_quarantine_row_says_why_and_where(lake: Lake) -> None:
    rows = [r for q in QUARANTINE.values() for r in lake.table(q)]
    assert len(rows) >= len([b for b in lake.truth["bad_items"] if b["kind"] not in ACCEPTED]) + 10
    for r in rows:
        assert r["reason"] and len(r["reason"]) >= 10, r["reason"]
        assert r["source_file"] and r["position"] is not None and r["content_hash"], r
        assert r["raw_size"] == 0 or r["raw"], r["reason"]


def test_wrongly_encoded_files_keep_every_byte(lake: Lake) -> None:
    latin = next(r for r in lake.table(HL7V2) if r["source_file"].endswith("/adt_latin1.hl7"))
    assert latin["charset"] == "iso-8859-1"
    assert latin["raw"].encode("iso-8859-1") == hl7_message("BADIN-LATIN1", family="Müller").encode("latin-1")
    assert "Müller" in latin["raw"]
    for name, table in (("patient_utf16.json", Q_LANDING), ("patient_latin1.json", Q_FHIR)):
        source_file = next(k for k in lake.crafted if k.endswith("/" + name))
        row = _rows_of_file(lake, table, source_file)[0]
        kept = base64.b64decode(row["raw"]) if row["raw_encoding"] == "base64" else row["raw"].encode("iso-8859-1")
        assert kept == lake.crafted[source_file].content and not row["raw_truncated"], name


def test_huge_message_is_kept_whole(lake: Lake) -> None:
    rows = {r["position"]: r for r in lake.table(HL7V2) if r["source_file"].endswith("/huge_obx.hl7")}
    huge = rows[0]
    assert huge["message_control_id"] == "BADIN-HUGE" and len(huge["raw"]) > 0.99 * HUGE_OBX_BYTES
    assert huge["content_hash"] == hashlib.sha256(huge["raw"].encode()).hexdigest()
    assert rows[1]["message_control_id"] == "BADIN-AFTER-HUGE"
    sent = next(c for k, c in lake.crafted.items() if k.endswith("/huge_obx.hl7")).content.decode()
    assert huge["raw"] + "\r" + rows[1]["raw"] == sent
    assert rows[1]["byte_offset"] == len(huge["raw"].encode()) + 1  # + the CR between the two messages


def test_wrong_typed_fhir_is_verbatim_in_bronze(lake: Lake) -> None:
    """Bronze is raw: a resource with wrongly typed primitives is stored byte for byte as sent."""
    bronze = {r["resource_id"]: r for r in lake.table(FHIR)}
    for resource_id in [*WRONG_ONE_FIELD, *WRONG_ALL_FIELDS]:
        row = bronze[resource_id]
        assert row["raw"].encode() == lake.crafted[row["source_file"]].content, resource_id


# -- Silver --------------------------------------------------------------------------------------------------
def _silver_tables(lake: Lake, layer: str) -> dict[str, list[dict[str, Any]]]:
    folder = lake.settings.root_path / layer
    out = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if (path / "_delta_log").is_dir():
            out[f"{layer}.{path.name}"] = DeltaTable(str(path)).to_pyarrow_table().to_pylist()
    return out


def test_silver_does_not_crash_on_bad_input(lake: Lake) -> None:
    assert lake.silver_error is None, f"Silver crashed on bad input: {lake.silver_error!r}"
    assert _silver_tables(lake, "silver"), "Silver wrote no table"


def test_silver_types_or_quarantines_every_wrongly_typed_primitive(lake: Lake) -> None:
    """A value that was present never becomes a silent NULL: the row is quarantined with the failed field named.

    None of these values can be typed correctly (``active: "yes"`` aside, which a lenient reader may type as
    true: then it must not be quarantined for another reason either)."""
    assert lake.silver_error is None, lake.silver_error
    silver_quarantine = [r for n, rows in _silver_tables(lake, "quarantine").items()
                         if n not in QUARANTINE.values() for r in rows]

    def reasons_for(resource_id: str) -> list[str]:
        source_file = f"{lake.settings.landing_dir.name}/crafted/{resource_id}.json"
        return [str(r.get("reason")) for r in silver_quarantine
                if r.get("source_file") == source_file or resource_id in str(r.get("raw", ""))]

    for resource_id, (name, _) in WRONG_ONE_FIELD.items():
        reasons = reasons_for(resource_id)
        if name == "active" and not reasons:
            continue
        assert reasons, f"{resource_id}: wrongly typed {name} is in no Silver quarantine table"
        assert all(name.lower() in reason.lower() for reason in reasons), (resource_id, name, reasons)
    for resource_id, names in WRONG_ALL_FIELDS.items():
        reasons = reasons_for(resource_id)
        assert reasons and all(any(n.lower() in r.lower() for n in names) for r in reasons), (resource_id, reasons)


def test_silver_reconciles_with_bronze(lake: Lake) -> None:
    """Per domain, the Silver report's silver + quarantined (+ merged duplicates) = its Bronze input, and every
    generated patient is in silver.patient (written to the issue 6 contract: check the key names when it lands)."""
    assert lake.silver_error is None, lake.silver_error
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            keys = set(node)
            if "silver" in keys and keys & {"quarantined", "quarantine"} and keys & {"bronze", "bronze_input", "input",
                                                                                   "received"}:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(lake.silver)
    assert found, f"the Silver report has no per-domain silver/quarantined/input counts: {lake.silver}"
    for counts in found:
        given = next(counts[k] for k in ("bronze", "bronze_input", "input", "received") if k in counts)
        kept = counts["silver"] + counts.get("quarantined", counts.get("quarantine", 0))
        accounted = ("duplicates", "merged", "deduplicated", "superseded", "not_in_scope")
        assert kept + sum(counts.get(k, 0) for k in accounted) == given, counts
    patients = _silver_tables(lake, "silver").get("silver.patient", [])
    assert len(patients) >= lake.truth["expected"]["patients"]["total"]


# -- security basics -----------------------------------------------------------------------------------------
def _listening_on(port: int) -> set[str]:
    """Local addresses with a TCP socket in LISTEN state on ``port`` (from /proc/net/tcp and tcp6)."""
    found: set[str] = set()
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(addr_hex)
            words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # little-endian 32-bit words
            addr = ipaddress.ip_address(words if width == 16 else raw[::-1])
            found.add(str(getattr(addr, "ipv4_mapped", None) or addr))  # gRPC binds 127.0.0.1 as ::ffff:127.0.0.1
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads listening sockets from /proc/net/tcp")
def test_listen_and_serve_bind_to_loopback_by_default(lake: Lake) -> None:
    """`lakehouse listen` (MLLP) and `lakehouse serve` (Flight SQL) listen on 127.0.0.1 only, unless told."""
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for name in ("listen", "serve"):
        host = next(p for p in commands[name].params if p.name == "host")
        assert host.default == "127.0.0.1", name
    with BackgroundListener(lake.settings, ListenerConfig(port=0)) as mllp:
        assert _listening_on(mllp.port) == {"127.0.0.1"}
    with FlightSqlServer(lake.settings) as flight:
        assert _listening_on(flight.port) == {"127.0.0.1"}


@pytest.mark.fast
def test_serve_offers_tls() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert {"tls_cert", "tls_key"} <= {p.name for p in commands["serve"].params}


@pytest.mark.fast
def test_listen_offers_tls() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert {"tls_cert", "tls_key"} <= {p.name for p in commands["listen"].params}


# -- secrets -------------------------------------------------------------------------------------------------
def test_pseudonym_key_is_in_no_file_after_ingest_and_silver(lake: Lake) -> None:
    """The key is in no log, run record, OpenLineage event, metrics textfile or table under the root."""
    root = lake.settings.root_path
    files = [p for p in root.rglob("*") if p.is_file()]
    rels = {p.relative_to(root).as_posix() for p in files}
    assert any(r.startswith("_system/runs/") for r in rels), "no run records"
    assert "_system/openlineage/events.jsonl" in rels, "no OpenLineage events"
    assert any(r.startswith("_system/metrics/") and r.endswith(".prom") for r in rels), "no metrics textfile"
    assert (root / "_system/logs/bad-input-test.log").stat().st_size > 0, "nothing was logged"
    needles = [KEY.encode(), KEY.encode("utf-16-le"), base64.b64encode(KEY.encode()), KEY.encode().hex().encode()]
    leaks = [p.relative_to(root).as_posix() for p in files if any(n in p.read_bytes() for n in needles)]
    assert leaks == []
    for run in lake.runs:
        assert KEY not in json.dumps(run.settings.redacted())
