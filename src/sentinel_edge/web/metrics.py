"""Prometheus ``/metrics``: a collector that reads the agent's counters at scrape time.

Nothing is counted twice: the pipeline keeps its plain counters (ints and
dicts, updated on the pipeline thread) and this collector turns them into
metric families when Prometheus scrapes. Names follow Prometheus
conventions: ``sentinel_edge_`` prefix, base units (seconds, bytes),
``_total`` for counters.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from sentinel_edge.detection import EVAL_BUCKETS

if TYPE_CHECKING:
    from sentinel_edge.web.backend import Backend

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PROGRAM_STATES = ("attached", "skipped", "failed")


def _hist(name: str, doc: str, bounds: tuple[float, ...] | list[float], counts: list[int], sum_s: float,
          ) -> HistogramMetricFamily:
    """A histogram family from per-bucket (non-cumulative, last = +Inf) counts."""
    fam = HistogramMetricFamily(name, doc)
    buckets: list[tuple[str, float]] = []
    acc = 0
    for b, n in zip([*map(float, bounds), float("inf")], counts, strict=False):
        acc += n
        buckets.append(("+Inf" if b == float("inf") else repr(b), acc))
    fam.add_metric([], buckets, sum_s)
    return fam


class AgentCollector(Collector):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def collect(self) -> Iterator[Metric]:
        b = self.backend
        agent = b.agent
        up = GaugeMetricFamily("sentinel_edge_up", "1 while the agent's pipeline loop is running")
        up.add_metric([], 1.0 if b.live() else 0.0)
        yield up
        if agent is None:
            return
        ev = CounterMetricFamily("sentinel_edge_events", "Events processed, by OCSF class and event kind",
                                 labels=["class", "kind"])
        by_class = dict(agent.counters.by_class)
        for (cls, kind), n in sorted(by_class.items()):
            ev.add_metric([cls, kind], n)
        for kind, n in sorted(dict(agent.counters.by_kind).items()):
            if not any(k == kind for _, k in by_class):
                ev.add_metric(["", kind], n)
        yield ev
        kernel = dict(agent.last_kernel)
        ke = CounterMetricFamily("sentinel_edge_kernel_events", "Events the kernel sensors emitted",
                                 labels=["sensor"])
        kd = CounterMetricFamily("sentinel_edge_kernel_dropped", "Events lost in the kernel (ring full)",
                                 labels=["sensor"])
        kf = CounterMetricFamily("sentinel_edge_kernel_filtered",
                                 "Events the kernel filters dropped on purpose (filters, dedup)",
                                 labels=["sensor", "why"])
        for sensor, kc in sorted(kernel.items()):
            ke.add_metric([sensor], kc.get("emitted", 0))
            kd.add_metric([sensor], kc.get("dropped", 0))
            kf.add_metric([sensor, "filtered"], kc.get("filtered", 0))
            kf.add_metric([sensor, "deduped"], kc.get("deduped", 0))
        yield ke
        yield kd
        yield kf
        c = agent.counters
        ud = CounterMetricFamily("sentinel_edge_user_dropped", "Events lost in user space", labels=["reason"])
        ud.add_metric(["wire"], c.wire_errors)
        ud.add_metric(["output"], c.output_errors)
        ud.add_metric(["queue"], c.queue_dropped)
        yield ud
        qd = GaugeMetricFamily("sentinel_edge_queue_depth", "Decoded events waiting in user space")
        qd.add_metric([], agent.queue_depth())
        yield qd
        det = agent.detection
        if det is not None:
            al = CounterMetricFamily("sentinel_edge_alerts", "Alerts raised, by severity and rule",
                                     labels=["severity", "rule"])
            for (sev, rule), n in sorted(dict(det.alerts_by).items()):
                al.add_metric([sev, rule], n)
            yield al
            yield _hist("sentinel_edge_rule_eval_seconds", "Rule evaluation time per event (all candidate rules)",
                        EVAL_BUCKETS, list(det.eval_counts), det.eval_sum_ns / 1e9)
            rl = GaugeMetricFamily("sentinel_edge_rules", "Rules loaded, by state", labels=["state"])
            rl.add_metric(["enabled"], len(det.engine))
            rl.add_metric(["disabled"], len(det.all_rules) - len(det.engine))
            yield rl
        if b.store is not None:
            yield from _history(b.store)
        if agent.network is not None and agent.network.kernel is not None:
            yield from _network(agent.network.status())
        enf = agent.enforcement
        if enf is not None and enf.kernel._fds:
            ek = CounterMetricFamily("sentinel_edge_enforce_kernel",
                                     "Kernel enforcement counters (hits, kills, denies, XDP drops, ...)",
                                     labels=["counter"])
            for name, value in sorted(enf.kernel.stats().items()):
                ek.add_metric([name], value)
            yield ek
        pa = GaugeMetricFamily("sentinel_edge_program_attached",
                               "Program attach state (1 for the state the program is in)",
                               labels=["program", "state"])
        if agent.report is not None:
            for p in agent.report.programs:
                for s in PROGRAM_STATES:
                    pa.add_metric([p.name, s], 1.0 if p.state == s else 0.0)
        yield pa
        wr = CounterMetricFamily("sentinel_edge_worker_restarts", "Internal workers restarted by the watchdog",
                                 labels=["worker"])
        for name, n in sorted(b.worker_restarts_total.items()):
            wr.add_metric([name], n)
        yield wr
        ss = GaugeMetricFamily("sentinel_edge_stream_subscribers", "Live stream readers")
        ss.add_metric([], b.hub.subscribers())
        yield ss


PARSE_FAILURES = ("bad_l2", "bad_ipv4", "bad_ihl", "bad_ipv6", "ipv6_ext_limit", "bad_l4")


def _network(st: dict[str, Any]) -> Iterator[Metric]:
    """The packet inspector: kernel counters per hook, detections, flows, DNS, blocks."""
    pk = CounterMetricFamily("sentinel_edge_net_packets", "Packets seen by the inspector, by hook", labels=["hook"])
    by = CounterMetricFamily("sentinel_edge_net_bytes", "Bytes seen by the inspector, by hook", labels=["hook"])
    pf = CounterMetricFamily("sentinel_edge_net_parse_failures",
                             "Packets the inspector could not parse (passed, not dropped), by hook and reason",
                             labels=["hook", "reason"])
    rd = CounterMetricFamily("sentinel_edge_net_ring_dropped", "Inspector events lost to a full ring, by hook",
                             labels=["hook"])
    other = CounterMetricFamily("sentinel_edge_net_kernel", "Other inspector kernel counters (fragments, non-IP, "
                                "flow entries created or refused, events emitted)", labels=["hook", "counter"])
    for hook, counters in sorted((st.get("counters") or {}).items()):
        for name, value in sorted(counters.items()):
            if name == "packets":
                pk.add_metric([hook], value)
            elif name == "bytes":
                by.add_metric([hook], value)
            elif name in PARSE_FAILURES:
                pf.add_metric([hook, name], value)
            elif name == "ring_dropped":
                rd.add_metric([hook], value)
            else:
                other.add_metric([hook, name], value)
    yield from (pk, by, pf, rd, other)
    det = CounterMetricFamily("sentinel_edge_net_detections", "In-kernel network detections, by kind",
                              labels=["kind"])
    for kind, n in sorted(st.get("detections", {}).items()):
        det.add_metric([kind], n)
    yield det
    fl = CounterMetricFamily("sentinel_edge_net_flows_exported", "Flow records exported (active, closed, idle)")
    fl.add_metric([], st.get("flows_exported", 0))
    yield fl
    dn = CounterMetricFamily("sentinel_edge_net_dns_messages", "DNS messages seen, by parse result",
                             labels=["result"])
    dn.add_metric(["parsed"], st.get("dns", 0) - st.get("dns_parse_errors", 0))
    dn.add_metric(["error"], st.get("dns_parse_errors", 0))
    yield dn
    bl = CounterMetricFamily("sentinel_edge_net_blocks", "Sources blocked by the inspector's drop action, by result",
                             labels=["result"])
    bl.add_metric(["blocked"], st.get("blocks", 0))
    bl.add_metric(["refused"], st.get("blocks_refused", 0))
    yield bl
    at = CounterMetricFamily("sentinel_edge_net_attribution", "Inspector events tied to a process by socket cookie",
                             labels=["result"])
    at.add_metric(["attributed"], st.get("attributed", 0))
    at.add_metric(["unattributed"], st.get("unattributed", 0))
    yield at
    ifs = GaugeMetricFamily("sentinel_edge_net_interface", "Interfaces of network.interfaces (1 attached, 0 not)",
                            labels=["interface"])
    for spec in st.get("interfaces", {}):
        ifs.add_metric([spec], 1.0)
    for spec in st.get("problems", {}):
        ifs.add_metric([spec], 0.0)
    yield ifs


def _history(store: Any) -> Iterator[Metric]:
    st = store.stats()
    size = GaugeMetricFamily("sentinel_edge_history_bytes", "Size of the history database on disk (file + WAL)")
    size.add_metric([], float(st.get("db_bytes", 0)))
    yield size
    wr = CounterMetricFamily("sentinel_edge_history_written", "Objects committed to the history",
                             labels=["what"])
    wr.add_metric(["events"], st.get("written_events", 0))
    wr.add_metric(["alerts"], st.get("written_alerts", 0))
    yield wr
    dr = CounterMetricFamily("sentinel_edge_history_dropped", "Objects the history could not keep",
                             labels=["reason"])
    for reason, key in (("queue_full", "dropped_full_queue"), ("disk", "dropped_disk"),
                        ("alerts_overflow", "dropped_alerts"), ("invalid", "dropped_invalid")):
        dr.add_metric([reason], st.get(key, 0))
    yield dr
    pend = GaugeMetricFamily("sentinel_edge_history_pending", "Objects waiting to be written", labels=["what"])
    pend.add_metric(["queue"], float(st.get("queue_depth", 0)))
    pend.add_metric(["alerts_retry"], float(st.get("pending_alerts", 0)))
    yield pend
    healthy = GaugeMetricFamily("sentinel_edge_history_healthy", "1 while the history store writes normally")
    healthy.add_metric([], 1.0 if st.get("healthy", True) else 0.0)
    yield healthy
    lat = getattr(store, "write_latency", None)
    if lat is not None:
        fam = HistogramMetricFamily("sentinel_edge_history_write_seconds",
                                    "History commit latency per transaction", labels=["what"])
        for what, h in sorted(lat().items()):
            bounds, cumulative, sum_s = _hist_parts(h)
            buckets = [("+Inf" if b == float("inf") else repr(float(b)), n)
                       for b, n in zip([*bounds, float("inf")], cumulative, strict=False)]
            fam.add_metric([what], buckets, sum_s)
        yield fam


def _hist_parts(h: Any) -> tuple[list[float], list[int], float]:
    """(bounds, cumulative counts with +Inf last, sum) of the store's WriteLatency."""
    return [float(b) for b in h.bounds], [*map(int, h.counts), int(h.count)], float(h.sum_s)


def registry_for(backend: Backend) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(AgentCollector(backend))
    return reg


def render(registry: CollectorRegistry) -> bytes:
    out: bytes = generate_latest(registry)
    return out
