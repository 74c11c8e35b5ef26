"""Default defense-evasion rules against the real agent: each behaviour and its benign neighbour.

Logs and system files are never touched: the tests make uniquely named files
under /var/log and /etc and remove them; memory and ptrace behaviour comes from
tests/helpers/mem_helper.c and rules_a_helper.c.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rules_a_support import (
    Obj,
    Pred,
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


@pytest.fixture(scope="module")
def mem_helper(c_helper: Callable[..., str]) -> str:
    return c_helper("mem_helper")


def pid_file_event(pid: int, path: str) -> Pred:
    return lambda o: event_of(pid, "file")(o) and file_event(path)(o)


# -- se.defense_evasion.shell_history_deleted ---------------------------------------

RULE_HIST_DEL = "se.defense_evasion.shell_history_deleted"


def _history(scratch: Path) -> Path:
    home = scratch / f"home-{token()}"
    home.mkdir()
    h = home / ".bash_history"
    h.write_text("ls\nid\n")
    return h


def test_history_file_removed_alerts(agent: AgentHandle, scratch: Path) -> None:
    h = _history(scratch)
    m = marks(agent)
    pid, _ = run(["rm", "-f", str(h)])
    expect_alert(agent, RULE_HIST_DEL, m, for_pid(pid), ["T1070.003"])


def test_history_file_emptied_by_other_program_alerts(agent: AgentHandle, scratch: Path) -> None:
    h = _history(scratch)
    m = marks(agent)
    pid, _ = py(f"open({str(h)!r}, 'w').close()")
    expect_alert(agent, RULE_HIST_DEL, m, for_pid(pid), ["T1070.003"])


def test_history_file_appended_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    h = _history(scratch)
    m = marks(agent)
    pid, _ = py(f"open({str(h)!r}, 'a').write('whoami\\n')")
    expect_quiet(agent, RULE_HIST_DEL, m, for_pid(pid), pid_file_event(pid, str(h)))


# -- se.defense_evasion.history_logging_disabled ------------------------------------

RULE_HIST_OFF = "se.defense_evasion.history_logging_disabled"


def test_histfile_dev_null_alerts(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["bash", "-c", f"export HISTFILE=/dev/null; : {token()}"])
    expect_alert(agent, RULE_HIST_OFF, m, for_pid(pid), ["T1562.003", "T1070.003"])


def test_history_linked_to_dev_null_alerts(agent: AgentHandle, scratch: Path) -> None:
    home = scratch / f"home-{token()}"
    home.mkdir()
    m = marks(agent)
    pid, _ = run(["ln", "-s", "/dev/null", str(home / ".bash_history")])
    expect_alert(agent, RULE_HIST_OFF, m, for_pid(pid), ["T1562.003"])


def test_reading_histfile_variable_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["bash", "-c", f'echo "$HISTFILE $HISTSIZE" >/dev/null; : {token()}'])
    expect_quiet(agent, RULE_HIST_OFF, m, for_pid(pid), event_of(pid, "exec"))


# -- se.defense_evasion.log_file_truncated / log_file_deleted -----------------------

RULE_LOG_TRUNC = "se.defense_evasion.log_file_truncated"
RULE_LOG_DEL = "se.defense_evasion.log_file_deleted"


@pytest.fixture
def log_file() -> Iterator[Path]:
    """An auth.log with some lines in a uniquely named directory under /var/log; removed afterwards."""
    d = Path(f"/var/log/se-ra-{token()}")
    d.mkdir()
    path = d / "auth.log"
    with path.open("a") as fh:  # O_APPEND: creating the file must not look like a truncation
        fh.write("Nov 24 06:00:00 host sshd[1]: Accepted publickey for root\n" * 5)
    try:
        yield path
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _logrotate(log: Path, scratch: Path, options: str) -> int:
    conf = scratch / "logrotate.conf"
    conf.write_text(f"{log} {{\n  rotate 1\n  missingok\n  nocompress\n  {options}\n}}\n")
    pid, _ = run(["logrotate", "-f", "-s", str(scratch / "state"), str(conf)])
    return pid


def test_log_truncated_by_shell_redirect_alerts(agent: AgentHandle, log_file: Path) -> None:
    m = marks(agent)
    pid, _ = run(["sh", "-c", f": > {log_file}"])
    assert log_file.stat().st_size == 0
    expect_alert(agent, RULE_LOG_TRUNC, m, for_pid(pid), ["T1070.002"])


def test_log_truncated_by_logrotate_copytruncate_is_quiet(agent: AgentHandle, log_file: Path,
                                                          scratch: Path) -> None:
    m = marks(agent)
    _logrotate(log_file, scratch, "copytruncate")
    assert log_file.stat().st_size == 0, "logrotate did not truncate"
    expect_quiet(agent, RULE_LOG_TRUNC, m, mentions(str(log_file)), file_event(str(log_file)))


def test_log_appended_is_quiet(agent: AgentHandle, log_file: Path) -> None:
    m = marks(agent)
    pid, _ = run(["sh", "-c", f"echo more >> {log_file}"])
    expect_quiet(agent, RULE_LOG_TRUNC, m, for_pid(pid), pid_file_event(pid, str(log_file)))


def test_new_application_log_created_with_trunc_is_quiet(agent: AgentHandle, log_file: Path) -> None:
    path = str(log_file.parent / "myapp.log")
    m = marks(agent)
    pid, _ = run(["sh", "-c", f"echo started > {path}"])
    expect_quiet(agent, RULE_LOG_TRUNC, m, for_pid(pid), pid_file_event(pid, path))


def test_log_deleted_alerts(agent: AgentHandle, log_file: Path) -> None:
    m = marks(agent)
    pid, _ = run(["rm", "-f", str(log_file)])
    expect_alert(agent, RULE_LOG_DEL, m, for_pid(pid), ["T1070.002"])


def test_rotated_copy_deleted_is_quiet(agent: AgentHandle, log_file: Path) -> None:
    old = log_file.parent / "auth.log.2.gz"
    old.write_bytes(b"\x1f\x8b")
    m = marks(agent)
    pid, _ = run(["rm", "-f", str(old)])
    expect_quiet(agent, RULE_LOG_DEL, m, for_pid(pid), pid_file_event(pid, str(old)))


def test_log_rotated_by_logrotate_is_quiet(agent: AgentHandle, log_file: Path, scratch: Path) -> None:
    m = marks(agent)
    _logrotate(log_file, scratch, "create")
    assert Path(f"{log_file}.1").exists(), "logrotate did not rotate"
    expect_quiet(agent, RULE_LOG_DEL, m, mentions(str(log_file)), file_event(f"{log_file}.1"))


# -- se.defense_evasion.system_file_timestomped -------------------------------------

RULE_TIME = "se.defense_evasion.system_file_timestomped"


def test_touch_with_date_on_etc_file_alerts(agent: AgentHandle) -> None:
    path = f"/etc/se-ra-{token()}.conf"
    with temp_file(path):
        m = marks(agent)
        pid, _ = run(["touch", "-d", "2001-02-03 04:05:06", path])
        assert time.gmtime(os.stat(path).st_mtime).tm_year == 2001
        expect_alert(agent, RULE_TIME, m, for_pid(pid), ["T1070.006"])


def test_touch_reference_on_etc_file_alerts(agent: AgentHandle) -> None:
    path = f"/etc/se-ra-{token()}.conf"
    with temp_file(path):
        m = marks(agent)
        pid, _ = run(["touch", "-r", "/etc/hostname", path])
        expect_alert(agent, RULE_TIME, m, for_pid(pid), ["T1070.006"])


def test_plain_touch_on_etc_file_is_quiet(agent: AgentHandle) -> None:
    path = f"/etc/se-ra-{token()}.conf"
    with temp_file(path):
        m = marks(agent)
        pid, _ = run(["touch", path])
        expect_quiet(agent, RULE_TIME, m, for_pid(pid), pid_file_event(pid, path))


def test_touch_with_date_outside_system_dirs_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    path = str(scratch / "stamp")
    m = marks(agent)
    pid, _ = run(["touch", "-d", "2001-02-03", path])
    expect_quiet(agent, RULE_TIME, m, for_pid(pid), pid_file_event(pid, path))


# -- se.defense_evasion.kernel_thread_masquerade -------------------------------------

RULE_KTHREAD = "se.defense_evasion.kernel_thread_masquerade"


def test_process_named_like_kworker_alerts(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["[kworker/0:2-events]", "0.01"], executable="/bin/sleep")
    expect_alert(agent, RULE_KTHREAD, m, for_pid(pid), ["T1036.004"])


def test_ordinary_argv0_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["worker-0", "0.01"], executable="/bin/sleep")
    expect_quiet(agent, RULE_KTHREAD, m, for_pid(pid), event_of(pid, "exec"))


# -- se.defense_evasion.daemon_name_masquerade ----------------------------------------

RULE_MASQ = "se.defense_evasion.daemon_name_masquerade"


def test_binary_named_sshd_in_tmp_alerts(agent: AgentHandle, scratch: Path) -> None:
    fake = copy_exe("/bin/sleep", scratch / "sshd")
    m = marks(agent)
    pid, _ = run([str(fake), "0.01"])
    expect_alert(agent, RULE_MASQ, m, for_pid(pid), ["T1036.005"])


def test_system_program_with_daemon_argv0_alerts(agent: AgentHandle) -> None:
    # exec -a cron /bin/sleep: argv[0] claims to be cron, the image is sleep
    m = marks(agent)
    pid, _ = run(["cron", "0.01"], executable="/bin/sleep")
    expect_alert(agent, RULE_MASQ, m, for_pid(pid), ["T1036.005"])


def test_binary_with_own_name_in_tmp_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    tool = copy_exe("/bin/sleep", scratch / f"nap-{token()}")
    m = marks(agent)
    pid, _ = run([str(tool), "0.01"])
    expect_quiet(agent, RULE_MASQ, m, for_pid(pid), event_of(pid, "exec"))


def test_daemon_in_its_own_install_prefix_is_quiet(agent: AgentHandle) -> None:
    # vendor builds live in /opt/<app>/sbin or /usr/local/<app>/sbin: not a masquerade
    with scratch_dir("/opt") as prefix:
        (prefix / "sbin").mkdir()
        nginx = copy_exe("/bin/sleep", prefix / "sbin" / "nginx")
        m = marks(agent)
        pid, _ = run([str(nginx), "0.01"])
        expect_quiet(agent, RULE_MASQ, m, for_pid(pid), event_of(pid, "exec"))


# -- se.defense_evasion.deleted_binary_executed / memfd_executed ------------------------

RULE_DELETED = "se.defense_evasion.deleted_binary_executed"
RULE_MEMFD = "se.defense_evasion.memfd_executed"


def _run_through_fd(path: Path, unlink: bool) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if unlink:
            path.unlink()
        pid, _ = run([f"/proc/self/fd/{fd}"], pass_fds=(fd,))
        return pid
    finally:
        os.close(fd)


def test_deleted_binary_executed_alerts(agent: AgentHandle, scratch: Path) -> None:
    exe = copy_exe("/bin/true", scratch / f"dropper-{token()}")
    m = marks(agent)
    pid = _run_through_fd(exe, unlink=True)
    expect_alert(agent, RULE_DELETED, m, for_pid(pid), ["T1070.004"])
    agent.assert_no_alert(RULE_MEMFD, m.alerts, for_pid(pid), settle=0.1)


def test_existing_binary_executed_through_fd_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    exe = copy_exe("/bin/true", scratch / f"tool-{token()}")
    m = marks(agent)
    pid = _run_through_fd(exe, unlink=False)
    expect_quiet(agent, RULE_DELETED, m, for_pid(pid), event_of(pid, "exec"))


def test_memfd_executed_alerts(agent: AgentHandle, mem_helper: str) -> None:
    m = marks(agent)
    out = run_helper(mem_helper, "memfd_exec")
    expect_alert(agent, RULE_MEMFD, m, for_pid(out["pid"]), ["T1620"])


def test_memfd_created_then_normal_exec_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = py("import os; os.memfd_create('se_ra_buf'); os.execv('/bin/true', ['true'])")
    expect_quiet(agent, RULE_MEMFD, m, for_pid(pid),
                 lambda o: event_of(pid, "exec")(o) and o.get("process", {}).get("name") == "true")


# -- se.defense_evasion.write_execute_memory -------------------------------------------

RULE_WX = "se.defense_evasion.write_execute_memory"


def test_rwx_anonymous_mapping_alerts(agent: AgentHandle, mem_helper: str) -> None:
    m = marks(agent)
    out = run_helper(mem_helper, "mmap_rwx")
    expect_alert(agent, RULE_WX, m, for_pid(out["pid"]), ["T1620", "T1055"])


def test_rw_to_rwx_mprotect_alerts(agent: AgentHandle, mem_helper: str) -> None:
    m = marks(agent)
    out = run_helper(mem_helper, "mprotect")
    expect_alert(agent, RULE_WX, m, for_pid(out["pid"]), ["T1620"])


def test_python_ctypes_callback_page_is_quiet(agent: AgentHandle) -> None:
    # libffi maps one anonymous RWX page for ctypes callback trampolines
    m = marks(agent)
    pid, _ = py("import ctypes; cb = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1); assert cb(1) == 2")
    expect_quiet(agent, RULE_WX, m, for_pid(pid), event_of(pid, "mem"))


def test_read_execute_mapping_is_quiet(agent: AgentHandle, mem_helper: str) -> None:
    m = marks(agent)
    out = run_helper(mem_helper, "mmap_anon_rx")
    expect_quiet(agent, RULE_WX, m, for_pid(out["pid"]), event_of(out["pid"], "mem"))


# -- se.defense_evasion.ld_preload_injection -----------------------------------------

RULE_PRELOAD = "se.defense_evasion.ld_preload_injection"


def test_ld_preload_from_tmp_alerts(agent: AgentHandle, scratch: Path) -> None:
    lib = scratch / f"libse-{token()}.so"  # missing: the loader complains and runs the program anyway
    m = marks(agent)
    pid, _ = run(["/bin/true"], env={"PATH": "/usr/bin:/bin", "LD_PRELOAD": str(lib)})
    expect_alert(agent, RULE_PRELOAD, m, for_pid(pid), ["T1574.006"])


def test_ld_preload_of_system_library_is_quiet(agent: AgentHandle) -> None:
    lib = next(p for p in ("/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6",
                           "/usr/lib64/libc.so.6", "/usr/lib/aarch64-linux-gnu/libc.so.6") if os.path.exists(p))
    m = marks(agent)
    pid, _ = run(["/bin/true"], env={"PATH": "/usr/bin:/bin", "LD_PRELOAD": lib})
    expect_quiet(agent, RULE_PRELOAD, m, for_pid(pid), event_of(pid, "exec"))


# -- se.defense_evasion.hidden_file_created ------------------------------------------

RULE_HIDDEN_FILE = "se.defense_evasion.hidden_file_created"


def test_hidden_directory_in_dev_shm_alerts(agent: AgentHandle) -> None:
    path = f"/dev/shm/.se-ra-{token()}"
    m = marks(agent)
    try:
        pid, _ = run(["mkdir", path])
        expect_alert(agent, RULE_HIDDEN_FILE, m, for_pid(pid), ["T1564.001"])
    finally:
        subprocess.run(["rmdir", path], capture_output=True, timeout=10)


def test_visible_directory_in_dev_shm_is_quiet(agent: AgentHandle) -> None:
    path = f"/dev/shm/se-ra-{token()}"
    m = marks(agent)
    try:
        pid, _ = run(["mkdir", path])
        expect_quiet(agent, RULE_HIDDEN_FILE, m, for_pid(pid), pid_file_event(pid, path))
    finally:
        subprocess.run(["rmdir", path], capture_output=True, timeout=10)


def test_hidden_file_deeper_in_a_project_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    path = str(scratch / ".gitignore")
    m = marks(agent)
    pid, _ = run(["sh", "-c", f"echo '*.o' > {path}"])
    expect_quiet(agent, RULE_HIDDEN_FILE, m, for_pid(pid), pid_file_event(pid, path))


# -- se.defense_evasion.hidden_binary_executed ---------------------------------------

RULE_HIDDEN_EXE = "se.defense_evasion.hidden_binary_executed"


def test_hidden_binary_executed_alerts(agent: AgentHandle, scratch: Path) -> None:
    exe = copy_exe("/bin/true", scratch / f".cache-{token()}")
    m = marks(agent)
    pid, _ = run([str(exe)])
    expect_alert(agent, RULE_HIDDEN_EXE, m, for_pid(pid), ["T1564.001"])


def test_visible_binary_executed_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    exe = copy_exe("/bin/true", scratch / f"cache-{token()}")
    m = marks(agent)
    pid, _ = run([str(exe)])
    expect_quiet(agent, RULE_HIDDEN_EXE, m, for_pid(pid), event_of(pid, "exec"))


# -- se.defense_evasion.process_memory_written ----------------------------------------

RULE_VMW = "se.defense_evasion.process_memory_written"


def test_process_vm_writev_into_child_alerts(agent: AgentHandle, mem_helper: str) -> None:
    m = marks(agent)
    out = run_helper(mem_helper, "vm_writev")
    assert out["ret"] > 0
    a = expect_alert(agent, RULE_VMW, m, for_pid(out["pid"]), ["T1055"])
    assert str(out["child"]) in a["message"]


def test_process_vm_writev_into_self_is_quiet(agent: AgentHandle, helper: str) -> None:
    m = marks(agent)
    out = run_helper(helper, "vm_writev_self")
    expect_quiet(agent, RULE_VMW, m, for_pid(out["pid"]), event_of(out["pid"], "ptrace"))


# -- se.defense_evasion.ptrace_code_injection ------------------------------------------

RULE_POKE = "se.defense_evasion.ptrace_code_injection"


def test_ptrace_pokedata_alerts(agent: AgentHandle, helper: str) -> None:
    m = marks(agent)
    out = run_helper(helper, "poke")
    assert out["op_ret"] == 0
    expect_alert(agent, RULE_POKE, m, for_pid(out["pid"]), ["T1055.008"])


def test_ptrace_peek_only_is_quiet(agent: AgentHandle, helper: str) -> None:
    m = marks(agent)
    out = run_helper(helper, "peek")

    def attach_seen(o: Obj) -> bool:
        return event_of(out["pid"], "ptrace")(o)

    expect_quiet(agent, RULE_POKE, m, for_pid(out["pid"]), attach_seen)
