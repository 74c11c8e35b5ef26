"""Rule files on disk: lists, macros, exceptions, stateful rules, and every error kind at its file:line:column."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sentinel_edge.model import Event, ProcessInfo
from sentinel_edge.rules.correlate import SequenceCorrelator, ThresholdCorrelator
from sentinel_edge.rules.loader import DEFAULT_DIR, RuleSet, load_default_rules, load_rule_files


def write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return p


def ev(kind: str = "exec", comm: str = "bash", parent: str | None = "nginx",
       cmdline: list[str] | None = None) -> Event:
    p = ProcessInfo(pid=10, start_ns=1, exec_id="e10", parent_exec_id="e9", ppid=9, comm=comm, exe=f"/bin/{comm}",
                    cmdline=cmdline or [comm])
    par = ProcessInfo(pid=9, start_ns=1, exec_id="e9", parent_exec_id=None, ppid=1, comm=parent,
                      exe=f"/usr/sbin/{parent}", cmdline=[parent]) if parent else None
    return Event(kind, 1, 1000, 0, {"comm": comm.encode(), "pid": 10}, {}, process=p, parent=par,
                 ancestry=[par] if par else [])


def errors(rs: RuleSet) -> list[str]:
    return [str(e) for e in rs.errors]


WEB_SHELL = """
- list: shell_binaries
  items: [bash, sh, dash]

- macro: spawned_process
  condition: event.kind = exec

- macro: shell_procs
  condition: proc.name in (shell_binaries)

- rule: se.execution.shell_spawned_by_web_server
  title: Shell spawned by a web server
  description: >
    A web server process started a shell.
  condition: spawned_process and shell_procs and parent.name in (nginx, apache2, httpd, php-fpm)
  severity: high
  attack:
    - technique: T1505.003
      tactic: persistence
  tags: [web, shell]
  output: "Shell {proc.name} (cmd={proc.cmdline}) spawned by {parent.name}"
  exceptions:
    - name: health_checks
      condition: proc.cmdline contains "/healthz"
