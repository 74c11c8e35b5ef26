"""Field values of real events: real actions, an in-process pipeline (BpfSession -> Decoder -> Enricher).

The pipeline runs in the test process, which the sensors ignore (agent_tgid),
so every action is done by a child process. Every field family is checked at
least once against values known independently (paths we created, pids the
children print, os.stat, /proc).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sentinel_edge import config
from sentinel_edge.enrich import Enricher, host_info
from sentinel_edge.loader import probes
from sentinel_edge.loader.session import BpfSession
from sentinel_edge.model import Event
from sentinel_edge.output.ocsf import to_ocsf
from sentinel_edge.output.ocsf.common import HostInfo
from sentinel_edge.rules.fields import FIELDS
from sentinel_edge.wire import Decoder

pytestmark = pytest.mark.kernel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import run_helper  # noqa: E402


def val(name: str, e: Event, index: int | None = None) -> Any:
    spec = FIELDS[name]
    if index is not None:
        assert spec.get_index is not None
        return spec.get_index(e, index)
    return spec.get(e)


@dataclass
class Live:
    """Events of the scenario, enriched in order, each with the OCSF object the agent would write."""

    tmp: Path
    host: HostInfo
    events: list[Event] = field(default_factory=list)
    ocsf: list[dict[str, Any]] = field(default_factory=list)
    out: dict[str, Any] = field(default_factory=dict)

    def all(self, pred: Callable[[Event], bool]) -> list[Event]:
        return [e for e in self.events if pred(e)]

    def one(self, pred: Callable[[Event], bool], what: str) -> Event:
        found = self.all(pred)
        assert len(found) == 1, f"{what}: {len(found)} events"
        return found[0]


def _pid_kind(pid: int, kind: str, **data: Any) -> Callable[[Event], bool]:
    def pred(e: Event) -> bool:
        return e.proc.get("pid") == pid and e.kind == kind and all(e.data.get(k) == v for k, v in data.items())

    return pred


def run_scenario(tmp: Path, c_helper: Callable[..., str]) -> Live:
    cfg = config.load(None)
    cfg.mem.syscall_fallback = "on"  # module syscalls are seen even on kernels without their tracepoints
    sess = BpfSession(cfg, probes.probe())
    sess.start()
    live = Live(tmp, host_info())
    raws: list[bytes] = []

    def drain() -> None:
        time.sleep(0.1)
        for r in sess.readers.values():
            r.drain(raws, 1 << 30)

    try:
        decoder = Decoder(sess.btf)
        enricher = Enricher(host=live.host)
        enricher.seed()
        for r in sess.readers.values():
            r.drain([], 1 << 30)
        out = live.out

        # 1. a copied binary run through a symlink by a shell, stdin a pipe, stdout a file, stderr a pipe
        shutil.copy("/bin/cat", tmp / "se-cat")
        os.symlink(tmp / "se-cat", tmp / "se-link")
        (tmp / "in put.txt").write_text("hello\n")
        (tmp / "se-script.sh").write_text("#!/bin/sh\nexit 0\n")
        (tmp / "se-script.sh").chmod(0o755)
        script = ('LD_PRELOAD=/nonexistent-se.so LD_LIBRARY_PATH="$0/lib" "$0/se-link" "$0/in put.txt" > "$0/out.txt"; '
                  '"$0/se-script.sh" arg1; echo $$')
        res = subprocess.run(["sh", "-c", script, str(tmp)], stdin=subprocess.PIPE, capture_output=True,
                             cwd=str(tmp), timeout=30, check=True)
        out["shell_pid"] = int(res.stdout.split()[-1])
        out["shell_script"] = script
        drain()

        # 2. file ops and a loopback TCP connection by one python child
        code = (
            "import os, socket, sys\n"
            "t = sys.argv[1]\n"
            "fd = os.open(t + '/w.txt', os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640); os.close(fd)\n"
            "os.rename(t + '/w.txt', t + '/w2.txt')\n"
            "os.chmod(t + '/w2.txt', 0o751)\n"
            "srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(1)\n"
            "cli = socket.socket(); cli.connect(srv.getsockname())\n"
            "conn, peer = srv.accept()\n"
            "print(os.getpid(), srv.getsockname()[1], cli.getsockname()[1])\n"
            "conn.close(); cli.close(); srv.close()\n"
        )
        res = subprocess.run([sys.executable, "-c", code, str(tmp)], capture_output=True, text=True,
                             timeout=30, check=True)
        pid, sport, cport = map(int, res.stdout.split())
        out["py"] = {"pid": pid, "server_port": sport, "client_port": cport}
        out["w2_stat"] = os.stat(tmp / "w2.txt")
        out["in_stat"] = os.stat(tmp / "in put.txt")
        drain()

        # 3. privilege and namespace changes
        priv = c_helper("priv_helper")
        out["setuid"] = run_helper(priv, "setuid")
        out["ns"] = run_helper(priv, "ns")
        (tmp / "mnt").mkdir()
        out["mount"] = run_helper(priv, "mount", str(tmp / "mnt"))
        drain()

        # 4. memory, injection, kernel extensions
        mem = c_helper("mem_helper")
        out["mem_helper"] = mem
        for what in ("mmap_rwx", "ptrace", "module", "bpf_load"):
            out[what] = run_helper(mem, what)
            drain()
        res = subprocess.run([mem, "memfd_exec"], capture_output=True, text=True, timeout=30, check=True)
        out["memfd_exec"] = dict(line.split("=") for line in res.stdout.split())
        drain()
        uring = c_helper("io_uring_helper", ["-luring"])
        out["io_uring"] = run_helper(uring, "0", "0")
        drain()

        events = sorted((decoder.decode(r) for r in raws), key=lambda e: e.ts_ns)
        for ev in events:
            enricher.enrich(ev)
            live.events.append(ev)
            live.ocsf.append(to_ocsf(ev, live.host))
    finally:
        sess.close()
    return live


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, c_helper: Callable[..., str]) -> Iterator[Live]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    tmp = tmp_path_factory.mktemp("fields")
    yield run_scenario(tmp, c_helper)
    shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- exec, proc.*, parent.*, user, group, host


def _cat_exec(live: Live) -> Event:
    shell = live.out["shell_pid"]
    return live.one(lambda e: e.kind == "exec" and e.proc["ppid"] == shell
                    and e.data["filename"].endswith(b"/se-link"), "exec of se-link")


def test_exec_through_a_symlink(live: Live) -> None:
    e = _cat_exec(live)
    t = str(live.tmp)
    shell = live.out["shell_pid"]
    expect = {
        "event.kind": "exec", "event.op": "exec", "event.ret": None, "event.success": True, "event.errno": None,
        "proc.ppid": shell,
        "proc.name": "se-link",  # comm is the basename of the path given to execve
        "proc.exe": f"{t}/se-cat", "proc.exe_name": "se-cat",
        "proc.filename": f"{t}/se-link", "proc.interp": None,
        "proc.argv0": f"{t}/se-link", "proc.args": [f"{t}/in put.txt"], "proc.argc": 2,
        "proc.cmdline": f"{t}/se-link {t}/in put.txt", "proc.cwd": t,
        "proc.stdin": "pipe", "proc.stdout": "file", "proc.stderr": "pipe", "proc.tty": False,
        "proc.exe_deleted": False, "proc.exe_memfd": False, "proc.setuid_exec": False,
        "proc.ld_preload": "/nonexistent-se.so", "proc.ld_library_path": f"{t}/lib",
        "parent.pid": shell, "parent.name": "sh", "parent.exe": os.path.realpath("/bin/sh"),
        "parent.exe_name": os.path.basename(os.path.realpath("/bin/sh")),
        "parent.cmdline": f"sh -c {live.out['shell_script']} {t}",
        "parent.args": ["-c", live.out["shell_script"], t],
        "user.uid": 0, "user.euid": 0, "user.name": "root", "user.ename": "root",
        "group.gid": 0, "group.name": "root",
        "container.id": None, "container.runtime": None,
        "host.name": socket.gethostname(),
    }
    got = {k: val(k, e) for k in expect}
    assert got == expect
    assert val("proc.pid", e) == val("proc.tid", e) == e.proc["pid"]
    assert val("event.time", e) == e.ts_ns
    assert val("proc.parent_exec_id", e) == val("parent.exec_id", e) == e.parent.exec_id  # type: ignore[union-attr]
    assert isinstance(val("proc.exec_id", e), str) and len(val("proc.exec_id", e)) == 22
    loginuid = int(Path("/proc/self/loginuid").read_text())
    assert val("proc.loginuid", e) == val("user.loginuid", e) == loginuid
    if loginuid == 0xFFFFFFFF:
        assert val("user.loginname", e) is None
    # ancestry: [0] is the process itself, [1] the shell, [2] this test process
    assert val("proc.aname", e, 0) == "se-link"
    assert val("proc.aname", e, 1) == "sh"
    assert val("proc.apid", e, 1) == shell
    assert val("proc.apid", e, 2) == os.getpid()
    assert val("proc.aexe", e, 2) == os.path.realpath(sys.executable)
    assert val("proc.apid", e)[:2] == [shell, os.getpid()]
    assert val("proc.aname", e)[0] == "sh"
    assert val("proc.acmdline", e)[0] == f"sh -c {live.out['shell_script']} {t}"
    assert val("proc.aname", e, 99) is None


def test_exec_time_fields_on_a_later_event_of_the_process(live: Live) -> None:
    ex = _cat_exec(live)
    t = str(live.tmp)
    op = live.one(lambda e: e.kind == "file" and e.proc["pid"] == ex.proc["pid"]
                  and e.data.get("path", b"").endswith(b"in put.txt"), "open by cat")
    assert val("proc.exec_id", op) == val("proc.exec_id", ex)
    for name in ("proc.filename", "proc.stdin", "proc.stdout", "proc.stderr", "proc.ld_preload",
                 "proc.ld_library_path", "proc.argv0", "proc.args", "proc.argc", "proc.exe_deleted",
                 "proc.setuid_exec", "proc.tty"):
        assert val(name, op) == val(name, ex), name
    st = live.out["in_stat"]
    expect = {
        "event.kind": "file", "event.op": "open", "event.success": True, "event.errno": None,
        "file.path": f"{t}/in put.txt", "file.name": "in put.txt", "file.dir": t,
        "file.raw_path": f"{t}/in put.txt", "file.flags": val("file.flags", op),
        "file.is_write": False, "file.is_create": False, "file.mode": None,
        "file.ino": st.st_ino, "file.dev": st.st_dev, "file.new_path": None, "file.target": None,
        "file.uid": None, "file.xattr": None,
        "net.family": None, "cred.new_uid": None, "mem.prot": None,  # other families: no value
    }
    assert {k: val(k, op) for k in expect} == expect
    assert val("file.flags", op)[0] == "O_RDONLY"
    assert isinstance(val("event.ret", op), int) and val("event.ret", op) >= 0


def test_script_exec_has_the_interpreter(live: Live) -> None:
    shell = live.out["shell_pid"]
    t = str(live.tmp)
    e = live.one(lambda e: e.kind == "exec" and e.proc["ppid"] == shell
                 and e.data["filename"].endswith(b"se-script.sh"), "exec of the script")
    assert val("proc.filename", e) == f"{t}/se-script.sh"
    assert val("proc.interp", e) == "/bin/sh"
    assert val("proc.exe", e) == os.path.realpath("/bin/sh")
    assert val("proc.args", e) == [f"{t}/se-script.sh", "arg1"]
    assert val("proc.ld_preload", e) is None


# ---------------------------------------------------------------- file.*


def test_open_for_write_rename_chmod(live: Live) -> None:
    t = str(live.tmp)
    pid = live.out["py"]["pid"]
    o = live.one(lambda e: _pid_kind(pid, "file", op=1)(e) and e.data["path"].endswith(b"/w.txt"), "open w.txt")
    assert {k: val(k, o) for k in ("file.path", "file.is_write", "file.is_create", "file.mode", "event.success")} \
        == {"file.path": f"{t}/w.txt", "file.is_write": True, "file.is_create": True, "file.mode": 0o640,
            "event.success": True}
    assert {"O_WRONLY", "O_CREAT", "O_EXCL"} <= set(val("file.flags", o))
    assert "O_RDONLY" not in val("file.flags", o) and "O_TRUNC" not in val("file.flags", o)
    assert val("file.ino", o) == live.out["w2_stat"].st_ino  # the same inode after the rename

    r = live.one(_pid_kind(pid, "file", op=3), "rename")
    assert {k: val(k, r) for k in ("event.op", "file.path", "file.name", "file.new_path", "file.new_name",
                                   "file.flags", "file.mode")} == {
        "event.op": "rename", "file.path": f"{t}/w.txt", "file.name": "w.txt", "file.new_path": f"{t}/w2.txt",
        "file.new_name": "w2.txt", "file.flags": None, "file.mode": None}

    c = live.one(_pid_kind(pid, "file", op=4), "chmod")
    assert (val("event.op", c), val("file.path", c), val("file.mode", c)) == ("chmod", f"{t}/w2.txt", 0o751)


# ---------------------------------------------------------------- net.*


def test_loopback_tcp(live: Live) -> None:
    py = live.out["py"]
    pid, sport, cport = py["pid"], py["server_port"], py["client_port"]
    c = live.one(_pid_kind(pid, "net", op=2), "connect")
    expect = {
        "event.op": "connect", "event.success": True, "event.ret": 0,
        "net.family": "inet", "net.type": "stream", "net.proto": "tcp",
        "net.local_ip": "127.0.0.1", "net.local_port": cport, "net.remote_ip": "127.0.0.1", "net.remote_port": sport,
        "net.unix_path": None, "net.state": None, "net.bytes": None, "file.path": None,
    }
    assert {k: val(k, c) for k in expect} == expect
    assert isinstance(val("net.cookie", c), int) and val("net.cookie", c) > 0
    ln = live.one(_pid_kind(pid, "net", op=6), "listen")
    assert (val("event.op", ln), val("net.local_port", ln), val("net.remote_ip", ln), val("net.remote_port", ln)) \
        == ("listen", sport, None, None)
    a = live.one(_pid_kind(pid, "net", op=4), "accept")
    assert (val("net.local_port", a), val("net.remote_port", a), val("net.remote_ip", a)) == (sport, cport, "127.0.0.1")
    states = live.all(lambda e: e.kind == "net" and e.data["op"] == 8 and e.data["sport"] == cport
                      and e.data["dport"] == sport)
    assert states, "no TCP state event for the client socket"
    # the server side closed first: the client went CLOSE_WAIT -> LAST_ACK -> CLOSE (the sensor reports CLOSE)
    assert {(val("net.old_state", s), val("net.state", s), val("event.op", s)) for s in states} \
        == {("LAST_ACK", "CLOSE", "state")}


# ---------------------------------------------------------------- cred.*, ns.*


def test_setuid(live: Live) -> None:
    pid = live.out["setuid"]["pid"]
    g = live.one(_pid_kind(pid, "cred", op=5), "setgid")
    assert (val("event.op", g), val("cred.old_gid", g), val("cred.new_gid", g), val("event.success", g)) \
        == ("setgid", 0, 1000, True)
    u = live.one(_pid_kind(pid, "cred", op=3), "setresuid")
    assert {k: val(k, u) for k in ("event.op", "cred.old_uid", "cred.new_uid", "cred.old_euid", "cred.new_euid",
                                   "cred.new_caps", "cred.gained_caps")} == {
        "event.op": "setresuid", "cred.old_uid": 0, "cred.new_uid": 1000, "cred.old_euid": 0,
        "cred.new_euid": 1000, "cred.new_caps": [], "cred.gained_caps": []}
    assert "CAP_SYS_ADMIN" in val("cred.old_caps", u)  # root lost its capabilities


def test_namespaces_and_mount(live: Live) -> None:
    ns = live.out["ns"]
    u = live.one(_pid_kind(ns["pid"], "ns", op=3), "unshare")
    assert (val("event.op", u), val("ns.flags", u), val("ns.type", u)) == ("unshare", ["CLONE_NEWUTS"], None)
    s = live.one(_pid_kind(ns["pid"], "ns", op=4), "setns")
    assert (val("event.op", s), val("ns.type", s), val("ns.flags", s)) == ("setns", "uts", None)
    mpid = live.out["mount"]["pid"]
    target = str(live.tmp / "mnt")
    m = live.one(_pid_kind(mpid, "ns", op=1), "mount")
    assert {k: val(k, m) for k in ("event.op", "ns.source", "ns.target", "ns.fstype", "ns.flags")} == {
        "event.op": "mount", "ns.source": "se_test_tmpfs", "ns.target": target, "ns.fstype": "tmpfs",
        "ns.flags": ["MS_NOSUID", "MS_NODEV"]}
    um = live.one(_pid_kind(mpid, "ns", op=2), "umount")
    assert (val("event.op", um), val("ns.target", um), val("ns.flags", um)) == ("umount", target, [])


# ---------------------------------------------------------------- mem, ptrace, memfd, module, bpf, io_uring


def test_mmap_rwx(live: Live) -> None:
    out = live.out["mmap_rwx"]
    m = live.one(_pid_kind(out["pid"], "mem", op=1), "mmap")
    assert {k: val(k, m) for k in ("event.op", "mem.prot", "mem.wx", "mem.anon", "mem.len", "mem.addr")} == {
        "event.op": "mmap", "mem.prot": ["PROT_READ", "PROT_WRITE", "PROT_EXEC"], "mem.wx": True,
        "mem.anon": True, "mem.len": 8192, "mem.addr": out["addr"]}


def test_ptrace_attach_target_from_the_process_table(live: Live) -> None:
    out = live.out["ptrace"]
    p = live.one(_pid_kind(out["pid"], "ptrace", op=1), "ptrace")
    assert {k: val(k, p) for k in ("event.op", "ptrace.request", "ptrace.target_pid", "ptrace.target_name",
                                   "ptrace.target_exe", "event.success")} == {
        "event.op": "ptrace", "ptrace.request": "PTRACE_ATTACH", "ptrace.target_pid": out["child"],
        "ptrace.target_name": "mem_helper", "ptrace.target_exe": os.path.realpath(live.out["mem_helper"]),
        "event.success": out["ret"] == 0}


def test_memfd_and_fileless_exec(live: Live) -> None:
    pid = int(live.out["memfd_exec"]["pid"])
    m = live.one(_pid_kind(pid, "memfd"), "memfd_create")
    assert (val("event.op", m), val("memfd.name", m), val("memfd.flags", m)) == \
        ("memfd", "se_test_memfd", ["MFD_CLOEXEC"])
    x = live.one(lambda e: _pid_kind(pid, "exec")(e) and e.data["argv"].startswith(b"se-memfd-true"), "fexecve")
    assert (val("proc.exe_memfd", x), val("proc.argv0", x), val("proc.args", x), val("proc.argc", x)) == \
        (True, "se-memfd-true", [], 1)
    assert val("proc.exe", x).startswith("/memfd:se_test_memfd")
    assert val("proc.ld_preload", x) is None and val("proc.stdout", x) == "pipe"


def test_module_and_bpf(live: Live) -> None:
    pid = live.out["module"]["pid"]
    f = live.one(_pid_kind(pid, "module", op=2), "finit_module")
    errname = val("event.errno", f)
    assert (val("event.op", f), val("module.name", f), val("event.success", f)) == ("finit_module", "/dev/null", False)
    assert errname is not None and val("event.ret", f) == -getattr(__import__("errno"), errname)
    d = live.one(_pid_kind(pid, "module", op=3), "delete_module")
    assert (val("event.op", d), val("module.name", d)) == ("delete_module", "se_test_mod")
    b = live.one(_pid_kind(live.out["bpf_load"]["pid"], "bpf"), "bpf prog load")
    assert {k: val(k, b) for k in ("event.op", "bpf.cmd", "bpf.prog_type", "bpf.insn_cnt", "event.ret")} == {
        "event.op": "prog_load", "bpf.cmd": "prog_load", "bpf.prog_type": "socket_filter", "bpf.insn_cnt": 2,
        "event.ret": live.out["bpf_load"]["fd"]}


def test_io_uring(live: Live) -> None:
    out = live.out["io_uring"]
    s = live.one(_pid_kind(out["pid"], "io_uring", op=1), "io_uring setup")
    assert (val("event.op", s), val("io_uring.entries", s), val("event.ret", s), val("io_uring.opcode", s)) == \
        ("setup", out["entries"], out["ring_fd"], None)
    subs = live.all(_pid_kind(out["pid"], "io_uring", op=2))
    assert subs and {val("io_uring.opcode", x) for x in subs} == {"nop"}
    assert all(val("event.ret", x) is None and val("event.success", x) is True for x in subs)


def test_kinds_are_exact(live: Live) -> None:
    """A field with a value on an event has that event's kind in its kinds."""
    for e in live.events:
        for name, spec in FIELDS.items():
            v = spec.get(e)
            if v is not None and spec.kinds is not None:
                assert e.kind in spec.kinds, (name, e.kind, v)
