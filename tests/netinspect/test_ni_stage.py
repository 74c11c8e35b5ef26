"""Logic of the inspector's pipeline stage without a kernel: flow export states, socket attribution,
DNS reply matching and the drop decision. The kernel side is tested for real in test_ni_attach.py and
test_network_agent.py; here a stand-in flow table lets every state transition be driven exactly."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import pytest

from sentinel_edge.config import NetworkConfig
from sentinel_edge.enrich.sockets import SocketTable
from sentinel_edge.errors import EnforceError
from sentinel_edge.model import KIND_DNS, KIND_FLOW, KIND_NET, KIND_NETDET, Event
from sentinel_edge.netinspect.stage import CLOSED_LINGER_NS, NetInspectStage, addr_text

S = 1_000_000_000


@dataclass
class Flow:
    key: bytes
    ifindex: int = 7
    family: int = 2
    proto: int = 6
    lport: int = 40000
    rport: int = 80
    laddr: bytes = bytes([10, 0, 0, 1]) + bytes(12)
    raddr: bytes = bytes([10, 0, 0, 2]) + bytes(12)
    first_ns: int = 0
    last_ns: int = 0
    pkts_in: int = 0
    bytes_in: int = 0
    pkts_out: int = 0
    bytes_out: int = 0
    cookie: int = 0
    flags_in: int = 0
    flags_out: int = 0
    initiator: int = 2


@dataclass
class FakeKernel:
    flows: dict[bytes, Flow] = field(default_factory=dict)
    deleted: list[bytes] = field(default_factory=list)

    def read_flows(self) -> list[Flow]:
        return list(self.flows.values())

    def delete_flows(self, keys: Any) -> None:
        for k in keys:
            self.deleted.append(k)
            self.flows.pop(k, None)


class Clock:
    def __init__(self) -> None:
        self.now = 100 * S

    def __call__(self) -> int:
        return self.now


def _stage(**cfg: Any) -> tuple[NetInspectStage, FakeKernel, Clock]:
    clock = Clock()
    st = NetInspectStage(NetworkConfig(**cfg), clock=clock)
    k = FakeKernel()
    st.kernel = k  # type: ignore[assignment]
    st._ifnames[7] = ("veth0", "blue")
    st._index["blue/veth0"] = 7
    return st, k, clock


def test_flow_records_follow_the_flow_through_its_states() -> None:
    st, k, clock = _stage(flow_idle_s=60)
    f = Flow(b"k1", first_ns=clock.now - S, last_ns=clock.now, pkts_out=1, bytes_out=60, flags_out=0x02)
    k.flows[f.key] = f
    (rec,) = st._flows(None, final=False)
    assert rec.kind == KIND_FLOW and rec.data["state"] == "active" and rec.data["pkts_out"] == 1
    assert rec.data["ifname"] == "veth0" and rec.data["netns"] == "blue" and rec.proc == {}
    assert rec.data["community_id"].startswith("1:")
    assert st._flows(None, final=False) == []  # nothing changed: no record
    f.pkts_in, f.flags_in, f.last_ns = 1, 0x12, clock.now
    (rec,) = st._flows(None, final=False)
    assert rec.data["state"] == "active" and rec.data["pkts_in"] == 1
    # FIN both ways: one "closed" record; the entry stays for the last ACK, then goes quietly
    f.flags_in |= 0x01
    f.flags_out |= 0x01
    f.pkts_out += 2
    (rec,) = st._flows(None, final=False)
    assert rec.data["state"] == "closed" and k.deleted == []
    f.pkts_out += 1  # the last ACK
    assert st._flows(None, final=False) == []
    clock.now += CLOSED_LINGER_NS
    assert st._flows(None, final=False) == [] and k.deleted == [b"k1"]


def test_reset_closes_and_idle_flows_end() -> None:
    st, k, clock = _stage(flow_idle_s=5)
    k.flows[b"r"] = Flow(b"r", last_ns=clock.now - 3 * S, pkts_in=3, flags_in=0x04)  # RST seen, quiet 3 s
    k.flows[b"u"] = Flow(b"u", proto=17, last_ns=clock.now - 6 * S, pkts_out=2)  # UDP, idle past 5 s
    k.flows[b"a"] = Flow(b"a", proto=17, last_ns=clock.now, pkts_out=4)
    states = {r.data["proto"] * 1000 + r.data["pkts_in"] + r.data["pkts_out"]: r.data["state"]
              for r in st._flows(None, final=False)}
    assert sorted(states.values()) == ["active", "closed", "idle"]
    assert (states[6003], states[17002], states[17004]) == ("closed", "idle", "active")
    assert sorted(k.deleted) == [b"r", b"u"]  # the reset one was quiet past the linger already


def test_flow_and_dns_attribution_by_socket_cookie() -> None:
    st, k, clock = _stage()
    sockets = SocketTable()
    owner = {"pid": 4242, "start_ns": 5, "comm": b"curl"}
    sockets.note(Event(KIND_NET, 20, 1, 0, owner, {"op": 2, "cookie": 99}))
    # a later state change event of the same socket (softirq context) does not replace the owner
    sockets.note(Event(KIND_NET, 20, 2, 0, {"pid": 1, "comm": b"swapper"}, {"op": 8, "cookie": 99}))
    assert sockets.owner(99) is owner and sockets.owner(0) is None and sockets.owner(5) is None
    k.flows[b"c"] = Flow(b"c", last_ns=clock.now, pkts_out=1, cookie=99)
    k.flows[b"n"] = Flow(b"n", last_ns=clock.now, pkts_out=1, cookie=0)
    recs = {r.data["cookie"]: r for r in st._flows(sockets, final=False)}
    assert recs[99].proc is owner and recs[0].proc == {}
    assert st.stats.attributed == 1 and st.stats.unattributed == 1


def test_socket_table_is_bounded() -> None:
    t = SocketTable(max_entries=3)
    for c in range(1, 6):
        t.note(Event(KIND_NET, 20, c, 0, {"pid": c}, {"op": 2, "cookie": c}))
    assert len(t) == 3 and t.owner(1) is None and t.owner(5) == {"pid": 5}


def _dns_event(ts: int, *, out: bool, response: bool, msg_id: int, cookie: int) -> Event:
    client, server = bytes([10, 0, 0, 1]) + bytes(12), bytes([10, 0, 0, 2]) + bytes(12)
    data: dict[str, Any] = {"ifindex": 7, "dir": int(out), "family": 2, "proto": 17,
                            "saddr": server if response else client, "daddr": client if response else server,
                            "sport": 53 if response else 5555, "dport": 5555 if response else 53,
                            "cookie": cookie, "parsed": {"id": msg_id, "response": response}}
    return Event(KIND_DNS, 61, ts, 0, {}, data)


def test_a_reply_gets_the_process_of_its_query() -> None:
    st, _k, clock = _stage()
    sockets = SocketTable()
    owner = {"pid": 777, "start_ns": 1}
    sockets.note(Event(KIND_NET, 20, 1, 0, owner, {"op": 2, "cookie": 5}))
    q = _dns_event(clock.now, out=True, response=False, msg_id=0x1234, cookie=5)
    st._attribute(q, sockets, 5)
    st._dns_match(q)
    r = _dns_event(clock.now + S, out=False, response=True, msg_id=0x1234, cookie=0)
    st._attribute(r, sockets, 0)
    st._dns_match(r)
    assert r.proc is owner
    other = _dns_event(clock.now + S, out=False, response=True, msg_id=0x9999, cookie=0)  # another id
    st._attribute(other, sockets, 0)
    st._dns_match(other)
    assert other.proc == {}


def _netdet(kind: int, src: str) -> Event:
    raw = ipaddress.ip_address(src).packed
    return Event(KIND_NETDET, 60, 1, 0, {}, {"kind": kind, "ifindex": 7, "family": 2, "saddr": raw + bytes(12),
                                             "daddr": bytes(16), "count": 200, "window_ns": S})


def test_drop_blocks_per_source_detections_only() -> None:
    blocked: list[tuple[str, float, str]] = []

    def block(addr: Any, ttl: float, reason: str) -> dict[str, Any]:
        if str(addr) == "10.0.0.254":
            raise EnforceError("not blocked: 10.0.0.254 is a gateway of this host")
        blocked.append((str(addr), ttl, reason))
        return {"ttl_s": ttl, "renewed": False, "evicted": None}

    st, _k, _c = _stage(drop=True, drop_ttl_s=42)
    st._block = block
    (syn, agg, gw) = st._release([_netdet(1, "10.0.0.9"), _netdet(2, "0.0.0.0"), _netdet(1, "10.0.0.254")], None,
                                 final=False)
    assert blocked == [("10.0.0.9", 42.0, "network inspector: syn_flood (200 in 1000 ms)")]
    assert syn.data["response"]["ok"] is True and syn.data["response"]["address"] == "10.0.0.9"
    assert agg.data["response"] is None  # the aggregate flood never blocks anyone
    assert gw.data["response"]["ok"] is False and "gateway" in gw.data["response"]["error"]
    assert st.stats.blocks == 1 and st.stats.blocks_refused == 1
    assert st.stats.detections == {"syn_flood": 2, "syn_flood_total": 1}


def test_without_drop_nothing_is_blocked() -> None:
    st, _k, _c = _stage(drop=False)
    st._block = lambda *a: pytest.fail("blocked without network.drop")  # type: ignore[assignment,return-value]
    (ev,) = st._release([_netdet(3, "10.0.0.9")], None, final=False)
    assert ev.data["response"] is None


def test_addr_text() -> None:
    assert addr_text(2, bytes([192, 0, 2, 1]) + bytes(12)) == "192.0.2.1"
    assert addr_text(10, ipaddress.IPv6Address("fd00::1").packed) == "fd00::1"
    assert addr_text(2, bytes(16)) == ""
