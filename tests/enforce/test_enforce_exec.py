"""Kernel exec deny and kernel-tamper deny (enforce.bpf.o, pinned), on the real kernel.

Every test applies its own policy set to one pinned installation of the
module (its own pin root), and the fixture uninstalls it at the end.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sentinel_edge.enforce.identity import identity_of_path
from sentinel_edge.enforce.kernel import (
    MIRRORS,
    EnforceKernel,
    close_prefixes,
    plan_policies,
)
from sentinel_edge.enforce.model import ExecDeny, KernelDeny, Policy, PolicySet, Scope
from sentinel_edge.model import Event
from sentinel_edge.wire.decode import Decoder

pytestmark = pytest.mark.kernel

PIN = f"/sys/fs/bpf/se-test-exec-{os.getpid()}"
KIND_EXEC, KIND_BPF, KIND_MODULE = 1, 2, 3
ACT_AUDIT, ACT_KILL = 0, 1
BY_IDENTITY, BY_PREFIX, BY_FILENAME, BY_ALLOWLIST = 1, 2, 3, 5

Take = Callable[..., list[Event]]


@pytest.fixture(scope="module")
def kern() -> Iterator[EnforceKernel]:
    k = EnforceKernel(pin_root=PIN)
    try:
        assert k.open(agent_pid=os.getpid()) == "installed"
        yield k
    finally:
        k.uninstall()
    assert not Path(PIN).exists()


@pytest.fixture
def drain(kern: EnforceKernel) -> Iterator[Take]:
    dec = Decoder(kern.btf)
    ring = kern.ring()
    ring.drain([])  # what earlier tests left

    def take(n: int = 1, timeout: float = 5.0) -> list[Event]:
        out: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            ring.drain(out)
            time.sleep(0.01)
        return [dec.decode(r) for r in out]

    yield take
    kern.clear()


@pytest.fixture
def pubdir() -> Iterator[Path]:
    """A directory other users can reach (pytest's tmp_path is root-only)."""
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="se-enf-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d)


def _apply(kern: EnforceKernel, *policies: Policy) -> None:
    plan = plan_policies(PolicySet(policies=policies))
    close_prefixes(plan)
    assert plan.problems == []
    kern.apply(plan)


def _deny(pid: str, mode: str = "enforce", **spec: Any) -> Policy:
    return Policy(id=pid, kind="exec", mode=mode, spec=ExecDeny(**spec))  # type: ignore[arg-type]


def _touch_copy(tmp: Path, name: str = "tch") -> Path:
    p = tmp / name
    shutil.copy("/usr/bin/touch", p)
    return p


def _check(ev: Event, *, pid: int, path: Path, filename: str, match: int, policy_idx: int = 0,
           action: int = ACT_KILL) -> None:
    ident = identity_of_path(path)
    assert ev.kind == "enforce"
    d = ev.data
    assert d["kind"] == KIND_EXEC
    assert d["action"] == action
    assert d["result"] == 0
    assert d["policy_idx"] == policy_idx
    assert d["match"] == match
    assert d["gen"] >= 1
    assert (d["dev"], d["ino"]) == (ident.dev, ident.ino)
    assert d["igen"] == (ident.gen or 0)
    assert d["path"] == os.fsencode(os.path.realpath(path))
    assert d["filename"] == os.fsencode(filename)
    assert ev.proc["pid"] == pid
    assert ev.proc["uid"] == os.getuid()
    assert ev.proc["ppid"] == os.getpid()


def test_wire_mirrors_match_the_btf(kern: EnforceKernel) -> None:
    for name, cls in MIRRORS.items():
        t = kern.btf.struct(name)
        assert t.size_or_type == ctypes.sizeof(cls), name
        offsets = {m: bit // 8 for m, _, bit in t.members}
        for fname, *_ in cls._fields_:
            assert offsets[fname] == getattr(cls, fname).offset, f"{name}.{fname}"
        assert set(offsets) == {f[0] for f in cls._fields_}, name


def test_denied_binary_dies_before_its_first_side_effect(kern: EnforceKernel, drain: Take, tmp_path: Path) -> None:
    exe = _touch_copy(tmp_path)
    _apply(kern, _deny("no-touch", files=(str(exe),)))
    marker = tmp_path / "marker"
    p = subprocess.Popen([str(exe), str(marker)])
    assert p.wait(10) == -signal.SIGKILL
    assert not marker.exists()
    (ev,) = drain(1)
    _check(ev, pid=p.pid, path=exe, filename=str(exe), match=BY_IDENTITY)
    # an unrelated binary still runs
    assert subprocess.run(["/usr/bin/touch", str(marker)]).returncode == 0
    assert drain(1, timeout=0.3) == []


def test_symlink_hard_link_and_relative_path_are_the_same_file(kern: EnforceKernel, drain: Take,
                                                                tmp_path: Path) -> None:
    exe = _touch_copy(tmp_path)
    _apply(kern, _deny("no-touch", files=(str(exe),)))
    (tmp_path / "sym").symlink_to(exe)
    os.link(exe, tmp_path / "hard")
    cases: list[tuple[str, Path | None]] = [(str(tmp_path / "sym"), None), (str(tmp_path / "hard"), None),
                                            ("./tch", tmp_path)]
    for argv0, cwd in cases:
        marker = tmp_path / f"m-{Path(argv0).name}"
        p = subprocess.Popen([argv0, str(marker)], cwd=cwd)
        assert p.wait(10) == -signal.SIGKILL, argv0
        assert not marker.exists()
        (ev,) = drain(1)
        assert ev.data["match"] == BY_IDENTITY
        assert ev.data["filename"] == os.fsencode(argv0)
        assert ev.proc["pid"] == p.pid
        # the resolved path is the name the kernel went through (a hard link is a name of its own)
        want = tmp_path / "hard" if argv0.endswith("hard") else exe
        assert ev.data["path"] == os.fsencode(want)


def test_a_new_file_at_a_reused_inode_number_is_not_the_denied_file(kern: EnforceKernel, drain: Take,
                                                                    tmp_path: Path) -> None:
    exe = _touch_copy(tmp_path)
    ident = identity_of_path(exe)
    _apply(kern, _deny("no-touch", files=(str(exe),)))
    exe.unlink()
    # ext4 hands the inode number out again; the generation differs
    for i in range(20):
        again = _touch_copy(tmp_path, f"again{i}")
        if identity_of_path(again).ino == ident.ino:
            break
    else:
        pytest.skip("the filesystem did not reuse the inode number")
    new = identity_of_path(again)
    assert new.gen is not None and new.gen != ident.gen
    assert subprocess.run([str(again), str(tmp_path / "m")]).returncode == 0
    assert drain(1, timeout=0.3) == []


def test_prefix_denies_files_that_did_not_exist_and_scripts_by_path(kern: EnforceKernel, drain: Take,
                                                                     tmp_path: Path) -> None:
    d = tmp_path / "drop"
    d.mkdir()
    _apply(kern, _deny("no-drop", prefixes=(f"{d}/",)))
    exe = Path(shutil.copy("/usr/bin/touch", d / "payload"))  # created after the policy
    marker = tmp_path / "marker"
    p = subprocess.Popen([str(exe), str(marker)])
    assert p.wait(10) == -signal.SIGKILL
    assert not marker.exists()
    (ev,) = drain(1)
    _check(ev, pid=p.pid, path=exe, filename=str(exe), match=BY_PREFIX)
    # a #! script in the directory: the interpreter is what runs, the script path is what matches
    script = d / "run.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    p = subprocess.Popen([str(script)])
    assert p.wait(10) == -signal.SIGKILL
    assert not marker.exists()
    (ev,) = drain(1)
    assert ev.data["match"] == BY_FILENAME
    assert ev.data["filename"] == os.fsencode(script)
    assert ev.data["path"] == os.fsencode(os.path.realpath("/bin/sh"))
    # the same script by a relative path: joined with the cwd
    for argv0 in ("./run.sh", "run.sh"):  # execve("run.sh"): relative to the cwd, no PATH search
        p = subprocess.Popen([sys.executable, "-c", f"import os; os.execv({argv0!r}, [{argv0!r}])"], cwd=d)
        assert p.wait(10) == -signal.SIGKILL, argv0
        assert not marker.exists()
        (ev,) = drain(1)
        assert ev.data["match"] == BY_FILENAME, argv0
    # outside the prefix: runs
    outside = shutil.copy("/usr/bin/touch", tmp_path / "ok")
    assert subprocess.run([outside, str(marker)]).returncode == 0
    assert marker.exists()
    assert drain(1, timeout=0.3) == []


def test_whole_path_entry_is_not_a_prefix(kern: EnforceKernel, drain: Take, tmp_path: Path) -> None:
    exe = _touch_copy(tmp_path, "nc")
    longer = _touch_copy(tmp_path, "ncat")
    _apply(kern, _deny("no-nc", prefixes=(str(exe),)))
    assert subprocess.run([str(longer), str(tmp_path / "m")]).returncode == 0
    assert subprocess.run([str(exe), str(tmp_path / "m2")]).returncode == -signal.SIGKILL
    (ev,) = drain(1)
    assert ev.data["match"] == BY_PREFIX and ev.data["path"] == os.fsencode(exe)


def test_scope_users_and_parents(kern: EnforceKernel, drain: Take, pubdir: Path) -> None:
    tmp_path = pubdir
    exe = _touch_copy(tmp_path)
    _apply(kern, Policy(id="nobody-only", kind="exec", mode="enforce", spec=ExecDeny(files=(str(exe),)),
                        scope=Scope(users=(65534,))))
    assert subprocess.run([str(exe), str(tmp_path / "root-may")]).returncode == 0
    assert drain(1, timeout=0.3) == []
    p = subprocess.Popen([str(exe), "/tmp/never-created-by-nobody"], user=65534)
    assert p.wait(10) == -signal.SIGKILL
    (ev,) = drain(1)
    assert ev.proc["uid"] == 65534 and ev.data["action"] == ACT_KILL
    # parents: only children of a given executable (a copy of sh)
    sh = str(shutil.copy("/bin/sh", tmp_path / "parent-sh"))
    _apply(kern, Policy(id="from-sh", kind="exec", mode="enforce", spec=ExecDeny(files=(str(exe),)),
                        scope=Scope(parents=(sh,))))
    assert subprocess.run([str(exe), str(tmp_path / "direct")]).returncode == 0
    r = subprocess.run([sh, "-c", f"{exe} {tmp_path}/via-sh; echo rc=$?"], capture_output=True, text=True)
    assert "rc=137" in r.stdout
    assert not (tmp_path / "via-sh").exists()
    (ev,) = drain(1)
    assert ev.data["policy_idx"] == 0 and ev.data["action"] == ACT_KILL


def test_audit_reports_and_lets_it_run_and_the_kill_switch_disarms(kern: EnforceKernel, drain: Take,
                                                                    tmp_path: Path) -> None:
    exe = _touch_copy(tmp_path)
    _apply(kern, _deny("watch-touch", mode="audit", files=(str(exe),)))
    p = subprocess.Popen([str(exe), str(tmp_path / "a")])
    assert p.wait(10) == 0
    (ev,) = drain(1)
    _check(ev, pid=p.pid, path=exe, filename=str(exe), match=BY_IDENTITY, action=ACT_AUDIT)
    _apply(kern, _deny("no-touch", files=(str(exe),)))
    kern.set_armed(False)
    try:
        p = subprocess.Popen([str(exe), str(tmp_path / "b")])
        assert p.wait(10) == 0
        (ev,) = drain(1)
        assert ev.data["action"] == ACT_AUDIT
    finally:
        kern.set_armed(True)
    assert subprocess.run([str(exe), str(tmp_path / "c")]).returncode == -signal.SIGKILL
    assert drain(1)[0].data["action"] == ACT_KILL


def test_switching_audit_to_enforce_under_load_misses_nothing(kern: EnforceKernel, drain: Take,
                                                              tmp_path: Path) -> None:
    exe = _touch_copy(tmp_path)
    results: dict[int, int] = {}
    stop = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 20
        while not stop.is_set() and len(results) < 400 and time.monotonic() < deadline:
            p = subprocess.Popen([str(exe), str(tmp_path / "x")])
            results[p.pid] = p.wait(10)

    _apply(kern, _deny("p", mode="audit", files=(str(exe),)))
    t = threading.Thread(target=load)
    t.start()
    try:
        for i in range(10):  # flip the mode ten times while execs run
            time.sleep(0.05)
            _apply(kern, _deny("p", mode="enforce" if i % 2 == 0 else "audit", files=(str(exe),)))
    finally:
        stop.set()
        t.join(30)
    events = drain(len(results), timeout=10)
    by_pid = {e.proc["pid"]: e for e in events}
    assert len(results) >= 10
    assert set(by_pid) == set(results), "an exec passed without a decision"
    for pid, rc in results.items():
        assert by_pid[pid].data["action"] == (ACT_KILL if rc == -signal.SIGKILL else ACT_AUDIT), pid
        assert rc in (0, -signal.SIGKILL)


def test_enforcement_outlives_the_process_that_installed_it(tmp_path: Path) -> None:
    """kill -9 of the installing process: exec enforcement stays; a new process adopts it."""
    pin = f"/sys/fs/bpf/se-test-exec-survive-{os.getpid()}"
    exe = _touch_copy(tmp_path)
    code = (
        "import os, signal\n"
        "from sentinel_edge.enforce.kernel import EnforceKernel, plan_policies\n"
        "from sentinel_edge.enforce.model import ExecDeny, Policy, PolicySet\n"
        f"k = EnforceKernel(pin_root={pin!r}); k.open(agent_pid=os.getpid())\n"
        "k.apply(plan_policies(PolicySet(policies=(Policy(id='p', kind='exec', mode='enforce', "
        f"spec=ExecDeny(files=({str(exe)!r},))),))))\n"
        "print('ready', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    try:
        assert r.returncode == -signal.SIGKILL, r.stderr
        assert r.stdout == "ready\n"
        assert subprocess.run([str(exe), str(tmp_path / "m")]).returncode == -signal.SIGKILL
        assert not (tmp_path / "m").exists()
        k = EnforceKernel(pin_root=pin)
        try:
            assert k.open(agent_pid=os.getpid()) == "adopted"
            assert k.read_state().active_gen == 1
            assert k.read_state().agent_tgid == os.getpid()
            assert k.stats()["kills"] >= 1
            assert "enforce_exec" in k.pinned_links()
        finally:
            k.uninstall()
        assert subprocess.run([str(exe), str(tmp_path / "m")]).returncode == 0
    finally:
        EnforceKernel(pin_root=pin).uninstall()


BPF_PROG_LOAD_CODE = (
    "import ctypes\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "attr = ctypes.create_string_buffer(128)\n"
    "r = libc.syscall(321, 5, attr, 128)\n"  # bpf(BPF_PROG_LOAD, zeroed attr): fails if let through
    "print('returned', r, ctypes.get_errno(), flush=True)\n"
)


def test_bpf_load_by_a_program_not_on_the_allow_list_is_killed(kern: EnforceKernel, drain: Take) -> None:
    py = os.path.realpath("/usr/bin/python3")  # reachable by uid 65534 (the venv's is under /root)
    _apply(kern, Policy(id="no-bpf", kind="kernel", mode="enforce",
                        spec=KernelDeny(module_load=False, bpf_load=True, allow=("/usr/bin/true",)),
                        scope=Scope(users=(65534,))))
    p = subprocess.Popen([py, "-c", BPF_PROG_LOAD_CODE], user=65534, stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate(timeout=30)
    assert p.returncode == -signal.SIGKILL
    assert "returned" not in out
    (ev,) = drain(1)
    ident = identity_of_path(py)
    assert ev.data["kind"] == KIND_BPF and ev.data["action"] == ACT_KILL and ev.data["result"] == 0
    assert ev.data["match"] == BY_ALLOWLIST and ev.data["aux"] == 5
    assert (ev.data["dev"], ev.data["ino"]) == (ident.dev, ident.ino)
    assert ev.data["path"] == os.fsencode(py)
    assert ev.proc["pid"] == p.pid and ev.proc["uid"] == 65534
    # the same program on the allow list: the syscall goes on (and fails for the unprivileged user)
    _apply(kern, Policy(id="no-bpf", kind="kernel", mode="enforce",
                        spec=KernelDeny(module_load=False, bpf_load=True, allow=(py,)),
                        scope=Scope(users=(65534,))))
    r = subprocess.run([py, "-c", BPF_PROG_LOAD_CODE], user=65534, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("returned -1")
    assert drain(1, timeout=0.3) == []


def test_module_loads_are_killed_through_the_fallback_when_tracepoints_are_missing(
        kern: EnforceKernel, drain: Take) -> None:
    has_tp = Path("/sys/kernel/tracing/events/syscalls/sys_enter_finit_module").exists()
    _apply(kern, Policy(id="no-modules", kind="kernel", mode="enforce",
                        spec=KernelDeny(module_load=True, bpf_load=False), scope=Scope(users=(65534,))))
    if not has_tp:
        assert kern.attach_program("enforce_module_fallback")
    try:
        code = "import ctypes; libc = ctypes.CDLL(None); print(libc.syscall(313, -1, b'', 0), flush=True)"
        p = subprocess.Popen(["/usr/bin/python3", "-c", code], user=65534, stdout=subprocess.PIPE, text=True)
        out, _ = p.communicate(timeout=30)
        assert p.returncode == -signal.SIGKILL and out == ""
        (ev,) = drain(1)
        assert ev.data["kind"] == KIND_MODULE and ev.data["action"] == ACT_KILL and ev.data["aux"] == 313
        assert ev.proc["pid"] == p.pid
    finally:
        kern.detach_program("enforce_module_fallback")


def test_scope_by_container_id_follows_the_container_cgroup(kern: EnforceKernel, drain: Take,
                                                            tmp_path: Path) -> None:
    """A container is its cgroup: a process moved into docker-<id>.scope is in scope, others are not."""
    from sentinel_edge.enforce.netmaps import cgroup2_root
    from sentinel_edge.enforce.stage import container_cgroups

    root = cgroup2_root()
    assert root is not None
    cid = os.urandom(32).hex()
    parent = Path(root) / f"se-test-{os.getpid()}"
    cg = parent / f"docker-{cid}.scope"
    cg.mkdir(parents=True)
    try:
        assert container_cgroups(cid[:12]) == [cg.stat().st_ino]
        exe = _touch_copy(tmp_path)
        plan = plan_policies(PolicySet(policies=(Policy(
            id="in-container", kind="exec", mode="enforce", spec=ExecDeny(files=(str(exe),)),
            scope=Scope(containers=(cid[:12],))),)), cgroups_of=container_cgroups)
        assert plan.problems == []
        kern.apply(plan)
        assert subprocess.run([str(exe), str(tmp_path / "host")]).returncode == 0
        script = f"echo $$ > {cg}/cgroup.procs && exec {exe} {tmp_path}/inside"
        p = subprocess.Popen(["/bin/sh", "-c", script])
        assert p.wait(10) == -signal.SIGKILL
        assert not (tmp_path / "inside").exists()
        (ev,) = drain(1)
        assert ev.proc["pid"] == p.pid and ev.proc["cgroup_id"] == cg.stat().st_ino
        assert ev.data["action"] == ACT_KILL
    finally:
        for d in (cg, parent):
            for _ in range(50):  # the killed process leaves its cgroup a moment after wait() returns
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)


def test_overlayfs_identity_is_the_overlay_file(kern: EnforceKernel, drain: Take, tmp_path: Path) -> None:
    """On overlayfs (containers) the kernel sees the overlay's superblock and inode, as the policy resolves it."""
    dirs = {n: tmp_path / n for n in ("lower", "upper", "work", "merged")}
    for d in dirs.values():
        d.mkdir()
    _touch_copy(dirs["lower"])
    opts = f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(dirs["merged"])], check=True)
    try:
        merged = dirs["merged"] / "tch"
        ident = identity_of_path(merged)
        assert ident.dev != os.stat(dirs["lower"] / "tch").st_dev
        _apply(kern, _deny("no-overlay-touch", files=(str(merged),)))
        p = subprocess.Popen([str(merged), str(tmp_path / "m")])
        assert p.wait(10) == -signal.SIGKILL
        (ev,) = drain(1)
        assert (ev.data["dev"], ev.data["ino"]) == (ident.dev, ident.ino)
        assert ev.data["match"] == BY_IDENTITY
        # the lower file itself is another file (another superblock)
        assert subprocess.run([str(dirs["lower"] / "tch"), str(tmp_path / "m2")]).returncode == 0
    finally:
        subprocess.run(["umount", str(dirs["merged"])], check=True)
