"""The agent: the pipeline from kernel rings to written OCSF objects.

    drain rings -> decode (wire) -> enrich -> map to OCSF -> sink

Rings are drained on a short timer (no per-event wakeups). The process ring
is drained first and other events newer than that drain are held back to the
next round, so an exec is always enriched before the file or network events
of the image it created. Every loss is counted: kernel reservation failures
per sensor (se_stats), and user-space drops (records that break the wire
contract, objects a sink could not write); growth raises a health event.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentinel_edge import config
from sentinel_edge.config import AgentConfig
from sentinel_edge.detection import DetectionStage
from sentinel_edge.enforce.model import Enforcement
from sentinel_edge.enforce.stage import EnforcementStage, enforcement_alert
from sentinel_edge.enrich import Enricher
from sentinel_edge.enrich.host import host_info
from sentinel_edge.enrich.sockets import SocketTable
from sentinel_edge.errors import OutputError, SentinelEdgeError, WireError
from sentinel_edge.loader import probes
from sentinel_edge.loader.session import SENSORS, BpfSession, SessionReport
from sentinel_edge.model import KIND_HEALTH, KIND_NET, Event
from sentinel_edge.output.ocsf import to_ocsf
from sentinel_edge.output.sinks import Sink
from sentinel_edge.rules.model import Alert
from sentinel_edge.wire import Decoder

if TYPE_CHECKING:
    from sentinel_edge.enforce.actions import ResponseActions
    from sentinel_edge.enforce.kernel import EnforceKernel
    from sentinel_edge.history.store import HistoryStore
    from sentinel_edge.netinspect.stage import NetInspectStage
    from sentinel_edge.web.live import LiveHub

log = logging.getLogger(__name__)

STATUS_DIR = Path(os.environ.get("SENTINEL_EDGE_RUN_DIR", "/run/sentinel-edge"))

# Records taken from one ring per round: bounds the memory a flood can pin in
# user space (the rest waits in the kernel ring, where overflow is counted).
BATCH_MAX = 512
# Objects written per sink flush: bounds the serialized lines held in memory.
FLUSH_EVERY = 1024


def boot_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


@dataclass(slots=True)
class Counters:
    decoded: int = 0
    wire_errors: int = 0
    output_errors: int = 0
    queue_dropped: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    by_class: dict[tuple[str, str], int] = field(default_factory=dict)  # (OCSF class name, kind) of mapped events

    @property
    def user_dropped(self) -> int:
        return self.wire_errors + self.output_errors + self.queue_dropped


class Agent:
    """Loads the sensors and runs the pipeline until stopped."""

    def __init__(self, cfg: AgentConfig, sink: Sink, *, obj_path: str | None = None,
                 status_path: Path | None = None, detection: DetectionStage | None = None,
                 enforcement: EnforcementStage | None = None, history: HistoryStore | None = None,
                 hub: LiveHub | None = None,
                 make_enforcement: Callable[[], EnforcementStage] | None = None,
                 network: NetInspectStage | None = None, config_path: str | None = None) -> None:
        self.cfg = cfg
        self.sink = sink
        self.detection = detection
        self.enforcement = enforcement
        self.history = history
        self.hub = hub
        self.make_enforcement = make_enforcement  # policies applied at run time (API) with none at start
        self.network = network  # the packet inspector (network.interfaces)
        self.config_path = config_path  # re-read for network.interfaces on SIGHUP and when it changes
        self._config_mtime = _mtime(config_path)
        self._next_config_check = 0.0
        self.network_reload = threading.Event()  # set by SIGHUP
        self.sockets = SocketTable()  # socket cookie -> owner, for the inspector's flows and DNS messages
        self._net_mark = 0  # boot ns up to which every net sensor event has been processed
        self._response_actions: list[ResponseActions] = []
        # work from other threads (API), run on the pipeline thread between two rounds
        self._calls: queue.SimpleQueue[tuple[Callable[[Agent], Any], Future[Any]]] = queue.SimpleQueue()
        # health messages from other threads (the watchdog), written as health events by the pipeline
        self.health_notes: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.last_status: dict[str, Any] = {}
        self.status_extra: Callable[[], dict[str, Any]] | None = None  # API, workers (set by the run command)
        self.loop_at = 0.0  # monotonic time of the last pipeline round (/healthz)
        self._rate_mark: tuple[float, int, int] = (time.monotonic(), 0, 0)  # (t, decoded, alerts) of last sample
        self.rates: dict[str, float] = {"events_per_s": 0.0, "alerts_per_s": 0.0}
        self._history_ok = True
        self._history_dropped = 0
        self.obj_path = obj_path
        self.status_path = status_path or STATUS_DIR / "status.json"
        self.host = host_info()
        self.enricher = Enricher(
            ancestry_depth=cfg.enrich.ancestry_depth,
            exit_grace_s=cfg.enrich.exit_grace_s,
            max_processes=cfg.enrich.max_processes,
            host=self.host,
        )
        self.counters = Counters()
        self.session: BpfSession | None = None
        self.decoder: Decoder | None = None
        self.report: SessionReport | None = None
        self._held: list[Event] = []
        self._last_kernel: dict[str, dict[str, int]] = {}
        self._last_user_dropped = 0
        self._started_ns = 0
        self._flush_errors_logged = 0
        self.output_closed = False

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> SessionReport:
        feats = probes.probe()
        self.session = BpfSession(self.cfg, feats, obj_path=self.obj_path)
        self.report = self.session.start()
        self.decoder = Decoder(self.session.btf)
        seeded = self.enricher.seed()
        self._started_ns = time.time_ns()
        skipped = [f"{p.name}: {p.reason}" for p in self.report.programs if p.state != "attached"]
        for p in self.report.programs:
            if p.state == "failed":
                log.warning("program %s not attached: %s", p.name, p.reason)
            elif p.state == "skipped" and "sensor" not in p.reason:
                log.info("program %s skipped: %s", p.name, p.reason)
        if self.report.fallbacks:
            log.info("raw_tp/sys_enter fallback watches: %s", ", ".join(self.report.fallbacks))
        for note in self.report.notes:
            log.info("%s", note)
        self._health("start", "SentinelEdge started", attached=self.report.attached(), skipped=skipped,
                     fallbacks=self.report.fallbacks, unwatched=self.report.unwatched,
                     notes=self.report.notes, processes_seeded=seeded)
        if self.enforcement is not None:
            found = self.enforcement.start(os.getpid())
            for note in self.enforcement.notes:
                log.info("%s", note)
            self._enforced(found)
        if self.network is not None:
            self._start_network()
        if self.detection is not None:
            self.detection.responder = self._responder()
        self._sample_stats(force=True)
        self._flush()
        return self.report

    def run(self, stop: threading.Event) -> None:
        interval = self.cfg.drain_interval_ms / 1000
        next_stats = time.monotonic() + self.cfg.stats_interval_s
        while not stop.is_set() and not self.output_closed:
            self.loop_at = time.monotonic()
            self._run_calls()
            n = self.step()
            if self.detection is not None:
                self.detection.tick(boot_ns())
            if self.enforcement is not None:
                self.enforcement.tick()
            if self.network is not None:
                self._network_tick()
            now = time.monotonic()
            if now >= next_stats:
                self._sample_stats()
                next_stats = now + self.cfg.stats_interval_s
            if n == 0:
                if self.sink.reader_gone():
                    log.info("output closed by its reader, stopping")
                    self.output_closed = True
                    break
                stop.wait(interval)

    # -- calls from other threads -----------------------------------------------------

    def submit(self, fn: Callable[[Agent], Any]) -> Future[Any]:
        """Run ``fn(agent)`` on the pipeline thread between two rounds (thread-safe)."""
        fut: Future[Any] = Future()
        self._calls.put((fn, fut))
        return fut

    def _run_calls(self) -> None:
        while True:
            try:
                fn, fut = self._calls.get_nowait()
            except queue.Empty:
                break
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(self))
            except BaseException as exc:  # handed to the caller
                fut.set_exception(exc)
        while True:
            try:
                note = self.health_notes.get_nowait()
            except queue.Empty:
                break
            self._health("degraded", note, component="watchdog")
            self._flush()

    def queue_depth(self) -> int:
        return len(self._held)

    @property
    def last_kernel(self) -> dict[str, dict[str, int]]:
        return self._last_kernel

    # policies at run time (API): on the pipeline thread through submit()

    def _policy_stage(self) -> EnforcementStage | None:
        if self.enforcement is None and self.make_enforcement is not None:
            stage = self.make_enforcement()
            found = stage.start(os.getpid())
            self.enforcement = stage
            self._enforced(found)
        return self.enforcement

    def reload_policies(self) -> bool:
        """Apply the policy directory now; True when the new set is in force."""
        stage = self._policy_stage()
        return stage.reload() if stage is not None else False

    def set_armed(self, armed: bool) -> bool:
        """The kill switch; installs the (empty) kernel enforcement when there is none yet."""
        stage = self._policy_stage()
        if stage is None:
            raise SentinelEdgeError("enforcement is not available in this agent")
        stage._ensure_kernel(os.getpid())
        stage.kernel.set_armed(armed)
        log.warning("enforcement %s through the API", "ARMED" if armed else "DISARMED")
        return bool(stage.kernel.read_state().armed)

    def policies_view(self) -> dict[str, Any]:
        stage = self.enforcement
        pdir = config.policy_dir(self.cfg)
        out: dict[str, Any] = {"enabled": stage is not None, "armed": None, "directory": str(pdir), "items": [],
                               "problems": []}
        if stage is None:
            return out
        for p in stage.policies.policies:
            out["items"].append({"id": p.id, "name": Path(p.file).stem, "file": p.file, "kind": p.kind,
                                 "mode": str(p.mode), "description": p.description})
        out["problems"] = list(stage.problems)
        if stage.kernel._fds:
            try:
                out["armed"] = bool(stage.kernel.read_state().armed)
            except SentinelEdgeError:
                pass
        return out

    def close(self) -> None:
        """Detach programs, flush everything, write the final status."""
        while True:  # nothing waits forever on a call the pipeline will not run any more
            try:
                _fn, fut = self._calls.get_nowait()
            except queue.Empty:
                break
            fut.cancel()
        try:
            if self.session is not None:
                for _ in range(8):  # bounded: a busy host keeps producing until detach
                    if not self.step(final=True):
                        break
                if self.network is not None:
                    try:
                        last = self.network.close(self.sockets)
                    except SentinelEdgeError as exc:
                        log.error("closing the network inspector: %s", exc)
                    else:
                        self._process(last)
                        self._flush()
                self._sample_stats(force=True)
                self._health("stop", "SentinelEdge stopped", **self._totals())
                self._flush()
        finally:
            if self.enforcement is not None:
                try:
                    self._enforced(self.enforcement.drain())
                    self.enforcement.close()
                except SentinelEdgeError as exc:
                    log.error("closing enforcement: %s", exc)
            if self.detection is not None:
                try:
                    self.detection.close()
                except SentinelEdgeError as exc:
                    log.error("closing the alert outputs: %s", exc)
            if self.session is not None:
                self.session.close()
                self.session = None
            try:
                self.sink.close()
            except OutputError as exc:
                if not self.output_closed:
                    log.error("%s", exc)
            self._write_status(running=False)

    # -- pipeline -----------------------------------------------------------------

    def step(self, final: bool = False) -> int:
        """One round: drain, decode, enrich, write. Returns records drained."""
        assert self.session is not None and self.decoder is not None
        # enforcement decisions first: the events of the processes they name were emitted before
        # them, so they are in the sensor rings drained below and enrichment knows those processes
        found = self.enforcement.drain() if self.enforcement is not None else []
        readers = self.session.readers
        raw_proc: list[bytes] = []
        cut = boot_ns()
        limit = 1 << 30 if final else BATCH_MAX
        readers["process"].drain(raw_proc, limit)
        raw_other: list[bytes] = []
        for s in SENSORS[1:]:
            got = readers[s].drain(raw_other, limit)
            if s == "net" and (got < limit or not self.cfg.sensors.net):
                # every socket event up to `cut` is in this round: the inspector's events and flows up to
                # there can be given the owners of their sockets (see NetInspectStage.drain)
                self._net_mark = cut
        n = len(raw_proc) + len(raw_other)
        events = self._held
        self._held = []
        events.extend(self._decode(raw_proc))
        for ev in self._decode(raw_other):
            if ev.ts_ns > cut and not final:
                self._held.append(ev)  # newer than the process ring drain
            else:
                events.append(ev)
        if len(self._held) > self.cfg.queue_max:
            over = len(self._held) - self.cfg.queue_max
            self.counters.queue_dropped += over
            del self._held[:over]
        if events:
            events.sort(key=lambda e: e.ts_ns)
            self._process(events)
            self._flush()
        if self.network is not None and self.network.kernel is not None:
            try:
                net = self.network.drain(self.sockets, self._net_mark, final)
            except SentinelEdgeError as exc:
                net = []
                self.counters.output_errors += 1
                log.error("network inspector: %s", exc)
            if net:
                self._process(net)
                self._flush()
                n += len(net)
        if found:
            self._enforced(found)
            self._flush()
            n += len(found)
        return n

    def _responder(self) -> Callable[[Alert], list[Alert]]:
        """Response actions of rules (docs/actions.md): kill, kill_group, block_address, quarantine."""
        from sentinel_edge.alerts.ocsf import finding_uid
        from sentinel_edge.enforce.stage import response_alert

        host = self.host
        actions = self._actions

        def respond(alert: Alert) -> list[Alert]:
            try:
                ra = actions()
            except SentinelEdgeError as exc:
                log.error("response actions unavailable: %s", exc)
                return []
            results = ra.run(alert, alert_id=finding_uid(alert, host))
            for r in results:
                log.info("response %s for rule %s on %s: %s", r.action, alert.rule.id, r.target,
                         "done" if r.ok else r.error)
            return [response_alert(r, alert) for r in results]

        return respond

    def _actions(self) -> ResponseActions:
        """The response actions (made at first use), shared by rule actions and the inspector's drops."""
        from sentinel_edge.enforce.actions import ResponseActions, ResponseConfig

        if self._response_actions:
            return self._response_actions[0]
        rc = self.cfg.response
        stage = self.enforcement
        blocker = _LazyBlocker(stage) if stage is not None else None
        ra = ResponseActions(ResponseConfig(quarantine_dir=Path(rc.quarantine_dir),
                                            allow_exes=tuple(rc.allow_executables),
                                            management=tuple(rc.never_block), max_blocked=rc.max_blocked,
                                            default_ttl_s=rc.default_ttl_s), blocker=blocker)
        if blocker is not None and ra.blocks is not None and stage is not None and stage.kernel.installed():
            ra.blocks.adopt((b.addr, b.remaining_s, b.reason) for b in blocker.blocked())
        self._response_actions.append(ra)
        return ra

    # -- the packet inspector ---------------------------------------------------------

    def _enforce_kernel(self) -> EnforceKernel | None:
        """The pinned enforcement object, whose XDP entry program hands packets to the inspector."""
        stage = self._policy_stage()
        if stage is None:
            return None
        stage._ensure_kernel(os.getpid())
        return stage.kernel

    def _block_source(self, addr: Any, ttl_s: float, reason: str) -> dict[str, Any]:
        """Block a source for the inspector (never-block list and cap of the response blocks apply)."""
        if self.enforcement is None and not self._response_actions:
            self._policy_stage()  # the blocks live in the enforcement object
        blocks = self._actions().blocks
        if blocks is None:
            raise SentinelEdgeError("response blocks are not available in this agent")
        got = blocks.block(addr, ttl_s, reason=reason)
        return {"ttl_s": got.entry.ttl_s, "renewed": got.renewed,
                "evicted": str(got.evicted.addr) if got.evicted is not None else None}

    def _start_network(self) -> None:
        assert self.network is not None
        net = self.network
        net._enforce_kernel = self._enforce_kernel
        net._block = self._block_source
        try:
            notes = net.start()
        except SentinelEdgeError as exc:
            log.error("network inspector unavailable: %s", exc)
            self._health("degraded", f"network inspector unavailable: {exc}", component="network")
            return
        if net.kernel is not None:
            self._health("network", "network inspector started", component="network", notes=notes,
                         problems=dict(net.problems))

    def _network_tick(self) -> None:
        """Attach and detach interfaces when the config file changed (or on SIGHUP)."""
        now = time.monotonic()
        due = self.network_reload.is_set()
        if not due and self.config_path is not None and now >= self._next_config_check:
            self._next_config_check = now + 2.0
            m = _mtime(self.config_path)
            due = m != self._config_mtime
        if not due or self.network is None:
            return
        self.network_reload.clear()
        self._config_mtime = _mtime(self.config_path)
        if self.config_path is None:
            return
        try:
            fresh = config.load(self.config_path)
        except SentinelEdgeError as exc:
            log.error("network.interfaces not changed: %s", exc)
            self._health("degraded", f"network.interfaces not changed: {exc}", component="network")
            return
        if set(fresh.network.interfaces) == set(self.network.interfaces) | set(self.network.problems):
            return  # the same interfaces (order does not matter): nothing to attach or detach
        try:
            notes = self.network.set_interfaces(fresh.network.interfaces)
        except SentinelEdgeError as exc:
            log.error("network inspector unavailable: %s", exc)
            self._health("degraded", f"network inspector unavailable: {exc}", component="network")
            return
        self.network.cfg.interfaces = list(fresh.network.interfaces)
        self._health("network", "network inspector interfaces changed", component="network", notes=notes,
                     problems=dict(self.network.problems))

    def network_view(self) -> dict[str, Any]:
        """The packet inspector for the API and console (pipeline thread: counters read now)."""
        net = self.network
        c = self.cfg.network
        out: dict[str, Any] = {
            "enabled": net is not None and net.kernel is not None,
            "settings": {"xdp": c.xdp, "tc": c.tc, "flows": c.flows, "dns": c.dns, "window_ms": c.window_ms,
                         "syn_flood_per_source": c.syn_flood_per_source, "syn_flood_total": c.syn_flood_total,
                         "port_scan_ports": c.port_scan_ports, "icmp_flood": c.icmp_flood, "drop": c.drop,
                         "drop_ttl_s": c.drop_ttl_s, "flow_interval_s": c.flow_interval_s},
        }
        if net is not None:
            out.update(net.status())
        blocks: list[dict[str, Any]] = []
        ra = self._response_actions[0] if self._response_actions else None
        if ra is not None and ra.blocks is not None:
            now = ra.blocks.clock()
            blocks = [{"address": str(e.addr), "expires_in_s": round(e.expires_at - now, 1), "reason": e.reason,
                       "rule_id": e.rule_id} for e in ra.blocks.entries()]
        out["blocks_in_force"] = blocks
        return out

    def _enforced(self, found: list[tuple[Event, Enforcement]]) -> None:
        """Enforcement decisions: enriched, written as events, and raised as alerts."""
        for ev, enf in found:
            if "uspace" in ev.data and ev.proc.get("pid"):
                # decided in user space (fanotify): the start time came from /proc, to the tick
                exact = self.enricher.table.start_of(int(ev.proc["pid"]), int(ev.proc.get("start_ns", 0)))
                if exact is not None:
                    ev.proc["start_ns"] = exact
            if ev.proc.get("pid"):
                self.enricher.enrich(ev)
            self._write(ev)
            self.counters.by_kind[ev.kind] = self.counters.by_kind.get(ev.kind, 0) + 1
            if self.detection is None or self.enforcement is None:
                continue
            alert = enforcement_alert(enf, self.enforcement.policy_by_id(enf.policy_id), ev)
            self.detection.emit(alert)

    def _flush(self) -> None:
        before = self.sink.failed
        try:
            self.sink.flush()
        except OutputError as exc:
            self.counters.output_errors += self.sink.failed - before
            if isinstance(exc.__cause__, BrokenPipeError):
                # the reader of stdout is gone (`sentinel-edge run | head`): stop cleanly
                if not self.output_closed:
                    log.info("output closed by its reader, stopping")
                self.output_closed = True
                return
            if self._flush_errors_logged < 10:
                self._flush_errors_logged += 1
                log.error("%s", exc)

    def _decode(self, raws: list[bytes]) -> list[Event]:
        out: list[Event] = []
        decode = self.decoder.decode  # type: ignore[union-attr]
        for raw in raws:
            try:
                out.append(decode(raw))
            except WireError as exc:
                self.counters.wire_errors += 1
                if self.counters.wire_errors <= 10:
                    log.error("dropping a record that breaks the wire contract: %s", exc)
        self.counters.decoded += len(out)
        return out

    def _process(self, events: list[Event]) -> None:
        by_kind = self.counters.by_kind
        detect = self.detection.process if self.detection is not None else None
        hub = self.hub
        keep = self.cfg.output.events or (self.history is not None and self.cfg.history.events)
        note = self.sockets.note
        for i, ev in enumerate(events, 1):
            if ev.kind == KIND_NET:
                note(ev)
            self.enricher.enrich(ev)
            if keep or (hub is not None and hub.active):
                self._write(ev)
            if detect is not None:
                detect(ev)
            by_kind[ev.kind] = by_kind.get(ev.kind, 0) + 1
            if i % FLUSH_EVERY == 0:
                self._flush()

    def _write(self, ev: Event) -> None:
        """Map one event to OCSF once; write it out, keep it in the history, show it on the live stream."""
        try:
            obj = to_ocsf(ev, self.host)
            key = (str(obj.get("class_name", "")), ev.kind)
            self.counters.by_class[key] = self.counters.by_class.get(key, 0) + 1
            if self.history is not None and (self.cfg.history.events or ev.kind == KIND_HEALTH):
                self.history.add_event(obj)
            if self.hub is not None:
                self.hub.publish("event", obj)
            if self.cfg.output.events or ev.kind == KIND_HEALTH:
                self.sink.write(obj)
        except OutputError as exc:
            self.counters.output_errors += 1
            if self.counters.output_errors <= 10:
                log.error("%s", exc)
        except (KeyError, ValueError, TypeError) as exc:  # a mapping bug must not stop the agent
            self.counters.output_errors += 1
            if self.counters.output_errors <= 10:
                log.exception("mapping %s event failed: %s", ev.kind, exc)

    # -- health -------------------------------------------------------------------

    def _self_proc(self) -> dict[str, Any]:
        pid = os.getpid()
        return {
            "pid": pid, "tid": threading.get_native_id(), "ppid": os.getppid(), "ns_pid": pid,
            "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "egid": os.getegid(),
            "loginuid": 0xFFFFFFFF, "sessionid": 0xFFFFFFFF, "mnt_ns": 0, "pid_ns": 0, "net_ns": 0,
            "cgroup_id": 0, "start_ns": 0, "parent_start_ns": 0, "comm": b"sentinel-edge",
        }

    def _health(self, what: str, message: str, **data: Any) -> None:
        ev = Event(KIND_HEALTH, 90, boot_ns(), 0, self._self_proc(), {"what": what, "message": message, **data})
        self._write(ev)

    def _totals(self) -> dict[str, Any]:
        kernel = self._last_kernel
        return {
            "kernel": kernel,
            "kernel_dropped": sum(v["dropped"] for v in kernel.values()),
            "user_dropped": self.counters.user_dropped,
            "wire_errors": self.counters.wire_errors,
            "output_errors": self.counters.output_errors,
            "queue_dropped": self.counters.queue_dropped,
            "decoded": self.counters.decoded,
            "written": self.sink.written,
        }

    def _sample_stats(self, force: bool = False) -> None:
        """Read kernel counters; raise a health event when any loss grew."""
        if self.session is None:
            return
        kernel = self.session.stats()
        grew = {
            s: kernel[s]["dropped"] - self._last_kernel.get(s, {}).get("dropped", 0)
            for s in SENSORS
        }
        user_grew = self.counters.user_dropped - self._last_user_dropped
        self._last_kernel = kernel
        self._last_user_dropped = self.counters.user_dropped
        now = time.monotonic()
        t0, d0, a0 = self._rate_mark
        raised = self.detection.alerts_raised if self.detection is not None else 0
        if now - t0 >= 0.5:
            self.rates = {"events_per_s": round((self.counters.decoded - d0) / (now - t0), 1),
                          "alerts_per_s": round((raised - a0) / (now - t0), 2)}
            self._rate_mark = (now, self.counters.decoded, raised)
        self._history_health()
        lost = {s: n for s, n in grew.items() if n > 0}
        if lost or user_grew > 0:
            msg = "events lost: " + ", ".join(
                [f"{n} in kernel ring {s}" for s, n in lost.items()]
                + ([f"{user_grew} in user space"] if user_grew > 0 else [])
            )
            log.warning("%s", msg)
            self._health("loss", msg, kernel_dropped_delta=lost, user_dropped_delta=user_grew, **self._totals())
            self._flush()
        self._write_status(running=True)

    def _history_health(self) -> None:
        """A health event when the history store fails to write (disk full, I/O error), and when it recovers.

        Events dropped since the last sample count as a failure even when the store already writes again,
        so a disk that was full for less than a sampling interval is still reported.
        """
        if self.history is None:
            return
        st = self.history.stats()
        dropped = int(st.get("dropped_disk", 0))
        grew = dropped - self._history_dropped
        self._history_dropped = dropped
        failing = not st.get("healthy", True) or grew > 0
        if failing and self._history_ok:
            self._history_ok = False
            why = st.get("health") or f"{grew} events could not be written to {self.history.path}"
            msg = f"history store unhealthy: {why} (events are counted as dropped, alerts kept in memory and retried)"
            log.warning("%s", msg)
            self._health("degraded", msg, component="history", **st)
            self._flush()
        elif not failing and not self._history_ok:
            self._history_ok = True
            self._health("recovered", "history store writes again", component="history", **st)
            self._flush()

    def status(self) -> dict[str, Any]:
        progs = [asdict(p) for p in self.report.programs] if self.report else []
        return {
            "pid": os.getpid(),
            "started_ns": self._started_ns,
            "updated_ns": time.time_ns(),
            "output": self.sink.path or "stdout",
            "programs": progs,
            "fallbacks": self.report.fallbacks if self.report else [],
            "unwatched": self.report.unwatched if self.report else [],
            "notes": self.report.notes if self.report else [],
            "by_kind": dict(self.counters.by_kind),
            "processes_tracked": len(self.enricher),
            "detection": self.detection.status() if self.detection is not None else None,
            "enforcement": self.enforcement.status() if self.enforcement is not None else None,
            "network": self.network.status() if self.network is not None else None,
            "rates": dict(self.rates),
            "queue_depth": len(self._held),
            **self._totals(),
        }

    def _write_status(self, running: bool) -> None:
        data = self.status()
        data["running"] = running
        if self.history is not None:
            data["history"] = self.history.stats()
        if self.status_extra is not None:
            try:
                data.update(self.status_extra())
            except Exception as exc:  # status must never stop the pipeline
                log.warning("status: %r", exc)
        self.last_status = data
        try:
            self.status_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.status_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1))
            os.replace(tmp, self.status_path)
        except OSError as exc:
            log.warning("cannot write status file %s: %s", self.status_path, exc)


