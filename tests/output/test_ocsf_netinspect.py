"""OCSF mapping of the network inspector's events (flow, dns, netdet), from events shaped as the stage builds
them, each validated against the pinned OCSF schema with every field checked."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rrset
import pytest

from sentinel_edge.model import KIND_DNS, KIND_FLOW, KIND_NETDET, Event, ProcessInfo
from sentinel_edge.netinspect.community import community_id
from sentinel_edge.netinspect.dns import parse_dns
from sentinel_edge.output.ocsf import netinspect as ni
from sentinel_edge.output.ocsf.common import HostInfo, mapper_for
from sentinel_edge.output.ocsf.schema import validate

HOST = HostInfo(hostname="edge-1", boot_id="boot-1", boot_time_ns=1_700_000_000_000_000_000)
S = 1_000_000_000
MS0 = 1_700_000_000_000  # epoch ms of boot
A4 = bytes([10, 66, 0, 1]) + bytes(12)
B4 = bytes([10, 66, 0, 2]) + bytes(12)
A6 = bytes.fromhex("fd660000000000000000000000000001")
B6 = bytes.fromhex("fd660000000000000000000000000002")


def owner_proc(pid: int = 3131) -> dict[str, Any]:
    return {"pid": pid, "tid": pid, "ppid": 1, "ns_pid": pid, "uid": 1000, "euid": 1000, "gid": 1000, "egid": 1000,
            "loginuid": 1000, "sessionid": 2, "mnt_ns": 1, "pid_ns": 2, "net_ns": 3, "cgroup_id": 9,
            "start_ns": 10 * S, "parent_start_ns": S, "comm": b"curl"}


def attribute(ev: Event) -> Event:
    ev.proc = owner_proc()
    ev.process = ProcessInfo(pid=3131, start_ns=10 * S, exec_id="exec-3131", parent_exec_id="exec-1", ppid=1,
                             comm="curl", exe="/usr/bin/curl", cmdline=["curl", "http://x"], uid=1000, user="alice")
    return ev


def mapped(ev: Event) -> dict[str, Any]:
    fn = mapper_for(ev.kind)
    assert fn is not None
    obj = fn(ev, HOST)
    errors = validate(obj)
    assert errors == [], errors
    json.dumps(obj, allow_nan=False)
    return obj


def flow(**over: Any) -> Event:
    data: dict[str, Any] = {
        "ifindex": 4, "ifname": "va", "netns": "ns-a", "family": 2, "proto": 6, "lport": 40000, "rport": 8081,
        "laddr": A4, "raddr": B4, "first_ns": 90 * S, "last_ns": 95 * S + 500_000_000, "pkts_in": 5,
        "bytes_in": 292, "pkts_out": 7, "bytes_out": 5388, "cookie": 4097, "flags_in": 0x12 | 0x10 | 0x01,
        "flags_out": 0x02 | 0x10 | 0x01, "initiator": 2, "state": "active", "community_id": "",
    }
    data.update(over)
    return Event(KIND_FLOW, 62, int(data["last_ns"]), 0, {}, data)


# ---------------------------------------------------------------- flow


def test_flow_initiated_here_unattributed() -> None:
    o = mapped(flow())
    assert (o["class_uid"], o["activity_id"], o["type_uid"], o["activity_name"]) == (4001, 6, 400106, "Traffic")
    assert "actor" not in o and "proc" not in o["unmapped"]
    assert o["time"] == MS0 + 95_500
    assert o["src_endpoint"] == {"ip": "10.66.0.1", "port": 40000, "interface_name": "va", "interface_uid": "4"}
    assert o["dst_endpoint"] == {"ip": "10.66.0.2", "port": 8081}
    assert o["is_src_dst_assignment_known"] is True and o["observation_point_id"] == 1
    cid = community_id(6, "10.66.0.1", 40000, "10.66.0.2", 8081)
    assert o["connection_info"] == {"direction_id": 2, "protocol_name": "tcp", "protocol_num": 6,
                                    "community_uid": cid, "tcp_flags": 0x13, "uid": "4097"}
    assert o["traffic"] == {"packets_out": 7, "bytes_out": 5388, "packets_in": 5, "bytes_in": 292,
                            "packets": 12, "bytes": 5680}
    assert (o["start_time"], o["end_time"], o["duration"]) == (MS0 + 90_000, MS0 + 95_500, 5500)
    assert o["unmapped"] == {
        "event": "flow", "ifindex": 4, "ifname": "va", "netns": "ns-a",
        "flow": {"state": "active", "initiator": "local", "family": 2, "proto": 6, "local_ip": "10.66.0.1",
                 "local_port": 40000, "remote_ip": "10.66.0.2", "remote_port": 8081, "pkts_in": 5, "bytes_in": 292,
                 "pkts_out": 7, "bytes_out": 5388, "flags_in": 0x13, "flags_out": 0x13, "cookie": 4097,
                 "first_ns": 90 * S, "last_ns": 95 * S + 500_000_000},
    }


def test_flow_seen_from_the_responder_swaps_to_ocsf_direction() -> None:
    """On the server's end the remote side initiated: it is the source, OCSF *_out is what the server received."""
    o = mapped(flow(lport=8081, rport=40000, laddr=B4, raddr=A4, initiator=1, pkts_in=7, bytes_in=5388,
                    pkts_out=5, bytes_out=292, cookie=0, state="closed", community_id="1:given"))
    assert (o["activity_id"], o["activity_name"]) == (2, "Close")
    assert o["src_endpoint"] == {"ip": "10.66.0.1", "port": 40000}
    assert o["dst_endpoint"] == {"ip": "10.66.0.2", "port": 8081, "interface_name": "va", "interface_uid": "4"}
    assert o["observation_point_id"] == 2
    assert o["connection_info"] == {"direction_id": 1, "protocol_name": "tcp", "protocol_num": 6,
                                    "community_uid": "1:given", "tcp_flags": 0x13}
    assert o["traffic"] == {"packets_out": 7, "bytes_out": 5388, "packets_in": 5, "bytes_in": 292,
                            "packets": 12, "bytes": 5680}
    assert (o["unmapped"]["flow"]["pkts_in"], o["unmapped"]["flow"]["initiator"]) == (7, "remote")
    # the same flow seen from both ends: same Community ID when the mapper computes it
    client = mapped(flow())["connection_info"]["community_uid"]
    server = mapped(flow(lport=8081, rport=40000, laddr=B4, raddr=A4, initiator=1))["connection_info"]
    assert server["community_uid"] == client


