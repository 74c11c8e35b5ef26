"""sentinel-edge quarantine list|restore over a real quarantine directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sentinel_edge.enforce.quarantine import Quarantine

pytestmark = pytest.mark.kernel  # root: the quarantine directory must be root's

CLI = [sys.executable, "-m", "sentinel_edge.cli", "quarantine"]


def test_list_and_restore(tmp_path: Path) -> None:
    qdir = tmp_path / "q"
    victim = tmp_path / "dropper name\nwith newline"
    victim.write_bytes(b"payload\n")
    victim.chmod(0o750)
    os.utime(victim, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    rec = Quarantine(qdir).quarantine(victim, rule_id="test.rule")
    assert not victim.exists()
    r = subprocess.run([*CLI, "list", "--dir", str(qdir), "--json"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    (item,) = json.loads(r.stdout)
    assert item["qid"] == rec.qid and item["path"] == str(victim) and item["rule_id"] == "test.rule"
    assert item["size"] == 8 and item["mode"] == 0o750
    r = subprocess.run([*CLI, "list", "--dir", str(qdir)], capture_output=True, text=True, timeout=30)
    assert rec.qid in r.stdout and "\\nwith newline" in r.stdout and "rule test.rule" in r.stdout
    r = subprocess.run([*CLI, "restore", rec.qid, "--dir", str(qdir)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert victim.read_bytes() == b"payload\n"
    st = victim.stat()
    assert st.st_mode & 0o7777 == 0o750 and st.st_mtime_ns == 1_600_000_000_000_000_000
    r = subprocess.run([*CLI, "list", "--dir", str(qdir), "--json"], capture_output=True, text=True, timeout=30)
    assert json.loads(r.stdout) == []
    r = subprocess.run([*CLI, "restore", rec.qid, "--dir", str(qdir)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and rec.qid in r.stderr
