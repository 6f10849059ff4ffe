"""DICOM landing -> Bronze: header JSON without pixel data, promoted attributes, truncated and fake files."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_charset_files, get_palette_files, get_testdata_file, get_testdata_files
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import ExplicitVRLittleEndian

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
    assert detect_format(ct[128 + 4:]).format == "dicom"  # file meta group without the preamble
    for bare in ("ExplVR_BigEndNoMeta.dcm", "ExplVR_LitEndNoMeta.dcm", "rtstruct.dcm"):  # no preamble, no meta
        assert detect_format(Path(get_testdata_file(bare)).read_bytes()[:65536]).format == "dicom", bare
    assert detect_format(b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100\x08\x00\x01\x00CS\x00\x00").format == "unknown"
    assert detect_format(b"\x08\x00\x05\x00\xff\xff\x00\x00" + b"\x00" * 64).format == "unknown"
    assert detect_format(b"\x08\x00\x05\x00XY\x02\x00ab\x08\x00\x06\x00").format == "unknown"
    assert detect_format(b"\xef\xbb\xbf\x0b MSH|^~\\&|").format == "hl7v2"
    assert detect_format(b'  {"resourceType": "Patient"}').format == "fhir"
    assert detect_format(b'{"a": 1}').format == "unknown"
    assert detect_format(bytes(range(256))).format == "unknown"
    assert detect_format(b"").reason == "empty file"


# -- every file pydicom ships, as scanners and archives write them ---------------------------------------------
PYDICOM_DATA = Path(pydicom.__file__).parent / "data"
SEG_1BIT = ("test_files/liver_1frame.dcm", "test_files/liver_expb_1frame.dcm")  # Bits Allocated 1, packed bits
# the files pydicom ships broken on purpose (README.txt of its test files), and where each must end
DELIBERATELY_BROKEN = {
    "test_files/MR_truncated.dcm": "truncated DICOM: Pixel Data declares 8192 bytes, the file ends after 8130",
    "test_files/rtplan_truncated.dcm": "truncated DICOM: element (300A,00B0) BeamSequence declares 976 bytes, "
                                       "the file ends after 711",
    "test_files/badVR.dcm": "invalid DICOM: Number of Frames (0028,0008) is '1A', not a frame count",
}
# valid per their README although unusual: they must land in Bronze
UNUSUAL_BUT_VALID = (
    "test_files/JPEG2000-embedded-sequence-delimiter.dcm",  # delimiter bytes inside a fragment
    "test_files/GDCMJ2K_TextGBR.dcm", "test_files/J2K_pixelrep_mismatch.dcm",  # odd codestreams, valid items
    "test_files/MR_small_RLE.dcm", "test_files/MR_small_jp2klossless.dcm", "test_files/MR_small_jpeg_ls_lossless.dcm",
    "test_files/MR_small_padded.dcm", "test_files/SC_rgb_small_odd.dcm", "test_files/SC_rgb_small_odd_big_endian.dcm",
    "test_files/SC_ybr_full_422_uncompressed.dcm",  # 4:2:2 subsampled: 2/3 of the RGB byte count
    "test_files/image_dfl.dcm",  # deflated data set
    "test_files/ExplVR_LitEndNoMeta.dcm", "test_files/ExplVR_BigEndNoMeta.dcm", "test_files/rtstruct.dcm",  # bare
    "test_files/test-SR.dcm", "test_files/reportsi.dcm", "test_files/waveform_ecg.dcm", "test_files/rtplan.dcm",
    "test_files/rtdose_rle.dcm", "test_files/SC_rgb_rle_32bit_2frame.dcm", "palettes/hotiron.dcm", *SEG_1BIT,
)
BARE_SYNTAX = {"test_files/ExplVR_LitEndNoMeta.dcm": "1.2.840.10008.1.2.1",
               "test_files/ExplVR_BigEndNoMeta.dcm": "1.2.840.10008.1.2.2",
               "test_files/rtstruct.dcm": "1.2.840.10008.1.2"}


def _pydicom_files() -> list[Path]:
    """Everything under pydicom/data but its Python modules: get_testdata_files(), charset and palette files,
    the DICOMDIR trees, and the non-DICOM files beside them (README, JSON, dumps, ICC profile, gzip)."""
    listed = {Path(p).resolve() for p in (*get_testdata_files(), *get_charset_files(), *get_palette_files())
              if Path(p).is_file()}  # get_testdata_files() lists the DICOMDIR tree's folders too
    walked = {p.resolve() for p in PYDICOM_DATA.rglob("*")
              if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".py", ".pyc")}
    assert listed <= walked and len(walked) > 150, (len(listed), len(walked))
    return sorted(walked)


def _pydicom_verdict(path: Path) -> str:
    """'complete' when pydicom reads the whole file (without the reader under test) and every value it declares,
    pixel data included (native: get_expected_length; encapsulated: one frame per frame), is there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid values of its deliberately bad files
        return _verdict(path)


