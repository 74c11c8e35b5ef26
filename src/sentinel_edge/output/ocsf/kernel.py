"""OCSF mappings of the kernel-extension part of the mem sensor.

=====================  =================================================  ==============================
kind / op              OCSF class and activity                            object
=====================  =================================================  ==============================
module init / finit    Kernel Extension Activity (1002) 1 Load            ``driver.file``: the module
module delete          Kernel Extension Activity (1002) 2 Unload          file (finit), the module name
                                                                          (delete), "[init_module image]"
bpf BPF_PROG_LOAD      Kernel Extension Activity (1002) 1 Load            ``driver.file``: the program
                                                                          name (type Unknown)
bpf other commands     Kernel Activity (1003) 4 Invoke                    ``kernel``: System Call "bpf"
io_uring setup         Kernel Activity (1003) 1 Create                    ``kernel``: Other "io_uring"
io_uring submit        Kernel Activity (1003) 4 Invoke                    ``kernel``: System Call, the
                                                                          IORING_OP_* name
=====================  =================================================  ==============================

Why: a BPF program is code the kernel runs, loaded by a process, exactly like
a module; detections written for kernel extension loads then catch both.
An io_uring request is an asynchronous system call (the operation is done by
the kernel on the ring's behalf), so it is a Kernel Activity "Invoke" of that
system-call-like operation, and creating a ring is the Create of a kernel
object. Submissions are rate-limited in the kernel per (process, ring,
opcode): ``count`` is 1 + ``unmapped.suppressed``, the submissions this event
stands for since the previous one of the same key.

Module syscalls seen by the raw_tp/sys_enter fallback (kernels without the
module tracepoints, e.g. built without CONFIG_MODULES, where they fail with
ENOSYS) carry ``unmapped.via_raw_tp`` = true.
"""

from __future__ import annotations

from typing import Any

from sentinel_edge.model import KIND_BPF, KIND_IO_URING, KIND_MODULE, Event
from sentinel_edge.output.ocsf.common import (
    HostInfo,
    base,
    file_object,
    register,
    status_from_ret,
    text,
)
from sentinel_edge.output.ocsf.memory import flag_names

CLASS_KERNEL_EXTENSION_ACTIVITY = 1002
CLASS_KERNEL_ACTIVITY = 1003
CATEGORY_SYSTEM = 1

ACTIVITY_LOAD = 1
ACTIVITY_UNLOAD = 2
ACTIVITY_CREATE = 1
ACTIVITY_INVOKE = 4

FILE_TYPE_UNKNOWN = 0
KERNEL_TYPE_SYSTEM_CALL = 2
KERNEL_TYPE_OTHER = 99

# enum se_module_op
OP_MODULE_INIT = 1
OP_MODULE_FINIT = 2
OP_MODULE_DELETE = 3
MODULE_OP_NAMES = {OP_MODULE_INIT: "init_module", OP_MODULE_FINIT: "finit_module",
                   OP_MODULE_DELETE: "delete_module"}
MODULE_INIT_FLAGS: tuple[tuple[int, str], ...] = (
    (0x1, "MODULE_INIT_IGNORE_MODVERSIONS"), (0x2, "MODULE_INIT_IGNORE_VERMAGIC"),
    (0x4, "MODULE_INIT_COMPRESSED_FILE"),
)
MODULE_DELETE_FLAGS: tuple[tuple[int, str], ...] = ((0o4000, "O_NONBLOCK"), (0o1000, "O_TRUNC"))

