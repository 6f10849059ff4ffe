"""What a step's fingerprint compares (lakehouse.uptodate): settings that change what a step makes count, where
the lakehouse is and how many workers build it do not."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse import uptodate
from lakehouse.config import Settings, load_settings

pytestmark = pytest.mark.fast


def _config(settings: Settings) -> str:
    return str(uptodate.fingerprint(settings, None, {}, {}, ("lakehouse",))["config"])


def test_the_same_root_spelled_another_way_is_the_same_configuration(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no lakehouse.yaml here
    absolute = load_settings(config_file=None, environ={}, root=tmp_path / "lh")
    relative = load_settings(config_file=None, environ={}, root="lh")
    assert str(absolute.root) != str(relative.root)
    # `make demo` gives an absolute --root, a user later a relative one: that must not rebuild Silver and Gold
    assert _config(absolute) == _config(relative)
    assert _config(absolute) == _config(absolute.model_copy(update={"silver_workers": 1}))
    assert _config(absolute) != _config(absolute.model_copy(update={"max_shift_days": 30}))
    assert _config(absolute) != _config(absolute.model_copy(update={"deid_profile": "safe_harbor"}))