def test_idle_icmpv6_flow_with_unknown_initiator() -> None:
    o = mapped(flow(family=10, proto=58, laddr=A6, raddr=B6, lport=0x4242, rport=128 << 8, initiator=0,
                    flags_in=0, flags_out=0, state="idle", cookie=0))
    assert o["activity_id"] == 2
    assert o["src_endpoint"] == {"ip": "fd66::2"}  # no ports for ICMP
    assert o["dst_endpoint"] == {"ip": "fd66::1", "interface_name": "va", "interface_uid": "4"}
    assert o["is_src_dst_assignment_known"] is False
    conn = o["connection_info"]
    assert conn["direction_id"] == 0 and conn["protocol_name"] == "icmpv6" and "tcp_flags" not in conn
    assert conn["community_uid"] == community_id(58, "fd66::2", 0, "fd66::1", 0, (128, 0))
    f = o["unmapped"]["flow"]
    assert (f["icmp_echo_id"], f["icmp_type"], f["icmp_code"]) == (0x4242, 128, 0)


def test_attributed_flow_has_the_process() -> None:
    o = mapped(attribute(flow()))
    proc = o["actor"]["process"]
    assert (proc["pid"], proc["uid"], proc["name"], proc["path"]) == (3131, "exec-3131", "curl", "/usr/bin/curl")
    assert o["actor"]["user"] == {"uid": "1000", "name": "alice"}
    assert o["unmapped"]["proc"]["pid"] == 3131 and o["unmapped"]["flow"]["cookie"] == 4097


# ---------------------------------------------------------------- dns


