"""The enforcement stage of the agent: policies in force, their hits turned into alerts.

    policy files -> PolicySet -> kernel (pinned, enforce.bpf.o) + fanotify (this process)
    kernel ring / fanotify thread -> Enforcement -> Alert (OCSF Detection Finding, security_control)

Applying a set is atomic per mechanism: the kernel switches generations with
one map write, fanotify adds new marks before it removes old ones. A set
with any error is rejected whole and the set in force stays.

Kernel enforcement outlives the agent (pinned); fanotify does not: while no
agent runs, sha256, ``#!`` script and protected-file policies are not
enforced. An agent that adopts enforcement left by an agent that is gone
says so with an alert (:data:`GAP_POLICY_ID`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sentinel_edge.detection import _mtimes as detection_mtimes
from sentinel_edge.enforce.identity import identity_of_path
from sentinel_edge.enforce.kernel import (
    ENF_BPF,
    ENF_CONNECT,
    ENF_EXEC,
    ENF_INBOUND,
    ENF_MODULE,
    EnforceKernel,
    KernelPlan,
    close_prefixes,
    plan_policies,
)
from sentinel_edge.enforce.model import (
    ACTION_AUDIT,
    ACTION_DENY,
    ACTION_DROP,
    ACTION_KILL,
    ACTION_NONE,
    MECH_CGROUP,
    MECH_SIGKILL,
    MECH_XDP,
    Enforcement,
    ExecDeny,
    FileIdentity,
    Policy,
    PolicySet,
)
from sentinel_edge.enforce.policy import load_policy_files
from sentinel_edge.errors import EnforceError, PolicyError, SentinelEdgeError
from sentinel_edge.model import Event
from sentinel_edge.output.ocsf.enforce import address_text
from sentinel_edge.rules.model import Alert, Attack, RuleMeta

log = logging.getLogger(__name__)

GAP_POLICY_ID = "enforcement-gap"
WATCH_INTERVAL_S = 1.0
REFRESH_INTERVAL_S = 10.0
KERNEL_ACTIONS = {0: ACTION_AUDIT, 1: ACTION_KILL, 2: ACTION_DENY, 3: ACTION_DROP}
KERNEL_MECH = {ENF_EXEC: MECH_SIGKILL, ENF_BPF: MECH_SIGKILL, ENF_MODULE: MECH_SIGKILL,
               ENF_CONNECT: MECH_CGROUP, ENF_INBOUND: MECH_XDP}
TECHNIQUE_TACTIC = {  # the tactic of the techniques policies usually name (ATT&CK enterprise)
    "T1059": "execution", "T1204": "execution", "T1105": "command-and-control", "T1071": "command-and-control",
    "T1003": "credential-access", "T1552": "credential-access", "T1547": "persistence",
    "T1014": "defense-evasion", "T1562": "defense-evasion", "T1036": "defense-evasion",
    "T1068": "privilege-escalation", "T1611": "privilege-escalation", "T1041": "exfiltration",
    "T1048": "exfiltration", "T1046": "discovery", "T1498": "impact", "T1499": "impact",
}


def _mtimes(paths: Sequence[Path]) -> dict[str, float]:
    """detection._mtimes over paths that may be directories created later (looked at every time)."""
    return detection_mtimes([p for p in paths if not p.is_dir()], [p for p in paths if p.is_dir()])


def container_cgroups(container_id: str, root: str | None = None, limit: int = 100_000) -> list[int]:
    """Cgroup v2 ids (directory inode numbers, what bpf_get_current_cgroup_id gives) of a container.

    ``container_id`` is the full id or a prefix of at least 12 characters;
    the container's cgroup and every cgroup below it are returned.
    """
    from sentinel_edge.enforce.netmaps import cgroup2_root
    from sentinel_edge.enrich.containers import container_of_path

    try:
        base = root or cgroup2_root()
    except EnforceError:
        return []
    out: list[int] = []
    seen = 0
    for dirpath, _dirs, _ in os.walk(base):
        seen += 1
        if seen > limit:
            break
        rel = dirpath[len(base):] or "/"
        c = container_of_path(rel)
        if c is not None and c.id.startswith(container_id):
            try:
                out.append(os.stat(dirpath).st_ino)
            except OSError:
                continue
    return out


def _pid_alive(pid: int, start_ns: int) -> bool:
    from sentinel_edge.enforce.kernel import _start_boottime_ns
    try:
        return pid > 0 and _start_boottime_ns(pid) == start_ns
    except EnforceError:
        return False


def for_fanotify(pset: PolicySet) -> PolicySet:
    """What the fanotify backend enforces: exec path prefixes are left to the kernel.

    The kernel matches prefixes on the resolved executable, on an absolute
    script path and on a relative one joined with the cwd, with no cost per
    exec; fanotify would put every exec of the filesystem through this
    process (about +0.2 ms each). Identities (inode marks, also for #!
    scripts), sha256 and protected files stay with fanotify.
    """
    out: list[Policy] = []
    for p in pset.policies:
        if isinstance(p.spec, ExecDeny) and p.spec.prefixes:
            if not p.spec.files and not p.spec.sha256:
                continue
            p = dataclasses.replace(p, spec=dataclasses.replace(p.spec, prefixes=()))
        out.append(p)
    return PolicySet(policies=tuple(out), files=pset.files)


def policy_rule(policy: Policy | None, policy_id: str) -> RuleMeta:
    """The rule metadata an enforcement alert carries: the policy as the analytic."""
    if policy is None:
        return RuleMeta(id=f"policy:{policy_id}", title=f"Policy {policy_id}", severity="high",
                        description="a policy of an earlier policy set", source="policy", kind="policy")
    attack = tuple(Attack(t, TECHNIQUE_TACTIC.get(t.split(".")[0], "defense-evasion"))
                   for t in policy.techniques)
    return RuleMeta(id=f"policy:{policy.id}", title=policy.description.strip().split("\n")[0] or
                    f"Policy {policy.id}", severity=policy.severity, description=policy.description,
                    attack=attack, tags=(f"policy/{policy.kind}", f"mode/{policy.mode}"), source="policy",
                    file=policy.file, line=policy.line, kind="policy")


def enforcement_alert(enf: Enforcement, policy: Policy | None, event: Event) -> Alert:
    verb = {ACTION_KILL: "killed", ACTION_DENY: "denied", ACTION_DROP: "dropped",
            ACTION_AUDIT: "observed (audit)", ACTION_NONE: "not acted on"}.get(enf.action, enf.action)
    msg = f"policy {enf.policy_id}: {enf.target} {verb}"
    if not enf.ok:
        msg += f" - the action failed: {enf.error}"
    return Alert(rule=policy_rule(policy, enf.policy_id), events=[event], message=msg, time_ns=time.time_ns(),
                 data=_alert_data(enf))


def _alert_data(enf: Enforcement) -> dict[str, Any]:
    """What an enforcement alert carries (unmapped.alert.enforcement; the finding's security_control fields)."""
    return {"enforcement": {"policy_id": enf.policy_id, "mode": enf.mode, "action": enf.action,
                            "mechanism": enf.mechanism, "target": enf.target, "ok": enf.ok, "error": enf.error,
                            **enf.data}}


def response_alert(enf: Enforcement, alert: Alert) -> Alert:
    """The alert of a response action a rule ran: the rule is the analytic, the action the control."""
    rule = alert.rule
    meta = RuleMeta(id=f"response:{rule.id}", title=f"Response to {rule.title}", severity=rule.severity,
                    description=rule.description, attack=rule.attack, tags=(*rule.tags, "response"),
                    source=rule.source, file=rule.file, line=rule.line, kind="response")
    verb = {ACTION_KILL: "killed", ACTION_NONE: "not acted on"}.get(enf.action, enf.action)
    msg = f"rule {rule.id}: {enf.target} {verb}" + ("" if enf.ok else f" - {enf.error}")
    return Alert(rule=meta, events=list(alert.events), message=msg, time_ns=time.time_ns(), data=_alert_data(enf))


class EnforcementStage:
    """Owns the pinned kernel enforcement, the fanotify backend and the policy set in force."""

    def __init__(self, paths: Sequence[str | Path], *, pin_root: str, watch: bool = True, fanotify: bool = True,
                 safe_executables: Sequence[str] = (), obj_path: str | None = None,
                 fanotify_factory: Callable[..., Any] | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        self.watch = watch
        self.use_fanotify = fanotify
        self.safe_executables = list(safe_executables)
        self.kernel = EnforceKernel(pin_root=pin_root, obj_path=obj_path)
        self.policies = PolicySet()
        self.applies = 0
        self.apply_failures = 0
        self.problems: list[str] = []
        self.notes: list[str] = []
        self._by_gen: dict[int, dict[int, Policy | str]] = {}
        self._fan: Any = None
        self._fan_factory = fanotify_factory
        self._fan_queue: list[Enforcement] = []
        self._fan_lock = threading.Lock()
        self._reload_wanted = threading.Event()
        self._mtimes: dict[str, float] = {}
        self._next_watch = 0.0
        self._next_refresh = 0.0
        self._cgroups: dict[str, list[int]] = {}
        self._blocker: Any = None
        self._preloaded: PolicySet | None = None
        self._decoder: Any = None
        self._pending: list[tuple[Event, Enforcement]] = []
        self.install_state = ""

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, agent_pid: int) -> list[tuple[Event, Enforcement]]:
        """Adopt or install kernel enforcement, apply the policy files; returns start-up findings (the gap)."""
        pset = self._preloaded if self._preloaded is not None else self._load()  # errors are fatal at start
        self._preloaded = None
        self._mtimes = _mtimes(self.paths)
        if not pset.policies and not self.kernel.installed():
            self.notes.append("no policy configured: nothing is enforced")
            return []
        previous: tuple[int, int] | None = None
        if self.kernel.installed():
            try:
                self.kernel._adopt_maps(tolerate_missing=True)
                st = self.kernel.read_state()
                previous = (st.agent_tgid, st.agent_start_ns)
                self._by_gen[st.active_gen] = {i: pid for i, (pid, _) in self.kernel.active_policies().items()}
                self.kernel.close()
            except EnforceError as exc:
                log.warning("pinned enforcement at %s is unreadable (%s): installing afresh", self.kernel.pin_root, exc)
                self.kernel.uninstall()
        self._ensure_kernel(agent_pid)
        found: list[tuple[Event, Enforcement]] = []
        if previous is not None and previous[0] and not _pid_alive(*previous) and previous[0] != agent_pid:
            found.append(self._gap_finding(previous[0]))
        self._apply(pset)
        if self.use_fanotify:
            self._start_fanotify()
        self._mtimes = _mtimes(self.paths)
        self.notes.append(f"enforcement {self.install_state} at {self.kernel.pin_root}: "
                          f"{len(self.policies.policies)} policies")
        return found

    def _ensure_kernel(self, agent_pid: int | None = None) -> None:
        """Install or adopt the pinned enforcement (once), with its decoder and the safe list."""
        if self.kernel._fds:
            return
        from sentinel_edge.wire.decode import Decoder

        self.install_state = self.kernel.open(agent_pid=os.getpid() if agent_pid is None else agent_pid)
        self._decoder = Decoder(self.kernel.btf)
        self.kernel.set_safe(self._safe_identities())

    def validate(self) -> PolicySet:
        """Read and check the policy files now (every error raised, located); start() uses this set."""
        self._preloaded = self._load()
        return self._preloaded

    def _load(self) -> PolicySet:
        """The policy set of the configured paths; a directory that does not exist (yet) holds none."""
        paths = [p for p in self.paths if p.exists() or p.suffix in (".yaml", ".yml")]
        return load_policy_files(paths) if paths else PolicySet()

    def _safe_identities(self) -> list[FileIdentity]:
        out: list[FileIdentity] = []
        for p in self.safe_executables:
            try:
                out.append(identity_of_path(p))
            except EnforceError:
                continue  # not on this host
        return out

    def _gap_finding(self, old_pid: int) -> tuple[Event, Enforcement]:
        enf = Enforcement(policy_id=GAP_POLICY_ID, mode="enforce", action=ACTION_NONE, mechanism="fanotify",
                          target="sha256, #! script and protected-file policies", ok=False,
                          error=f"the agent (pid {old_pid}) that enforced them is gone: kernel enforcement "
                                "stayed in force, fanotify-based policies were not enforced until now",
                          proc={"pid": os.getpid()})
        ev = _event_of(enf)
        ev.proc.update(_self_proc())
        return ev, enf

    def _start_fanotify(self) -> None:
        try:
            if self._fan_factory is not None:
                factory = self._fan_factory
            else:
                from sentinel_edge.enforce.fanotify import FanotifyEnforcer
                factory = FanotifyEnforcer
            self._fan = factory(self._on_fanotify, agent_pid=os.getpid(),
                                allow_identities=self._safe_identities())
            self._fan.apply(for_fanotify(self.policies))
            self._fan.start()
        except SentinelEdgeError as exc:
            self._fan = None
            self.notes.append(f"fanotify enforcement unavailable: {exc}")
            log.error("fanotify enforcement unavailable: %s (sha256, #! script and protected-file policies are "
                      "not enforced)", exc)

    def _on_fanotify(self, enf: Enforcement) -> None:  # called from the fanotify thread
        with self._fan_lock:
            self._fan_queue.append(enf)

    def close(self) -> None:
        """Stop fanotify (its policies fail open from now on) and let go of the kernel (it stays in force)."""
        if self._fan is not None:
            try:
                self._fan.stop()
            except SentinelEdgeError as exc:
                log.error("stopping fanotify enforcement: %s", exc)
            self._fan = None
        self.kernel.close()

    # -- applying ---------------------------------------------------------------------------

    def _plan(self, pset: PolicySet) -> KernelPlan:
        extra: list[Callable[[PolicySet, dict[str, int], KernelPlan], None]] = []
        try:
            from sentinel_edge.enforce import netmaps
        except ImportError:  # pragma: no cover - the module ships with the package
            netmaps = None  # type: ignore[assignment]
        if netmaps is not None:
            extra.append(netmaps.plan_network)
        plan = plan_policies(pset, extra=extra, cgroups_of=container_cgroups)
        close_prefixes(plan)
        return plan

    def _apply(self, pset: PolicySet) -> None:
        if not pset.policies and not self.kernel._fds and not self.kernel.installed():
            self.policies = pset  # nothing to enforce and nothing installed: install nothing
            return
        plan = self._plan(pset)
        self._ensure_kernel()  # the first policies of an agent that started with none
        if self.install_state == "replaced":
            self.kernel.replace(lambda k: self._write(k, plan, pset))
            self.install_state = "installed"
        else:
            self._write(self.kernel, plan, pset)
        self._sync_attachments(pset, plan)
        if self._fan is not None:
            self._fan.apply(for_fanotify(pset))
        self.policies = pset
        self.problems = list(plan.problems)
        for p in plan.problems:
            log.warning("policy: %s", p)
        self.applies += 1

    def _write(self, kernel: EnforceKernel, plan: KernelPlan, pset: PolicySet) -> None:
        gen = kernel.apply(plan)
        by_idx: dict[int, Policy | str] = {}
        for pid, idx in plan.index.items():
            pol = pset.by_id(pid)
            by_idx[idx] = pol if pol is not None else pid
        self._by_gen[gen] = by_idx
        for old in sorted(self._by_gen)[:-4]:  # events of old generations can still be in the ring
            del self._by_gen[old]

    def apply(self, pset: PolicySet) -> None:
        """Put a validated policy set in force (kernel and fanotify)."""
        self._apply(pset)

    def _sync_attachments(self, pset: PolicySet, plan: KernelPlan) -> None:
        from pathlib import Path as _P
        has_tp = _P("/sys/kernel/tracing/events/syscalls/sys_enter_finit_module").exists() or \
            _P("/sys/kernel/debug/tracing/events/syscalls/sys_enter_finit_module").exists()
        if plan.needs_module_deny and not has_tp:
            self.kernel.attach_program("enforce_module_fallback")
        elif not plan.needs_module_deny:
            self.kernel.detach_program("enforce_module_fallback")
        try:
            from sentinel_edge.enforce import netmaps
        except ImportError:  # pragma: no cover
            return
        sync = getattr(netmaps, "sync_attachments", None)
        if sync is not None:
            sync(self.kernel, pset)

    def request_reload(self) -> None:
        self._reload_wanted.set()

    def reload(self) -> bool:
        """Load the policy files again and apply them; on any error keep the set in force. True when applied."""
        try:
            pset = self._load()
            self.apply(pset)
        except PolicyError as exc:
            self.apply_failures += 1
            log.error("policy reload rejected, the previous %d policies stay in force:\n%s",
                      len(self.policies.policies), exc)
            return False
        except EnforceError as exc:
            self.apply_failures += 1
            log.error("policy reload failed, the previous policies stay in force: %s", exc)
            return False
        log.info("policies applied: %d in force", len(self.policies.policies))
        return True

    # -- per round --------------------------------------------------------------------------

    def tick(self) -> None:
        now = time.monotonic()
        if self.watch and now >= self._next_watch:
            self._next_watch = now + WATCH_INTERVAL_S
            m = _mtimes(self.paths)
            if m != self._mtimes:
                self._mtimes = m
                log.info("policy files changed, re-applying")
                self._reload_wanted.set()
        if self._reload_wanted.is_set():
            self._reload_wanted.clear()
            self.reload()
        if now >= self._next_refresh:
            self._next_refresh = now + REFRESH_INTERVAL_S
            self._refresh()

    def _refresh(self) -> None:
        """Periodic: fanotify re-marks replaced files; container-scoped policies pick up new cgroups."""
        if self._blocker is not None:
            try:
                self._blocker.sweep()  # expired blocks (the kernel ignores them already) leave the maps
            except SentinelEdgeError as exc:
                log.error("sweeping expired address blocks: %s", exc)
        if self._fan is not None:
            try:
                self._fan.refresh()
            except SentinelEdgeError as exc:
                log.error("fanotify refresh: %s", exc)
        ids = sorted({c for p in self.policies.policies if isinstance(p.scope.containers, tuple)
                      for c in p.scope.containers})
        if ids:
            cgroups = {c: sorted(container_cgroups(c)) for c in ids}
            if cgroups != self._cgroups:
                if self._cgroups:
                    log.info("containers of container-scoped policies changed: re-applying")
                    try:
                        self.apply(self.policies)
                    except SentinelEdgeError as exc:
                        log.error("re-applying policies: %s", exc)
                self._cgroups = cgroups

    def drain(self) -> list[tuple[Event, Enforcement]]:
        """Enforcement decisions since the last call: kernel ring events and fanotify decisions."""
        out: list[tuple[Event, Enforcement]] = []
        if self._decoder is not None and self.kernel._fds:
            raws: list[bytes] = []
            self.kernel.ring().drain(raws)
            for raw in raws:
                try:
                    ev = self._decoder.decode(raw)
                except SentinelEdgeError as exc:
                    log.error("dropping an enforcement record: %s", exc)
                    continue
                enf = self.from_kernel(ev)
                ev.data["policy_id"] = enf.policy_id
                out.append((ev, enf))
        with self._fan_lock:
            fan, self._fan_queue = self._fan_queue, []
        for enf in fan:
            out.append((_event_of(enf), enf))
        return out

    def address_blocker(self) -> Any:
        """The kernel address blocker of response actions (installs kernel enforcement when needed)."""
        from sentinel_edge.enforce import netmaps

        self._ensure_kernel()
        netmaps.sync_network(self.kernel, self.policies)  # connect hooks attached: blocks need them
        if self._blocker is None:
            self._blocker = netmaps.KernelAddressBlocker(self.kernel)
        return self._blocker

    def policy_of(self, gen: int, idx: int) -> tuple[Policy | None, str]:
        ent = self._by_gen.get(gen, {}).get(idx)
        if isinstance(ent, Policy):
            return ent, ent.id
        if isinstance(ent, str):
            return self.policies.by_id(ent), ent
        return None, f"generation-{gen}-policy-{idx}"

    def policy_by_id(self, pid: str) -> Policy | None:
        return self.policies.by_id(pid)

    def from_kernel(self, ev: Event) -> Enforcement:
        d = ev.data
        if int(d["gen"]) == 0 and int(d["policy_idx"]) == 0xFFFFFFFF:
            pol, pid = None, "response-block"  # a block_address response action (generation 0 entries)
        else:
            pol, pid = self.policy_of(int(d["gen"]), int(d["policy_idx"]))
        kind = int(d["kind"])
        action = KERNEL_ACTIONS.get(int(d["action"]), "unknown")
        result = int(d["result"])
        data: dict[str, object] = {"generation": int(d["gen"])}
        if kind == ENF_EXEC:
            target = (d.get("filename") or d.get("path") or b"").decode("utf-8", "surrogateescape")
            data.update(exe=d["path"].decode("utf-8", "surrogateescape"), dev=d["dev"], ino=d["ino"],
                        igen=d["igen"], match={1: "identity", 2: "path prefix", 3: "script path"}.get(
                            int(d["match"]), str(d["match"])))
        elif kind in (ENF_BPF, ENF_MODULE):
            target = "bpf(BPF_PROG_LOAD)" if kind == ENF_BPF else f"module load (syscall {d['aux']})"
            data.update(exe=d["path"].decode("utf-8", "surrogateescape"), dev=d["dev"], ino=d["ino"])
        elif kind == ENF_CONNECT:
            target = f"{address_text(int(d['family']), d['addr'])}:{int(d['port'])}"
            data.update(attempts=max(1, int(d.get("count", 1))), protocol=int(d.get("protocol", 0)))
        elif kind == ENF_INBOUND:
            target = address_text(int(d["family"]), d["addr"])
            data.update(ifindex=int(d["ifindex"]), packets=int(d["count"]), protocol=int(d["protocol"]))
        else:
            target = "?"
        mode = pol.mode if pol is not None else ("enforce" if action != ACTION_AUDIT else "audit")
        error = None
        ok = result == 0
        if result == -1 and action == ACTION_AUDIT and mode == "enforce":
            error = "protected process (PID 1, kernel thread, the agent or a safe executable): not acted on"
        elif result < 0:
            error = os.strerror(-result)
        return Enforcement(policy_id=pid, mode=mode, action=action, mechanism=KERNEL_MECH.get(kind, "kernel"),
                           target=target, ok=ok, error=error, time_ns=ev.ts_ns, proc=dict(ev.proc), data=data)

    def status(self) -> dict[str, Any]:
        st: dict[str, Any] = {
            "policies": len(self.policies.policies), "applies": self.applies,
            "apply_failures": self.apply_failures, "install": self.install_state,
            "pin_root": str(self.kernel.pin_root), "problems": self.problems,
        }
        if self.kernel._fds:
            try:
                s = self.kernel.read_state()
                st.update(armed=bool(s.armed), generation=s.active_gen, kernel=self.kernel.stats())
            except EnforceError:
                pass
        if self._fan is not None:
            st["fanotify"] = self._fan.stats()
        return st


def _self_proc() -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "tid": pid, "ppid": os.getppid(), "ns_pid": pid, "uid": os.getuid(), "euid": os.geteuid(),
            "gid": os.getgid(), "egid": os.getegid(), "loginuid": 0xFFFFFFFF, "sessionid": 0xFFFFFFFF,
            "mnt_ns": 0, "pid_ns": 0, "net_ns": 0, "cgroup_id": 0, "start_ns": 0, "parent_start_ns": 0,
            "comm": b"sentinel-edge"}


