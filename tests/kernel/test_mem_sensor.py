"""Mem sensor against the real kernel: small C helpers (tests/helpers/mem_helper.c,
io_uring_helper.c) make W+X memory, attach to and write into a child, run a
memfd, try to load a kernel module, load a BPF program and use io_uring. Each
prints what it did (pid, addresses, fds, results); the OCSF objects the agent
wrote for that pid are checked field by field.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import run_helper

pytestmark = pytest.mark.kernel

Obj = dict[str, Any]
TRACEFS = Path("/sys/kernel/tracing/events/syscalls")


def match(pid: int, kind: str, **fields: Any) -> Callable[[Obj], bool]:
    def pred(o: Obj) -> bool:
        um = o.get("unmapped", {})
        if um.get("event") != kind or um.get("proc", {}).get("pid") != pid:
            return False
        return all(um.get(k) == v for k, v in fields.items())

    return pred


def check_actor(o: Obj, pid: int, comm: str = "mem_helper") -> None:
    assert o["actor"]["process"]["pid"] == pid
    assert o["unmapped"]["proc"]["pid"] == pid
    assert o["unmapped"]["proc"]["comm"] == comm
    assert o["unmapped"]["proc"]["uid"] == 0


@pytest.fixture(scope="module")
def mem_helper(c_helper: Callable[..., str]) -> str:
    return c_helper("mem_helper")


@pytest.fixture(scope="module")
def uring_helper(c_helper: Callable[..., str]) -> str:
    return c_helper("io_uring_helper", ["-luring"])


# ---------------------------------------------------------------- mmap / mprotect


def test_mprotect_rw_to_rwx_on_anonymous_memory(agent: Any, mem_helper: str) -> None:
    mark = agent.mark()
    out = run_helper(mem_helper, "mprotect")
    pid = out["pid"]
    o = agent.wait_for(match(pid, "mem", op="mprotect", addr=out["addr"]), since=mark)
    check_actor(o, pid)
    assert (o["class_uid"], o["category_uid"], o["activity_id"], o["type_uid"]) == (1004, 1, 2, 100402)
    assert o["activity_name"] == "Modify Page"
    assert o["status_id"] == 1
    assert o["base_address"] == hex(out["addr"])
    assert o["size"] == 4096
    assert o["requested_permissions"] == 7
    assert o["process"]["pid"] == pid
    um = o["unmapped"]
    assert um["reason"] == "write_exec"
    assert um["prot"] == 7
    assert um["prot_names"] == ["PROT_READ", "PROT_WRITE", "PROT_EXEC"]
    assert um["len"] == 4096
    assert um["ret"] == out["ret"] == 0
    assert um["anon"] is True
    # the mapping as it was before the call: private anonymous RW
    assert um["vma_flags"] & 0x7 == 0x3
    assert "VM_SHARED" not in um["vma_flag_names"]
    # the loader-style file mappings (mmap R+X of a file, mprotect R -> R+X of a file) stay silent
    agent.wait_for(match(pid, "exit"), since=mark)
    mine = agent.find_all(match(pid, "mem"), since=mark)
    assert [m["unmapped"]["addr"] for m in mine] == [out["addr"]], mine
    assert out["file_mprotect_ret"] == 0


def test_mmap_rwx_anonymous(agent: Any, mem_helper: str) -> None:
    mark = agent.mark()
    out = run_helper(mem_helper, "mmap_rwx")
    pid = out["pid"]
    o = agent.wait_for(match(pid, "mem", op="mmap", ret=out["addr"]), since=mark)
    check_actor(o, pid)
    assert (o["class_uid"], o["activity_id"], o["activity_name"]) == (1004, 1, "Allocate Page")
    assert o["status_id"] == 1
    assert o["base_address"] == hex(out["addr"])
    assert o["size"] == 8192
    assert o["requested_permissions"] == 7
    um = o["unmapped"]
    assert um["reason"] == "write_exec"
    assert um["addr"] == 0
    assert um["len"] == 8192
    assert um["prot"] == 7
    assert um["mmap_flags"] == 0x22
    assert um["mmap_flag_names"] == ["MAP_PRIVATE", "MAP_ANONYMOUS"]
    assert um["fd"] == -1
    assert um["anon"] is True


def test_mmap_anonymous_rx_is_reported_by_default(agent: Any, mem_helper: str) -> None:
    """mem.anon_exec is on in the default config: R+X anonymous memory counts too."""
    mark = agent.mark()
    out = run_helper(mem_helper, "mmap_anon_rx")
    pid = out["pid"]
    o = agent.wait_for(match(pid, "mem", op="mmap", ret=out["addr"]), since=mark)
    assert o["activity_id"] == 1
    assert o["requested_permissions"] == 5
    assert o["unmapped"]["reason"] == "anon_exec"
    assert o["unmapped"]["prot_names"] == ["PROT_READ", "PROT_EXEC"]
    assert o["unmapped"]["anon"] is True


# ---------------------------------------------------------------- ptrace / process_vm_writev


def test_ptrace_attach_to_child(agent: Any, mem_helper: str) -> None:
    mark = agent.mark()
    out = run_helper(mem_helper, "ptrace")
    pid, child = out["pid"], out["child"]
    assert out["ret"] == 0
    o = agent.wait_for(match(pid, "ptrace", op="ptrace", request=16), since=mark)
    check_actor(o, pid)
    assert (o["class_uid"], o["category_uid"], o["activity_id"], o["type_uid"]) == (1007, 1, 4, 100704)
    assert o["activity_name"] == "Inject"
    assert o["injection_type_id"] == 99
    assert o["injection_type"] == "ptrace"
    assert o["status_id"] == 1
    assert o["message"] == f"PTRACE_ATTACH into mem_helper[{child}]"
    um = o["unmapped"]
    assert um["request_name"] == "PTRACE_ATTACH"
    assert um["ret"] == 0
    assert um["addr"] == 0
    assert um["target_pid"] == child
    assert um["target_comm"] == "mem_helper"
    # the target's identity is the child the fork event announced
    fork = agent.wait_for(lambda x: match(pid, "fork")(x) and x["unmapped"]["fork"]["child_pid"] == child,
                          since=mark)
    assert um["target_start_ns"] == fork["unmapped"]["fork"]["child_start_ns"] > 0
    assert o["process"]["pid"] == child
    assert o["process"]["name"] == "mem_helper"
    assert o["process"]["created_time"] == fork["process"]["created_time"]
    # PTRACE_DETACH is a read/continue request: not reported
    agent.wait_for(match(pid, "exit"), since=mark)
    reqs = [x["unmapped"]["request"] for x in agent.find_all(match(pid, "ptrace"), since=mark)]
    assert reqs == [16]


def test_process_vm_writev_into_child(agent: Any, mem_helper: str) -> None:
    mark = agent.mark()
    out = run_helper(mem_helper, "vm_writev")
    pid, child = out["pid"], out["child"]
    assert out["ret"] == 21
    o = agent.wait_for(match(pid, "ptrace", op="process_vm_writev"), since=mark)
    check_actor(o, pid)
    assert (o["class_uid"], o["activity_id"]) == (1007, 4)
    assert o["injection_type"] == "process_vm_writev"
    assert o["status_id"] == 1
    assert o["process"]["pid"] == child
    assert o["process"]["name"] == "mem_helper"
    um = o["unmapped"]
    assert um["ret"] == 21
    assert um["target_pid"] == child
    assert um["target_comm"] == "mem_helper"
    assert um["target_start_ns"] > 0
    assert um["addr"] == out["remote"]
    assert "request" not in um


# ---------------------------------------------------------------- memfd + fexecve


def test_memfd_create_and_fexecve(agent: Any, mem_helper: str) -> None:
    mark = agent.mark()
    out = run_helper(mem_helper, "memfd_exec")
    pid, fd = out["pid"], out["fd"]
    o = agent.wait_for(match(pid, "memfd"), since=mark)
    check_actor(o, pid)
    assert (o["class_uid"], o["category_uid"], o["activity_id"], o["type_uid"]) == (1001, 1, 1, 100101)
    assert o["status_id"] == 1
    assert o["file"] == {"name": "memfd:se_test_memfd", "type_id": 1}
    um = o["unmapped"]
    assert um["name"] == "se_test_memfd"
    assert um["mfd_flags"] == 1
    assert um["mfd_flag_names"] == ["MFD_CLOEXEC"]
    assert um["fd"] == um["ret"] == fd

    # the process sensor marks the image as a memfd (same pid: exec keeps it)
    ex = agent.wait_for(lambda x: match(pid, "exec")(x) and "exe_memfd" in x["unmapped"]["flags"], since=mark)
    assert ex["unmapped"]["filename"] == f"/dev/fd/{fd}"
    assert ex["unmapped"]["argv"] == ["se-memfd-true"]
    assert ex["unmapped"]["proc"]["comm"] == "memfd:se_test_m"   # comm from the memfd's name, cut at 15


# ---------------------------------------------------------------- kernel modules


@pytest.fixture(scope="module")
def fallback_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An agent that watches module syscalls through raw_tp even where they cannot succeed."""
    from conftest import start_agent, stop_agent

    handle = start_agent(tmp_path_factory.mktemp("fallback"),
                         "sensors:\n  file: false\n  net: false\nmem:\n  syscall_fallback: \"on\"\n")
    try:
        yield handle
    finally:
        assert stop_agent(handle) == 0


