"""The default network rules (70_network.yaml) and the dns./netdet./flow. fields, on events built the way the
network inspector's stage builds them (decoded se_netdet / se_dns fields plus what the stage adds; flow
records from the flow table), evaluated by the real Engine over the shipped default rule set.
Real traffic (dig, nmap, hping3 between namespaces) is tested in tests/netinspect/test_network_agent.py."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import dns.message
import dns.name
import dns.rrset
import pytest

from sentinel_edge.model import KIND_DNS, KIND_FLOW, KIND_NET, KIND_NETDET, Event, ProcessInfo
from sentinel_edge.netinspect.dns import parse_dns
from sentinel_edge.rules.engine import Engine, load_rules
from sentinel_edge.rules.fields import FIELDS
from sentinel_edge.rules.model import Alert

S = 1_000_000_000
A4 = bytes([10, 66, 0, 1]) + bytes(12)
B4 = bytes([10, 66, 0, 2]) + bytes(12)
A6 = bytes.fromhex("fd660000000000000000000000000001")
B6 = bytes.fromhex("fd660000000000000000000000000002")

PORT_SCAN = "se.discovery.net_port_scan"
SYN_FLOOD = "se.impact.net_syn_flood"
SYN_FLOOD_ALL = "se.impact.net_syn_flood_aggregate"
ICMP_FLOOD = "se.impact.net_icmp_flood"
LONG_LABEL = "se.command_and_control.dns_tunnel_long_label"
HIGH_ENTROPY = "se.command_and_control.dns_tunnel_high_entropy"
NETWORK_RULES = {PORT_SCAN, SYN_FLOOD, SYN_FLOOD_ALL, ICMP_FLOOD, LONG_LABEL, HIGH_ENTROPY}


@pytest.fixture(scope="module")
def engine() -> Engine:
    loaded = load_rules()
    assert loaded.errors == []
    ids = {r.meta.id for r in loaded.rules}
    assert NETWORK_RULES <= ids
    return Engine(loaded.rules)


def owner_proc(pid: int = 3131) -> dict[str, Any]:
    """The se_proc of a socket's owner, as the stage copies it from the net sensor's socket events."""
    return {"pid": pid, "tid": pid, "ppid": 1, "ns_pid": pid, "uid": 1000, "euid": 1000, "gid": 1000, "egid": 1000,
            "loginuid": 1000, "sessionid": 2, "mnt_ns": 1, "pid_ns": 2, "net_ns": 3, "cgroup_id": 9,
            "start_ns": 10 * S, "parent_start_ns": S, "comm": b"dig"}


def dns_event(name: str | dns.name.Name, *, qtype: str = "A", response: bool = False, ts: int = 100 * S,
              attributed: bool = False, rcode: int = 0, answers: list[str] | None = None) -> Event:
    """A se_dns event as decoded, plus ifname/netns/parsed as the stage adds them."""
    q = dns.message.make_query(name, qtype, id=0x2222)
    m = q
    if response:
        m = dns.message.make_response(q)
        m.set_rcode(rcode)
        for a in answers or []:
            m.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", qtype, a))
    wire = m.to_wire(want_shuffle=False)
    out = not response
    data: dict[str, Any] = {
        "ifindex": 4, "dir": 1 if out else 0, "family": 2, "proto": 17, "flags": 0,
        "sport": 40123 if out else 53, "dport": 53 if out else 40123, "payload_len": len(wire),
        "saddr": A4 if out else B4, "daddr": B4 if out else A4, "cookie": 77 if out else 0, "msg": wire,
        "ifname": "eth0", "netns": None,
    }
    data["parsed"] = parse_dns(wire, tcp=False).as_dict()
    ev = Event(KIND_DNS, 61, ts, 0, owner_proc() if attributed else {}, data)
    if attributed:
        ev.process = ProcessInfo(pid=3131, start_ns=10 * S, exec_id="exec-3131", parent_exec_id=None, ppid=1,
                                 comm="dig", exe="/usr/bin/dig", cmdline=["dig", "x"])
    return ev


def netdet_event(kind: int, *, saddr: bytes = A4, daddr: bytes = B4, family: int = 2, protocol: int = 6,
                 port: int = 22, count: int = 25) -> Event:
    data: dict[str, Any] = {
        "kind": kind, "ifindex": 5, "family": family, "protocol": protocol, "port": port, "saddr": saddr,
        "daddr": daddr, "count": count, "threshold": count, "window_ns": S, "window_start_ns": 99 * S,
        "ifname": "vb", "netns": "ns-b",
        "response": {"action": "block", "ok": True, "ttl_s": 600.0, "address": "10.66.0.1"},
    }
    return Event(KIND_NETDET, 60, 100 * S, 1, {}, data)


def flow_event(**over: Any) -> Event:
    data: dict[str, Any] = {
        "ifindex": 4, "ifname": "eth0", "netns": None, "family": 2, "proto": 6, "lport": 40000, "rport": 443,
        "laddr": A4, "raddr": B4, "first_ns": 90 * S, "last_ns": 100 * S, "pkts_in": 9, "bytes_in": 9000,
        "pkts_out": 7, "bytes_out": 700, "cookie": 77, "flags_in": 0x12, "flags_out": 0x02, "initiator": 2,
        "state": "active", "community_id": "1:abc",
    }
    data.update(over)
    return Event(KIND_FLOW, 62, int(data["last_ns"]), 0, {}, data)


def fired(engine: Engine, ev: Event) -> dict[str, Alert]:
    return {a.rule.id: a for a in engine.evaluate(ev)}


def test_the_engine_indexes_the_inspector_kinds(engine: Engine) -> None:
    """The rules reach the engine's buckets for their kinds (rules.engine.KIND_SENSOR knows the kinds)."""
    assert {r.meta.id for r in engine.candidates(dns_event("www.example.com"))} >= {LONG_LABEL, HIGH_ENTROPY}
    for kind, rule in ((1, SYN_FLOOD), (2, SYN_FLOOD_ALL), (3, PORT_SCAN), (4, ICMP_FLOOD)):
        # indexed down to the rule of that detection (netdet.kind is an index key)
        assert {r.meta.id for r in engine.candidates(netdet_event(kind))} & NETWORK_RULES == {rule}
    # and no other kind meets them
    net = Event(KIND_NET, 20, S, 0, owner_proc(), {"op": 2, "family": 2, "sport": 1, "dport": 2, "saddr": A4,
                                                   "daddr": B4, "ret": 0, "cookie": 1})
    assert not NETWORK_RULES & {r.meta.id for r in engine.candidates(net)}


