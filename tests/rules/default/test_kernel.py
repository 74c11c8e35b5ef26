"""Default kernel-tampering rules against the real agent: each rule's behaviour and its benign neighbour.

Module syscalls fail with ENOSYS on a kernel without module support, and the
default configuration (mem.syscall_fallback: auto) leaves them unwatched there:
their tests start a private agent with the raw_tp fallback switched on.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rules_b_support import (
    actor_is,
    event_of,
    expect_alert,
    expect_quiet,
    marks,
    py,
    run,
    scratch_dir,
)

from conftest import AgentHandle, start_agent, stop_agent

pytestmark = pytest.mark.kernel


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir() as d:
        yield d


@pytest.fixture
def helper(c_helper: Callable[..., str]) -> str:
    return c_helper("rules_b_sys")


# -- module syscalls (private agent with the syscall fallback on) -----------------------

FROM_MEMORY = "se.defense_evasion.kernel_module_from_memory"
FILE_LOAD = "se.persistence.kernel_module_file_load"
UNLOAD = "se.defense_evasion.kernel_module_unload"


@pytest.fixture(scope="module")
def module_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentHandle]:
    h = start_agent(tmp_path_factory.mktemp("rules_b_modules"), config_text='mem: {syscall_fallback: "on"}\n',
                    alerts=True)
    try:
        yield h
    finally:
        assert stop_agent(h) == 0, h.log.read_text()[-3000:]


def module_call(helper: str, scratch: Path, op: str) -> int:
    args = [helper, op]
    if op == "finit_module":
        ko = scratch / "se_rules_b.ko"
        ko.write_bytes(b"")
        args.append(str(ko))
    pid, _ = run(args)
    return pid


def module_event(pid: int) -> Callable[[dict[str, object]], bool]:
    return event_of(pid, "module")


@pytest.mark.parametrize(("op", "rule", "techniques"), [
    ("init_module", FROM_MEMORY, ["T1014", "T1547.006"]),
    ("finit_module", FILE_LOAD, ["T1547.006", "T1014"]),
    ("delete_module", UNLOAD, ["T1562.001"]),
])
def test_module_syscall_alerts(module_agent: AgentHandle, helper: str, scratch: Path, op: str, rule: str,
                               techniques: list[str]) -> None:
    m = marks(module_agent)
    pid = module_call(helper, scratch, op)
    a = expect_alert(module_agent, rule, m, actor_is(pid), techniques)
    assert op in a["message"]


@pytest.mark.parametrize(("op", "quiet_rule"), [
    ("finit_module", FROM_MEMORY),   # a module from a file is not one from memory
    ("delete_module", FILE_LOAD),    # an unload is not a load
    ("init_module", UNLOAD),         # a load is not an unload
])
def test_other_module_syscall_is_quiet(module_agent: AgentHandle, helper: str, scratch: Path, op: str,
                                       quiet_rule: str) -> None:
    m = marks(module_agent)
    pid = module_call(helper, scratch, op)
    expect_quiet(module_agent, quiet_rule, m, actor_is(pid), module_event(pid))


# -- se.persistence.kernel_module_tool_load / se.defense_evasion.kernel_module_tool_unload

TOOL_LOAD = "se.persistence.kernel_module_tool_load"
TOOL_UNLOAD = "se.defense_evasion.kernel_module_tool_unload"
needs_kmod = pytest.mark.skipif(shutil.which("insmod") is None or shutil.which("modprobe") is None,
                                reason="kmod not installed (scripts/install.sh must install it)")


@needs_kmod
def test_insmod_alerts(agent: AgentHandle, scratch: Path) -> None:
    ko = scratch / "se_rules_b.ko"
    ko.write_bytes(b"")  # not a module: the load fails, the attempt is the behaviour
    m = marks(agent)
    pid, _ = run(["insmod", str(ko)], check=False)
    expect_alert(agent, TOOL_LOAD, m, actor_is(pid), ["T1547.006"])


@needs_kmod
def test_modprobe_dry_run_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["modprobe", "--dry-run", "se_rules_b_none"], check=False)
    expect_quiet(agent, TOOL_LOAD, m, actor_is(pid), event_of(pid, "exec"))


@needs_kmod
def test_rmmod_alerts(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["rmmod", "se_rules_b_none"], check=False)
    expect_alert(agent, TOOL_UNLOAD, m, actor_is(pid), ["T1562.001"])


@needs_kmod
def test_lsmod_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["lsmod"], check=False)
    expect_quiet(agent, TOOL_UNLOAD, m, actor_is(pid), event_of(pid, "exec"))


# -- se.defense_evasion.unexpected_bpf_program_load ------------------------------------

BPF = "se.defense_evasion.unexpected_bpf_program_load"


def test_bpf_program_load_alerts(agent: AgentHandle, helper: str) -> None:
    m = marks(agent)
    pid, res = run([helper, "bpf_load"])
    assert b"errno=0" in res.stdout
    a = expect_alert(agent, BPF, m, actor_is(pid), ["T1014", "T1547.006"])
    assert "socket_filter" in a["message"].lower()


@pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool not installed")
def test_bpftool_feature_probe_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["bpftool", "feature", "probe", "kernel", "macros"], check=False)
    expect_quiet(agent, BPF, m, actor_is(pid), event_of(pid, "bpf"))


# -- se.defense_evasion.kernel_hardening_sysctl_write ----------------------------------

SYSCTL = "se.defense_evasion.kernel_hardening_sysctl_write"
KPTR = "/proc/sys/kernel/kptr_restrict"


def test_kptr_restrict_opened_for_writing_alerts(agent: AgentHandle) -> None:
    m = marks(agent)
    # opened for writing and closed without a write: the setting is unchanged
    pid, _ = py(f"import os; os.close(os.open('{KPTR}', os.O_WRONLY))")
    a = expect_alert(agent, SYSCTL, m, actor_is(pid), ["T1562.001"])
    assert KPTR in a["message"]


def test_kptr_restrict_read_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["cat", KPTR])
    expect_quiet(agent, SYSCTL, m, actor_is(pid), event_of(pid, "file"))


# -- se.defense_evasion.kernel_memory_device_write -------------------------------------

DEVMEM = "se.defense_evasion.kernel_memory_device_write"


def test_dev_mem_opened_for_writing_alerts(agent: AgentHandle) -> None:
    m = marks(agent)
    # lockdown usually refuses the open; if it succeeds nothing is written
    pid, _ = py("import os\ntry:\n    os.close(os.open('/dev/mem', os.O_RDWR))\nexcept OSError:\n    pass\n")
    expect_alert(agent, DEVMEM, m, actor_is(pid), ["T1014"])


def test_dev_null_opened_for_writing_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = py("import os; os.close(os.open('/dev/null', os.O_RDWR))")
    expect_quiet(agent, DEVMEM, m, actor_is(pid), event_of(pid, "file"))