def dns_ev(msg: dns.message.Message, *, out: bool, tcp: bool = False, v6: bool = False, cut: bool = False,
           cookie: int = 0) -> Event:
    wire = msg.to_wire(want_shuffle=False)
    if tcp:
        wire = len(wire).to_bytes(2, "big") + wire
    local, remote = (A6, B6) if v6 else (A4, B4)
    data: dict[str, Any] = {
        "ifindex": 4, "dir": 1 if out else 0, "family": 10 if v6 else 2, "proto": 6 if tcp else 17,
        "flags": 1 if cut else 0, "sport": 45000 if out else 53, "dport": 53 if out else 45000,
        "payload_len": len(wire), "saddr": local if out else remote, "daddr": remote if out else local,
        "cookie": cookie, "msg": wire, "ifname": "va", "netns": None,
    }
    data["parsed"] = parse_dns(wire, tcp=tcp).as_dict()
    return Event(KIND_DNS, 61, 50 * S, 1, {}, data)


def test_dns_query_attributed() -> None:
    q = dns.message.make_query("mail.sentinel.test", "AAAA", id=0x1F2E)
    o = mapped(attribute(dns_ev(q, out=True, cookie=4097)))
    assert (o["class_uid"], o["activity_id"], o["activity_name"], o["type_uid"]) == (4003, 1, "Query", 400301)
    assert o["src_endpoint"] == {"ip": "10.66.0.1", "port": 45000, "interface_name": "va", "interface_uid": "4"}
    assert o["dst_endpoint"] == {"ip": "10.66.0.2", "port": 53}
    assert o["connection_info"] == {"direction_id": 2, "protocol_name": "udp", "protocol_num": 17,
                                    "community_uid": community_id(17, "10.66.0.1", 45000, "10.66.0.2", 53),
                                    "uid": "4097"}
    assert o["query"] == {"hostname": "mail.sentinel.test", "type": "AAAA", "class": "IN", "opcode_id": 0,
                          "opcode": "Query", "packet_uid": 0x1F2E}
    assert o["query_time"] == o["time"] == MS0 + 50_000
    assert "rcode_id" not in o and "answers" not in o and "status_id" not in o
    assert o["actor"]["process"]["pid"] == 3131
    d = o["unmapped"]["dns"]
    assert d == {"id": 0x1F2E, "response": False, "opcode": "QUERY", "rcode": "NOERROR", "rcode_id": 0,
                 "flags": {"aa": False, "tc": False, "rd": True, "ra": False, "ad": False, "cd": False},
                 "counts": {"qd": 1, "an": 0, "ns": 0, "ar": 0},
                 "questions": [{"name": "mail.sentinel.test", "type": "AAAA", "class": "IN"}],
                 "truncated": False, "error": None, "labels": 3, "label_max": 8, "entropy": 2.0,
                 "domain": "sentinel.test", "dir": "out", "payload_len": 36, "copied": 36, "cut": False,
                 "cookie": 4097}
    assert (o["unmapped"]["ifname"], o["unmapped"]["netns"]) == ("va", None)


def test_dns_response_over_tcp_ipv6_unattributed() -> None:
    q = dns.message.make_query("mail.sentinel.test", "A", id=7)
    r = dns.message.make_response(q)
    r.flags |= dns.flags.RA | dns.flags.AA
    r.answer.append(dns.rrset.from_text("mail.sentinel.test.", 0, "IN", "A", "10.66.0.78"))
    r.answer.append(dns.rrset.from_text("mail.sentinel.test.", 30, "IN", "TXT", '"odd \\255 bytes"'))
    o = mapped(dns_ev(r, out=False, tcp=True, v6=True))
    assert "actor" not in o and "proc" not in o["unmapped"]
    assert (o["activity_id"], o["activity_name"]) == (2, "Response")
    assert o["src_endpoint"] == {"ip": "fd66::2", "port": 53}
    assert o["dst_endpoint"] == {"ip": "fd66::1", "port": 45000, "interface_name": "va", "interface_uid": "4"}
    assert o["connection_info"]["direction_id"] == 1 and o["connection_info"]["protocol_num"] == 6
    assert "uid" not in o["connection_info"]
    assert (o["rcode_id"], o["rcode"], o["response_time"]) == (0, "NoError", MS0 + 50_000)
    flags = {"flag_ids": [1, 3, 4], "flags": ["Authoritative Answer", "Recursion Desired", "Recursion Available"]}
    assert o["answers"] == [
        {"rdata": "10.66.0.78", "type": "A", "class": "IN", "ttl": 0, **flags, "packet_uid": 7},
        {"rdata": '"odd \\255 bytes"', "type": "TXT", "class": "IN", "ttl": 30, **flags, "packet_uid": 7},
    ]
    assert o["query"]["packet_uid"] == 7


