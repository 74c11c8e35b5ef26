"""Default credential-access rules against the real agent: each behaviour and its benign neighbour.

Secrets are read for real where the file is the system's (/etc/shadow, read
and thrown away); keys and cloud credentials are dummies in a private directory.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rules_a_support import (
    Pred,
    event_of,
    expect_alert,
    expect_quiet,
    file_event,
    for_pid,
    marks,
    py,
    run,
    scratch_dir,
    token,
)

from conftest import AgentHandle, run_helper

pytestmark = pytest.mark.kernel


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir() as d:
        yield d


@pytest.fixture(scope="module")
def helper(c_helper: Callable[..., str]) -> str:
    return c_helper("rules_a_helper")


@pytest.fixture(scope="module")
def mem_helper(c_helper: Callable[..., str]) -> str:
    return c_helper("mem_helper")


@pytest.fixture
def sleeper() -> Iterator[int]:
    p = subprocess.Popen(["sleep", "10"])
    try:
        yield p.pid
    finally:
        p.kill()
        p.wait()


def pid_file_event(pid: int, path: str) -> Pred:
    return lambda o: event_of(pid, "file")(o) and file_event(path)(o)


# -- se.credential_access.shadow_file_read ------------------------------------------

RULE_SHADOW = "se.credential_access.shadow_file_read"


def test_shadow_read_by_python_alerts(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = py("open('/etc/shadow').read()")
    a = expect_alert(agent, RULE_SHADOW, m, for_pid(pid), ["T1003.008"])
    assert a["severity_id"] >= 4


def test_shadow_read_by_cat_alerts(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["cat", "/etc/shadow"])
    expect_alert(agent, RULE_SHADOW, m, for_pid(pid), ["T1003.008"])


def test_passwd_read_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["cat", "/etc/passwd"])
    expect_quiet(agent, RULE_SHADOW, m, for_pid(pid), pid_file_event(pid, "/etc/passwd"))


def test_shadow_read_by_account_tool_is_quiet(agent: AgentHandle) -> None:
    # pwck -r (read-only check) reads /etc/shadow as an account tool
    m = marks(agent)
    pid, _ = run(["pwck", "-r"], check=False)
    expect_quiet(agent, RULE_SHADOW, m, for_pid(pid), pid_file_event(pid, "/etc/shadow"))


# -- se.credential_access.ssh_private_key_read ----------------------------------------

RULE_KEY = "se.credential_access.ssh_private_key_read"


def _ssh_dir(scratch: Path) -> Path:
    ssh = scratch / f"home-{token()}" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n")
    (ssh / "id_ed25519.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI0 se-test\n")
    (ssh / "deploy_key").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n")
    return ssh


def test_private_key_read_by_cat_alerts(agent: AgentHandle, scratch: Path) -> None:
    ssh = _ssh_dir(scratch)
    m = marks(agent)
    pid, _ = run(["cat", str(ssh / "id_ed25519")])
    expect_alert(agent, RULE_KEY, m, for_pid(pid), ["T1552.004"])


def test_custom_named_key_in_ssh_dir_alerts(agent: AgentHandle, scratch: Path) -> None:
    ssh = _ssh_dir(scratch)
    m = marks(agent)
    pid, _ = run(["cp", str(ssh / "deploy_key"), str(scratch / "loot")])
    expect_alert(agent, RULE_KEY, m, for_pid(pid), ["T1552.004"])


def test_public_key_read_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    ssh = _ssh_dir(scratch)
    path = str(ssh / "id_ed25519.pub")
    m = marks(agent)
    pid, _ = run(["cat", path])
    expect_quiet(agent, RULE_KEY, m, for_pid(pid), pid_file_event(pid, path))


def test_private_key_read_by_ssh_keygen_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    ssh = scratch / f"home-{token()}" / ".ssh"
    ssh.mkdir(parents=True)
    key = ssh / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True,
                   capture_output=True, timeout=30)
    m = marks(agent)
    pid, _ = run(["ssh-keygen", "-y", "-f", str(key)])
    expect_quiet(agent, RULE_KEY, m, for_pid(pid), pid_file_event(pid, str(key)))


# -- se.credential_access.private_key_search ----------------------------------------

RULE_SEARCH = "se.credential_access.private_key_search"


def test_grep_for_private_keys_alerts(agent: AgentHandle, scratch: Path) -> None:
    _ssh_dir(scratch)
    m = marks(agent)
    pid, _ = run(["grep", "-rl", "BEGIN OPENSSH PRIVATE KEY", str(scratch)])
    expect_alert(agent, RULE_SEARCH, m, for_pid(pid), ["T1552.001", "T1552.004"])


def test_find_for_id_rsa_alerts(agent: AgentHandle, scratch: Path) -> None:
    m = marks(agent)
    pid, _ = run(["find", str(scratch), "-name", "id_rsa*"])
    expect_alert(agent, RULE_SEARCH, m, for_pid(pid), ["T1552.004"])


def test_grep_for_ordinary_text_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    _ssh_dir(scratch)
    m = marks(agent)
    pid, _ = run(["grep", "-rl", "hello world", str(scratch)], check=False)
    expect_quiet(agent, RULE_SEARCH, m, for_pid(pid), event_of(pid, "exec"))


# -- se.credential_access.process_memory_read ----------------------------------------

RULE_VMR = "se.credential_access.process_memory_read"


def test_process_vm_readv_of_child_alerts(agent: AgentHandle, helper: str) -> None:
    m = marks(agent)
    out = run_helper(helper, "vm_readv")
    assert out["ret"] == 8
    a = expect_alert(agent, RULE_VMR, m, for_pid(out["pid"]), ["T1003"])
    assert str(out["target"]) in a["message"]


def test_process_vm_readv_of_self_is_quiet(agent: AgentHandle, helper: str) -> None:
    m = marks(agent)
    out = run_helper(helper, "vm_readv_self")
    expect_quiet(agent, RULE_VMR, m, for_pid(out["pid"]), event_of(out["pid"], "ptrace"))


# -- se.credential_access.ptrace_attach ----------------------------------------------

RULE_ATTACH = "se.credential_access.ptrace_attach"


def test_ptrace_attach_alerts(agent: AgentHandle, mem_helper: str) -> None:
    m = marks(agent)
    out = run_helper(mem_helper, "ptrace")
    assert out["ret"] == 0
    expect_alert(agent, RULE_ATTACH, m, for_pid(out["pid"]), ["T1003", "T1055.008"])


def test_ptrace_traceme_is_quiet(agent: AgentHandle, helper: str) -> None:
    m = marks(agent)
    out = run_helper(helper, "traceme")
    expect_quiet(agent, RULE_ATTACH, m, for_pid(out["child"]), event_of(out["child"], "ptrace"))


def test_strace_attach_is_quiet(agent: AgentHandle, sleeper: int) -> None:
    m = marks(agent)
    st = subprocess.Popen(["strace", "-qq", "-e", "trace=none", "-p", str(sleeper)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        agent.wait_for(event_of(st.pid, "ptrace"), m.events)
    finally:
        st.send_signal(signal.SIGINT)
        st.wait(10)
    expect_quiet(agent, RULE_ATTACH, m, for_pid(st.pid), event_of(st.pid, "ptrace"))


# -- se.credential_access.proc_mem_opened --------------------------------------------

RULE_PROCMEM = "se.credential_access.proc_mem_opened"


def test_proc_pid_mem_opened_alerts(agent: AgentHandle, sleeper: int) -> None:
    m = marks(agent)
    pid, _ = py(f"import os; os.close(os.open('/proc/{sleeper}/mem', os.O_RDONLY))")
    expect_alert(agent, RULE_PROCMEM, m, for_pid(pid), ["T1003.007"])


def test_proc_pid_status_opened_is_quiet(agent: AgentHandle, sleeper: int) -> None:
    m = marks(agent)
    path = f"/proc/{sleeper}/status"
    pid, _ = py(f"open({path!r}).read()")
    expect_quiet(agent, RULE_PROCMEM, m, for_pid(pid), pid_file_event(pid, path))


def test_own_proc_self_mem_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = py("import os; os.close(os.open('/proc/self/mem', os.O_RDONLY))")
    expect_quiet(agent, RULE_PROCMEM, m, for_pid(pid),
                 lambda o: event_of(pid, "file")(o) and "/mem" in str(o.get("file", {})))


# -- se.credential_access.cloud_credentials_read ----------------------------------------

RULE_CLOUD = "se.credential_access.cloud_credentials_read"


def _aws_dir(scratch: Path) -> Path:
    aws = scratch / f"home-{token()}" / ".aws"
    aws.mkdir(parents=True)
    (aws / "credentials").write_text("[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = x\n")
    (aws / "config").write_text("[default]\nregion = eu-west-1\n")
    return aws


def test_aws_credentials_read_by_cat_alerts(agent: AgentHandle, scratch: Path) -> None:
    aws = _aws_dir(scratch)
    m = marks(agent)
    pid, _ = run(["cat", str(aws / "credentials")])
    expect_alert(agent, RULE_CLOUD, m, for_pid(pid), ["T1552.001"])


def test_aws_config_read_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    aws = _aws_dir(scratch)
    path = str(aws / "config")
    m = marks(agent)
    pid, _ = run(["cat", path])
    expect_quiet(agent, RULE_CLOUD, m, for_pid(pid), pid_file_event(pid, path))