BPF_PROG_LOAD = 5
BPF_CMDS = (
    "BPF_MAP_CREATE", "BPF_MAP_LOOKUP_ELEM", "BPF_MAP_UPDATE_ELEM", "BPF_MAP_DELETE_ELEM",
    "BPF_MAP_GET_NEXT_KEY", "BPF_PROG_LOAD", "BPF_OBJ_PIN", "BPF_OBJ_GET", "BPF_PROG_ATTACH",
    "BPF_PROG_DETACH", "BPF_PROG_TEST_RUN", "BPF_PROG_GET_NEXT_ID", "BPF_MAP_GET_NEXT_ID",
    "BPF_PROG_GET_FD_BY_ID", "BPF_MAP_GET_FD_BY_ID", "BPF_OBJ_GET_INFO_BY_FD", "BPF_PROG_QUERY",
    "BPF_RAW_TRACEPOINT_OPEN", "BPF_BTF_LOAD", "BPF_BTF_GET_FD_BY_ID", "BPF_TASK_FD_QUERY",
    "BPF_MAP_LOOKUP_AND_DELETE_ELEM", "BPF_MAP_FREEZE", "BPF_BTF_GET_NEXT_ID",
    "BPF_MAP_LOOKUP_BATCH", "BPF_MAP_LOOKUP_AND_DELETE_BATCH", "BPF_MAP_UPDATE_BATCH",
    "BPF_MAP_DELETE_BATCH", "BPF_LINK_CREATE", "BPF_LINK_UPDATE", "BPF_LINK_GET_FD_BY_ID",
    "BPF_LINK_GET_NEXT_ID", "BPF_ENABLE_STATS", "BPF_ITER_CREATE", "BPF_LINK_DETACH",
    "BPF_PROG_BIND_MAP", "BPF_TOKEN_CREATE",
)
BPF_PROG_TYPES = (
    "BPF_PROG_TYPE_UNSPEC", "BPF_PROG_TYPE_SOCKET_FILTER", "BPF_PROG_TYPE_KPROBE",
    "BPF_PROG_TYPE_SCHED_CLS", "BPF_PROG_TYPE_SCHED_ACT", "BPF_PROG_TYPE_TRACEPOINT",
    "BPF_PROG_TYPE_XDP", "BPF_PROG_TYPE_PERF_EVENT", "BPF_PROG_TYPE_CGROUP_SKB",
    "BPF_PROG_TYPE_CGROUP_SOCK", "BPF_PROG_TYPE_LWT_IN", "BPF_PROG_TYPE_LWT_OUT",
    "BPF_PROG_TYPE_LWT_XMIT", "BPF_PROG_TYPE_SOCK_OPS", "BPF_PROG_TYPE_SK_SKB",
    "BPF_PROG_TYPE_CGROUP_DEVICE", "BPF_PROG_TYPE_SK_MSG", "BPF_PROG_TYPE_RAW_TRACEPOINT",
    "BPF_PROG_TYPE_CGROUP_SOCK_ADDR", "BPF_PROG_TYPE_LWT_SEG6LOCAL", "BPF_PROG_TYPE_LIRC_MODE2",
    "BPF_PROG_TYPE_SK_REUSEPORT", "BPF_PROG_TYPE_FLOW_DISSECTOR", "BPF_PROG_TYPE_CGROUP_SYSCTL",
    "BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE", "BPF_PROG_TYPE_CGROUP_SOCKOPT", "BPF_PROG_TYPE_TRACING",
    "BPF_PROG_TYPE_STRUCT_OPS", "BPF_PROG_TYPE_EXT", "BPF_PROG_TYPE_LSM", "BPF_PROG_TYPE_SK_LOOKUP",
    "BPF_PROG_TYPE_SYSCALL", "BPF_PROG_TYPE_NETFILTER",
)

# enum se_io_uring_op
OP_IO_URING_SETUP = 1
OP_IO_URING_SUBMIT = 2
OP_IO_URING_REGISTER = 3
IORING_OPS = (
    "NOP", "READV", "WRITEV", "FSYNC", "READ_FIXED", "WRITE_FIXED", "POLL_ADD", "POLL_REMOVE",
    "SYNC_FILE_RANGE", "SENDMSG", "RECVMSG", "TIMEOUT", "TIMEOUT_REMOVE", "ACCEPT",
    "ASYNC_CANCEL", "LINK_TIMEOUT", "CONNECT", "FALLOCATE", "OPENAT", "CLOSE", "FILES_UPDATE",
    "STATX", "READ", "WRITE", "FADVISE", "MADVISE", "SEND", "RECV", "OPENAT2", "EPOLL_CTL",
    "SPLICE", "PROVIDE_BUFFERS", "REMOVE_BUFFERS", "TEE", "SHUTDOWN", "RENAMEAT", "UNLINKAT",
    "MKDIRAT", "SYMLINKAT", "LINKAT", "MSG_RING", "FSETXATTR", "SETXATTR", "FGETXATTR",
    "GETXATTR", "SOCKET", "URING_CMD", "SEND_ZC", "SENDMSG_ZC", "READ_MULTISHOT", "WAITID",
    "FUTEX_WAIT", "FUTEX_WAKE", "FUTEX_WAITV", "FIXED_FD_INSTALL", "FTRUNCATE", "BIND", "LISTEN",
    "RECV_ZC", "EPOLL_WAIT", "READV_FIXED", "WRITEV_FIXED", "PIPE",
)
IORING_SETUP_FLAGS: tuple[tuple[int, str], ...] = tuple(
    (1 << i, f"IORING_SETUP_{n}") for i, n in enumerate((
        "IOPOLL", "SQPOLL", "SQ_AFF", "CQSIZE", "CLAMP", "ATTACH_WQ", "R_DISABLED", "SUBMIT_ALL",
        "COOP_TASKRUN", "TASKRUN_FLAG", "SQE128", "CQE32", "SINGLE_ISSUER", "DEFER_TASKRUN",
        "NO_MMAP", "REGISTERED_FD_ONLY", "NO_SQARRAY", "HYBRID_IOPOLL",
    ))
)
IOSQE_FLAGS: tuple[tuple[int, str], ...] = tuple(
    (1 << i, f"IOSQE_{n}") for i, n in enumerate((
        "FIXED_FILE", "IO_DRAIN", "IO_LINK", "IO_HARDLINK", "ASYNC", "BUFFER_SELECT", "CQE_SKIP_SUCCESS",
    ))
)


