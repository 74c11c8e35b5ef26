"""Kernel side of the network inspector: load netinspect.bpf.o, attach it to interfaces, read it.

    ingress --> enforce_xdp (enforcement object: deny tries) --tail call, slot 0 of se_xdp_next--> ni_xdp
                                                                         detections --> se_ni_ring (se_netdet)
    clsact ingress --> ni_tc_ingress --+--> se_ni_flows (flow table, per CPU)
    clsact egress  --> ni_tc_egress  --+--> se_ni_ring (se_dns)

The object (bpf/netinspect/) is loaded once per agent and is not pinned: its
attachments are links and filters owned by this process, removed by
:meth:`NetInspectKernel.detach` / :meth:`NetInspectKernel.close` (an XDP link
dies with the process; TC filters are removed explicitly). XDP goes through
the enforcement object's entry program, the one XDP program an interface can
have here: ``ni_xdp`` is put in its ``se_xdp_next`` slot 0, and ``enforce_xdp``
runs on the interface through the enforcement's pinned link when there is one,
else through an unpinned link of this object. Interfaces of another network
namespace are attached from a short-lived thread that joined it (setns).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import numpy.typing as npt

from sentinel_edge.errors import EnforceError, LoaderError, NetInspectError, SentinelEdgeError
from sentinel_edge.loader import libbpf
from sentinel_edge.loader.btf import KIND_ARRAY, Btf
from sentinel_edge.loader.ringbuf import RingReader

if TYPE_CHECKING:
    from sentinel_edge.enforce.kernel import EnforceKernel

log = logging.getLogger(__name__)

__all__ = [
    "HOOKS",
    "PROGRAMS",
    "AttachedInterface",
    "FlowEntry",
    "Interface",
    "NetInspectKernel",
    "NiSettings",
    "default_object_path",
]

HOOKS = ("xdp", "tc_ingress", "tc_egress")  # index = enum se_ni_hook
PROGRAMS = {"xdp": "ni_xdp", "tc_ingress": "ni_tc_ingress", "tc_egress": "ni_tc_egress"}
DNS_MAX = 1024  # SE_NI_DNS_MAX
ENTRY_PROGRAM = "enforce_xdp"  # the enforcement object's XDP entry (netmaps.XDP_PROGRAM)
NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
BPF_TC_INGRESS, BPF_TC_EGRESS = 1, 2
NETNS_TIMEOUT_S = 30.0
XDP_BUSY_RETRY = (0.02, 0.05, 0.1, 0.2, 0.4)   # seconds between attach attempts while the interface is busy

T = TypeVar("T")


def default_object_path() -> str:
    override = os.environ.get("SENTINEL_EDGE_NETINSPECT_OBJECT")
    if override:
        return override
    return str(Path(__file__).resolve().parent.parent / "_bpf" / "netinspect.bpf.o")


# -- public value types ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NiSettings:
    """What the kernel side is set to: .rodata se_ni_config and map sizes (thresholds of 0 switch one off)."""

    window_s: float = 1.0          # detection window
    syn_src: int = 200             # SYNs (no ACK) from one source per window
    syn_all: int = 2000            # SYNs from all sources per window
    scan_ports: int = 30           # distinct (protocol, destination port) of one source per window
    icmp: int = 200                # ICMP / ICMPv6 echo requests from one source per window
    flows: bool = True             # keep the flow table (TC)
    dns: bool = True               # copy DNS messages (TC)
    dns_max: int = 1024            # bytes copied per DNS message, 1..1024
    ring_bytes: int = 1 << 22      # se_ni_ring size: a power of two, at least a page
    flow_entries: int = 65536      # se_ni_flows size

    def __post_init__(self) -> None:
        if not self.window_s > 0 or self.window_s > 3600:
            raise NetInspectError(f"window_s must be in (0, 3600] seconds, got {self.window_s!r}")
        for name in ("syn_src", "syn_all", "scan_ports", "icmp"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 <= v <= 0xFFFFFFFF:
                raise NetInspectError(f"{name} must be an integer in 0..4294967295, got {v!r}")
        if not isinstance(self.dns_max, int) or not 1 <= self.dns_max <= DNS_MAX:
            raise NetInspectError(f"dns_max must be in 1..{DNS_MAX}, got {self.dns_max!r}")
        rb = self.ring_bytes
        if not isinstance(rb, int) or rb < os.sysconf("SC_PAGE_SIZE") or rb & (rb - 1) or rb > 1 << 30:
            raise NetInspectError(f"ring_bytes must be a power of two from a page to 1 GiB, got {rb!r}")
        if not isinstance(self.flow_entries, int) or not 1 <= self.flow_entries <= 1 << 24:
            raise NetInspectError(f"flow_entries must be in 1..{1 << 24}, got {self.flow_entries!r}")


@dataclass(frozen=True, slots=True)
class Interface:
    """One interface to inspect."""

    name: str
    netns: str | None = None       # a name under /run/netns, or an absolute path of a netns file; None = ours
    xdp: bool = True               # ingress detections through the enforcement XDP entry (needs an EnforceKernel)
    tc: bool = True                # flows + DNS, ingress and egress


@dataclass(frozen=True, slots=True)
class AttachedInterface:
    name: str
    netns: str | None
    ifindex: int                   # in its network namespace
    hooks: tuple[str, ...]         # of "xdp", "tc_ingress", "tc_egress"


@dataclass(frozen=True, slots=True)
class FlowEntry:
    """One se_ni_flows entry, its per-CPU values combined."""

    key: bytes                     # the raw se_ni_flow_key (for delete_flows)
    ifindex: int
    family: int
    proto: int
    lport: int
    rport: int
    laddr: bytes                   # 16 bytes, IPv4 in the first 4
    raddr: bytes
    first_ns: int                  # earliest of the CPUs (CLOCK_BOOTTIME)
    last_ns: int                   # latest of the CPUs
    pkts_in: int
    bytes_in: int
    pkts_out: int
    bytes_out: int
    cookie: int                    # socket cookie of egress packets, 0 when none seen
    flags_in: int                  # TCP flags seen, OR of the CPUs
    flags_out: int
    initiator: int                 # enum se_ni_initiator of the CPU that saw the flow first


# -- libbpf option structs ---------------------------------------------------------------------------

class _TestRunOpts(ctypes.Structure):  # struct bpf_test_run_opts (libbpf 1.x)
    _fields_ = [("sz", ctypes.c_size_t), ("data_in", ctypes.c_void_p), ("data_out", ctypes.c_void_p),
                ("data_size_in", ctypes.c_uint32), ("data_size_out", ctypes.c_uint32),
                ("ctx_in", ctypes.c_void_p), ("ctx_out", ctypes.c_void_p),
                ("ctx_size_in", ctypes.c_uint32), ("ctx_size_out", ctypes.c_uint32),
                ("retval", ctypes.c_uint32), ("repeat", ctypes.c_int), ("duration", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32), ("batch_size", ctypes.c_uint32)]


class _TcHook(ctypes.Structure):  # struct bpf_tc_hook: 24 bytes (shared/KERNEL.md)
    _fields_ = [("sz", ctypes.c_size_t), ("ifindex", ctypes.c_int), ("attach_point", ctypes.c_int),
                ("parent", ctypes.c_uint32), ("_pad", ctypes.c_uint32)]


class _TcOpts(ctypes.Structure):  # struct bpf_tc_opts: 32 bytes
    _fields_ = [("sz", ctypes.c_size_t), ("prog_fd", ctypes.c_int), ("flags", ctypes.c_uint32),
                ("prog_id", ctypes.c_uint32), ("handle", ctypes.c_uint32), ("priority", ctypes.c_uint32),
                ("_pad", ctypes.c_uint32)]


def _hook(ifindex: int, point: int) -> _TcHook:
    return _TcHook(sz=ctypes.sizeof(_TcHook), ifindex=ifindex, attach_point=point)


# -- attachment bookkeeping ------------------------------------------------------------------------

@dataclass(slots=True)
class _Attachment:
    iface: Interface
    ifindex: int
    netns_path: str | None
    hooks: list[str] = field(default_factory=list)
    qdisc_ours: bool = False                        # the clsact qdisc was created by us
    tc: dict[str, tuple[int, int]] = field(default_factory=dict)   # hook -> (handle, priority)
    xdp_link: int = 0                               # our unpinned enforce_xdp link (0: none)
    xdp_pinned: bool = False                        # enforce_xdp runs through the enforcement's pinned link

    def public(self) -> AttachedInterface:
        return AttachedInterface(self.iface.name, self.iface.netns, self.ifindex, tuple(self.hooks))


def _netns_path(netns: str | None) -> str | None:
    if netns is None:
        return None
    if netns.startswith("/"):
        return netns
    if not netns or "/" in netns or netns in (".", ".."):
        raise NetInspectError(f"network namespace {netns!r}: not a name under {NETNS_DIR} nor an absolute path")
    return f"{NETNS_DIR}/{netns}"


def _in_netns(path: str | None, fn: Callable[[], T]) -> T:
    """Run ``fn`` in the network namespace at ``path`` (None: this one) from a thread that joined it."""
    if path is None:
        return fn()
    box: dict[str, object] = {}

    def run() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            box["error"] = NetInspectError(f"network namespace {path}: {exc.strerror or exc}")
            return
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                box["error"] = NetInspectError(f"joining network namespace {path}: {os.strerror(err)}")
                return
        finally:
            os.close(fd)
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    t = threading.Thread(target=run, name="se-netns", daemon=True)
    t.start()
    t.join(NETNS_TIMEOUT_S)
    if t.is_alive():
        raise NetInspectError(f"network namespace {path}: no answer within {NETNS_TIMEOUT_S:.0f} s")
    if "error" in box:
        exc = box["error"]
        assert isinstance(exc, BaseException)
        raise exc
    return box["value"]  # type: ignore[return-value]


def _prog_id(fd: int) -> int:
    info = (ctypes.c_uint32 * 2)()                  # struct bpf_prog_info: type, id
    n = ctypes.c_uint32(ctypes.sizeof(info))
    ret = libbpf.lib().bpf_obj_get_info_by_fd(fd, info, ctypes.byref(n))
    if ret < 0:
        raise NetInspectError(f"reading the id of program fd {fd}: {libbpf.errno_text(ret)}")
    return int(info[1])


def _numpy_dtype(btf: Btf, name: str) -> np.dtype[np.void]:
    """A numpy dtype with the layout of a struct of the object's BTF (padding members left out)."""
    names: list[str] = []
    formats: list[str | tuple[str, int]] = []
    offsets: list[int] = []
    st = btf.struct(name)
    for (m, off, size), (_, tid, _bits) in zip(btf.layout(name), st.members, strict=True):
        if m.startswith("_pad"):
            continue
        t = btf.resolve(tid)
        names.append(m)
        offsets.append(off)
        if t.kind == KIND_ARRAY:
            formats.append(("u1", size))
        elif size in (1, 2, 4, 8):
            formats.append(f"<u{size}")
        else:
            raise NetInspectError(f"struct {name} member {m}: unexpected size {size}")
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": st.size_or_type})


