"""sentinel-edge policy apply|list|remove|disarm|arm|uninstall, with and without a running agent."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import start_agent, stop_agent
from sentinel_edge.enforce.kernel import EnforceKernel

pytestmark = pytest.mark.kernel


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Path, Path, str]]:
    pin = f"/sys/fs/bpf/se-test-manage-{os.getpid()}"
    pdir = tmp_path / "policies"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"enforce:\n  policies: [{pdir}]\n  pin_root: {pin}\n  fanotify: false\n"
                   "sensors: {file: false, net: false}\n")
    try:
        yield pdir, cfg, pin
    finally:
        EnforceKernel(pin_root=pin).uninstall()
    assert not Path(pin).exists()


def _policy_file(tmp: Path, drop: Path, name: str = "drop.yaml", pid: str = "no-drop") -> Path:
    f = tmp / name
    f.write_text(f"policies:\n  - id: {pid}\n    mode: enforce\n    exec:\n      deny:\n        prefixes: [{drop}/]\n")
    return f


def _cli(*args: str, status: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--status-file", str(status)] if status is not None else ["--status-file", "/nonexistent/st.json"]
    return subprocess.run([sys.executable, "-m", "sentinel_edge.cli", "policy", *args, *extra],
                          capture_output=True, text=True, timeout=60)


def _killed(exe: Path, tmp: Path, timeout: float = 10.0) -> bool:
    """Run exe until it is killed (the policy in force) or the time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run([str(exe), str(tmp / "m")]).returncode == -signal.SIGKILL:
            return True
        time.sleep(0.2)
    return False


def test_without_an_agent_apply_list_disarm_remove_uninstall(tmp_path: Path,
                                                            setup: tuple[Path, Path, str]) -> None:
    pdir, cfg, pin = setup
    drop = tmp_path / "drop"
    drop.mkdir()
    exe = Path(shutil.copy("/usr/bin/touch", drop / "payload"))
    r = _cli("apply", str(_policy_file(tmp_path, drop)), "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "no agent runs: 1 kernel policies put in force" in r.stdout
    assert (pdir / "drop.yaml").read_text() == (tmp_path / "drop.yaml").read_text()
    assert subprocess.run([str(exe), str(tmp_path / "m")]).returncode == -signal.SIGKILL
    r = _cli("list", "--json", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert [p["id"] for p in listed["policies"]] == ["no-drop"]
    k = listed["kernel"]
    assert k["armed"] is True and k["generation"] == 1 and k["policies"] == {"no-drop": "enforce"}
    assert k["agent_pid"] == 0 and k["counters"]["kills"] == 1 and "enforce_exec" in k["links"]
    assert _cli("disarm", "-c", str(cfg)).returncode == 0
    assert subprocess.run([str(exe), str(tmp_path / "m")]).returncode == 0  # kill switch: runs
    assert _cli("arm", "-c", str(cfg)).returncode == 0
    assert subprocess.run([str(exe), str(tmp_path / "m")]).returncode == -signal.SIGKILL
    # a second file whose id collides is refused whole, nothing copied
    bad = _policy_file(tmp_path, drop, name="other.yaml")
    r = _cli("apply", str(bad), "-c", str(cfg))
    assert r.returncode == 1 and "no-drop" in r.stderr and "nothing applied" in r.stderr
    assert not (pdir / "other.yaml").exists()
    r = _cli("remove", "no-drop", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert not (pdir / "drop.yaml").exists()
    assert subprocess.run([str(exe), str(tmp_path / "m")]).returncode == 0
    r = _cli("uninstall", "-c", str(cfg))
    assert r.returncode == 0 and "uninstalled" in r.stdout
    assert not Path(pin).exists()


def test_with_an_agent_apply_signals_it_and_remove_unloads(tmp_path: Path, setup: tuple[Path, Path, str]) -> None:
    pdir, cfg, _pin = setup
    drop = tmp_path / "drop"
    drop.mkdir()
    exe = Path(shutil.copy("/usr/bin/touch", drop / "payload"))
    # no file watching: the changes below reach the agent by SIGHUP only (from the CLI, then by hand)
    cfg.write_text(cfg.read_text().replace("  fanotify: false\n", "  fanotify: false\n  watch: false\n"))
    assert "watch: false" in cfg.read_text()
    h = start_agent(tmp_path, cfg.read_text(), alerts=True)
    try:
        r = _cli("apply", str(_policy_file(tmp_path, drop)), "-c", str(cfg), status=h.status_file)
        assert r.returncode == 0, r.stderr
        assert f"the agent (pid {h.proc.pid}) applies 1 policies now" in r.stdout
        assert _killed(exe, tmp_path)
        # the status file is rewritten on the agent's stats timer: it may trail the kill by a round
        deadline = time.monotonic() + 10
        while True:
            st = json.loads(h.status_file.read_text())
            if st["enforcement"]["policies"] == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert st["enforcement"]["policies"] == 1 and st["enforcement"]["install"] == "installed"
        r = _cli("remove", "drop.yaml", "-c", str(cfg), status=h.status_file)
        assert r.returncode == 0 and f"the agent (pid {h.proc.pid})" in r.stdout
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and subprocess.run([str(exe), str(tmp_path / "m")]).returncode != 0:
            time.sleep(0.2)
        assert subprocess.run([str(exe), str(tmp_path / "m")]).returncode == 0
        # SIGHUP alone re-reads the directory
        shutil.copy(_policy_file(tmp_path, drop, name="again.yaml"), pdir / "again.yaml")
        h.proc.send_signal(signal.SIGHUP)
        assert _killed(exe, tmp_path)
    finally:
        stop_agent(h)
