from pathlib import Path

import pytest

from lakehouse.config import as_location, load_settings
from lakehouse.errors import ConfigError

pytestmark = pytest.mark.fast


def test_defaults_need_no_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(environ={})
    assert s.engine == "local"
    assert s.root_path == (tmp_path / "lakehouse").resolve()
    assert s.deid_profile == "expert_determination"


def test_file_then_env_then_override(tmp_path: Path) -> None:
    cfg = tmp_path / "lakehouse.yaml"
    cfg.write_text("root: data\ndeid_profile: safe_harbor\nengine: local\n")
    s = load_settings(config_file=cfg, environ={})
    assert s.root_path == (tmp_path / "data").resolve(), "relative root is relative to the settings file"
    assert s.deid_profile == "safe_harbor"
    s = load_settings(config_file=cfg, environ={"LAKEHOUSE_DEID_PROFILE": "expert_determination"})
    assert s.deid_profile == "expert_determination"
    s = load_settings(config_file=cfg, environ={"LAKEHOUSE_DEID_PROFILE": "expert_determination"},
                      deid_profile="safe_harbor")
    assert s.deid_profile == "safe_harbor"


@pytest.mark.parametrize(("old", "new"), [("shift", "expert_determination"), ("year", "safe_harbor")])
def test_date_policy_is_refused_naming_its_replacement(tmp_path: Path, old: str, new: str) -> None:
    cfg = tmp_path / "lakehouse.yaml"
    cfg.write_text(f"root: data\ndate_policy: {old}\n")
    for kwargs in ({"config_file": cfg, "environ": {}}, {"environ": {"LAKEHOUSE_DATE_POLICY": old}},
                   {"environ": {}, "date_policy": old}):
        with pytest.raises(ConfigError) as exc:
            load_settings(**kwargs)  # type: ignore[arg-type]
        message = str(exc.value)
        assert "\n" not in message and "'date_policy'" in message and f"deid_profile: {new}" in message, message
    with pytest.raises(ConfigError, match="deid_profile"):
        load_settings(environ={"LAKEHOUSE_DEID_PROFILE": "year"})


def test_bad_values_are_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={"LAKEHOUSE_ENGINE": "hadoop"})
    assert "LAKEHOUSE_ENGINE" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match="unknown setting LAKEHOUSE_ROTO"):
        load_settings(environ={"LAKEHOUSE_ROTO": "/x"})
    with pytest.raises(ConfigError, match="LAKEHOUSE_SPARK_REMOTE"):
        load_settings(environ={"LAKEHOUSE_ENGINE": "connect"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("root: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(config_file=bad, environ={})


def test_secrets_never_print() -> None:
    s = load_settings(environ={"LAKEHOUSE_PSEUDONYM_KEY": "supersecretvalue123"})
    assert "supersecretvalue123" not in repr(s)
    assert "supersecretvalue123" not in str(s.redacted())
    assert s.pseudonym_key is not None and s.pseudonym_key.get_secret_value() == "supersecretvalue123"


def test_roots_are_urls_never_mangled_into_local_folders(tmp_path: Path) -> None:
    remote = load_settings(config_file=None, environ={}, root="s3://bucket/clinical/lh/", work_dir=tmp_path / "w")
    assert remote.remote_root == remote.root_uri == "s3://bucket/clinical/lh"
    assert str(remote.table_path("silver", "patient")) == "s3://bucket/clinical/lh/silver/patient"
    assert str(remote.layer_path("_system")) == "s3://bucket/clinical/lh/_system"
    # what stays on this machine is under the work folder, never a folder named "s3:"
    assert remote.root_path == (tmp_path / "w").resolve() and remote.system_dir == remote.root_path / "_system"
    assert remote.landing_dir == remote.root_path / "landing"
    local = load_settings(config_file=None, environ={}, root=f"file://{tmp_path}/lh")
    assert local.remote_root is None and local.root_path == (tmp_path / "lh").resolve()
    assert local.table_path("gold", "dim_patient") == local.root_path / "gold" / "dim_patient"
    with pytest.raises(ConfigError, match="is not a lakehouse root"):
        load_settings(config_file=None, environ={}, root="ftp://host/lh")
    from_env = load_settings(config_file=None, environ={"LAKEHOUSE_ROOT": "s3://b/p"})
    assert from_env.root_uri == "s3://b/p" and "s3:" not in str(from_env.root_path)


def test_inputs_on_an_object_store_stay_urls() -> None:
    assert str(as_location("s3://bucket/drop/")).startswith("s3://bucket/drop")
    assert as_location("relative/file.hl7") == Path("relative/file.hl7")
