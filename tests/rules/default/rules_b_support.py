"""Helpers for the default-rule tests of the rules-b half (discovery, command and
control, collection/exfiltration, impact, kernel, container, correlation).

Each test performs the real behaviour on this machine while the session
``agent`` (default rules, alerts to a file) watches, then waits for its rule's
alert (checking the ATT&CK techniques), or for a near-miss first waits until
the agent has seen the near-miss's own event and then checks that the rule
stayed quiet for it. Alerts are scoped to the test's own processes (the actor
or one of its ancestors), because other things happen on the host meanwhile.

Network traffic stays on loopback; "containers" are processes placed in a
cgroup named like Docker's (``docker-<64 hex>.scope``) that the test creates
and removes, which is how the agent recognises a container.
"""

from __future__ import annotations

import http.server
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import AgentHandle, Marks, expect_alert, marks  # noqa: F401  (re-exported for the tests)
from conftest import run_cmd as run  # noqa: F401
from conftest import run_py as py  # noqa: F401

Obj = dict[str, Any]
Pred = Callable[[Obj], bool]

PYTHON = sys.executable


def token() -> str:
    """A unique marker for the paths and command lines of one test."""
    return "serb" + secrets.token_hex(5)


# ---------------------------------------------------------------- predicates


def _proc(a: Obj) -> Obj:
    p = a.get("actor", {}).get("process", {})
    return p if isinstance(p, dict) else {}


def tree_pids(a: Obj) -> list[int]:
    """Pids of an alert's actor process, its parent and every ancestor given."""
    p = _proc(a)
    pids = [p.get("pid")]
    pids.append(p.get("parent_process", {}).get("pid"))
    pids.extend(x.get("pid") for x in p.get("ancestry", []) if isinstance(x, dict))
    return [x for x in pids if isinstance(x, int)]


def in_tree(pid: int) -> Pred:
    """Alerts whose actor is ``pid`` or a descendant of it."""
    return lambda a: pid in tree_pids(a)


def actor_is(pid: int) -> Pred:
    return lambda a: _proc(a).get("pid") == pid


def ev_kind(o: Obj) -> Any:
    return o.get("unmapped", {}).get("event")


def ev_pid(o: Obj) -> Any:
    return o.get("unmapped", {}).get("proc", {}).get("pid")


def event_of(pid: int, kind: str) -> Pred:
    """OCSF event objects of kind ``kind`` done by process ``pid``."""
    return lambda o: ev_kind(o) == kind and ev_pid(o) == pid


def exec_in(pid: int, name: str) -> Pred:
    """The exec event of a program called ``name`` run by ``pid`` itself (exec) or by a child of it."""

    def pred(o: Obj) -> bool:
        if ev_kind(o) != "exec" or o.get("process", {}).get("name") != name:
            return False
        p = o.get("unmapped", {}).get("proc", {})
        return bool(p.get("pid") == pid or p.get("ppid") == pid)

    return pred


def mentions(text: str) -> Pred:
    return lambda o: text in json.dumps(o)


# ---------------------------------------------------------------- expectations




def expect_quiet(agent: AgentHandle, rule_id: str, m: Marks, pred: Pred, seen: Pred, settle: float = 0.5) -> None:
    """No alert of ``rule_id`` matching ``pred`` once the agent has seen the near-miss (``seen``)."""
    agent.wait_for(seen, m.events, timeout=10)
    agent.assert_no_alert(rule_id, m.alerts, pred, settle=settle)


# ---------------------------------------------------------------- processes


@contextmanager
def background(cmd: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """A process running for the duration of the block, killed (by pid) and reaped afterwards."""
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def wait_ns_change(pid: int, ns: str, timeout: float = 5.0) -> None:
    """Wait until process ``pid`` is in another ``ns`` namespace than this one (unshare done)."""
    mine = os.readlink(f"/proc/self/ns/{ns}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{pid}/ns/{ns}") != mine:
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"process {pid} did not enter a new {ns} namespace")


@contextmanager
def scratch_dir(base: str = "/tmp") -> Iterator[Path]:
    """A unique directory under ``base``, removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="se-rb-", dir=base))
    try:
        d.chmod(0o755)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def stub_exe(path: Path, src: str = "/bin/true") -> Path:
    """A harmless program (a copy of ``src``) under another name: for rules that know tools by name."""
    shutil.copyfile(src, path)
    path.chmod(0o755)
    return path


# ---------------------------------------------------------------- loopback peers


def _drain(conn: socket.socket, greeting: bytes) -> None:
    with conn:
        conn.settimeout(5)
        try:
            if greeting:
                conn.sendall(greeting)
            for _ in range(1000):
                if not conn.recv(65536):
                    break
        except OSError:
            pass


@contextmanager
def tcp_listener(port: int = 0, greeting: bytes = b"") -> Iterator[int]:
    """A TCP listener on 127.0.0.1 that reads and discards what each client sends; yields its port."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(16)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=_drain, args=(conn, greeting), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(timeout=5)
        srv.close()


def free_port() -> int:
    """A loopback TCP port nobody listens on (connects to it are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class _SinkHandler(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(min(n, 1 << 20))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_PUT = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def http_sink() -> Iterator[int]:
    """An HTTP server on 127.0.0.1 answering 200 to GET, PUT and POST (bodies discarded); yields its port."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SinkHandler)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(timeout=5)


# ---------------------------------------------------------------- container-ish


def cgroup2_root() -> Path:
    """Where cgroup v2 is mounted (``/sys/fs/cgroup`` or ``/sys/fs/cgroup/unified`` on hybrid hosts)."""
    with open("/proc/self/mounts") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return Path(parts[1])
    raise AssertionError("no cgroup2 mount on this host")


@dataclass
class FakeContainer:
    """A Docker-style cgroup; commands run through :meth:`cmd` start inside it."""

    id: str
    cgroup: Path

    def cmd(self, argv: list[str]) -> list[str]:
        """``argv`` as the child of a shell that moved itself into the cgroup (the container's "init").

        The shell outlives the command by a second, as a container's init does: the agent reads a
        process's container from /proc, which a process that already exited cannot show.
        """
        script = f'echo $$ > {self.cgroup}/cgroup.procs || exit 125; "$@"; rc=$?; sleep 1; exit $rc'
        return ["sh", "-c", script, "sh", *argv]


@contextmanager
def fake_container() -> Iterator[FakeContainer]:
    """A cgroup named ``docker-<64 hex>.scope`` (what the agent takes for a Docker container), removed after."""
    cid = secrets.token_hex(32)
    cg = cgroup2_root() / f"docker-{cid}.scope"
    cg.mkdir()
    try:
        yield FakeContainer(cid, cg)
    finally:
        for _ in range(100):
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError(f"cgroup {cg} still busy: {(cg / 'cgroup.procs').read_text()}")


def container_of(a: Obj) -> str | None:
    """Container id of an alert's actor (None on the host)."""
    c = _proc(a).get("container") or a.get("container") or {}
    uid = c.get("uid") if isinstance(c, dict) else None
    if uid is None:
        um = a.get("unmapped", {})
        uid = um.get("container_id") if isinstance(um, dict) else None
    return uid if isinstance(uid, str) else None
