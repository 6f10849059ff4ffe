"""PHI at rest: what the CLI and its engine write under the root is readable by their owner only."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from helpers import clean_env


def test_cli_writes_files_and_folders_for_the_owner_only(tmp_path: Path, fixtures_dir: Path) -> None:
    root = tmp_path / "lh"
    source = sorted((fixtures_dir / "hl7v2").rglob("*.hl7"))[0]
    env = clean_env(LAKEHOUSE_PSEUDONYM_KEY="file-mode-test-key-0123456789")
    proc = subprocess.run([sys.executable, "-m", "lakehouse_app.cli", "--root", str(root), "ingest", str(source)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    written = [p for p in root.rglob("*")]
    assert any("bronze" in p.parts for p in written) and any("landing" in p.parts for p in written)
    open_to_others = [f"{p.relative_to(root)} {stat.filemode(p.stat().st_mode)}" for p in written
                      if not p.is_symlink() and p.stat().st_mode & 0o077]
    assert open_to_others == []
