"""Clinical code lists used by the generator: real ICD-10-CM, SNOMED CT, LOINC, RxNorm and CVX codes."""

from __future__ import annotations

from dataclasses import dataclass

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
DCM = "http://dicom.nema.org/resources/ontology/DCM"


@dataclass(frozen=True)
class Condition:
    icd10: str
    snomed: str
    display: str
    chronic: bool
    medications: tuple[str, ...] = ()  # RxNorm codes usually prescribed for it


@dataclass(frozen=True)
class Medication:
    rxnorm: str
    display: str


@dataclass(frozen=True)
class LabTest:
    key: str
    local_code: str
    local_name: str
    loinc: str
    loinc_display: str
    ucum: str
    hl7_units: tuple[str, ...]  # spellings seen in real HL7 feeds for the same unit
    low: float
    high: float
    mean: float
    sd: float
    decimals: int
    critical_low: float | None = None
    critical_high: float | None = None
    si_loinc: str | None = None  # LOINC of the SI-unit variant, when the test has one
    si_display: str | None = None
    si_ucum: str | None = None
    si_factor: float = 1.0
    si_decimals: int = 1


@dataclass(frozen=True)
class LabPanel:
    key: str
    local_code: str
    loinc: str
    display: str
    tests: tuple[str, ...]


MEDICATIONS: dict[str, Medication] = {m.rxnorm: m for m in [
    Medication("860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet"),
    Medication("314076", "lisinopril 10 MG Oral Tablet"),
    Medication("197361", "amlodipine 5 MG Oral Tablet"),
    Medication("310798", "Hydrochlorothiazide 25 MG Oral Tablet"),
    Medication("259255", "atorvastatin 80 MG Oral Tablet"),
    Medication("314231", "Simvastatin 10 MG Oral Tablet"),
    Medication("895994", "120 ACTUAT Fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler"),
    Medication("745679", "200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"),
    Medication("855332", "Warfarin Sodium 5 MG Oral Tablet"),
    Medication("313988", "Furosemide 40 MG Oral Tablet"),
    Medication("596926", "duloxetine 20 MG Delayed Release Oral Capsule"),
    Medication("849574", "Naproxen sodium 220 MG Oral Tablet"),
    Medication("308182", "Amoxicillin 250 MG Oral Capsule"),
    Medication("310965", "Ibuprofen 200 MG Oral Tablet"),
    Medication("313782", "Acetaminophen 325 MG Oral Tablet"),
    Medication("1049221", "Acetaminophen 325 MG / Oxycodone Hydrochloride 5 MG Oral Tablet"),
]}

CHRONIC_CONDITIONS: list[Condition] = [
    Condition("E11.9", "44054006", "Type 2 diabetes mellitus", True, ("860975",)),
    Condition("I10", "59621000", "Essential hypertension", True, ("314076", "197361", "310798")),
    Condition("E78.5", "55822004", "Hyperlipidemia", True, ("259255", "314231")),
    Condition("J45.909", "195967001", "Asthma", True, ("745679", "895994")),
    Condition("J44.9", "13645005", "Chronic obstructive pulmonary disease", True, ("745679",)),
    Condition("N18.30", "433144002", "Chronic kidney disease stage 3", True, ()),
    Condition("I50.9", "84114007", "Heart failure", True, ("313988",)),
    Condition("I48.91", "49436004", "Atrial fibrillation", True, ("855332",)),
    Condition("F32.9", "370143000", "Major depressive disorder", True, ("596926",)),
    Condition("E66.9", "414916001", "Obesity", True, ()),
    Condition("K21.9", "235595009", "Gastroesophageal reflux disease", True, ()),
    Condition("I63.9", "230690007", "Cerebrovascular accident", True, ("259255",)),
    Condition("G30.9", "26929004", "Alzheimer's disease", True, ()),
]

ACUTE_CONDITIONS: list[Condition] = [
    Condition("J18.9", "233604007", "Pneumonia", False, ("308182",)),
    Condition("N39.0", "68566005", "Urinary tract infectious disease", False, ("308182",)),
    Condition("J06.9", "54150009", "Upper respiratory infection", False, ("313782",)),
    Condition("M54.50", "279039007", "Low back pain", False, ("849574",)),
    Condition("I21.9", "22298006", "Myocardial infarction", False, ()),
    Condition("A41.9", "91302008", "Sepsis", False, ()),
    Condition("S52.501A", "263102004", "Fracture of distal end of radius", False, ("1049221",)),
]

