"""The detection stage inside the running agent: rule loading, hot reload, sensor narrowing, alerts only."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import AgentHandle, alert_rule, start_agent, stop_agent
from sentinel_edge.rules.loader import load_default_rules

DEFAULT_COUNT = len(load_default_rules().rules) + len(load_default_rules().disabled)

pytestmark = pytest.mark.kernel

RULE = """- rule: {rid}
  title: marker {marker}
  condition: event.kind = exec and proc.args contains "{marker}"
  severity: low
  attack: [{{technique: T1059, tactic: execution}}]
  output: "marker {marker} run by {{proc.name}}"
"""


def run_marker(marker: str) -> int:
    p = subprocess.run(["/bin/sh", "-c", "exit 0", marker], check=True)
    assert p.returncode == 0
    return 0


def wait_log(agent: AgentHandle, text: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = agent.log.read_text()
        if text in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the agent log:\n{agent.log.read_text()[-3000:]}")


def test_hot_reload_on_file_change_and_sighup(tmp_path: Path) -> None:
    rules = tmp_path / "mine.yaml"
    rules.write_text(RULE.format(rid="t.reload.a", marker="se-reload-a"))
    agent = start_agent(tmp_path, extra=["--rules", str(rules), "--no-default-rules"], alerts=True)
    try:
        # only the process sensor is needed by this rule set: the others are not loaded
        st = agent.status()
        file_progs = [p for p in st["programs"] if p["name"].startswith("file_")]
        assert file_progs and all(p["state"] == "skipped" and "is off" in p["reason"] for p in file_progs)
        assert st["detection"]["rules"] == 1

        a0 = agent.alert_mark()
        run_marker("se-reload-a")
        a = agent.wait_alert("t.reload.a", a0)
        assert a["message"] == "marker se-reload-a run by sh"

        # the file changes: the new set replaces the old one
        time.sleep(1.1)  # a new mtime even on coarse-grained filesystems
        rules.write_text(RULE.format(rid="t.reload.b", marker="se-reload-b"))
        wait_log(agent, "rules reloaded: 1 rules active")
        a1 = agent.alert_mark()
        run_marker("se-reload-a")
        run_marker("se-reload-b")
        agent.wait_alert("t.reload.b", a1)
        agent.assert_no_alert("t.reload.a", a1)

        # a broken file is rejected with its location; the previous set stays active
        time.sleep(1.1)
        rules.write_text(RULE.format(rid="t.reload.c", marker="se-reload-c").replace(
            "event.kind = exec and", "event.kind = exec and and"))
        log = wait_log(agent, "rule reload rejected")
        assert f"{rules}:3:" in log
        a2 = agent.alert_mark()
        run_marker("se-reload-b")
        agent.wait_alert("t.reload.b", a2)

        # SIGHUP reloads too
        rules.write_text(RULE.format(rid="t.reload.d", marker="se-reload-d"))
        agent.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while agent.log.read_text().count("rules reloaded") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        a3 = agent.alert_mark()
        run_marker("se-reload-d")
        agent.wait_alert("t.reload.d", a3)
        time.sleep(1.2)  # a status round
        det = agent.status()["detection"]
        assert det["reloads"] >= 2
        assert det["reload_failures"] == 1
        assert det["alerts_raised"] >= 4
        res = subprocess.run([sys.executable, "-m", "sentinel_edge.cli", "status", "--status-file",
                              str(agent.status_file)], capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        line = next(x for x in res.stdout.splitlines() if x.startswith("detection:"))
        assert line.startswith("detection: 1 rules (1 native), ")
        assert f"{det['alerts_raised']} alerts raised" in line and "(rejected 1)" in line
    finally:
        assert stop_agent(agent) == 0
    assert "Traceback" not in agent.log.read_text()


def test_broken_rules_stop_the_start_with_every_error_located(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "- rule: t.bad.one\n  title: x\n  severity: low\n  condition: proc.nmae = x\n"
        "- rule: t.bad.two\n  title: y\n  severity: hgih\n  condition: event.kind = exec\n"
    )
    res = subprocess.run([sys.executable, "-m", "sentinel_edge.cli", "run", "--rules", str(bad), "-o", "/dev/null",
                          "--status-file", str(tmp_path / "st.json")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert f"{bad}:4:14: unknown field 'proc.nmae' (did you mean 'proc.name'?)" in res.stderr
    assert f"{bad}:7:13:" in res.stderr and "hgih" in res.stderr
    assert "Traceback" not in res.stderr


def test_alerts_only_writes_no_events(tmp_path: Path) -> None:
    rules = tmp_path / "mine.yaml"
    rules.write_text(RULE.format(rid="t.quiet", marker="se-quiet-marker"))
    agent = start_agent(tmp_path, extra=["--rules", str(rules), "--no-events"], alerts=True)
    try:
        a0 = agent.alert_mark()
        run_marker("se-quiet-marker")
        a = agent.wait_alert("t.quiet", a0)
        assert a["class_uid"] == 2004
        # the default set is loaded beside the user's file, and a user rule may use its macros
        assert agent.status()["detection"]["rules"] > 50
    finally:
        assert stop_agent(agent) == 0
    kinds = {o.get("class_uid") for o in agent.objects}
    assert kinds == {1008}, kinds  # health (start/stop) objects only
    assert any(alert_rule(x) == "t.quiet" for x in agent.alerts)
    assert json.loads(agent.status_file.read_text())["running"] is False


def test_user_rules_can_use_default_macros(tmp_path: Path) -> None:
    rules = tmp_path / "mine.yaml"
    rules.write_text("- rule: t.macro\n  title: uses a default macro\n  severity: info\n"
                     "  condition: spawned_process and proc.args contains se-macro-marker\n")
    cli = [sys.executable, "-m", "sentinel_edge.cli", "rules", "validate"]
    res = subprocess.run([*cli, str(rules)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"{1 + DEFAULT_COUNT} rules OK")
    # alone, the macro is unknown
    res = subprocess.run([*cli, "--no-default", str(rules)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "spawned_process" in res.stderr
    agent = start_agent(tmp_path, extra=["--rules", str(rules)], alerts=True)
    try:
        a0 = agent.alert_mark()
        run_marker("se-macro-marker")
        agent.wait_alert("t.macro", a0)
    finally:
        assert stop_agent(agent) == 0
