"""Write the population's imaging studies as small, valid DICOM Part 10 files with realistic PHI in the header."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from synthetic import model, vocab
from synthetic.model import Encounter, Patient, Pool, Series, Study

PRIVATE_GROUP = 0x0011
PRIVATE_CREATOR = "GENHOSP PACS 1.0"
IMPLEMENTATION_UID = "2.25.286349210391754381027730474373957021963"  # fixed: the generator's implementation


@dataclass(frozen=True)
class Instance:
    path: str  # relative to the landing dir
    patient: Patient
    study: Study
    series: Series
    sop_uid: str


def _pn(family: str, given: str, middle: str = "", prefix: str = "") -> str:
    return "^".join([family, given, middle, prefix]).rstrip("^")


def instance_paths(study: Study) -> list[tuple[Series, str, str]]:
    out = []
    for s in study.series:
        for sop_uid, number in s.instances:
            if study.dicomdir_layout:  # PACS export / DICOMDIR style: no extensions
                path = f"dicom/export_{study.id}/SE{s.number:03d}/IM{number:05d}"
            else:
                path = f"dicom/{study.uid}/{s.uid}/{sop_uid}.dcm"
            out.append((s, sop_uid, path))
    return out


def _pixels(rng: random.Random, eight_bit: bool) -> bytes:
    if eight_bit:
        return rng.randbytes(64)
    return bytes(b if i % 2 == 0 else b & 0x0F for i, b in enumerate(rng.randbytes(128)))  # 12 of 16 bits


def _content_time(st: Study, number: int) -> str:
    return st.time.replace(second=(st.time.second + number) % 60).strftime("%H%M%S")


def build_dataset(p: Patient, e: Encounter, st: Study, s: Series, sop_uid: str, number: int, pool: Pool,
                  rng: random.Random) -> Dataset:
    spec = vocab.IMAGING[st.modality]
    sop_class = str(spec["sop_class"])
    institution = e.organization
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: some names are not ASCII
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL" if st.modality in ("CT", "MR") else ""]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    date, time = st.time.strftime("%Y%m%d"), st.time.strftime("%H%M%S")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime, ds.SeriesTime = time, time
    if st.modality in ("CT", "MR"):  # these scanners state their offset; the others send local time bare
        ds.TimezoneOffsetFromUTC = st.time.astimezone(model.LOCAL_TZ).strftime("%z")
    ds.ContentTime = _content_time(st, number)
    ds.AcquisitionDateTime = f"{date}{time}"
    ds.AccessionNumber = st.accession
    ds.Modality = st.modality
    ds.Manufacturer = "SYNTHETIC"
    ds.InstitutionName = institution.name
    ds.InstitutionAddress = f"{institution.address.line}, {institution.address.city}, {institution.address.state}"
    ds.ReferringPhysicianName = _pn(st.referring.family, st.referring.given, "", "Dr.")
    ds.StationName = f"{st.modality}0{rng.randint(1, 4)}"
    ds.StudyDescription = f"{st.modality} {vocab.BODY_PARTS[st.body_part][2]}"
    ds.SeriesDescription = s.description
    ds.PatientName = _pn(p.family, p.given, p.middle, p.prefix)
    ds.PatientID = p.mrn
    ds.IssuerOfPatientID = model.ASSIGNING_AUTHORITY
    ds.PatientBirthDate = p.birth_date.strftime("%Y%m%d")
    ds.PatientSex = "M" if p.gender == "male" else "F"
    age = (st.time.date() - p.birth_date).days // 365
    ds.PatientAge = f"{min(age, 999):03d}Y"
    ds.PatientAddress = f"{p.address.line}, {p.address.city}, {p.address.state} {p.address.zip}"
    ds.PatientTelephoneNumbers = p.phone
    other = Dataset()
    other.PatientID = p.ssn
    other.IssuerOfPatientID = "USSSA"
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = Sequence([other])
    ds.BodyPartExamined = st.body_part
    ds.StudyInstanceUID = st.uid
    ds.SeriesInstanceUID = s.uid
    ds.StudyID = st.accession[-8:]
    ds.SeriesNumber = s.number
    ds.InstanceNumber = number
    request = Dataset()
    request.AccessionNumber = st.accession
    request.RequestedProcedureID = f"RP{st.accession[3:]}"
    request.ScheduledProcedureStepID = f"SPS{st.accession[3:]}"
    request.RequestedProcedureDescription = ds.StudyDescription
    ds.RequestAttributesSequence = Sequence([request])
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", p.mrn)
    block.add_new(0x02, "LO", f"{p.given} {p.family}")
    block.add_new(0x03, "SH", p.phone)
    block.add_new(0x04, "LO", e.visit_number)
    eight_bit = st.modality == "US"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = 8 if eight_bit else 16
    ds.BitsStored = 8 if eight_bit else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if st.modality == "CT":
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
    ds.PixelData = _pixels(rng, eight_bit)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = "LAKEHOUSE_SYN1"
    ds.file_meta = meta
    return ds


def to_bytes(ds: Dataset, file_meta: bool = True) -> bytes:
    buffer = io.BytesIO()
    if file_meta:
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    else:  # a bare dataset (no preamble, no DICM, no group 0002), as old ACR-NEMA style archives hold
        bare = Dataset()
        bare.update(ds)
        pydicom.dcmwrite(buffer, bare, implicit_vr=True, little_endian=True)
    return buffer.getvalue()


def _element_bytes(tag: int, vr: str, value: object) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_data_element(fp, DataElement(tag, vr, value))
    return fp.getvalue()


def _series_elements(s: Series) -> list[bytes]:
    return [_element_bytes(0x0008103E, "LO", s.description), _element_bytes(0x0020000E, "UI", s.uid),
            _element_bytes(0x00200011, "IS", s.number)]


def _instance_elements(sop_uid: str, number: int, content_time: str, pixels: bytes) -> list[bytes]:
    return [_element_bytes(0x00020003, "UI", sop_uid), _element_bytes(0x00080018, "UI", sop_uid),
            _element_bytes(0x00200013, "IS", number), _element_bytes(0x00080033, "TM", content_time),
            _element_bytes(0x7FE00010, "OB" if len(pixels) == 64 else "OW", pixels)]


def study_files(p: Patient, e: Encounter, st: Study, pool: Pool, rng: random.Random) -> list[bytes]:
    """All instances of a study, in series/instance order.

    pydicom writes the first instance; each other one is that file with the elements that differ (UIDs, numbers,
    description, content time, pixels) re-encoded by pydicom and spliced in when the lengths match, which they do
    by construction of UIDs and descriptions. Several times faster than a full write per instance.
    """
    first_series = st.series[0]
    first_uid, first_number = first_series.instances[0]
    first = build_dataset(p, e, st, first_series, first_uid, first_number, pool, rng)
    template = to_bytes(first)
    out = [template]
    old = _series_elements(first_series) + _instance_elements(first_uid, first_number, first.ContentTime,
                                                              first.PixelData)
    for s in st.series:
        series_new = _series_elements(s)
        for sop_uid, number in s.instances:
            if sop_uid == first_uid:
                continue
            pixels = _pixels(rng, st.modality == "US")
            new = series_new + _instance_elements(sop_uid, number, _content_time(st, number), pixels)
            data = template
            if all(len(a) == len(b) and template.count(a) == 1 for a, b in zip(old, new, strict=True)):
                for a, b in zip(old, new, strict=True):
                    data = data.replace(a, b)
            else:  # some length differs: write this one the slow way
                ds = build_dataset(p, e, st, s, sop_uid, number, pool, rng)
                ds.PixelData = pixels
                data = to_bytes(ds)
            out.append(data)
    return out


def write_studies(patients: list[Patient], pool: Pool, seed: int, out: Path) -> list[Instance]:
    written: list[Instance] = []
    for p in patients:
        for e in p.encounters:
            for st in e.studies:
                rng = random.Random(f"synthetic:{seed}:dicom:{st.uid}")
                for (s, sop_uid, rel), data in zip(instance_paths(st), study_files(p, e, st, pool, rng),
                                                   strict=True):
                    target = out / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                    written.append(Instance(rel, p, st, s, sop_uid))
    return written


def dataset_for(instance: Instance, pool: Pool, seed: int) -> Dataset:
    """Rebuild one instance's dataset (used for bad-item variants of a good file)."""
    enc = next(e for e in instance.patient.encounters if instance.study in e.studies)
    rng = random.Random(f"synthetic:{seed}:dicom-bad:{instance.sop_uid}")
    number = next(n for uid, n in instance.series.instances if uid == instance.sop_uid)
    return build_dataset(instance.patient, enc, instance.study, instance.series, instance.sop_uid, number, pool, rng)