# Quan 2005 Charlson category and Charlson 1987 weight of the codes above (as gold/charlson_quan2005_icd10.csv maps
# them); the generator's planted readmission model uses the index the pipeline computes from these diagnoses.
CHARLSON: dict[str, tuple[str, int]] = {
    "E11.9": ("diab", 1), "J45.909": ("copd", 1), "J44.9": ("copd", 1), "N18.30": ("rend", 2),
    "I50.9": ("chf", 1), "I63.9": ("cevd", 1), "G30.9": ("dementia", 1), "I21.9": ("ami", 1),
}
# An unplanned readmission's diagnosis: acute conditions that make a readmission unplanned under the CMS
# planned-readmission algorithm whatever the procedure.
READMISSION_DIAGNOSES: list[Condition] = [c for c in ACUTE_CONDITIONS
                                          if c.icd10 in ("J18.9", "N39.0", "I21.9", "A41.9")]

PROCEDURES: list[tuple[str, str]] = [
    ("430193006", "Medication reconciliation"),
    ("73761001", "Colonoscopy"),
    ("80146002", "Appendectomy"),
    ("36969009", "Placement of stent in coronary artery"),
    ("232717009", "Coronary artery bypass grafting"),
    ("76601001", "Intramuscular injection"),
    ("18286008", "Catheter ablation of tissue of heart"),
    ("274474001", "Bone immobilization"),
    ("65200003", "Insertion of intrauterine contraceptive device"),
]

UNPLANNED_PROCEDURE = ("76601001", "Intramuscular injection")  # not a potentially planned procedure

VACCINES: list[tuple[str, str]] = [
    ("140", "Influenza, seasonal, injectable, preservative free"),
    ("208", "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose"),
    ("115", "Tdap"),
    ("133", "Pneumococcal conjugate PCV 13"),
    ("33", "pneumococcal polysaccharide vaccine, 23 valent"),
    ("187", "zoster vaccine recombinant"),
    ("43", "Hep B, adult"),
]

ALLERGIES: list[tuple[str, str, str]] = [  # SNOMED code, display, category
    ("91936005", "Allergy to penicillin", "medication"),
    ("300916003", "Latex allergy", "environment"),
    ("91935009", "Allergy to peanuts", "food"),
    ("417532002", "Allergy to fish", "food"),
    ("232347008", "Dander (animal) allergy", "environment"),
    ("419474003", "Allergy to mould", "environment"),
    ("424213003", "Allergy to bee venom", "environment"),
    ("91930004", "Allergy to eggs", "food"),
]
ALLERGY_REACTIONS: list[tuple[str, str]] = [("247472004", "Hives"), ("271807003", "Eruption of skin"),
                                            ("267036007", "Dyspnea"), ("39579001", "Anaphylaxis")]

ENCOUNTER_TYPES: dict[str, tuple[str, str, str, str]] = {
    # class -> (v3-ActCode, SNOMED type code, display, HL7 PV1-2 patient class)
    "inpatient": ("IMP", "32485007", "Hospital admission", "I"),
    "outpatient": ("AMB", "185349003", "Encounter for check up", "O"),
    "emergency": ("EMER", "50849002", "Emergency room admission", "E"),
}

LAB_TESTS: dict[str, LabTest] = {t.key: t for t in [
    LabTest("glucose", "GLU", "Glucose", "2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL",
            ("mg/dl", "MG/DL", "mg/dL"), 70, 99, 105, 30, 0, 40, 400,
            "15074-8", "Glucose [Moles/volume] in Blood", "mmol/L", 1 / 18.016, 1),
    LabTest("bun", "BUN", "Urea Nitrogen", "3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL",
            ("mg/dl", "MG/DL", "mg/dL"), 7, 20, 15, 6, 0),
    LabTest("creatinine", "CREAT", "Creatinine", "2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL",
            ("mg/dl", "MG/DL", "mg/dL"), 0.6, 1.3, 1.0, 0.35, 2, None, 6.0,
            "14682-9", "Creatinine [Moles/volume] in Serum or Plasma", "umol/L", 88.42, 0),
    LabTest("sodium", "NA", "Sodium", "2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L",
            ("mmol/l", "mmol/L", "MMOL/L", "mEq/L"), 136, 145, 139, 3.5, 0, 120, 160),
    LabTest("potassium", "K", "Potassium", "2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L",
            ("mmol/l", "mmol/L", "MMOL/L", "mEq/L"), 3.5, 5.1, 4.2, 0.5, 1, 2.8, 6.2),
    LabTest("hemoglobin", "HGB", "Hemoglobin", "718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL",
            ("g/dl", "g/dL", "GM/DL"), 12.0, 17.5, 13.8, 1.8, 1, 7.0, None),
    LabTest("wbc", "WBC", "White Blood Count", "6690-2", "Leukocytes [#/volume] in Blood by Automated count",
            "10*3/uL", ("10*3/uL", "K/uL", "x10E3/uL"), 4.5, 11.0, 7.5, 2.5, 1),
    LabTest("hba1c", "A1C", "Hemoglobin A1c", "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%",
            ("%",), 4.0, 5.6, 6.0, 1.2, 1),
]}

