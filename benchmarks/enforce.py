"""Added cost of enforcement on the exec, open and connect loops (prints figures; not a test).

    sudo .venv/bin/python benchmarks/enforce.py [--rounds 5] [--quick] [--no-fanotify-exec]

The loops, their sizes and the statistics are those of benchmarks/overhead.py
(imported, not copied). Each round runs the three loops in each
configuration, in an order that changes from round to round:

  none        no agent, no enforcement
  agent       the agent (default config, as overhead.py starts it; no policy files)
  enforce     the agent plus enforcement set up by this script in its own pin
              root (/sys/fs/bpf/se-bench-<pid>), with deny entries none of
              which matches what the loops do:
              - exec: 10,000 identities (dev, ino, generation) on devices no
                mount has, and 10,000 entries in the path prefix trie (5,000
                directory prefixes under /nonexistent/, 5,000 whole paths
                under /usr/bin/ that do not exist, so the trie walk for
                /usr/bin/true goes deep): every exec does one hash lookup and
                two trie lookups;
              - connect: 10,000 /32s in 198.18.0.0/15 (a benchmarking range;
                no traffic is ever sent there, the loop connects to
                127.0.0.1), connect4/6 on the cgroup v2 root;
              - open: fanotify FAN_OPEN_PERM inode marks on 100 protected files
                of a temporary directory; the loop opens another file of that
                directory, so it measures what installed marks cost an
                unprotected open.
              The exec policy goes to the kernel only.
  enforce-fx  the same, and the exec policy also given to fanotify: its
              prefixes put FAN_OPEN_EXEC_PERM marks on the filesystems under
              them, so every exec there is decided in user space (in this
              process). The agent does not do that for prefixes (they stay in
              the kernel) but does for sha256 policies: this is their cost.
              Left out with --no-fanotify-exec.

Before and after the loops of every enforcing configuration, probes prove the
enforcement measured was live: a copy of /bin/true under a denied prefix is
killed (or refused), cat of a protected file is refused, a connect to
127.89.0.7:9 (denied by one more policy) fails with EPERM; and the kernel's hit
counter must not move during the loops (nothing the loops do may match).

Prints the median of the per-round ratios to "none" and to "agent" per loop,
with a bootstrap 95% interval. Traffic goes to loopback only; every loop is
bounded in count and time; pins, marks and processes are removed in
``finally`` (pin roots left by a killed run are removed at the next start).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

# overhead.py is a sibling module (this directory is sys.path[0]); importing it puts tests/ on sys.path
from overhead import bootstrap_ci, build_loops, workloads

from conftest import start_agent, stop_agent
from sentinel_edge.enforce.identity import mount_devices
from sentinel_edge.enforce.kernel import (
    EnfIdentKey,
    EnfMatchVal,
    EnforceKernel,
    KernelPlan,
    close_prefixes,
    plan_policies,
)
from sentinel_edge.enforce.model import ConnectDeny, Enforcement, ExecDeny, FileDeny, Policy, PolicySet

ENTRIES = 10_000
PROTECTED_FILES = 100
CONNECT_NET = ipaddress.IPv4Network("198.18.0.0/15")  # RFC 2544 benchmarking range: entries only, never a destination
CONNECT_PROBE = ("127.89.0.7", 9)                     # denied by its own policy; loopback, nothing listens
PIN_PREFIX = "se-bench-"
BPFFS = Path("/sys/fs/bpf")
# the agent as overhead.py runs it (default config), with no policy files whatever the default policy directory holds
AGENT_CONFIG = "enforce:\n  policies: []\n"
LOOPS = ("exec", "open", "connect")

Planner = Callable[[PolicySet, dict[str, int], KernelPlan], None]
Teardown = Callable[[], None]


# -- the policies ---------------------------------------------------------------------------

def exec_policy(probe_dir: Path) -> Policy:
    """An exec-deny policy whose prefixes match nothing the loops run, plus the probe's directory."""
    prefixes = [f"/nonexistent/se-bench/d{i:05d}/" for i in range(ENTRIES // 2)]
    prefixes += [f"/usr/bin/se-bench-absent-{i:05d}" for i in range(ENTRIES - len(prefixes))]
    for p in prefixes:
        if os.path.lexists(p):
            raise SystemExit(f"{p} exists: this benchmark's deny entries must match nothing")
    prefixes.append(f"{probe_dir}/")
    return Policy(id="bench-exec", kind="exec", mode="enforce", spec=ExecDeny(prefixes=tuple(prefixes)))


def add_exec_identities(plan: KernelPlan, n: int, seed: int = 11) -> int:
    """n identity entries for the exec policy on devices no mount of this host has (so none can match)."""
    idx = plan.index["bench-exec"]
    taken = set(mount_devices().values())
    rnd = random.Random(seed)
    table = plan.entries.setdefault("se_enf_exec_ident", {})
    before = len(table)
    for _ in range(n * 4):  # bounded; collisions are rare
        if len(table) - before >= n:
            break
        dev = os.makedev(rnd.randrange(240, 255), rnd.randrange(0, 1 << 20))
        if dev in taken:
            continue
        val = EnfMatchVal()
        val.n = 1
        val.idx[0] = idx
        val.igen = rnd.randrange(1, 1 << 32)
        val.has_igen = 1
        plan.add("se_enf_exec_ident", EnfIdentKey(0, dev, rnd.randrange(1 << 20, 1 << 40)), val)
    return len(table) - before


def connect_policies() -> list[Policy]:
    nets = tuple(ipaddress.IPv4Network((int(CONNECT_NET.network_address) + 2 * i + 1, 32)) for i in range(ENTRIES))
    assert all(n.subnet_of(CONNECT_NET) for n in nets)
    probe = ipaddress.ip_network(f"{CONNECT_PROBE[0]}/32")
    return [Policy(id="bench-connect", kind="connect", mode="enforce", spec=ConnectDeny(networks=nets)),
            Policy(id="bench-connect-probe", kind="connect", mode="enforce",
                   spec=ConnectDeny(networks=(probe,), ports=(CONNECT_PROBE[1],)))]


# -- the optional parts (each may be missing while it is being written) ------------------------

@dataclass
class Part:
    """What one enforcement mechanism adds to the "enforce" configurations."""

    name: str
    measured: bool
    what: str                                               # what is installed, or why it is not
    policies: list[Policy] = field(default_factory=list)    # kernel policies (planned once)
    planners: list[Planner] = field(default_factory=list)   # extra= for plan_policies
    install: Callable[[EnforceKernel, PolicySet, bool], Teardown] | None = None  # (kernel, set, fx) -> teardown
    check: Callable[[], str | None] | None = None           # None when live, else what is wrong


def connect_part() -> Part:
    try:
        from sentinel_edge.enforce import netmaps
    except ImportError as exc:
        return Part("connect", False, f"NOT measured: sentinel_edge.enforce.netmaps cannot be imported ({exc})")

    def install(k: EnforceKernel, pset: PolicySet, _fx: bool) -> Teardown:
        sync = netmaps.sync_network(k, pset)
        if not sync.connect or sync.problems:
            raise SystemExit(f"connect programs not attached: {sync}")
        return lambda: None  # uninstall removes the link pins

    def check() -> str | None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            try:
                s.connect(CONNECT_PROBE)
            except PermissionError:
                return None
            except OSError as exc:
                return f"connect to {CONNECT_PROBE} gave {errno.errorcode.get(exc.errno or 0, exc)}, not EPERM"
        return f"connect to {CONNECT_PROBE} succeeded"

    return Part("connect", True,
                f"{ENTRIES} /32s of {CONNECT_NET} in se_enf_conn4, connect4/6 on the cgroup v2 root "
                f"(probe: {CONNECT_PROBE[0]}:{CONNECT_PROBE[1]} must fail with EPERM)",
                connect_policies(), [netmaps.plan_network], install, check)


def fanotify_part(protect_dir: Path) -> Part:
    try:
        from sentinel_edge.enforce.fanotify import FanotifyEnforcer
    except ImportError as exc:
        return Part("open", False, f"NOT measured: sentinel_edge.enforce.fanotify cannot be imported ({exc})")
    files = [protect_dir / f"p{i:03d}" for i in range(PROTECTED_FILES)]
    for f in files:
        f.write_text("secret")
    protect = Policy(id="bench-protect", kind="file", mode="enforce",
                     spec=FileDeny(paths=tuple(str(f) for f in files)))

    def install(_k: EnforceKernel, pset: PolicySet, fx: bool) -> Teardown:
        reports: list[Enforcement] = []
        enf = FanotifyEnforcer(reports.append)  # runs in this process, which it exempts
        try:
            enf.apply(PolicySet((protect, *(p for p in pset.policies if fx and p.kind == "exec"))))
            enf.start()
            st = enf.stats()
            if enf.problems or st["marks_inode"] != PROTECTED_FILES or bool(st["marks_fs"]) != fx:
                raise SystemExit(f"fanotify marks not as planned: {st}, problems {enf.problems}")
        except BaseException:
            enf.stop()
            raise
        return enf.stop

    def check() -> str | None:
        res = subprocess.run(["/bin/cat", str(files[0])], capture_output=True, text=True, timeout=10, check=False)
        if res.returncode != 0 and "not permitted" in res.stderr:
            return None
        return f"cat of a protected file gave {res.returncode} {res.stderr.strip()!r}"

    return Part("open", True,
                f"fanotify FAN_OPEN_PERM inode marks on {PROTECTED_FILES} protected files in {protect_dir}; "
                "the open loop opens another file of that directory (probe: cat of a protected file is refused)",
                [], [], install, check)


def exec_check(probe: Path) -> Callable[[], str | None]:
    def check() -> str | None:
        try:
            res = subprocess.run([str(probe)], timeout=10, check=False)
        except PermissionError:
            return None  # refused by fanotify (enforce-fx) before the kernel saw it
        return None if res.returncode == -signal.SIGKILL else f"{probe} exited with {res.returncode}, not SIGKILL"
    return check


# -- one configuration --------------------------------------------------------------------

@dataclass
class Setup:
    loops: str
    tmp: Path
    quick: bool
    plan: KernelPlan
    pset: PolicySet
    parts: list[Part]
    target: Path
    pin_root: str
    obj_path: str | None = None
    hits: dict[str, list[int]] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def held_interrupts() -> Iterator[None]:
    """SIGINT/SIGTERM are noted, not raised, inside; raised on leaving (a mask would be inherited by children)."""
    got: list[int] = []
    old = {sig: signal.signal(sig, lambda n, _f: got.append(n)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
    if got:
        raise KeyboardInterrupt


def check_live(parts: list[Part], when: str) -> None:
    for p in parts:
        if p.measured and p.check is not None:
            wrong = p.check()
            if wrong is not None:
                raise SystemExit(f"{p.name} enforcement is not live {when}: {wrong}")


def run_config(s: Setup, mode: str, label: str) -> dict[str, float]:
    with contextlib.ExitStack() as undo:  # every undo step runs, last set up first, even when one fails
        adir = s.tmp / f"agent-{label}"
        undo.callback(shutil.rmtree, adir, ignore_errors=True)
        k: EnforceKernel | None = None
        if mode != "none":
            adir.mkdir()
            with held_interrupts():  # an interrupt never leaves an agent we have no handle of
                handle = start_agent(adir, AGENT_CONFIG)
                undo.callback(stop_agent, handle, read_output=False)
        if mode.startswith("enforce"):
            k = EnforceKernel(pin_root=s.pin_root, obj_path=s.obj_path)
            undo.callback(k.uninstall)
            k.open(agent_pid=handle.proc.pid)  # the agent is never killed, as when it installs enforcement
            k.apply(s.plan)
            for p in s.parts:
                if p.measured and p.install is not None:
                    undo.callback(p.install(k, s.pset, mode == "enforce-fx"))
            check_live(s.parts, "before the loops")
        hits0 = k.stats()["hits"] if k is not None else 0
        time.sleep(0.5)
        out = workloads(s.loops, s.quick, free_port(), str(s.target))
        if k is not None:
            s.hits.setdefault(mode, []).append(k.stats()["hits"] - hits0)
            check_live(s.parts, "after the loops")
        return out


# -- rounds -------------------------------------------------------------------------------

def ratio_cell(num: list[float], den: list[float]) -> str:
    rs = [a / b for a, b in zip(num, den, strict=True)]
    lo, hi = bootstrap_ci(rs)
    return f"x{statistics.median(rs):.3f} [{lo:.3f}, {hi:.3f}]"


def measure(s: Setup, configs: tuple[str, ...], rounds: int) -> None:
    res: dict[str, dict[str, list[float]]] = {c: {w: [] for w in LOOPS} for c in configs}
    enforcing = [c for c in configs if c.startswith("enforce")]
    for r in range(rounds):
        n = r % len(configs)
        order = configs[n:] + configs[:n]  # each configuration first in turn, every other round reversed
        if r % 2:
            order = order[::-1]
        for mode in order:
            for w, v in run_config(s, mode, f"{r}-{mode}").items():
                res[mode][w].append(v)
        print(f"  round {r + 1}/{rounds} ({' -> '.join(order)}): " + "; ".join(
            f"{c} " + ", ".join(f"{w} x{res[c][w][-1] / res['none'][w][-1]:.3f}" for w in LOOPS)
            for c in configs[1:]) + "  (to none)", flush=True)
    print(f"\nenforcement overhead, {rounds} interleaved rounds, median of per-round ratios [95% bootstrap CI]:")
    cols = [(c, "none") for c in enforcing] + [(c, "agent") for c in enforcing] + [("agent", "none")]
    print(f"  {'loop':<8} {'baseline':>11}  " + " ".join(f"{a + ' / ' + b:<26}" for a, b in cols))
    for w in LOOPS:
        base = statistics.median(res["none"][w]) / 1000
        print(f"  {w:<8} {base:>8.2f} us  " + " ".join(f"{ratio_cell(res[a][w], res[b][w]):<26}" for a, b in cols))
    for c in enforcing:
        print(f"  kernel enforcement hits during the loops ({c}), per round: {s.hits.get(c, [])} (must be 0)")


# -- cleanup of this benchmark's pins -----------------------------------------------------

def remove_pin_root(root: Path, obj_path: str | None = None) -> None:
    try:
        EnforceKernel(pin_root=str(root), obj_path=obj_path).uninstall()
    except Exception as exc:  # best effort; say what is left
        print(f"warning: could not remove {root}: {exc}", file=sys.stderr)


def stale_pin_roots() -> list[Path]:
    """Pin roots of earlier runs of this benchmark that were killed (their pid is gone)."""
    out = []
    for p in BPFFS.glob(f"{PIN_PREFIX}*"):
        pid = p.name[len(PIN_PREFIX):]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            out.append(p)
    return out


def other_enforcement() -> list[str]:
    """Enforcement links pinned by someone else (they would add their cost to every configuration)."""
    return sorted(str(p) for p in BPFFS.glob("**/links/enforce_*"))


def _term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def prepare(tmp: Path, quick: bool, with_fx: bool, obj_path: str | None,
            pin_root: Path) -> tuple[Setup, tuple[str, ...]]:
    loops = build_loops(tmp)
    probe_dir = tmp / "deny"
    probe_dir.mkdir()
    probe = probe_dir / "true"
    shutil.copy2("/bin/true", probe)
    protect_dir = tmp / "protected"
    protect_dir.mkdir()
    target = protect_dir / "target.txt"
    target.write_text("x")
    fan = fanotify_part(protect_dir)
    parts = [Part("exec", True, "", [exec_policy(probe_dir)], check=exec_check(probe)), fan, connect_part()]
    pset = PolicySet(tuple(p for part in parts if part.measured for p in part.policies))
    t0 = time.monotonic()
    plan = plan_policies(pset, extra=[fn for part in parts if part.measured for fn in part.planners])
    idents = add_exec_identities(plan, ENTRIES)
    t1 = time.monotonic()
    close_prefixes(plan)
    t2 = time.monotonic()
    if plan.problems:
        raise SystemExit(f"planning problems: {plan.problems}")
    parts[0].what = (f"{idents} identities on devices no mount has, "
                     f"{len(pset.policies[0].spec.prefixes) - 1} prefixes/paths that do not exist "  # type: ignore[union-attr]
                     f"(probe: {probe} must be killed)")
    sizes = {name: len(table) for name, table in sorted(plan.entries.items())}
    print(f"kernel maps: {sizes} (planned in {t1 - t0:.2f} s, close_prefixes {t2 - t1:.2f} s)")
    for part in parts:
        print(f"{part.name}: {part.what}")
    configs: tuple[str, ...] = ("none", "agent", "enforce")
    if with_fx and fan.measured:
        configs += ("enforce-fx",)
    print(f"configurations: {', '.join(configs)}; loops: overhead.py workloads{' (--quick sizes)' if quick else ''}")
    return Setup(loops, tmp, quick, plan, pset, parts, target, str(pin_root), obj_path), configs


def main() -> int:
    ap = argparse.ArgumentParser(description="Added cost of enforcement on the exec, open and connect loops")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smaller loops (for a smoke run)")
    ap.add_argument("--no-fanotify-exec", action="store_true",
                    help="leave out the enforce-fx configuration (exec policy also given to fanotify)")
    ap.add_argument("--object", help="enforcement object to load (default: the package's _bpf/enforce.bpf.o)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 2
    if args.rounds < 1:
        print("--rounds must be at least 1", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _term)
    for p in stale_pin_roots():
        print(f"removing {p} (left by a killed run of this benchmark)")
        remove_pin_root(p, args.object)
    others = other_enforcement()
    if others:
        print(f"warning: enforcement is attached by someone else ({', '.join(others[:4])}); "
              "its cost is in every configuration")
    pin_root = BPFFS / f"{PIN_PREFIX}{os.getpid()}"
    try:
        with tempfile.TemporaryDirectory(prefix="se-bench-enf-") as d:
            s, configs = prepare(Path(d), args.quick, not args.no_fanotify_exec, args.object, pin_root)
            measure(s, configs, args.rounds)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if pin_root.exists():
            remove_pin_root(pin_root, args.object)
    return 0


if __name__ == "__main__":
    sys.exit(main())
