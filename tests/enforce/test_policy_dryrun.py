"""Dry run over a real recording: an agent records real execs, opens, connects and kernel loads,
then policies are dry-run over its OCSF file and every hit (and non-hit) is checked field by field."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cmd, run_py, start_agent, stop_agent
from sentinel_edge.enforce.dryrun import DryRunReport, Hit, dry_run, dry_run_file
from sentinel_edge.enforce.policy import load_policy_files
from sentinel_edge.rules.replay import iter_events

pytestmark = pytest.mark.kernel

NOBODY = 65534
PYTHON = os.path.realpath(sys.executable)

BPF_LOAD = textwrap.dedent("""
    import ctypes, struct
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    insns = ctypes.create_string_buffer(struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0), 16)
    lic = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<IIQQ", attr, 0, 1, 2, ctypes.addressof(insns), ctypes.addressof(lic))  # SOCKET_FILTER
    struct.pack_into("16s", attr, 48, b"se_dryrun")
    fd = libc.syscall(321, 5, attr, 128)   # bpf(BPF_PROG_LOAD)
    assert fd >= 0, ctypes.get_errno()
""")
# finit_module(fd of a file): ENOSYS on a kernel without modules, still seen by the raw_tp fallback
MODULE_LOAD = textwrap.dedent("""
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    fd = os.open("/bin/true", os.O_RDONLY)
    libc.syscall(313, fd, b"", 0)