# ---------------------------------------------------------------- netdet


@pytest.mark.parametrize(("kind", "rule", "techniques", "message"), [
    (3, PORT_SCAN, ["T1046"], "Port scan from 10.66.0.1: 25 ports of 10.66.0.2 in one window (last tcp/22)"),
    (1, SYN_FLOOD, ["T1498.001"], "SYN flood from 10.66.0.1 to 10.66.0.2:22: 25 SYNs in one window"),
    (4, ICMP_FLOOD, ["T1498"], "ICMP echo flood from 10.66.0.1 to 10.66.0.2: 25 requests in one window"),
])
def test_each_detection_raises_its_rule_only(engine: Engine, kind: int, rule: str, techniques: list[str],
                                             message: str) -> None:
    ev = netdet_event(kind, protocol=1 if kind == 4 else 6, port=0 if kind == 4 else 22)
    got = fired(engine, ev)
    assert set(got) & NETWORK_RULES == {rule}
    a = got[rule]
    assert [t.technique for t in a.rule.attack] == techniques
    assert a.message == message
    assert a.events == [ev]


def test_aggregate_syn_flood_has_no_source(engine: Engine) -> None:
    ev = netdet_event(2, saddr=bytes(16), family=0, count=100000)
    got = fired(engine, ev)
    assert set(got) & NETWORK_RULES == {SYN_FLOOD_ALL}
    assert got[SYN_FLOOD_ALL].message == "SYN flood from many sources: 100000 SYNs in one window (last to " \
                                         "10.66.0.2:22)"
    assert [(t.technique, t.tactic) for t in got[SYN_FLOOD_ALL].rule.attack] == [("T1499", "impact")]


