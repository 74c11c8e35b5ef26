"""Events, alerts, a local HTTP server and a real rsyslog for the alert tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sentinel_edge.model import KIND_EXEC, KIND_FILE, KIND_NET, Event, ProcessInfo
from sentinel_edge.output.ocsf.common import HostInfo
from sentinel_edge.rules.model import Alert, Attack, RuleMeta

MS = 1_000_000
SEC = 1_000_000_000
BOOT = 1_700_000_000_000_000_000  # wall-clock ns at boot
HOST = HostInfo(hostname="edge-1", boot_id="b00t-1d", boot_time_ns=BOOT, machine_id="m" * 32,
                kernel_release="6.18.0")
NOW = BOOT + 3600 * SEC  # wall clock of the alerts

HERE = Path(__file__).resolve().parent


def raw_proc(pid: int, start_ms: int, comm: bytes, *, ppid: int = 200, parent_start_ms: int = 2_000,
             uid: int = 1000) -> dict[str, Any]:
    return {
        "pid": pid, "tid": pid, "ppid": ppid, "ns_pid": pid, "uid": uid, "euid": uid, "gid": 100, "egid": 100,
        "loginuid": 1000, "sessionid": 4, "mnt_ns": 11, "pid_ns": 12, "net_ns": 13, "cgroup_id": 99,
        "start_ns": start_ms * MS, "parent_start_ns": parent_start_ms * MS, "comm": comm,
    }


SSHD = ProcessInfo(pid=100, start_ns=1_000 * MS, exec_id="x-100", parent_exec_id="x-1", ppid=1, comm="sshd",
                   exe="/usr/sbin/sshd", cmdline=["sshd: alice [priv]"], uid=0, user="root")
BASH = ProcessInfo(pid=200, start_ns=2_000 * MS, exec_id="x-200", parent_exec_id="x-100", ppid=100, comm="bash",
                   exe="/usr/bin/bash", cmdline=["-bash"], cwd="/home/alice", uid=1000, euid=1000, gid=100,
                   user="alice", group="users", loginuid=1000)


def cat_info(pid: int = 300, exec_id: str = "x-300") -> ProcessInfo:
    return ProcessInfo(pid=pid, start_ns=3_000 * MS, exec_id=exec_id, parent_exec_id="x-200", ppid=200,
                       comm="cat", exe="/usr/bin/cat", cmdline=["cat", "/etc/shadow"], cwd="/home/alice",
                       uid=1000, euid=1000, gid=100, user="alice", group="users", loginuid=1000,
                       exec_ts_ns=3_000 * MS)


def file_event(ts_ms: int = 5_000, *, pid: int = 300, exec_id: str = "x-300", path: bytes = b"/etc/shadow",
               enriched: bool = True) -> Event:
    info = cat_info(pid, exec_id)
    ev = Event(KIND_FILE, 2, ts_ms * MS, 1, raw_proc(pid, 3_000, b"cat"),
               {"op": 1, "ret": 3, "path": path, "base": b"", "resolved": path, "flags": 0, "mode": 0,
                "dirfd": -100, "syscall_nr": 257, "dev": 2049, "ino": 4242})
    if enriched:
        ev.process, ev.parent, ev.ancestry = info, BASH, [BASH, SSHD]
    return ev


def exec_event(ts_ms: int = 4_000, *, exe: bytes = b"/usr/bin/curl", argv: bytes = b"curl\0-s\0http://x") -> Event:
    info = ProcessInfo(pid=400, start_ns=3_900 * MS, exec_id="x-400", parent_exec_id="x-200", ppid=200,
                       comm="curl", exe=exe.decode(), cmdline=argv.decode().split("\0"), cwd="/tmp", uid=1000,
                       euid=1000, gid=100, user="alice", group="users", loginuid=1000, exec_ts_ns=ts_ms * MS)
    ev = Event(KIND_EXEC, 1, ts_ms * MS, 0, raw_proc(400, 3_900, b"curl"),
               {"flags": 0, "argc": 3, "old_uid": 1000, "old_euid": 1000, "old_gid": 100, "old_egid": 100,
                "filename": exe, "exe_path": exe, "argv": argv, "cwd": b"/tmp", "interp": b"",
                "exe_dev": 2049, "exe_ino": 77, "exe_nlink": 1, "exe_mode": 0o100755, "exe_uid": 0,
                "fd_kind": [1, 2, 1]})
    ev.process, ev.parent, ev.ancestry = info, BASH, [BASH, SSHD]
    return ev


def net_event(ts_ms: int = 4_500) -> Event:
    ev = Event(KIND_NET, 3, ts_ms * MS, 0, raw_proc(400, 3_900, b"curl"),
               {"op": 2, "ret": 0, "fd": 3, "family": 2, "protocol": 6, "sock_type": 1, "cookie": 8812,
                "saddr": [127, 0, 0, 1] + [0] * 12, "daddr": [10, 0, 0, 9] + [0] * 12,
                "sport": 40000, "dport": 4444, "flags": 0, "old_state": 0, "new_state": 0, "owner_pid": 0,
                "backlog": 0, "bytes": 0})
    ev.process = ProcessInfo(pid=400, start_ns=3_900 * MS, exec_id="x-400", parent_exec_id="x-200", ppid=200,
                             comm="curl", exe="/usr/bin/curl", cmdline=["curl", "-s", "http://x"], uid=1000,
                             user="alice")
    ev.parent, ev.ancestry = BASH, [BASH, SSHD]
    return ev


SHADOW_RULE = RuleMeta(
    id="se.credential_access.shadow_read", title="Shadow file read by a non-system program", severity="high",
    description="A program outside the allow list opened /etc/shadow.\n",
    attack=(Attack("T1003.008", "credential-access"),), tags=("credentials", "linux"),
    output="{proc.name} read {file.path}", file="/etc/se/rules.yaml", line=12)
SEQ_RULE = RuleMeta(
    id="se.c2.download_then_connect", title="Downloader connected out after exec", severity="critical",
    attack=(Attack("T1105", "command_and_control"), Attack("T1059.004", "execution")),
    kind="sequence", source="native")
THRESHOLD_RULE = RuleMeta(id="se.impact.mass_read", title="Many files read", severity="medium",
                          attack=(Attack("T1485", "impact"),), kind="threshold")


def shadow_alert(time_ns: int = NOW, *, ts_ms: int = 5_000, exec_id: str = "x-300", pid: int = 300,
                 message: str = "cat read /etc/shadow") -> Alert:
    return Alert(SHADOW_RULE, [file_event(ts_ms, pid=pid, exec_id=exec_id)], message, time_ns)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(pred: Any, timeout: float, what: str, step: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process the test started, by its pid: SIGTERM, then SIGKILL."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


class HttpServer:
    """tests/alerts/http_server.py in its own process on 127.0.0.1; requests logged to a file."""

    def __init__(self, tmp: Path, *, fail_first: int = 0, fail_status: int = 503, sleep_s: float = 0.0,
                 status: int = 200) -> None:
        self.log = tmp / "requests.jsonl"
        ready = tmp / "http.port"
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "http_server.py"), "--log", str(self.log), "--ready", str(ready),
             "--fail-first", str(fail_first), "--fail-status", str(fail_status), "--sleep", str(sleep_s),
             "--status", str(status)])
        try:
            self.port = int(wait_until(lambda: ready.exists() and ready.read_text().strip(), 10, "the HTTP server"))
        except BaseException:
            stop_process(self.proc)
            raise
        self.url = f"http://127.0.0.1:{self.port}/hook?src=se"

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(x) for x in self.log.read_text().splitlines() if x]

    def stop(self) -> None:
        stop_process(self.proc)


RSYSLOG_CONF = """\
global(workDirectory="{work}" maxMessageSize="256k")
module(load="imudp")
module(load="imtcp")
template(name="fields" type="list" option.jsonf="on") {{
  property(outname="pri" name="pri" format="jsonf")
  property(outname="facility" name="syslogfacility" format="jsonf")
  property(outname="severity" name="syslogseverity" format="jsonf")
  property(outname="timereported" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app_name" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="protocol_version" name="protocol-version" format="jsonf")
  property(outname="input" name="inputname" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}}
ruleset(name="alerts") {{
  action(type="omfile" file="{out}" template="fields")
}}
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="alerts")
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="alerts")
"""


class Rsyslog:
    """A real rsyslogd (Debian package rsyslog) on 127.0.0.1, config in a temp dir, run by pid."""

    def __init__(self, tmp: Path) -> None:
        exe = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        if not os.path.exists(exe):
            raise RuntimeError("rsyslogd not found: apt-get install -y rsyslog")
        self.dir = tmp / "rsyslog"
        (self.dir / "work").mkdir(parents=True)
        self.out = self.dir / "out.jsonl"
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.tcp_port = free_port()
        conf = self.dir / "rsyslog.conf"
        conf.write_text(RSYSLOG_CONF.format(work=self.dir / "work", out=self.out, udp=self.udp_port,
                                            tcp=self.tcp_port))
        self.stderr = self.dir / "stderr.log"
        with self.stderr.open("wb") as err:
            self.proc = subprocess.Popen([exe, "-n", "-f", str(conf), "-i", str(self.dir / "rsyslogd.pid")],
                                         stdout=err, stderr=err)
        try:
            wait_until(self._tcp_ready, 10, "rsyslogd to listen")
        except BaseException:
            self.stop()
            raise

    def _tcp_ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"rsyslogd exited: {self.stderr.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", self.tcp_port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def records(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(x) for x in self.out.read_text(encoding="utf-8").splitlines() if x]

    def stop(self) -> None:
        stop_process(self.proc)
