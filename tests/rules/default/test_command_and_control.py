"""Default command-and-control rules against the real agent: each rule's behaviour and its benign neighbour."""

from __future__ import annotations

import errno
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from rules_b_support import (
    actor_is,
    event_of,
    exec_in,
    expect_alert,
    expect_quiet,
    in_tree,
    marks,
    py,
    run,
    scratch_dir,
    stub_exe,
    tcp_listener,
)

from conftest import AgentHandle

pytestmark = pytest.mark.kernel


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir() as d:
        yield d


@pytest.fixture
def port() -> Iterator[int]:
    with tcp_listener() as p:
        yield p


def shell_on_socket(port: int, stdin_socket: bool) -> str:
    """Python code: connect to ``port`` and run sh with stdout (and maybe stdin) on the socket."""
    stdin = "s.fileno()" if stdin_socket else "subprocess.DEVNULL"
    return ("import socket, subprocess\n"
            f"s = socket.create_connection(('127.0.0.1', {port}), timeout=5)\n"
            f"subprocess.run(['/bin/sh', '-c', 'echo hello'], stdin={stdin}, stdout=s.fileno(), timeout=10)\n"
            "s.close()\n")


# -- se.command_and_control.reverse_shell_socket_stdio ---------------------------------

REVSHELL = "se.command_and_control.reverse_shell_socket_stdio"


def test_shell_with_socket_stdio_alerts(agent: AgentHandle, port: int) -> None:
    m = marks(agent)
    pid, _ = py(shell_on_socket(port, stdin_socket=True))
    a = expect_alert(agent, REVSHELL, m, in_tree(pid), ["T1059.004", "T1095"])
    assert a["actor"]["process"]["name"] == "sh"
    assert a["severity_id"] == 5


def test_shell_writing_to_socket_with_own_stdin_is_quiet(agent: AgentHandle, port: int) -> None:
    m = marks(agent)
    pid, _ = py(shell_on_socket(port, stdin_socket=False))
    expect_quiet(agent, REVSHELL, m, in_tree(pid), exec_in(pid, "sh"))


# -- se.command_and_control.dev_tcp_redirection ---------------------------------------

DEVTCP = "se.command_and_control.dev_tcp_redirection"


def test_dev_tcp_descriptor_redirection_alerts(agent: AgentHandle, port: int) -> None:
    m = marks(agent)
    pid, _ = run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}; echo hello >&3; exec 3>&-"])
    expect_alert(agent, DEVTCP, m, actor_is(pid), ["T1059.004", "T1095"])


def test_dev_tcp_port_probe_is_quiet(agent: AgentHandle, port: int) -> None:
    m = marks(agent)
    pid, _ = run(["bash", "-c", f"echo probe > /dev/tcp/127.0.0.1/{port}"])
    expect_quiet(agent, DEVTCP, m, actor_is(pid), event_of(pid, "net"))


# -- se.command_and_control.shell_network_connect -------------------------------------

SHELLNET = "se.command_and_control.shell_network_connect"


def test_shell_connecting_alerts(agent: AgentHandle, port: int) -> None:
    m = marks(agent)
    pid, _ = run(["bash", "-c", f"echo probe > /dev/tcp/127.0.0.1/{port}"])
    a = expect_alert(agent, SHELLNET, m, actor_is(pid), ["T1059.004", "T1095"])
    assert str(port) in a["message"]


def test_program_started_by_shell_connecting_is_quiet(agent: AgentHandle, port: int) -> None:
    m = marks(agent)
    code = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5).close()"
    pid, _ = run(["bash", "-c", f'python3 -c "{code}"; true'])
    expect_quiet(agent, SHELLNET, m, in_tree(pid), exec_in(pid, "python3"))
    agent.wait_for(lambda o: o.get("unmapped", {}).get("event") == "net"
                   and o.get("unmapped", {}).get("proc", {}).get("ppid") == pid, m.events)
    agent.assert_no_alert(SHELLNET, m.alerts, in_tree(pid), settle=0.3)


# -- se.command_and_control.mining_pool_port_connect ----------------------------------

MINERPORT = "se.command_and_control.mining_pool_port_connect"


def _miner_port_listener() -> tuple[socket.socket, int]:
    for p in (14444, 45700, 14433, 45560, 3333, 7777):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", p))
        except OSError as exc:
            s.close()
            if exc.errno == errno.EADDRINUSE:
                continue
            raise
        s.listen(4)
        return s, p
    pytest.fail("every mining-pool port of the test is in use on 127.0.0.1")


