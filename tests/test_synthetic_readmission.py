"""The generator's planted readmission signal, vitals through the stay and leakage canary (pure Python, no engine)."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import hl7
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from test_synthetic import _bundle_entries, _hl7_messages

from synthetic import MANIFEST_PATH, generate, model
from synthetic.model import build_population

pytestmark = pytest.mark.fast

N, SEED = 40, 3


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("readmission") / "landing"
    generate(patients=N, seed=SEED, out=out, bad_rate=0.0)
    return out


@pytest.fixture(scope="module")
def truth(landing: Path) -> dict[str, Any]:
    return json.loads((landing / MANIFEST_PATH).read_text())


@pytest.fixture(scope="module")
def population() -> list[model.Patient]:
    return build_population(800, 8)[1]


def _stays(patients: list[model.Patient]) -> list[model.Encounter]:
    return [e for p in patients for e in p.encounters if e.klass == "inpatient" and not e.discharge_expired]


def test_manifest_states_the_logistic_model_and_each_stays_draw(truth: dict[str, Any]) -> None:
    planted = truth["readmission_model"]
    assert planted["intercept"] == model.READMISSION_INTERCEPT
    assert planted["coefficients"] == model.READMISSION_COEFFICIENTS
    assert set(planted["features"]) == set(model.READMISSION_COEFFICIENTS)
    assert all(v > 0 for v in planted["coefficients"].values())
    stays = [e for p in truth["patients"] for e in p["encounters"] if e["class"] == "inpatient"]
    assert stays
    for e in stays:  # every stay's probability is the stated model applied to its stated features
        logit = planted["intercept"] + sum(planted["coefficients"][k] * v for k, v in e["risk_features"].items())
        assert e["readmission_risk"] == pytest.approx(1 / (1 + math.exp(-logit)), abs=1e-6)
    assert truth["expected"]["encounters"]["readmissions_30d"] == sum(e["readmission_30d"] for e in stays)


def test_label_is_a_real_later_inpatient_admission_within_30_days(truth: dict[str, Any], landing: Path) -> None:
    readmissions = set()
    for p in truth["patients"]:
        stays = [e for e in p["encounters"] if e["class"] == "inpatient"]
        for prev, cur in zip(stays, [*stays[1:], None], strict=False):
            gap = None if cur is None else datetime.fromisoformat(cur["start"]) - datetime.fromisoformat(prev["end"])
            assert prev["readmitted_within_30d"] == (gap is not None and timedelta(0) < gap <= timedelta(days=30))
            if prev["readmitted_within_30d"]:
                assert cur is not None and cur["readmission_30d"] and not prev["discharge_expired"]
                readmissions.add(cur["visit_number"])
    assert readmissions
    # the readmission is unplanned in both feeds: PV1-4 admission type U, Encounter.priority UR
    for f in truth["files"]["hl7v2"]:
        for text in _hl7_messages(landing / f["file"]):
            pv1 = hl7.parse(text).segment("PV1")
            if str(pv1[2]) == "I":
                assert (str(pv1[4]) == "U") == (str(pv1[19][0][0]) in readmissions)
    for p in truth["patients"]:
        for entry in _bundle_entries(landing, p["bundle"]):
            r = entry["resource"]
            if r["resourceType"] == "Encounter" and r["class"]["code"] == "IMP":
                urgent = r["priority"]["coding"][0]["code"] == "UR"
                assert urgent == (r["identifier"][0]["value"] in readmissions)


def test_label_rate_is_sane_and_follows_the_planted_risk(population: list[model.Patient]) -> None:
    stays = _stays(population)
    y = np.array([e.readmitted for e in stays])
    assert 0.10 <= y.mean() <= 0.30, y.mean()
    risk = np.array([e.readmission_risk for e in stays])
    assert roc_auc_score(y, risk) >= 0.88  # the ceiling a model of the pipeline's features can approach
    drawn_before_base_time = np.array([e.end < model.BASE_TIME - timedelta(days=30) for e in stays])
    assert abs(y[drawn_before_base_time].mean() - risk[drawn_before_base_time].mean()) < 0.03  # calibrated draw
    # refitting a logistic model on the stated features recovers the planted coefficients' signs and order
    names = list(model.READMISSION_COEFFICIENTS)
    x = np.array([[e.risk_features[k] for k in names] for e in stays])
    fit = LogisticRegression(C=100.0, max_iter=5000).fit(x[drawn_before_base_time], y[drawn_before_base_time])
    assert all(c > 0 for c in fit.coef_[0]), dict(zip(names, fit.coef_[0], strict=True))


def test_risk_features_are_what_the_stay_shows(population: list[model.Patient]) -> None:
    for p in population[:300]:
        for e in p.encounters:
            if e.klass != "inpatient":
                continue
            f = e.risk_features
            assert f["length_of_stay_days"] == pytest.approx((e.end - e.start).total_seconds() / 86400, abs=1e-4)
            assert any(lab.panel.key == "bmp" and e.start <= lab.collected <= e.end for lab in e.labs)
            creatinine = max(((lab.collected, lv.value) for lab in e.labs for lv in lab.values
                              if lv.test.key == "creatinine"), default=None)
            assert creatinine is not None and f["creatinine_high"] == float(creatinine[1] > 1.3)
            codes = {c.condition.icd10 for x in p.encounters for c in x.conditions if c.onset <= e.end}
            assert f["charlson_index"] == model.charlson(codes)
            if e.readmission:
                assert f["prior_admissions_12m"] >= 1
                assert e.conditions[-1].condition.icd10 in {"J18.9", "N39.0", "I21.9", "A41.9"}


def test_vitals_are_charted_through_every_inpatient_stay(population: list[model.Patient]) -> None:
    for p in population[:300]:
        for e in p.encounters:
            if e.klass != "inpatient":
                assert e.rounds == []
                continue
            times = sorted([e.vitals.time, *(v.time for v in e.rounds)])  # type: ignore[union-attr]
            assert all(e.start <= t <= e.end for t in times)
            assert max(b - a for a, b in zip(times, times[1:], strict=False)) <= timedelta(hours=25)
            assert e.end - times[-1] <= timedelta(hours=3) and e.rounds[-1].route == "fhir"
            assert {v.route for v in e.rounds} <= {"fhir", "hl7"}


def test_vital_rounds_reach_both_feeds_once(truth: dict[str, Any], landing: Path) -> None:
    orders: list[str] = []
    for f in truth["files"]["hl7v2"]:
        for text in _hl7_messages(landing / f["file"]):
            msg = hl7.parse(text)
            if str(msg.segment("MSH")[3]) == "VITALS_MON":
                orders.append(str(msg.segment("OBR")[2][0][0]))
    assert len(orders) == len(set(orders)) and any("-" in o for o in orders)  # one order per charting
    fhir_heart_rates = sum(1 for p in truth["patients"] for entry in _bundle_entries(landing, p["bundle"])
                           if entry["resource"]["resourceType"] == "Observation"
                           and entry["resource"]["code"]["coding"][0]["code"] == "8867-4")
    # every charting is one ORU^R01 or one set of Observations, never both
    assert fhir_heart_rates + len(orders) == sum(e["vitals_charted"] for p in truth["patients"]
                                                 for e in p["encounters"])
    charted = sum(e["vitals_charted"] for p in truth["patients"] for e in p["encounters"]
                  if e["class"] == "inpatient")
    stays = sum(1 for p in truth["patients"] for e in p["encounters"] if e["class"] == "inpatient")
    assert charted >= 3 * stays


def test_canary_is_recorded_after_discharge_and_predicts_the_label(truth: dict[str, Any], landing: Path,
                                                                    population: list[model.Patient]) -> None:
    canary = truth["leakage_canary"]
    found = 0
    for p in truth["patients"]:
        encounters = p["encounters"]
        observations = {e["resource"]["id"]: e["resource"] for e in _bundle_entries(landing, p["bundle"])
                        if e["resource"]["resourceType"] == "Observation"}
        for i, e in enumerate(encounters):
            if e["class"] != "inpatient" or not e["canary"]:
                continue
            found += 1
            obs = observations[e["canary"]["observation_id"]]
            assert obs["code"]["coding"][0] == {"system": canary["system"], "code": canary["code"],
                                                "display": canary["display"]}
            assert "encounter" not in obs and obs["valueQuantity"]["value"] == e["canary"]["value"]
            at = datetime.fromisoformat(obs["effectiveDateTime"])
            assert datetime.fromisoformat(e["end"]) < at <= datetime.fromisoformat(e["end"]) + timedelta(hours=30)
            if i + 1 < len(encounters):
                assert at < datetime.fromisoformat(encounters[i + 1]["start"])
    assert found == truth["expected"]["encounters"]["canaries"] > 0
    stays = [e for e in _stays(population) if e.canary]
    assert len(stays) > 0.9 * len(_stays(population))
    assert roc_auc_score([e.readmitted for e in stays], [e.canary.value for e in stays]) >= 0.95  # type: ignore[union-attr]


def test_the_draw_is_deterministic_per_seed() -> None:
    pool = model.build_pool(21)
    first = [model.build_patient(i, 21, pool) for i in range(30)]
    again = [model.build_patient(i, 21, pool) for i in reversed(range(30))][::-1]  # order and N do not matter
    key = [[(e.readmission_risk, e.readmitted, e.canary) for e in p.encounters] for p in first]
    assert key == [[(e.readmission_risk, e.readmitted, e.canary) for e in p.encounters] for p in again]
