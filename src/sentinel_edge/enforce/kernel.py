"""Kernel-side enforcement: the pinned enforcement object, its policy maps and its event ring.

The object ``_bpf/enforce.bpf.o`` (bpf/enforce/) is loaded once and pinned
in bpffs: its maps under ``<pin root>/maps/<name>`` and its program links
under ``<pin root>/links/<program>``. Pinned links stay attached when the
process that made them exits (shared/KERNEL.md), so enforcement keeps
working across an agent restart or crash, ``kill -9`` included. A new agent
*adopts* what it finds pinned (opens the maps, leaves the links alone); if
the pinned object is from another build it is *replaced*: the new object is
loaded and attached next to the old one, the policy set is written into it,
and only then are the old pins removed, so there is no instant without
enforcement. Only :meth:`EnforceKernel.uninstall` (``sentinel-edge policy
uninstall``) detaches everything; :meth:`EnforceKernel.set_armed` is the
kill switch (everything matches as audit while disarmed).

Policy maps are keyed by generation (bpf/shared/events.h): :meth:`apply`
writes a policy set under the next generation, flips ``active_gen`` with one
map update, then deletes the previous generation's entries.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import ipaddress
import logging
import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentinel_edge.enforce.identity import identity_of_path, mount_devices
from sentinel_edge.enforce.model import (
    KIND_EXEC,
    KIND_KERNEL,
    ExecDeny,
    FileIdentity,
    KernelDeny,
    Policy,
    PolicySet,
    Scope,
)
from sentinel_edge.errors import EnforceError, LoaderError
from sentinel_edge.loader import libbpf
from sentinel_edge.loader.btf import Btf
from sentinel_edge.loader.ringbuf import RingReader

log = logging.getLogger(__name__)

PIN_ROOT = "/sys/fs/bpf/sentinel-edge/enforce"
POLICY_MAX = 256
MATCH_MAX = 8
PATH_LPM = 248

# enum se_enf_kind / se_enf_scope_flags (bpf/shared/events.h; checked against BTF by tests)
ENF_EXEC, ENF_BPF, ENF_MODULE, ENF_CONNECT, ENF_INBOUND = 1, 2, 3, 4, 5
SCOPE_USERS, SCOPE_HOST, SCOPE_CONTAINERS, SCOPE_CGROUPS, SCOPE_PARENTS = 1, 2, 4, 8, 16
WHAT_UID, WHAT_CGROUP, WHAT_PARENT = 1, 2, 3
STATS = ("hits", "kills", "kill_failures", "audits", "dropped", "spared", "denies", "drops")

# maps of the enforcement object that are pinned (and adopted), and where the
# generation sits in each generation-keyed map's key (None: not keyed)
PINNED_MAPS: dict[str, int | None] = {
    "se_enf_state": None,
    "se_enf_policies": 0,
    "se_enf_scope": 0,
    "se_enf_exec_ident": 0,
    "se_enf_exec_path": 4,
    "se_enf_tamper": 0,
    "se_enf_tamper_allow": 0,
    "se_enf_safe": None,
    "se_enf_ring": None,
    "se_enf_stats": None,
    "se_enf_meta": None,
}
# programs attached at install; the others are attached on demand
ALWAYS_PROGRAMS = ("enforce_exec", "enforce_bpf_load", "enforce_init_module", "enforce_finit_module")
FALLBACK_PROGRAM = "enforce_module_fallback"
MODULE_SYSCALLS = {"x86_64": (175, 313), "aarch64": (105, 273)}


def default_object_path() -> str:
    return str(Path(__file__).resolve().parent.parent / "_bpf" / "enforce.bpf.o")


# -- the wire mirror of the config-map structs (checked against BTF in tests) ----------

class EnfState(ctypes.Structure):
    _fields_ = [("active_gen", ctypes.c_uint32), ("armed", ctypes.c_uint32), ("agent_tgid", ctypes.c_uint32),
                ("_pad0", ctypes.c_uint32), ("agent_start_ns", ctypes.c_uint64), ("updated_ns", ctypes.c_uint64)]


class EnfPolicyKey(ctypes.Structure):
    _fields_ = [("gen", ctypes.c_uint32), ("idx", ctypes.c_uint32)]


ID_LEN = 64


class EnfPolicy(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_uint32), ("enforce", ctypes.c_uint32), ("scope", ctypes.c_uint32),
                ("host_pid_ns", ctypes.c_uint32), ("id", ctypes.c_char * ID_LEN)]


class EnfScopeKey(ctypes.Structure):
    _fields_ = [("gen", ctypes.c_uint32), ("idx", ctypes.c_uint16), ("what", ctypes.c_uint16),
                ("value", ctypes.c_uint64), ("value2", ctypes.c_uint64)]


class EnfMatchVal(ctypes.Structure):
    _fields_ = [("igen", ctypes.c_uint32), ("has_igen", ctypes.c_uint16), ("n", ctypes.c_uint16),
                ("idx", ctypes.c_uint16 * MATCH_MAX), ("ports", ctypes.c_uint16 * MATCH_MAX),
                ("expires_ns", ctypes.c_uint64)]


class EnfIdentKey(ctypes.Structure):
    _fields_ = [("gen", ctypes.c_uint32), ("dev", ctypes.c_uint32), ("ino", ctypes.c_uint64)]


class EnfPathKey(ctypes.Structure):
    _fields_ = [("prefixlen", ctypes.c_uint32), ("gen", ctypes.c_uint32), ("path", ctypes.c_char * PATH_LPM)]


class EnfMeta(ctypes.Structure):
    _fields_ = [("obj_sha256", ctypes.c_uint8 * 32), ("installed_ns", ctypes.c_uint64)]


MIRRORS: dict[str, type[ctypes.Structure]] = {
    "se_enf_state": EnfState, "se_enf_policy_key": EnfPolicyKey, "se_enf_policy": EnfPolicy,
    "se_enf_scope_key": EnfScopeKey, "se_enf_match_val": EnfMatchVal, "se_enf_ident_key": EnfIdentKey,
    "se_enf_path_key": EnfPathKey, "se_enf_meta": EnfMeta,
}


# -- compiling a policy set into map entries --------------------------------------------

Entries = dict[str, dict[bytes, bytes]]  # map name -> key bytes (generation 0) -> value bytes


@dataclass(slots=True)
class KernelPlan:
    """What a policy set puts into the kernel maps (keys carry generation 0 until written)."""

    entries: Entries = field(default_factory=dict)
    index: dict[str, int] = field(default_factory=dict)       # policy id -> idx
    needs_module_deny: bool = False
    problems: list[str] = field(default_factory=list)         # paths that could not be resolved, etc.

    def add(self, map_name: str, key: ctypes.Structure, value: ctypes.Structure | ctypes.c_uint32 | bytes) -> None:
        self.entries.setdefault(map_name, {})[bytes(key)] = bytes(value)


def _match_union(current: bytes | None, idx: int, *, igen: int | None = None, port: int = 0) -> EnfMatchVal:
    v = EnfMatchVal.from_buffer_copy(current) if current else EnfMatchVal()
    pairs = [(v.idx[i], v.ports[i]) for i in range(v.n)]
    if (idx, port) not in pairs:
        if v.n >= MATCH_MAX:
            raise EnforceError(f"more than {MATCH_MAX} policies share one entry (policy idx {idx})")
        v.idx[v.n] = idx
        v.ports[v.n] = port
        v.n += 1
    if igen is not None:
        v.igen = igen
        v.has_igen = 1
    return v


PROC_PID_INIT_INO = 0xEFFFFFFC  # inode number of the initial pid namespace (include/linux/proc_ns.h)


def host_pid_ns() -> int:
    return PROC_PID_INIT_INO


def _scope_entries(plan: KernelPlan, idx: int, scope: Scope, resolve: Callable[[str], FileIdentity],
                   cgroups_of: Callable[[str], list[int]] | None) -> int:
    flags = 0
    if scope.users:
        flags |= SCOPE_USERS
        for uid in scope.users:
            plan.add("se_enf_scope", EnfScopeKey(0, idx, WHAT_UID, uid, 0), ctypes.c_uint32(1))
    if scope.containers == "host":
        flags |= SCOPE_HOST
    elif scope.containers == "containers":
        flags |= SCOPE_CONTAINERS
    elif isinstance(scope.containers, tuple):
        flags |= SCOPE_CGROUPS
        for cid in scope.containers:
            ids = cgroups_of(cid) if cgroups_of is not None else []
            if not ids:
                plan.problems.append(f"container {cid}: no cgroup found (the policy matches none of it until it runs "
                                     "and the policy set is applied again)")
            for cg in ids:
                plan.add("se_enf_scope", EnfScopeKey(0, idx, WHAT_CGROUP, cg, 0), ctypes.c_uint32(1))
    if scope.parents:
        flags |= SCOPE_PARENTS
        for path in scope.parents:
            try:
                ident = resolve(path)
            except EnforceError as exc:
                plan.problems.append(str(exc))
                continue
            plan.add("se_enf_scope", EnfScopeKey(0, idx, WHAT_PARENT, ident.ino, ident.dev), ctypes.c_uint32(1))
    return flags


def _path_key(path: str, whole: bool) -> EnfPathKey:
    raw = os.fsencode(path)
    if whole:
        raw += b"\0"
    if len(raw) > PATH_LPM - 1:
        raise EnforceError(f"path {path!r} is longer than the {PATH_LPM - 1} bytes the kernel compares")
    k = EnfPathKey()
    k.prefixlen = 32 + 8 * len(raw)
    k.gen = 0
    ctypes.memmove(ctypes.addressof(k) + EnfPathKey.path.offset, raw, len(raw))
    return k


def plan_policies(policies: PolicySet, *, resolve: Callable[[str], FileIdentity] | None = None,
                  cgroups_of: Callable[[str], list[int]] | None = None,
                  extra: Sequence[Callable[[PolicySet, dict[str, int], KernelPlan], None]] = ()) -> KernelPlan:
    """Translate the kernel parts of a policy set into map entries.

    Exec deny by identity and prefix, kernel tamper deny and the scope sets
    are done here; ``extra`` planners add other kinds (network maps).
    Files that cannot be resolved are reported in ``problems`` (the rest of
    the set is still applied: a missing file cannot be executed).
    """
    devices = mount_devices()
    res = resolve or (lambda p: identity_of_path(p, devices))
    plan = KernelPlan()
    pidns = host_pid_ns()
    kernel_kinds = (KIND_EXEC, KIND_KERNEL, "connect", "inbound")
    idx = 0
    for pol in policies.policies:
        if pol.kind not in kernel_kinds:
            continue
        if idx >= POLICY_MAX:
            raise EnforceError(f"more than {POLICY_MAX} kernel policies in one set")
        plan.index[pol.id] = idx
        flags = _scope_entries(plan, idx, pol.scope, res, cgroups_of)
        kind = {KIND_EXEC: ENF_EXEC, KIND_KERNEL: ENF_BPF, "connect": ENF_CONNECT, "inbound": ENF_INBOUND}[pol.kind]
        plan.add("se_enf_policies", EnfPolicyKey(0, idx),
                 EnfPolicy(kind, 1 if pol.mode == "enforce" else 0, flags, pidns,
                           pol.id.encode()[:ID_LEN - 1]))
        if isinstance(pol.spec, ExecDeny):
            _plan_exec(plan, idx, pol, res)
        elif isinstance(pol.spec, KernelDeny):
            _plan_tamper(plan, idx, pol.spec, res)
        idx += 1
    for fn in extra:
        fn(policies, plan.index, plan)
    return plan


def _plan_exec(plan: KernelPlan, idx: int, pol: Policy, resolve: Callable[[str], FileIdentity]) -> None:
    spec = pol.spec
    assert isinstance(spec, ExecDeny)
    for path in spec.files:
        try:
            ident = resolve(path)
        except EnforceError as exc:
            plan.problems.append(f"policy {pol.id}: {exc}")
            continue
        key = bytes(EnfIdentKey(0, ident.dev, ident.ino))
        cur = plan.entries.get("se_enf_exec_ident", {}).get(key)
        plan.entries.setdefault("se_enf_exec_ident", {})[key] = bytes(_match_union(cur, idx, igen=ident.gen))
    for prefix in spec.prefixes:
        k = _path_key(prefix, whole=not prefix.endswith("/"))
        key = bytes(k)
        cur = plan.entries.get("se_enf_exec_path", {}).get(key)
        plan.entries.setdefault("se_enf_exec_path", {})[key] = bytes(_match_union(cur, idx))


def _plan_tamper(plan: KernelPlan, idx: int, spec: KernelDeny, resolve: Callable[[str], FileIdentity]) -> None:
    for on, kind in ((spec.bpf_load, ENF_BPF), (spec.module_load, ENF_MODULE)):
        if not on:
            continue
        key = bytes(EnfPolicyKey(0, kind))
        cur = plan.entries.get("se_enf_tamper", {}).get(key)
        plan.entries.setdefault("se_enf_tamper", {})[key] = bytes(_match_union(cur, idx))
        if kind == ENF_MODULE:
            plan.needs_module_deny = True
    for path in spec.allow:
        try:
            ident = resolve(path)
        except EnforceError as exc:
            plan.problems.append(str(exc))
            continue
        key = bytes(EnfIdentKey(0, ident.dev, ident.ino))
        cur = plan.entries.get("se_enf_tamper_allow", {}).get(key)
        plan.entries.setdefault("se_enf_tamper_allow", {})[key] = bytes(_match_union(cur, idx))


def close_prefixes(plan: KernelPlan) -> None:
    """Give every prefix-trie entry the policies of the shorter directory prefixes above it.

    The trie answers with the longest match only: without this, a policy on
    /tmp/ would not apply to /tmp/x/ when another policy names /tmp/x/.
    Covering entries are directory prefixes (ending in '/'), so only the
    path's own '/'-ended heads are looked up: linear in entries x depth.
    """
    table = plan.entries.get("se_enf_exec_path")
    if not table:
        return
    dirs: dict[bytes, bytes] = {}  # directory prefix bytes -> its key
    raws: dict[bytes, bytes] = {}
    for key in table:
        n = (EnfPathKey.from_buffer_copy(key).prefixlen - 32) // 8
        raw = key[8:8 + n]
        raws[key] = raw
        if raw.endswith(b"/"):
            dirs[raw] = key
    for key, raw in raws.items():
        val = table[key]
        for i in range(len(raw) - 1):
            if raw[i] != 0x2F:  # '/'
                continue
            okey = dirs.get(raw[:i + 1])
            if okey is None or okey == key:
                continue
            cur = EnfMatchVal.from_buffer_copy(table[okey])
            for j in range(cur.n):
                val = bytes(_match_union(val, cur.idx[j], port=cur.ports[j]))
        table[key] = val


# -- the pinned object --------------------------------------------------------------------


def _with_gen(key: bytes, off: int, gen: int) -> bytes:
    return key[:off] + gen.to_bytes(4, "little") + key[off + 4:]


class EnforceKernel:
    """Install or adopt the pinned enforcement object; write policy sets; read its events.

    ``extra_maps`` / ``extra_programs`` let other enforcement parts (network)
    declare their pinned maps (with the generation offset in the key) and the
    programs they attach themselves.
    """

    def __init__(self, pin_root: str = PIN_ROOT, obj_path: str | None = None) -> None:
        self.pin_root = Path(pin_root)
        self.obj_path = obj_path or default_object_path()
        if not Path(self.obj_path).is_file():
            raise EnforceError(f"enforcement object {self.obj_path} not found; build it with 'make'")
        self.btf = Btf.from_elf(self.obj_path)
        self.obj_sha = hashlib.sha256(Path(self.obj_path).read_bytes()).digest()
        self._lib = libbpf.lib()
        self._ncpu = self._lib.libbpf_num_possible_cpus()
        self._obj: int | None = None
        self._fds: dict[str, int] = {}
        self._ring: RingReader | None = None
        self.state_of_install = ""  # installed | adopted | replaced
        self.maps: dict[str, int | None] = dict(PINNED_MAPS)
        # called by replace() once the new object is loaded: point pinned links at its programs in place;
        # each returns the link pins it kept (replace leaves them)
        self.relinkers: list[Callable[[EnforceKernel], set[str]]] = []
        from sentinel_edge.enforce import netmaps  # here: netmaps imports this module
        netmaps.register(self)  # the network maps are in the object: they must be pinned with the rest

    # -- paths --------------------------------------------------------------------------

    def _map_pin(self, name: str) -> Path:
        return self.pin_root / "maps" / name

    def _link_pin(self, name: str) -> Path:
        return self.pin_root / "links" / name

    def installed(self) -> bool:
        return self._map_pin("se_enf_state").exists()

    def pinned_links(self) -> list[str]:
        d = self.pin_root / "links"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    # -- install / adopt ------------------------------------------------------------------

    def open(self, agent_pid: int | None = None) -> str:
        """Adopt the pinned object, or install it (replacing one from another build). Returns what happened."""
        _ensure_bpffs()
        if self.installed():
            missing = self._adopt_maps(tolerate_missing=True)
            if "se_enf_meta" not in missing and bytes(self._meta().obj_sha256) == self.obj_sha:
                if missing:
                    raise EnforceError(f"pinned enforcement at {self.pin_root} lacks maps {', '.join(missing)}; "
                                       "'sentinel-edge policy uninstall' removes a broken installation")
                self.state_of_install = "adopted"
            else:
                self.state_of_install = "replaced"  # another build: replace() swaps it without a gap
        else:
            self._install()
            self.state_of_install = "installed"
        if agent_pid is not None:
            self.set_agent(agent_pid)
        return self.state_of_install

    def _install(self) -> None:
        self._load_object()
        try:
            for name in ALWAYS_PROGRAMS:
                self._attach_pinned(name, missing_ok=True)
            for name in self.maps:
                m = self._find_map(name)
                libbpf.check_int(self._lib.bpf_map__pin(m, str(self._map_pin(name)).encode()), f"pinning map {name}")
            meta = EnfMeta()
            ctypes.memmove(meta.obj_sha256, self.obj_sha, 32)
            meta.installed_ns = _boot_ns()
            self._update("se_enf_meta", ctypes.c_uint32(0), meta)
            st = EnfState(active_gen=0, armed=1)
            self._update("se_enf_state", ctypes.c_uint32(0), st)
        except BaseException:
            self.uninstall()
            raise

    def replace(self, write: Callable[[EnforceKernel], None]) -> None:
        """Swap in this build's object without a gap.

        The new object is loaded and attached next to the pinned one, ``write``
        fills its maps, and only then are the old pins removed.
        """
        state = self.read_state()
        old_fds = dict(self._fds)
        self._fds = {}
        self._load_object()
        self._update("se_enf_state", ctypes.c_uint32(0), EnfState(active_gen=0, armed=state.armed,
                                                                 agent_tgid=state.agent_tgid,
                                                                 agent_start_ns=state.agent_start_ns))
        new_links: list[tuple[str, int]] = []
        for name in ALWAYS_PROGRAMS:
            link = self._attach(name, missing_ok=True)
            if link:
                new_links.append((name, link))
        write(self)
        kept: set[str] = set()
        for relink in self.relinkers:
            kept |= relink(self)
        # the new object enforces the whole set now: remove the old pins, pin the new
        for name in self.pinned_links():
            if name not in kept:
                os.unlink(self._link_pin(name))
        for name in self.maps:
            p = self._map_pin(name)
            if p.exists():
                os.unlink(p)
            libbpf.check_int(self._lib.bpf_map__pin(self._find_map(name), str(p).encode()), f"pinning map {name}")
        for name, link in new_links:
            libbpf.check_int(self._lib.bpf_link__pin(link, str(self._link_pin(name)).encode()), f"pinning link {name}")
            self._lib.bpf_link__destroy(link)  # the pin holds it now: unpinning must detach it
        meta = EnfMeta()
        ctypes.memmove(meta.obj_sha256, self.obj_sha, 32)
        meta.installed_ns = _boot_ns()
        self._update("se_enf_meta", ctypes.c_uint32(0), meta)
        for fd in old_fds.values():
            os.close(fd)
        self.state_of_install = "installed"

    def _load_object(self, *, reuse_pinned: bool = False) -> None:
        """Open and load the object. Fresh: its own maps (kept open here). ``reuse_pinned``: an adopting
        process that needs programs loads the object once more, its maps reusing the pinned ones."""
        lib = self._lib
        self._obj = libbpf.check_ptr(lib.bpf_object__open_file(self.obj_path.encode(), None),
                                     f"opening {self.obj_path}")
        own = set(self.maps)
        for m in libbpf.iterate(lib.bpf_object__next_map, self._obj):
            name = lib.bpf_map__name(m).decode()
            if name in own:
                if reuse_pinned:
                    libbpf.check_int(lib.bpf_map__reuse_fd(m, self._fds[name]), f"reusing pinned map {name}")
            elif not name.startswith("se_heap") and "." not in name and name != "se_enf_scratch":
                lib.bpf_map__set_autocreate(m, False)  # sensor maps from maps.h: not used here
        nrs = MODULE_SYSCALLS.get(platform.machine())
        if nrs:
            self._set_rodata_u32("se_nr_init_module", nrs[0])
            self._set_rodata_u32("se_nr_finit_module", nrs[1])
        libbpf.take_log()
        ret = lib.bpf_object__load(self._obj)
        if ret < 0:
            raise EnforceError(f"loading {self.obj_path} failed: {libbpf.errno_text(ret)}\n"
                               + "\n".join(libbpf.take_log()[-60:]))
        if not reuse_pinned:
            for name in self.maps:
                self._fds[name] = os.dup(lib.bpf_map__fd(self._find_map(name)))

    def _set_rodata_u32(self, var: str, value: int) -> None:
        off = self.btf.datasec_offset(".rodata", var)
        if off is None:
            return
        for m in libbpf.iterate(self._lib.bpf_object__next_map, self._obj):  # type: ignore[arg-type]
            if self._lib.bpf_map__name(m).decode().endswith(".rodata"):
                size = ctypes.c_size_t()
                ptr = self._lib.bpf_map__initial_value(m, ctypes.byref(size))
                buf = (ctypes.c_char * size.value).from_address(ptr)
                data = bytearray(buf.raw)
                data[off:off + 4] = value.to_bytes(4, "little")
                libbpf.check_int(self._lib.bpf_map__set_initial_value(m, bytes(data), len(data)),
                                 "setting .rodata")
                return

    def _find_map(self, name: str) -> int:
        return libbpf.check_ptr(self._lib.bpf_object__find_map_by_name(self._obj, name.encode()), f"finding map {name}")

    def _find_prog(self, name: str) -> int | None:
        if not self._obj:
            return None
        p = self._lib.bpf_object__find_program_by_name(self._obj, name.encode())
        return int(p) if p else None

    def _attach(self, name: str, *, missing_ok: bool = False, target: int | None = None,
                how: str = "auto") -> int:
        prog = self._find_prog(name)
        if prog is None:
            raise EnforceError(f"program {name} is not in {self.obj_path}")
        if how == "cgroup":
            link = self._lib.bpf_program__attach_cgroup(prog, target)
        elif how == "xdp":
            link = self._lib.bpf_program__attach_xdp(prog, target)
        else:
            link = self._lib.bpf_program__attach(prog)
        if not link:
            err = ctypes.get_errno()
            if missing_ok and err == errno.ENOENT:
                log.info("enforcement program %s not attached: its hook does not exist on this kernel", name)
                return 0
            raise EnforceError(f"attaching {name} failed: {libbpf.errno_text(err)}\n"
                               + "\n".join(libbpf.take_log()[-20:]))
        return int(link)

    def _attach_pinned(self, name: str, *, missing_ok: bool = False, target: int | None = None,
                       how: str = "auto", pin_name: str | None = None) -> bool:
        link = self._attach(name, missing_ok=missing_ok, target=target, how=how)
        if not link:
            return False
        (self.pin_root / "links").mkdir(parents=True, exist_ok=True)
        libbpf.check_int(self._lib.bpf_link__pin(link, str(self._link_pin(pin_name or name)).encode()),
                         f"pinning link {pin_name or name}")
        self._lib.bpf_link__destroy(link)  # the pin holds the link now; our fd would keep it attached after unpin
        return True

    def attach_program(self, name: str, *, target: int | None = None, how: str = "auto",
                       pin_name: str | None = None) -> bool:
        """Attach and pin a program that is not always attached (needs this process to hold the object)."""
        if self._link_pin(pin_name or name).exists():
            return True
        if not self._obj:
            self._load_object(reuse_pinned=True)
        return self._attach_pinned(name, target=target, how=how, pin_name=pin_name)

    def detach_program(self, pin_name: str) -> bool:
        p = self._link_pin(pin_name)
        if p.exists():
            os.unlink(p)
            return True
        return False

    def _adopt_maps(self, *, tolerate_missing: bool = False) -> list[str]:
        """Open the pinned maps; returns those missing (an older build pinned fewer) when tolerated."""
        missing: list[str] = []
        for name in self.maps:
            fd = self._lib.bpf_obj_get(str(self._map_pin(name)).encode())
            if fd < 0:
                if tolerate_missing and not self._map_pin(name).exists() and name != "se_enf_state":
                    missing.append(name)
                    continue
                raise EnforceError(f"adopting pinned map {self._map_pin(name)} failed: {libbpf.errno_text(fd)}; "
                                   "'sentinel-edge policy uninstall' removes a broken installation")
            self._fds[name] = fd
        return missing

    # -- state ----------------------------------------------------------------------------

    def fd(self, name: str) -> int:
        try:
            return self._fds[name]
        except KeyError:
            raise EnforceError(f"enforcement map {name} is not open") from None

    def _update(self, name: str, key: ctypes.Structure | ctypes.c_uint32 | bytes,
                value: ctypes.Structure | ctypes.c_uint32 | bytes) -> None:
        k = ctypes.create_string_buffer(bytes(key), len(bytes(key)))
        v = ctypes.create_string_buffer(bytes(value), len(bytes(value)))
        ret = self._lib.bpf_map_update_elem(self.fd(name), k, v, 0)
        if ret < 0:
            raise EnforceError(f"writing map {name}: {libbpf.errno_text(ret)}")

    def _lookup(self, name: str, key: bytes, size: int) -> bytes | None:
        k = ctypes.create_string_buffer(key, len(key))
        v = ctypes.create_string_buffer(size)
        if self._lib.bpf_map_lookup_elem(self.fd(name), k, v) < 0:
            return None
        return v.raw

    def _meta(self) -> EnfMeta:
        raw = self._lookup("se_enf_meta", bytes(ctypes.c_uint32(0)), ctypes.sizeof(EnfMeta))
        return EnfMeta.from_buffer_copy(raw) if raw else EnfMeta()

    def read_state(self) -> EnfState:
        raw = self._lookup("se_enf_state", bytes(ctypes.c_uint32(0)), ctypes.sizeof(EnfState))
        if raw is None:
            raise EnforceError("reading the enforcement state failed")
        return EnfState.from_buffer_copy(raw)

    def _write_state(self, st: EnfState) -> None:
        st.updated_ns = _boot_ns()
        self._update("se_enf_state", ctypes.c_uint32(0), st)

    def set_agent(self, pid: int) -> None:
        """Name the agent process (never killed or denied): pid and its start time."""
        st = self.read_state()
        st.agent_tgid = pid
        st.agent_start_ns = _start_boottime_ns(pid)
        self._write_state(st)

    def clear_agent(self) -> None:
        """No agent process any more (a command line tool that applied policies and exits)."""
        st = self.read_state()
        st.agent_tgid = 0
        st.agent_start_ns = 0
        self._write_state(st)

    def set_armed(self, armed: bool) -> None:
        """The kill switch: disarmed, every hit is only reported (as audit)."""
        st = self.read_state()
        st.armed = 1 if armed else 0
        self._write_state(st)

    def set_safe(self, identities: Iterable[FileIdentity]) -> None:
        """Executables never killed (replaces the list)."""
        want = {bytes(EnfIdentKey(0, i.dev, i.ino)) for i in identities}
        have = set(self._keys("se_enf_safe", ctypes.sizeof(EnfIdentKey)))
        for k in want - have:
            self._update("se_enf_safe", k, ctypes.c_uint32(1))
        for k in have - want:
            self._delete("se_enf_safe", k)

    # -- policy sets ------------------------------------------------------------------------

    def _keys(self, name: str, key_size: int) -> list[bytes]:
        out: list[bytes] = []
        cur: Any = None
        nxt = ctypes.create_string_buffer(key_size)
        fd = self.fd(name)
        for _ in range(1 << 22):  # bounded: a map never holds more
            ret = self._lib.bpf_map_get_next_key(fd, cur, nxt)
            if ret < 0:
                break
            out.append(nxt.raw)
            cur = ctypes.create_string_buffer(nxt.raw, key_size)
        return out

    def _delete(self, name: str, key: bytes) -> None:
        k = ctypes.create_string_buffer(key, len(key))
        self._lib.bpf_map_delete_elem(self.fd(name), k)

    def _key_size(self, name: str) -> int:
        sizes = {"se_enf_policies": EnfPolicyKey, "se_enf_scope": EnfScopeKey, "se_enf_exec_ident": EnfIdentKey,
                 "se_enf_exec_path": EnfPathKey, "se_enf_tamper": EnfPolicyKey,
                 "se_enf_tamper_allow": EnfIdentKey}
        if name in sizes:
            return ctypes.sizeof(sizes[name])
        return _map_info(self.fd(name))["key_size"]  # other parts' maps (network): the kernel knows

    def _drop_gen(self, gen: int, key_sizes: dict[str, int]) -> int:
        dropped = 0
        for name, off in self.maps.items():
            if off is None or name not in key_sizes:
                continue
            for key in self._keys(name, key_sizes[name]):
                if int.from_bytes(key[off:off + 4], "little") == gen:
                    self._delete(name, key)
                    dropped += 1
        return dropped

    def apply(self, plan: KernelPlan, key_sizes: dict[str, int] | None = None) -> int:
        """Write a planned policy set under the next generation and switch to it at once. Returns the generation."""
        sizes = {name: self._key_size(name) for name, off in self.maps.items() if off is not None}
        sizes.update(key_sizes or {})
        for name in plan.entries:
            if self.maps.get(name) is None:
                raise EnforceError(f"map {name} is not a generation-keyed enforcement map")
        st = self.read_state()
        old = st.active_gen
        new = old + 1 if old < 0xFFFFFFFF else 1
        self._drop_gen(new, sizes)  # leftovers of an apply that died half-way
        for name, table in plan.entries.items():
            off = self.maps[name]
            assert off is not None
            for key, value in table.items():
                self._update(name, _with_gen(key, off, new), value)
        st = self.read_state()
        st.active_gen = new
        self._write_state(st)  # the switch: one map update
        if old:
            self._drop_gen(old, sizes)
        return new

    def clear(self) -> None:
        """Enforce nothing (active generation 0) and drop every policy entry."""
        st = self.read_state()
        old = st.active_gen
        st.active_gen = 0
        self._write_state(st)
        sizes = {name: self._key_size(name) for name, off in self.maps.items() if off is not None}
        if old:
            self._drop_gen(old, sizes)

    def active_policies(self) -> dict[int, tuple[str, bool]]:
        """idx -> (policy id, enforcing) of the generation in force (what an adopting agent names hits by)."""
        gen = self.read_state().active_gen
        out: dict[int, tuple[str, bool]] = {}
        for key in self._keys("se_enf_policies", ctypes.sizeof(EnfPolicyKey)):
            k = EnfPolicyKey.from_buffer_copy(key)
            if k.gen != gen:
                continue
            raw = self._lookup("se_enf_policies", key, ctypes.sizeof(EnfPolicy))
            if raw is not None:
                v = EnfPolicy.from_buffer_copy(raw)
                out[k.idx] = (v.id.decode("utf-8", "replace"), bool(v.enforce))
        return out

    def count_entries(self, name: str) -> int:
        return len(self._keys(name, self._key_size(name)))

    # -- events and counters ----------------------------------------------------------------

    def ring(self) -> RingReader:
        if self._ring is None:
            size = int(self.btf_map_ring_size())
            self._ring = RingReader(self.fd("se_enf_ring"), size, "se_enf_ring")
        return self._ring

    def btf_map_ring_size(self) -> int:
        info = _map_info(self.fd("se_enf_ring"))
        return info["max_entries"]

    def stats(self) -> dict[str, int]:
        buf = (ctypes.c_uint64 * self._ncpu)()
        out: dict[str, int] = {}
        for i, name in enumerate(STATS):
            key = ctypes.c_uint32(i)
            ret = self._lib.bpf_map_lookup_elem(self.fd("se_enf_stats"), ctypes.byref(key), buf)
            out[name] = sum(buf) if ret == 0 else 0
        return out

    # -- teardown ---------------------------------------------------------------------------

    def close(self) -> None:
        """Let go of this process's handles; pinned enforcement stays in force."""
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()
        if self._obj:
            self._lib.bpf_object__close(self._obj)
            self._obj = None

    def uninstall(self) -> None:
        """Detach every enforcement program and remove every pin (nothing is enforced afterwards)."""
        d = self.pin_root / "links"
        if d.is_dir():
            for p in d.iterdir():
                os.unlink(p)
        m = self.pin_root / "maps"
        if m.is_dir():
            for p in m.iterdir():
                os.unlink(p)
        for sub in (d, m, self.pin_root, self.pin_root.parent):
            if sub == Path("/sys/fs/bpf") or not str(sub).startswith("/sys/fs/bpf/"):
                break
            try:
                sub.rmdir()  # only when empty: another installation's pins stay
            except OSError:
                break
        self.close()


