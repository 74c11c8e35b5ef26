"""Default persistence rules against the real agent: for each rule the behaviour and its benign neighbour.

System files are never changed: the tests create uniquely named files in the
watched directories (removed at once), or open existing account files for
appending without writing a byte.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
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
    py,
    run,
    scratch_dir,
    temp_file,
    token,
)

from conftest import AgentHandle

pytestmark = pytest.mark.kernel


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir() as d:
        yield d


# -- se.persistence.cron_job_scheduled ------------------------------------------------

RULE_CRON = "se.persistence.cron_job_scheduled"


def test_cron_d_file_created_alerts(agent: AgentHandle) -> None:
    path = f"/etc/cron.d/se-ra-{token()}"
    m = marks(agent)
    with temp_file(path, "# sentinel-edge test: no schedule lines\n") as pid:
        expect_alert(agent, RULE_CRON, m, for_pid(pid), ["T1053.003"])


def test_cron_d_file_read_is_quiet(agent: AgentHandle) -> None:
    existing = next(p for p in sorted(Path("/etc/cron.d").iterdir()) if p.is_file())
    m = marks(agent)
    pid, _ = run(["cat", str(existing)])
    expect_quiet(agent, RULE_CRON, m, for_pid(pid), event_of(pid, "file"))


def _crontab_program(scratch: Path) -> str:
    """The crontab program; cron is not installed here, so a stand-in with that name."""
    real = "/usr/bin/crontab"
    if os.path.exists(real):
        return real
    return str(copy_exe("/bin/true", scratch / "crontab"))


def test_crontab_edit_alerts(agent: AgentHandle, scratch: Path) -> None:
    crontab = _crontab_program(scratch)
    user = f"se-ra-nouser-{token()}"  # a user that does not exist: a real crontab refuses, nothing changes
    m = marks(agent)
    pid, _ = run([crontab, "-u", user, "/dev/null"], check=False)
    expect_alert(agent, RULE_CRON, m, for_pid(pid), ["T1053.003"])


def test_crontab_list_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    crontab = _crontab_program(scratch)
    m = marks(agent)
    pid, _ = run([crontab, "-l"], check=False)
    expect_quiet(agent, RULE_CRON, m, for_pid(pid), event_of(pid, "exec"))


# -- se.persistence.systemd_unit_written / systemd_timer_written ------------------------

RULE_UNIT = "se.persistence.systemd_unit_written"
RULE_TIMER = "se.persistence.systemd_timer_written"


def test_systemd_service_unit_created_alerts(agent: AgentHandle) -> None:
    path = f"/etc/systemd/system/se-ra-{token()}.service"
    m = marks(agent)
    with temp_file(path, "# sentinel-edge test unit (no sections: systemd ignores it)\n") as pid:
        expect_alert(agent, RULE_UNIT, m, for_pid(pid), ["T1543.002"])


def test_systemd_config_outside_unit_dirs_is_quiet(agent: AgentHandle) -> None:
    path = f"/etc/systemd/se-ra-{token()}.txt"
    m = marks(agent)
    with temp_file(path) as pid:
        expect_quiet(agent, RULE_UNIT, m, for_pid(pid), file_event(path))


def test_systemd_timer_created_alerts(agent: AgentHandle) -> None:
    path = f"/etc/systemd/system/se-ra-{token()}.timer"
    m = marks(agent)
    with temp_file(path, "# sentinel-edge test timer (no sections: systemd ignores it)\n") as pid:
        expect_alert(agent, RULE_TIMER, m, for_pid(pid), ["T1053.006"])
        # a timer is reported by the timer rule only
        agent.assert_no_alert(RULE_UNIT, m.alerts, for_pid(pid), settle=0.2)


def test_systemd_service_is_not_a_timer(agent: AgentHandle) -> None:
    path = f"/etc/systemd/system/se-ra-{token()}.service"
    m = marks(agent)
    with temp_file(path, "# sentinel-edge test unit\n") as pid:
        expect_quiet(agent, RULE_TIMER, m, for_pid(pid), file_event(path))


# -- se.persistence.shell_rc_modified ---------------------------------------------------

RULE_RC = "se.persistence.shell_rc_modified"


def test_bashrc_written_alerts(agent: AgentHandle, scratch: Path) -> None:
    home = scratch / f"home-{token()}"
    home.mkdir()
    rc = home / ".bashrc"
    m = marks(agent)
    pid, _ = py(f"open({str(rc)!r}, 'a').write('alias ls=\"ls --color\"\\n')")
    expect_alert(agent, RULE_RC, m, for_pid(pid), ["T1546.004"])


def test_bashrc_read_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    home = scratch / f"home-{token()}"
    home.mkdir()
    rc = home / ".bashrc"
    rc.write_text("# rc\n")
    m = marks(agent)
    pid, _ = run(["cat", str(rc)])
    expect_quiet(agent, RULE_RC, m, for_pid(pid), event_of(pid, "file"))


def test_profile_d_script_created_alerts(agent: AgentHandle) -> None:
    path = f"/etc/profile.d/se-ra-{token()}.sh"
    m = marks(agent)
    with temp_file(path, "# sentinel-edge test: nothing to run\n") as pid:
        expect_alert(agent, RULE_RC, m, for_pid(pid), ["T1546.004"])


# -- se.persistence.authorized_keys_modified -------------------------------------------

RULE_KEYS = "se.persistence.authorized_keys_modified"


def test_authorized_keys_written_alerts(agent: AgentHandle, scratch: Path) -> None:
    ssh = scratch / f"home-{token()}" / ".ssh"
    ssh.mkdir(parents=True)
    m = marks(agent)
    pid, _ = run(["sh", "-c", f"echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI0 se-test' >> {ssh}/authorized_keys"])
    a = expect_alert(agent, RULE_KEYS, m, for_pid(pid), ["T1098.004"])
    assert str(ssh) in a["message"]


def test_known_hosts_written_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    ssh = scratch / f"home-{token()}" / ".ssh"
    ssh.mkdir(parents=True)
    path = str(ssh / "known_hosts")
    m = marks(agent)
    pid, _ = run(["sh", "-c", f"echo '[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI0' >> {path}"])
    expect_quiet(agent, RULE_KEYS, m, for_pid(pid), file_event(path))


# -- se.persistence.ld_so_preload_modified ----------------------------------------------

RULE_PRELOAD = "se.persistence.ld_so_preload_modified"
PRELOAD = "/etc/ld.so.preload"


def test_ld_so_preload_opened_for_write_alerts(agent: AgentHandle) -> None:
    # Never writes a byte: without the file, O_WRONLY (no O_CREAT) fails with ENOENT, which the
    # rule still reports as an attempt; with the file, O_APPEND and close leave it unchanged.
    code = ("import os\n"
            "try:\n"
            f"    os.close(os.open({PRELOAD!r}, os.O_WRONLY | os.O_APPEND))\n"
            "except FileNotFoundError:\n"
            "    pass\n")
    m = marks(agent)
    pid, _ = py(code)
    expect_alert(agent, RULE_PRELOAD, m, for_pid(pid), ["T1574.006"])


def test_ld_so_preload_read_is_quiet(agent: AgentHandle) -> None:
    code = ("import os\n"
            "try:\n"
            f"    os.close(os.open({PRELOAD!r}, os.O_RDONLY))\n"
            "except FileNotFoundError:\n"
            "    pass\n")
    m = marks(agent)
    pid, _ = py(code)
    expect_quiet(agent, RULE_PRELOAD, m, for_pid(pid),
                 lambda o: event_of(pid, "file")(o) and PRELOAD in str(o.get("file", {})))


# -- se.persistence.local_account_created / account_file_modified -----------------------

RULE_USER = "se.persistence.local_account_created"
RULE_ACCOUNTS = "se.persistence.account_file_modified"


def test_useradd_alerts_and_account_tools_do_not_count_as_edits(agent: AgentHandle) -> None:
    name = f"se-ra-{token()}"
    m = marks(agent)
    try:
        pid, _ = run(["useradd", "-M", "-N", "-r", "-s", "/usr/sbin/nologin", name])
        expect_alert(agent, RULE_USER, m, for_pid(pid), ["T1136.001"])
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=30)
    # useradd rewrote /etc/passwd and /etc/shadow: an account tool, not a direct edit
    agent.assert_no_alert(RULE_ACCOUNTS, m.alerts, for_pid(pid), settle=0.3)


def test_useradd_print_defaults_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["useradd", "-D"])
    expect_quiet(agent, RULE_USER, m, for_pid(pid), event_of(pid, "exec"))


def test_passwd_opened_for_append_alerts(agent: AgentHandle) -> None:
    # opened for appending and closed without writing: the file is unchanged
    m = marks(agent)
    pid, _ = py("import os; os.close(os.open('/etc/passwd', os.O_WRONLY | os.O_APPEND))")
    expect_alert(agent, RULE_ACCOUNTS, m, for_pid(pid), ["T1136.001", "T1098"])


def test_passwd_read_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = py("open('/etc/passwd').read()")
    expect_quiet(agent, RULE_ACCOUNTS, m, for_pid(pid),
                 lambda o: event_of(pid, "file")(o) and "/etc/passwd" in str(o.get("file", {})))


# -- se.persistence.write_below_binary_dir ----------------------------------------------

RULE_BINDIR = "se.persistence.write_below_binary_dir"


def test_file_created_in_usr_bin_alerts(agent: AgentHandle) -> None:
    path = f"/usr/bin/se-ra-{token()}"
    m = marks(agent)
    with temp_file(path, "#!/bin/sh\n", 0o644) as pid:
        expect_alert(agent, RULE_BINDIR, m, for_pid(pid), ["T1554"])


def test_file_created_in_usr_local_bin_is_quiet(agent: AgentHandle) -> None:
    path = f"/usr/local/bin/se-ra-{token()}"
    m = marks(agent)
    with temp_file(path, "#!/bin/sh\n", 0o644) as pid:
        expect_quiet(agent, RULE_BINDIR, m, for_pid(pid), file_event(path))


# -- se.persistence.init_script_written -------------------------------------------------

RULE_INIT = "se.persistence.init_script_written"


def test_init_d_script_created_alerts(agent: AgentHandle) -> None:
    path = f"/etc/init.d/se-ra-{token()}"
    m = marks(agent)
    with temp_file(path, "# sentinel-edge test: not executable, not linked into any runlevel\n") as pid:
        expect_alert(agent, RULE_INIT, m, for_pid(pid), ["T1037.004"])


def test_other_etc_file_created_is_quiet(agent: AgentHandle) -> None:
    path = f"/etc/se-ra-{token()}.conf"
    m = marks(agent)
    with temp_file(path) as pid:
        expect_quiet(agent, RULE_INIT, m, for_pid(pid), file_event(path))
