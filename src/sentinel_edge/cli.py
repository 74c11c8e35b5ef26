"""The ``sentinel-edge`` command."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from sentinel_edge import __version__, config
from sentinel_edge.errors import SentinelEdgeError

log = logging.getLogger("sentinel_edge")


def _cmd_run(args: argparse.Namespace) -> int:
    from sentinel_edge.agent import Agent
    from sentinel_edge.loader import probes
    from sentinel_edge.output.sinks import Sink

    cfg = config.load(args.config)
    if args.output is not None:
        cfg.output.path = args.output
    if args.format is not None:
        cfg.output.format = args.format
    config.validate(cfg, args.config or "defaults")
    probes.require_root()
    sink = Sink(cfg.output.path, cfg.output.format)
    agent = Agent(cfg, sink, status_path=Path(args.status_file) if args.status_file else None)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        report = agent.start()
        attached = len(report.attached())
        log.info("SentinelEdge %s running: %d programs attached, writing %s to %s", __version__, attached,
                 cfg.output.format, cfg.output.path or "stdout")
        if args.ready_file:
            Path(args.ready_file).write_text(str(attached))
        agent.run(stop)
    finally:
        agent.close()
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from sentinel_edge.agent import read_status

    st = read_status(Path(args.status_file) if args.status_file else None)
    if args.json:
        print(json.dumps(st, indent=1))
        return 0 if st.get("running") else 1
    print(f"agent pid {st['pid']}: {'running' if st.get('running') else 'NOT running'}")
    if st.get("note"):
        print(f"  note: {st['note']}")
    progs = st.get("programs", [])
    attached = [p for p in progs if p["state"] == "attached"]
    print(f"programs: {len(attached)} attached, {len(progs) - len(attached)} not attached")
    for p in progs:
        if p["state"] != "attached" and "is off" not in p["reason"]:
            print(f"  {p['name']}: {p['state']}: {p['reason']}")
    if st.get("fallbacks"):
        print(f"raw_tp fallback for: {', '.join(st['fallbacks'])}")
    for note in st.get("notes", []):
        print(f"note: {note}")
    print("kernel counters (emitted / dropped / deduped / filtered):")
    for s, c in st.get("kernel", {}).items():
        print(f"  {s:<8} {c['emitted']:>10} {c['dropped']:>8} {c['deduped']:>8} {c['filtered']:>8}")
    print(f"user space: decoded {st.get('decoded', 0)}, written {st.get('written', 0)}, "
          f"dropped {st.get('user_dropped', 0)} (wire {st.get('wire_errors', 0)}, "
          f"output {st.get('output_errors', 0)}, queue {st.get('queue_dropped', 0)})")
    return 0 if st.get("running") else 1


def _cmd_probe(args: argparse.Namespace) -> int:
    from sentinel_edge.loader import probes

    feats = probes.probe(mount_tracefs=not args.no_mount)
    print(f"kernel {feats.release}: BTF yes, tracefs {feats.tracefs}, {len(feats.pairs)} tracepoints")
    for name in ("init_module", "finit_module", "delete_module", "openat2", "fchmodat2"):
        have = feats.has_tracepoint("syscalls", "sys_enter_" + name)
        print(f"  syscalls/sys_enter_{name}: {'yes' if have else 'no (raw_tp/sys_enter fallback where needed)'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sentinel-edge", description="SentinelEdge runtime-security agent")
    p.add_argument("--version", action="version", version=f"sentinel-edge {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="load the sensors and stream events")
    run.add_argument("-c", "--config", help="YAML config file (default: embedded defaults)")
    run.add_argument("-o", "--output", help="write events to this file instead of stdout ('-' = stdout)")
    run.add_argument("-f", "--format", choices=["json", "text"], help="json: OCSF JSON lines; text: one line per event")
    run.add_argument("--status-file", help=argparse.SUPPRESS)
    run.add_argument("--ready-file", help="write this file once every program is attached")
    run.set_defaults(fn=_cmd_run)

    st = sub.add_parser("status", help="show the running agent's programs and loss counters")
    st.add_argument("--json", action="store_true")
    st.add_argument("--status-file", help=argparse.SUPPRESS)
    st.set_defaults(fn=_cmd_status)

    pr = sub.add_parser("probe", help="check what this kernel offers")
    pr.add_argument("--no-mount", action="store_true", help="do not mount tracefs when it is missing")
    pr.set_defaults(fn=_cmd_probe)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s sentinel-edge %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.fn(args))
    except SentinelEdgeError as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
