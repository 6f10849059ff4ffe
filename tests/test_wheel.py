"""The wheel is the product: built from the tracked sources, installed into a new virtual environment outside the
checkout, it carries every runtime asset (dbt project, ViewDefinitions, terminology seeds, expectation suites,
de-identification tables, the Grafana dashboard) and runs ``lakehouse demo`` from an empty directory.

The new environment gets the wheel and its entry point from the build; its third-party dependencies (pyspark,
dbt, MLflow, ... about 2 GB) come from this test environment through a ``.pth`` line rather than a second
download (with the one console script of theirs the engine runs, ``sail``). That line adds no ``.pth`` processing
of its own, so this checkout's editable install stays invisible.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# one asset of each kind the runtime reads through its package
ASSETS = ("dbt_project/dbt_project.yml", "dbt_project/profiles.yml", "dbt_project/models/marts/_marts.yml",
          "dbt_project/seeds/ref_discharge_dispositions.csv", "dbt_project/macros/date_key.sql",
          "silver/views/definitions/patient.json", "silver/views/sql_on_fhir_tests/basic.json",
          "silver/terminology/VERSION", "silver/deid/rules.csv", "silver/deid/dicom_basic_profile.csv",
          "expectations/patient.json", "gold/charlson_quan2005_icd10.csv", "lakehouse/grafana-dashboard.json")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"
    subprocess.run([uv, "build", "--wheel", "--out-dir", str(out), str(source)], check=True, capture_output=True)
    (built,) = out.glob("clinical_lakehouse-*.whl")
    return built


def test_wheel_carries_every_runtime_asset_and_no_tests(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert [a for a in ASSETS if a not in names] == []
    assert not [n for n in names if n.startswith("tests/")]
    requires = [line for line in zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))).decode().splitlines()
        if line.startswith("Requires-Dist:")]
    assert any("psutil" in r and "extra ==" not in r for r in requires), requires  # `lakehouse bench` needs it
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/entry_points.txt")))
    assert b"lakehouse = lakehouse_app.cli:run" in entry_points and b"lakehouse-job = jobs.run:run" in entry_points


def test_installed_wheel_runs_the_demo_from_an_empty_directory(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"
    subprocess.run([uv, "pip", "install", "--python", str(python), "--no-deps", "--quiet", str(wheel)], check=True)
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # the console script installing pysail would have made (the engine runs `sail` next to the interpreter)
    sail = venv / "bin" / "sail"
    sail.write_text(f"#!{python}\nimport sys\nfrom pysail.cli import main\nsys.exit(main())\n")
    sail.chmod(0o755)

    empty = tmp_path / "work"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKEHOUSE_", "PYTHON", "MLFLOW_"))}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_STATE_HOME=str(tmp_path / "state"))
    where = subprocess.run([str(python), "-c", "import gold.dbt_runner as d, silver.views.engine as v; "
                            "print(d.PROJECT_DIR); print(v.DEFINITIONS_DIR)"],
                           cwd=empty, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(p).is_relative_to(venv) and Path(p).is_dir() for p in where), where

    demo = subprocess.run([str(venv / "bin" / "lakehouse"), "demo", "--patients", "40"], cwd=empty, env=env,
                          capture_output=True, text=True, timeout=1500)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    gold = empty / "lakehouse" / "gold"
    assert (gold / "mart_readmission_30d" / "_delta_log").is_dir(), sorted(p.name for p in gold.iterdir())
    assert (gold / "features_readmission" / "_delta_log").is_dir()
    assert "AUROC" in demo.stdout or "auroc" in demo.stdout.lower(), demo.stdout[-2000:]