def test_module_load_attempts(fallback_agent: Any, mem_helper: str) -> None:
    agent = fallback_agent
    fallback = not (TRACEFS / "sys_enter_finit_module").exists()
    mark = agent.mark()
    out = run_helper(mem_helper, "module")
    pid = out["pid"]
    assert out["finit_ret"] == -1 and out["delete_ret"] == -1
    if fallback:
        # no CONFIG_MODULES: the syscalls exist only as ENOSYS stubs
        assert out["finit_errno"] == out["delete_errno"] == errno.ENOSYS

    f = agent.wait_for(match(pid, "module", op="finit_module"), since=mark)
    check_actor(f, pid)
    assert (f["class_uid"], f["category_uid"], f["activity_id"], f["type_uid"]) == (1002, 1, 1, 100201)
    assert f["activity_name"] == "Load"
    assert f["status_id"] == 2
    assert f["status_code"] == errno.errorcode[out["finit_errno"]]
    assert f["driver"]["file"]["path"] == "/dev/null"
    assert f["driver"]["file"]["name"] == "null"
    fu = f["unmapped"]
    assert fu["ret"] == -out["finit_errno"]
    assert fu["fd"] == out["fd"]
    assert fu["name"] == "/dev/null"
    assert fu["flags"] == 0
    assert fu["syscall_nr"] == 313
    assert fu["via_raw_tp"] is fallback

    d = agent.wait_for(match(pid, "module", op="delete_module"), since=mark)
    check_actor(d, pid)
    assert (d["class_uid"], d["activity_id"], d["activity_name"]) == (1002, 2, "Unload")
    assert d["status_id"] == 2
    assert d["status_code"] == errno.errorcode[out["delete_errno"]]
    assert d["driver"] == {"file": {"name": "se_test_mod", "type_id": 0}}
    du = d["unmapped"]
    assert du["ret"] == -out["delete_errno"]
    assert du["name"] == "se_test_mod"
    assert du["flags"] == 0o4000
    assert du["flag_names"] == ["O_NONBLOCK"]
    assert du["syscall_nr"] == 176
    assert du["via_raw_tp"] is fallback
    # one event per attempt, nothing else from the fallback for this process
    agent.wait_for(match(pid, "exit"), since=mark)
    assert len(agent.find_all(match(pid, "module"), since=mark)) == 2