def _event_of(enf: Enforcement) -> Event:
    """An Event for a decision made in user space (fanotify, response actions), so it is enriched like others."""
    proc: dict[str, Any] = {k: 0 for k in ("pid", "tid", "ppid", "ns_pid", "uid", "euid", "gid", "egid", "mnt_ns",
                                           "pid_ns", "net_ns", "cgroup_id", "start_ns", "parent_start_ns")}
    proc.update({"loginuid": 0xFFFFFFFF, "sessionid": 0xFFFFFFFF, "comm": b""})
    for k, v in enf.proc.items():
        if k in proc:
            proc[k] = v.encode() if k == "comm" and isinstance(v, str) else v
    ts = enf.time_ns or time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    return Event(kind="enforce", type_id=50, ts_ns=ts, cpu=0, proc=proc,
                 data={"kind": 0, "action": 0, "result": 0, "policy_idx": 0, "gen": 0, "match": 0,
                       "path": os.fsencode(str(enf.data.get("exe", ""))), "filename": os.fsencode(enf.target),
                       "policy_id": enf.policy_id,
                       "uspace": {"policy_id": enf.policy_id, "mode": enf.mode, "action": enf.action, "ok": enf.ok,
                                  "target": enf.target, "mechanism": enf.mechanism, "error": enf.error,
                                  **{k: v for k, v in enf.data.items() if isinstance(v, (str, int, bool))}}})
