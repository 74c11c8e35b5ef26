"""The ``sentinel-edge`` command."""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentinel_edge import __version__, config
from sentinel_edge.detection import DetectionStage, RuleSource

if TYPE_CHECKING:
    from sentinel_edge.enforce.stage import EnforcementStage
from sentinel_edge.enforce.cli import add_policy_parser
from sentinel_edge.enforce.quarantine_cli import add_quarantine_parser
from sentinel_edge.errors import SentinelEdgeError
from sentinel_edge.history.cli import add_history_parsers
from sentinel_edge.rules.cli import add_rules_parser
from sentinel_edge.web.cli import add_token_parsers

if TYPE_CHECKING:
    from sentinel_edge.agent import Agent
    from sentinel_edge.history.store import HistoryStore
    from sentinel_edge.web.backend import Backend

log = logging.getLogger("sentinel_edge")


def _cmd_run(args: argparse.Namespace) -> int:
    from sentinel_edge.agent import Agent
    from sentinel_edge.loader import probes
    from sentinel_edge.netinspect.stage import NetInspectStage
    from sentinel_edge.output.sinks import Sink

    cfg = config.load(args.config)
    if args.output is not None:
        cfg.output.path = args.output
    if args.format is not None:
        cfg.output.format = args.format
    cfg.rules.paths += args.rules or []
    cfg.enforce.policies += args.policy or []
    cfg.rules.sigma += args.sigma or []
    if args.no_events:
        cfg.output.events = False
    if args.no_default_rules:
        cfg.rules.default = False
    if args.record_all:
        cfg.rules.record_all = True
    if args.alerts_file is not None:
        cfg.alerts.file = args.alerts_file
    if args.state_dir is not None:
        cfg.state_dir = str(Path(args.state_dir).absolute())
    if args.api_listen is not None:
        cfg.api.listen = args.api_listen
    if args.no_api:
        cfg.api.enabled = False
    if args.no_history:
        cfg.history.enabled = False
    cfg.network.interfaces += [i for i in (args.inspect or []) if i not in cfg.network.interfaces]
    config.validate(cfg, args.config or "defaults")
    probes.require_root()
    from sentinel_edge.web.backend import Backend, HistoryAlertSink
    from sentinel_edge.web.live import LiveHub

    hub = LiveHub(cfg.api.stream_max_rate)
    store = _history(cfg)
    backend = Backend(cfg, store=store, auth=None, hub=hub)
    try:
        detection = _detection(cfg, extra_sinks=[HistoryAlertSink(store, hub)])
        sink = Sink(cfg.output.path, cfg.output.format)
        enforcement = _enforcement(cfg)
    except BaseException:
        if store is not None:
            store.close()
        raise
    agent = Agent(cfg, sink, status_path=Path(args.status_file) if args.status_file else None,
                  detection=detection, enforcement=enforcement, history=store, hub=hub,
                  make_enforcement=lambda: _enforcement(cfg, always=True),  # type: ignore[arg-type,return-value]
                  network=NetInspectStage(cfg.network), config_path=args.config)
    backend.agent = agent
    backend.on_note = agent.health_notes.put
    agent.status_extra = backend.extra_status
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    def on_hup(_signum: int, _frame: Any) -> None:
        detection.request_reload()
        agent.network_reload.set()
        if enforcement is not None:
            enforcement.request_reload()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_hup)
    # `kill -USR1 <pid>`: every thread's Python stack to stderr, even when the
    # main thread is stuck in a system call or in C (docs/config.md, troubleshooting)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        report = agent.start()
        attached = len(report.attached())
        _services(cfg, agent, backend, store)
        log.info("SentinelEdge %s running: %d programs attached, writing %s to %s", __version__, attached,
                 cfg.output.format, cfg.output.path or "stdout")
        agent._write_status(running=True)  # with the API address, before anyone waits on ready
        if args.ready_file:
            Path(args.ready_file).write_text(str(attached))
        agent.run(stop)
    finally:
        try:
            agent.close()
        finally:
            backend.close()
            if store is not None:
                store.close()
    return 0


def _history(cfg: config.AgentConfig) -> HistoryStore | None:
    if not cfg.history.enabled:
        return None
    from sentinel_edge.history.store import HistoryStore

    path = Path(cfg.history.path or Path(cfg.state_dir) / "history.db")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise SentinelEdgeError(f"history: cannot create {path.parent}: {exc.strerror}") from exc
    store = HistoryStore(path, retention_days=cfg.history.retention_days or None,
                         max_bytes=cfg.history.max_mb * 1024 * 1024)
    log.info("history kept in %s (%s days, at most %d MB)", path, cfg.history.retention_days or "no limit in",
             cfg.history.max_mb)
    return store