def test_fallback_programs_are_attached_only_where_needed(agent: Any, fallback_agent: Any) -> None:
    missing = not (TRACEFS / "sys_enter_finit_module").exists()
    modules = Path("/proc/modules").exists()
    names = ["delete_module", "finit_module", "init_module"]
    # the default ("auto"): only where the syscalls are missing and could succeed
    st = agent.status()
    progs = {p["name"]: p for p in st["programs"]}
    auto_on = missing and modules
    assert st["fallbacks"] == (names if auto_on else [])
    for name in ("mem_syscall_fallback", "mem_syscall_fallback_exit"):
        assert progs[name]["state"] == ("attached" if auto_on else "skipped")
    if missing and not modules:
        assert st["unwatched"] == names
        assert any("not watched: delete_module, finit_module, init_module" in n and "no module support" in n
                   for n in st["notes"])
    # "on": attached wherever a tracepoint is missing
    st2 = fallback_agent.status()
    assert st2["fallbacks"] == (names if missing else [])
    progs2 = {p["name"]: p for p in st2["programs"]}
    assert progs2["mem_syscall_fallback"]["state"] == ("attached" if missing else "skipped")


# ---------------------------------------------------------------- bpf()


def test_bpf_prog_load_by_another_process(agent: Any, mem_helper: str) -> None:
    mark = agent.mark()
    out = run_helper(mem_helper, "bpf_load")
    pid = out["pid"]
    assert out["fd"] >= 0
    o = agent.wait_for(match(pid, "bpf", cmd=5), since=mark)
    check_actor(o, pid)
    assert (o["class_uid"], o["category_uid"], o["activity_id"], o["type_uid"]) == (1002, 1, 1, 100201)
    assert o["status_id"] == 1
    assert o["driver"] == {"file": {"name": "se_test_prog", "type_id": 0}}
    assert o["message"] == "BPF_PROG_LOAD BPF_PROG_TYPE_SOCKET_FILTER 'se_test_prog'"
    um = o["unmapped"]
    assert um["cmd_name"] == "BPF_PROG_LOAD"
    assert um["prog_type"] == 1
    assert um["prog_type_name"] == "BPF_PROG_TYPE_SOCKET_FILTER"
    assert um["insn_cnt"] == 2
    assert um["attach_type"] == 0
    assert um["prog_name"] == "se_test_prog"
    assert um["ret"] == um["prog_fd"] == out["fd"]
    # bpf_all_cmds is off by default: only the load, not the close or other commands
    agent.wait_for(match(pid, "exit"), since=mark)
    assert [x["unmapped"]["cmd"] for x in agent.find_all(match(pid, "bpf"), since=mark)] == [5]