""")


@dataclass
class Recording:
    work: Path
    events: Path
    pids: dict[str, int]
    ports: dict[str, int]
    objects: list[dict[str, Any]]     # the recording's lines, parsed (index = line - 1)


def connect_code(family: str, host: str, port: int) -> str:
    return (f"import socket\ns = socket.socket(socket.{family}, socket.SOCK_STREAM)\n"
            f"s.connect(({host!r}, {port}))\ns.close()\n")


@pytest.fixture(scope="module")
def recording() -> Iterator[Recording]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    work = Path(tempfile.mkdtemp(prefix="se-dryrun-", dir="/tmp"))
    listeners: list[socket.socket] = []
    try:
        work.chmod(0o755)   # nobody runs a program from here
        for d in ("bin", "scripts", "allow", "parent", "data", "agent"):
            (work / d).mkdir(mode=0o755)
        shutil.copy2("/bin/true", work / "bin" / "mytrue")
        odd = os.fsencode(work / "bin") + b"/b\xffad"      # a file name that is not UTF-8
        shutil.copy2(b"/bin/true", odd)
        (work / "link-true").symlink_to(work / "bin" / "mytrue")
        os.link(work / "bin" / "mytrue", work / "hard-true")
        script = work / "scripts" / "s.sh"
        script.write_text("#!/bin/sh\nexit 0\n")
        script.chmod(0o755)
        shutil.copy2("/bin/cat", work / "allow" / "okcat")
        shutil.copy2("/bin/dash", work / "parent" / "psh")
        (work / "data" / "secret.txt").write_text("secret\n")
        ports: dict[str, int] = {}
        for name, fam, host in (("p1", socket.AF_INET, "127.0.0.1"), ("p2", socket.AF_INET, "127.0.0.1"),
                                ("p6", socket.AF_INET6, "::1")):
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.bind((host, 0))
            s.listen(8)
            listeners.append(s)
            ports[name] = s.getsockname()[1]

        agent = start_agent(work / "agent", "mem:\n  syscall_fallback: on\n",
                            extra=["--record-all", "--no-default-rules"])
        pids: dict[str, int] = {}
        try:
            mytrue = str(work / "bin" / "mytrue")
            secret = str(work / "data" / "secret.txt")
            pids["A"], _ = run_cmd([mytrue])
            pids["B"], _ = run_cmd([str(work / "link-true")])
            pids["U"], _ = run_cmd([os.fsdecode(odd)])
            pids["J"], _ = run_cmd([str(work / "hard-true")])
            pids["C"], _ = run_cmd(["./s.sh"], cwd=str(work / "scripts"))
            pids["N"], _ = run_cmd([mytrue], user=NOBODY, group=NOBODY, extra_groups=[])
            pids["D"], res = run_cmd(["/bin/cat", secret])
            assert res.stdout == b"secret\n"
            pids["F"], res = run_cmd([str(work / "allow" / "okcat"), secret])
            assert res.stdout == b"secret\n"
            pids["E"], _ = run_py(f"open({secret!r}, 'w').write('x')")
            pids["P"], _ = run_cmd([str(work / "parent" / "psh"), "-c",
                                    f"{mytrue}; {work / 'allow' / 'okcat'} /dev/null; exit 0"])
            pids["G"], _ = run_py(connect_code("AF_INET", "127.0.0.1", ports["p1"]))
            pids["I"], _ = run_py(connect_code("AF_INET", "127.0.0.1", ports["p2"]))
            pids["H"], _ = run_py(connect_code("AF_INET6", "::1", ports["p6"]))
            pids["V"], _ = run_py(connect_code("AF_INET6", "::ffff:127.0.0.1", ports["p1"]))  # dual-stack
            pids["K"], _ = run_py(BPF_LOAD)
            pids["M"], _ = run_py(MODULE_LOAD)
        finally:
            assert stop_agent(agent) == 0, agent.log.read_text()[-3000:]
        objects = [json.loads(line) if line.strip() else {} for line in agent.out.read_bytes().splitlines()]
        yield Recording(work, agent.out, pids, ports, objects)
    finally:
        for s in listeners:
            s.close()
        shutil.rmtree(work, ignore_errors=True)


def policies_yaml(r: Recording) -> str:
    w = r.work
    return textwrap.dedent(f"""
        policies:
          - id: bin-prefix
            mode: enforce
            exec: {{deny: {{prefixes: [{w}/bin/]}}}}
          - id: true-identity
            exec: {{deny: {{files: [{w}/bin/mytrue]}}}}
          - id: script-prefix
            mode: enforce
            exec: {{deny: {{prefixes: [{w}/scripts/]}}}}
          - id: nobody-only
            scope: {{users: [{NOBODY}]}}
            exec: {{deny: {{prefixes: [{w}/bin/]}}}}
          - id: psh-children-true
            scope: {{parents: [{w}/parent/psh]}}
            exec: {{deny: {{files: [{w}/bin/mytrue]}}}}
          - id: psh-children-sha
            scope: {{parents: [{w}/parent/psh]}}
            exec: {{deny: {{sha256: ["{'0' * 64}"]}}}}
          - id: secret-read
            mode: enforce
            file: {{paths: [{w}/data/secret.txt], access: [read], allow: [{w}/allow/okcat]}}
          - id: secret-glob-read
            file: {{paths: ["{w}/data/sec*.txt"], access: [read]}}
          - id: containers-only
            scope: {{containers: containers}}
            exec: {{deny: {{prefixes: [{w}/bin/]}}}}
          - id: host-only
            scope: {{containers: host}}
            exec: {{deny: {{files: [{w}/hard-true]}}}}
          - id: secret-dir-write
            file: {{paths: [{w}/data/], access: [write]}}
          - id: lo4-port
            mode: enforce
            connect: {{cidrs: [127.0.0.0/8], ports: [{r.ports["p1"]}]}}
          - id: lo6
            connect: {{cidrs: ["::1/128"], ports: [{r.ports["p6"]}]}}
          - id: lo4-other-user
            scope: {{users: [4242]}}
            connect: {{cidrs: [127.0.0.0/8], ports: [{r.ports["p1"]}]}}
          - id: no-bpf
            mode: enforce
            kernel: {{deny: [bpf_load]}}
          - id: bpf-by-python-allowed
            kernel: {{deny: [bpf_load], allow: [{PYTHON}]}}
          - id: no-modules
            kernel: {{deny: [module_load]}}
          - id: inbound
            inbound: {{interfaces: [lo], sources: [10.0.0.0/8]}}
        """)


@pytest.fixture(scope="module")
def policy_file(recording: Recording) -> Path:
    f = recording.work / "policies.yaml"
    f.write_text(policies_yaml(recording))
    return f


@pytest.fixture(scope="module")
def report(recording: Recording, policy_file: Path) -> DryRunReport:
    return dry_run_file(load_policy_files([policy_file]), recording.events)


def check_line(r: Recording, h: Hit) -> dict[str, Any]:
    """The hit's line in the recording is the event it names (pid and kernel time)."""
    assert h.line >= 1
    obj = r.objects[h.line - 1]
    um = obj["unmapped"]
    assert um["event"] == h.event_kind
    assert um["proc"]["pid"] == h.pid
    assert um["proc"]["ktime_ns"] == h.time_ns
    return obj


