"""`sentinel-edge rules validate|test|import-sigma` run as real subprocesses on real files.

The replay test records real events with the session agent (kernel test),
writes them to a file and replays them through rules with the command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import AgentHandle


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sentinel_edge.cli", "rules", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def write(p: Path, text: str) -> Path:
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return p


GOOD = """
- list: shells
  items: [bash, sh]
- rule: t.shell
  title: a shell
  severity: low
  condition: event.kind = exec and proc.name in (shells)
- rule: t.off
  title: disabled
  severity: low
  enabled: false
  condition: event.kind = exec
"""


def test_validate_ok(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", GOOD)
    write(tmp_path / "b.yml", """
        - rule: t.other
          title: other
          severity: info
          condition: proc.exe startswith /tmp/
        """)
    r = cli("validate", "--no-default", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "3 rules OK (1 disabled) in 2 files\n"


def test_validate_prints_every_error_located(tmp_path: Path) -> None:
    f = write(tmp_path / "bad.yaml", """
        - rule: x.y
          title: t
          severty: high
          condition: proc.name in (and)
        - rule: x.z
          title: t
          severity: high
          condition: >
            event.kind = exec and
            proc.nmae = bash
        """)
    r = cli("validate", "--no-default", str(f), str(tmp_path / "missing.yaml"))
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.splitlines() == [
        f"{tmp_path / 'missing.yaml'}: no such file or directory",
        f"{f}:1:3: rule 'x.y' has no 'severity'",
        f"{f}:3:3: rule 'x.y' has unknown key 'severty' (allowed: actions, attack, condition, description, enabled, "
        "exceptions, output, rule, severity, tags, title, type)",
        f"{f}:4:28: unexpected 'and' after 'proc.name in (': expected a value",
        f"{f}:10:5: unknown field 'proc.nmae' (did you mean 'proc.name'?)",
        "5 errors in 1 file",
    ]
    assert "Traceback" not in r.stderr


def test_validate_the_default_set() -> None:
    from sentinel_edge.rules.loader import DEFAULT_DIR

    r = cli("validate", str(DEFAULT_DIR))
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith(" OK in " + r.stdout.split(" OK in ")[1]) and "rules OK" in r.stdout


def test_test_reports_rule_errors_and_bad_event_files(tmp_path: Path) -> None:
    bad_rules = write(tmp_path / "bad.yaml", """
        - rule: x.y
          title: t
          severity: high
          condition: proc.nmae = x
        """)
    events = tmp_path / "events.jsonl"
    events.write_text("")
    r = cli("test", "--events", str(events), "--rules", str(bad_rules), "--no-default")
    assert r.returncode == 1
    assert f"{bad_rules}:4:14: unknown field 'proc.nmae'" in r.stderr and "nothing replayed" in r.stderr
    good = write(tmp_path / "good.yaml", GOOD)
    events.write_text('{"class_uid": 1007}\nnot json\n')
    r = cli("test", "--events", str(events), "--rules", str(good), "--no-default")
    assert r.returncode == 1 and f"{events}:2:" in r.stderr and "Traceback" not in r.stderr
    r = cli("test", "--events", str(tmp_path / "none.jsonl"), "--rules", str(good), "--no-default")
    assert r.returncode == 1 and "none.jsonl" in r.stderr and "Traceback" not in r.stderr
    r = cli("test", "--events", str(events), "--no-default")
    assert r.returncode == 1 and "no rules to test" in r.stderr


def test_import_sigma(tmp_path: Path) -> None:
    (tmp_path / "ok.yml").write_text(textwrap.dedent("""
        title: Whoami
        id: 0c1d2c1a-0000-4000-8000-000000000001
        status: test
        logsource: {product: linux, category: process_creation}
        detection:
          sel: {Image|endswith: /whoami}
          condition: sel
        level: low
        """))
    (tmp_path / "unsupported.yml").write_text(textwrap.dedent("""
        title: Windows only
        id: 0c1d2c1a-0000-4000-8000-000000000002
        status: test
        logsource: {product: windows, category: registry_set}
        detection:
          sel: {TargetObject|contains: Run}
          condition: sel
        level: low
        """))
    r = cli("import-sigma", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("loaded 1 of 2 Sigma rules\n")
    assert "unsupported.yml" in r.stdout


# ---------------------------------------------------------------- replay of real events

@pytest.mark.kernel
def test_test_replays_real_events(agent: AgentHandle, tmp_path: Path) -> None:
    """Real exec and file events recorded by the agent fire a match, a threshold and a sequence rule."""
    tag = f"se_cli_{os.getpid()}_{int(time.time())}"
    work = tmp_path / tag
    work.mkdir()
    prog = work / "dropped"
    mark = agent.mark()
    script = (f"cp /bin/true {prog} && chmod 755 {prog} && {prog} && "
              f"for i in 1 2 3 4 5; do : > {work}/f$i; rm {work}/f$i; done")
    proc = subprocess.run(["/bin/sh", "-c", script], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    agent.wait_for(lambda o: o.get("process", {}).get("file", {}).get("path") == str(prog), mark)
    agent.wait_all(lambda o: str(work) in json.dumps(o.get("file", {})) and "f5" in json.dumps(o), 1, mark)
    time.sleep(0.3)
    objects = agent.find_all(lambda o: True, mark)
    events = tmp_path / "recorded.jsonl"
    events.write_text("".join(json.dumps(o) + "\n" for o in objects))
    lines = events.read_text().splitlines()
    exec_line = next(i for i, line in enumerate(lines, 1)
                     if json.loads(line).get("process", {}).get("file", {}).get("path") == str(prog)
                     and json.loads(line).get("class_uid") == 1007 and json.loads(line).get("activity_id") == 1)
    rules = write(tmp_path / "rules.yaml", f"""
        - rule: t.ran_dropped
          title: ran the dropped program
          severity: high
          condition: event.kind = exec and proc.exe = {prog}
          output: "ran {{proc.exe}} from {{parent.name}}"
        - rule: t.many_deletes
          title: deletions in the work dir
          type: threshold
          condition: event.kind = file and event.op = unlink and file.path startswith {work}/
          by: proc.tree
          distinct: file.path
          count: 5
          within: 1m
          severity: medium
        - rule: t.write_chmod_run
          title: written, made executable, run
          type: sequence
          by: proc.tree
          within: 1m
          steps:
            - name: write
              condition: event.kind = file and event.op = open and file.is_write = true and file.path = {prog}
            - name: chmod
              condition: event.kind = file and event.op = chmod and file.mode bitand 0o111
              same: {{file.path: write.file.path}}
            - name: run
              condition: event.kind = exec
              same: {{proc.exe: write.file.path}}
          severity: high
        - rule: t.never
          title: never fires
          severity: low
          condition: event.kind = exec and proc.name = {tag}_nothing
        """)
    r = cli("test", "--events", str(events), "--rules", str(rules), "--no-default")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert f"line {exec_line}: t.ran_dropped [high] ran {prog} from sh" in out, r.stdout
    assert any(line.startswith(f"line {exec_line}: t.write_chmod_run [high]") for line in out), r.stdout
    assert any(": t.many_deletes [medium] " in line for line in out), r.stdout
    assert not any("t.never" in line for line in out)
    summary = out[out.index(next(line for line in out if " events replayed through 4 rules: " in line)):]
    assert summary[0].endswith(" events replayed through 4 rules: 3 alerts"), summary
    assert int(summary[0].split()[0]) >= 8      # exec, opens, chmod, unlinks at least
    assert sorted(s.split()[1] for s in summary[1:]) == ["t.many_deletes", "t.ran_dropped", "t.write_chmod_run"]