def _services(cfg: config.AgentConfig, agent: Agent, backend: Backend, store: HistoryStore | None) -> None:
    """The API server, its tokens, and the watchdog of the internal workers (after the sensors are up)."""
    from sentinel_edge.alerts.sinks import QueuedSink
    from sentinel_edge.web.app import create_app
    from sentinel_edge.web.auth import AuthStore, ensure_admin_token
    from sentinel_edge.web.server import ApiServer

    if store is not None:
        backend.watch("history-writer", store.writer_alive, store.restart_writer,
                      error=lambda: store.last_writer_error)
    if agent.detection is not None:
        for s in getattr(agent.detection.alerts, "sinks", []):
            if isinstance(s, QueuedSink):
                backend.watch(f"alert-sink-{s.name}", s.alive, s.restart)
    if cfg.api.enabled:
        try:
            backend.auth = AuthStore(Path(cfg.state_dir) / "auth.db")
            first = ensure_admin_token(backend.auth, Path(cfg.state_dir))
            if first is not None:
                log.warning("first start: an admin token for the console and the API is in %s "
                            "(more tokens: sentinel-edge token create)", first)
            server = ApiServer(create_app(backend), cfg.api)
            server.start()
            backend.server = server
            backend.watch("api-server", server.alive, server.restart, error=server.last_error)
        except SentinelEdgeError as exc:
            log.error("the console and API are not available: %s", exc)
            agent.health_notes.put(f"the console and API are not available: {exc}")
    backend.start_watchdog()


def _enforcement(cfg: config.AgentConfig, always: bool = False) -> EnforcementStage | None:
    """The enforcement stage when policies are configured or enforcement is pinned from an earlier run."""
    from sentinel_edge.enforce.stage import EnforcementStage

    e = cfg.enforce
    if not always and not e.policies and not Path(e.pin_root, "maps", "se_enf_state").exists():
        return None
    stage = EnforcementStage(e.policies, pin_root=e.pin_root, watch=e.watch, fanotify=e.fanotify,
                             safe_executables=e.safe_executables)
    stage.validate()  # every error, located, before anything is loaded
    return stage