def by_pid(hits: list[Hit]) -> dict[int, Hit]:
    out = {h.pid: h for h in hits}
    assert len(out) == len(hits), hits
    return out


def test_exec_by_resolved_path_prefix(recording: Recording, report: DryRunReport) -> None:
    r, w, p = recording, recording.work, recording.pids
    res = report.result("bin-prefix")
    mytrue = f"{w}/bin/mytrue"
    reason = f"executable path is under prefix {w}/bin/"
    hits = by_pid(res.hits)
    # direct, through a symlink, as nobody, a non-UTF-8 name, and as psh's child; not the hard link (its path is
    # elsewhere) nor the script
    assert len(res.hits) == 5
    assert {p["A"], p["B"], p["N"], p["U"]} <= set(hits)
    assert p["J"] not in hits and p["C"] not in hits
    odd = os.fsdecode(os.fsencode(w) + b"/bin/b\xffad")
    u = hits.pop(p["U"])
    check_line(r, u)
    assert (u.exe, u.target, u.reason, u.action) == (odd, odd, reason, "kill")
    assert r.objects[u.line - 1]["unmapped"]["exe_path"] == f"{w}/bin/b\\xffad"   # OCSF text of the raw bytes
    assert f"pid {p['U']} {w}/bin/b\\xffad: kill {w}/bin/b\\xffad: {reason}" in report.render()
    for h in hits.values():
        obj = check_line(r, h)
        assert (h.policy_id, h.exe, h.target, h.reason, h.action, h.event_kind) == (
            "bin-prefix", mytrue, mytrue, reason, "kill", "exec")
        assert obj["unmapped"]["exe_path"] == mytrue
    child = [h for h in res.hits if h.pid not in (p["A"], p["B"], p["N"], p["U"])]
    assert len(child) == 1 and r.objects[child[0].line - 1]["unmapped"]["proc"]["ppid"] == p["P"]
    assert (res.undecided, res.allowed, res.out_of_scope, res.undecided_samples) == (0, 0, 0, [])


def test_exec_by_identity_catches_links(recording: Recording, report: DryRunReport) -> None:
    r, w, p = recording, recording.work, recording.pids
    res = report.result("true-identity")
    hits = by_pid(res.hits)
    extra = set(hits) - {p["A"], p["B"], p["J"], p["N"]}
    assert len(hits) == 5 and len(extra) == 1       # and psh's child
    assert r.objects[hits[extra.pop()].line - 1]["unmapped"]["proc"]["ppid"] == p["P"]
    for key, exe in (("A", f"{w}/bin/mytrue"), ("B", f"{w}/bin/mytrue"), ("J", f"{w}/hard-true"),
                     ("N", f"{w}/bin/mytrue")):
        h = hits[p[key]]
        check_line(r, h)
        assert (h.policy_id, h.exe, h.target, h.reason, h.action, h.event_kind) == (
            "true-identity", exe, exe, f"executable is denied file {w}/bin/mytrue (same file (device, inode))",
            "audit", "exec")
    st = os.stat(w / "bin" / "mytrue")
    obj = r.objects[hits[p["J"]].line - 1]
    assert obj["unmapped"]["exe"]["ino"] == st.st_ino   # the hard link is the same inode
    assert res.notes == ["denied files are identified as they are on this host now; the recording has no inode "
                         "generation, so (device, inode) or the path is compared"]


def test_script_is_matched_not_its_interpreter(recording: Recording, report: DryRunReport) -> None:
    r, w, p = recording, recording.work, recording.pids
    res = report.result("script-prefix")
    assert len(res.hits) == 1
    h = res.hits[0]
    obj = check_line(r, h)
    dash = os.path.realpath("/bin/sh")
    assert h == Hit(policy_id="script-prefix", time_ns=h.time_ns, line=h.line, pid=p["C"], exe=dash,
                    target=f"{w}/scripts/s.sh", reason=f"#! script (run by {dash}) is under prefix {w}/scripts/",
                    action="deny", event_kind="exec")
    assert obj["unmapped"]["filename"] == "./s.sh" and obj["unmapped"]["cwd"] == f"{w}/scripts"
    line = (f"  line {h.line} t={h.time_ns / 1e9:.3f}s pid {p['C']} {dash}: deny {w}/scripts/s.sh: "
            f"#! script (run by {dash}) is under prefix {w}/scripts/")
    assert line in report.render().splitlines()


