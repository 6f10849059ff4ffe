"""The HTML run report on a hand-made lakehouse (delta-rs tables, real run log)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake
from typer.testing import CliRunner

from lakehouse.config import Settings
from lakehouse.runlog import run_context
from lakehouse_app.cli import app
from lakehouse_app.report import readmission_by_month, write_report

pytestmark = pytest.mark.fast


@pytest.fixture()
def lakehouse(make_lakehouse: Callable[..., Settings]) -> Settings:
    settings = make_lakehouse(attach_engine=False)
    root = settings.root_path

    def table(rel: str, data: dict) -> None:
        write_deltalake(str(root / rel), pa.table(data))

    table("bronze/hl7v2_messages", {"message_control_id": [f"m{i}" for i in range(7)]})
    table("silver/patient", {"patient_key": ["a", "b", "c"]})
    table("quarantine/hl7v2_messages", {"reason": ["MSH-9 missing", "MSH-9 missing", "not HL7 v2 <&>"]})
    table("quarantine/observation", {"reason": ["unit mg/dL not convertible to mmol/L"]})
    may, april = datetime(2024, 5, 1, 12), datetime(2024, 4, 1)
    table("_system/dq_results", {  # the latest run (r2, by evaluated_at) is not the one written last
        "run_id": ["r2", "r2", "r1", "r1"], "table": ["silver.patient"] * 4,
        "expectation": ["patient_key not null", "birth_date in range"] * 2,
        "category": ["completeness", "validity"] * 2, "severity": ["error", "warning"] * 2,
        "success": [True, False, True, True], "unexpected_count": [0, 12, 0, 0],
        "observed": [None, "12 unexpected (4.00%)", None, None], "evaluated_at": [may, may, april, april],
    })
    table("gold/features_readmission", {
        "encounter_key": ["e1", "e2", "e3", "e4"],
        "discharge_at": [datetime(2024, 1, 5), datetime(2024, 1, 20), datetime(2024, 2, 3), datetime(2024, 2, 9)],
        "readmitted_within_30d": [True, False, False, False],
    })
    with run_context("silver", settings):
        pass
    with pytest.raises(RuntimeError), run_context("gold", settings):
        raise RuntimeError("dbt build failed: model fct_encounter")
    return settings


def test_report_has_counts_quarantine_dq_runs_and_charts(lakehouse) -> None:  # type: ignore[no-untyped-def]
    path = write_report(lakehouse)
    assert path.parent == lakehouse.system_dir / "reports" and re.fullmatch(r"run-\d{8}T\d{12}Z\.html", path.name)
    text = path.read_text()
    assert (path.parent / "latest.html").read_text() == text
    assert re.search(r"bronze<b>7</b>rows", text) and re.search(r"silver<b>3</b>rows", text)
    assert re.search(r"quarantined<b>4</b>rows", text)
    # quarantine grouped by reason, escaped
    assert "<td>quarantine.hl7v2_messages</td><td>MSH-9 missing</td><td class=\"num\">2</td>" in text
    assert "not HL7 v2 &lt;&amp;&gt;" in text and "not HL7 v2 <&>" not in text
    # data quality: the latest run only, the failure first with its unexpected count
    assert "run r2: 1 failed of 2" in text
    dq = text[text.index("<h2>Data quality</h2>"):text.index("<h2>Last runs</h2>")]
    assert dq.index("birth_date in range") < dq.index("patient_key not null")
    assert '<td class="failed">failed</td><td class="num">12</td><td>12 unexpected (4.00%)</td>' in dq
    runs = text[text.index("<h2>Last runs</h2>"):]
    assert "dbt build failed: model fct_encounter" in runs and runs.index(">gold<") < runs.index(">silver<")
    assert text.count("<svg") == 2 and "Rows per layer" in text and "30-day readmission rate" in text
    assert "2 run records verified" in text
    series, source = readmission_by_month(lakehouse)
    assert source == "gold.features_readmission" and series == [("2024-01", 0.5, 2), ("2024-02", 0.0, 2)]


def test_report_prefers_the_gold_mart(lakehouse) -> None:  # type: ignore[no-untyped-def]
    # the mart's grain is month x department: a month's rate weights each department by its discharges
    write_deltalake(str(lakehouse.root_path / "gold" / "mart_readmission_30d"), pa.table({
        "discharge_month": [date(2024, 3, 1), date(2024, 3, 1), date(2024, 4, 1)], "year_month": ["2024-03"] * 2
        + ["2024-04"], "department_key": ["cardio", "ortho", "cardio"], "index_discharges": [10, 30, 20],
        "readmissions_30d": [3, 1, 5], "readmission_rate": [0.3, 1 / 30, 0.25]}))
    series, source = readmission_by_month(lakehouse)
    assert source == "gold.mart_readmission_30d"
    assert [(m, round(r, 6), n) for m, r, n in series] == [("2024-03", 0.1, 40), ("2024-04", 0.25, 20)]


def test_report_on_an_empty_lakehouse_and_the_cli(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--root", str(tmp_path / "empty"), "report", "html"])
    assert result.exit_code == 0, result.output
    uri = re.search(r"file://\S+\.html", result.output.replace("\n", ""))
    assert uri, result.output
    text = Path(uri.group(0).removeprefix("file://")).read_text()
    assert "nothing quarantined" in text and "no data quality results" in text and "<svg" not in text