def test_ipv6_scan(engine: Engine) -> None:
    got = fired(engine, netdet_event(3, saddr=A6, daddr=B6, family=10, protocol=17, port=161))
    assert got[PORT_SCAN].message == "Port scan from fd66::1: 25 ports of fd66::2 in one window (last udp/161)"


# ---------------------------------------------------------------- DNS: one long label

TUNNEL_LABEL = "x9f3kq7zt2mb8wq1vn4hc6pd0ls5ry7eg2ua9jf3kx8td1mq6zb4wv7nc2hp5"  # 61 random-looking characters


def test_long_encoded_label_fires_on_the_query(engine: Engine) -> None:
    name = f"{TUNNEL_LABEL}.sentinel.test"
    ev = dns_event(name, qtype="TXT", attributed=True)
    got = fired(engine, ev)
    assert LONG_LABEL in got
    a = got[LONG_LABEL]
    assert [(t.technique, t.tactic) for t in a.rule.attack] == [("T1071.004", "command-and-control"),
                                                                 ("T1048", "exfiltration")]
    assert len(TUNNEL_LABEL) == 61
    assert a.message == (f"DNS query with a 61-byte label: {name} (TXT, entropy "
                         f"{ev.data['parsed']['entropy']}) by dig[3131]")
    # its response (NXDOMAIN, the same question) is not a second alert
    assert LONG_LABEL not in fired(engine, dns_event(name, qtype="TXT", response=True, rcode=3))


@pytest.mark.parametrize("name", [
    # hex as dnscat2 sends it, two labels of data
    "9a8b7c6d5e4f30211a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f.17847eccabb98ef85da9b54d.dnscat.evil.example",
    # base32 as iodine sends it (lower case, 56 characters)
    "6sxt3y444m5q6cdfmzl2bzqawd3js6uz5decp3uh3zw5l4o2ei2xhupn.t.tunnel.example.com",
    # base64url: hyphens and underscores inside, caught by its randomness
    "aGVsbG8-d29ybGRfdGhp_cyBpcyBhIHR1bm5lbCBwYXlsb2FkIGRhdGE-xQ.t.example.net",
])
def test_encoded_labels_fire(engine: Engine, name: str) -> None:
    assert LONG_LABEL in fired(engine, dns_event(name, qtype="TXT"))


def test_binary_label_fires() -> None:
    loaded = load_rules()
    eng = Engine(loaded.rules)
    label = bytes(range(128, 192))[:60]  # iodine's base128: bytes above 0x7f
    name = dns.name.Name([label, b"t", b"example", b"com", b""])
    ev = dns_event(name, qtype="NULL")
    assert ev.data["parsed"]["entropy"] >= 4.4 and "\\128" in ev.data["parsed"]["questions"][0]["name"]
    assert LONG_LABEL in fired(eng, ev)


@pytest.mark.parametrize("name", [
    # near miss: 49 random characters (one short of the threshold)
    f"{TUNNEL_LABEL[:49]}.sentinel.test",
    # long readable names: words joined by hyphens
    "this-is-a-really-long-but-human-readable-bucket-name-for-prod.s3.amazonaws.com",
    "teams-events-data-prod-westeurope.trouter.teams.microsoft.com",
    # real-world-shaped CDN, cloud and service names
    "my-load-balancer-1234567890.us-west-2.elb.amazonaws.com",
    "vpce-0a1b2c3d4e5f6a7b8-abcdefgh.s3.us-east-1.vpce.amazonaws.com",
    "r4---sn-4g5ednsz.googlevideo.com",
    "d3ag4hukkh62yn.cloudfront.net",
    "e3191.dscx.akamaiedge.net",
    "api.github.com.default.svc.cluster.local",
    "selector1._domainkey.example.com",
    # hash lookups of mail filters and anti-virus products (DNS blocklists)
    "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2.dbl.dq.spamhaus.net",
    "4d3c2b1a0f9e8d7c6b5a49382716051f4d3c2b1a.hash.cymru.com",
])
def test_benign_and_near_miss_names_do_not_fire(engine: Engine, name: str) -> None:
    assert not {LONG_LABEL, HIGH_ENTROPY} & set(fired(engine, dns_event(name)))


