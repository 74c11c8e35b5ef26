"""OCSF mappings of the memory / injection part of the mem sensor.

==========================  ==============================================  ===========================
kind / op                   OCSF class and activity                         ``process``
==========================  ==============================================  ===========================
mem, mmap                   Memory Activity (1004) 1 Allocate Page          the caller (its memory)
mem, mprotect               Memory Activity (1004) 2 Modify Page            the caller (its memory)
ptrace ATTACH/SEIZE/POKE*/  Process Activity (1007) 4 Inject,               the target process
SET*REGS*                   injection_type "ptrace"
ptrace TRACEME              Process Activity (1007) 99 "Allow Trace"        the parent (tracer-to-be)
process_vm_writev           Process Activity (1007) 4 Inject,               the target process
                            injection_type "process_vm_writev"
process_vm_readv            Process Activity (1007) 3 Open (another         the target process
                            process's memory is read, nothing injected)
memfd                       File System Activity (1001) 1 Create            --, ``file`` is the memfd
==========================  ==============================================  ===========================

Why memfd is a File System Activity: memfd_create creates an (unlinked) file
on the kernel's internal tmpfs mount; later reads, writes, mmaps and a
fexecve of it are file operations, and the exec event names its image
``memfd:<name>`` (exec flag ``exe_memfd``). Reporting the creation as a file
Create keeps one vocabulary for the whole fileless-execution chain.

The mem sensor only reports mmap/mprotect requests that ask for write and
execute together, or (``mem.anon_exec``) execute on memory no file backs;
``unmapped.reason`` says which (``write_exec`` / ``anon_exec``).
Kernel values without an OCSF home are kept under ``unmapped``.
"""

from __future__ import annotations

from typing import Any

from sentinel_edge.model import KIND_MEM, KIND_MEMFD, KIND_PTRACE, Event
from sentinel_edge.output.ocsf.common import (
    ACTIVITY_OTHER,
    FILE_TYPE_REGULAR,
    HostInfo,
    base,
    boot_ns_to_ms,
    process_object,
    register,
    status_from_ret,
    text,
    with_lineage,
)

CLASS_FILE_SYSTEM_ACTIVITY = 1001
CLASS_MEMORY_ACTIVITY = 1004
CLASS_PROCESS_ACTIVITY = 1007
CATEGORY_SYSTEM = 1

ACTIVITY_ALLOCATE_PAGE = 1
ACTIVITY_MODIFY_PAGE = 2
ACTIVITY_CREATE = 1
ACTIVITY_OPEN = 3
ACTIVITY_INJECT = 4
INJECTION_TYPE_OTHER = 99

# enum se_mem_op
OP_MMAP = 1
OP_MPROTECT = 2
# enum se_ptrace_op
OP_PTRACE = 1
OP_PROCESS_VM_READV = 2
OP_PROCESS_VM_WRITEV = 3
PTRACE_OP_NAMES = {OP_PTRACE: "ptrace", OP_PROCESS_VM_READV: "process_vm_readv",
                   OP_PROCESS_VM_WRITEV: "process_vm_writev"}

