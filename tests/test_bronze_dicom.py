"""DICOM landing -> Bronze: header JSON without pixel data, promoted attributes, truncated and fake files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from bronze.job import ingest
from bronze.landing import detect_format
from lakehouse.runlog import Run


def test_dicom_instances_and_truncated_file(settings, catalog, tmp_path: Path) -> None:
    inbox = tmp_path / "pacs"
    inbox.mkdir()
    names = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"]
    for name in names:
        shutil.copy(get_testdata_file(name), inbox / name.split(".")[0])  # no extension, as PACS dumps
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (inbox / "truncated").write_bytes(ct[: len(ct) - 5000])
    (inbox / "fake").write_bytes(b"\x00" * 128 + b"DICM" + b"\x01\x02garbage" * 10)
    report = ingest(settings, [inbox], Run("ingest", settings))["dicom"]
    assert report == {"received": 5, "bronze": 3, "quarantined": 2, "duplicates": 0}
    rows = {r.source_file.rsplit("/", 1)[-1]: r for r in catalog.read("bronze.dicom_instances").collect()}
    for name in names:
        ds = pydicom.dcmread(get_testdata_file(name), stop_before_pixels=True)
        row = rows[name.split(".")[0]]
        assert row.sop_instance_uid == ds.SOPInstanceUID and row.study_instance_uid == ds.StudyInstanceUID
        assert row.modality == ds.Modality and row.rows == ds.Rows and row.columns == ds.Columns
        assert row.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID
        header = json.loads(row.header_json)
        assert "7FE00010" not in header and header["00080018"]["Value"] == [ds.SOPInstanceUID]
        assert row.file_size == Path(get_testdata_file(name)).stat().st_size
    bad = {r.source_file.rsplit("/", 1)[-1]: r for r in catalog.read("quarantine.dicom").collect()}
    assert "truncated DICOM" in bad["truncated"].reason and bad["truncated"].raw_encoding == "base64"
    assert "fake" in bad


@pytest.mark.fast
def test_detection_from_content() -> None:
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    assert detect_format(ct[:65536]).format == "dicom"
    assert detect_format(ct[128 + 4 + 0:]).format in ("dicom", "unknown")
    assert detect_format(b"\xef\xbb\xbf\x0b MSH|^~\\&|").format == "hl7v2"
    assert detect_format(b'  {"resourceType": "Patient"}').format == "fhir"
    assert detect_format(b'{"a": 1}').format == "unknown"
    assert detect_format(bytes(range(256))).format == "unknown"
    assert detect_format(b"").reason == "empty file"
