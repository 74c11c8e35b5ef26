"""The agent with policies: enforcement decisions become events and alerts; reload; restart adopts.

Each test runs its own agent with its own pin root (kept off the default
/sys/fs/bpf/sentinel-edge so nothing here touches a real installation) and
uninstalls in the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import AgentHandle, start_agent, stop_agent
from sentinel_edge.enforce.identity import identity_of_path
from sentinel_edge.enforce.kernel import EnforceKernel
from sentinel_edge.output.ocsf.schema import validate

pytestmark = pytest.mark.kernel


@pytest.fixture
def pin() -> Iterator[str]:
    root = f"/sys/fs/bpf/se-test-agent-{os.getpid()}"
    try:
        yield root
    finally:
        EnforceKernel(pin_root=root).uninstall()
    assert not Path(root).exists()


def _policy(tmp: Path, mode: str, prefix: Path, pid: str = "no-drop") -> Path:
    p = tmp / "policies.yaml"
    p.write_text(
        "policies:\n"
        f"  - id: {pid}\n"
        "    description: Nothing runs from the drop directory\n"
        f"    mode: {mode}\n"
        "    severity: critical\n"
        "    techniques: [T1204.002]\n"
        "    exec:\n"
        "      deny:\n"
        f"        prefixes: [{prefix}/]\n"
    )
    return p


def _config(tmp: Path, pin: str, policy: Path) -> str:
    return (f"enforce:\n  policies: [{policy}]\n  pin_root: {pin}\n  fanotify: false\n"
            "sensors: {file: false, net: false}\n")


def _wait(pred: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    return pred()


def _enforce_objs(h: AgentHandle, pid: int) -> list[dict[str, Any]]:
    h._read()
    return [o for o in h.objects if o.get("unmapped", {}).get("event") == "enforce"
            and o.get("actor", {}).get("process", {}).get("pid") == pid]


def _findings(h: AgentHandle, policy_id: str) -> list[dict[str, Any]]:
    assert h.alerts_file is not None
    out = []
    for line in h.alerts_file.read_text().splitlines():
        o = json.loads(line)
        if o["finding_info"]["analytic"]["uid"] == f"policy:{policy_id}":
            out.append(o)
    return out


def test_a_denied_exec_is_killed_and_raised_as_an_alert(tmp_path: Path, pin: str) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    h = start_agent(tmp_path, _config(tmp_path, pin, _policy(tmp_path, "enforce", drop)), alerts=True)
    try:
        exe = Path(shutil.copy("/usr/bin/touch", drop / "payload"))
        marker = tmp_path / "marker"
        p = subprocess.Popen([str(exe), str(marker)])
        assert p.wait(10) == -signal.SIGKILL
        assert not marker.exists()
        (obj,) = _wait(lambda: _enforce_objs(h, p.pid))
        assert validate(obj) == []
        assert obj["class_uid"] == 1007 and obj["activity_id"] == 1
        assert obj["status_id"] == 2
        assert obj["action_id"] == 2 and obj["action"] == "Denied"
        assert obj["disposition_id"] == 2 and obj["disposition"] == "Blocked"
        assert obj["policy"] == {"uid": "no-drop", "name": "no-drop", "is_applied": True,
                                 "type": "SentinelEdge policy"}
        assert "security_control" in obj["metadata"]["profiles"]
        assert obj["process"]["file"]["path"] == str(exe)
        raw = obj["unmapped"]["enforce"]
        ident = identity_of_path(exe)
        assert (raw["dev"], raw["ino"]) == (ident.dev, ident.ino)
        assert raw["kind"] == 1 and raw["action"] == 1 and raw["result"] == 0 and raw["match"] == 2
        assert raw["path"] == str(exe) and raw["filename"] == str(exe) and raw["policy_id"] == "no-drop"
        (f,) = _wait(lambda: _findings(h, "no-drop"))
        assert validate(f) == []
        assert f["class_uid"] == 2004 and f["severity_id"] == 5
        assert f["action_id"] == 2 and f["disposition_id"] == 2 and f["policy"]["uid"] == "no-drop"
        assert f["finding_info"]["title"] == "Nothing runs from the drop directory"
        assert f["finding_info"]["attacks"][0]["technique"]["uid"] == "T1204.002"
        assert f["actor"]["process"]["pid"] == p.pid
        assert f["message"] == f"policy no-drop: {exe} killed"
        enf = f["unmapped"]["alert"]["enforcement"]
        assert enf["mechanism"] == "tracepoint-sigkill" and enf["ok"] is True and enf["mode"] == "enforce"
        st = json.loads(h.status_file.read_text())
        assert st["enforcement"]["policies"] == 1 and st["enforcement"]["install"] == "installed"
        assert st["enforcement"]["armed"] is True and st["enforcement"]["kernel"]["kills"] >= 1
        r = subprocess.run([sys.executable, "-m", "sentinel_edge.cli", "status", "--status-file",
                            str(h.status_file)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        line = next(x for x in r.stdout.splitlines() if x.startswith("enforcement:"))
        assert line.startswith("enforcement: 1 policies, ARMED, generation 1 (installed at ")
        assert "kills 1," in line
    finally:
        stop_agent(h)


def test_policy_file_change_is_applied_and_a_bad_file_keeps_the_set(tmp_path: Path, pin: str) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    policy = _policy(tmp_path, "audit", drop)
    h = start_agent(tmp_path, _config(tmp_path, pin, policy), alerts=True)
    try:
        exe = Path(shutil.copy("/usr/bin/touch", drop / "payload"))
        assert subprocess.run([str(exe), str(tmp_path / "a")]).returncode == 0  # audit: runs
        assert _wait(lambda: _findings(h, "no-drop"))[0]["action_id"] == 3
        _policy(tmp_path, "enforce", drop)  # the file changes: re-applied within a second or two
        deadline = time.monotonic() + 15
        rc = 0
        while time.monotonic() < deadline and rc == 0:
            time.sleep(0.2)
            rc = subprocess.run([str(exe), str(tmp_path / "b")]).returncode
        assert rc == -signal.SIGKILL
        # a broken file: rejected with its location, the enforcing set stays
        policy.write_text("policies:\n  - id: x\n    mode: sometimes\n    exec: {deny: {prefixes: [/tmp/]}}\n")
        assert _wait(lambda: "policy reload rejected" in h.log.read_text(), timeout=15)
        log = h.log.read_text()
        assert f"{policy}:3:" in log
        assert subprocess.run([str(exe), str(tmp_path / "c")]).returncode == -signal.SIGKILL
    finally:
        stop_agent(h)


def test_kill_9_leaves_enforcement_and_the_restarted_agent_adopts_it(tmp_path: Path, pin: str) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    policy = _policy(tmp_path, "enforce", drop)
    with policy.open("a") as f:  # and a connect policy (loopback addresses only)
        f.write("  - id: no-loopback-77\n    mode: enforce\n    connect:\n      cidrs: [127.77.0.0/16]\n")
    cfg = _config(tmp_path, pin, policy)
    first = tmp_path / "first"
    first.mkdir()
    h = start_agent(first, cfg, alerts=True)
    h.proc.kill()
    h.proc.wait(10)
    exe = Path(shutil.copy("/usr/bin/touch", drop / "payload"))
    p = subprocess.Popen([str(exe), str(tmp_path / "m")])
    assert p.wait(10) == -signal.SIGKILL  # no agent runs: the kernel still enforces
    denied, allowed = socket.socket(), socket.socket()
    try:
        denied.bind(("127.77.0.1", 0))
        allowed.bind(("127.0.0.1", 0))
        for s in (denied, allowed):
            s.listen(1)
        with socket.socket() as c, pytest.raises(PermissionError):
            c.connect(denied.getsockname())
        with socket.socket() as c:
            c.connect(allowed.getsockname())  # outside the denied range: fine
    finally:
        denied.close()
        allowed.close()
    second = tmp_path / "second"
    second.mkdir()
    h2 = start_agent(second, cfg, alerts=True)
    try:
        st = json.loads(h2.status_file.read_text())
        assert st["enforcement"]["install"] == "adopted"
        # the kill made while no agent ran is still reported (from the pinned ring)
        (obj,) = _wait(lambda: _enforce_objs(h2, p.pid))
        assert obj["policy"]["uid"] == "no-drop"
        # and the restart says fanotify-based policies were off meanwhile
        gap = _wait(lambda: _findings(h2, "enforcement-gap"))
        assert gap and gap[0]["disposition_id"] == 16
        assert f"(pid {h.proc.pid})" in gap[0]["unmapped"]["alert"]["enforcement"]["error"]
    finally:
        stop_agent(h2)
    assert subprocess.run([str(exe), str(tmp_path / "n")]).returncode == -signal.SIGKILL  # stopping keeps it


def test_a_rule_with_actions_kills_the_process_and_reports_the_response(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "- rule: test.kill_marked\n"
        "  title: Marked sleeper started\n"
        "  severity: high\n"
        "  condition: event.kind = exec and proc.name = se-resp-sleep\n"
        "  actions: [kill]\n"
    )
    exe = Path(shutil.copy("/bin/sleep", tmp_path / "se-resp-sleep"))
    h = start_agent(tmp_path, "sensors: {file: false, net: false}\n",
                    extra=["--rules", str(rules), "--no-default-rules"], alerts=True)
    try:
        p = subprocess.Popen([str(exe), "30"])
        try:
            assert p.wait(15) == -signal.SIGKILL
        finally:
            if p.poll() is None:
                p.kill()
        (rule_f,) = _wait(lambda: [f for f in _all_findings(h) if f["finding_info"]["analytic"]["uid"]
                                   == "test.kill_marked"])
        (resp,) = _wait(lambda: [f for f in _all_findings(h) if f["finding_info"]["analytic"]["uid"]
                                 == "response:test.kill_marked"])
        assert rule_f["actor"]["process"]["pid"] == p.pid
        assert validate(resp) == []
        assert resp["action_id"] == 2 and resp["disposition_id"] == 2
        assert resp["policy"]["uid"] == "test.kill_marked"
        enf = resp["unmapped"]["alert"]["enforcement"]
        assert enf["action"] == "kill" and enf["ok"] is True and enf["mechanism"] == "response"
        assert enf["requested"] == "kill"
        assert resp["actor"]["process"]["pid"] == p.pid
    finally:
        stop_agent(h)


def _all_findings(h: AgentHandle) -> list[dict[str, Any]]:
    assert h.alerts_file is not None
    return [json.loads(line) for line in h.alerts_file.read_text().splitlines()]


def test_a_protected_file_is_refused_through_the_agent(tmp_path: Path, pin: str) -> None:
    secret = tmp_path / "secret"
    secret.write_text("keep me\n")
    head = shutil.copy("/usr/bin/head", tmp_path / "allowed-head")
    policy = tmp_path / "files.yaml"
    policy.write_text(
        "policies:\n"
        "  - id: protect-secret\n"
        "    description: The secret is read by the allowed tool only\n"
        "    mode: enforce\n"
        "    file:\n"
        f"      paths: [{secret}]\n"
        "      access: [read, write]\n"
        f"      allow: [{head}]\n"
    )
    cfg = f"enforce:\n  policies: [{policy}]\n  pin_root: {pin}\nsensors: {{file: false, net: false}}\n"
    h = start_agent(tmp_path, cfg, alerts=True)
    try:
        r = subprocess.run(["/bin/cat", str(secret)], capture_output=True, text=True, timeout=10)
        assert r.returncode != 0 and "Operation not permitted" in r.stderr
        r = subprocess.run(["/bin/sh", "-c", f": > {secret}"], capture_output=True, text=True, timeout=10)
        assert r.returncode != 0
        # intact (read through the allowed tool: this test process is not allowed either)
        r = subprocess.run([head, "-n1", str(secret)], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0 and r.stdout == "keep me\n"
        found = _wait(lambda: len(_findings(h, "protect-secret")) >= 2 and _findings(h, "protect-secret"))
        assert found, "no finding for the refused opens"
        f = found[0]
        assert validate(f) == []
        assert f["action_id"] == 2 and f["disposition_id"] == 2 and f["policy"]["uid"] == "protect-secret"
        enf = f["unmapped"]["alert"]["enforcement"]
        assert enf["mechanism"] == "fanotify" and enf["action"] == "deny" and enf["ok"] is True
        assert enf["target"] == str(secret)
        assert f["actor"]["process"]["name"] == "cat"
        assert f["actor"]["process"]["file"]["path"] == "/usr/bin/cat", (f["actor"], f["unmapped"])
    finally:
        stop_agent(h)

