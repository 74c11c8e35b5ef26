"""A real BPF ring-buffer producer (benchmarks/bpf/ring_producer.bpf.c) driven from Python.

Builds the object with ``clang -target bpf`` (into a temporary directory),
loads it with libbpf and runs its BPF_PROG_TYPE_SYSCALL program with
BPF_PROG_TEST_RUN: every run emits `count` records into the program's ring
buffer with bpf_loop, or echoes one record given by the caller. Used by
benchmarks/ring_rate.py and tests/wire/test_batch.py.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from sentinel_edge.errors import LoaderError
from sentinel_edge.loader import libbpf
from sentinel_edge.loader.btf import Btf
from sentinel_edge.loader.ringbuf import RingReader

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "benchmarks/bpf/ring_producer.bpf.c"

SHAPE_FILE, SHAPE_SMALL, SHAPE_ECHO = 1, 2, 3
ECHO_MAX = 4096


class BenchCtx(ctypes.Structure):
    _fields_ = [
        ("shape", ctypes.c_uint32),
        ("count", ctypes.c_uint32),
        ("seq", ctypes.c_uint64),
        ("ok", ctypes.c_uint32),
        ("failed", ctypes.c_uint32),
        ("len", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("data", ctypes.c_uint8 * ECHO_MAX),
    ]


class TestRunOpts(ctypes.Structure):
    """struct bpf_test_run_opts (libbpf bpf.h)."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


def build(out_dir: str) -> str:
    """Compile the producer; returns the object's path."""
    clang = shutil.which("clang")
    if clang is None:
        raise LoaderError("clang is needed to build benchmarks/bpf/ring_producer.bpf.c")
    out = os.path.join(out_dir, "ring_producer.bpf.o")
    arch = {"x86_64": "x86", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    cmd = [clang, "-g", "-O2", "-Wall", "-Werror", "-target", "bpf", f"-D__TARGET_ARCH_{arch}",
           f"-I{ROOT / 'bpf'}", f"-I{ROOT / 'bpf/include'}", "-mcpu=v3", "-c", str(SOURCE), "-o", out]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise LoaderError(f"building {SOURCE} failed:\n{res.stderr}")
    return out


def _fdinfo_id(fd: int, key: str) -> int:
    """The kernel id of a BPF object from /proc/self/fdinfo (0 when absent)."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name == key:
                return int(value)
    return 0


class Producer:
    """The loaded producer object: one ring, one program."""

    def __init__(self, ring_bytes: int = 1 << 23) -> None:
        self._tmp = tempfile.mkdtemp(prefix="se-ringprod-")
        self._obj = 0
        try:
            self.path = build(self._tmp)
            self.btf = Btf.from_elf(self.path)
            lb = self._lib = libbpf.lib()
            self._run = lb.bpf_prog_test_run_opts  # prototype in loader/libbpf.py (shared: never changed here)
            self._obj = libbpf.check_ptr(lb.bpf_object__open_file(self.path.encode(), None), "opening producer")
            ring = libbpf.check_ptr(lb.bpf_object__find_map_by_name(self._obj, b"bench_ring"), "finding bench_ring")
            libbpf.check_int(lb.bpf_map__set_max_entries(ring, ring_bytes), "sizing bench_ring")
            libbpf.check_int(lb.bpf_object__load(self._obj), "loading producer")
            prog = libbpf.check_ptr(lb.bpf_object__find_program_by_name(self._obj, b"produce"), "finding produce")
            self.prog_fd = lb.bpf_program__fd(prog)
            self.prog_id = _fdinfo_id(self.prog_fd, "prog_id")
            self.ring_fd = lb.bpf_map__fd(ring)
            self.ring_bytes = int(lb.bpf_map__max_entries(ring))
        except BaseException:
            self.close()
            raise
        self._ctx = BenchCtx()
        self._opts = TestRunOpts()
        self._opts.sz = ctypes.sizeof(TestRunOpts)
        self._opts.ctx_in = ctypes.addressof(self._ctx)
        self._opts.ctx_size_in = ctypes.sizeof(BenchCtx)

    def reader(self, native: bool = True) -> RingReader:
        """A reader of the ring; native=False keeps drain_batch's header walk in Python."""
        return RingReader(self.ring_fd, self.ring_bytes, "bench_ring", native=native)

    def run(self, shape: int, count: int, seq: int = 0) -> tuple[int, int]:
        """Emit `count` records of `shape`; returns (written, failed because the ring was full)."""
        c = self._ctx
        c.shape, c.count, c.seq, c.ok, c.failed, c.len = shape, count, seq, 0, 0, 0
        ret = self._run(self.prog_fd, ctypes.byref(self._opts))
        if ret != 0:
            raise LoaderError(f"BPF_PROG_TEST_RUN failed: {libbpf.errno_text(ctypes.get_errno() or ret)}")
        return int(c.ok), int(c.failed)

    def echo(self, record: bytes) -> bool:
        """Write one record (made by the caller) into the ring from BPF; False when the ring is full."""
        if not 0 < len(record) <= ECHO_MAX:
            raise ValueError(f"echo record of {len(record)} bytes (1..{ECHO_MAX})")
        c = self._ctx
        c.shape, c.count, c.ok, c.failed, c.len = SHAPE_ECHO, 0, 0, 0, len(record)
        ctypes.memmove(c.data, record, len(record))
        ret = self._run(self.prog_fd, ctypes.byref(self._opts))
        if ret != 0 or self._opts.retval != 0:
            raise LoaderError(f"echo run failed: ret {ret}, retval {self._opts.retval}")
        return bool(c.ok)

    def close(self) -> None:
        if self._obj:
            self._lib.bpf_object__close(self._obj)
            self._obj = 0
        shutil.rmtree(self._tmp, ignore_errors=True)