PROT_READ = 0x1
PROT_WRITE = 0x2
PROT_EXEC = 0x4
PROT_NAMES: tuple[tuple[int, str], ...] = (
    (PROT_READ, "PROT_READ"), (PROT_WRITE, "PROT_WRITE"), (PROT_EXEC, "PROT_EXEC"),
    (0x8, "PROT_SEM"), (0x01000000, "PROT_GROWSDOWN"), (0x02000000, "PROT_GROWSUP"),
)
MAP_NAMES: tuple[tuple[int, str], ...] = (
    (0x01, "MAP_SHARED"), (0x02, "MAP_PRIVATE"), (0x10, "MAP_FIXED"), (0x20, "MAP_ANONYMOUS"),
    (0x100, "MAP_GROWSDOWN"), (0x800, "MAP_DENYWRITE"), (0x1000, "MAP_EXECUTABLE"),
    (0x2000, "MAP_LOCKED"), (0x4000, "MAP_NORESERVE"), (0x8000, "MAP_POPULATE"),
    (0x10000, "MAP_NONBLOCK"), (0x20000, "MAP_STACK"), (0x40000, "MAP_HUGETLB"),
    (0x80000, "MAP_SYNC"), (0x100000, "MAP_FIXED_NOREPLACE"),
)
VM_NAMES: tuple[tuple[int, str], ...] = (
    (0x1, "VM_READ"), (0x2, "VM_WRITE"), (0x4, "VM_EXEC"), (0x8, "VM_SHARED"),
    (0x10, "VM_MAYREAD"), (0x20, "VM_MAYWRITE"), (0x40, "VM_MAYEXEC"), (0x80, "VM_MAYSHARE"),
    (0x100, "VM_GROWSDOWN"), (0x2000, "VM_LOCKED"), (0x4000, "VM_IO"), (0x20000, "VM_DONTCOPY"),
    (0x40000, "VM_DONTEXPAND"), (0x100000, "VM_ACCOUNT"), (0x200000, "VM_NORESERVE"),
    (0x400000, "VM_HUGETLB"), (0x4000000, "VM_DONTDUMP"), (0x20000000, "VM_HUGEPAGE"),
    (0x40000000, "VM_NOHUGEPAGE"), (0x80000000, "VM_MERGEABLE"),
)
MFD_NAMES: tuple[tuple[int, str], ...] = (
    (0x1, "MFD_CLOEXEC"), (0x2, "MFD_ALLOW_SEALING"), (0x4, "MFD_HUGETLB"),
    (0x8, "MFD_NOEXEC_SEAL"), (0x10, "MFD_EXEC"),
)
PTRACE_REQUESTS: dict[int, str] = {
    0: "PTRACE_TRACEME", 1: "PTRACE_PEEKTEXT", 2: "PTRACE_PEEKDATA", 3: "PTRACE_PEEKUSER",
    4: "PTRACE_POKETEXT", 5: "PTRACE_POKEDATA", 6: "PTRACE_POKEUSER", 7: "PTRACE_CONT",
    8: "PTRACE_KILL", 9: "PTRACE_SINGLESTEP", 12: "PTRACE_GETREGS", 13: "PTRACE_SETREGS",
    14: "PTRACE_GETFPREGS", 15: "PTRACE_SETFPREGS", 16: "PTRACE_ATTACH", 17: "PTRACE_DETACH",
    18: "PTRACE_GETFPXREGS", 19: "PTRACE_SETFPXREGS", 24: "PTRACE_SYSCALL",
    0x4200: "PTRACE_SETOPTIONS", 0x4204: "PTRACE_GETREGSET", 0x4205: "PTRACE_SETREGSET",
    0x4206: "PTRACE_SEIZE", 0x4207: "PTRACE_INTERRUPT",
}
PTRACE_TRACEME = 0


def flag_names(value: int, table: tuple[tuple[int, str], ...]) -> list[str]:
    """Names of the bits set in ``value``; bits without a name as ``0x...``."""
    names = [name for bit, name in table if value & bit]
    known = 0
    for bit, _ in table:
        known |= bit
    rest = value & ~known
    names += [hex(1 << i) for i in range(64) if rest & (1 << i)]
    return names


def ptrace_request_name(req: int) -> str:
    return PTRACE_REQUESTS.get(req, f"PTRACE_{req:#x}")


def _own_process(event: Event, host: HostInfo) -> dict[str, Any]:
    return with_lineage(process_object(event.process, event, host=host), event, host=host)


# ---------------------------------------------------------------- mmap / mprotect


@register(KIND_MEM)
def map_mem(event: Event, host: HostInfo) -> dict[str, Any]:
    """W+X or anonymous-exec mmap (Allocate Page) / mprotect (Modify Page)."""
    d = event.data
    op = int(d["op"])
    prot = int(d["prot"])
    ret = int(d["ret"])
    addr = int(d["addr"])
    length = int(d["len"])
    anon = bool(d.get("anon", 0))
    reason = "write_exec" if prot & PROT_WRITE and prot & PROT_EXEC else "anon_exec"
    prot_str = "|".join(flag_names(prot, PROT_NAMES)) or "PROT_NONE"
    if op == OP_MMAP:
        activity, op_name = ACTIVITY_ALLOCATE_PAGE, "mmap"
        where = f"{ret:#x}" if ret >= 0 else "(failed)"
    elif op == OP_MPROTECT:
        activity, op_name = ACTIVITY_MODIFY_PAGE, "mprotect"
        where = f"{addr:#x}"
    else:
        raise ValueError(f"mem event with unknown op {op}")
    status_id, detail = status_from_ret(ret)
    obj = base(event, host, class_uid=CLASS_MEMORY_ACTIVITY, category_uid=CATEGORY_SYSTEM,
               activity_id=activity, status_id=status_id,
               message=f"{op_name} {prot_str} {'anonymous ' if anon else ''}memory at {where} "
               f"({length} bytes)")
    obj.update(detail)
    obj["process"] = _own_process(event, host)
    # the pages concerned: the mapping mmap returned, or the range mprotect changed
    base_addr = ret if op == OP_MMAP and ret >= 0 else addr
    obj["base_address"] = f"{base_addr:#x}"
    obj["size"] = length
    obj["requested_permissions"] = prot
    unm = obj["unmapped"]
    unm["op"] = op_name
    unm["reason"] = reason
    unm["prot"] = prot
    unm["prot_names"] = flag_names(prot, PROT_NAMES)
    unm["addr"] = addr
    unm["len"] = length
    unm["ret"] = ret
    unm["anon"] = anon
    if op == OP_MMAP:
        flags = int(d.get("mmap_flags", 0))
        unm["mmap_flags"] = flags
        unm["mmap_flag_names"] = flag_names(flags, MAP_NAMES)
        unm["fd"] = int(d.get("fd", -1))
    else:
        vma = int(d.get("vma_flags", 0))
        unm["vma_flags"] = vma
        unm["vma_flag_names"] = flag_names(vma, VM_NAMES)
    return obj


