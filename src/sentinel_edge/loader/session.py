"""One loaded SentinelEdge BPF object: configure, load, attach, read, close.

The sequence follows libbpf-bootstrap: open, set tunables (.rodata se_cfg and
ring sizes), decide which programs load (sensor switches, tracepoints this
kernel lacks, raw_tp fallbacks), load, attach, then ring readers. close()
is the single cleanup path.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from sentinel_edge.config import AgentConfig
from sentinel_edge.errors import LoaderError
from sentinel_edge.loader import libbpf
from sentinel_edge.loader.btf import Btf
from sentinel_edge.loader.probes import KernelFeatures
from sentinel_edge.loader.ringbuf import RingReader

log = logging.getLogger(__name__)

SENSORS = ("process", "file", "net", "priv", "mem")  # index = enum se_sensor
STATS = ("emitted", "dropped", "deduped", "filtered", "errors")  # index = enum se_stat
RING_OF_SENSOR = {s: f"se_ring_{s}" for s in SENSORS}

# Syscalls watched through raw_tp/sys_enter when their tracepoints are missing
# (CONFIG_MODULES=n kernels have no sys_enter_*module tracepoints).
# name -> (syscall number, event type, op) per architecture; the map value is
# SE_FALLBACK_VALUE(type, op) = type | op << 16 (bpf/shared/events.h).
FALLBACK_SYSCALLS: dict[str, dict[str, tuple[int, str, str]]] = {
    "x86_64": {
        "init_module": (175, "SE_EV_MODULE", "SE_MODULE_INIT"),
        "delete_module": (176, "SE_EV_MODULE", "SE_MODULE_DELETE"),
        "finit_module": (313, "SE_EV_MODULE", "SE_MODULE_FINIT"),
    },
    "aarch64": {
        "init_module": (105, "SE_EV_MODULE", "SE_MODULE_INIT"),
        "delete_module": (106, "SE_EV_MODULE", "SE_MODULE_DELETE"),
        "finit_module": (273, "SE_EV_MODULE", "SE_MODULE_FINIT"),
    },
}


def default_object_path() -> str:
    override = os.environ.get("SENTINEL_EDGE_BPF_OBJECT")
    if override:
        return override
    return str(resources.files("sentinel_edge").joinpath("_bpf/sentinel.bpf.o"))


@dataclass(slots=True)
class ProgramStatus:
    name: str
    section: str
    sensor: str
    state: str  # attached | skipped | failed
    reason: str = ""


@dataclass(slots=True)
class SessionReport:
    programs: list[ProgramStatus] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)  # syscalls watched through raw_tp
    unwatched: list[str] = field(default_factory=list)  # syscalls without tracepoints, not watched
    notes: list[str] = field(default_factory=list)

    def attached(self) -> list[str]:
        return [p.name for p in self.programs if p.state == "attached"]


class BpfSession:
    """The loaded object and everything it owns (links, ring readers)."""

    def __init__(self, cfg: AgentConfig, feats: KernelFeatures, *, obj_path: str | None = None,
                 agent_tgid: int | None = None) -> None:
        self.cfg = cfg
        self.feats = feats
        self.obj_path = obj_path or default_object_path()
        if not Path(self.obj_path).is_file():
            raise LoaderError(
                f"BPF object {self.obj_path} not found; build it with 'make' (needs clang and bpftool)"
            )
        self.agent_tgid = os.getpid() if agent_tgid is None else agent_tgid
        self.btf = Btf.from_elf(self.obj_path)
        self.report = SessionReport()
        self.readers: dict[str, RingReader] = {}
        self._lib = libbpf.lib()
        self._obj: int | None = None
        self._links: list[int] = []
        self._ncpu = self._lib.libbpf_num_possible_cpus()

    # -- sequence -------------------------------------------------------------

    def start(self) -> SessionReport:
        try:
            self._open()
            self._configure()
            self._load()
            self._attach()
            self._open_rings()
        except BaseException:
            self.close()
            raise
        return self.report

    def _open(self) -> None:
        self._obj = libbpf.check_ptr(
            self._lib.bpf_object__open_file(self.obj_path.encode(), None), f"opening {self.obj_path}"
        )

    def _map(self, name: str) -> int:
        return libbpf.check_ptr(
            self._lib.bpf_object__find_map_by_name(self._obj, name.encode()), f"finding map {name}"
        )

    def _rodata(self) -> tuple[int, int]:
        for m in libbpf.iterate(self._lib.bpf_object__next_map, self._obj):  # type: ignore[arg-type]
            if self._lib.bpf_map__name(m).decode().endswith(".rodata"):
                size = ctypes.c_size_t()
                ptr = libbpf.check_ptr(self._lib.bpf_map__initial_value(m, ctypes.byref(size)), "reading .rodata")
                return ptr, size.value
        raise LoaderError(f"{self.obj_path} has no .rodata section (se_cfg missing)")

    def config_bytes(self) -> bytes:
        """struct se_config as bytes, packed from the BTF layout."""
        cfg = self.cfg
        enabled = 0
        for i, s in enumerate(SENSORS):
            if getattr(cfg.sensors, s):
                enabled |= 1 << i
        values: dict[str, int | list[bytes]] = {
            "agent_tgid": self.agent_tgid,
            "sensor_enabled": enabled,
            "dedup_window_ns": cfg.file.dedup_window_ms * 1_000_000,
            "n_include": len(cfg.file.include_prefixes),
            "n_exclude": len(cfg.file.exclude_prefixes),
            "include": [p.encode() for p in cfg.file.include_prefixes],
            "exclude": [p.encode() for p in cfg.file.exclude_prefixes],
            "argv_max": cfg.process.argv_max,
            "capture_env": int(cfg.process.capture_env),
            "mem_anon_exec": int(cfg.mem.anon_exec),
            "bpf_all_cmds": int(cfg.mem.bpf_all_commands),
        }
        st = self.btf.struct("se_config")
        buf = bytearray(st.size_or_type)
        for name, off, size in self.btf.layout("se_config"):
            if name not in values:
                continue
            v = values[name]
            if isinstance(v, list):
                row = size // 8  # SE_PREFIX_MAX rows
                for i, item in enumerate(v):
                    buf[off + i * row : off + i * row + len(item)] = item
            else:
                buf[off : off + size] = int(v).to_bytes(size, "little")
        return bytes(buf)

    def _configure(self) -> None:
        ptr, size = self._rodata()
        off = self.btf.datasec_offset(".rodata", "se_cfg")
        if off is None:
            raise LoaderError("se_cfg is not in .rodata of the object")
        data = self.config_bytes()
        if off + len(data) > size:
            raise LoaderError(".rodata is smaller than se_config")
        ctypes.memmove(ptr + off, data, len(data))

        rings = self.cfg.rings
        for s in SENSORS:
            kib = getattr(rings, f"{s}_kib")
            libbpf.check_int(
                self._lib.bpf_map__set_max_entries(self._map(RING_OF_SENSOR[s]), kib * 1024),
                f"sizing ring {RING_OF_SENSOR[s]}",
            )
        self._plan_programs()

    def _missing_syscalls(self) -> dict[str, int]:
        """Watched syscalls whose tracepoints this kernel lacks."""
        table = FALLBACK_SYSCALLS.get(platform.machine(), {})
        return {
            name: nr
            for name, (nr, _ev, _op) in table.items()
            if not self.feats.has_tracepoint("syscalls", f"sys_enter_{name}")
        }

    def _fallback_syscalls(self) -> dict[str, int]:
        """The syscalls the raw_tp fallback watches (empty: fallback not attached)."""
        if not self.cfg.sensors.mem:
            return {}
        missing = self._missing_syscalls()
        mode = self.cfg.mem.syscall_fallback
        if mode == "off" or not missing:
            return {}
        if mode == "auto" and not self.feats.modules:
            return {}
        return missing

    def _plan_programs(self) -> None:
        fallback = self._fallback_syscalls()
        missing = self._missing_syscalls() if self.cfg.sensors.mem else {}
        if missing and not fallback:
            why = ("the kernel has no module support (no /proc/modules): these syscalls can only fail with ENOSYS"
                   if self.cfg.mem.syscall_fallback == "auto" else "mem.syscall_fallback is off")
            self.report.unwatched = sorted(missing)
            self.report.notes.append(
                f"not watched: {', '.join(sorted(missing))} (no tracepoints; {why}; "
                "set mem.syscall_fallback: on to watch them through raw_tp/sys_enter, about +0.4 us per syscall)"
            )
        for prog in libbpf.iterate(self._lib.bpf_object__next_program, self._obj):  # type: ignore[arg-type]
            name = self._lib.bpf_program__name(prog).decode()
            sec = self._lib.bpf_program__section_name(prog).decode()
            sensor = name.split("_", 1)[0]
            if sensor not in SENSORS:
                raise LoaderError(f"program {name}: name must start with a sensor ({', '.join(SENSORS)})")
            reason = ""
            if not getattr(self.cfg.sensors, sensor):
                reason = f"sensor {sensor} is off in the config"
            elif sec.startswith("tp/") or sec.startswith("tracepoint/"):
                _, cat, tp = sec.split("/", 2)
                if not self.feats.has_tracepoint(cat, tp):
                    reason = f"tracepoint {cat}/{tp} does not exist on kernel {self.feats.release}"
            elif sec.startswith("tp_btf/"):
                tp = sec.split("/", 1)[1]
                if not self.feats.has_raw_tracepoint(tp):
                    reason = f"tracepoint {tp} does not exist on kernel {self.feats.release}"
            elif "fallback" in name and not fallback:
                reason = ("not needed: every watched syscall has its tracepoint" if not missing
                          else "raw_tp fallback not used (see notes)")
            if reason:
                self._lib.bpf_program__set_autoload(prog, False)
                self.report.programs.append(ProgramStatus(name, sec, sensor, "skipped", reason))
            else:
                self.report.programs.append(ProgramStatus(name, sec, sensor, "pending"))
        if fallback:
            self.report.fallbacks = sorted(fallback)

    def _load(self) -> None:
        libbpf.take_log()
        ret = self._lib.bpf_object__load(self._obj)
        if ret < 0:
            lines = libbpf.take_log()
            raise LoaderError(
                f"loading {self.obj_path} failed: {libbpf.errno_text(ret)}\n" + "\n".join(lines[-60:])
            )
        fallback = self._fallback_syscalls()
        if fallback:
            types = self.btf.enum("se_event_type")
            ops = self.btf.enum("se_module_op")
            fd = self._lib.bpf_map__fd(self._map("se_fallback_syscalls"))
            table = FALLBACK_SYSCALLS.get(platform.machine(), {})
            for name, nr in fallback.items():
                _, ev, op = table[name]
                key = ctypes.c_uint32(nr)
                val = ctypes.c_uint32(types[ev] | ops[op] << 16)
                libbpf.check_int(
                    self._lib.bpf_map_update_elem(fd, ctypes.byref(key), ctypes.byref(val), 0),
                    f"adding syscall {name} to se_fallback_syscalls",
                )

    def _attach(self) -> None:
        by_name = {p.name: p for p in self.report.programs}
        for prog in libbpf.iterate(self._lib.bpf_object__next_program, self._obj):  # type: ignore[arg-type]
            name = self._lib.bpf_program__name(prog).decode()
            status = by_name[name]
            if status.state != "pending":
                continue
            link = self._lib.bpf_program__attach(prog)
            if not link:
                err = ctypes.get_errno()
                status.state = "failed"
                status.reason = f"attach failed: {libbpf.errno_text(err)}"
                log.warning("program %s (%s) not attached: %s", name, status.section, status.reason)
                continue
            self._links.append(link)
            status.state = "attached"

    def _open_rings(self) -> None:
        for s in SENSORS:
            m = self._map(RING_OF_SENSOR[s])
            fd = self._lib.bpf_map__fd(m)
            size = self._lib.bpf_map__max_entries(m)
            self.readers[s] = RingReader(fd, size, RING_OF_SENSOR[s])

    # -- reading ----------------------------------------------------------------

    def stats(self) -> dict[str, dict[str, int]]:
        """Per-sensor kernel counters summed over CPUs."""
        fd = self._lib.bpf_map__fd(self._map("se_stats"))
        buf = (ctypes.c_uint64 * self._ncpu)()
        out: dict[str, dict[str, int]] = {}
        for si, s in enumerate(SENSORS):
            row: dict[str, int] = {}
            for ti, t in enumerate(STATS):
                key = ctypes.c_uint32(si * len(STATS) + ti)
                ret = self._lib.bpf_map_lookup_elem(fd, ctypes.byref(key), buf)
                row[t] = sum(buf) if ret == 0 else 0
            out[s] = row
        return out

    def map_fd(self, name: str) -> int:
        return int(self._lib.bpf_map__fd(self._map(name)))

    # -- cleanup ------------------------------------------------------------------

    def close(self) -> None:
        """Detach every program and free the object (safe to call twice)."""
        for r in self.readers.values():
            r.close()
        self.readers.clear()
        for link in self._links:
            self._lib.bpf_link__destroy(link)
        self._links.clear()
        if self._obj:
            self._lib.bpf_object__close(self._obj)
            self._obj = None
