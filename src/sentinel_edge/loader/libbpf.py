"""ctypes binding of the parts of libbpf.so.1 SentinelEdge uses.

Every function returning a pointer is declared with ``restype = c_void_p``
and checked for NULL (shared/KERNEL.md pitfalls); libbpf 1.x reports errors
through errno, which :func:`check_ptr` and :func:`check_int` turn into
:class:`~sentinel_edge.errors.LoaderError` naming what failed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import threading
from collections.abc import Callable
from typing import Any

from sentinel_edge.errors import LoaderError

c_void_p = ctypes.c_void_p
c_char_p = ctypes.c_char_p
c_int = ctypes.c_int
c_uint = ctypes.c_uint
c_size_t = ctypes.c_size_t
c_bool = ctypes.c_bool

_PRINT_FN = ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)

_lib: ctypes.CDLL | None = None
_lock = threading.Lock()
_log_lines: list[str] = []
_print_cb: Any = None  # keep a reference: libbpf calls it for the process lifetime
_print_buf = ctypes.create_string_buffer(1 << 20)  # verifier logs can be long
_libc = ctypes.CDLL(None, use_errno=True)

LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = 0, 1, 2

_SIGS: dict[str, tuple[Any, list[Any]]] = {
    "libbpf_major_version": (c_uint, []),
    "libbpf_minor_version": (c_uint, []),
    "bpf_object__open_file": (c_void_p, [c_char_p, c_void_p]),
    "bpf_object__load": (c_int, [c_void_p]),
    "bpf_object__close": (None, [c_void_p]),
    "bpf_object__btf": (c_void_p, [c_void_p]),
    "bpf_object__next_program": (c_void_p, [c_void_p, c_void_p]),
    "bpf_object__next_map": (c_void_p, [c_void_p, c_void_p]),
    "bpf_object__find_map_by_name": (c_void_p, [c_void_p, c_char_p]),
    "bpf_object__find_program_by_name": (c_void_p, [c_void_p, c_char_p]),
    "bpf_program__name": (c_char_p, [c_void_p]),
    "bpf_program__section_name": (c_char_p, [c_void_p]),
    "bpf_program__set_autoload": (c_int, [c_void_p, c_bool]),
    "bpf_program__autoload": (c_bool, [c_void_p]),
    "bpf_program__attach": (c_void_p, [c_void_p]),
    "bpf_program__attach_raw_tracepoint": (c_void_p, [c_void_p, c_char_p]),
    "bpf_program__fd": (c_int, [c_void_p]),
    "bpf_link__destroy": (c_int, [c_void_p]),
    "bpf_link__pin": (c_int, [c_void_p, c_char_p]),
    "bpf_map__name": (c_char_p, [c_void_p]),
    "bpf_map__fd": (c_int, [c_void_p]),
    "bpf_map__set_max_entries": (c_int, [c_void_p, ctypes.c_uint32]),
    "bpf_map__max_entries": (ctypes.c_uint32, [c_void_p]),
    "bpf_map__initial_value": (c_void_p, [c_void_p, ctypes.POINTER(c_size_t)]),
    "bpf_map__set_initial_value": (c_int, [c_void_p, c_void_p, c_size_t]),
    "bpf_map__value_size": (ctypes.c_uint32, [c_void_p]),
    "bpf_map_lookup_elem": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_map_update_elem": (c_int, [c_int, c_void_p, c_void_p, ctypes.c_uint64]),
    "bpf_map_delete_elem": (c_int, [c_int, c_void_p]),
    "btf__parse_elf": (c_void_p, [c_char_p, c_void_p]),
    "btf__raw_data": (c_void_p, [c_void_p, ctypes.POINTER(ctypes.c_uint32)]),
    "btf__free": (None, [c_void_p]),
    "libbpf_num_possible_cpus": (c_int, []),
    "libbpf_set_print": (c_void_p, [c_void_p]),
    "libbpf_probe_bpf_prog_type": (c_int, [c_int, c_void_p]),
    "libbpf_probe_bpf_map_type": (c_int, [c_int, c_void_p]),
    "libbpf_probe_bpf_helper": (c_int, [c_int, c_int, c_void_p]),
    # pinning and the attach types of enforcement (enforce/kernel.py)
    "bpf_map__set_autocreate": (c_int, [c_void_p, c_bool]),
    "bpf_map__pin": (c_int, [c_void_p, c_char_p]),
    "bpf_map__reuse_fd": (c_int, [c_void_p, c_int]),
    "bpf_obj_get": (c_int, [c_char_p]),
    "bpf_obj_pin": (c_int, [c_int, c_char_p]),
    "bpf_link__open": (c_void_p, [c_char_p]),
    "bpf_link__unpin": (c_int, [c_void_p]),
    "bpf_link__fd": (c_int, [c_void_p]),
    "bpf_program__attach_cgroup": (c_void_p, [c_void_p, c_int]),
    "bpf_program__attach_xdp": (c_void_p, [c_void_p, c_int]),
    "bpf_map_get_next_key": (c_int, [c_int, c_void_p, c_void_p]),
    # the network inspector (netinspect/kernel.py): test runs, TC clsact, batched flow reads
    "bpf_prog_test_run_opts": (c_int, [c_int, c_void_p]),
    "bpf_tc_hook_create": (c_int, [c_void_p]),
    "bpf_tc_hook_destroy": (c_int, [c_void_p]),
    "bpf_tc_attach": (c_int, [c_void_p, c_void_p]),
    "bpf_tc_detach": (c_int, [c_void_p, c_void_p]),
    "bpf_map_lookup_batch": (c_int, [c_int, c_void_p, c_void_p, c_void_p, c_void_p,
                                     ctypes.POINTER(ctypes.c_uint32), c_void_p]),
    "bpf_obj_get_info_by_fd": (c_int, [c_int, c_void_p, ctypes.POINTER(ctypes.c_uint32)]),
}


def _on_print(level: int, fmt: bytes, args: int) -> int:
    # libbpf hands a printf format and a va_list; vsnprintf renders it
    if level > LIBBPF_INFO:
        return 0
    with _lock:
        _libc.vsnprintf(_print_buf, ctypes.c_size_t(len(_print_buf)), c_char_p(fmt), c_void_p(args))
        text = _print_buf.value.decode("utf-8", "replace").rstrip("\n")
        _log_lines.extend(text.split("\n"))
        del _log_lines[:-400]
    return 0


def lib() -> ctypes.CDLL:
    """The loaded libbpf.so.1 with every used signature declared."""
    global _lib, _print_cb
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        name = os.environ.get("SENTINEL_EDGE_LIBBPF") or "libbpf.so.1"
        try:
            handle = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            raise LoaderError(
                f"cannot load {name}: {exc}; install it with 'apt-get install libbpf1'"
            ) from exc
        for fn, (restype, argtypes) in _SIGS.items():
            try:
                f = getattr(handle, fn)
            except AttributeError:
                continue  # optional in older libbpf; callers check hasattr
            f.restype = restype
            f.argtypes = argtypes
        if platform.machine() == "x86_64":
            # the callback gets a va_list; passing it on to vsnprintf as a
            # pointer is only right where va_list is an array type (x86_64)
            _print_cb = _PRINT_FN(_on_print)
            handle.libbpf_set_print(ctypes.cast(_print_cb, c_void_p))
        _lib = handle
        return handle


def take_log() -> list[str]:
    """libbpf warnings and info lines since the last call (verifier logs among them)."""
    with _lock:
        lines = list(_log_lines)
        _log_lines.clear()
    return lines


def errno_text(err: int) -> str:
    err = abs(err)
    return f"{os.strerror(err)} (errno {err})"


def check_ptr(ptr: int | None, what: str) -> int:
    """Raise LoaderError with errno and libbpf's log when a pointer result is NULL."""
    if not ptr:
        err = ctypes.get_errno()
        log = "\n".join(take_log()[-30:])
        raise LoaderError(f"{what} failed: {errno_text(err)}" + (f"\nlibbpf: {log}" if log else ""))
    return ptr


def check_int(ret: int, what: str) -> int:
    if ret < 0:
        log = "\n".join(take_log()[-30:])
        raise LoaderError(f"{what} failed: {errno_text(ret)}" + (f"\nlibbpf: {log}" if log else ""))
    return ret


def iterate(next_fn: Callable[[int, int | None], int | None], obj: int) -> list[int]:
    out: list[int] = []
    cur: int | None = None
    while True:
        cur = next_fn(obj, cur)
        if not cur:
            return out
        out.append(cur)