def _verdict(path: Path) -> str:
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:  # noqa: BLE001 - a verdict, not an error
        return f"unreadable ({exc.__class__.__name__})"
    for group in (ds.file_meta, ds):
        for tag in group.keys():
            raw = group.get_item(tag)
            if isinstance(raw, RawDataElement) and isinstance(raw.value, bytes) and raw.length != 0xFFFFFFFF \
                    and len(raw.value) < raw.length:
                return f"short element {tag}"
    if "PixelData" not in ds:
        return "complete"
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
        syntax = ds.file_meta.get("TransferSyntaxUID")
        if syntax is not None and syntax.is_compressed:
            got = sum(1 for _ in generate_frames(ds.PixelData, number_of_frames=frames))
            return "complete" if got == frames else f"{got} of {frames} frames"
        return "complete" if len(ds.PixelData) >= get_expected_length(ds) else "short pixel data"
    except Exception as exc:  # noqa: BLE001
        return f"pixel data not interpretable ({exc.__class__.__name__})"


def _crafted(inbox: Path) -> dict[str, str | None]:
    """Objects pydicom does not ship: KO and PR without pixel data, a multi-frame 1-bit SEG whose bit count is not
    a multiple of 8, the same SEG cut by 2 bytes, a Part 10 file without its preamble, encapsulated pixel data cut
    inside a fragment and before the sequence delimiter. Name -> expected reason (None: Bronze)."""
    def instance(sop_class: str, uid: str, modality: str, **attrs: object) -> bytes:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta, ds.preamble = meta, b"\0" * 128
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality, ds.PatientID = sop_class, uid, modality, "CRAFT-1"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = "2.25.4711", f"{uid}.1"
        for key, value in attrs.items():
            setattr(ds, key, value)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return out.getvalue()

    seg = {"Rows": 5, "Columns": 5, "NumberOfFrames": 3, "SamplesPerPixel": 1, "BitsAllocated": 1, "BitsStored": 1,
           "HighBit": 0, "PixelRepresentation": 0, "PhotometricInterpretation": "MONOCHROME2"}
    jpeg2000 = Path(get_testdata_file("JPEG2000.dcm")).read_bytes()  # one fragment, then the delimiter
    files = {
        "ko.dcm": (instance("1.2.840.10008.5.1.4.1.1.88.59", "2.25.4712", "KO"), None),
        "pr.dcm": (instance("1.2.840.10008.5.1.4.1.1.11.1", "2.25.4713", "PR"), None),
        # 5 x 5 x 3 frames = 75 bits -> 10 bytes (ceil(75 / 8)), not 75 bytes
        "seg_1bit_3frames.dcm": (instance("1.2.840.10008.5.1.4.1.1.66.4", "2.25.4714", "SEG", **seg,
                                          PixelData=b"\x5a" * 10), None),
        "seg_1bit_short.dcm": (instance("1.2.840.10008.5.1.4.1.1.66.4", "2.25.4715", "SEG", **seg,
                                        PixelData=b"\x5a" * 8),
                               "truncated DICOM: Pixel Data has 8 bytes, 10 expected for 3 frame(s) of 5x5x1 at 1 "
                               "bits allocated (MONOCHROME2)"),
        "ct_without_preamble.dcm": (Path(get_testdata_file("CT_small.dcm")).read_bytes()[132:], None),
        "jpeg2000_cut_in_fragment.dcm": (jpeg2000[:-100], "truncated DICOM: fragment 1 of the encapsulated pixel "
                                                          f"data needs {len(jpeg2000) - 8} bytes, the file has "
                                                          f"{len(jpeg2000) - 100}"),
        "jpeg2000_no_delimiter.dcm": (jpeg2000[:-8], "truncated DICOM: the file ends after fragment 1, without the "
                                                     "sequence delimiter"),
    }
    (inbox / "crafted").mkdir()
    for name, (content, _) in files.items():
        (inbox / "crafted" / name).write_bytes(content)
    return {name: reason for name, (_, reason) in files.items()}


