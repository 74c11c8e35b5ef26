"""Default execution rules against the real agent: for each rule the behaviour and its benign neighbour."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from rules_a_support import (
    PYTHON,
    Obj,
    Pred,
    copy_exe,
    event_of,
    expect_alert,
    expect_quiet,
    for_pid,
    marks,
    mentions,
    py,
    run,
    scratch_dir,
    token,
)

from conftest import AgentHandle

pytestmark = pytest.mark.kernel


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir() as d:
        yield d


def exec_named(name: str | None, tok: str) -> Pred:
    """Events: the exec of a process called ``name`` (any when None) whose object mentions ``tok``."""

    def pred(o: Obj) -> bool:
        if o.get("unmapped", {}).get("event") != "exec":
            return False
        return (name is None or o.get("process", {}).get("name") == name) and tok in json.dumps(o)

    return pred


def sh_alert(tok: str) -> Pred:
    return lambda a: a.get("actor", {}).get("process", {}).get("name") == "sh" and mentions(tok)(a)


# -- se.execution.downloader_piped_to_interpreter ---------------------------------

RULE_PIPE = "se.execution.downloader_piped_to_interpreter"


def test_curl_piped_to_sh_alerts(agent: AgentHandle, scratch: Path) -> None:
    tok = token()
    payload = scratch / f"install-{tok}.sh"
    payload.write_text("true\n")
    m = marks(agent)
    run(["bash", "-c", f"curl -fsS file://{payload} | sh"])
    a = expect_alert(agent, RULE_PIPE, m, sh_alert(tok), ["T1059.004", "T1105"])
    assert a["severity_id"] >= 4


def test_pipe_into_sh_without_download_is_quiet(agent: AgentHandle) -> None:
    tok = token()
    m = marks(agent)
    run(["bash", "-c", f"echo ': {tok}' | sh"])
    expect_quiet(agent, RULE_PIPE, m, mentions(tok), exec_named("sh", tok))


def test_curl_piped_to_cat_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    tok = token()
    payload = scratch / f"notes-{tok}.txt"
    payload.write_text("hello\n")
    m = marks(agent)
    run(["bash", "-c", f"curl -fsS file://{payload} | cat"])
    expect_quiet(agent, RULE_PIPE, m, mentions(tok), exec_named("cat", tok))


def test_curl_piped_to_python_json_tool_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    # python3 -m json.tool reads data, not a program, from its stdin
    tok = token()
    payload = scratch / f"data-{tok}.json"
    payload.write_text('{"a": 1}\n')
    m = marks(agent)
    run(["bash", "-c", f"curl -fsS file://{payload} | {PYTHON} -m json.tool"])
    expect_quiet(agent, RULE_PIPE, m, mentions(tok), exec_named(None, f"{PYTHON} -m json.tool"))


# -- se.execution.downloader_piped_to_sibling_interpreter / sibling_interpreter_reads_downloader_pipe
# A script file (no command line shows the pipeline); a short sleep in one end fixes which end starts first.

RULE_SEQ = "se.execution.downloader_piped_to_sibling_interpreter"
RULE_SEQ_REV = "se.execution.sibling_interpreter_reads_downloader_pipe"


def _script(scratch: Path, tok: str, body: str) -> Path:
    (scratch / f"payload-{tok}.sh").write_text("true\n")
    script = scratch / f"setup-{tok}.sh"
    script.write_text(body.replace("PAYLOAD", f"file://{scratch}/payload-{tok}.sh"))
    return script


def test_curl_then_sh_in_a_script_alerts(agent: AgentHandle, scratch: Path) -> None:
    tok = token()
    script = _script(scratch, tok, "curl -fsS PAYLOAD | { sleep 0.3; exec sh; }\n")
    m = marks(agent)
    run(["bash", str(script)])
    a = expect_alert(agent, RULE_SEQ, m, mentions(tok), ["T1059.004", "T1105"])
    assert a["actor"]["process"]["name"] == "sh"


def test_sh_then_curl_in_a_script_alerts(agent: AgentHandle, scratch: Path) -> None:
    tok = token()
    script = _script(scratch, tok, "{ sleep 0.3; exec curl -fsS PAYLOAD; } | sh\n")
    m = marks(agent)
    run(["bash", str(script)])
    a = expect_alert(agent, RULE_SEQ_REV, m, mentions(tok), ["T1059.004", "T1105"])
    assert a["actor"]["process"]["name"] == "curl"


def test_download_to_file_then_pipe_into_sh_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    tok = token()
    script = _script(scratch, tok, f"curl -fsS -o {scratch}/saved PAYLOAD\necho ': {tok}' | sh\n")
    m = marks(agent)
    run(["bash", str(script)])
    expect_quiet(agent, RULE_SEQ, m, mentions(tok), exec_named("sh", tok))


def test_pipe_into_sh_then_download_to_file_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    tok = token()
    script = _script(scratch, tok, f"echo true | sh\ncurl -fsS -o {scratch}/saved-{tok} PAYLOAD\n")
    m = marks(agent)
    run(["bash", str(script)])
    expect_quiet(agent, RULE_SEQ_REV, m, mentions(tok), exec_named("curl", tok))


# -- se.execution.decoded_payload_piped_to_interpreter -----------------------------

RULE_B64 = "se.execution.decoded_payload_piped_to_interpreter"


def test_base64_decoded_into_sh_alerts(agent: AgentHandle) -> None:
    tok = token()
    m = marks(agent)
    run(["bash", "-c", f": {tok}; echo dHJ1ZQo= | base64 -d | sh"])
    expect_alert(agent, RULE_B64, m, sh_alert(tok), ["T1059.004", "T1140"])


def test_base64_decoded_into_cat_is_quiet(agent: AgentHandle) -> None:
    tok = token()
    m = marks(agent)
    run(["bash", "-c", f": {tok}; echo dHJ1ZQo= | base64 -d | cat"])
    expect_quiet(agent, RULE_B64, m, mentions(tok), exec_named("cat", tok))


# -- se.execution.exec_from_dev_shm ------------------------------------------------

RULE_SHM = "se.execution.exec_from_dev_shm"


def test_binary_in_dev_shm_alerts(agent: AgentHandle) -> None:
    with scratch_dir("/dev/shm") as d:
        exe = copy_exe("/bin/true", d / f"upd-{token()}")
        m = marks(agent)
        pid, _ = run([str(exe)])
        expect_alert(agent, RULE_SHM, m, for_pid(pid), ["T1204.002"])


def test_system_binary_run_from_dev_shm_cwd_is_quiet(agent: AgentHandle) -> None:
    # the working directory is /dev/shm but the program is /bin/true, named by an absolute path
    m = marks(agent)
    pid, _ = run(["/bin/true"], cwd="/dev/shm")
    expect_quiet(agent, RULE_SHM, m, for_pid(pid), event_of(pid, "exec"))


# -- se.execution.binary_from_tmp ------------------------------------------------

RULE_TMP_BIN = "se.execution.binary_from_tmp"


def test_binary_in_tmp_alerts(agent: AgentHandle, scratch: Path) -> None:
    exe = copy_exe("/bin/true", scratch / f"payload-{token()}")
    m = marks(agent)
    pid, _ = run([str(exe)])
    expect_alert(agent, RULE_TMP_BIN, m, for_pid(pid), ["T1204.002"])


def test_binary_in_tmp_run_by_make_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    # a build tree in /tmp: make runs a freshly built test program (the benign workload's shape)
    tok = token()
    copy_exe("/bin/true", scratch / f"conftest-{tok}")
    (scratch / "Makefile").write_text(f"check:\n\t./conftest-{tok}\n")
    m = marks(agent)
    run(["make", "-s", "check"], cwd=scratch)
    expect_quiet(agent, RULE_TMP_BIN, m, mentions(tok), exec_named(None, f"conftest-{tok}"))


# -- se.execution.script_from_tmp --------------------------------------------------

RULE_TMP_SCRIPT = "se.execution.script_from_tmp"


def test_script_in_tmp_alerts(agent: AgentHandle, scratch: Path) -> None:
    script = scratch / f"stage2-{token()}.sh"
    script.write_text("#!/bin/sh\ntrue\n")
    script.chmod(0o755)
    m = marks(agent)
    pid, _ = run([str(script)])
    expect_alert(agent, RULE_TMP_SCRIPT, m, for_pid(pid), ["T1059.004"])
    # the same script named to an interpreter
    pid2, _ = run(["sh", str(script)])
    expect_alert(agent, RULE_TMP_SCRIPT, m, for_pid(pid2), ["T1059.004"])


def test_configure_script_in_tmp_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    # autotools-style ./configure in a build tree under /tmp
    tok = token()
    conf = scratch / "configure"
    conf.write_text(f"#!/bin/sh\n# {tok}\necho checking for cc... yes >/dev/null\n")
    conf.chmod(0o755)
    m = marks(agent)
    pid, _ = run(["./configure", f"--with-marker={tok}"], cwd=scratch)
    expect_quiet(agent, RULE_TMP_SCRIPT, m, for_pid(pid), event_of(pid, "exec"))


# -- se.execution.shell_spawned_by_service -------------------------------------------

RULE_SVC = "se.execution.shell_spawned_by_service"


def _named_python(scratch: Path, name: str) -> Path:
    """A link called ``name`` to the real Python binary: the process's comm is then ``name``."""
    link = scratch / name
    link.symlink_to(os.path.realpath(PYTHON))
    return link