LAB_PANELS: dict[str, LabPanel] = {p.key: p for p in [
    LabPanel("bmp", "BMP", "51990-0", "Basic metabolic panel - Blood",
             ("glucose", "bun", "creatinine", "sodium", "potassium")),
    LabPanel("cbc", "CBC", "58410-2", "CBC panel - Blood by Automated count", ("wbc", "hemoglobin")),
    LabPanel("hba1c", "HBA1C", "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", ("hba1c",)),
]}

# Vital signs: FHIR LOINC, display and UCUM unit; HL7 local code and unit spellings.
VITALS: dict[str, tuple[str, str, str]] = {
    "heart_rate": ("8867-4", "Heart rate", "/min"),
    "blood_pressure": ("85354-9", "Blood pressure panel with all children optional", "mm[Hg]"),
    "systolic": ("8480-6", "Systolic blood pressure", "mm[Hg]"),
    "diastolic": ("8462-4", "Diastolic blood pressure", "mm[Hg]"),
    "temperature": ("8310-5", "Body temperature", "Cel"),
    "spo2": ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%"),
    "spo2_alt": ("2708-6", "Oxygen saturation in Arterial blood", "%"),
    "weight": ("29463-7", "Body weight", "kg"),
    "height": ("8302-2", "Body height", "cm"),
}
VITALS_PANEL = ("85353-1", "Vital signs, weight, height, head circumference, oxygen saturation and BMI panel")

IMAGING: dict[str, dict[str, object]] = {
    "CT": {"sop_class": "1.2.840.10008.5.1.4.1.1.2", "display": "Computed Tomography",
           "procedure": ("77477000", "Computerized axial tomography"), "series": (1, 3), "instances": (2, 4)},
    "MR": {"sop_class": "1.2.840.10008.5.1.4.1.1.4", "display": "Magnetic Resonance",
           "procedure": ("113091000", "Magnetic resonance imaging"), "series": (2, 3), "instances": (2, 3)},
    "CR": {"sop_class": "1.2.840.10008.5.1.4.1.1.1", "display": "Computed Radiography",
           "procedure": ("399208008", "Plain chest X-ray"), "series": (1, 2), "instances": (1, 2)},
    "US": {"sop_class": "1.2.840.10008.5.1.4.1.1.6.1", "display": "Ultrasound",
           "procedure": ("16310003", "Ultrasonography"), "series": (1, 1), "instances": (2, 4)},
}
BODY_PARTS: dict[str, tuple[str, str, str]] = {  # DICOM BodyPartExamined -> SNOMED code, display, study text
    "CHEST": ("51185008", "Thoracic structure", "Chest"),
    "HEAD": ("69536005", "Head structure", "Head"),
    "ABDOMEN": ("818983003", "Abdomen", "Abdomen"),
    "KNEE": ("72696002", "Knee region structure", "Knee"),
}
MODALITY_BODY_PARTS: dict[str, tuple[str, ...]] = {
    "CT": ("HEAD", "CHEST", "ABDOMEN"), "MR": ("HEAD", "KNEE"), "CR": ("CHEST", "KNEE"), "US": ("ABDOMEN",),
}

NOTE_TYPES: dict[str, tuple[str, str]] = {
    "inpatient": ("18842-5", "Discharge summary"),
    "emergency": ("34111-5", "Emergency department Note"),
    "outpatient": ("11506-3", "Progress note"),
}
NOTE_OBSERVATION = ("48767-8", "Annotation comment [Interpretation] Narrative")