def test_every_file_pydicom_ships_lands_or_is_quarantined_with_the_right_reason(settings, catalog,
                                                                               tmp_path: Path) -> None:
    inbox = tmp_path / "archive"
    files = _pydicom_files()
    for path in files:
        target = inbox / "pydicom" / path.relative_to(PYDICOM_DATA.resolve())
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    crafted = _crafted(inbox)
    report = ingest(settings, [inbox], Run("ingest", settings))

    def by_name(rows: list) -> dict[str, object]:
        return {r.source_file.split("/archive/", 1)[1]: r for r in rows}

    bronze = by_name(catalog.read("bronze.dicom_instances").collect())
    quarantined = by_name(catalog.read("quarantine.dicom").collect())
    unknown = by_name(catalog.read("quarantine.landing").collect())
    assert not set(bronze) & set(quarantined) and not set(bronze) & set(unknown)

    # every file is somewhere: one identical pair is landed once (copy-in skips content already landed)
    digests: dict[str, list[str]] = {}
    for path in files:
        digests.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), []).append(
            "pydicom/" + path.relative_to(PYDICOM_DATA.resolve()).as_posix())
    landed = set(bronze) | set(quarantined) | set(unknown)
    for names in digests.values():
        assert len(set(names) & landed) == 1, names
    assert report["files"]["already_landed"] == sum(len(n) - 1 for n in digests.values()) == 1
    dicom = report["dicom"]
    assert dicom["received"] == dicom["bronze"] + dicom["duplicates"] + dicom["quarantined"]
    assert dicom["received"] == len(bronze) + len(quarantined) and dicom["quarantined"] == len(quarantined)
    assert dicom["duplicates"] == 0 and report["unknown"]["quarantined"] == len(unknown)
    assert all(r.reason for r in [*quarantined.values(), *unknown.values()])

    for name, row in quarantined.items():
        assert row.reason.split(":")[0] in ("truncated DICOM", "invalid DICOM", "not a DICOM instance",
                                            "DICOM image without pixel data", "unreadable DICOM header",
                                            "not DICOM"), (name, row.reason)
        if name.startswith("pydicom/"):
            verdict = _pydicom_verdict(PYDICOM_DATA / name.removeprefix("pydicom/"))
            # truncated only when pydicom itself finds a value or the pixel data short
            assert row.reason.startswith("truncated") == (verdict != "complete" and "short" in verdict), \
                (name, verdict, row.reason)
    for name, row in bronze.items():
        if name.startswith("pydicom/"):
            assert _pydicom_verdict(PYDICOM_DATA / name.removeprefix("pydicom/")) == "complete", name
        assert "7FE00010" not in json.loads(row.header_json) and row.sop_instance_uid

    for rel, reason in DELIBERATELY_BROKEN.items():
        assert quarantined[f"pydicom/{rel}"].reason == reason
    for rel in UNUSUAL_BUT_VALID:
        assert f"pydicom/{rel}" in bronze, (rel, quarantined.get(f"pydicom/{rel}"))
    for rel, syntax in BARE_SYNTAX.items():  # no file meta: the encoding pydicom inferred
        assert bronze[f"pydicom/{rel}"].transfer_syntax_uid == syntax
    for rel in SEG_1BIT:
        row = bronze[f"pydicom/{rel}"]
        header = json.loads(row.header_json)
        assert header["00280100"]["Value"] == [1] and row.sop_class_uid == "1.2.840.10008.5.1.4.1.1.66.4"
        assert (row.modality, row.rows, row.columns, row.number_of_frames) == ("SEG", 512, 512, 1)
    dicomdirs = [n for n in [*quarantined, *bronze] if "DICOMDIR" in n]
    assert len(dicomdirs) == 8 and all(quarantined[n].reason.startswith("not a DICOM instance: a DICOMDIR")
                                       for n in dicomdirs)
    no_uid = ("chrSQEncoding.dcm", "chrSQEncoding1.dcm", "priv_SQ.dcm", "nested_priv_SQ.dcm", "UN_sequence.dcm",
              "no_meta_group_length.dcm", "empty_charset_LEI.dcm", "meta_missing_tsyntax.dcm")
    for name in no_uid:  # pydicom's fragments for reader edge cases, not storable instances
        [row] = [r for n, r in quarantined.items() if n.endswith("/" + name)]
        assert row.reason == "not a DICOM instance: no SOP Instance UID (0008,0018) in the data set"
    headers_only = [n for n, r in quarantined.items() if r.reason.startswith("DICOM image without pixel data")]
    assert len(headers_only) == 3 + 50  # 3 charset CR images and the TINY_ALPHA CT images, all without 7FE0
    assert {quarantined[n].reason.split(":")[0] for n in quarantined if n.startswith("pydicom/")} == {
        "truncated DICOM", "invalid DICOM", "not a DICOM instance", "DICOM image without pixel data"}
    # not DICOM at all: text, JSON, dumps, an ICC profile, a gzip, and no_meta.dcm (its data set starts one
    # byte late, so its first tag reads (0820,0500): pydicom cannot read it either)
    assert all(not n.endswith(".dcm") for n in unknown if n != "pydicom/test_files/no_meta.dcm")
    assert _pydicom_verdict(PYDICOM_DATA / "test_files/no_meta.dcm") == "short element (0820,0500)"

    for name, reason in crafted.items():
        if reason is None:
            assert f"crafted/{name}" in bronze, quarantined.get(f"crafted/{name}")
        else:
            assert quarantined[f"crafted/{name}"].reason == reason
    assert bronze["crafted/ct_without_preamble.dcm"].sop_instance_uid == bronze["pydicom/test_files/CT_small.dcm"] \
        .sop_instance_uid
