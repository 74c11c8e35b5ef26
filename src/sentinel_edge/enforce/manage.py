"""``sentinel-edge policy apply|list|remove|arm|disarm|status|uninstall``: enforcement at run time.

Policy files live in the policy directory (``enforce.policies``, by default
/etc/sentinel-edge/policies). ``apply`` validates files and copies them
there; a running agent sees the change and applies the new set atomically
(kernel generation flip, fanotify marks swapped). With no agent running,
``apply`` writes the kernel part itself into the pinned enforcement (and
says that fanotify-based policies wait for the agent). ``arm``/``disarm`` is
the kill switch of the pinned enforcement; ``uninstall`` detaches it all.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any, TextIO

from sentinel_edge import config
from sentinel_edge.errors import PolicyError, SentinelEdgeError

DEFAULT_DIR = config.DEFAULT_POLICY_DIR


def _cfg(args: argparse.Namespace) -> config.AgentConfig:
    return config.load(getattr(args, "config", None))


def _policy_dir(args: argparse.Namespace, cfg: config.AgentConfig) -> Path:
    if getattr(args, "dir", None):
        return Path(args.dir)
    return config.policy_dir(cfg)


def _agent_pid(args: argparse.Namespace) -> int | None:
    from sentinel_edge.agent import read_status

    try:
        st = read_status(Path(args.status_file) if getattr(args, "status_file", None) else None)
    except (SentinelEdgeError, OSError, ValueError):
        return None
    pid = st.get("pid")
    if not st.get("running") or not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="agent config file (for enforce.policies and enforce.pin_root)")
    p.add_argument("--status-file", help=argparse.SUPPRESS)


# ---------------------------------------------------------------- apply


def add_apply(sub: Any) -> None:
    p = sub.add_parser("apply", help="validate policy files and put them in force (atomically)")
    p.add_argument("paths", nargs="+", metavar="FILE")
    p.add_argument("--dir", help=f"policy directory (default: enforce.policies, else {DEFAULT_DIR})")
    _common(p)
    p.set_defaults(policy_fn=cmd_apply)


def cmd_apply(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sentinel_edge.enforce.policy import load_policy_files, policy_files

    cfg = _cfg(args)
    pdir = _policy_dir(args, cfg)
    files, errors = policy_files(args.paths)
    if errors:
        for e in errors:
            err.write(f"{e}\n")
        return 1
    existing = [q for q in policy_files([pdir])[0]] if pdir.is_dir() else []
    replaced = {f.name for f in files}
    try:  # the whole resulting set must validate (ids unique across files)
        pset = load_policy_files([*(q for q in existing if q.name not in replaced), *files])
    except PolicyError as exc:
        for e in exc.errors or [exc]:
            err.write(f"{e}\n")
        err.write("nothing applied\n")
        return 1
    pdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for f in files:
        tmp = pdir / f".{f.name}.tmp"
        shutil.copyfile(f, tmp)
        os.replace(tmp, pdir / f.name)  # atomic per file: the agent never reads half a file
    pid = _agent_pid(args)
    if pid is not None:
        os.kill(pid, signal.SIGHUP)
        out.write(f"{len(files)} file(s) copied to {pdir}; the agent (pid {pid}) applies {len(pset.policies)} "
                  "policies now\n")
        return 0
    from sentinel_edge.enforce.stage import EnforcementStage

    stage = EnforcementStage([pdir], pin_root=cfg.enforce.pin_root, watch=False, fanotify=False,
                             safe_executables=cfg.enforce.safe_executables)
    try:
        stage.start(os.getpid())
        stage.kernel.clear_agent()  # this command is not the agent: it exits now
    finally:
        stage.close()
    kernel_kinds = sum(1 for p in pset.policies if p.kind in ("exec", "connect", "inbound", "kernel"))
    out.write(f"{len(files)} file(s) copied to {pdir}; no agent runs: {kernel_kinds} kernel policies put in "
              f"force at {cfg.enforce.pin_root}")
    from sentinel_edge.enforce.model import ExecDeny
    waiting = [p.id for p in pset.policies if p.kind == "file" or (isinstance(p.spec, ExecDeny) and p.spec.sha256)]
    if waiting:
        out.write(f"; enforced by the agent only (fanotify): {', '.join(waiting)}")
    out.write("\n")
    return 0


# ---------------------------------------------------------------- remove


def add_remove(sub: Any) -> None:
    p = sub.add_parser("remove", help="remove a policy file (by file name or by the id of its only policy)")
    p.add_argument("name", help="file name in the policy directory, or a policy id")
    p.add_argument("--dir", help=f"policy directory (default: enforce.policies, else {DEFAULT_DIR})")
    _common(p)
    p.set_defaults(policy_fn=cmd_remove)


def cmd_remove(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sentinel_edge.enforce.policy import load_policy_files, policy_files

    cfg = _cfg(args)
    pdir = _policy_dir(args, cfg)
    files = policy_files([pdir])[0] if pdir.is_dir() else []
    target = next((f for f in files if f.name == args.name), None)
    if target is None:
        for f in files:
            try:
                ids = [p.id for p in load_policy_files([f]).policies]
            except PolicyError:
                continue
            if args.name in ids:
                if len(ids) > 1:
                    err.write(f"policy {args.name} is one of {len(ids)} in {f}: edit that file instead\n")
                    return 1
                target = f
                break
    if target is None:
        err.write(f"no policy file or policy id {args.name!r} in {pdir}\n")
        return 1
    target.unlink()
    pid = _agent_pid(args)
    if pid is not None:
        os.kill(pid, signal.SIGHUP)
        out.write(f"removed {target}; the agent (pid {pid}) applies the rest now\n")
        return 0
    from sentinel_edge.enforce.stage import EnforcementStage

    stage = EnforcementStage([pdir], pin_root=cfg.enforce.pin_root, watch=False, fanotify=False,
                             safe_executables=cfg.enforce.safe_executables)
    try:
        if stage.kernel.installed():
            stage.start(os.getpid())
            if not stage.policies.policies:
                stage.kernel.clear()
            stage.kernel.clear_agent()
    finally:
        stage.close()
    out.write(f"removed {target}; no agent runs: the kernel policies were re-applied\n")
    return 0


# ---------------------------------------------------------------- list / status


def _kernel(args: argparse.Namespace) -> Any:
    from sentinel_edge.enforce.kernel import EnforceKernel

    cfg = _cfg(args)
    k = EnforceKernel(pin_root=cfg.enforce.pin_root)
    if not k.installed():
        return None
    k._adopt_maps(tolerate_missing=True)
    return k


def add_list(sub: Any) -> None:
    p = sub.add_parser("list", help="the policies in force (kernel) and in the policy directory")
    p.add_argument("--json", action="store_true")
    p.add_argument("--dir", help=f"policy directory (default: enforce.policies, else {DEFAULT_DIR})")
    _common(p)
    p.set_defaults(policy_fn=cmd_list)


def cmd_list(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sentinel_edge.enforce.policy import load_policy_files, spec_summary

    cfg = _cfg(args)
    pdir = _policy_dir(args, cfg)
    rows: list[dict[str, Any]] = []
    if pdir.exists():
        try:
            for p in load_policy_files([pdir]).policies:
                rows.append({"id": p.id, "kind": p.kind, "mode": p.mode, "file": p.file, "what": spec_summary(p)})
        except PolicyError as exc:
            err.write(f"the policy directory has errors (the agent keeps the previous set):\n{exc}\n")
    k = _kernel(args)
    kernel: dict[str, Any] = {}
    if k is not None:
        try:
            st = k.read_state()
            active = k.active_policies()
            kernel = {"armed": bool(st.armed), "generation": st.active_gen, "agent_pid": st.agent_tgid,
                      "policies": {pid: ("enforce" if enf else "audit") for pid, enf in active.values()},
                      "links": k.pinned_links(), "counters": k.stats()}
        finally:
            k.close()
    if args.json:
        out.write(json.dumps({"directory": str(pdir), "policies": rows, "kernel": kernel}, indent=1) + "\n")
        return 0
    out.write(f"policy directory {pdir}: {len(rows)} policies\n")
    for r in rows:
        in_kernel = kernel.get("policies", {}).get(r["id"])
        where = f"kernel: {in_kernel}" if in_kernel else ("agent (fanotify)" if r["kind"] == "file" else "not in force")
        out.write(f"  {r['id']:<32} {r['kind']:<8} {r['mode']:<8} {where:<18} {r['what']}\n")
    if kernel:
        out.write(f"kernel enforcement at {cfg.enforce.pin_root}: {'ARMED' if kernel['armed'] else 'DISARMED'}, "
                  f"generation {kernel['generation']}, agent pid {kernel['agent_pid'] or '-'}, "
                  f"links: {', '.join(kernel['links'])}\n")
        c = kernel["counters"]
        out.write(f"  hits {c['hits']}, kills {c['kills']} (failed {c['kill_failures']}), denies {c['denies']}, "
                  f"drops {c['drops']}, audits {c['audits']}, spared {c['spared']}, events lost {c['dropped']}\n")
    else:
        out.write("kernel enforcement: not installed\n")
    return 0


# ---------------------------------------------------------------- kill switch, uninstall


def add_switch(sub: Any) -> None:
    for name, helptext in (("arm", "turn the kill switch back on: policies in enforce mode block again"),
                           ("disarm", "the kill switch: nothing is blocked, every hit is reported as audit")):
        p = sub.add_parser(name, help=helptext)
        _common(p)
        p.set_defaults(policy_fn=cmd_switch, armed=name == "arm")


def cmd_switch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    k = _kernel(args)
    if k is None:
        err.write("kernel enforcement is not installed\n")
        return 1
    try:
        k.set_armed(args.armed)
    finally:
        k.close()
    out.write("enforcement ARMED\n" if args.armed else
              "enforcement DISARMED: nothing is blocked until 'sentinel-edge policy arm'\n")
    return 0


def add_uninstall(sub: Any) -> None:
    p = sub.add_parser("uninstall", help="detach every enforcement program and remove the pins")
    _common(p)
    p.set_defaults(policy_fn=cmd_uninstall)


def cmd_uninstall(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sentinel_edge.enforce.kernel import EnforceKernel

    cfg = _cfg(args)
    k = EnforceKernel(pin_root=cfg.enforce.pin_root)
    had = k.installed()
    k.uninstall()
    out.write("kernel enforcement uninstalled\n" if had else "kernel enforcement was not installed\n")
    if _agent_pid(args) is not None:
        out.write("note: the running agent installs it again on its next policy change or restart\n")
    return 0


MANAGE_SUBCOMMANDS = [add_apply, add_remove, add_list, add_switch, add_uninstall]
