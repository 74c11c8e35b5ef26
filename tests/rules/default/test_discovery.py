"""Default discovery rules against the real agent: each rule's behaviour and its benign neighbour."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from rules_b_support import (
    actor_is,
    background,
    ev_kind,
    event_of,
    expect_alert,
    expect_quiet,
    in_tree,
    marks,
    py,
    run,
    tcp_listener,
)

from conftest import AgentHandle

pytestmark = pytest.mark.kernel


# -- se.discovery.command_burst ------------------------------------------------------

BURST = "se.discovery.command_burst"


def test_discovery_burst_alerts(agent: AgentHandle) -> None:
    m = marks(agent)
    script = ("id; whoami; uname -a; hostname; ps -e; ip addr; ss -ltn; cat /etc/passwd; "
              "netstat -tn 2>/dev/null || true")
    pid, _ = run(["bash", "-c", script])
    a = expect_alert(agent, BURST, m, in_tree(pid), ["T1082", "T1033", "T1016", "T1057"])
    assert a["finding_info"]["analytic"]["uid"] == BURST


def test_two_discovery_commands_are_quiet(agent: AgentHandle, tmp_path: Path) -> None:
    # the burst is counted per process tree, and every test runs in pytest's tree, where other
    # tests' commands add up: start this one as a job of its own (a launcher named like cron,
    # which ends a tree, as a real cron job would)
    launcher = tmp_path / "cron"
    shutil.copy("/bin/bash", launcher)
    m = marks(agent)
    pid, _ = run([str(launcher), "-c", "bash -c 'id -u; uname -r; exit 0'; exit 0"])

    def uname_below_launcher(o: dict[str, Any]) -> bool:
        proc = o.get("process", {})
        if ev_kind(o) != "exec" or proc.get("name") != "uname":
            return False
        chain = [proc.get("parent_process", {}).get("pid")] + [a.get("pid") for a in proc.get("ancestry", [])]
        return pid in chain

    expect_quiet(agent, BURST, m, in_tree(pid), uname_below_launcher)


# -- se.discovery.setuid_file_search -------------------------------------------------

SETUID = "se.discovery.setuid_file_search"


def test_find_setuid_files_alerts(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["find", "/usr/bin", "-maxdepth", "1", "-perm", "-4000", "-type", "f"])
    expect_alert(agent, SETUID, m, actor_is(pid), ["T1083"])


def test_find_by_ordinary_mode_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["find", "/usr/bin", "-maxdepth", "1", "-perm", "-0755", "-name", "ls"])
    expect_quiet(agent, SETUID, m, actor_is(pid), event_of(pid, "exec"))


# -- se.discovery.foreign_process_environ_read ----------------------------------------

ENVIRON = "se.discovery.foreign_process_environ_read"


def test_reading_another_process_environ_alerts(agent: AgentHandle) -> None:
    with background(["sleep", "30"]) as victim:
        m = marks(agent)
        pid, _ = py(f"open('/proc/{victim.pid}/environ', 'rb').read()")
        a = expect_alert(agent, ENVIRON, m, actor_is(pid), ["T1057", "T1552"])
        assert f"/proc/{victim.pid}/environ" in a["message"]


def test_reading_own_environ_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["cat", "/proc/self/environ"])
    expect_quiet(agent, ENVIRON, m, actor_is(pid), event_of(pid, "file"))


# -- se.discovery.network_scanner_executed --------------------------------------------

SCANNER = "se.discovery.network_scanner_executed"


@pytest.mark.skipif(shutil.which("nmap") is None, reason="nmap not installed (scripts/install.sh must install it)")
def test_nmap_scan_of_loopback_alerts(agent: AgentHandle) -> None:
    with tcp_listener() as port:
        m = marks(agent)
        pid, res = run(["nmap", "-n", "-Pn", "-sT", "-p", str(port), "127.0.0.1"])
        assert b"open" in res.stdout
        expect_alert(agent, SCANNER, m, actor_is(pid), ["T1046"])


def test_single_port_check_is_quiet(agent: AgentHandle) -> None:
    with tcp_listener() as port:
        m = marks(agent)
        pid, _ = py(f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5).close()")
        expect_quiet(agent, SCANNER, m, actor_is(pid), event_of(pid, "net"))


# -- se.discovery.packet_socket_created -----------------------------------------------

PACKET = "se.discovery.packet_socket_created"


def test_packet_socket_alerts(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = py("import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)).close()")
    expect_alert(agent, PACKET, m, actor_is(pid), ["T1040"])


def test_raw_icmp_socket_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = py(f"import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, {socket.IPPROTO_ICMP}).close()")
    expect_quiet(agent, PACKET, m, actor_is(pid), event_of(pid, "net"))


# -- se.discovery.security_software_probe ---------------------------------------------

PROBE = "se.discovery.security_software_probe"


def test_pgrep_for_security_agent_alerts(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["pgrep", "-f", "osqueryd"], check=False)
    expect_alert(agent, PROBE, m, actor_is(pid), ["T1518.001"])


def test_pgrep_for_ordinary_process_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["pgrep", "-f", "se-no-such-daemon"], check=False)
    expect_quiet(agent, PROBE, m, actor_is(pid), event_of(pid, "exec"))
