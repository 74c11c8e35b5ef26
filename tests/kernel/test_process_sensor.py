"""Process sensor end to end: real execs, forks, exits and renames through the agent.

Every test performs the action in a child process and asserts the fields of
the OCSF objects the running agent wrote (and the raw kernel fields kept in
``unmapped``).
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import AgentHandle, Obj

pytestmark = pytest.mark.kernel


def kind(o: Obj) -> str:
    return str(o.get("unmapped", {}).get("event"))


def exec_of(agent: AgentHandle, since: int, pid: int) -> Obj:
    return agent.wait_for(lambda o: kind(o) == "exec" and o["process"]["pid"] == pid, since)


def test_exec_through_relative_path_and_symlink(agent: AgentHandle, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shutil.copy("/bin/echo", bindir / "myecho")
    (tmp_path / "link-to-echo").symlink_to(bindir / "myecho")
    st = os.stat(bindir / "myecho")
    mark = agent.mark()
    p1 = subprocess.Popen(["./bin/myecho", "first arg", "second"], cwd=tmp_path, stdout=subprocess.DEVNULL)
    p2 = subprocess.Popen(["./link-to-echo", "via-link"], cwd=tmp_path, stdout=subprocess.DEVNULL)
    p1.wait()
    p2.wait()

    e1 = exec_of(agent, mark, p1.pid)
    assert e1["class_uid"] == 1007 and e1["activity_id"] == 1
    proc = e1["process"]
    assert proc["file"]["path"] == str(bindir / "myecho")
    assert proc["cmd_line"] == "./bin/myecho 'first arg' second" or proc["cmd_line"].startswith("./bin/myecho")
    assert proc["working_directory"] == str(tmp_path)
    assert proc["name"] == "myecho"
    assert proc["user"]["uid"] == "0" and proc["user"]["name"] == "root"
    um = e1["unmapped"]
    assert um["filename"] == "./bin/myecho"
    assert um["argv"] == ["./bin/myecho", "first arg", "second"]
    assert um["exe"]["ino"] == st.st_ino and um["exe"]["dev"] == st.st_dev
    assert um["exe"]["nlink"] == 1 and um["exe"]["mode"] == st.st_mode
    assert "exe_deleted" not in um["flags"] and "argv_truncated" not in um["flags"]
    assert um["proc"]["pid"] == p1.pid and um["proc"]["ppid"] == os.getpid()
    assert e1["actor"]["process"]["pid"] == os.getpid()

    e2 = exec_of(agent, mark, p2.pid)
    assert e2["unmapped"]["filename"] == "./link-to-echo"
    # resolved: the real file behind the symlink
    assert e2["process"]["file"]["path"] == str(bindir / "myecho")
    assert e2["unmapped"]["exe"]["ino"] == st.st_ino
    assert e2["unmapped"]["argv"] == ["./link-to-echo", "via-link"]


def test_shebang_script_reports_script_and_interpreter(agent: AgentHandle, tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\nexit 3\n")
    script.chmod(0o755)
    mark = agent.mark()
    p = subprocess.run([str(script), "x"], cwd=tmp_path)
    assert p.returncode == 3
    e = agent.wait_for(lambda o: kind(o) == "exec" and o["unmapped"].get("filename") == str(script), mark)
    um = e["unmapped"]
    assert um["interp"] == "/bin/sh"
    assert e["process"]["file"]["path"] == os.path.realpath("/bin/sh")
    assert um["argv"][:2] == ["/bin/sh", str(script)]
    pid = e["process"]["pid"]
    ex = agent.wait_for(lambda o: kind(o) == "exit" and o["process"]["pid"] == pid, mark)
    assert ex["activity_id"] == 2
    assert ex["exit_code"] == 3


def test_fork_exit_code_and_signal(agent: AgentHandle) -> None:
    mark = agent.mark()
    code = "import os,signal,sys\npid=os.fork()\nif pid==0: os._exit(7)\nos.waitpid(pid,0)\nprint(pid)\n"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    child = int(res.stdout)
    fork = agent.wait_for(lambda o: kind(o) == "fork" and o["process"]["pid"] == child, mark)
    assert fork["activity_id"] == 1
    assert fork["actor"]["process"]["pid"] != child
    assert fork["unmapped"]["proc"]["pid"] == fork["actor"]["process"]["pid"]
    ex = agent.wait_for(lambda o: kind(o) == "exit" and o["process"]["pid"] == child, mark)
    assert ex["exit_code"] == 7
    assert ex["unmapped"]["exit_signal"] == 0

    killed = subprocess.Popen(["sleep", "30"])
    killed.kill()
    killed.wait()
    ex2 = agent.wait_for(lambda o: kind(o) == "exit" and o["process"]["pid"] == killed.pid, mark)
    assert ex2["unmapped"]["exit_signal"] == 9
    assert ex2["unmapped"]["signal_name"] == "SIGKILL"


def test_comm_change_is_reported_once(agent: AgentHandle) -> None:
    mark = agent.mark()
    code = (
        "import ctypes\nlibc=ctypes.CDLL(None)\n"
        "libc.prctl(15, b'renamed-proc', 0, 0, 0)\nimport os; print(os.getpid())\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    pid = int(res.stdout)
    e = agent.wait_for(lambda o: kind(o) == "comm" and o["unmapped"]["proc"]["pid"] == pid, mark)
    assert e["unmapped"]["new_comm"] == "renamed-proc"
    assert e["unmapped"]["old_comm"] == "python3" or e["unmapped"]["old_comm"].startswith("python")
    # the rename done by the exec itself is not a separate comm event
    renames = agent.find_all(lambda o: kind(o) == "comm" and o["unmapped"]["proc"]["pid"] == pid, mark)
    assert len(renames) == 1


def test_ld_preload_and_fd_kinds(agent: AgentHandle, tmp_path: Path) -> None:
    infile = tmp_path / "in.txt"
    infile.write_text("x")
    a, b = socket.socketpair()
    mark = agent.mark()
    with infile.open() as fin:
        p = subprocess.Popen(
            ["/bin/true"], stdin=fin, stdout=subprocess.PIPE, stderr=b.fileno(),
            env={"LD_PRELOAD": "/nonexistent/libevil.so", "LD_LIBRARY_PATH": "/opt/x:/opt/y", "PATH": "/bin"},
        )
        p.communicate()
    a.close()
    b.close()
    e = exec_of(agent, mark, p.pid)
    um = e["unmapped"]
    assert um["ld_preload"] == "/nonexistent/libevil.so"
    assert um["ld_library_path"] == "/opt/x:/opt/y"
    assert um["fd"] == {"stdin": "file", "stdout": "pipe", "stderr": "socket"}


def test_long_argv_is_truncated_and_flagged(agent: AgentHandle) -> None:
    args = [f"arg{i:03d}-" + "y" * 60 for i in range(100)]  # ~6.7 KiB
    mark = agent.mark()
    p = subprocess.run(["/bin/true", *args])
    assert p.returncode == 0
    e = agent.wait_for(lambda o: kind(o) == "exec" and o["unmapped"].get("filename") == "/bin/true"
                       and "argv_truncated" in o["unmapped"]["flags"], mark)
    argv = e["unmapped"]["argv"]
    assert argv[0] == "/bin/true"
    assert len(argv) >= 32 and argv[1] == args[0]
    assert sum(len(x) + 1 for x in argv) <= 4096 + 1
    assert e["unmapped"]["argc"] == 101


def test_setuid_exec_reports_credential_change(agent: AgentHandle, tmp_path: Path) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv missing")
    d = tmp_path / "suid"
    d.mkdir()
    d.chmod(0o755)
    tmp_path.chmod(0o755)
    binary = d / "suid-id"
    shutil.copy("/usr/bin/id", binary)
    os.chown(binary, 0, 0)
    binary.chmod(0o4755)
    if "nosuid" in subprocess.run(["findmnt", "-no", "OPTIONS", "-T", str(d)], capture_output=True,
                                  text=True).stdout:
        pytest.skip("temp dir is mounted nosuid")
    mark = agent.mark()
    res = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", str(binary), "-u"],
                         capture_output=True, text=True)
    assert res.stdout.strip() == "0", res.stderr
    e = agent.wait_for(lambda o: kind(o) == "exec" and o["process"].get("file", {}).get("path") == str(binary), mark)
    um = e["unmapped"]
    assert "setuid" in um["flags"] and "secureexec" in um["flags"]
    assert um["credentials"]["old"]["euid"] == 65534
    assert um["credentials"]["new"]["euid"] == 0
    assert um["proc"]["uid"] == 65534 and um["proc"]["euid"] == 0
    assert stat.S_IMODE(um["exe"]["mode"]) == 0o4755


def test_pid_namespace_pid_reuse_gets_new_exec_ids(agent: AgentHandle) -> None:
    mark = agent.mark()
    pids = []
    for _ in range(2):
        res = subprocess.run(
            ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", "echo $$; exec /bin/true pidns-marker"],
            capture_output=True, text=True, check=True,
        )
        assert res.stdout.strip() == "1"  # pid 1 inside each new namespace: the same pid, reused
    execs = agent.wait_all(
        lambda o: kind(o) == "exec" and o["unmapped"].get("argv") == ["/bin/true", "pidns-marker"], 2, mark
    )
    assert len(execs) == 2
    for e in execs:
        assert e["unmapped"]["proc"]["ns_pid"] == 1
        pids.append(e["process"]["pid"])
    assert execs[0]["unmapped"]["proc"]["pid_ns"] != execs[1]["unmapped"]["proc"]["pid_ns"]
    assert execs[0]["process"]["uid"] != execs[1]["process"]["uid"]
    assert all(p != 1 for p in pids)  # host pids are reported


def test_short_lived_process_keeps_full_context(agent: AgentHandle, tmp_path: Path) -> None:
    target = tmp_path / "short.txt"
    target.write_text("x")
    mark = agent.mark()
    p = subprocess.run(["sh", "-c", f"exec /bin/cat {target}"], capture_output=True, check=True)
    assert p.stdout == b"x"
    opened = agent.wait_for(
        lambda o: kind(o) == "file" and o.get("file", {}).get("path") == str(target)
        and o["actor"]["process"].get("name") == "cat", mark)
    actor = opened["actor"]["process"]
    assert actor["file"]["path"] == os.path.realpath("/bin/cat")
    assert actor["cmd_line"] == f"/bin/cat {target}"
    assert actor["working_directory"] == os.getcwd()
    # sh exec'd cat in place: two execs share the pid, each image has its own exec_id
    execs = agent.find_all(lambda o: kind(o) == "exec" and o["process"]["pid"] == actor["pid"], mark)
    assert [e["process"]["name"] for e in execs] == ["sh", "cat"]
    assert actor["uid"] == execs[1]["process"]["uid"] != execs[0]["process"]["uid"]
    assert actor["parent_process"]["pid"] == os.getpid()


@pytest.mark.parametrize(
    ("label", "env", "preload", "libpath"),
    [
        ("short", {"LD_PRELOAD": "x"}, "x", None),
        ("after-long-var", {"A": "y" * 5000, "LD_PRELOAD": "/l.so", "LD_LIBRARY_PATH": "/p"}, "/l.so", "/p"),
        ("last-of-many", {**{f"V{i}": "v" * 300 for i in range(60)}, "LD_LIBRARY_PATH": "/last"}, None, "/last"),
        ("lookalikes", {"LD_PRELOADX": "no", "LD_LIBRARY_PATHS": "no", "XLD_PRELOAD": "no"}, None, None),
    ],
)
def test_loader_variables_found_anywhere_in_the_environment(
    agent: AgentHandle, label: str, env: dict[str, str], preload: str | None, libpath: str | None
) -> None:
    mark = agent.mark()
    p = subprocess.run(["/bin/true", f"env-{label}"], env=env, stderr=subprocess.DEVNULL)
    assert p.returncode == 0
    e = agent.wait_for(lambda o: kind(o) == "exec" and o["unmapped"].get("argv") == ["/bin/true", f"env-{label}"],
                       mark)
    assert e["unmapped"].get("ld_preload") == preload
    assert e["unmapped"].get("ld_library_path") == libpath
    assert "env_truncated" not in e["unmapped"]["flags"]