def _detection(cfg: config.AgentConfig, extra_sinks: list[Any] | None = None) -> DetectionStage:
    """Load and compile the rules (any error is fatal at start), open the alert outputs, narrow the sensors."""
    from sentinel_edge.alerts import AlertOutput
    from sentinel_edge.detection import RuleToggles
    from sentinel_edge.enrich.host import host_info

    source = RuleSource(cfg.rules.paths, cfg.rules.sigma, default=cfg.rules.default,
                        state_max_keys=cfg.rules.state_max_keys)
    loaded = source.load_checked()
    for file, reason in loaded.skipped:
        log.warning("Sigma rule %s not loaded: %s", file, reason)
    by_source: dict[str, int] = {}
    for r in loaded.rules:
        by_source[r.meta.source] = by_source.get(r.meta.source, 0) + 1
    log.info("%d rules loaded (%s)", len(loaded.rules),
             ", ".join(f"{n} {src}" for src, n in sorted(by_source.items())) or "none")
    a = cfg.alerts
    if not (a.file or a.stdout or a.rotating or a.syslog or a.webhook):
        # no alert output configured: alerts go where the events go, as OCSF objects of their own class
        if cfg.output.path in (None, "-"):
            a.stdout = True
        else:
            a.file = cfg.output.path
        log.info("alerts are written with the events to %s (--alerts-file or the alerts: section sends them "
                 "elsewhere)", cfg.output.path or "stdout")
    toggles = RuleToggles(Path(cfg.state_dir) / "rules-state.json")
    if toggles.disabled:
        log.info("rules switched off through the API: %s", ", ".join(sorted(toggles.disabled)))
    detection = DetectionStage(source, loaded, AlertOutput(a, host_info(), sinks=extra_sinks or ()),
                               watch=cfg.rules.watch, toggles=toggles)
    if loaded.rules and not cfg.rules.record_all:
        needed = detection.engine.sensors_needed()
        for name in ("file", "net", "priv", "mem"):
            if name == "net" and cfg.network.interfaces:
                continue  # the packet inspector ties packets to processes through the net sensor's sockets
            if getattr(cfg.sensors, name) and name not in needed:
                setattr(cfg.sensors, name, False)
                log.info("sensor %s off: no loaded rule needs it (rules.record_all: true keeps it)", name)
    return detection


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
    det = st.get("detection")
    if det:
        out = det.get("alerts_output", {})
        sources = ", ".join(f"{n} {k}" for k, n in det.get("by_source", {}).items())
        print(f"detection: {det.get('rules', 0)} rules ({sources}), "
              f"{det.get('alerts_raised', 0)} alerts raised, {out.get('emitted', 0)} findings written, "
              f"{out.get('folded', 0)} folded, {out.get('dropped', 0)} dropped, reloads {det.get('reloads', 0)} "
              f"(rejected {det.get('reload_failures', 0)})")
        for rid, n in det.get("rule_errors", {}).items():
            print(f"  rule {rid}: {n} evaluation errors")
    enf = st.get("enforcement")
    if enf and enf.get("install"):
        k = enf.get("kernel", {})
        print(f"enforcement: {enf.get('policies', 0)} policies, {'ARMED' if enf.get('armed') else 'DISARMED'}, "
              f"generation {enf.get('generation', 0)} ({enf.get('install')} at {enf.get('pin_root')}); "
              f"kills {k.get('kills', 0)}, denies {k.get('denies', 0)}, drops {k.get('drops', 0)}, "
              f"audits {k.get('audits', 0)}, events lost {k.get('dropped', 0)}; applies {enf.get('applies', 0)} "
              f"(rejected {enf.get('apply_failures', 0)})")
        for prob in enf.get("problems", []):
            print(f"  policy problem: {prob}")
    net = st.get("network")
    if net and (net.get("interfaces") or net.get("problems")):
        ifs = ", ".join(f"{spec} ({'+'.join(i.get('hooks') or [])})" for spec, i in net["interfaces"].items())
        print(f"network inspector: {ifs or 'no interface attached'}; flows exported {net.get('flows_exported', 0)}, "
              f"DNS messages {net.get('dns', 0)}, detections {sum(net.get('detections', {}).values())}, "
              f"blocks {net.get('blocks', 0)} (refused {net.get('blocks_refused', 0)})")
        for hook, c in (net.get("counters") or {}).items():
            bad = sum(v for k, v in c.items() if k.startswith("bad_") or k == "ipv6_ext_limit")
            print(f"  {hook:<10} packets {c.get('packets', 0):>10}, parse failures {bad}, "
                  f"ring dropped {c.get('ring_dropped', 0)}")
        for spec, why in net.get("problems", {}).items():
            print(f"  not attached: {spec}: {why}")
    hist = st.get("history")
    if hist:
        print(f"history: {hist.get('written_events', 0)} events, {hist.get('written_alerts', 0)} alerts written, "
              f"{hist.get('db_bytes', 0) / 1e6:.1f} MB; dropped: queue {hist.get('dropped_full_queue', 0)}, "
              f"disk {hist.get('dropped_disk', 0)}; alerts waiting {hist.get('pending_alerts', 0)}"
              + ("" if hist.get("healthy", True) else f"; UNHEALTHY: {hist.get('health')}"))
    api = st.get("api")
    if api and api.get("state") != "off":
        print(f"console and API: {api.get('url')} ({api.get('state')})"
              + (f": {api['error']}" if api.get("error") else ""))
    for name, w in (st.get("workers") or {}).items():
        if w.get("restarts") or not w.get("alive"):
            print(f"  worker {name}: {'alive' if w.get('alive') else 'DOWN'}, restarted {w.get('restarts')} time(s), "
                  f"last error: {w.get('last_error')}")
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
    run.add_argument("--policy", action="append", metavar="PATH",
                     help="enforce the policies in this file or directory (repeatable; docs/policies.md)")
    run.add_argument("--rules", action="append", metavar="PATH",
                     help="rule file or directory (repeatable; added to rules.paths)")
    run.add_argument("--sigma", action="append", metavar="PATH",
                     help="Sigma rule file or directory (repeatable; added to rules.sigma)")
    run.add_argument("--no-default-rules", action="store_true", help="do not load the shipped rule set")
    run.add_argument("--no-events", action="store_true",
                     help="do not write every event (output.events: false): alerts and health only")
    run.add_argument("--record-all", action="store_true",
                     help="attach every sensor, also those no loaded rule needs")
    run.add_argument("--alerts-file", metavar="PATH",
                     help="append alerts (OCSF Detection Findings, JSON lines) to PATH, flushed per alert")
    run.add_argument("--state-dir", metavar="DIR",
                     help="history, API tokens and rule switches (state_dir; default /var/lib/sentinel-edge)")
    run.add_argument("--api-listen", metavar="HOST:PORT",
                     help="console and API address (api.listen; default 127.0.0.1:8080; port 0 = any free port)")
    run.add_argument("--no-api", action="store_true", help="no console, REST API or /metrics (api.enabled: false)")
    run.add_argument("--no-history", action="store_true", help="keep no history (history.enabled: false)")
    run.add_argument("--inspect", action="append", metavar="IFACE",
                     help="inspect packets on this interface ('eth0', or '<netns>/<ifname>'); repeatable; adds to "
                          "network.interfaces")
    run.set_defaults(fn=_cmd_run)

    st = sub.add_parser("status", help="show the running agent's programs and loss counters")
    st.add_argument("--json", action="store_true")
    st.add_argument("--status-file", help=argparse.SUPPRESS)
    st.set_defaults(fn=_cmd_status)

    add_rules_parser(sub)
    add_history_parsers(sub)
    add_token_parsers(sub)
    add_policy_parser(sub)
    add_quarantine_parser(sub)

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
    # the Community ID library logs every hash it computes at INFO (one flow record = 8 lines)
    logging.getLogger("communityid").setLevel(logging.WARNING)
    try:
        return int(args.fn(args))
    except SentinelEdgeError as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