"""


def test_a_rule_with_lists_macros_and_exceptions(tmp_path: Path) -> None:
    f = write(tmp_path, "web.yaml", WEB_SHELL)
    rs = load_rule_files([f])
    assert errors(rs) == []
    assert rs.files == [f]
    [r] = rs.rules
    m = r.meta
    assert (m.id, m.title, m.severity, m.kind, m.source) == (
        "se.execution.shell_spawned_by_web_server", "Shell spawned by a web server", "high", "match", "native")
    assert m.description == "A web server process started a shell."
    assert [(a.technique, a.tactic) for a in m.attack] == [("T1505.003", "persistence")]
    assert m.tags == ("web", "shell") and (m.file, m.line) == (str(f), 10)
    assert r.kinds == frozenset({"exec"})
    hit = ev(cmdline=["bash", "-c", "id"])
    assert r.match(hit)
    assert r.render(hit) == "Shell bash (cmd=bash -c id) spawned by nginx"
    assert not r.match(ev(comm="python3"))                        # not a shell
    assert not r.match(ev(parent="sshd"))                         # not a web server
    assert not r.match(ev(kind="fork"))                           # not an exec
    assert not r.match(ev(cmdline=["sh", "-c", "curl localhost/healthz"], comm="sh"))   # the exception


def test_names_are_global_across_files_in_any_order(tmp_path: Path) -> None:
    write(tmp_path, "a_rules.yaml", """
        - rule: t.uses_later_names
          title: x
          severity: low
          condition: spawned and proc.name in (shells)
        """)
    write(tmp_path, "b_names.yaml", """
        - macro: spawned
          condition: event.kind = exec
        - list: shells
          items: [bash, more_shells]
        - list: more_shells
          items: [zsh]
        """)
    rs = load_rule_files([tmp_path])
    assert errors(rs) == []
    [r] = rs.rules
    assert r.match(ev(comm="zsh")) and r.match(ev(comm="bash")) and not r.match(ev(comm="more_shells"))


def test_disabled_rules_are_checked_but_not_loaded(tmp_path: Path) -> None:
    f = write(tmp_path, "r.yaml", """
        - rule: t.off
          title: off
          severity: info
          enabled: false
          condition: proc.name = x
        - rule: t.on
          title: on
          severity: info
          condition: proc.name = x
        """)
    rs = load_rule_files([f])
    assert [r.meta.id for r in rs.rules] == ["t.on"] and [m.id for m in rs.disabled] == ["t.off"]
    assert errors(rs) == []


def test_a_broken_rule_does_not_stop_the_others(tmp_path: Path) -> None:
    f = write(tmp_path, "r.yaml", """
        - rule: t.good
          title: good
          severity: info
          condition: proc.name = x
        - rule: t.bad
          title: bad
          severity: info
          condition: proc.name = (x)
        - rule: t.good2
          title: good too
          severity: info
          condition: proc.name = y
        """)
    rs = load_rule_files([f])
    assert [r.meta.id for r in rs.rules] == ["t.good", "t.good2"]
    assert errors(rs) == [f"{f}:8:26: unexpected '(' after 'proc.name =': expected a value"]


def test_stateful_rules_load(tmp_path: Path) -> None:
    f = write(tmp_path, "s.yaml", """
        - rule: t.dropped
          title: written, chmod, run
          type: sequence
          by: proc.tree
          within: 30s
          steps:
            - name: write
              condition: event.kind = file and event.op = open and file.is_write = true
            - name: chmod
              condition: event.kind = file and event.op = chmod and file.mode bitand 0o111
              same: {file.path: write.file.path}
            - name: run
              condition: event.kind = exec
              same: {proc.exe: write.file.path}
          severity: high
          attack: [{technique: T1105, tactic: command-and-control}]
        - rule: t.mass_delete
          title: many deletions
          type: threshold
          condition: event.kind = file and event.op = unlink
          by: proc.exec_id
          distinct: file.path
          count: 100
          within: 10s
          severity: high
        """)
    rs = load_rule_files([f])
    assert errors(rs) == []
    seq, thr = rs.rules
    assert isinstance(seq.correlator, SequenceCorrelator) and seq.meta.kind == "sequence"
    assert seq.kinds == frozenset({"file", "exec"}) and seq.correlator.within_ns == 30_000_000_000
    assert [s.name for s in seq.correlator.steps] == ["write", "chmod", "run"]
    assert isinstance(thr.correlator, ThresholdCorrelator) and thr.kinds == frozenset({"file"})
    assert (thr.correlator.count, thr.correlator.distinct, thr.correlator.within_ns) == (100, "file.path",
                                                                                       10_000_000_000)
    assert seq.match(ev()) and not seq.match(ev(kind="net"))


# ---------------------------------------------------------------- errors, each at its place

CASES: list[tuple[str, str, list[str]]] = [
    ("invalid yaml", """
        - rule: x
          title: [unclosed
        """, ["3:1: invalid YAML: expected ',' or ']', but got '<stream end>'"]),
    ("not a list", """
        rule: x
        """, ["1:1: a rule file must be a list, not a mapping"]),
    ("item kinds", """
        - title: no kind
        - list: a
          macro: b
        - just text
        """, ["1:3: each item needs exactly one of 'list', 'macro' or 'rule'",
              "2:3: each item needs exactly one of 'list', 'macro' or 'rule' (it has list, macro)",
              "4:3: each item must be a mapping with 'list', 'macro' or 'rule', not a single value"]),
    ("unknown and repeated keys", """
        - rule: x.y
          title: t
          severty: high
          severity: high
          severity: low
          condition: proc.name = x
        """, ["3:3: rule 'x.y' has unknown key 'severty' (allowed: actions, attack, condition, description, enabled, "
              "exceptions, output, rule, severity, tags, title, type)",
              "5:3: rule 'x.y' has key 'severity' twice"]),
    ("missing keys", """
        - rule: x.y
          description: nothing else
        """, ["1:3: rule 'x.y' has no 'title'", "1:3: rule 'x.y' has no 'severity'",
              "1:3: rule 'x.y' has no 'condition'"]),
    ("bad values", """
        - rule: X_Y
          title: t
          severity: high
          condition: proc.name = x
        - rule: x.y
          title: t
          severity: urgent
          enabled: maybe
          condition: proc.name = x
          attack:
            - technique: T10
              tactic: privilege_escalation
            - {technique: T1059.004}
            - {technique: T1059, tactic: execution, note: x}
          tags: {a: b}
        """, ["1:9: rule id 'X_Y' is invalid: lower-case letters, digits, '.', '_' and '-'",
              "7:13: rule 'x.y' has unknown severity 'urgent' (one of info, low, medium, high, critical)",
              "8:12: rule 'x.y': enabled must be true or false, not 'maybe'",
              "11:18: rule 'x.y': technique 'T10' is not an ATT&CK id (T1234 or T1234.001)",
              "12:15: rule 'x.y': unknown tactic 'privilege_escalation' (one of reconnaissance, "
              "resource-development, initial-access, execution, persistence, privilege-escalation, "
              "defense-evasion, credential-access, discovery, lateral-movement, collection, command-and-control, "
              "exfiltration, impact)",
              "13:7: an attack entry of rule 'x.y' has no 'tactic'",
              "14:45: an attack entry of rule 'x.y' has unknown key 'note' (allowed: tactic, technique)",
              "15:9: tags of rule 'x.y' must be a list, not a mapping"]),
    ("condition errors in a block scalar", """
        - rule: x.y
          title: t
          severity: low
          condition: >
            event.kind = exec and
            proc.nmae = bash and proc.name in (and)
        """, ["6:5: unknown field 'proc.nmae' (did you mean 'proc.name'?)",
              "6:40: unexpected 'and' after '... and proc.nmae = bash and proc.name in (': expected a value"]),
    ("syntax error in a block scalar", """
        - rule: x.y
          title: t
          severity: low
          condition: |
            event.kind = exec and
              proc.name in (and)
        """, ["6:21: unexpected 'and' after 'event.kind = exec and proc.name in (': expected a value"]),
    ("output and exception errors", """
        - rule: x.y
          title: t
          severity: low
          condition: proc.name = x
          output: "{proc.name} by {parent.nmae}"
          exceptions:
            - name: e1
              condition: proc.exe startswith
            - name: e1
              condition: proc.name = y
            - {name: e3}
        """, ["5:28: unknown field 'parent.nmae' (did you mean 'parent.name'?)",
              "8:37: unexpected end of the condition after 'proc.exe startswith': expected a value",
              "9:13: rule 'x.y' has two exceptions named 'e1'",
              "11:7: an exception of rule 'x.y' needs 'name' and 'condition'"]),
    ("names", """
        - list: shells
          items: [bash]
        - list: shells
          items: [sh]
        - macro: proc.name
          condition: event.kind = exec
        - macro: 9lives
          condition: event.kind = exec
        - list: bad
          items: [[nested]]
        - list: nothing
        """, ["3:9: 'shells' is already defined at {f}:1:9",
              "5:10: macro name 'proc.name' is invalid (letters, digits and _, not starting with a digit; "
              "not and/or/not)",
              "7:10: macro name '9lives' is invalid (letters, digits and _, not starting with a digit; "
              "not and/or/not)",
              "10:11: an item of list 'bad' must be a single value, not a list",
              "11:3: list 'nothing' has no 'items'"]),
    ("broken macros are reported once", """
        - macro: broken
          condition: proc.nme = x
        - macro: typed
          condition: proc.pid startswith 1
        - macro: loop_a
          condition: loop_b
        - macro: loop_b
          condition: loop_a
        - rule: r.one
          title: t
          severity: low
          condition: broken
        - rule: r.two
          title: t
          severity: low
          condition: event.kind = exec and broken
        - rule: r.three
          title: t
          severity: low
          condition: typed
        """, ["2:14: unknown field 'proc.nme' (did you mean 'proc.name'?)",
              "4:14: 'startswith' works on text, but proc.pid is int",
              "6:14: macro cycle: loop_a -> loop_b -> loop_a",
              "8:14: macro cycle: loop_a -> loop_b -> loop_a",
              "12:14: macro 'broken' is invalid (see {f}:1:10)",
              "16:36: macro 'broken' is invalid (see {f}:1:10)"]),
    ("stateful errors", """
        - rule: s.one
          title: t
          severity: low
          type: sequence
          by: proc.tre
          within: 30 seconds
          steps:
            - name: a
              condition: event.kind = file
              same: {file.path: b.file.path}
        - rule: s.two
          title: t
          severity: low
          type: threshold
          condition: event.kind = file
          by: proc.exec_id
          within: 10s
          count: -1
          distinct: file.pth
          steps: []
        - rule: s.three
          title: t
          severity: low
          type: window
          condition: event.kind = file
        - rule: s.four
          title: t
          severity: low
          type: sequence
          by: user.uid
          within: 1m
          steps:
            - name: a
              condition: event.kind = file
            - name: b
              condition: event.kind = exec
              same: {proc.exe: a.file.paht, file.pth: a.file.path}
        """, ["5:7: by of rule 's.one': unknown field 'proc.tre' (did you mean 'proc.tree'?)",
              "6:11: rule 's.one': within '30 seconds' is not a duration (a positive number with ms, s, m or h: 30s)",
              "8:5: rule 's.one': a sequence needs at least 2 steps",
              "10:25: same of step 'a' of rule 's.one': 'b.file.path' must name an earlier step and a field "
              "(write.file.path)",
              "20:3: rule 's.two' (threshold) has unknown key 'steps' (allowed: actions, attack, by, condition, count, "
              "description, distinct, enabled, exceptions, output, rule, severity, tags, title, type, within)",
              "18:10: rule 's.two': count must be a positive integer, not '-1'",
              "19:13: distinct of rule 's.two': unknown field 'file.pth' (did you mean 'file.path'?)",
              "24:9: rule 's.three' has unknown type 'window' (one of match, sequence, threshold)",
              "37:24: same of step 'b' of rule 's.four': unknown field 'file.paht' (did you mean 'file.path'?)",
              "37:37: same of step 'b' of rule 's.four': unknown field 'file.pth' (did you mean 'file.path'?)"]),
]


@pytest.mark.parametrize(("name", "text", "want"), CASES, ids=[c[0] for c in CASES])
def test_errors_are_located(tmp_path: Path, name: str, text: str, want: list[str]) -> None:
    f = write(tmp_path, "rules.yaml", text)
    rs = load_rule_files([f])
    got = errors(rs)
    expected = [f"{f}:" + w.replace("{f}", str(f)) for w in want]
    assert sorted(got) == sorted(expected)


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    one = write(tmp_path, "one.yaml", """
        - rule: t.same
          title: a
          severity: low
          condition: proc.name = x
        """)
    two = write(tmp_path, "two.yaml", """
        - list: l
          items: [a]
        - rule: t.same
          title: b
          severity: low
          condition: proc.name = y
        """)
    rs = load_rule_files([one, two])
    assert errors(rs) == [f"{two}:3:3: duplicate rule id 't.same' (first defined at {one}:1:3)"]
    assert [r.meta.title for r in rs.rules] == ["a"]


def test_missing_and_unreadable_paths(tmp_path: Path) -> None:
    rs = load_rule_files([tmp_path / "nope.yaml"])
    assert errors(rs) == [f"{tmp_path / 'nope.yaml'}: no such file or directory"]
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"- list: x\n  items: [\xe9]\n")
    rs = load_rule_files([bad])
    assert len(rs.errors) == 1 and str(rs.errors[0]).startswith(f"{bad}: cannot read:")


def test_empty_files_and_directories(tmp_path: Path) -> None:
    write(tmp_path, "empty.yaml", "")
    write(tmp_path, "comment.yml", "# nothing yet\n")
    (tmp_path / "notes.txt").write_text("not a rule file")
    rs = load_rule_files([tmp_path])
    assert (rs.rules, rs.errors) == ([], [])
    assert sorted(p.name for p in rs.files) == ["comment.yml", "empty.yaml"]


def test_check_raises_every_error_at_once(tmp_path: Path) -> None:
    f = write(tmp_path, "r.yaml", """
        - rule: a.b
          title: t
          severity: nope
          condition: proc.nmae = x
        """)
    rs = load_rule_files([f])
    with pytest.raises(Exception) as info:
        rs.check()
    e = info.value
    assert str(e).startswith(f"{f}:3:13: rule 'a.b' has unknown severity 'nope'") and "(and 1 more)" in str(e)
    assert len(getattr(e, "errors", [])) == 2


def test_default_rule_set_loads_cleanly() -> None:
    rs = load_default_rules()
    assert errors(rs) == []
    if DEFAULT_DIR.is_dir() and any(DEFAULT_DIR.glob("*.yaml")):
        assert rs.files and all(r.meta.file.startswith(str(DEFAULT_DIR)) for r in rs.rules)
