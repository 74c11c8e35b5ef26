"""The packet inspector in the agent's pipeline (docs/network.md).

    netinspect.bpf.o --ring se_ni_ring--> netdet / dns events ----+
                     --map se_ni_flows--> flow records (polled) --+--> hold --> attribute --> agent pipeline
                                                                             (socket cookie -> process)

Events of the inspector are held until the net sensor's events of the same
moment have been seen (the socket that sent a DNS query may be reported after
the query), then get the owner of their socket cookie as their process, then
go through enrichment, detection, OCSF, history and the API like every other
event. A per-source detection can block its source through the response
blocks (never-block list and cap of ``AddressBlockPolicy``) when
``network.drop`` is on; the aggregate SYN flood never blocks anyone (its
sources are likely spoofed).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sentinel_edge.config import NetworkConfig, split_interface
from sentinel_edge.errors import SentinelEdgeError, WireError
from sentinel_edge.model import KIND_DNS, KIND_FLOW, KIND_NETDET, Event

if TYPE_CHECKING:
    from sentinel_edge.enforce.kernel import EnforceKernel
    from sentinel_edge.enrich.sockets import SocketTable
    from sentinel_edge.netinspect.kernel import FlowEntry, Interface, NetInspectKernel, NiSettings
    from sentinel_edge.wire.decode import Decoder

log = logging.getLogger(__name__)

CLOSED_LINGER_NS = 2_000_000_000  # a closed TCP flow stays in the table this long for its last ACKs
HOLD_NS = 30_000_000
DNS_MATCH_NS = 30_000_000_000  # a reply is matched to its query's process for this long
DNS_MATCH_MAX = 8192  # inspector events wait this long for the socket events of the same moment
SE_EV_FLOW = 62  # bpf/shared/events.h: flow records synthesised from se_ni_flows

DET_SYN_FLOOD_SRC, DET_SYN_FLOOD_ALL, DET_PORT_SCAN, DET_ICMP_FLOOD = 1, 2, 3, 4
DET_NAMES = {DET_SYN_FLOOD_SRC: "syn_flood", DET_SYN_FLOOD_ALL: "syn_flood_total", DET_PORT_SCAN: "port_scan",
             DET_ICMP_FLOOD: "icmp_flood"}
BLOCKING_KINDS = (DET_SYN_FLOOD_SRC, DET_PORT_SCAN, DET_ICMP_FLOOD)  # never the aggregate flood

TCP_FIN, TCP_RST = 0x01, 0x04
IPPROTO_TCP = 6

Blocker = Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address, float, str], dict[str, Any]]


def settings_of(cfg: NetworkConfig) -> NiSettings:
    from sentinel_edge.netinspect.kernel import NiSettings

    return NiSettings(window_s=cfg.window_ms / 1000, syn_src=cfg.syn_flood_per_source, syn_all=cfg.syn_flood_total,
                      scan_ports=cfg.port_scan_ports, icmp=cfg.icmp_flood, flows=cfg.flows, dns=cfg.dns,
                      dns_max=cfg.dns_max_bytes, ring_bytes=cfg.ring_kib * 1024, flow_entries=cfg.flow_entries)


def interface_of(spec: str, cfg: NetworkConfig) -> Interface:
    from sentinel_edge.netinspect.kernel import Interface

    netns, name = split_interface(spec)
    return Interface(name=name, netns=netns, xdp=cfg.xdp, tc=cfg.tc)


def _community(f: FlowEntry, sa: str, sp: int, da: str, dp: int) -> str:
    """The flow's Community ID ('' when an address is unknown); ICMP keys keep type << 8 | code in rport."""
    from sentinel_edge.netinspect.community import community_id

    if not sa or not da:
        return ""
    try:
        if f.proto in (1, 58):
            return community_id(f.proto, sa, 0, da, 0, icmp_type_code=(f.rport >> 8, f.rport & 0xFF))
        return community_id(f.proto, sa, sp, da, dp)
    except ValueError as exc:
        log.debug("no Community ID for flow %s:%s -> %s:%s: %s", sa, sp, da, dp, exc)
        return ""


def addr_text(family: int, raw: bytes) -> str:
    """16 raw address bytes of the wire (IPv4 in the first 4) as text; '' for an all-zero address."""
    if not any(raw):
        return ""
    if family == 2:
        return str(ipaddress.IPv4Address(bytes(raw[:4])))
    return str(ipaddress.IPv6Address(bytes(raw[:16])))