def test_connect_to_mining_pool_port_alerts(agent: AgentHandle) -> None:
    srv, p = _miner_port_listener()
    try:
        m = marks(agent)
        pid, _ = py(f"import socket; socket.create_connection(('127.0.0.1', {p}), timeout=5).close()")
        a = expect_alert(agent, MINERPORT, m, actor_is(pid), ["T1496", "T1571"])
        assert str(p) in a["message"]
    finally:
        srv.close()


def test_connect_to_ordinary_port_is_quiet(agent: AgentHandle, port: int) -> None:
    m = marks(agent)
    pid, _ = py(f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5).close()")
    expect_quiet(agent, MINERPORT, m, actor_is(pid), event_of(pid, "net"))


# -- se.command_and_control.netcat_remote_exec ----------------------------------------

NETCAT = "se.command_and_control.netcat_remote_exec"
needs_ncat = pytest.mark.skipif(shutil.which("ncat") is None,
                                reason="ncat not installed (scripts/install.sh must install it)")


@needs_ncat
def test_ncat_exec_alerts(agent: AgentHandle, port: int) -> None:
    m = marks(agent)
    pid, _ = run(["ncat", "--sh-exec", "echo hello", "127.0.0.1", str(port)], timeout=20)
    expect_alert(agent, NETCAT, m, actor_is(pid), ["T1059.004", "T1095"])


@needs_ncat
def test_ncat_send_only_is_quiet(agent: AgentHandle, port: int) -> None:
    m = marks(agent)
    pid, _ = run(["ncat", "--send-only", "127.0.0.1", str(port)], input=b"hello\n", timeout=20)
    expect_quiet(agent, NETCAT, m, actor_is(pid), event_of(pid, "net"))


# -- se.command_and_control.socat_exec_shell ------------------------------------------

SOCAT = "se.command_and_control.socat_exec_shell"
needs_socat = pytest.mark.skipif(shutil.which("socat") is None,
                                 reason="socat not installed (scripts/install.sh must install it)")


@needs_socat
def test_socat_exec_alerts(agent: AgentHandle, port: int) -> None:
    m = marks(agent)
    pid, _ = run(["socat", f"TCP:127.0.0.1:{port}", "EXEC:/bin/true"], timeout=20)
    expect_alert(agent, SOCAT, m, actor_is(pid), ["T1059.004", "T1095"])


@needs_socat
def test_socat_file_transfer_is_quiet(agent: AgentHandle, port: int) -> None:
    m = marks(agent)
    pid, _ = run(["socat", "-u", "OPEN:/etc/hostname", f"TCP:127.0.0.1:{port}"], timeout=20)
    expect_quiet(agent, SOCAT, m, actor_is(pid), event_of(pid, "net"))


# -- se.command_and_control.interpreter_reverse_shell ---------------------------------

INTERP = "se.command_and_control.interpreter_reverse_shell"


def test_python_reverse_shell_one_liner_alerts(agent: AgentHandle, port: int) -> None:
    m = marks(agent)
    code = (f"import socket,os,subprocess;s=socket.create_connection(('127.0.0.1',{port}),timeout=5);"
            "os.dup2(s.fileno(),0);os.dup2(s.fileno(),1);subprocess.call(['/bin/sh','-c','echo hello'])")
    pid, _ = py(code)
    expect_alert(agent, INTERP, m, actor_is(pid), ["T1059.006", "T1095"])
    expect_alert(agent, REVSHELL, m, in_tree(pid), ["T1059.004"])


def test_python_socket_one_liner_without_shell_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = py("import socket; print(socket.gethostname())")
    expect_quiet(agent, INTERP, m, actor_is(pid), event_of(pid, "exec"))


# -- se.command_and_control.tunnel_tool_executed --------------------------------------

TUNNEL = "se.command_and_control.tunnel_tool_executed"


def test_chisel_named_tool_alerts(agent: AgentHandle, scratch: Path, port: int) -> None:
    # chisel is not packaged: a harmless program under its name is what the exec looks like
    exe = stub_exe(scratch / "chisel")
    m = marks(agent)
    pid, _ = run([str(exe), "client", f"127.0.0.1:{port}", "R:socks"])
    expect_alert(agent, TUNNEL, m, actor_is(pid), ["T1572", "T1090"])


def test_same_arguments_to_ordinary_program_are_quiet(agent: AgentHandle, port: int) -> None:
    m = marks(agent)
    pid, _ = run(["/bin/true", "client", f"127.0.0.1:{port}", "R:socks"])
    expect_quiet(agent, TUNNEL, m, actor_is(pid), event_of(pid, "exec"))