def bpf_cmd_name(cmd: int) -> str:
    return BPF_CMDS[cmd] if 0 <= cmd < len(BPF_CMDS) else f"BPF_CMD_{cmd}"


def bpf_prog_type_name(t: int) -> str:
    return BPF_PROG_TYPES[t] if 0 <= t < len(BPF_PROG_TYPES) else f"BPF_PROG_TYPE_{t}"


def ioring_op_name(op: int) -> str:
    return f"IORING_OP_{IORING_OPS[op]}" if 0 <= op < len(IORING_OPS) else f"IORING_OP_{op}"


# ---------------------------------------------------------------- modules


@register(KIND_MODULE)
def map_module(event: Event, host: HostInfo) -> dict[str, Any]:
    """init_module / finit_module (Load), delete_module (Unload) attempts."""
    d = event.data
    op = int(d["op"])
    ret = int(d["ret"])
    name = text(d.get("name")) or ""
    flags = int(d.get("mod_flags", 0))
    op_name = MODULE_OP_NAMES.get(op)
    if op_name is None:
        raise ValueError(f"module event with unknown op {op}")
    if op == OP_MODULE_FINIT and name:
        driver_file = file_object(name)
    elif op == OP_MODULE_DELETE and name:
        driver_file = {"name": name, "type_id": FILE_TYPE_UNKNOWN}
    elif op == OP_MODULE_INIT:
        driver_file = {"name": "[init_module image]", "type_id": FILE_TYPE_UNKNOWN}
    else:
        driver_file = {"name": f"[fd {int(d.get('fd', -1))}]", "type_id": FILE_TYPE_UNKNOWN}
    status_id, detail = status_from_ret(ret)
    obj = base(event, host, class_uid=CLASS_KERNEL_EXTENSION_ACTIVITY, category_uid=CATEGORY_SYSTEM,
               activity_id=ACTIVITY_UNLOAD if op == OP_MODULE_DELETE else ACTIVITY_LOAD,
               status_id=status_id, message=f"{op_name} {driver_file['name']}")
    obj.update(detail)
    obj["driver"] = {"file": driver_file}
    unm = obj["unmapped"]
    unm["op"] = op_name
    unm["ret"] = ret
    unm["syscall_nr"] = int(d.get("syscall_nr", 0))
    unm["via_raw_tp"] = bool(d.get("via_raw_tp", 0))
    unm["name"] = name
    unm["flags"] = flags
    table = MODULE_DELETE_FLAGS if op == OP_MODULE_DELETE else MODULE_INIT_FLAGS
    unm["flag_names"] = flag_names(flags, table)
    if op == OP_MODULE_FINIT:
        unm["fd"] = int(d.get("fd", -1))
    if op == OP_MODULE_INIT:
        unm["len"] = int(d.get("len", 0))
    return obj


# ---------------------------------------------------------------- bpf()