def test_reverse_lookups_do_not_fire(engine: Engine) -> None:
    ptr = f"{TUNNEL_LABEL}.in-addr.arpa"
    assert LONG_LABEL not in fired(engine, dns_event(ptr, qtype="PTR"))
    assert LONG_LABEL in fired(engine, dns_event(ptr, qtype="TXT"))  # the exclusion is the type, not the name


# ---------------------------------------------------------------- DNS: a stream of random names


def _b32_names(domain: str, n: int, length: int = 26) -> list[str]:
    """``n`` distinct names of one random-looking (base32) label each, entropy >= 3.9 (checked)."""
    out: list[str] = []
    i = 0
    while len(out) < n and i < 10 * n:
        label = base64.b32encode(hashlib.sha256(f"{domain}{i}".encode()).digest()).decode().lower()[:length]
        i += 1
        name = f"{label}.{domain}"
        p = parse_dns(dns.message.make_query(name, "A").to_wire(), tcp=False)
        if p.entropy >= 3.9:
            out.append(name)
    assert len(out) == n
    return out


def test_twenty_random_names_under_one_domain_fire_once() -> None:
    eng = Engine(load_rules().rules)
    names = _b32_names("exfil.example.com", 25)
    alerts = []
    for i, name in enumerate(names[:19]):
        alerts += [a for a in eng.evaluate(dns_event(name, ts=100 * S + i * S)) if a.rule.id == HIGH_ENTROPY]
        # the same name again does not count twice
        alerts += [a for a in eng.evaluate(dns_event(name, ts=100 * S + i * S + 1)) if a.rule.id == HIGH_ENTROPY]
    assert alerts == []  # 19 distinct: one short
    # other domains do not add to this one's count
    for j, name in enumerate(_b32_names("other.example.org", 5)):
        assert HIGH_ENTROPY not in fired(eng, dns_event(name, ts=130 * S + j))
    got = [a for a in eng.evaluate(dns_event(names[19], ts=140 * S, attributed=True)) if a.rule.id == HIGH_ENTROPY]
    assert len(got) == 1
    a = got[0]
    assert a.data["count"] == 20 and a.data["key"] == "example.com"
    assert a.message == f"DNS tunnel suspected under example.com: 20 random-looking names within a minute, " \
                        f"last {names[19]} by dig[3131]"
    # the counter starts again: the next name alone is not an alert
    assert HIGH_ENTROPY not in fired(eng, dns_event(names[20], ts=141 * S))


def test_random_names_spread_over_more_than_a_minute_do_not_fire() -> None:
    eng = Engine(load_rules().rules)
    for i, name in enumerate(_b32_names("slow.example.com", 40)):
        assert HIGH_ENTROPY not in fired(eng, dns_event(name, ts=100 * S + i * 4 * S))  # one every 4 s


def test_a_busy_benign_minute_does_not_fire() -> None:
    """Names of one minute of a busy host: CDN objects, cloud endpoints, cluster search expansions."""
    eng = Engine(load_rules().rules)
    names = (
        [f"d{hashlib.md5(str(i).encode()).hexdigest()[:13]}.cloudfront.net" for i in range(30)]
        + [f"e{1000 + i}.dscb.akamaiedge.net" for i in range(30)]
        + [f"svc-{i}.default.svc.cluster.local" for i in range(30)]
        + [f"ip-10-0-{i}-17.eu-west-1.compute.internal" for i in range(30)]
        + [f"lb-{i}-1234567890.us-west-2.elb.amazonaws.com" for i in range(15)]
        + [f"prod-eu-west-1-starport-layer-bucket-{i}.s3.eu-west-1.amazonaws.com" for i in range(30)]
    )
    for i, name in enumerate(names):
        assert not {LONG_LABEL, HIGH_ENTROPY} & set(fired(eng, dns_event(name, ts=100 * S + i * 300_000_000)))


# ---------------------------------------------------------------- fields


def field(name: str, ev: Event) -> Any:
    return FIELDS[name].get(ev)


