"""The Kubernetes example (deploy/): Sail's cluster-mode server plus the pipeline as a CronJob, root in a bucket.

No cluster here, so this checks what can be checked without one: the manifests parse, every Sail setting they use
is a configuration key of the installed Sail, the pipeline's settings load with the project's own settings loader,
the Job's command is a real CLI command of the installed entry point, and the pods agree on where the pseudonym key
is (the engine's UDFs read it)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pysail
import pytest
import yaml
from typer.testing import CliRunner

from lakehouse.config import load_settings
from lakehouse_app.cli import app

pytestmark = pytest.mark.fast
REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"


def _docs(name: str) -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text()) if d]
    return {d["kind"]: d for d in docs}


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _sail_config_keys() -> set[str]:
    """The configuration keys the installed Sail knows (its option table is embedded in the native library)."""
    native = next(Path(pysail.__file__).parent.glob("_native*.so"))
    return {m.decode() for m in re.findall(rb"- key: ([a-z0-9_.]+)", native.read_bytes())}


def _pod_mounts(spec: dict[str, Any], container: str) -> dict[str, str]:
    (c,) = [c for c in spec["containers"] if c["name"] == container]
    return {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}


def test_every_sail_setting_is_a_configuration_key_of_the_installed_sail() -> None:
    known = _sail_config_keys()
    assert len(known) > 50 and "kubernetes.worker_pod_template" in known
    (driver,) = _docs("sail.yaml")["Deployment"]["spec"]["template"]["spec"]["containers"]
    env = _env(driver)
    used = {name.removeprefix("SAIL_").lower().replace("__", ".") for name in env if name.startswith("SAIL_")}
    assert used - {"mode"} <= known, f"not Sail settings: {sorted(used - {'mode'} - known)}"
    assert env["SAIL_MODE"] == "kubernetes-cluster"
    assert driver["command"][:3] == ["sail", "spark", "server"]


def test_the_pipeline_job_loads_as_settings_and_reaches_the_engine_service() -> None:
    pipeline, engine = _docs("pipeline.yaml"), _docs("sail.yaml")
    pod = pipeline["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (job,) = pod["containers"]
    env = {k: v for k, v in _env(job).items() if k.startswith("LAKEHOUSE_")}
    settings = load_settings(config_file=None, environ=env)
    assert settings.engine == "connect" and settings.dbt_target == "connect"
    assert settings.remote_root and settings.remote_root.startswith("s3://")
    service = engine["Service"]
    host, port = re.fullmatch(r"sc://([^:/]+):(\d+)", settings.spark_remote or "").groups()  # type: ignore[union-attr]
    assert host == f"{service['metadata']['name']}.{service['metadata']['namespace']}"
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}
    # the key files are outside the root and the anchor on the persistent work volume
    assert str(settings.audit_anchor).startswith(_pod_mounts(pod, "pipeline")["work"])
    # the command is the installed console script and a real CLI command
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    command = job["command"]
    assert command[0] in scripts
    result = CliRunner().invoke(app, [*[a for a in command[1:] if a not in {"--json", "/inbound"}], "--help"])
    assert result.exit_code == 0, result.output


def test_the_job_and_every_engine_pod_read_the_pseudonym_key_at_the_same_owner_only_path() -> None:
    pipeline, engine = _docs("pipeline.yaml"), _docs("sail.yaml")
    job_pod = pipeline["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    key_file = _env(job_pod["containers"][0])["LAKEHOUSE_PSEUDONYM_KEY_FILE"]
    key_dir = str(Path(key_file).parent)
    driver_pod = engine["Deployment"]["spec"]["template"]["spec"]
    worker_pod = json.loads(_env(driver_pod["containers"][0])["SAIL_KUBERNETES__WORKER_POD_TEMPLATE"])["spec"]
    for pod, container in ((job_pod, "pipeline"), (driver_pod, "driver"), (worker_pod, "worker")):
        assert _pod_mounts(pod, container)["keys"] == key_dir, container
        (init,) = pod["initContainers"]
        installs = " ".join(init["command"])
        assert "-m 0600" in installs and "pseudonym.key" in installs, container  # owner-only, as lakehouse requires
        assert {"emptyDir": {"medium": "Memory"}}.items() <= next(
            v for v in pod["volumes"] if v["name"] == "keys").items(), container


def test_every_engine_pod_shares_the_pipelines_work_dir() -> None:
    """With engine: connect the engine's pods write and read back the staging scratch tables under work_dir."""
    pipeline, engine = _docs("pipeline.yaml"), _docs("sail.yaml")
    job_pod = pipeline["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    work_dir = _env(job_pod["containers"][0])["LAKEHOUSE_WORK_DIR"]
    claim = next(v for v in job_pod["volumes"] if v["name"] == "work")["persistentVolumeClaim"]["claimName"]
    assert "ReadWriteMany" in pipeline["PersistentVolumeClaim"]["spec"]["accessModes"]
    assert pipeline["PersistentVolumeClaim"]["metadata"]["name"] == claim
    driver_pod = engine["Deployment"]["spec"]["template"]["spec"]
    worker_pod = json.loads(_env(driver_pod["containers"][0])["SAIL_KUBERNETES__WORKER_POD_TEMPLATE"])["spec"]
    for pod, container in ((job_pod, "pipeline"), (driver_pod, "driver"), (worker_pod, "worker")):
        assert _pod_mounts(pod, container)["work"] == work_dir, container
        assert next(v for v in pod["volumes"] if v["name"] == "work")["persistentVolumeClaim"]["claimName"] == claim


def test_the_image_installs_the_wheel_with_the_object_store_extra() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (install,) = [line for line in dockerfile.splitlines() if line.startswith("RUN pip install")]
    assert "[s3]" in install and "s3" in extras
    assert any(line.split()[:1] == ["USER"] for line in dockerfile.splitlines()), "the image runs as a user, not root"