@pytest.mark.parametrize(("rcode", "rid", "caption"), [
    (dns.rcode.NXDOMAIN, 3, "NXDomain"), (dns.rcode.SERVFAIL, 2, "ServError"), (dns.rcode.REFUSED, 5, "Refused"),
    (dns.rcode.BADCOOKIE, 23, "BADCOOKIE"), (dns.rcode.BADVERS, 16, "BADSIG_VERS"),
])
def test_dns_rcodes(rcode: dns.rcode.Rcode, rid: int, caption: str) -> None:
    q = dns.message.make_query("nope.sentinel.test", "TXT", id=9, use_edns=0)
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    o = mapped(dns_ev(r, out=False))
    assert (o["rcode_id"], o["rcode"]) == (rid, caption)
    assert "answers" not in o


def test_dns_rcode_outside_the_ocsf_enum_is_other() -> None:
    q = dns.message.make_query("x.sentinel.test", "A", id=9, use_edns=0)
    r = dns.message.make_response(q)
    r.set_rcode(dns.rcode.Rcode(12))  # unassigned
    o = mapped(dns_ev(r, out=False))
    assert (o["rcode_id"], o["rcode"]) == (99, "12")


def test_dns_cut_message_is_a_failure_with_what_was_read() -> None:
    q = dns.message.make_query("www.sentinel.test", "A", id=0x77)
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("www.sentinel.test.", 60, "IN", "A", "10.66.0.77", "10.66.0.76"))
    ev = dns_ev(r, out=False, cut=True)
    wire = ev.data["msg"][:-3]
    ev.data["msg"] = wire
    ev.data["parsed"] = parse_dns(wire, tcp=False).as_dict()
    o = mapped(ev)
    assert o["activity_id"] == 2 and o["status_id"] == 2 and o["status"] == "Failure"
    assert o["status_detail"].startswith("FormError")
    assert [a["rdata"] for a in o["answers"]] == ["10.66.0.77"]
    d = o["unmapped"]["dns"]
    assert (d["truncated"], d["cut"], d["copied"], d["msg_hex"]) == (True, True, len(wire), wire.hex())


def test_dns_garbage_is_unknown_activity() -> None:
    ev = dns_ev(dns.message.make_query("a.b", "A"), out=True)
    ev.data["msg"] = b"\xff\x00\x01"
    ev.data["parsed"] = parse_dns(ev.data["msg"], tcp=False).as_dict()
    o = mapped(ev)
    assert (o["activity_id"], o["activity_name"], o["status_id"]) == (0, "Unknown", 2)
    assert "query" not in o and "query_time" not in o and "rcode_id" not in o
    assert o["unmapped"]["dns"]["msg_hex"] == "ff0001"


def test_dns_odd_name_and_notify_opcode() -> None:
    name = dns.name.Name([b"bad\xffname", b"a.b", b"example", b""])
    q = dns.message.make_query(name, "SOA", id=3)
    q.set_opcode(dns.opcode.NOTIFY)
    o = mapped(dns_ev(q, out=True))
    assert o["query"]["hostname"] == "bad\\255name.a\\.b.example"
    assert (o["query"]["opcode_id"], o["query"]["opcode"]) == (4, "Notify")
    q.set_opcode(dns.opcode.Opcode(9))  # unassigned: Other, named by its number
    o = mapped(dns_ev(q, out=True))
    assert (o["query"]["opcode_id"], o["query"]["opcode"]) == (99, "9")


# ---------------------------------------------------------------- netdet


def netdet(kind: int, **over: Any) -> Event:
    data: dict[str, Any] = {
        "kind": kind, "ifindex": 5, "family": 2, "protocol": 6, "port": 22, "saddr": A4, "daddr": B4, "count": 25,
        "threshold": 25, "window_ns": S, "window_start_ns": 99 * S + 250_000_000, "ifname": "vb", "netns": "ns-b",
        "response": None,
    }
    data.update(over)
    return Event(KIND_NETDET, 60, 100 * S, 1, {}, data)


