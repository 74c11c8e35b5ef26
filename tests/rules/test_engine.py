"""The engine's index never changes which rules match: indexed == naive, on real and crafted events."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import AgentHandle
from sentinel_edge.model import Event, ProcessInfo
from sentinel_edge.rules.engine import Engine, load_rules
from sentinel_edge.rules.index import _glob_affixes, _regex_prefixes, key_options, regex_required
from sentinel_edge.rules.loader import load_rule_texts
from sentinel_edge.rules.replay import event_from_ocsf

SIGMA_DIR = Path(__file__).parent / "sigma" / "supported"


def naive(engine: Engine, ev: Event) -> set[str]:
    """Rule ids whose own compiled matcher is true (every rule of the event's kind, no index)."""
    return {r.meta.id for r in engine._by_kind.get(ev.kind, ()) if r.correlator is None and r.match(ev)}


def indexed(engine: Engine, ev: Event) -> set[str]:
    return {a.rule.id for a in engine.evaluate(ev) if a.rule.kind == "match"}


def proc(**kw: object) -> ProcessInfo:
    base: dict[str, object] = {"pid": 4242, "start_ns": 1, "exec_id": "x", "parent_exec_id": None, "ppid": 1,
                               "comm": "bash", "exe": "/usr/bin/bash", "cmdline": ["bash"], "uid": 1000, "euid": 1000,
                               "gid": 1000, "user": "u"}
    base.update(kw)
    return ProcessInfo(**base)  # type: ignore[arg-type]


def file_event(op: int, path: bytes, flags: int = 0, path2: bytes = b"", comm: str = "bash") -> Event:
    p = proc(comm=comm, exe=f"/usr/bin/{comm}", cmdline=[comm])
    raw = {"pid": 4242, "tid": 4242, "ppid": 1, "ns_pid": 4242, "uid": 1000, "euid": 1000, "gid": 1000, "egid": 1000,
           "loginuid": 1000, "sessionid": 1, "mnt_ns": 1, "pid_ns": 1, "net_ns": 1, "cgroup_id": 1, "start_ns": 1,
           "parent_start_ns": 0, "comm": comm.encode()}
    data = {"op": op, "ret": 3, "syscall_nr": 257, "dirfd": -100, "open_flags": flags, "mode": 0o644, "uid": 0,
            "gid": 0, "flags": 2, "dev": 1, "ino": 1, "size": 0, "path": path, "path2": path2, "base": b"",
            "base2": b"", "resolved": path, "xattr_name": b"", "dirfd2": -100, "resolve": 0}
    return Event("file", 10, 1, 0, raw, data, p, None, [])


def test_regex_prefix_and_substring_extraction() -> None:
    assert _regex_prefixes("^/etc/cron") == ("/etc/cron",)
    assert _regex_prefixes("^(/etc|/usr)/x") == ("/etc", "/usr")
    assert _regex_prefixes("^(/etc|/usr)?/x") is None          # optional group: no prefix
    assert _regex_prefixes("^abc|def") is None                 # top-level alternation
    assert _regex_prefixes("^/tm*p") == ("/t",)                 # m is optional
    assert regex_required(r"(/root|/home/[^/]+)/\.ssh/") == ("/.ssh/",)
    assert regex_required(r"^(/etc/a|.*/\.config/b)/") == ("/etc/a", "/.config/b")
    assert regex_required("(?i)secret") is None                  # case-insensitive: no literal
    assert regex_required("a.*b") is None                        # nothing of 3 characters is required
    assert _glob_affixes("/etc/*.conf") == ("/etc/", ".conf")
    assert _glob_affixes("*x[ab]") == ("", "")


def test_keys_come_from_top_level_conjuncts_only() -> None:
    rs = load_rule_texts([("k.yaml", (
        "- rule: t.a\n  title: a\n  severity: low\n"
        "  condition: event.kind = file and file.path startswith /etc/ and not file.name = x\n"
        "- rule: t.b\n  title: b\n  severity: low\n"
        "  condition: event.kind = file and not file.path startswith /etc/\n"
        "- rule: t.c\n  title: c\n  severity: low\n"
        "  condition: event.kind = file and (file.path startswith /etc/ or file.new_path startswith /etc/)\n"
    ))])
    assert not rs.errors, rs.errors
    opts = {r.meta.id: key_options(r.node) for r in rs.rules}
    assert [[(k.operand, k.mode, k.values) for k, _ in ks] for ks in opts["t.a"]] == [
        [("file.path", "pre", ("/etc/",))]]
    assert opts["t.b"] == []                                     # under a not: never a key
    assert [(k.operand, k.mode) for k, _ in opts["t.c"][0]] == [("file.path", "pre"), ("file.new_path", "pre")]


CRAFTED = [
    (1, b"/etc/systemd/system/evil.service", 0o101),
    (1, b"/root/.config/systemd/user/x.service", 0o1101),
    (1, b"/etc/cron.d/se-x", 0o101),
    (1, b"/root/.ssh/authorized_keys", 0o2101),
    (1, b"/root/.ssh/id_rsa", 0),
    (1, b"/etc/shadow", 0),
    (1, b"/etc/ld.so.preload", 0o101),
    (1, b"/home/u/.bashrc", 0o2001),
    (1, b"/usr/bin/.hidden", 0o101),
    (1, b"/tmp/.x", 0o101),
    (1, b"/tmp/plain", 0o101),
    (2, b"/root/.bash_history", 0),
    (2, b"/var/log/auth.log", 0),
    (3, b"/tmp/a", 0),
    (4, b"/usr/bin/sudo", 0),
    (8, b"/usr/bin/ls", 0),
    (9, b"/var/log/syslog", 0),
]


def test_indexed_equals_naive_on_crafted_events() -> None:
    loaded = load_rules(sigma=[SIGMA_DIR])
    engine = Engine(loaded.rules)
    fired: set[str] = set()
    for op, path, flags in CRAFTED:
        for comm in ("bash", "vim", "dpkg"):
            ev = file_event(op, path, flags, path2=b"/etc/systemd/system/y.service" if op == 3 else b"", comm=comm)
            want = naive(engine, ev)
            assert indexed(engine, ev) == want, (path, comm)
            fired |= want
    assert len(fired) >= 8, fired  # the crafted events do exercise keyed rules


@pytest.mark.kernel
def test_indexed_equals_naive_on_real_events(agent: AgentHandle, tmp_path: Path) -> None:
    """Everything the session agent recorded so far, plus a burst of varied real activity."""
    mark = agent.mark()
    script = (f"cd {tmp_path}; mkdir -p d/.h; echo x > d/f.sh; chmod +x d/f.sh; ./d/f.sh; cp /etc/hostname d/h; "
              "mv d/h d/h2; ln -s d/h2 d/l; rm -f d/l; cat /etc/passwd > /dev/null; ls -la /usr/bin > /dev/null; "
              "id; uname -a; touch -d 2001-01-01 d/f.sh")
    subprocess.run(["sh", "-c", script], check=True, capture_output=True, timeout=30)
    agent.wait_for(lambda o: o.get("file", {}).get("path", "").endswith("d/f.sh")
                   and o.get("unmapped", {}).get("op") == "utimes", mark)
    loaded = load_rules(sigma=[SIGMA_DIR])
    engine = Engine(loaded.rules)
    n = 0
    for obj in agent.objects:
        ev = event_from_ocsf(obj)
        if ev is None:
            continue
        n += 1
        assert indexed(engine, ev) == naive(engine, ev), obj.get("unmapped")
    assert n > 200
    assert os.path.exists(tmp_path / "d" / "f.sh")