def read_status(path: Path | None = None) -> dict[str, Any]:
    """The status a running (or the last) agent wrote."""
    p = path or STATUS_DIR / "status.json"
    try:
        data: dict[str, Any] = json.loads(p.read_text())
    except FileNotFoundError as exc:
        raise SentinelEdgeError(f"no agent status at {p}: is 'sentinel-edge run' running?") from exc
    except (OSError, ValueError) as exc:
        raise SentinelEdgeError(f"cannot read agent status {p}: {exc}") from exc
    if data.get("running"):
        try:
            os.kill(int(data["pid"]), 0)
        except ProcessLookupError:
            data["running"] = False
            data["note"] = "the agent that wrote this status is no longer running (crashed or killed)"
    return data


def _mtime(path: str | None) -> float | None:
    if path is None:
        return None
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


class _LazyBlocker:
    """The kernel address blocker, set up (kernel enforcement installed) only when a block is made."""

    def __init__(self, stage: EnforcementStage) -> None:
        self._stage = stage

    def block(self, addr: Any, ttl_s: float, reason: str) -> None:
        self._stage.address_blocker().block(addr, ttl_s, reason)

    def unblock(self, addr: Any) -> None:
        self._stage.address_blocker().unblock(addr)

    def blocked(self) -> list[Any]:
        return list(self._stage.address_blocker().blocked())
