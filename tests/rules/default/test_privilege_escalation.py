"""Default privilege-escalation rules against the real agent: each behaviour and its benign neighbour.

tests/helpers/rules_a_helper.c switches uids and capabilities; set-id files are
created in a private directory and removed; sudoers files are valid (a comment)
and removed at once (sudo is not even installed on the development machines).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rules_a_support import (
    copy_exe,
    event_of,
    expect_alert,
    expect_quiet,
    file_event,
    for_pid,
    marks,
    mentions,
    py,
    run,
    scratch_dir,
    temp_file,
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


# -- se.privilege_escalation.nonroot_gains_root -----------------------------------

RULE_ROOT = "se.privilege_escalation.nonroot_gains_root"


def test_nonroot_uid_switching_back_to_root_alerts(agent: AgentHandle, helper: str) -> None:
    m = marks(agent)
    out = run_helper(helper, "regain_root")
    assert out["second_ret"] == 0 and out["uid"] == 0
    a = expect_alert(agent, RULE_ROOT, m, for_pid(out["pid"]), ["T1548"])
    assert a["severity_id"] >= 4


def test_root_dropping_to_nobody_is_quiet(agent: AgentHandle, helper: str) -> None:
    m = marks(agent)
    out = run_helper(helper, "drop_root")
    assert out["uid"] == 65534
    expect_quiet(agent, RULE_ROOT, m, for_pid(out["pid"]), event_of(out["pid"], "cred"))


# -- se.privilege_escalation.unusual_setuid_binary_run ----------------------------------

RULE_SUID_RUN = "se.privilege_escalation.unusual_setuid_binary_run"


def test_setuid_copy_run_by_nobody_alerts(agent: AgentHandle, scratch: Path) -> None:
    exe = copy_exe("/usr/bin/id", scratch / f"id-{token()}", 0o4755)
    m = marks(agent)
    pid, res = run([str(exe), "-u"], user=65534)
    assert res.stdout.strip() == b"0", res.stdout  # the effective uid really was raised
    expect_alert(agent, RULE_SUID_RUN, m, for_pid(pid), ["T1548.001"])


def test_plain_copy_run_by_nobody_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    exe = copy_exe("/usr/bin/id", scratch / f"id-{token()}", 0o755)
    m = marks(agent)
    pid, res = run([str(exe), "-u"], user=65534)
    assert res.stdout.strip() == b"65534", res.stdout
    expect_quiet(agent, RULE_SUID_RUN, m, for_pid(pid), event_of(pid, "exec"))


# -- se.privilege_escalation.setuid_bit_set --------------------------------------------

RULE_SUID_BIT = "se.privilege_escalation.setuid_bit_set"


def test_chmod_setuid_bit_alerts(agent: AgentHandle, scratch: Path) -> None:
    target = scratch / f"shell-{token()}"
    target.write_bytes(b"\0")
    m = marks(agent)
    pid, _ = run(["chmod", "4755", str(target)])
    expect_alert(agent, RULE_SUID_BIT, m, for_pid(pid), ["T1548.001"])


def test_chmod_setgid_bit_alerts(agent: AgentHandle, scratch: Path) -> None:
    target = scratch / f"tool-{token()}"
    target.write_bytes(b"\0")
    m = marks(agent)
    pid, _ = run(["chmod", "g+s", str(target)])
    expect_alert(agent, RULE_SUID_BIT, m, for_pid(pid), ["T1548.001"])


def test_chmod_executable_bit_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    target = scratch / f"tool-{token()}"
    target.write_bytes(b"\0")
    m = marks(agent)
    pid, _ = run(["chmod", "0755", str(target)])
    expect_quiet(agent, RULE_SUID_BIT, m, for_pid(pid), event_of(pid, "file"))


# -- se.privilege_escalation.sudoers_modified --------------------------------------------

RULE_SUDOERS = "se.privilege_escalation.sudoers_modified"


def test_sudoers_d_file_created_alerts(agent: AgentHandle) -> None:
    d = Path("/etc/sudoers.d")
    created_dir = not d.exists()
    if created_dir:
        d.mkdir(mode=0o750)
    try:
        path = d / f"se-ra-{token()}"
        m = marks(agent)
        # a comment only: a valid sudoers file that grants nothing; removed when the block ends
        with temp_file(path, "# sentinel-edge test\n", 0o440) as pid:
            expect_alert(agent, RULE_SUDOERS, m, for_pid(pid), ["T1548.003"])
    finally:
        if created_dir:
            shutil.rmtree(d, ignore_errors=True)


def test_file_named_like_sudoers_elsewhere_is_quiet(agent: AgentHandle) -> None:
    path = f"/etc/sudoers.se-ra-{token()}.txt"  # not /etc/sudoers and not in /etc/sudoers.d
    m = marks(agent)
    with temp_file(path) as pid:
        expect_quiet(agent, RULE_SUDOERS, m, for_pid(pid), file_event(path))


# -- se.privilege_escalation.capabilities_raised ---------------------------------------

RULE_CAPS = "se.privilege_escalation.capabilities_raised"


def test_capability_raised_again_alerts(agent: AgentHandle, helper: str) -> None:
    m = marks(agent)
    out = run_helper(helper, "capgain")
    a = expect_alert(agent, RULE_CAPS, m, for_pid(out["pid"]), ["T1548"])
    assert "CAP_SYS_PTRACE" in a["message"]


def test_capability_dropped_is_quiet(agent: AgentHandle, helper: str) -> None:
    m = marks(agent)
    out = run_helper(helper, "capdrop")
    expect_quiet(agent, RULE_CAPS, m, for_pid(out["pid"]), event_of(out["pid"], "cred"))


# -- se.privilege_escalation.file_capabilities_set -------------------------------------

RULE_FCAPS = "se.privilege_escalation.file_capabilities_set"


def test_setcap_alerts(agent: AgentHandle, scratch: Path) -> None:
    target = copy_exe("/bin/true", scratch / f"helper-{token()}")
    m = marks(agent)
    pid, _ = run(["setcap", "cap_net_raw+ep", str(target)])
    expect_alert(agent, RULE_FCAPS, m, for_pid(pid), ["T1548"])


def test_user_xattr_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    target = scratch / f"doc-{token()}"
    target.write_text("x")
    m = marks(agent)
    pid, _ = py(f"import os; os.setxattr({str(target)!r}, 'user.se_test', b'1')")
    expect_quiet(agent, RULE_FCAPS, m, for_pid(pid), lambda o: event_of(pid, "file")(o) and mentions(str(target))(o))
