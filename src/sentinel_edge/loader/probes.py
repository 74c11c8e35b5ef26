"""Feature probes run before anything is loaded.

Each probe either passes, fixes what it can (mounting tracefs) or raises an
error that says what is missing and how to fix it.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field
from pathlib import Path

from sentinel_edge.errors import KernelFeatureError, PrivilegeError

TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
VMLINUX_BTF = "/sys/kernel/btf/vmlinux"


@dataclass(slots=True)
class KernelFeatures:
    tracefs: str
    btf: bool
    release: str
    # tracepoint name -> category ("sched_process_exec" -> "sched")
    tracepoints: dict[str, str] = field(default_factory=dict)
    pairs: set[tuple[str, str]] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    modules: bool = True  # CONFIG_MODULES: /proc/modules exists

    def has_tracepoint(self, category: str, name: str) -> bool:
        return (category, name) in self.pairs

    def has_raw_tracepoint(self, name: str) -> bool:
        return name in self.tracepoints


def require_root() -> None:
    if os.geteuid() != 0:
        raise PrivilegeError(
            "sentinel-edge must run as root (it loads eBPF programs and reads tracefs); "
            "run it with sudo or as root"
        )


def _mount_tracefs(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    ret = libc.mount(b"tracefs", path.encode(), b"tracefs", 0, None)
    if ret != 0:
        err = ctypes.get_errno()
        raise KernelFeatureError(
            f"tracefs is not mounted and mounting it at {path} failed: {os.strerror(err)}; "
            f"mount it with 'mount -t tracefs tracefs {path}'"
        )


def find_tracefs(mount_if_missing: bool = True) -> str:
    for cand in TRACEFS_CANDIDATES:
        if Path(cand, "events").is_dir():
            return cand
    if not mount_if_missing:
        raise KernelFeatureError(
            "tracefs is not mounted; mount it with 'mount -t tracefs tracefs /sys/kernel/tracing'"
        )
    target = TRACEFS_CANDIDATES[0]
    if not Path(target).is_dir():
        raise KernelFeatureError(
            f"{target} does not exist: the kernel was built without CONFIG_TRACING; "
            "SentinelEdge needs tracepoints"
        )
    _mount_tracefs(target)
    if not Path(target, "events").is_dir():
        raise KernelFeatureError(f"mounted tracefs at {target} but it has no events/ directory")
    return target


def probe(mount_tracefs: bool = True) -> KernelFeatures:
    """Check root, BTF and tracefs; list the tracepoints this kernel has."""
    require_root()
    if not Path(VMLINUX_BTF).exists():
        raise KernelFeatureError(
            f"{VMLINUX_BTF} is missing: the kernel has no BTF (CONFIG_DEBUG_INFO_BTF=y is needed "
            "for CO-RE programs); use a distribution kernel built with BTF"
        )
    tracefs = find_tracefs(mount_tracefs)
    feats = KernelFeatures(tracefs=tracefs, btf=True, release=os.uname().release,
                           modules=Path("/proc/modules").exists())
    events = Path(tracefs, "events")
    for cat in os.scandir(events):
        if not cat.is_dir():
            continue
        try:
            for ev in os.scandir(cat.path):
                if ev.is_dir():
                    feats.tracepoints.setdefault(ev.name, cat.name)
                    feats.pairs.add((cat.name, ev.name))
        except OSError:
            continue
    return feats
