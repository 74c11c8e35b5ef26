"""OCSF mappings of the mem sensor (memory.py and kernel.py), from hand-built Events.

Memory Activity (mmap / mprotect), Process Activity Inject / Open (ptrace,
process_vm_*), File System Activity Create (memfd), Kernel Extension Activity
(modules, BPF program loads) and Kernel Activity (other bpf commands, io_uring).
"""

from __future__ import annotations

from typing import Any

import pytest

from sentinel_edge.model import Event, ProcessInfo
from sentinel_edge.output.ocsf import to_ocsf
from sentinel_edge.output.ocsf.common import HostInfo
from sentinel_edge.output.ocsf.kernel import bpf_cmd_name, bpf_prog_type_name, ioring_op_name
from sentinel_edge.output.ocsf.memory import flag_names, ptrace_request_name
from sentinel_edge.output.ocsf.schema import assert_valid

BOOT = 1_700_000_000_000_000_000
HOST = HostInfo(hostname="edge", boot_id="boot-1", boot_time_ns=BOOT, machine_id="m" * 32,
                kernel_release="6.18.0")
MS = 1_000_000


def proc(**kw: Any) -> dict[str, Any]:
    p = {
        "pid": 300, "tid": 301, "ppid": 200, "ns_pid": 300, "uid": 0, "euid": 0, "gid": 0, "egid": 0,
        "loginuid": 1000, "sessionid": 4, "mnt_ns": 11, "pid_ns": 12, "net_ns": 13, "cgroup_id": 99,
        "start_ns": 3_000 * MS, "parent_start_ns": 2_000 * MS, "comm": b"loader",
    }
    p.update(kw)
    return p


def ev(kind: str, type_id: int, data: dict[str, Any], **pkw: Any) -> Event:
    return Event(kind, type_id, 5_000 * MS, 1, proc(**pkw), data)


def mapped(event: Event) -> dict[str, Any]:
    obj = to_ocsf(event, HOST)
    assert_valid(obj)
    assert obj["time"] == (BOOT + 5_000 * MS) // MS
    assert obj["unmapped"]["event"] == event.kind
    assert obj["unmapped"]["proc"]["pid"] == 300
    assert obj["unmapped"]["proc"]["tid"] == 301
    assert obj["actor"]["process"]["pid"] == 300
    return obj


# ---------------------------------------------------------------- mem


def mem_data(**kw: Any) -> dict[str, Any]:
    d = {"op": 1, "prot": 7, "mmap_flags": 0x22, "fd": -1, "addr": 0, "len": 8192,
         "ret": 0x7F0000001000, "vma_flags": 0, "anon": 1}
    d.update(kw)
    return d


def test_mmap_write_exec_is_allocate_page() -> None:
    obj = mapped(ev("mem", 40, mem_data()))
    assert (obj["class_uid"], obj["category_uid"], obj["activity_id"]) == (1004, 1, 1)
    assert obj["type_uid"] == 100401
    assert obj["activity_name"] == "Allocate Page"
    assert obj["status_id"] == 1
    assert obj["base_address"] == "0x7f0000001000"
    assert obj["size"] == 8192
    assert obj["requested_permissions"] == 7
    assert obj["process"]["pid"] == 300
    assert obj["message"] == "mmap PROT_READ|PROT_WRITE|PROT_EXEC anonymous memory at 0x7f0000001000 (8192 bytes)"
    u = obj["unmapped"]
    assert u["op"] == "mmap"
    assert u["reason"] == "write_exec"
    assert u["prot"] == 7
    assert u["prot_names"] == ["PROT_READ", "PROT_WRITE", "PROT_EXEC"]
    assert u["mmap_flags"] == 0x22
    assert u["mmap_flag_names"] == ["MAP_PRIVATE", "MAP_ANONYMOUS"]
    assert u["fd"] == -1
    assert u["addr"] == 0
    assert u["len"] == 8192
    assert u["ret"] == 0x7F0000001000
    assert u["anon"] is True
    assert "vma_flags" not in u


def test_mmap_anon_exec_failure() -> None:
    obj = mapped(ev("mem", 40, mem_data(prot=5, ret=-12, addr=0x1000)))
    assert obj["activity_id"] == 1
    assert obj["status_id"] == 2
    assert obj["status_code"] == "ENOMEM"
    assert obj["status_detail"] == "Cannot allocate memory"
    assert obj["base_address"] == "0x1000"  # failed: the requested address
    assert obj["unmapped"]["reason"] == "anon_exec"
    assert obj["message"].endswith("memory at (failed) (8192 bytes)")


