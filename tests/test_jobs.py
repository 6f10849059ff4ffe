"""Deploy definitions: job entry points, the Databricks Asset Bundle, the Airflow DAG."""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from consumer_data import synthetic_silver, write_outcomes, write_silver
from helpers import clean_env
from typer.testing import CliRunner

from jobs.airflow_dag import COMMANDS, ORDER, dag
from jobs.run import CALLS, STEPS, main, parser
from lakehouse.errors import ExitCode
from lakehouse_app.cli import app

REPO = Path(__file__).resolve().parent.parent

JOBS = REPO / "jobs"


def _bundle() -> dict[str, Any]:
    return yaml.safe_load((JOBS / "databricks.yml").read_text())


@pytest.mark.fast
def test_bundle_defines_the_pipeline_as_one_job_in_order() -> None:
    bundle = _bundle()
    assert bundle["bundle"]["name"] and "dev" in bundle["targets"]
    (job,) = bundle["resources"]["jobs"].values()
    tasks = {t["task_key"]: t for t in job["tasks"]}
    assert list(tasks) == list(STEPS) == ["ingest", "silver", "gold", "features", "train"]
    for previous, step in zip(STEPS, STEPS[1:], strict=False):
        assert [d["task_key"] for d in tasks[step]["depends_on"]] == [previous]
    assert "depends_on" not in tasks["ingest"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for step, task in tasks.items():
        # the installed wheel's entry point, never a file of the checkout
        wheel_task = task["python_wheel_task"]
        assert wheel_task["package_name"] == "clinical_lakehouse"
        assert scripts[wheel_task["entry_point"]] == "jobs.run:run"
        assert wheel_task["parameters"][0] == step
        assert wheel_task["parameters"][-2:] == ["--engine", "spark"]
        assert task["job_cluster_key"] in {c["job_cluster_key"] for c in job["job_clusters"]}


@pytest.mark.fast
def test_entry_point_parses_every_step() -> None:
    assert set(CALLS) == set(STEPS)
    for step in STEPS:
        assert parser().parse_known_args([step, "--root", "/x", "--extra", "y"])[0].step == step
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0


@pytest.mark.fast
def test_entry_point_reports_a_missing_layer_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["features", "--root", str(tmp_path / "lh")]) == ExitCode.ERROR
    assert capsys.readouterr().err.strip() == (
        "error: silver.encounter does not exist: run `lakehouse silver` before building features")


def test_entry_point_as_a_script_builds_features(catalog: Any, settings: Any, tmp_path: Path) -> None:
    """spark-submit runs the file as a script, with jobs/ as sys.path[0]."""
    tables = synthetic_silver(patients=5)
    write_silver(catalog, tables)
    write_outcomes(catalog, tables["encounter"])
    proc = subprocess.run([sys.executable, str(JOBS / "run.py"), "features", "--root", str(settings.root_path),
                           "--engine", "local", "--unknown-databricks-arg", "x"],
                          capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["table"] == "gold.features_readmission"
    assert result["rows"] == catalog.read("silver.encounter").count() > 0


@pytest.mark.fast
def test_airflow_commands_are_real_cli_commands_in_pipeline_order() -> None:
    assert ORDER == ("ingest", "silver", "gold", "features", "train", "report")
    for step in ORDER:
        argv = shlex.split(COMMANDS[step])
        assert argv[0] == "lakehouse" and argv[1] == "--root"
        sub = argv[3:]
        result = CliRunner().invoke(app, ["--root", "/tmp/unused", *[a for a in sub if a != "--json"], "--help"])
        assert result.exit_code == 0, (step, result.output)


@pytest.mark.skipif(importlib.util.find_spec("airflow") is None,
                    reason="Apache Airflow is not installed (optional lane: pip install apache-airflow)")
@pytest.mark.fast
def test_airflow_dag_task_graph() -> None:
    assert dag is not None and dag.dag_id == "clinical_lakehouse"
    assert [t.task_id for t in dag.topological_sort()] == list(ORDER)
    for previous, step in zip(ORDER, ORDER[1:], strict=False):
        assert dag.get_task(step).upstream_task_ids == {previous}
