"""Default container-escape rules against the real agent: each rule's behaviour and its benign neighbour.

"Containers" here are processes the test puts in a cgroup named like Docker's
(``docker-<64 hex>.scope``), which is how the agent recognises a container;
namespaces and mounts are made in private namespaces the test creates, which
vanish with their processes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rules_b_support import (
    FakeContainer,
    Obj,
    actor_is,
    background,
    ev_kind,
    event_of,
    exec_in,
    expect_alert,
    expect_quiet,
    fake_container,
    in_tree,
    marks,
    py,
    run,
    scratch_dir,
    token,
    wait_ns_change,
)

from conftest import AgentHandle

pytestmark = pytest.mark.kernel


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir() as d:
        yield d


@pytest.fixture
def container() -> Iterator[FakeContainer]:
    with fake_container() as c:
        yield c


@pytest.fixture
def helper(c_helper: Callable[..., str]) -> str:
    return c_helper("rules_b_sys")


def in_container(cid: str) -> Callable[[Obj], bool]:
    """Alerts whose message names container ``cid`` (every rule here prints it)."""
    return lambda a: cid in a.get("message", "")


def private_mounts(script: str) -> list[str]:
    """``script`` run by sh in a new, private mount namespace (its mounts vanish with it)."""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script]


def net_ns_sleeper() -> list[str]:
    return ["unshare", "-n", "sleep", "30"]


# -- se.privilege_escalation.cgroup_release_agent_write -----------------------------------

RELEASE = "se.privilege_escalation.cgroup_release_agent_write"


def _has_cgroup_v1() -> bool:
    with open("/proc/filesystems") as fh:
        return any(line.split()[-1] == "cgroup" for line in fh if line.strip())


needs_cgroup_v1 = pytest.mark.skipif(not _has_cgroup_v1(), reason="kernel without cgroup v1: no release_agent files")


def release_agent_open(d: Path, flags: str) -> list[str]:
    # a new named cgroup v1 hierarchy, private to the namespace; release_agent opened and closed, never written
    name = token()
    code = f"import os; os.close(os.open('{d}/release_agent', {flags}))"
    return private_mounts(f"mount -t cgroup -o none,name={name} cgroup {d} && python3 -c \"{code}\"; "
                          f"umount {d}")


@needs_cgroup_v1
def test_release_agent_opened_for_writing_alerts(agent: AgentHandle, scratch: Path) -> None:
    m = marks(agent)
    pid, _ = run(release_agent_open(scratch, "os.O_WRONLY"))
    a = expect_alert(agent, RELEASE, m, in_tree(pid), ["T1611"])
    assert "release_agent" in a["message"]


@needs_cgroup_v1
def test_release_agent_read_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    m = marks(agent)
    pid, _ = run(release_agent_open(scratch, "os.O_RDONLY"))

    def seen(o: Obj) -> bool:
        return ev_kind(o) == "file" and "release_agent" in str(o.get("file", {}).get("path"))

    expect_quiet(agent, RELEASE, m, in_tree(pid), seen)


# -- se.privilege_escalation.sensitive_host_path_mount ------------------------------------

HOSTMOUNT = "se.privilege_escalation.sensitive_host_path_mount"


def test_bind_mount_of_var_run_alerts(agent: AgentHandle, scratch: Path) -> None:
    m = marks(agent)
    pid, _ = run(private_mounts(f"mount --bind /var/run {scratch} && umount {scratch}"))
    a = expect_alert(agent, HOSTMOUNT, m, in_tree(pid), ["T1611"])
    assert "/var/run" in a["message"]


def test_bind_mount_of_scratch_dir_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    (scratch / "a").mkdir()
    (scratch / "b").mkdir()
    m = marks(agent)
    pid, _ = run(private_mounts(f"mount --bind {scratch}/a {scratch}/b && umount {scratch}/b"))
    expect_quiet(agent, HOSTMOUNT, m, in_tree(pid), exec_in(pid, "mount"))
    agent.wait_for(lambda o: ev_kind(o) == "ns" and str(scratch) in str(o), m.events)
    agent.assert_no_alert(HOSTMOUNT, m.alerts, in_tree(pid), settle=0.3)


def test_new_api_bind_mount_of_var_run_alerts(agent: AgentHandle, scratch: Path,
                                              c_helper: Callable[..., str]) -> None:
    """open_tree(OPEN_TREE_CLONE) + move_mount, as util-linux >= 2.39 binds (private mount namespace)."""
    m = marks(agent)
    pid, res = run([c_helper("priv_helper"), "bind_new_api", "/var/run", str(scratch)])
    assert b"bound=1" in res.stdout
    a = expect_alert(agent, HOSTMOUNT, m, actor_is(pid), ["T1611"])
    assert "/var/run" in a["message"]


def test_new_api_bind_mount_of_scratch_dir_is_quiet(agent: AgentHandle, scratch: Path,
                                                    c_helper: Callable[..., str]) -> None:
    (scratch / "a").mkdir()
    (scratch / "b").mkdir()
    m = marks(agent)
    pid, _ = run([c_helper("priv_helper"), "bind_new_api", str(scratch / "a"), str(scratch / "b")])
    agent.wait_for(lambda o: ev_kind(o) == "ns" and o.get("unmapped", {}).get("op") == "move_mount"
                   and o["unmapped"]["proc"]["pid"] == pid, m.events)
    agent.assert_no_alert(HOSTMOUNT, m.alerts, actor_is(pid), settle=0.3)


# -- se.privilege_escalation.mount_in_container -------------------------------------------

CMOUNT = "se.privilege_escalation.mount_in_container"


def test_mount_inside_container_alerts(agent: AgentHandle, scratch: Path, container: FakeContainer) -> None:
    m = marks(agent)
    pid, _ = run(container.cmd(private_mounts(f"mount -t tmpfs none {scratch} && umount {scratch}")))
    a = expect_alert(agent, CMOUNT, m, in_tree(pid), ["T1611"])
    assert container.id in a["message"]


def test_same_mount_on_host_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    m = marks(agent)
    pid, _ = run(private_mounts(f"mount -t tmpfs none {scratch} && umount {scratch}"))
    agent.wait_for(lambda o: ev_kind(o) == "ns" and str(scratch) in str(o), m.events)
    agent.assert_no_alert(CMOUNT, m.alerts, in_tree(pid), settle=0.5)


# -- se.privilege_escalation.nsenter_host_namespaces --------------------------------------

NSENTER = "se.privilege_escalation.nsenter_host_namespaces"


def test_nsenter_pid1_alerts(agent: AgentHandle) -> None:
    m = marks(agent)
    # on the host pid 1's mount namespace is this one: nothing changes
    # pid 1's namespaces may be out of reach (the attempt is the behaviour); if not, on the host they are ours
    pid, _ = run(["nsenter", "-t", "1", "-m", "--", "true"], check=False)
    expect_alert(agent, NSENTER, m, actor_is(pid), ["T1611"])


def test_nsenter_into_own_namespace_is_quiet(agent: AgentHandle) -> None:
    with background(net_ns_sleeper()) as sleeper:
        wait_ns_change(sleeper.pid, "net")
        m = marks(agent)
        pid, _ = run(["nsenter", "-t", str(sleeper.pid), "-n", "--", "true"])
        expect_quiet(agent, NSENTER, m, actor_is(pid), event_of(pid, "exec"))


# -- se.privilege_escalation.unexpected_setns ---------------------------------------------

SETNS = "se.privilege_escalation.unexpected_setns"


def test_setns_by_unknown_program_alerts(agent: AgentHandle, helper: str) -> None:
    with background(net_ns_sleeper()) as sleeper:
        wait_ns_change(sleeper.pid, "net")
        m = marks(agent)
        pid, res = run([helper, "setns", str(sleeper.pid), "net"])
        assert b"errno=0" in res.stdout
        expect_alert(agent, SETNS, m, actor_is(pid), ["T1611"])


def test_nsenter_on_host_is_quiet(agent: AgentHandle) -> None:
    with background(net_ns_sleeper()) as sleeper:
        wait_ns_change(sleeper.pid, "net")
        m = marks(agent)
        pid, _ = run(["nsenter", "-t", str(sleeper.pid), "-n", "--", "true"])
        expect_quiet(agent, SETNS, m, actor_is(pid), event_of(pid, "ns"))


# -- se.privilege_escalation.user_namespace_by_unprivileged_user --------------------------

USERNS = "se.privilege_escalation.user_namespace_by_unprivileged_user"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_user_namespace_by_nobody_alerts(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run([*NOBODY, "unshare", "-U", "true"], cwd="/")
    expect_alert(agent, USERNS, m, actor_is(pid), ["T1068", "T1611"])


def test_user_namespace_by_root_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["unshare", "-U", "true"], cwd="/")
    expect_quiet(agent, USERNS, m, actor_is(pid), event_of(pid, "ns"))


# -- se.privilege_escalation.core_pattern_write -------------------------------------------

CORE = "se.privilege_escalation.core_pattern_write"
CORE_PATTERN = "/proc/sys/kernel/core_pattern"


def test_core_pattern_opened_for_writing_alerts(agent: AgentHandle) -> None:
    m = marks(agent)
    # opened for writing and closed without a write: the setting is unchanged
    pid, _ = py(f"import os; os.close(os.open('{CORE_PATTERN}', os.O_WRONLY))")
    expect_alert(agent, CORE, m, actor_is(pid), ["T1611"])


def test_core_pattern_read_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["cat", CORE_PATTERN])
    expect_quiet(agent, CORE, m, actor_is(pid), event_of(pid, "file"))


# -- se.privilege_escalation.container_host_path_access -----------------------------------

HOSTPATH = "se.privilege_escalation.container_host_path_access"


def test_container_reading_through_proc_1_root_alerts(agent: AgentHandle, container: FakeContainer) -> None:
    m = marks(agent)
    pid, _ = run(container.cmd(["cat", "/proc/1/root/etc/hostname"]), check=False)
    a = expect_alert(agent, HOSTPATH, m, in_tree(pid), ["T1611"])
    assert container.id in a["message"]


def test_host_reading_through_proc_1_root_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["cat", "/proc/1/root/etc/hostname"], check=False)
    expect_quiet(agent, HOSTPATH, m, actor_is(pid), event_of(pid, "file"))


# -- se.privilege_escalation.debugfs_in_container -----------------------------------------

DEBUGFS = "se.privilege_escalation.debugfs_in_container"
needs_debugfs = pytest.mark.skipif(shutil.which("debugfs") is None, reason="debugfs (e2fsprogs) not installed")


@needs_debugfs
def test_debugfs_in_container_alerts(agent: AgentHandle, container: FakeContainer) -> None:
    m = marks(agent)
    pid, _ = run(container.cmd(["debugfs", "-V"]), check=False)
    a = expect_alert(agent, DEBUGFS, m, in_tree(pid), ["T1611", "T1006"])
    assert in_container(container.id)(a)


@needs_debugfs
def test_debugfs_on_host_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["debugfs", "-V"], check=False)
    expect_quiet(agent, DEBUGFS, m, actor_is(pid), event_of(pid, "exec"))