@dataclass(slots=True)
class _FlowMark:
    pkts: int
    exported_ns: int
    closed: bool = False


@dataclass(slots=True)
class NetStats:
    detections: dict[str, int] = field(default_factory=dict)
    dns: int = 0
    dns_parse_errors: int = 0
    flows_exported: int = 0
    flows_closed: int = 0
    attributed: int = 0
    unattributed: int = 0
    blocks: int = 0
    blocks_refused: int = 0
    wire_errors: int = 0
    flow_read_errors: int = 0
    other_interfaces: int = 0  # events of interfaces not in network.interfaces (ignored)


class NetInspectStage:
    """Loads the inspector, keeps its interfaces as configured, turns its output into pipeline events."""

    def __init__(self, cfg: NetworkConfig, *, enforce_kernel: Callable[[], EnforceKernel | None] | None = None,
                 block: Blocker | None = None, obj_path: str | None = None,
                 clock: Callable[[], int] | None = None) -> None:
        self.cfg = cfg
        self._enforce_kernel = enforce_kernel
        self._block = block
        self.obj_path = obj_path
        self._clock = clock or (lambda: time.clock_gettime_ns(time.CLOCK_BOOTTIME))
        self.kernel: NetInspectKernel | None = None
        self._decoder: Decoder | None = None
        self.interfaces: dict[str, Interface] = {}  # spec -> attached interface
        self.problems: dict[str, str] = {}  # spec -> why it is not attached
        self.stats = NetStats()
        self._held: list[Event] = []
        self._marks: dict[bytes, _FlowMark] = {}
        self._next_flows = 0.0
        self._ifnames: dict[int, tuple[str, str | None]] = {}  # ifindex -> (name, netns)
        self._index: dict[str, int] = {}  # spec -> ifindex of the attached interfaces
        self._hooks: dict[str, tuple[str, ...]] = {}  # spec -> hooks attached there
        self._dns_owner: dict[tuple[Any, ...], tuple[dict[str, Any], int]] = {}  # see _dns_match

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> list[str]:
        """Attach to the configured interfaces (the object is loaded with the first); notes for the health event."""
        self._next_flows = time.monotonic() + self.cfg.flow_interval_s
        return self.set_interfaces(self.cfg.interfaces)

    def _ensure_loaded(self) -> NetInspectKernel:
        if self.kernel is None:
            from sentinel_edge.netinspect.kernel import NetInspectKernel
            from sentinel_edge.wire.decode import Decoder

            kernel = NetInspectKernel(settings_of(self.cfg), obj_path=self.obj_path)
            kernel.load()
            self.kernel = kernel
            self._decoder = Decoder(kernel.btf)
        return self.kernel

    def set_interfaces(self, specs: list[str]) -> list[str]:
        """Attach to the interfaces newly listed, detach from those no longer listed; what happened, in words.

        Loading the inspector (at the first interface) can raise NetInspectError; a single interface that
        cannot be attached is a problem noted, not an error.
        """
        notes: list[str] = []
        want = list(dict.fromkeys(specs))
        if not want and self.kernel is None:
            return notes
        kernel = self._ensure_loaded()
        for spec in [s for s in self.interfaces if s not in want]:
            iface = self.interfaces.pop(spec)
            self._index.pop(spec, None)
            self._hooks.pop(spec, None)
            try:
                kernel.detach(iface)
                notes.append(f"network inspector detached from {spec}")
            except SentinelEdgeError as exc:
                notes.append(f"network inspector: detaching from {spec}: {exc}")
        for spec in list(self.problems):
            if spec not in want:
                del self.problems[spec]
        for spec in want:
            if spec in self.interfaces:
                continue
            try:
                iface = interface_of(spec, self.cfg)
                enforce = self._enforce_kernel() if (iface.xdp and self._enforce_kernel is not None) else None
                got = kernel.attach(iface, enforce)
            except (SentinelEdgeError, ValueError) as exc:
                self.problems[spec] = str(exc)
                notes.append(f"network inspector not attached to {spec}: {exc}")
                log.error("network inspector not attached to %s: %s", spec, exc)
                continue
            clash = next((s for s, i in self.interfaces.items() if self._index.get(s) == got.ifindex), None)
            if clash is not None:
                # the flow table is keyed by ifindex, unique only inside one namespace
                with contextlib.suppress(SentinelEdgeError):
                    kernel.detach(iface)
                why = (f"interface index {got.ifindex} is also the index of {clash} (another namespace): flows "
                       f"could not be told apart; give one of them another index (ip link add ... index N)")
                self.problems[spec] = why
                notes.append(f"network inspector not attached to {spec}: {why}")
                log.error("network inspector not attached to %s: %s", spec, why)
                continue
            self.problems.pop(spec, None)
            self.interfaces[spec] = iface
            self._index[spec] = got.ifindex
            self._hooks[spec] = tuple(got.hooks)
            self._ifnames[got.ifindex] = (iface.name, iface.netns)
            notes.append(f"network inspector attached to {spec} (ifindex {got.ifindex}: "
                         f"{', '.join(got.hooks)})")
        for n in notes:
            log.info("%s", n)
        return notes

    def close(self, sockets: SocketTable | None = None) -> list[Event]:
        """Detach everything; the flows still in the table are returned as final records."""
        out: list[Event] = []
        if self.kernel is None:
            return out
        try:
            out = self._release(self._held, sockets, final=True)
            self._held = []
            out += self._flows(sockets, final=True)
        finally:
            self.kernel.close()
            self.kernel = None
            self.interfaces.clear()
        return out

    # -- the pipeline --------------------------------------------------------------------

    def drain(self, sockets: SocketTable | None, cut_ns: int, final: bool = False) -> list[Event]:
        """Events ready for the pipeline: ring events old enough to be attributed, and flow records when due.

        ``cut_ns`` is the agent's watermark: every net sensor event up to
        that time has been processed (its socket noted in ``sockets``). An
        inspector event is released once it is HOLD_NS older than that, and
        a flow is exported once its first packet is, so the socket events of
        their moment (connect, accept, the SYN_SENT state change, which comes
        before the first packet) have been seen first, even when the agent
        is behind on a busy host.
        """
        if self.kernel is None or self._decoder is None:
            return []
        raws: list[bytes] = []
        self.kernel.ring().drain(raws, 1 << 30 if final else 4096)
        decode = self._decoder.decode
        for raw in raws:
            try:
                self._held.append(decode(raw))
            except WireError as exc:
                self.stats.wire_errors += 1
                if self.stats.wire_errors <= 10:
                    log.error("network inspector: dropping a record that breaks the wire contract: %s", exc)
        if final:
            ready, self._held = self._held, []
        else:
            # detections belong to no socket: they go at once (a drop should not wait); DNS messages wait
            # for their socket's events
            limit = cut_ns - HOLD_NS
            ready = [e for e in self._held if e.kind == KIND_NETDET or e.ts_ns <= limit]
            if ready:
                self._held = [e for e in self._held if e.kind != KIND_NETDET and e.ts_ns > limit]
        out = self._release(ready, sockets, final)
        if final or time.monotonic() >= self._next_flows:
            self._next_flows = time.monotonic() + self.cfg.flow_interval_s
            out += self._flows(sockets, final=False, mark_ns=None if final else cut_ns - HOLD_NS)
        return out

    def pending(self) -> int:
        return len(self._held)

    def _release(self, events: list[Event], sockets: SocketTable | None, final: bool) -> list[Event]:
        out: list[Event] = []
        attached = set(self._index.values())
        for ev in events:
            d = ev.data
            ifindex = int(d.get("ifindex", 0))
            if ifindex not in attached:
                # slot 0 of the XDP entry is shared by every interface the entry program runs on (inbound
                # policies may attach it elsewhere): only the configured interfaces are reported
                self.stats.other_interfaces += 1
                continue
            name, netns = self._ifnames.get(ifindex, ("", None))
            d["ifname"] = name
            d["netns"] = netns
            if ev.kind == KIND_DNS:
                self._dns(ev)
                self._attribute(ev, sockets, int(d.get("cookie", 0)))
                self._dns_match(ev)
            elif ev.kind == KIND_NETDET:
                ev.proc = {}
                kind = int(d.get("kind", 0))
                label = DET_NAMES.get(kind, str(kind))
                self.stats.detections[label] = self.stats.detections.get(label, 0) + 1
                d["response"] = self._respond(ev) if (self.cfg.drop and kind in BLOCKING_KINDS) else None
            else:
                ev.proc = {}
            out.append(ev)
        return out

    def _attribute(self, ev: Event, sockets: SocketTable | None, cookie: int) -> None:
        owner = sockets.owner(cookie) if sockets is not None else None
        if owner is None:
            ev.proc = {}
            self.stats.unattributed += 1
        else:
            ev.proc = owner
            self.stats.attributed += 1

    def _dns(self, ev: Event) -> None:
        from sentinel_edge.netinspect.dns import parse_dns

        d = ev.data
        msg = d.get("msg") or b""
        parsed = parse_dns(bytes(msg), tcp=int(d.get("proto", 17)) == IPPROTO_TCP)
        d["parsed"] = parsed.as_dict()
        if d["parsed"].get("error"):
            self.stats.dns_parse_errors += 1
        self.stats.dns += 1

    def _dns_match(self, ev: Event) -> None:
        """A message without a socket (ingress: the reply to a local client) gets the process of its query.

        Matched on (interface, protocol, client address and port, server address, message id); the query's
        process came from its socket cookie. Entries live DNS_MATCH_NS.
        """
        d = ev.data
        parsed = d.get("parsed") or {}
        if parsed.get("id") is None:
            return
        fam = int(d.get("family", 0))
        src, dst = (addr_text(fam, d.get("saddr", b"")), int(d.get("sport", 0))), \
            (addr_text(fam, d.get("daddr", b"")), int(d.get("dport", 0)))
        client, server = (dst, src) if parsed.get("response") else (src, dst)
        key = (int(d.get("ifindex", 0)), int(d.get("proto", 0)), client, server[0], int(parsed["id"]))
        owners = self._dns_owner
        now = ev.ts_ns
        while owners:
            k0, (_, t0) = next(iter(owners.items()))
            if now - t0 < DNS_MATCH_NS and len(owners) <= DNS_MATCH_MAX:
                break
            del owners[k0]
        if ev.proc:
            owners[key] = (ev.proc, now)
        elif key in owners:
            ev.proc = owners[key][0]
            self.stats.attributed += 1
            self.stats.unattributed -= 1

    def _respond(self, ev: Event) -> dict[str, Any]:
        d = ev.data
        src = addr_text(int(d.get("family", 0)), d.get("saddr", b""))
        out: dict[str, Any] = {"action": "block", "ok": False, "ttl_s": self.cfg.drop_ttl_s, "address": src}
        if self._block is None:
            out["error"] = "no response blocks in this agent"
            return out
        label = DET_NAMES.get(int(d.get("kind", 0)), "detection")
        try:
            window_ms = int(d.get("window_ns", 0)) // 1_000_000
            got = self._block(ipaddress.ip_address(src), self.cfg.drop_ttl_s,
                              f"network inspector: {label} ({d.get('count')} in {window_ms} ms)")
        except (SentinelEdgeError, ValueError) as exc:
            self.stats.blocks_refused += 1
            out["error"] = str(exc)
            log.warning("network inspector: %s from %s not blocked: %s", label, src, exc)
            return out
        self.stats.blocks += 1
        out.update(got)
        out["ok"] = True
        log.warning("network inspector: %s from %s, blocked for %.0f s", label, src, self.cfg.drop_ttl_s)
        return out

    # -- flows -------------------------------------------------------------------------------

    def _flows(self, sockets: SocketTable | None, final: bool, mark_ns: int | None = None) -> list[Event]:
        """Flow records of the flows that changed since the last export; closed and idle ones are forgotten.

        A flow whose first packet is later than ``mark_ns`` waits for the next read (its socket's events
        have not been processed yet); None: no wait.
        """
        assert self.kernel is not None
        if not self.cfg.flows or not self.cfg.tc:
            return []
        try:
            entries = self.kernel.read_flows()
        except SentinelEdgeError as exc:
            self.stats.flow_read_errors += 1
            log.error("network inspector: reading the flow table: %s", exc)
            return []
        now = self._clock()
        idle_ns = int(self.cfg.flow_idle_s * 1e9)
        out: list[Event] = []
        gone: list[bytes] = []
        seen: set[bytes] = set()
        attached = set(self._index.values())
        for f in entries:
            seen.add(f.key)
            if mark_ns is not None and f.first_ns > mark_ns:
                continue
            if f.ifindex not in attached:
                continue
            pkts = f.pkts_in + f.pkts_out
            closed = f.proto == IPPROTO_TCP and bool((f.flags_in | f.flags_out) & TCP_RST or (
                f.flags_in & TCP_FIN and f.flags_out & TCP_FIN))
            quiet_ns = now - f.last_ns
            mark = self._marks.get(f.key)
            if mark is not None and mark.closed:
                # exported as closed; the last ACKs may still come: forget it once it has been quiet a while
                if quiet_ns >= CLOSED_LINGER_NS or final:
                    gone.append(f.key)
                    del self._marks[f.key]
                continue
            if closed:
                state = "closed"
                if quiet_ns >= CLOSED_LINGER_NS or final:
                    gone.append(f.key)
                    self._marks.pop(f.key, None)
                else:
                    self._marks[f.key] = _FlowMark(pkts, now, closed=True)
            elif quiet_ns >= idle_ns:
                state = "idle"  # its last record, also when nothing changed since the one before
                gone.append(f.key)
                self._marks.pop(f.key, None)
            elif mark is None or mark.pkts != pkts or final:
                state = "active"
                self._marks[f.key] = _FlowMark(pkts, now)
            else:
                continue
            out.append(self._flow_event(f, state, sockets))
        for k in [k for k in self._marks if k not in seen]:
            del self._marks[k]  # evicted by the LRU (or deleted elsewhere)
        if gone:
            try:
                self.kernel.delete_flows(gone)
            except SentinelEdgeError as exc:
                log.error("network inspector: deleting ended flows: %s", exc)
        self.stats.flows_exported += len(out)
        self.stats.flows_closed += len(gone)
        return out

    def _flow_event(self, f: FlowEntry, state: str, sockets: SocketTable | None) -> Event:
        name, netns = self._ifnames.get(f.ifindex, ("", None))
        laddr, raddr = addr_text(f.family, f.laddr), addr_text(f.family, f.raddr)
        local_first = f.initiator == 2
        sa, sp, da, dp = (laddr, f.lport, raddr, f.rport) if local_first else (raddr, f.rport, laddr, f.lport)
        data: dict[str, Any] = {
            "ifindex": f.ifindex, "ifname": name, "netns": netns, "family": f.family, "proto": f.proto,
            "lport": f.lport, "rport": f.rport, "laddr": bytes(f.laddr), "raddr": bytes(f.raddr),
            "first_ns": f.first_ns, "last_ns": f.last_ns, "pkts_in": f.pkts_in, "bytes_in": f.bytes_in,
            "pkts_out": f.pkts_out, "bytes_out": f.bytes_out, "cookie": f.cookie, "flags_in": f.flags_in,
            "flags_out": f.flags_out, "initiator": f.initiator, "state": state,
            "community_id": _community(f, sa, sp, da, dp),
        }
        ev = Event(KIND_FLOW, SE_EV_FLOW, f.last_ns, 0, {}, data)
        self._attribute(ev, sockets, f.cookie)
        return ev

    # -- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        st: dict[str, Any] = {
            "interfaces": {spec: {"name": i.name, "netns": i.netns, "xdp": i.xdp, "tc": i.tc,
                                  "ifindex": self._index.get(spec), "hooks": list(self._hooks.get(spec, ()))}
                           for spec, i in self.interfaces.items()},
            "problems": dict(self.problems),
            "detections": dict(self.stats.detections), "dns": self.stats.dns,
            "dns_parse_errors": self.stats.dns_parse_errors, "flows_exported": self.stats.flows_exported,
            "flows_closed": self.stats.flows_closed, "attributed": self.stats.attributed,
            "unattributed": self.stats.unattributed, "blocks": self.stats.blocks,
            "blocks_refused": self.stats.blocks_refused, "wire_errors": self.stats.wire_errors,
            "other_interfaces": self.stats.other_interfaces,
            "held": len(self._held),
        }
        if self.kernel is not None:
            try:
                st["counters"] = self.kernel.counters()
            except SentinelEdgeError as exc:
                st["counters_error"] = str(exc)
        return st