# ---------------------------------------------------------------- ptrace / process_vm_*


def _target_process(d: dict[str, Any], host: HostInfo) -> dict[str, Any]:
    proc: dict[str, Any] = {"pid": int(d["target_pid"])}
    comm = text(d.get("target_comm"))
    if comm:
        proc["name"] = comm
    start = int(d.get("target_start_ns", 0))
    if start:
        proc["created_time"] = boot_ns_to_ms(start, host)
    return proc


@register(KIND_PTRACE)
def map_ptrace(event: Event, host: HostInfo) -> dict[str, Any]:
    """Access to another process: ptrace attach/write, process_vm_readv/writev."""
    d = event.data
    op = int(d["op"])
    ret = int(d["ret"])
    request = int(d.get("request", 0))
    op_name = PTRACE_OP_NAMES.get(op)
    if op_name is None:
        raise ValueError(f"ptrace event with unknown op {op}")
    target = _target_process(d, host)
    who = f"{target.get('name', '?')}[{target['pid']}]"
    status_id, detail = status_from_ret(ret)
    if op == OP_PTRACE and request == PTRACE_TRACEME:
        obj = base(event, host, class_uid=CLASS_PROCESS_ACTIVITY, category_uid=CATEGORY_SYSTEM,
                   activity_id=ACTIVITY_OTHER, activity_name="Allow Trace", status_id=status_id,
                   message=f"PTRACE_TRACEME: parent {who} may trace this process")
    elif op == OP_PROCESS_VM_READV:
        obj = base(event, host, class_uid=CLASS_PROCESS_ACTIVITY, category_uid=CATEGORY_SYSTEM,
                   activity_id=ACTIVITY_OPEN, status_id=status_id,
                   message=f"process_vm_readv from {who}")
    else:
        what = ptrace_request_name(request) if op == OP_PTRACE else op_name
        obj = base(event, host, class_uid=CLASS_PROCESS_ACTIVITY, category_uid=CATEGORY_SYSTEM,
                   activity_id=ACTIVITY_INJECT, status_id=status_id, message=f"{what} into {who}")
        obj["injection_type_id"] = INJECTION_TYPE_OTHER
        obj["injection_type"] = op_name
    obj.update(detail)
    obj["process"] = target
    unm = obj["unmapped"]
    unm["op"] = op_name
    unm["ret"] = ret
    unm["target_pid"] = target["pid"]
    unm["target_comm"] = target.get("name", "")
    unm["target_start_ns"] = int(d.get("target_start_ns", 0))
    unm["addr"] = int(d.get("addr", 0))
    if op == OP_PTRACE:
        unm["request"] = request
        unm["request_name"] = ptrace_request_name(request)
    return obj


# ---------------------------------------------------------------- memfd


@register(KIND_MEMFD)
def map_memfd(event: Event, host: HostInfo) -> dict[str, Any]:
    """memfd_create: Create of an anonymous in-memory file (see module docstring)."""
    d = event.data
    ret = int(d["ret"])
    flags = int(d.get("mfd_flags", 0))
    name = text(d.get("name")) or ""
    status_id, detail = status_from_ret(ret)
    obj = base(event, host, class_uid=CLASS_FILE_SYSTEM_ACTIVITY, category_uid=CATEGORY_SYSTEM,
               activity_id=ACTIVITY_CREATE, status_id=status_id,
               message=f"memfd_create {name!r}" + (f" -> fd {ret}" if ret >= 0 else ""))
    obj.update(detail)
    obj["file"] = {"name": f"memfd:{name}", "type_id": FILE_TYPE_REGULAR}
    unm = obj["unmapped"]
    unm["name"] = name
    unm["mfd_flags"] = flags
    unm["mfd_flag_names"] = flag_names(flags, MFD_NAMES)
    unm["fd"] = ret if ret >= 0 else None
    unm["ret"] = ret
    return obj