# ---------------------------------------------------------------- io_uring


def test_io_uring_setup_submit_and_rate_limit(agent: Any, uring_helper: str) -> None:
    mark = agent.mark()
    out = run_helper(uring_helper, "50", "1100")
    pid = out["pid"]
    s = agent.wait_for(match(pid, "io_uring", op="setup"), since=mark)
    check_actor(s, pid, comm="io_uring_helper")
    assert (s["class_uid"], s["category_uid"], s["activity_id"], s["type_uid"]) == (1003, 1, 1, 100301)
    assert s["status_id"] == 1
    assert s["kernel"] == {"name": "io_uring", "type": "io_uring ring", "type_id": 99,
                           "system_call": "io_uring_setup"}
    su = s["unmapped"]
    assert su["ret"] == su["ring_fd"] == out["ring_fd"]
    assert su["entries"] == out["entries"] == 8
    assert su["setup_flags"] == out["flags"] == 0
    ring = su["ring_ctx"]
    assert int(ring, 16) > 0

    agent.wait_for(match(pid, "exit"), since=mark)
    subs = agent.find_all(match(pid, "io_uring", op="submit"), since=mark)
    # 52 NOPs: the first is reported, the 50 of the burst within the window are
    # suppressed, the one after the pause reports them
    assert len(subs) == 2, subs
    first, last = subs
    for o in subs:
        check_actor(o, pid, comm="io_uring_helper")
        assert (o["class_uid"], o["activity_id"], o["activity_name"]) == (1003, 4, "Invoke")
        assert o["kernel"] == {"name": "IORING_OP_NOP", "type_id": 2, "system_call": "IORING_OP_NOP"}
        assert o["unmapped"]["opcode"] == 0
        assert o["unmapped"]["ring_ctx"] == ring
        assert o["unmapped"]["sq_thread"] is False
        assert o["unmapped"]["req_flags"] == 0
    assert first["unmapped"]["user_data"] == 0x5E5E0001
    assert first["unmapped"]["suppressed"] == 0
    assert first["count"] == 1
    assert last["unmapped"]["user_data"] == 0x5E5E0002
    assert last["unmapped"]["suppressed"] == 50
    assert last["count"] == 51
    assert agent.status()["kernel"]["mem"]["deduped"] >= 50