@register(KIND_BPF)
def map_bpf(event: Event, host: HostInfo) -> dict[str, Any]:
    """bpf(): program loads as Kernel Extension Load, other commands as Kernel Activity Invoke."""
    d = event.data
    cmd = int(d["cmd"])
    ret = int(d["ret"])
    cmd_name = bpf_cmd_name(cmd)
    status_id, detail = status_from_ret(ret)
    if cmd == BPF_PROG_LOAD:
        prog_name = text(d.get("prog_name")) or ""
        prog_type = int(d.get("prog_type", 0))
        label = prog_name or "[unnamed bpf program]"
        obj = base(event, host, class_uid=CLASS_KERNEL_EXTENSION_ACTIVITY, category_uid=CATEGORY_SYSTEM,
                   activity_id=ACTIVITY_LOAD, status_id=status_id,
                   message=f"BPF_PROG_LOAD {bpf_prog_type_name(prog_type)} {label!r}")
        obj["driver"] = {"file": {"name": label, "type_id": FILE_TYPE_UNKNOWN}}
    else:
        obj = base(event, host, class_uid=CLASS_KERNEL_ACTIVITY, category_uid=CATEGORY_SYSTEM,
                   activity_id=ACTIVITY_INVOKE, status_id=status_id, message=f"bpf {cmd_name}")
        obj["kernel"] = {"name": cmd_name, "type_id": KERNEL_TYPE_SYSTEM_CALL, "system_call": "bpf"}
    obj.update(detail)
    unm = obj["unmapped"]
    unm["cmd"] = cmd
    unm["cmd_name"] = cmd_name
    unm["ret"] = ret
    if cmd == BPF_PROG_LOAD:
        unm["prog_type"] = int(d.get("prog_type", 0))
        unm["prog_type_name"] = bpf_prog_type_name(unm["prog_type"])
        unm["insn_cnt"] = int(d.get("insn_cnt", 0))
        unm["attach_type"] = int(d.get("attach_type", 0))
        unm["prog_name"] = text(d.get("prog_name")) or ""
        unm["prog_fd"] = ret if ret >= 0 else None
    return obj


# ---------------------------------------------------------------- io_uring


@register(KIND_IO_URING)
def map_io_uring(event: Event, host: HostInfo) -> dict[str, Any]:
    """io_uring ring creation (Create) and request submission (Invoke)."""
    d = event.data
    op = int(d["op"])
    ret = int(d.get("ret", 0))
    ring_ctx = int(d.get("ring_ctx", 0))
    unm_extra: dict[str, Any] = {"ring_ctx": f"{ring_ctx:#x}"}
    if op == OP_IO_URING_SETUP:
        setup_flags = int(d.get("setup_flags", 0))
        entries = int(d.get("entries", 0))
        status_id, detail = status_from_ret(ret)
        obj = base(event, host, class_uid=CLASS_KERNEL_ACTIVITY, category_uid=CATEGORY_SYSTEM,
                   activity_id=ACTIVITY_CREATE, status_id=status_id,
                   message=f"io_uring_setup {entries} entries" + (f" -> fd {ret}" if ret >= 0 else ""))
        obj.update(detail)
        obj["kernel"] = {"name": "io_uring", "type": "io_uring ring", "type_id": KERNEL_TYPE_OTHER,
                         "system_call": "io_uring_setup"}
        unm_extra.update({
            "op": "setup",
            "ret": ret,
            "ring_fd": int(d.get("ring_fd", -1)),
            "entries": entries,
            "setup_flags": setup_flags,
            "setup_flag_names": flag_names(setup_flags, IORING_SETUP_FLAGS),
        })
    elif op == OP_IO_URING_SUBMIT:
        opcode = int(d.get("opcode", 0))
        name = ioring_op_name(opcode)
        suppressed = int(d.get("suppressed", 0))
        sq_thread = bool(d.get("sq_thread", 0))
        req_flags = int(d.get("req_flags", 0))
        obj = base(event, host, class_uid=CLASS_KERNEL_ACTIVITY, category_uid=CATEGORY_SYSTEM,
                   activity_id=ACTIVITY_INVOKE,
                   message=f"io_uring submit {name}" + (" (SQPOLL thread)" if sq_thread else "")
                   + (f", {suppressed} more since the last report" if suppressed else ""))
        obj["kernel"] = {"name": name, "type_id": KERNEL_TYPE_SYSTEM_CALL, "system_call": name}
        obj["count"] = 1 + suppressed
        unm_extra.update({
            "op": "submit",
            "opcode": opcode,
            "opcode_name": name,
            "user_data": int(d.get("user_data", 0)),
            "req_flags": req_flags,
            "req_flag_names": flag_names(req_flags & 0xFF, IOSQE_FLAGS),
            "sq_thread": sq_thread,
            "suppressed": suppressed,
        })
    elif op == OP_IO_URING_REGISTER:
        # not produced by the sensor today (the enum reserves it): a register call
        status_id, detail = status_from_ret(ret)
        obj = base(event, host, class_uid=CLASS_KERNEL_ACTIVITY, category_uid=CATEGORY_SYSTEM,
                   activity_id=ACTIVITY_INVOKE, status_id=status_id, message="io_uring_register")
        obj.update(detail)
        obj["kernel"] = {"name": "io_uring_register", "type_id": KERNEL_TYPE_SYSTEM_CALL,
                         "system_call": "io_uring_register"}
        unm_extra.update({"op": "register", "ret": ret})
    else:
        raise ValueError(f"io_uring event with unknown op {op}")
    obj["unmapped"].update(unm_extra)
    return obj