def test_scope_by_user_and_parent(recording: Recording, report: DryRunReport) -> None:
    r, w, p = recording, recording.work, recording.pids
    res = report.result("nobody-only")
    assert [h.pid for h in res.hits] == [p["N"]]
    check_line(r, res.hits[0])
    assert r.objects[res.hits[0].line - 1]["unmapped"]["proc"]["uid"] == NOBODY
    assert res.out_of_scope == 4                   # A, B, U and psh's child run as root
    res = report.result("containers-only")
    assert (res.hits, res.out_of_scope) == ([], 5)            # nothing here runs in a container
    res = report.result("host-only")
    assert len(res.hits) == 5 and res.out_of_scope == 0       # a hard link names the same file
    assert {h.reason for h in res.hits} == {f"executable is denied file {w}/hard-true (same file (device, inode))"}
    res = report.result("psh-children-true")
    assert len(res.hits) == 1 and res.out_of_scope == 4     # A, B, J, N are the test's children, not psh's
    h = res.hits[0]
    assert r.objects[h.line - 1]["unmapped"]["proc"]["ppid"] == p["P"]
    assert (h.exe, h.target, h.action) == (f"{w}/bin/mytrue", f"{w}/bin/mytrue", "audit")


def test_sha256_is_undecided(recording: Recording, report: DryRunReport) -> None:
    w, p = recording.work, recording.pids
    res = report.result("psh-children-sha")
    assert (res.hits, res.undecided, res.out_of_scope) == ([], 2, 0)
    got = sorted((h.target, h.exe, h.reason, h.action) for h in res.undecided_samples)
    assert got == [(f"{w}/allow/okcat", f"{w}/allow/okcat", "its SHA-256 is not in the recording", "audit"),
                   (f"{w}/bin/mytrue", f"{w}/bin/mytrue", "its SHA-256 is not in the recording", "audit")]
    for h in res.undecided_samples:
        assert recording.objects[h.line - 1]["unmapped"]["proc"]["ppid"] == p["P"]
    assert any("cannot be decided from a recording" in n for n in res.notes)


def test_protected_file_opens(recording: Recording, report: DryRunReport) -> None:
    r, w, p = recording, recording.work, recording.pids
    secret = f"{w}/data/secret.txt"
    res = report.result("secret-read")
    assert len(res.hits) == 1 and (res.allowed, res.out_of_scope) == (1, 0)   # okcat is allowed; E only wrote
    h = res.hits[0]
    obj = check_line(r, h)
    assert h == Hit(policy_id="secret-read", time_ns=h.time_ns, line=h.line, pid=p["D"],
                    exe=os.path.realpath("/bin/cat"), target=secret,
                    reason=f"open for read (O_RDONLY) of protected {secret} (same file (device, inode)), "
                           "by an executable not on the allow list",
                    action="deny", event_kind="file")
    assert obj["unmapped"]["open_flags"][0] == "O_RDONLY"
    res = report.result("secret-dir-write")
    assert len(res.hits) == 1 and (res.allowed, res.out_of_scope) == (0, 0)
    h = res.hits[0]
    obj = check_line(r, h)
    assert h == Hit(policy_id="secret-dir-write", time_ns=h.time_ns, line=h.line, pid=p["E"], exe=PYTHON,
                    target=secret, reason=f"open for write (O_WRONLY|O_TRUNC) of protected {w}/data/ "
                                          "(a file directly in the protected directory)",
                    action="audit", event_kind="file")
    assert {"O_WRONLY", "O_TRUNC", "O_CREAT"} <= set(obj["unmapped"]["open_flags"])
    res = report.result("secret-glob-read")   # cat and okcat read it (no allow list); the write is not a read
    assert sorted((h.pid, h.target, h.reason) for h in res.hits) == sorted(
        (p[k], secret, f"open for read (O_RDONLY) of protected {w}/data/sec*.txt (path matches the pattern)")
        for k in ("D", "F"))