def test_shell_spawned_by_web_server_alerts(agent: AgentHandle, scratch: Path) -> None:
    tok = token()
    nginx = _named_python(scratch, "nginx")
    m = marks(agent)
    pid, _ = run([str(nginx), "-S", "-c", f"import subprocess; subprocess.run(['/bin/sh', '-c', ': {tok}'])"])
    a = expect_alert(agent, RULE_SVC, m, mentions(tok), ["T1059.004", "T1505.003"])
    assert a["actor"]["process"]["name"] == "sh"
    assert a["actor"]["process"]["parent_process"]["pid"] == pid


def test_shell_spawned_by_ordinary_program_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    tok = token()
    app = _named_python(scratch, "report-tool")
    m = marks(agent)
    run([str(app), "-S", "-c", f"import subprocess; subprocess.run(['/bin/sh', '-c', ': {tok}'])"])
    expect_quiet(agent, RULE_SVC, m, mentions(tok), exec_named("sh", tok))


# -- se.execution.pty_shell_upgrade ------------------------------------------------

RULE_PTY = "se.execution.pty_shell_upgrade"


def test_python_pty_spawn_alerts(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = py("import pty; pty.spawn(['/bin/true'])")
    expect_alert(agent, RULE_PTY, m, for_pid(pid), ["T1059.006"])


def test_python_importing_pty_only_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = py("import pty; print(pty.STDIN_FILENO)")
    expect_quiet(agent, RULE_PTY, m, for_pid(pid), event_of(pid, "exec"))


# -- se.execution.interpreter_downloads_and_runs -------------------------------------

RULE_CRADLE = "se.execution.interpreter_downloads_and_runs"


def test_python_download_exec_cradle_alerts(agent: AgentHandle, scratch: Path) -> None:
    code = scratch / f"mod-{token()}.py"
    code.write_text("x = 1\n")
    m = marks(agent)
    pid, _ = py(f"import urllib.request as u; exec(u.urlopen('file://{code}').read())")
    expect_alert(agent, RULE_CRADLE, m, for_pid(pid), ["T1059.006", "T1105"])


def test_python_download_without_exec_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    data = scratch / f"data-{token()}.txt"
    data.write_text("x = 1\n")
    m = marks(agent)
    pid, _ = py(f"import urllib.request as u; print(len(u.urlopen('file://{data}').read()))")
    expect_quiet(agent, RULE_CRADLE, m, for_pid(pid), event_of(pid, "exec"))


# -- se.execution.loader_runs_program ----------------------------------------------

RULE_LOADER = "se.execution.loader_runs_program"


def _loader() -> str:
    for p in ("/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"):
        if os.path.exists(p):
            return p
    pytest.skip("no dynamic loader at a known path")


def test_loader_run_on_a_program_alerts(agent: AgentHandle, scratch: Path) -> None:
    prog = scratch / f"payload-{token()}"
    shutil.copy("/bin/true", prog)
    m = marks(agent)
    pid, _ = run([_loader(), str(prog)])
    a = expect_alert(agent, RULE_LOADER, m, for_pid(pid), ["T1218", "T1059"])
    assert a["actor"]["process"]["cmd_line"].endswith(str(prog))


def test_ldd_style_list_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    tok = token()
    m = marks(agent)
    pid, _ = run([_loader(), "--list", "/bin/true"], env={"SE_TOKEN": tok})
    expect_quiet(agent, RULE_LOADER, m, for_pid(pid), event_of(pid, "exec"))