# -- small system helpers -----------------------------------------------------------------


def _ensure_bpffs(path: str = "/sys/fs/bpf") -> None:
    if os.path.ismount(path):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    os.makedirs(path, exist_ok=True)
    if libc.mount(b"bpf", path.encode(), b"bpf", 0, None) != 0:
        err = ctypes.get_errno()
        raise EnforceError(f"bpffs is not mounted at {path} and mounting it failed: {os.strerror(err)}")


def _boot_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def _start_boottime_ns(pid: int) -> int:
    """start_boottime of a process in ns, as the kernel has it (from /proc/<pid>/stat, in clock ticks)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError as exc:
        raise EnforceError(f"cannot read /proc/{pid}/stat: {exc}") from exc
    fields = raw[raw.rindex(b")") + 2:].split()
    ticks = int(fields[19])
    return ticks * (1_000_000_000 // os.sysconf("SC_CLK_TCK"))


class _BpfMapInfo(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
                ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32), ("map_flags", ctypes.c_uint32),
                ("name", ctypes.c_char * 16), ("rest", ctypes.c_uint8 * 64)]


def _map_info(fd: int) -> dict[str, int]:
    lib = libbpf.lib()
    fn = lib.bpf_obj_get_info_by_fd
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]
    info = _BpfMapInfo()
    n = ctypes.c_uint32(ctypes.sizeof(info))
    ret = fn(fd, ctypes.byref(info), ctypes.byref(n))
    if ret < 0:
        raise LoaderError(f"bpf_obj_get_info_by_fd failed: {libbpf.errno_text(ret)}")
    return {"type": info.type, "key_size": info.key_size, "value_size": info.value_size,
            "max_entries": info.max_entries}


def network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text, strict=False)
