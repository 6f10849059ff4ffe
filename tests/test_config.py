from pathlib import Path

import pytest

from lakehouse.config import load_settings
from lakehouse.errors import ConfigError

pytestmark = pytest.mark.fast


def test_defaults_need_no_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(environ={})
    assert s.engine == "local"
    assert s.root_path == (tmp_path / "lakehouse").resolve()
    assert s.date_policy == "shift"


def test_file_then_env_then_override(tmp_path: Path) -> None:
    cfg = tmp_path / "lakehouse.yaml"
    cfg.write_text("root: data\ndate_policy: year\nengine: local\n")
    s = load_settings(config_file=cfg, environ={})
    assert s.root_path == (tmp_path / "data").resolve(), "relative root is relative to the settings file"
    assert s.date_policy == "year"
    s = load_settings(config_file=cfg, environ={"LAKEHOUSE_DATE_POLICY": "shift"})
    assert s.date_policy == "shift"
    s = load_settings(config_file=cfg, environ={"LAKEHOUSE_DATE_POLICY": "shift"}, date_policy="year")
    assert s.date_policy == "year"


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