# -- the kernel object ------------------------------------------------------------------------------

class NetInspectKernel:
    """The loaded network inspector: its programs, maps, ring and attachments."""

    def __init__(self, settings: NiSettings, obj_path: str | None = None) -> None:
        self.settings = settings
        self.obj_path = obj_path or default_object_path()
        if not Path(self.obj_path).is_file():
            raise NetInspectError(f"network inspector object {self.obj_path} not found; build it with 'make'")
        try:
            self.btf = Btf.from_elf(self.obj_path)
        except SentinelEdgeError as exc:
            raise NetInspectError(f"reading the BTF of {self.obj_path}: {exc}") from exc
        self._lib = libbpf.lib()
        self._ncpu = int(self._lib.libbpf_num_possible_cpus())
        self._obj: int | None = None
        self._ring: RingReader | None = None
        self._attached: dict[tuple[str, str | None], _Attachment] = {}
        self._xdp_next_fd = -1                     # our dup of the enforcement's se_xdp_next
        self._lock = threading.Lock()
        counters = self.btf.enum("se_ni_counter")
        self._counter_names = {v: k.removeprefix("SE_NI_C_").lower() for k, v in counters.items()
                               if k != "SE_NI_C_MAX"}
        self._counter_max = counters["SE_NI_C_MAX"]
        self._key_size = self.btf.struct("se_ni_flow_key").size_or_type
        self._val_size = self.btf.struct("se_ni_flow").size_or_type
        self._key_dtype = _numpy_dtype(self.btf, "se_ni_flow_key")
        self._val_dtype = _numpy_dtype(self.btf, "se_ni_flow")

    # -- loading --------------------------------------------------------------------------------

    def config_bytes(self) -> bytes:
        """struct se_ni_config for these settings, packed from the BTF layout."""
        s = self.settings
        values = {
            "window_ns": int(s.window_s * 1e9),
            "syn_src_threshold": s.syn_src,
            "syn_all_threshold": s.syn_all,
            "scan_ports_threshold": s.scan_ports,
            "icmp_threshold": s.icmp,
            "flows": int(s.flows),
            "dns": int(s.dns),
            "dns_max": s.dns_max,
        }
        buf = bytearray(self.btf.struct("se_ni_config").size_or_type)
        for name, off, size in self.btf.layout("se_ni_config"):
            if name in values:
                buf[off:off + size] = values.pop(name).to_bytes(size, "little")
        if values:
            raise NetInspectError(f"se_ni_config of {self.obj_path} lacks {', '.join(values)}")
        return bytes(buf)

    def _map(self, name: str) -> int:
        m = self._lib.bpf_object__find_map_by_name(self._obj, name.encode())
        if not m:
            raise NetInspectError(f"map {name} is not in {self.obj_path}")
        return int(m)

    def _map_fd(self, name: str) -> int:
        if not self._obj:
            raise NetInspectError("the network inspector is not loaded")
        return int(self._lib.bpf_map__fd(self._map(name)))

    def _prog(self, name: str) -> int:
        if not self._obj:
            raise NetInspectError("the network inspector is not loaded")
        p = self._lib.bpf_object__find_program_by_name(self._obj, name.encode())
        if not p:
            raise NetInspectError(f"program {name} is not in {self.obj_path}")
        return int(p)

    def prog_fd(self, name: str) -> int:
        """The fd of one of the programs (ni_xdp, ni_tc_ingress, ni_tc_egress)."""
        return int(self._lib.bpf_program__fd(self._prog(name)))

    def load(self) -> None:
        """Open the object, write se_ni_cfg and the map sizes, load it."""
        if self._obj:
            return
        lib = self._lib
        try:
            self._obj = libbpf.check_ptr(lib.bpf_object__open_file(self.obj_path.encode(), None),
                                         f"opening {self.obj_path}")
        except LoaderError as exc:
            raise NetInspectError(str(exc)) from exc
        try:
            self._configure()
            libbpf.take_log()
            ret = lib.bpf_object__load(self._obj)
            if ret < 0:
                raise NetInspectError(f"loading {self.obj_path} failed: {libbpf.errno_text(ret)}\n"
                                      + "\n".join(libbpf.take_log()[-60:]))
        except BaseException:
            lib.bpf_object__close(self._obj)
            self._obj = None
            raise

    def _configure(self) -> None:
        lib = self._lib
        off = self.btf.datasec_offset(".rodata", "se_ni_cfg")
        if off is None:
            raise NetInspectError(f"se_ni_cfg is not in .rodata of {self.obj_path}")
        data = self.config_bytes()
        for m in libbpf.iterate(lib.bpf_object__next_map, self._obj):  # type: ignore[arg-type]
            if lib.bpf_map__name(m).decode().endswith(".rodata"):
                size = ctypes.c_size_t()
                ptr = lib.bpf_map__initial_value(m, ctypes.byref(size))
                if not ptr or off + len(data) > size.value:
                    raise NetInspectError(f".rodata of {self.obj_path} cannot hold se_ni_cfg")
                ctypes.memmove(ptr + off, data, len(data))
                break
        else:
            raise NetInspectError(f"{self.obj_path} has no .rodata section")
        for name, n in (("se_ni_ring", self.settings.ring_bytes), ("se_ni_flows", self.settings.flow_entries)):
            ret = lib.bpf_map__set_max_entries(self._map(name), n)
            if ret < 0:
                raise NetInspectError(f"sizing map {name} to {n}: {libbpf.errno_text(ret)}")

    # -- reading --------------------------------------------------------------------------------

    def ring(self) -> RingReader:
        """The reader of se_ni_ring (se_netdet and se_dns records)."""
        if self._ring is None:
            try:
                self._ring = RingReader(self._map_fd("se_ni_ring"), self.settings.ring_bytes, "se_ni_ring")
            except LoaderError as exc:
                raise NetInspectError(str(exc)) from exc
        return self._ring

    def counters(self) -> dict[str, dict[str, int]]:
        """{hook: {counter: value}} summed over CPUs (enum se_ni_counter names, lower case without prefix)."""
        fd = self._map_fd("se_ni_counters")
        buf = (ctypes.c_uint64 * self._ncpu)()
        out: dict[str, dict[str, int]] = {}
        for hi, hook in enumerate(HOOKS):
            row: dict[str, int] = {}
            for ci, name in sorted(self._counter_names.items()):
                key = ctypes.c_uint32(hi * self._counter_max + ci)
                ret = self._lib.bpf_map_lookup_elem(fd, ctypes.byref(key), buf)
                if ret < 0:
                    raise NetInspectError(f"reading se_ni_counters[{key.value}]: {libbpf.errno_text(ret)}")
                row[name] = sum(buf)
            out[hook] = row
        return out

    def _lookup_all(self) -> tuple[npt.NDArray[np.void], npt.NDArray[np.void]]:
        """Every (key, per-CPU values) of se_ni_flows, by batch lookups."""
        fd = self._map_fd("se_ni_flows")
        ncpu = self._ncpu
        vstride = (self._val_size + 7) // 8 * 8
        chunk = 4096
        keys_parts: list[bytes] = []
        vals_parts: list[bytes] = []
        token_in = ctypes.create_string_buffer(max(self._key_size, 8))
        token_out = ctypes.create_string_buffer(max(self._key_size, 8))
        first = True
        for _ in range(1 << 16):  # bounded: every round takes at least one bucket
            kbuf = ctypes.create_string_buffer(chunk * self._key_size)
            vbuf = ctypes.create_string_buffer(chunk * vstride * ncpu)
            count = ctypes.c_uint32(chunk)
            ret = self._lib.bpf_map_lookup_batch(fd, None if first else token_in, token_out, kbuf, vbuf,
                                                 ctypes.byref(count), None)
            if ret < 0 and -ret == errno.ENOSPC and count.value == 0:
                chunk *= 2  # one bucket holds more than a chunk
                continue
            if ret < 0 and -ret != errno.ENOENT:
                raise NetInspectError(f"reading the flow table: {libbpf.errno_text(ret)}")
            n = count.value
            keys_parts.append(kbuf.raw[:n * self._key_size])
            vals_parts.append(vbuf.raw[:n * vstride * ncpu])
            if ret < 0:  # ENOENT: that was the last bucket
                break
            ctypes.memmove(token_in, token_out, len(token_out))
            first = False
        keys = np.frombuffer(b"".join(keys_parts), dtype=self._key_dtype)
        raw = np.frombuffer(b"".join(vals_parts), dtype=np.uint8).reshape(len(keys), ncpu, vstride)
        vals = np.ascontiguousarray(raw[:, :, :self._val_size]).view(self._val_dtype).reshape(len(keys), ncpu)
        return keys, vals

    def read_flows(self) -> list[FlowEntry]:
        """Every flow of the table, per-CPU values combined (sums; min first / max last seen; OR of flags;
        the first non-zero cookie; the initiator of the CPU that saw the flow first)."""
        keys, vals = self._lookup_all()
        if len(keys) == 0:
            return []
        first = vals["first_ns"].astype(np.uint64)
        seen = first != 0
        big = np.iinfo(np.uint64).max
        masked = np.where(seen, first, big)
        earliest = masked.argmin(axis=1)
        first_ns = np.where(seen.any(axis=1), masked.min(axis=1), 0)
        rows = np.arange(len(keys))
        initiator = vals["initiator"][rows, earliest]
        cookies = vals["cookie"]
        has_cookie = cookies != 0
        cookie = np.where(has_cookie.any(axis=1), cookies[rows, has_cookie.argmax(axis=1)], 0)
        sums = {f: vals[f].sum(axis=1, dtype=np.uint64) for f in ("pkts_in", "bytes_in", "pkts_out", "bytes_out")}
        last_ns = vals["last_ns"].max(axis=1)
        flags_in = np.bitwise_or.reduce(vals["flags_in"], axis=1)
        flags_out = np.bitwise_or.reduce(vals["flags_out"], axis=1)
        key_bytes = keys.tobytes()
        ks = self._key_size
        out: list[FlowEntry] = []
        cols = [keys["ifindex"].tolist(), keys["family"].tolist(), keys["proto"].tolist(), keys["lport"].tolist(),
                keys["rport"].tolist(), first_ns.tolist(), last_ns.tolist(), sums["pkts_in"].tolist(),
                sums["bytes_in"].tolist(), sums["pkts_out"].tolist(), sums["bytes_out"].tolist(), cookie.tolist(),
                flags_in.tolist(), flags_out.tolist(), initiator.tolist()]
        laddr = keys["laddr"]
        raddr = keys["raddr"]
        for i, (ifx, fam, proto, lp, rp, f0, f1, pi, bi, po, bo, ck, fi, fo, ini) in enumerate(zip(*cols, strict=True)):
            out.append(FlowEntry(key_bytes[i * ks:(i + 1) * ks], ifx, fam, proto, lp, rp, laddr[i].tobytes(),
                                 raddr[i].tobytes(), f0, f1, pi, bi, po, bo, ck, fi, fo, ini))
        return out

    def delete_flows(self, keys: Iterable[bytes]) -> None:
        """Remove flows by raw key (those already gone are ignored)."""
        fd = self._map_fd("se_ni_flows")
        for key in keys:
            if len(key) != self._key_size:
                raise NetInspectError(f"flow key of {len(key)} bytes, se_ni_flow_key has {self._key_size}")
            k = ctypes.create_string_buffer(key, len(key))
            ret = self._lib.bpf_map_delete_elem(fd, k)
            if ret < 0 and -ret != errno.ENOENT:
                raise NetInspectError(f"deleting a flow: {libbpf.errno_text(ret)}")

    def test_run(self, prog: str, packet: bytes, repeat: int = 1, *, gso_segs: int = 0,
                 gso_size: int = 0) -> tuple[int, int]:
        """Run a program on one packet with BPF_PROG_TEST_RUN: (return value, ns per run).

        ``gso_segs`` / ``gso_size`` (TC programs only) make the packet a GSO / GRO packet of that many segments.
        """
        if prog not in PROGRAMS.values():
            raise NetInspectError(f"unknown program {prog!r} (one of {', '.join(PROGRAMS.values())})")
        if not 1 <= repeat <= 1 << 30:
            raise NetInspectError(f"repeat must be in 1..{1 << 30}, got {repeat}")
        data = ctypes.create_string_buffer(packet, len(packet))
        opts = _TestRunOpts(sz=ctypes.sizeof(_TestRunOpts), data_in=ctypes.addressof(data),
                            data_size_in=len(packet), repeat=repeat)
        ctx = None
        if gso_segs or gso_size:
            if prog == PROGRAMS["xdp"]:
                raise NetInspectError("gso_segs / gso_size apply to the TC programs only")
            layout = {name: (off, size) for name, off, size in self.btf.layout("__sk_buff")}
            ctx = ctypes.create_string_buffer(self.btf.struct("__sk_buff").size_or_type)
            for name, value in (("gso_segs", gso_segs), ("gso_size", gso_size)):
                off, size = layout[name]
                ctypes.memmove(ctypes.addressof(ctx) + off, value.to_bytes(size, "little"), size)
            opts.ctx_in = ctypes.addressof(ctx)
            opts.ctx_size_in = len(ctx)
        ret = self._lib.bpf_prog_test_run_opts(self.prog_fd(prog), ctypes.byref(opts))
        if ret < 0:
            raise NetInspectError(f"test run of {prog} on {len(packet)} bytes: {libbpf.errno_text(ret)}")
        return int(opts.retval), int(opts.duration)

    # -- attaching ------------------------------------------------------------------------------

    def attached(self) -> list[AttachedInterface]:
        with self._lock:
            return [a.public() for a in self._attached.values()]

    def attach(self, iface: Interface, enforce: EnforceKernel | None) -> AttachedInterface:
        """Attach the wanted hooks to one interface; NetInspectError names the interface when that fails
        (nothing of it stays attached then). Attaching an interface again with the same hooks is a no-op."""
        what = iface.name if iface.netns is None else f"{iface.netns}/{iface.name}"
        if not iface.xdp and not iface.tc:
            raise NetInspectError(f"interface {what}: neither XDP nor TC wanted")
        if iface.xdp and enforce is None:
            raise NetInspectError(f"interface {what}: XDP goes through the enforcement entry program, "
                                  "which is not available (no enforcement object open)")
        key = (iface.name, iface.netns)
        with self._lock:
            cur = self._attached.get(key)
            if cur is not None:
                if cur.iface == iface:
                    return cur.public()
                self._detach_locked(cur)
            try:
                path = _netns_path(iface.netns)
                try:
                    att = _in_netns(path, lambda: self._attach_here(iface, path, enforce))
                except BaseException:
                    if not any(a.xdp_link or a.xdp_pinned for a in self._attached.values()):
                        self._clear_slot0()     # set for this interface, which did not get the entry program
                    raise
            except SentinelEdgeError as exc:
                if isinstance(exc, NetInspectError) and str(exc).startswith(f"interface {what}:"):
                    raise
                raise NetInspectError(f"interface {what}: {exc}") from exc
            except OSError as exc:
                raise NetInspectError(f"interface {what}: {exc.strerror or exc}") from exc
            self._attached[key] = att
            log.info("network inspector attached to %s (ifindex %d: %s)", what, att.ifindex, ", ".join(att.hooks))
            return att.public()

    def _attach_here(self, iface: Interface, path: str | None, enforce: EnforceKernel | None) -> _Attachment:
        """attach() in the interface's network namespace (this thread is in it)."""
        try:
            ifindex = socket.if_nametoindex(iface.name)
        except OSError as exc:
            raise NetInspectError(f"no such interface ({exc.strerror or exc})") from exc
        att = _Attachment(iface, ifindex, path)
        try:
            if iface.tc:
                self._attach_tc(att)
            if iface.xdp:
                assert enforce is not None
                self._attach_xdp(att, enforce)
        except BaseException:
            self._detach_here(att)
            raise
        return att

    def _attach_tc(self, att: _Attachment) -> None:
        lib = self._lib
        hook = _hook(att.ifindex, BPF_TC_INGRESS)
        ret = lib.bpf_tc_hook_create(ctypes.byref(hook))
        if ret < 0 and -ret != errno.EEXIST:
            raise NetInspectError(f"creating its clsact qdisc: {libbpf.errno_text(ret)}")
        att.qdisc_ours = ret == 0
        for name, point in (("tc_ingress", BPF_TC_INGRESS), ("tc_egress", BPF_TC_EGRESS)):
            h = _hook(att.ifindex, point)
            opts = _TcOpts(sz=ctypes.sizeof(_TcOpts), prog_fd=self.prog_fd(PROGRAMS[name]))
            ret = lib.bpf_tc_attach(ctypes.byref(h), ctypes.byref(opts))
            if ret < 0:
                raise NetInspectError(f"attaching {PROGRAMS[name]} (TC {name.split('_')[1]}): "
                                      f"{libbpf.errno_text(ret)}")
            att.tc[name] = (int(opts.handle), int(opts.priority))
            att.hooks.append(name)

    def _attach_xdp(self, att: _Attachment, enforce: EnforceKernel) -> None:
        from sentinel_edge.enforce import netmaps

        lib = self._lib
        try:
            next_fd = enforce.fd("se_xdp_next")
        except EnforceError as exc:
            raise NetInspectError(f"the enforcement's se_xdp_next: {exc}") from exc
        if self._xdp_next_fd >= 0 and not _same_map(self._xdp_next_fd, next_fd):
            os.close(self._xdp_next_fd)    # another enforcement object (replaced): follow it
            self._xdp_next_fd = -1
        if self._xdp_next_fd < 0:
            self._xdp_next_fd = os.dup(next_fd)
        self._set_slot0()
        pinned = False
        if att.netns_path is None:
            info = netmaps.link_info(enforce.pin_root / "links" / netmaps.xdp_pin_name(att.iface.name))
            pinned = info is not None and info.ifindex == att.ifindex
        if pinned:
            att.xdp_pinned = True
        else:
            prog = enforce._find_prog(ENTRY_PROGRAM)   # the enforcement object's entry program
            if prog is None:
                try:
                    enforce._load_object(reuse_pinned=True)    # adopted: load its programs on the pinned maps
                except EnforceError as exc:
                    raise NetInspectError(f"loading the enforcement programs for XDP: {exc}") from exc
                prog = enforce._find_prog(ENTRY_PROGRAM)
                if prog is None:
                    raise NetInspectError(f"program {ENTRY_PROGRAM} is not in {enforce.obj_path}")
            link = lib.bpf_program__attach_xdp(prog, att.ifindex)
            for delay in XDP_BUSY_RETRY:
                if link or ctypes.get_errno() != errno.EBUSY:
                    break
                # a link just released (an unpinned enforcement link) leaves the interface a moment later
                time.sleep(delay)
                link = lib.bpf_program__attach_xdp(prog, att.ifindex)
            if not link:
                err = ctypes.get_errno()
                hint = " (another XDP program is attached there)" if err in (errno.EBUSY, errno.EEXIST) else ""
                raise NetInspectError(f"attaching {ENTRY_PROGRAM} (XDP): {libbpf.errno_text(err)}{hint}")
            att.xdp_link = int(link)
        att.hooks.insert(0, "xdp")

    def _set_slot0(self) -> None:
        key = ctypes.c_uint32(0)
        val = ctypes.c_uint32(self.prog_fd(PROGRAMS["xdp"]))
        ret = self._lib.bpf_map_update_elem(self._xdp_next_fd, ctypes.byref(key), ctypes.byref(val), 0)
        if ret < 0:
            raise NetInspectError(f"putting ni_xdp into slot 0 of se_xdp_next: {libbpf.errno_text(ret)}")

    def _clear_slot0(self) -> None:
        """Empty se_xdp_next[0] when it holds our ni_xdp (never another program)."""
        if self._xdp_next_fd < 0 or not self._obj:
            return
        key = ctypes.c_uint32(0)
        cur = ctypes.c_uint32()
        if self._lib.bpf_map_lookup_elem(self._xdp_next_fd, ctypes.byref(key), ctypes.byref(cur)) == 0 and \
                cur.value == _prog_id(self.prog_fd(PROGRAMS["xdp"])):
            self._lib.bpf_map_delete_elem(self._xdp_next_fd, ctypes.byref(key))

    def detach(self, iface: Interface) -> None:
        """Detach from one interface (by name and netns); a vanished interface or netns is not an error."""
        with self._lock:
            att = self._attached.get((iface.name, iface.netns))
            if att is not None:
                self._detach_locked(att)

    def _detach_locked(self, att: _Attachment) -> None:
        del self._attached[(att.iface.name, att.iface.netns)]
        try:
            _in_netns(att.netns_path, lambda: self._detach_here(att))
        except NetInspectError as exc:
            # the namespace is gone (its interfaces with it): only our links are left to drop
            log.info("network inspector: detaching %s: %s", att.iface.name, exc)
            self._drop_xdp_link(att)
        if not any(a.xdp_link or a.xdp_pinned for a in self._attached.values()):
            self._clear_slot0()

    def _drop_xdp_link(self, att: _Attachment) -> None:
        if att.xdp_link:
            self._lib.bpf_link__destroy(att.xdp_link)   # unpinned: destroying detaches it
            att.xdp_link = 0
        att.xdp_pinned = False

    def _detach_here(self, att: _Attachment) -> None:
        """Undo an attachment in its network namespace (this thread is in it); best effort, never raises."""
        lib = self._lib
        self._drop_xdp_link(att)
        gone = False
        try:
            gone = socket.if_nametoindex(att.iface.name) != att.ifindex
        except OSError:
            gone = True
        if att.tc and not gone:
            if att.qdisc_ours:
                hook = _hook(att.ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS)
                ret = lib.bpf_tc_hook_destroy(ctypes.byref(hook))
                if ret < 0 and -ret not in (errno.ENOENT, errno.ENODEV, errno.EINVAL):
                    log.warning("network inspector: removing the clsact qdisc of %s: %s", att.iface.name,
                                libbpf.errno_text(ret))
            else:
                for name, (handle, prio) in att.tc.items():
                    h = _hook(att.ifindex, BPF_TC_INGRESS if name == "tc_ingress" else BPF_TC_EGRESS)
                    opts = _TcOpts(sz=ctypes.sizeof(_TcOpts), handle=handle, priority=prio)
                    ret = lib.bpf_tc_detach(ctypes.byref(h), ctypes.byref(opts))
                    if ret < 0 and -ret not in (errno.ENOENT, errno.ENODEV):
                        log.warning("network inspector: removing the %s filter of %s: %s", name, att.iface.name,
                                    libbpf.errno_text(ret))
        att.tc.clear()
        att.hooks.clear()

    # -- teardown -------------------------------------------------------------------------------

    def close(self) -> None:
        """Detach everything, empty se_xdp_next[0] if it holds ni_xdp, close the object (safe twice)."""
        with self._lock:
            for att in list(self._attached.values()):
                self._detach_locked(att)
            self._clear_slot0()
            if self._xdp_next_fd >= 0:
                os.close(self._xdp_next_fd)
                self._xdp_next_fd = -1
            if self._ring is not None:
                self._ring.close()
                self._ring = None
            if self._obj:
                self._lib.bpf_object__close(self._obj)
                self._obj = None


def _same_map(fd_a: int, fd_b: int) -> bool:
    """Do two fds name the same BPF map (by id)?"""
    ids = []
    for fd in (fd_a, fd_b):
        info = (ctypes.c_uint32 * 2)()               # struct bpf_map_info: type, id
        n = ctypes.c_uint32(ctypes.sizeof(info))
        if libbpf.lib().bpf_obj_get_info_by_fd(fd, info, ctypes.byref(n)) < 0:
            return False
        ids.append(int(info[1]))
    return ids[0] == ids[1]
