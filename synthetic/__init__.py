"""Realistic synthetic hospital data: FHIR R4, HL7 v2 and DICOM for the same patients, deterministic by seed.

Layout written under the landing dir `out`:
  fhir/bundles/<patient id>.json   one Synthea-style transaction Bundle per patient
  fhir/ndjson/<Type>.ndjson        (with ndjson=True) Bulk Data export of the same resources
  hl7v2/<feed>_<date>_<n><ext>     ADT and lab feed files of many messages (.hl7/.txt/.dat/no extension)
  dicom/...                        DICOM Part 10 files (some PACS-export style, without extension)
  _generator/manifest.json         ground truth (ignored by ingestion: the name starts with "_")
  _generator/facility.json         the facility time zone of the HL7 times written without an offset
"""

from synthetic.generator import generate
from synthetic.manifest import FACILITY_PATH, MANIFEST_PATH
from synthetic.updates import generate_address_changes

__all__ = ["FACILITY_PATH", "MANIFEST_PATH", "generate", "generate_address_changes"]