def test_mprotect_is_modify_page_with_vma() -> None:
    obj = mapped(ev("mem", 40, mem_data(op=2, prot=7, mmap_flags=0, addr=0x7F00AA000, len=4096,
                                        ret=0, vma_flags=0x73, anon=1)))
    assert (obj["class_uid"], obj["activity_id"], obj["activity_name"]) == (1004, 2, "Modify Page")
    assert obj["base_address"] == "0x7f00aa000"
    assert obj["size"] == 4096
    assert obj["requested_permissions"] == 7
    assert obj["status_id"] == 1
    u = obj["unmapped"]
    assert u["op"] == "mprotect"
    assert u["vma_flags"] == 0x73
    assert u["vma_flag_names"] == ["VM_READ", "VM_WRITE", "VM_MAYREAD", "VM_MAYWRITE", "VM_MAYEXEC"]
    assert "mmap_flags" not in u and "fd" not in u


def test_mem_unknown_op_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown op 9"):
        to_ocsf(ev("mem", 40, mem_data(op=9)), HOST)


# ---------------------------------------------------------------- ptrace / process_vm_*


def ptrace_data(**kw: Any) -> dict[str, Any]:
    d = {"op": 1, "ret32": 0, "ret": 0, "request": 16, "addr": 0, "target_pid": 4242,
         "target_start_ns": 4_000 * MS, "target_comm": b"victim"}
    d.update(kw)
    return d