def test_port_scan_blocked() -> None:
    resp = {"action": "block", "ok": True, "ttl_s": 600.0, "address": "10.66.0.1", "expires": 123.0}
    o = mapped(netdet(3, response=resp))
    assert (o["class_uid"], o["activity_id"], o["activity_name"], o["type_uid"]) == (4001, 99, "Port Scan", 400199)
    assert (o["severity_id"], o["severity"]) == (3, "Medium")
    assert "actor" not in o
    assert o["src_endpoint"] == {"ip": "10.66.0.1"}
    assert o["dst_endpoint"] == {"ip": "10.66.0.2", "port": 22, "interface_name": "vb", "interface_uid": "5"}
    assert o["connection_info"] == {"direction_id": 1, "protocol_name": "tcp", "protocol_num": 6}
    assert o["count"] == 25
    assert (o["start_time"], o["end_time"]) == (MS0 + 99_250, MS0 + 100_000)
    assert o["message"] == "Port Scan: 25 from 10.66.0.1 in 1000 ms (threshold 25)"
    assert "security_control" in o["metadata"]["profiles"]
    assert (o["action_id"], o["action"], o["disposition_id"], o["disposition"]) == (2, "Denied", 2, "Blocked")
    assert o["policy"]["uid"] == "network.drop" and o["policy"]["is_applied"] is True
    assert o["unmapped"] == {
        "event": "netdet", "ifindex": 5, "ifname": "vb", "netns": "ns-b", "detection": "port_scan", "kind": 3,
        "threshold": 25, "window_ns": S, "window_ms": 1000, "window_start_ns": 99 * S + 250_000_000, "family": 2,
        "protocol": 6, "port": 22, "response": resp,
    }


def test_syn_flood_block_refused() -> None:
    resp = {"action": "block", "ok": False, "ttl_s": 600.0, "address": "10.66.0.12",
            "error": "10.66.0.12 is in a management network (never blocked)"}
    o = mapped(netdet(1, response=resp, count=150, threshold=150))
    assert o["activity_name"] == "SYN Flood"
    assert (o["action_id"], o["disposition_id"], o["disposition"]) == (2, 27, "Error")
    assert o["unmapped"]["response"]["error"].endswith("(never blocked)")


def test_aggregate_flood_has_no_source_and_icmp_no_port() -> None:
    o = mapped(netdet(2, family=0, saddr=bytes(16), daddr=B6, count=100000, threshold=100000))
    assert o["activity_name"] == "Aggregate SYN Flood" and "src_endpoint" not in o
    assert o["dst_endpoint"] == {"ip": "fd66::2", "port": 22, "interface_name": "vb", "interface_uid": "5"}
    assert o["message"] == "Aggregate SYN Flood: 100000 from all sources in 1000 ms (threshold 100000)"
    assert "security_control" not in o["metadata"]["profiles"] and "action_id" not in o
    assert o["unmapped"]["response"] is None
    i = mapped(netdet(4, protocol=1, port=0, family=10, saddr=A6, daddr=B6))
    assert i["activity_name"] == "ICMP Flood" and i["src_endpoint"] == {"ip": "fd66::1"}
    assert i["dst_endpoint"] == {"ip": "fd66::2", "interface_name": "vb", "interface_uid": "5"}
    assert i["connection_info"]["protocol_name"] == "icmp"


def test_unknown_detection_kind_is_named_by_number() -> None:
    o = mapped(netdet(9))
    assert o["activity_name"] == "Detection 9" and o["unmapped"]["detection"] == "det9"


def test_registered_through_the_ocsf_package() -> None:
    """Importing sentinel_edge.output.ocsf (what the agent does) registers the three kinds."""
    code = ("from sentinel_edge.output.ocsf import to_ocsf\n"
            "from sentinel_edge.output.ocsf.common import registered_kinds\n"
            "print(sorted({'flow', 'dns', 'netdet'} & set(registered_kinds())))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "['dns', 'flow', 'netdet']", out.stdout + out.stderr
    assert ni.detection_name(3) == "port_scan"
