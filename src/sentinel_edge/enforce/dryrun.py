"""Dry run: what a policy set would have hit over recorded events, and why.

``sentinel-edge policy dry-run --events REC.jsonl FILE...`` reads an OCSF
recording back into Events (``rules/replay.py``) and checks each event
against each policy as enforcement would:

- exec: the executed file by identity (the recording's ``exe_dev``/``exe_ino``
  against the denied files' identity on this host now) or path, the resolved
  executable path against the prefixes, and for ``#!`` scripts the script
  (``filename`` taken from the exec's ``cwd``) against files and prefixes.
  SHA-256 cannot be decided: file contents are not recorded, so every exec in
  scope that nothing else matched is counted as *undecided*;
- file: successful opens of a protected path (identity from the open's
  ``dev``/``ino``, or path, glob or directory) with read and/or write access
  from the open flags (``O_TRUNC`` counts as write), by an executable not on
  the allow list;
- connect: connect() to a denied network (IPv4-mapped IPv6 destinations also
  against the IPv4 networks) and port;
- kernel: init_module/finit_module and BPF_PROG_LOAD by anything not allowed;
- inbound: packets are not recorded; the report says so.

Scope comes from the event's process (uid or euid, container id) and its
parent's executable (identity when the parent's exec is in the recording,
else its path). Identities are what the files are on this host *now*; the
recording has no inode generation, so only (device, inode) are compared.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sentinel_edge.enforce.identity import identity_of_path, mount_devices
from sentinel_edge.enforce.model import (
    ACTION_AUDIT,
    ACTION_DENY,
    ACTION_KILL,
    ConnectDeny,
    ExecDeny,
    FileDeny,
    InboundDrop,
    IPNetwork,
    KernelDeny,
    Policy,
    PolicySet,
    Scope,
)
from sentinel_edge.enforce.policy import spec_summary
from sentinel_edge.errors import EnforceError
from sentinel_edge.model import KIND_BPF, KIND_EXEC, KIND_FILE, KIND_MODULE, KIND_NET, Event, ProcessInfo
from sentinel_edge.output.ocsf.common import text
from sentinel_edge.output.ocsf.file import OP_OPEN, event_abs_path
from sentinel_edge.output.ocsf.kernel import BPF_PROG_LOAD, MODULE_OP_NAMES, OP_MODULE_FINIT, OP_MODULE_INIT
from sentinel_edge.output.ocsf.network import OP_CONNECT

__all__ = ["DryRun", "DryRunReport", "Hit", "PolicyResult", "dry_run", "dry_run_file"]

O_ACCMODE = 0o3
O_WRONLY = 0o1
O_RDWR = 0o2
O_TRUNC = 0o1000
O_PATH = 0o10000000
AF_INET = 2
AF_INET6 = 10
MAX_IMAGES = 65536          # exec_id -> executable identity entries kept from the recording
UNDECIDED_SAMPLES = 10      # undecided events kept per policy as examples

Ident = tuple[int, int]     # (device as new_encode_dev, inode)


@dataclass(frozen=True, slots=True)
class Hit:
    """One recorded event a policy would have hit.

    ``time_ns`` is the event's boot-time ns, ``line`` its line in the
    recording (0 when the events did not come from a file), ``exe`` the
    acting executable (for an exec, the new image), ``target`` what was hit
    (the executable or script, the file, ``ip:port``, ``module_load`` or
    ``bpf_load``) and ``action`` what enforcement would do (kill, deny, or
    audit for a policy in audit mode).
    """

    policy_id: str
    time_ns: int
    line: int
    pid: int
    exe: str
    target: str
    reason: str
    action: str
    event_kind: str


@dataclass
class PolicyResult:
    """What one policy would have done over the recording."""

    policy: Policy
    hits: list[Hit] = field(default_factory=list)
    undecided: int = 0                  # events the recording cannot decide (sha256)
    undecided_samples: list[Hit] = field(default_factory=list)
    allowed: int = 0                    # matching events spared by the allow list
    out_of_scope: int = 0               # events it would have hit but for its scope
    notes: list[str] = field(default_factory=list)


@dataclass
class DryRunReport:
    results: list[PolicyResult]
    events: int
    by_kind: dict[str, int]

    def result(self, policy_id: str) -> PolicyResult:
        for r in self.results:
            if r.policy.id == policy_id:
                return r
        raise KeyError(policy_id)

    @property
    def total_hits(self) -> int:
        return sum(len(r.hits) for r in self.results)

    def render(self, max_hits: int = 50) -> str:
        """The report as text: per policy its hits (at most ``max_hits`` each), counts and notes."""
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.by_kind.items())) or "none"
        out = [f"dry run over {self.events} recorded event{'s' if self.events != 1 else ''} ({kinds})"]
        for r in self.results:
            p = r.policy
            counts = [f"{len(r.hits)} hit{'s' if len(r.hits) != 1 else ''}"]
            if r.undecided:
                counts.append(f"{r.undecided} undecided")
            if r.allowed:
                counts.append(f"{r.allowed} allowed by the allow list")
            if r.out_of_scope:
                counts.append(f"{r.out_of_scope} out of scope")
            out.append("")
            out.append(f"{p.id} [{p.kind}, {p.mode}, {p.severity}] {spec_summary(p)}: {', '.join(counts)}")
            for h in r.hits[:max_hits]:
                out.append(f"  {_where(h)} pid {h.pid} {h.exe or '?'}: {h.action} {h.target}: {h.reason}")
            if len(r.hits) > max_hits:
                out.append(f"  ... and {len(r.hits) - max_hits} more")
            for h in r.undecided_samples:
                out.append(f"  {_where(h)} pid {h.pid} {h.exe or '?'}: undecided {h.target}: {h.reason}")
            if r.undecided > len(r.undecided_samples):
                out.append(f"  ... and {r.undecided - len(r.undecided_samples)} more undecided")
            for n in r.notes:
                out.append(f"  note: {n}")
        out.append("")
        out.append(f"{self.total_hits} hit{'s' if self.total_hits != 1 else ''} by {len(self.results)} "
                   f"polic{'ies' if len(self.results) != 1 else 'y'}")
        # recorded paths may hold bytes that are not UTF-8 (surrogate escapes): shown as \xNN, as OCSF does
        return "\n".join(text(line) or "" for line in out) + "\n"


def _where(h: Hit) -> str:
    t = f"t={h.time_ns / 1e9:.3f}s"
    return f"line {h.line} {t}" if h.line else t


def _fs(raw: object) -> str:
    if isinstance(raw, bytes):
        return os.fsdecode(raw)
    return raw if isinstance(raw, str) else ""


# ---------------------------------------------------------------- executables named by a policy


class _Exes:
    """Executables named by paths, matched by identity (device, inode) on this host now, else by path."""

    def __init__(self, paths: Iterable[str], devices: dict[int, int], notes: list[str], what: str) -> None:
        self.ids: dict[Ident, str] = {}
        self.paths: dict[str, str] = {}
        for p in paths:
            self.paths[os.path.realpath(p)] = p
            try:
                fid = identity_of_path(p, devices)
            except EnforceError as exc:
                notes.append(f"{what} {p} cannot be identified here ({exc}): matched by path only")
                continue
            self.ids[(fid.dev, fid.ino)] = p

    def match(self, ident: Ident | None, path: str | None) -> tuple[str, str] | None:
        """(the policy's path, how it matched) or None."""
        if ident is not None and ident in self.ids:
            return self.ids[ident], "same file (device, inode)"
        if path and path in self.paths:
            return self.paths[path], "same path"
        return None

    def __bool__(self) -> bool:
        return bool(self.paths)


class _Protected:
    """Protected paths of a file policy: exact files (identity or path), globs, directories ('/x/')."""

    def __init__(self, paths: Iterable[str], devices: dict[int, int], notes: list[str]) -> None:
        self.exact = _Exes([p for p in paths if not p.endswith("/") and not _is_glob(p)], devices, [], "file")
        self.globs = [p for p in paths if _is_glob(p)]
        self.dirs = {os.path.realpath(p[:-1]) + "/": p for p in paths if p.endswith("/")}
        for p in self.exact.paths.values():
            if not os.path.exists(p):
                notes.append(f"{p} does not exist here: opens of it are matched by path only")

    def match(self, ident: Ident | None, path: str) -> tuple[str, str] | None:
        got = self.exact.match(ident, path)
        if got is not None:
            return got
        for g in self.globs:
            if _glob_match(g, path):
                return g, "path matches the pattern"
        head = os.path.dirname(path) + "/"
        if head in self.dirs:
            return self.dirs[head], "a file directly in the protected directory"
        return None


def _is_glob(p: str) -> bool:
    return any(c in p for c in "*?[")


def _glob_match(pattern: str, path: str) -> bool:
    """Shell-style match where '*' and '?' do not cross '/' (as glob(3) expands them)."""
    pp, sp = pattern.split("/"), path.split("/")
    return len(pp) == len(sp) and all(fnmatch.fnmatchcase(s, p) for p, s in zip(pp, sp, strict=True))


def _in_prefixes(path: str, prefixes: tuple[str, ...]) -> str | None:
    for pre in prefixes:
        if (pre.endswith("/") and path.startswith(pre)) or path == pre:
            return pre
    return None


# ---------------------------------------------------------------- the run


@dataclass
class _Compiled:
    result: PolicyResult
    parents: _Exes | None
    files: _Exes | None = None                  # exec files
    protected: _Protected | None = None
    allow: _Exes | None = None
    nets4: list[ipaddress.IPv4Network] = field(default_factory=list)
    nets6: list[ipaddress.IPv6Network] = field(default_factory=list)


class DryRun:
    """Feed events one by one (:meth:`feed`), then take the :meth:`report`."""

    def __init__(self, policies: PolicySet) -> None:
        try:
            devices = mount_devices()
        except EnforceError:
            devices = {}
        self.events = 0
        self.by_kind: Counter[str] = Counter()
        self._images: OrderedDict[str, Ident] = OrderedDict()   # exec_id -> identity of its executable
        self._compiled = [self._compile(p, devices) for p in policies.policies]

    @staticmethod
    def _compile(p: Policy, devices: dict[int, int]) -> _Compiled:
        r = PolicyResult(p)
        parents = _Exes(p.scope.parents, devices, r.notes, "parent") if p.scope.parents else None
        c = _Compiled(r, parents)
        s = p.spec
        if isinstance(s, ExecDeny):
            c.files = _Exes(s.files, devices, r.notes, "denied file")
            if s.files:
                r.notes.append("denied files are identified as they are on this host now; the recording has no "
                               "inode generation, so (device, inode) or the path is compared")
            if s.sha256:
                r.notes.append(f"sha256 ({len(s.sha256)} digest{'s' if len(s.sha256) != 1 else ''}) cannot be "
                               "decided from a recording (file contents are not recorded): execs in scope that "
                               "nothing else matched are counted as undecided")
        elif isinstance(s, FileDeny):
            c.protected = _Protected(s.paths, devices, r.notes)
            c.allow = _Exes(s.allow, devices, r.notes, "allowed executable")
            r.notes.append("the recording has one open per process, file and flags per dedup window "
                           "(file.dedup_window_ms): repeated opens appear once")
        elif isinstance(s, ConnectDeny):
            c.nets4 = [n for n in s.networks if isinstance(n, ipaddress.IPv4Network)]
            c.nets6 = [n for n in s.networks if isinstance(n, ipaddress.IPv6Network)]
        elif isinstance(s, KernelDeny):
            c.allow = _Exes(s.allow, devices, r.notes, "allowed executable")
        elif isinstance(s, InboundDrop):
            r.notes.append("inbound packets are not recorded: a dry run cannot show what this policy would drop")
        return c

    def feed(self, event: Event, line: int = 0) -> None:
        self.events += 1
        self.by_kind[event.kind] += 1
        if event.kind == KIND_EXEC and event.process is not None:
            ino = int(event.data.get("exe_ino", 0))
            if ino:
                self._images[event.process.exec_id] = (int(event.data.get("exe_dev", 0)), ino)
                self._images.move_to_end(event.process.exec_id)
                if len(self._images) > MAX_IMAGES:
                    self._images.popitem(last=False)
        for c in self._compiled:
            s = c.result.policy.spec
            if isinstance(s, ExecDeny):
                if event.kind == KIND_EXEC:
                    self._exec(c, s, event, line)
            elif isinstance(s, FileDeny):
                if event.kind == KIND_FILE:
                    self._file(c, s, event, line)
            elif isinstance(s, ConnectDeny):
                if event.kind == KIND_NET:
                    self._connect(c, s, event, line)
            elif isinstance(s, KernelDeny) and event.kind in (KIND_MODULE, KIND_BPF):
                self._kernel(c, s, event, line)

    def report(self) -> DryRunReport:
        for c in self._compiled:
            p = c.result.policy
            needs = {ExecDeny: KIND_EXEC, FileDeny: KIND_FILE, ConnectDeny: KIND_NET}.get(type(p.spec))
            if needs is not None and not self.by_kind.get(needs):
                c.result.notes.append(f"the recording has no {needs} events (was that sensor on?)")
            if isinstance(p.spec, KernelDeny) and not (self.by_kind.get(KIND_MODULE) or self.by_kind.get(KIND_BPF)):
                c.result.notes.append("the recording has no module or bpf events (the mem sensor reports them)")
        return DryRunReport([c.result for c in self._compiled], self.events, dict(self.by_kind))

    # -- helpers --------------------------------------------------------------------

    def _identity(self, info: ProcessInfo | None) -> Ident | None:
        return self._images.get(info.exec_id) if info is not None else None

    def _in_scope(self, c: _Compiled, event: Event) -> bool:
        scope: Scope = c.result.policy.scope
        if scope.everybody:
            return True
        proc = event.process
        if scope.users:
            uid = proc.uid if proc is not None and proc.uid is not None else event.proc.get("uid")
            euid = proc.euid if proc is not None and proc.euid is not None else event.proc.get("euid")
            if uid not in scope.users and euid not in scope.users:
                return False
        if scope.containers != "any":
            cid = proc.container_id if proc is not None else None
            if scope.containers == "host":
                if cid:
                    return False
            elif scope.containers == "containers":
                if not cid:
                    return False
            elif not cid or not any(cid.startswith(x) for x in scope.containers):
                return False
        if c.parents is not None:
            parent = event.parent
            if parent is None or c.parents.match(self._identity(parent), parent.exe) is None:
                return False
        return True

    def _hit(self, c: _Compiled, event: Event, line: int, target: str, reason: str, action: str) -> Hit:
        p = c.result.policy
        proc = event.process
        exe = (proc.exe if proc is not None else None) or ""
        return Hit(policy_id=p.id, time_ns=event.ts_ns, line=line, pid=int(event.proc.get("pid", 0)), exe=exe,
                   target=target, reason=reason, action=action if p.mode == "enforce" else ACTION_AUDIT,
                   event_kind=event.kind)

    def _exec(self, c: _Compiled, s: ExecDeny, event: Event, line: int) -> None:
        d = event.data
        exe = _fs(d.get("exe_path"))
        filename = _fs(d.get("filename"))
        interp = _fs(d.get("interp"))
        ino = int(d.get("exe_ino", 0))
        ident = (int(d.get("exe_dev", 0)), ino) if ino else None
        script = ""
        if filename and interp and filename != interp:
            # a #! script: the kernel ran the interpreter; the script is what was asked for
            script = os.path.realpath(os.path.join(_fs(d.get("cwd")) or "/", filename))
        found = self._exec_match(c, s, exe, ident, script)
        if found is None and not s.sha256:
            return
        if not self._in_scope(c, event):
            c.result.out_of_scope += found is not None
            return
        if found is not None:
            c.result.hits.append(self._hit(c, event, line, *found))
            return
        c.result.undecided += 1
        if len(c.result.undecided_samples) < UNDECIDED_SAMPLES:
            c.result.undecided_samples.append(self._hit(
                c, event, line, script or exe, "its SHA-256 is not in the recording", ACTION_DENY))

    @staticmethod
    def _exec_match(c: _Compiled, s: ExecDeny, exe: str, ident: Ident | None,
                    script: str) -> tuple[str, str, str] | None:
        """(target, reason, action) of the first thing that denies this exec, or None."""
        assert c.files is not None
        got = c.files.match(ident, exe)
        if got is not None:
            return exe, f"executable is denied file {got[0]} ({got[1]})", ACTION_KILL
        if script:
            got = c.files.match(None, script)
            if got is not None:
                return script, f"#! script (run by {exe}) is denied file {got[0]} (same path)", ACTION_DENY
        pre = _in_prefixes(exe, s.prefixes)
        if pre is not None:
            return exe, f"executable path {'is' if pre == exe else 'is under prefix'} {pre}", ACTION_KILL
        if script:
            pre = _in_prefixes(script, s.prefixes)
            if pre is not None:
                how = "is" if pre == script else "is under prefix"
                return script, f"#! script (run by {exe}) {how} {pre}", ACTION_DENY
        return None

    def _file(self, c: _Compiled, s: FileDeny, event: Event, line: int) -> None:
        d = event.data
        flags = int(d.get("open_flags", 0))
        if int(d.get("op", 0)) != OP_OPEN or int(d.get("ret", 0)) < 0 or flags & O_PATH:
            return
        path = os.fsdecode(event_abs_path(d))
        ino = int(d.get("ino", 0))
        ident = (int(d.get("dev", 0)), ino) if ino else None
        assert c.protected is not None and c.allow is not None
        got = c.protected.match(ident, path)
        if got is None:
            return
        acc = flags & O_ACCMODE
        access = []
        if acc != O_WRONLY:
            access.append("read")
        if acc in (O_WRONLY, O_RDWR) or flags & O_TRUNC:
            access.append("write")
        wanted = [a for a in access if a in s.access]
        if not wanted:
            return
        if not self._in_scope(c, event):
            c.result.out_of_scope += 1
            return
        proc = event.process
        if c.allow and c.allow.match(self._identity(proc), proc.exe if proc is not None else None) is not None:
            c.result.allowed += 1
            return
        mode = {0: "O_RDONLY", O_WRONLY: "O_WRONLY", O_RDWR: "O_RDWR"}.get(acc, "O_ACCMODE")
        how = mode + ("|O_TRUNC" if flags & O_TRUNC else "")
        c.result.hits.append(self._hit(c, event, line, path,
                                       f"open for {' and '.join(wanted)} ({how}) of protected {got[0]} ({got[1]})"
                                       + (", by an executable not on the allow list" if s.allow else ""),
                                       ACTION_DENY))

    def _connect(self, c: _Compiled, s: ConnectDeny, event: Event, line: int) -> None:
        d = event.data
        family = int(d.get("family", 0))
        if int(d.get("op", 0)) != OP_CONNECT or family not in (AF_INET, AF_INET6):
            return
        raw = bytes(d.get("daddr") or b"")
        port = int(d.get("dport", 0))
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address
        if family == AF_INET:
            addr = ipaddress.IPv4Address(raw[:4])
            target = f"{addr}:{port}"
        else:
            addr = ipaddress.IPv6Address(raw[:16])
            shown = f"::ffff:{addr.ipv4_mapped}" if addr.ipv4_mapped is not None else str(addr)
            target = f"[{shown}]:{port}"
        net: IPNetwork | None = None
        if isinstance(addr, ipaddress.IPv4Address):
            net = next((n for n in c.nets4 if addr in n), None)
        else:
            net = next((n for n in c.nets6 if addr in n), None)
            mapped = addr.ipv4_mapped
            if net is None and mapped is not None:
                net = next((n for n in c.nets4 if mapped in n), None)
        if net is None or (s.ports and port not in s.ports):
            return
        if not self._in_scope(c, event):
            c.result.out_of_scope += 1
            return
        why = f"destination in {net}" + (f", port {port} denied" if s.ports else "")
        c.result.hits.append(self._hit(c, event, line, target, f"connect: {why}", ACTION_DENY))

    def _kernel(self, c: _Compiled, s: KernelDeny, event: Event, line: int) -> None:
        d = event.data
        if event.kind == KIND_MODULE:
            op = int(d.get("op", 0))
            if not s.module_load or op not in (OP_MODULE_INIT, OP_MODULE_FINIT):
                return
            name = _fs(d.get("name"))
            target = "module_load"
            reason = f"{MODULE_OP_NAMES[op]}" + (f" of {name}" if name else "")
        else:
            if not s.bpf_load or int(d.get("cmd", -1)) != BPF_PROG_LOAD:
                return
            target = "bpf_load"
            name = _fs(d.get("prog_name"))
            reason = "BPF_PROG_LOAD" + (f" of program {name!r}" if name else "")
        if not self._in_scope(c, event):
            c.result.out_of_scope += 1
            return
        proc = event.process
        assert c.allow is not None
        if c.allow and c.allow.match(self._identity(proc), proc.exe if proc is not None else None) is not None:
            c.result.allowed += 1
            return
        c.result.hits.append(self._hit(c, event, line, target,
                                       reason + (" by an executable not on the allow list" if s.allow else ""),
                                       ACTION_KILL))


def dry_run(policies: PolicySet, events: Iterable[Event]) -> DryRunReport:
    """Which of ``events`` each policy would have hit, and why (see the module docstring)."""
    run = DryRun(policies)
    for e in events:
        run.feed(e)
    return run.report()


def dry_run_file(policies: PolicySet, path: str | Path) -> DryRunReport:
    """:func:`dry_run` over an OCSF recording (JSON lines), hits carrying their line numbers.

    A line replay cannot read raises :class:`~sentinel_edge.errors.RuleError` naming file:line.
    """
    from sentinel_edge.rules.replay import iter_events

    run = DryRun(policies)
    for line, e in iter_events(path):
        run.feed(e, line)
    return run.report()
