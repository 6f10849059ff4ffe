"""Landing cannot be tricked: links and special files are never followed, same-name inputs both land, a source
that contains the root is refused, size limits and a bounded inflate for deflated DICOM, and a file that fails
ingestion is quarantined while the rest of its group loads."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pydicom.filereader
import pytest
from pydicom.data import get_testdata_file
from pyspark.sql import functions as F

from bronze import dicom
from bronze.job import SOURCES, _load_sources, _Writer, ingest
from bronze.landing import (
    MAX_FILE_BYTES,
    SYMLINK_REASON,
    ManifestIndex,
    copy_in,
    landing_file,
    pending_files,
    read_manifest,
)
from bronze.schemas import MANIFEST_TABLE
from lakehouse.errors import ConfigError
from lakehouse.runlog import Run
from lakehouse.staging import staging

MSG = "MSH|^~\\&|LAB|NORTH|EHR|NORTH|20240101120000||ADT^A01|{cid}|P|2.5.1\rPID|1||{cid}^^^NORTH^MR\r"


def _deflate_bomb(path: Path, inflated_mib: int) -> Path:
    """A Part 10 file whose file meta says Deflated Explicit VR Little Endian, followed by ``inflated_mib`` MiB of
    zeros deflated (~1000:1)."""
    real = get_testdata_file("image_dfl.dcm")
    with open(real, "rb") as fh:
        pydicom.filereader.read_preamble(fh, True)
        pydicom.filereader._read_file_meta_info(fh)
        meta_end = fh.tell()
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = b"".join(deflater.compress(b"\0" * (1 << 20)) for _ in range(inflated_mib)) + deflater.flush()
    path.write_bytes(Path(real).read_bytes()[:meta_end] + body)
    return path


@pytest.mark.fast
def test_deflated_dicom_is_inflated_within_a_bound(tmp_path: Path) -> None:
    real = get_testdata_file("image_dfl.dcm")
    assert dicom.read_header(real, os.path.getsize(real)).ds.SOPInstanceUID  # a real deflated file still reads
    bomb = _deflate_bomb(tmp_path / "bomb.dcm", 200)
    assert bomb.stat().st_size < 300_000
    with pytest.raises(dicom.Rejected, match="decompression bomb"):
        dicom.read_header(str(bomb), bomb.stat().st_size)


@pytest.mark.fast
def test_copy_in_refuses_links_keeps_same_names_apart_and_refuses_a_source_holding_the_root(
        make_lakehouse, tmp_path: Path) -> None:
    settings = make_lakehouse(attach_engine=False)
    secret = tmp_path / "pseudonym.key"
    secret.write_text("not for landing")
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, cid in ((a, "1"), (b, "2")):
        folder.mkdir()
        (folder / "adt.hl7").write_text(MSG.format(cid=cid))
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "key.hl7").symlink_to(secret)
    (drop / "elsewhere").symlink_to(tmp_path / "a", target_is_directory=True)
    os.mkfifo(drop / "pipe.hl7")
    result = copy_in(settings, [a / "adt.hl7", b / "adt.hl7", drop], "batch", set())
    names = sorted(p.name for p in result.copied)
    assert names == ["adt.hl7", "adt~2.hl7"], names
    assert sorted(p.read_bytes().decode() for p in result.copied) == [MSG.format(cid="1"), MSG.format(cid="2")]
    assert {Path(f.rel).name: f.reason for f in result.refused} == {
        "key.hl7": SYMLINK_REASON, "elsewhere": SYMLINK_REASON,
        "pipe.hl7": "not a regular file (FIFO, device or socket): not opened"}
    assert not any(f.opened for f in result.refused)
    landed = [p for p in settings.landing_dir.rglob("*") if p.is_file()]
    assert all("not for landing" not in p.read_text() for p in landed)
    with pytest.raises(ConfigError, match="contains the lakehouse root"):
        copy_in(settings, [settings.root_path.parent], "batch2", set())


@pytest.mark.fast
def test_landing_scan_reports_links_and_unreadable_files_without_following_them(make_lakehouse,
                                                                               tmp_path: Path) -> None:
    settings = make_lakehouse(attach_engine=False)
    inbox = settings.landing_dir / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "ok.hl7").write_text(MSG.format(cid="1"))
    (inbox / "outside.hl7").symlink_to(tmp_path / "nowhere" / "x.hl7")  # dangling and outside the root
    locked = inbox / "locked.hl7"
    locked.write_text(MSG.format(cid="2"))
    locked.chmod(0)
    try:
        pending, _ = pending_files(settings, read_manifest(settings, settings.table_path("_system", "none")))
    finally:
        locked.chmod(0o600)
    by_name = {Path(f.rel).name: f for f in pending}
    assert by_name["ok.hl7"].format == "hl7v2"
    assert by_name["outside.hl7"].reason == SYMLINK_REASON and not by_name["outside.hl7"].opened
    if os.geteuid() != 0:  # root reads a 000 file anyway
        assert by_name["locked.hl7"].reason.startswith("cannot be read")


@pytest.mark.fast
def test_landing_scan_order_names_and_skips(make_lakehouse, tmp_path: Path) -> None:
    """Files of a folder in name order before its sub-folders; ``_``/``.`` names skipped at any depth; a link to a
    folder reported, not entered; a file already in the manifest with the same size and mtime skipped unread."""
    settings = make_lakehouse(attach_engine=False)
    landing = settings.landing_dir
    for rel in ("b.hl7", "a.hl7", "z/2.hl7", "z/1.hl7", "m/x.hl7", "_generator/g.hl7", "m/.tmp.hl7",
                "m/_skip/y.hl7", ".hidden/h.hl7"):
        (landing / rel).parent.mkdir(parents=True, exist_ok=True)
        (landing / rel).write_text(MSG.format(cid=rel))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "e.hl7").write_text(MSG.format(cid="e"))
    (landing / "k").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    pending, skipped = pending_files(settings, read_manifest(settings, settings.table_path("_system", "none")))
    assert [f.rel for f in pending] == ["landing/a.hl7", "landing/b.hl7", "landing/k", "landing/m/x.hl7",
                                        "landing/z/1.hl7", "landing/z/2.hl7"]
    assert skipped == 0
    assert all(f.path == settings.root_path / f.rel for f in pending)
    assert [f.reason for f in pending if f.rel == "landing/k"] == [SYMLINK_REASON]
    a = pending[0]
    seen = ManifestIndex(by_stat={(a.rel, a.size, a.mtime_ns)}, by_hash=set(), hashes=set())
    again, skipped = pending_files(settings, seen)
    assert [f.rel for f in again] == [f.rel for f in pending[1:]] and skipped == 1


@pytest.mark.fast
def test_files_over_their_format_limit_are_refused_with_the_reason(make_lakehouse, tmp_path: Path) -> None:
    settings = make_lakehouse(attach_engine=False)
    big = settings.landing_dir / "big.hl7"
    big.parent.mkdir(parents=True)
    with open(big, "wb") as fh:
        fh.write(MSG.format(cid="1").encode())
        fh.truncate(MAX_FILE_BYTES["hl7v2"] + 1)  # sparse: no disk used
    item = landing_file(settings, big)
    assert item.format == "unknown" and "over the 512 MiB limit for hl7v2 files" in item.reason


def test_links_collisions_bombs_and_poison_files_end_in_quarantine_while_the_rest_ingests(
        settings, catalog, tmp_path: Path) -> None:
    secret = tmp_path / "pseudonym.key"
    secret.write_text("KEY-MATERIAL-NOT-FOR-LANDING")
    inbox = tmp_path / "inbox"
    (inbox / "a").mkdir(parents=True)
    (inbox / "b").mkdir()
    (inbox / "a" / "adt.hl7").write_text(MSG.format(cid="A1"))
    (inbox / "b" / "adt.hl7").write_text(MSG.format(cid="B1"))
    (inbox / "a" / "key.hl7").symlink_to(secret)
    _deflate_bomb(inbox / "a" / "bomb.dcm", 100)
    report = ingest(settings, [inbox / "a" / "adt.hl7", inbox / "b" / "adt.hl7", inbox / "a"], Run("ingest", settings))
    assert report["hl7v2"]["bronze"] == 2  # both same-name files landed and loaded
    assert report["files"]["refused"] == 1
    quarantine = {Path(r.source_file).name: r.reason for r in catalog.read("quarantine.landing").collect()}
    assert quarantine["key.hl7"] == SYMLINK_REASON
    dicom_q = {Path(r.source_file).name: r.reason for r in catalog.read("quarantine.dicom").collect()}
    assert "decompression bomb" in dicom_q["bomb.dcm"]
    raw = catalog.read("quarantine.landing").select(F.unbase64("raw").cast("string").alias("raw")).collect()
    assert all("KEY-MATERIAL" not in (r.raw or "") for r in raw)

    # a file that fails ingestion (here: it vanishes between the landing scan and the engine's read) is retried
    # alone, then quarantined; the other file of its group loads
    for name, cid in (("x.hl7", "X1"), ("y.hl7", "Y1")):
        (settings.landing_dir / "late").mkdir(exist_ok=True)
        (settings.landing_dir / "late" / name).write_text(MSG.format(cid=cid))
    (settings.landing_dir / "late" / "gone.dcm").write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    (settings.landing_dir / "late" / "ok.dcm").write_bytes(Path(get_testdata_file("MR_small.dcm")).read_bytes())
    manifest = read_manifest(settings, catalog.path(MANIFEST_TABLE))
    pending, _ = pending_files(settings, manifest)
    assert {Path(f.rel).name for f in pending} == {"x.hl7", "y.hl7", "gone.dcm", "ok.dcm"}
    (settings.landing_dir / "late" / "gone.dcm").unlink()
    run = Run("ingest", settings)
    out: dict = {}
    by_format = {s: [f for f in pending if f.format == s] for s in SOURCES}
    with staging(catalog.spark, settings, run.run_id) as scratch:
        _load_sources(catalog.spark, _Writer(catalog, run), scratch, by_format, run.run_id, out)
    assert out["files_poisoned"] == 1
    assert out["hl7v2"]["bronze"] == 2
    poisoned = {Path(r.source_file).name: r.reason for r in catalog.read("quarantine.landing").collect()}
    assert poisoned["gone.dcm"].startswith("dicom file failed ingestion twice (in its group and alone)")
    assert catalog.read("bronze.dicom_instances").filter(F.col("source_file").endswith("ok.dcm")).count() == 1
