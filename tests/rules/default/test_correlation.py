"""Default stateful rules (sequences and thresholds) against the real agent: behaviour and benign neighbour."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rules_b_support import (
    PYTHON,
    Obj,
    Pred,
    actor_is,
    ev_kind,
    ev_pid,
    event_of,
    exec_in,
    expect_alert,
    expect_quiet,
    free_port,
    in_tree,
    marks,
    py,
    scratch_dir,
)

from conftest import AgentHandle

pytestmark = pytest.mark.kernel


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir() as d:
        yield d


# -- se.command_and_control.dropped_binary_chmod_exec --------------------------------------

DROPPED = "se.command_and_control.dropped_binary_chmod_exec"


def drop(path: Path, run_it: str) -> int:
    """A fresh Python process writes a copy of /bin/true to ``path``, chmods it 0755 and runs ``run_it``."""
    code = ("import os, subprocess\n"
            "data = open('/bin/true', 'rb').read()\n"
            f"with open('{path}', 'wb') as f:\n    f.write(data)\n"
            f"os.chmod('{path}', 0o755)\n"
            f"subprocess.run(['{run_it}'], check=True)\n")
    pid, _ = py(code)
    return pid


def test_write_chmod_exec_alerts(agent: AgentHandle, scratch: Path) -> None:
    exe = scratch / "payload"
    m = marks(agent)
    pid = drop(exe, str(exe))
    a = expect_alert(agent, DROPPED, m, in_tree(pid), ["T1105", "T1204.002"])
    assert str(exe) in a["message"]
    assert len(a["finding_info"]["related_events"]) == 3


def test_write_chmod_without_running_it_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    exe = scratch / "payload"
    m = marks(agent)
    pid = drop(exe, "/bin/true")
    expect_quiet(agent, DROPPED, m, in_tree(pid), exec_in(pid, "true"))


# -- se.execution.network_service_spawned_shell ---------------------------------------------

SVC_SHELL = "se.execution.network_service_spawned_shell"


def serve_once(child: list[str]) -> int:
    """A TCP service on 127.0.0.1 that accepts one client and then runs ``child``; returns its pid."""
    code = ("import socket, subprocess, sys\n"
            "srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(1); srv.settimeout(20)\n"
            "print(srv.getsockname()[1], flush=True)\n"
            "conn, _ = srv.accept()\n"
            f"subprocess.run({child!r}, check=True, timeout=10)\n"
            "conn.close(); srv.close()\n")
    p = subprocess.Popen([PYTHON, "-c", code], stdout=subprocess.PIPE, stderr=sys.stderr)
    try:
        assert p.stdout is not None
        port = int(p.stdout.readline())
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.pid


def test_service_spawning_shell_after_accept_alerts(agent: AgentHandle) -> None:
    m = marks(agent)
    pid = serve_once(["sh", "-c", "id >/dev/null"])
    a = expect_alert(agent, SVC_SHELL, m, in_tree(pid), ["T1190", "T1059.004", "T1505.003"])
    assert a["actor"]["process"]["name"] == "sh"


def test_service_running_non_shell_after_accept_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid = serve_once(["/bin/true"])
    expect_quiet(agent, SVC_SHELL, m, in_tree(pid), exec_in(pid, "true"))


# -- se.impact.bulk_rename_or_delete --------------------------------------------------------

BULK = "se.impact.bulk_rename_or_delete"


def churn(d: Path, n: int) -> int:
    """A fresh Python process creates ``n`` files in ``d``, renames half of them and deletes the rest."""
    code = ("import os\n"
            f"d = '{d}'\n"
            f"for i in range({n}):\n    open(os.path.join(d, f'f{{i}}'), 'w').close()\n"
            f"for i in range({n}):\n"
            "    p = os.path.join(d, f'f{i}')\n"
            "    os.rename(p, p + '.x') if i % 2 else os.unlink(p)\n")
    pid, _ = py(code)
    return pid


def test_many_renames_and_deletes_alert(agent: AgentHandle, scratch: Path) -> None:
    m = marks(agent)
    pid = churn(scratch, 240)
    expect_alert(agent, BULK, m, actor_is(pid), ["T1485", "T1486"])


def test_few_renames_and_deletes_are_quiet(agent: AgentHandle, scratch: Path) -> None:
    m = marks(agent)
    pid = churn(scratch, 40)
    expect_quiet(agent, BULK, m, actor_is(pid), event_of(pid, "file"), settle=1.0)


# -- se.discovery.failed_connect_burst ------------------------------------------------------

FAILED = "se.discovery.failed_connect_burst"


def refused_connects(n: int) -> int:
    """A fresh Python process connects ``n`` times to a loopback port nobody listens on (refused)."""
    port = free_port()
    code = ("import socket\n"
            f"for _ in range({n}):\n"
            "    s = socket.socket()\n"
            "    try:\n"
            f"        s.connect(('127.0.0.1', {port}))\n"
            "    except ConnectionRefusedError:\n"
            "        pass\n"
            "    s.close()\n")
    pid, _ = py(code)
    return pid


def failed_connect_of(pid: int) -> Pred:
    def pred(o: Obj) -> bool:
        return ev_kind(o) == "net" and ev_pid(o) == pid and o.get("unmapped", {}).get("ret", 0) < 0

    return pred


def test_many_refused_connects_alert(agent: AgentHandle) -> None:
    m = marks(agent)
    pid = refused_connects(30)
    a = expect_alert(agent, FAILED, m, actor_is(pid), ["T1046"])
    assert "ECONNREFUSED" in a["message"]


def test_few_refused_connects_are_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid = refused_connects(5)
    expect_quiet(agent, FAILED, m, actor_is(pid), failed_connect_of(pid), settle=1.0)