def test_ptrace_attach_is_inject_into_target() -> None:
    obj = mapped(ev("ptrace", 41, ptrace_data()))
    assert (obj["class_uid"], obj["activity_id"], obj["activity_name"]) == (1007, 4, "Inject")
    assert obj["injection_type_id"] == 99
    assert obj["injection_type"] == "ptrace"
    assert obj["process"] == {"pid": 4242, "name": "victim", "created_time": (BOOT + 4_000 * MS) // MS}
    assert obj["message"] == "PTRACE_ATTACH into victim[4242]"
    assert obj["status_id"] == 1
    u = obj["unmapped"]
    assert u["op"] == "ptrace"
    assert u["request"] == 16
    assert u["request_name"] == "PTRACE_ATTACH"
    assert u["target_pid"] == 4242
    assert u["target_comm"] == "victim"
    assert u["target_start_ns"] == 4_000 * MS
    assert u["addr"] == 0
    assert u["ret"] == 0


def test_ptrace_traceme_and_unknown_target() -> None:
    obj = mapped(ev("ptrace", 41, ptrace_data(request=0, target_pid=200, target_comm=b"gdb",
                                              target_start_ns=0, ret=-1, ret32=-1)))
    assert (obj["activity_id"], obj["activity_name"]) == (99, "Allow Trace")
    assert obj["process"] == {"pid": 200, "name": "gdb"}
    assert obj["status_id"] == 2
    assert obj["status_code"] == "EPERM"
    assert "injection_type_id" not in obj


def test_process_vm_writev_is_inject_and_readv_is_open() -> None:
    w = mapped(ev("ptrace", 41, ptrace_data(op=3, request=0, addr=0x5555000, ret=21, ret32=21)))
    assert (w["activity_id"], w["injection_type"]) == (4, "process_vm_writev")
    assert w["message"] == "process_vm_writev into victim[4242]"
    assert w["unmapped"]["addr"] == 0x5555000
    assert w["unmapped"]["ret"] == 21
    assert "request" not in w["unmapped"]
    r = mapped(ev("ptrace", 41, ptrace_data(op=2, request=0, ret=-3, ret32=-3, target_comm=b"")))
    assert (r["activity_id"], r["activity_name"]) == (3, "Open")
    assert r["status_code"] == "ESRCH"
    assert r["process"] == {"pid": 4242, "created_time": (BOOT + 4_000 * MS) // MS}
    assert "injection_type_id" not in r


# ---------------------------------------------------------------- memfd


def test_memfd_is_file_create() -> None:
    obj = mapped(ev("memfd", 42, {"mfd_flags": 3, "ret": 5, "name": b"payload\xff"}))
    assert (obj["class_uid"], obj["activity_id"], obj["activity_name"]) == (1001, 1, "Create")
    assert obj["file"] == {"name": "memfd:payload\\xff", "type_id": 1}
    assert obj["status_id"] == 1
    assert obj["message"] == "memfd_create 'payload\\\\xff' -> fd 5"
    u = obj["unmapped"]
    assert u["name"] == "payload\\xff"
    assert u["mfd_flags"] == 3
    assert u["mfd_flag_names"] == ["MFD_CLOEXEC", "MFD_ALLOW_SEALING"]
    assert u["fd"] == 5
    assert u["ret"] == 5


def test_memfd_failure() -> None:
    obj = mapped(ev("memfd", 42, {"mfd_flags": 0x40, "ret": -22, "name": b"x"}))
    assert obj["status_id"] == 2
    assert obj["status_code"] == "EINVAL"
    assert obj["unmapped"]["fd"] is None
    assert obj["unmapped"]["mfd_flag_names"] == ["0x40"]


# ---------------------------------------------------------------- modules


def module_data(**kw: Any) -> dict[str, Any]:
    d = {"op": 2, "ret": -38, "fd": 3, "mod_flags": 0, "len": 0, "syscall_nr": 313, "via_raw_tp": 1,
         "name": b"/lib/modules/evil.ko"}
    d.update(kw)
    return d


def test_finit_module_via_fallback_is_failed_load() -> None:
    obj = mapped(ev("module", 43, module_data()))
    assert (obj["class_uid"], obj["activity_id"], obj["activity_name"]) == (1002, 1, "Load")
    assert obj["driver"] == {"file": {"name": "evil.ko", "path": "/lib/modules/evil.ko", "type_id": 1,
                                      "parent_folder": "/lib/modules"}}
    assert obj["status_id"] == 2
    assert obj["status_code"] == "ENOSYS"
    u = obj["unmapped"]
    assert u["op"] == "finit_module"
    assert u["ret"] == -38
    assert u["syscall_nr"] == 313
    assert u["via_raw_tp"] is True
    assert u["fd"] == 3
    assert u["name"] == "/lib/modules/evil.ko"
    assert u["flags"] == 0 and u["flag_names"] == []
    assert "len" not in u


def test_delete_and_init_module() -> None:
    d = mapped(ev("module", 43, module_data(op=3, fd=-1, mod_flags=0o4000, syscall_nr=176, via_raw_tp=0,
                                            ret=0, name=b"nf_tables")))
    assert (d["activity_id"], d["activity_name"]) == (2, "Unload")
    assert d["driver"] == {"file": {"name": "nf_tables", "type_id": 0}}
    assert d["status_id"] == 1
    assert d["unmapped"]["flag_names"] == ["O_NONBLOCK"]
    assert d["unmapped"]["via_raw_tp"] is False
    assert "fd" not in d["unmapped"]
    i = mapped(ev("module", 43, module_data(op=1, fd=-1, len=123456, syscall_nr=175, name=b"")))
    assert i["activity_id"] == 1
    assert i["driver"] == {"file": {"name": "[init_module image]", "type_id": 0}}
    assert i["unmapped"]["len"] == 123456
    assert i["message"] == "init_module [init_module image]"


# ---------------------------------------------------------------- bpf


def test_bpf_prog_load_is_kernel_extension_load() -> None:
    obj = mapped(ev("bpf", 44, {"cmd": 5, "ret": 7, "prog_type": 1, "insn_cnt": 2, "attach_type": 0,
                                "prog_name": b"se_test_prog"}))
    assert (obj["class_uid"], obj["activity_id"]) == (1002, 1)
    assert obj["driver"] == {"file": {"name": "se_test_prog", "type_id": 0}}
    assert obj["message"] == "BPF_PROG_LOAD BPF_PROG_TYPE_SOCKET_FILTER 'se_test_prog'"
    u = obj["unmapped"]
    assert u["cmd"] == 5 and u["cmd_name"] == "BPF_PROG_LOAD"
    assert u["prog_type"] == 1 and u["prog_type_name"] == "BPF_PROG_TYPE_SOCKET_FILTER"
    assert u["insn_cnt"] == 2
    assert u["attach_type"] == 0
    assert u["prog_name"] == "se_test_prog"
    assert u["prog_fd"] == 7
    assert u["ret"] == 7


def test_bpf_other_command_is_kernel_activity_invoke() -> None:
    obj = mapped(ev("bpf", 44, {"cmd": 0, "ret": -1, "prog_type": 0, "insn_cnt": 0, "attach_type": 0,
                                "prog_name": b""}))
    assert (obj["class_uid"], obj["activity_id"], obj["activity_name"]) == (1003, 4, "Invoke")
    assert obj["kernel"] == {"name": "BPF_MAP_CREATE", "type_id": 2, "system_call": "bpf"}
    assert obj["status_code"] == "EPERM"
    assert "prog_type" not in obj["unmapped"]


# ---------------------------------------------------------------- io_uring


def uring_data(**kw: Any) -> dict[str, Any]:
    d = {"op": 1, "ret": 4, "entries": 8, "setup_flags": 2, "opcode": 0, "sq_thread": 0, "req_flags": 0,
         "user_data": 0, "ring_ctx": 0xFFFF888100AB0000, "suppressed": 0, "ring_fd": 4}
    d.update(kw)
    return d


def test_io_uring_setup_is_kernel_create() -> None:
    obj = mapped(ev("io_uring", 45, uring_data()))
    assert (obj["class_uid"], obj["activity_id"], obj["activity_name"]) == (1003, 1, "Create")
    assert obj["kernel"] == {"name": "io_uring", "type": "io_uring ring", "type_id": 99,
                             "system_call": "io_uring_setup"}
    assert obj["status_id"] == 1
    u = obj["unmapped"]
    assert u["op"] == "setup"
    assert u["ring_ctx"] == "0xffff888100ab0000"
    assert u["ring_fd"] == 4
    assert u["entries"] == 8
    assert u["setup_flags"] == 2
    assert u["setup_flag_names"] == ["IORING_SETUP_SQPOLL"]
    assert u["ret"] == 4


def test_io_uring_submit_carries_rate_limit_count() -> None:
    obj = mapped(ev("io_uring", 45, uring_data(op=2, ret=0, opcode=22, sq_thread=1, req_flags=0x11,
                                               user_data=0xABC, suppressed=41, ring_fd=-1)))
    assert (obj["class_uid"], obj["activity_id"]) == (1003, 4)
    assert obj["kernel"] == {"name": "IORING_OP_READ", "type_id": 2, "system_call": "IORING_OP_READ"}
    assert obj["count"] == 42
    assert obj["message"] == "io_uring submit IORING_OP_READ (SQPOLL thread), 41 more since the last report"
    assert "status_id" not in obj
    u = obj["unmapped"]
    assert u["op"] == "submit"
    assert u["opcode"] == 22 and u["opcode_name"] == "IORING_OP_READ"
    assert u["user_data"] == 0xABC
    assert u["req_flags"] == 0x11
    assert u["req_flag_names"] == ["IOSQE_FIXED_FILE", "IOSQE_ASYNC"]
    assert u["sq_thread"] is True
    assert u["suppressed"] == 41
    assert u["ring_ctx"] == "0xffff888100ab0000"


def test_io_uring_failed_setup() -> None:
    obj = mapped(ev("io_uring", 45, uring_data(ret=-1, ring_ctx=0, ring_fd=-1)))
    assert obj["status_id"] == 2 and obj["status_code"] == "EPERM"
    assert obj["unmapped"]["ring_ctx"] == "0x0"


def test_enriched_actor_and_process() -> None:
    e = ev("mem", 40, mem_data())
    e.process = ProcessInfo(pid=300, start_ns=3_000 * MS, exec_id="x-300", parent_exec_id=None, ppid=200,
                            comm="loader", exe="/usr/bin/loader")
    obj = mapped(e)
    assert obj["process"]["uid"] == "x-300"
    assert obj["process"]["path"] == "/usr/bin/loader"
    assert obj["actor"]["process"]["uid"] == "x-300"


def test_name_tables() -> None:
    assert flag_names(0x5, (((1, "A"), (4, "C")))) == ["A", "C"]
    assert flag_names(0x12, ((2, "B"),)) == ["B", "0x10"]
    assert ptrace_request_name(0x4206) == "PTRACE_SEIZE"
    assert ptrace_request_name(0x9999) == "PTRACE_0x9999"
    assert bpf_cmd_name(5) == "BPF_PROG_LOAD" and bpf_cmd_name(999) == "BPF_CMD_999"
    assert bpf_prog_type_name(26) == "BPF_PROG_TYPE_TRACING" and bpf_prog_type_name(-1) == "BPF_PROG_TYPE_-1"
    assert ioring_op_name(0) == "IORING_OP_NOP" and ioring_op_name(200) == "IORING_OP_200"