def test_io_uring_sqpoll_submissions_come_from_the_kernel_thread(agent: Any, uring_helper: str) -> None:
    mark = agent.mark()
    out = run_helper(uring_helper, "0", "0", "sqpoll")
    pid = out["pid"]
    s = agent.wait_for(match(pid, "io_uring", op="setup"), since=mark)
    assert s["unmapped"]["setup_flags"] == out["flags"] == 2
    assert s["unmapped"]["setup_flag_names"] == ["IORING_SETUP_SQPOLL"]
    o = agent.wait_for(match(pid, "io_uring", op="submit"), since=mark)
    um = o["unmapped"]
    assert um["sq_thread"] is True
    assert um["user_data"] == 0x5E5E0001
    assert um["ring_ctx"] == s["unmapped"]["ring_ctx"]
    # the SQPOLL thread belongs to the ring owner's thread group
    assert um["proc"]["pid"] == pid
    assert um["proc"]["tid"] != pid
    assert um["proc"]["comm"] == f"iou-sqp-{pid}"
    assert o["message"] == "io_uring submit IORING_OP_NOP (SQPOLL thread)"


# ---------------------------------------------------------------- config toggles (own agent)


def test_anon_exec_off_and_all_bpf_commands_on(tmp_path: Path, mem_helper: str) -> None:
    """mem.anon_exec: false silences R+X anonymous memory in the kernel (W+X stays);
    mem.bpf_all_commands: true reports every bpf() command, not only loads."""
    from conftest import start_agent, stop_agent

    handle = start_agent(tmp_path, "sensors:\n  file: false\n  net: false\n"
                                   "mem:\n  anon_exec: false\n  bpf_all_commands: true\n")
    try:
        rx = run_helper(mem_helper, "mmap_anon_rx")
        rwx = run_helper(mem_helper, "mmap_rwx")
        bpf = run_helper(mem_helper, "bpf_load")
        o = handle.wait_for(match(rwx["pid"], "mem", op="mmap", ret=rwx["addr"]))
        assert o["unmapped"]["reason"] == "write_exec"
        handle.wait_for(match(rx["pid"], "exit"))
        assert handle.find_all(match(rx["pid"], "mem")) == []

        handle.wait_for(match(bpf["pid"], "exit"))
        cmds = handle.find_all(match(bpf["pid"], "bpf"))
        assert [c["unmapped"]["cmd"] for c in cmds] == [5, 15]
        info = cmds[1]
        assert (info["class_uid"], info["activity_id"], info["activity_name"]) == (1003, 4, "Invoke")
        assert info["kernel"] == {"name": "BPF_OBJ_GET_INFO_BY_FD", "type_id": 2, "system_call": "bpf"}
        assert info["status_id"] == 1
        assert info["unmapped"]["ret"] == bpf["info_ret"] == 0
        assert info["unmapped"]["cmd_name"] == "BPF_OBJ_GET_INFO_BY_FD"
        assert "prog_type" not in info["unmapped"]
        assert cmds[0]["unmapped"]["prog_name"] == "se_test_prog"
    finally:
        assert stop_agent(handle) == 0