def test_connects(recording: Recording, report: DryRunReport) -> None:
    r, p, ports = recording, recording.pids, recording.ports
    res = report.result("lo4-port")
    assert len(res.hits) == 2       # the connect to the other loopback port (I) is not hit
    h, v = by_pid(res.hits)[p["G"]], by_pid(res.hits)[p["V"]]
    check_line(r, h)
    assert h == Hit(policy_id="lo4-port", time_ns=h.time_ns, line=h.line, pid=p["G"], exe=PYTHON,
                    target=f"127.0.0.1:{ports['p1']}",
                    reason=f"connect: destination in 127.0.0.0/8, port {ports['p1']} denied",
                    action="deny", event_kind="net")
    check_line(r, v)                # an IPv4-mapped destination of a dual-stack socket is an IPv4 destination
    assert (v.target, v.reason, v.action) == (f"[::ffff:127.0.0.1]:{ports['p1']}",
                                              f"connect: destination in 127.0.0.0/8, port {ports['p1']} denied",
                                              "deny")
    res = report.result("lo6")
    assert len(res.hits) == 1
    h = res.hits[0]
    check_line(r, h)
    assert h == Hit(policy_id="lo6", time_ns=h.time_ns, line=h.line, pid=p["H"], exe=PYTHON,
                    target=f"[::1]:{ports['p6']}", reason=f"connect: destination in ::1/128, port {ports['p6']} denied",
                    action="audit", event_kind="net")
    res = report.result("lo4-other-user")
    assert (res.hits, res.out_of_scope) == ([], 2)   # G and V run as root


def test_kernel_loads(recording: Recording, report: DryRunReport) -> None:
    r, p = recording, recording.pids
    hits = {h.pid: h for h in report.result("no-bpf").hits}   # other processes on the host may load BPF too
    h = hits[p["K"]]
    check_line(r, h)
    assert h == Hit(policy_id="no-bpf", time_ns=h.time_ns, line=h.line, pid=p["K"], exe=PYTHON, target="bpf_load",
                    reason="BPF_PROG_LOAD of program 'se_dryrun'", action="kill", event_kind="bpf")
    allowed = report.result("bpf-by-python-allowed")
    assert p["K"] not in {x.pid for x in allowed.hits} and allowed.allowed >= 1
    mods = {h.pid: h for h in report.result("no-modules").hits}
    h = mods[p["M"]]
    check_line(r, h)
    assert (h.exe, h.target, h.reason, h.action, h.event_kind) == (
        PYTHON, "module_load", f"finit_module of {os.path.realpath('/bin/true')}", "audit", "module")
    assert p["K"] not in mods


def test_inbound_and_report_text(recording: Recording, report: DryRunReport) -> None:
    res = report.result("inbound")
    assert (res.hits, res.notes) == ([], ["inbound packets are not recorded: a dry run cannot show what this "
                                          "policy would drop"])
    text = report.render()
    lines = text.splitlines()
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(report.by_kind.items()))
    assert lines[0] == f"dry run over {report.events} recorded events ({kinds})"
    assert "inbound [inbound, audit, high] drop inbound from 10.0.0.0/8 on lo: 0 hits" in lines
    assert f"secret-read [file, enforce, high] deny read of {recording.work}/data/secret.txt except by " \
           f"{recording.work}/allow/okcat: 1 hit, 1 allowed by the allow list" in lines
    assert lines[-1] == f"{report.total_hits} hits by 18 policies"


def test_dry_run_over_events_equals_the_file_run(recording: Recording, policy_file: Path,
                                                 report: DryRunReport) -> None:
    again = dry_run(load_policy_files([policy_file]), (e for _, e in iter_events(recording.events)))
    assert again.events == report.events and again.by_kind == report.by_kind
    for a, b in zip(again.results, report.results, strict=True):
        assert [(h.pid, h.target, h.reason, h.time_ns, h.line) for h in a.hits] == \
               [(h.pid, h.target, h.reason, h.time_ns, 0) for h in b.hits]
        assert (a.undecided, a.allowed, a.out_of_scope) == (b.undecided, b.allowed, b.out_of_scope)


def test_cli_dry_run(recording: Recording, policy_file: Path) -> None:
    f = policy_file
    res = subprocess.run([sys.executable, "-m", "sentinel_edge.cli", "policy", "dry-run", "--events",
                          str(recording.events), "--max-hits", "1", str(f)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("dry run over ")
    assert f"bin-prefix [exec, enforce, high] deny exec of anything under {recording.work}/bin/: 5 hits" \
        in res.stdout.splitlines()
    assert "  ... and 4 more" in res.stdout.splitlines()
    bad = recording.work / "bad.jsonl"
    bad.write_text("{not json\n")
    res = subprocess.run([sys.executable, "-m", "sentinel_edge.cli", "policy", "dry-run", "--events", str(bad),
                          str(f)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.startswith(f"{bad}:1:2: not JSON: ")