def test_dns_fields_of_a_query_and_a_response() -> None:
    q = dns_event("Mail.Sentinel.test", qtype="AAAA")
    assert [field(f, q) for f in ("dns.query", "dns.query_type", "dns.domain", "dns.response", "dns.rcode",
                                  "dns.answers", "dns.labels", "dns.label_max", "dns.entropy")] == \
        ["Mail.Sentinel.test", "AAAA", "sentinel.test", False, None, None, 3, 8, 2.0]
    r = dns_event("mail.sentinel.test", qtype="A", response=True, answers=["10.66.0.78", "10.66.0.79"])
    assert [field(f, r) for f in ("dns.response", "dns.rcode", "dns.answers")] == \
        [True, "NOERROR", ["10.66.0.78", "10.66.0.79"]]
    nx = dns_event("nope.sentinel.test", response=True, rcode=3)
    assert (field("dns.rcode", nx), field("dns.answers", nx)) == ("NXDOMAIN", [])
    # a message that could not be read at all has no dns.* value
    bad = dns_event("x.test")
    bad.data["parsed"] = parse_dns(b"\x01\x02", tcp=False).as_dict()
    assert all(field(f, bad) is None for f in FIELDS if f.startswith("dns."))
    # a cut message with its header but no question: only the header's fields
    cut = dns_event("x.test")
    cut.data["parsed"] = parse_dns(cut.data["msg"][:14], tcp=False).as_dict()
    assert (field("dns.response", cut), field("dns.query", cut), field("dns.label_max", cut)) == (False, None, None)


def test_netdet_fields() -> None:
    ev = netdet_event(3, protocol=17, port=161, count=31)
    assert [field(f, ev) for f in ("netdet.kind", "netdet.src_ip", "netdet.dst_ip", "netdet.count", "netdet.port",
                                   "netdet.proto")] == ["port_scan", "10.66.0.1", "10.66.0.2", 31, 161, "udp"]
    agg = netdet_event(2, saddr=bytes(16), family=0, daddr=B6, port=443)
    assert [field(f, agg) for f in ("netdet.kind", "netdet.src_ip", "netdet.dst_ip", "netdet.port")] == \
        ["syn_flood_total", None, "fd66::2", 443]
    icmp = netdet_event(4, protocol=1, port=0)
    assert (field("netdet.kind", icmp), field("netdet.port", icmp), field("netdet.proto", icmp)) == \
        ("icmp_flood", None, "icmp")
    assert field("netdet.kind", netdet_event(9)) == "det9"


def test_flow_fields() -> None:
    ev = flow_event()
    assert [field(f, ev) for f in ("flow.local_ip", "flow.local_port", "flow.remote_ip", "flow.remote_port",
                                   "flow.proto", "flow.bytes_out", "flow.bytes_in", "flow.community_id",
                                   "flow.state", "flow.outbound")] == \
        ["10.66.0.1", 40000, "10.66.0.2", 443, "tcp", 700, 9000, "1:abc", "active", True]
    icmp = flow_event(proto=58, family=10, laddr=A6, raddr=B6, lport=0x1234, rport=0x8000, initiator=1,
                      community_id="", state="idle")
    assert [field(f, icmp) for f in ("flow.local_ip", "flow.local_port", "flow.remote_port", "flow.proto",
                                     "flow.community_id", "flow.state", "flow.outbound")] == \
        ["fd66::1", None, None, "icmpv6", None, "idle", False]


def test_fields_have_no_value_on_other_kinds() -> None:
    other = Event(KIND_NET, 20, S, 0, owner_proc(), {"op": 2, "family": 2, "sport": 1, "dport": 2, "saddr": A4,
                                                     "daddr": B4, "ret": 0, "cookie": 1})
    for name, spec in FIELDS.items():
        if name.split(".")[0] in ("dns", "netdet", "flow"):
            assert spec.get(other) is None, name
            assert spec.kinds is not None and len(spec.kinds) == 1, name
    # the inspector's events have no process fields unless attributed
    assert field("proc.pid", netdet_event(3)) is None and field("proc.name", netdet_event(3)) is None
    assert field("proc.pid", dns_event("a.b", attributed=True)) == 3131
