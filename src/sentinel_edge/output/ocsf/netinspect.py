"""OCSF mapping of the network inspector's events (kinds ``flow``, ``dns``, ``netdet``).

=========  =============================  ==============================================
kind       OCSF class and activity        what
=========  =============================  ==============================================
flow       Network Activity (4001)        one flow-table entry: 6 Traffic while active,
                                          2 Close once closed (TCP FIN both ways / RST)
                                          or idle (its last record)
dns        DNS Activity (4003)            one DNS message: 1 Query, 2 Response (0 Unknown
                                          when not even the header could be read)
netdet     Network Activity (4001)        an in-kernel detection: 99 Other, named
                                          "SYN Flood", "Aggregate SYN Flood", "Port Scan",
                                          "ICMP Flood"
=========  =============================  ==============================================

Packets belong to no task: an event has ``actor.process`` only when the
stage attributed it (the socket cookie's owner: ``event.proc`` is that
socket's se_proc and enrichment set ``event.process``); otherwise there is
no actor and no ``unmapped.proc``.

Flows: ``src_endpoint`` is the initiator (the first packet, or the SYN
without ACK) and ``is_src_dst_assignment_known`` says whether it was seen;
``traffic`` follows OCSF (``*_out``: source to destination, ``*_in``:
destination to source), while ``unmapped.flow`` keeps the counters as this
host's interface counted them (``pkts_in``: received). The local side's
endpoint carries ``interface_name`` / ``interface_uid`` and
``observation_point_id`` says which side that is. ``connection_info.uid``
is the socket cookie (the one of the net sensor's events of that socket).
"""

from __future__ import annotations

import functools
from typing import Any

from sentinel_edge.model import KIND_DNS, KIND_FLOW, KIND_NETDET, Event
from sentinel_edge.netinspect.community import community_id
from sentinel_edge.output.ocsf.common import (
    HostInfo,
    base,
    boot_ns_to_ms,
    register,
)
from sentinel_edge.output.ocsf.enforce import security_control
from sentinel_edge.output.ocsf.network import IP_PROTOCOL_NAMES, format_ip
from sentinel_edge.output.ocsf.schema import enum_caption, raw_schema

CLASS_NETWORK_ACTIVITY = 4001
CLASS_DNS_ACTIVITY = 4003
CATEGORY_NETWORK = 4

ACTIVITY_UNKNOWN = 0
ACTIVITY_CLOSE = 2
ACTIVITY_TRAFFIC = 6
ACTIVITY_OTHER = 99
DNS_ACTIVITY_QUERY = 1
DNS_ACTIVITY_RESPONSE = 2
SEVERITY_MEDIUM = 3

DIRECTION_UNKNOWN, DIRECTION_INBOUND, DIRECTION_OUTBOUND = 0, 1, 2
OBSERVED_AT_SOURCE, OBSERVED_AT_DESTINATION = 1, 2

AF_INET, AF_INET6 = 2, 10
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6 = 1, 6, 17, 58
PORT_PROTOS = frozenset({IPPROTO_TCP, IPPROTO_UDP, 132, 136})  # TCP UDP SCTP UDP-Lite

# enum se_ni_initiator / se_ni_dir / se_ni_dns_flags (bpf/shared/events.h)
INIT_UNKNOWN, INIT_REMOTE, INIT_LOCAL = 0, 1, 2
INITIATOR_NAMES = {INIT_UNKNOWN: "unknown", INIT_REMOTE: "remote", INIT_LOCAL: "local"}
DIR_IN, DIR_OUT = 0, 1
DNS_TRUNC = 1

# enum se_ni_det_kind: (rule-field name, OCSF activity_name)
DET_SYN_FLOOD_SRC, DET_SYN_FLOOD_ALL, DET_PORT_SCAN, DET_ICMP_FLOOD = 1, 2, 3, 4
DETECTIONS: dict[int, tuple[str, str]] = {
    DET_SYN_FLOOD_SRC: ("syn_flood", "SYN Flood"),
    DET_SYN_FLOOD_ALL: ("syn_flood_total", "Aggregate SYN Flood"),
    DET_PORT_SCAN: ("port_scan", "Port Scan"),
    DET_ICMP_FLOOD: ("icmp_flood", "ICMP Flood"),
}
#: the policy named in the security_control profile of a detection's response
RESPONSE_POLICY = "network.drop"

# DNS header flag bits -> OCSF dns_answer.flag_ids
_DNS_FLAG_IDS = (("aa", 1), ("tc", 2), ("rd", 3), ("ra", 4), ("ad", 5), ("cd", 6))
_DNS_FLAG_CAPTIONS = {1: "Authoritative Answer", 2: "Truncated Response", 3: "Recursion Desired",
                      4: "Recursion Available", 5: "Authentic Data", 6: "Checking Disabled"}
_OPCODE_OTHER = 99
_RCODE_OTHER = 99


def detection_name(kind: int) -> str:
    """Rule-field name of an se_ni_det_kind (``det<N>`` when unknown)."""
    hit = DETECTIONS.get(kind)
    return hit[0] if hit is not None else f"det{kind}"


def protocol_name(proto: int) -> str:
    return IP_PROTOCOL_NAMES.get(proto) or str(proto)


def address(family: int, raw: bytes | list[int]) -> str | None:
    """Text of 16 wire address bytes; None for an all-zero address or an unknown family."""
    data = bytes(raw)
    if not any(data) or family not in (AF_INET, AF_INET6):
        return None
    return format_ip(family, data)


@functools.cache
def _opcode_caption(opcode_id: int) -> str | None:
    attr = raw_schema()["objects"]["dns_query"]["attributes"]["opcode_id"]
    item = (attr.get("enum") or {}).get(str(opcode_id))
    return None if item is None else str(item["caption"])


# ---------------------------------------------------------------- base


def _base(event: Event, host: HostInfo, class_uid: int, activity_id: int,
          activity_name: str | None = None) -> dict[str, Any]:
    """common.base(); without a socket owner: no actor (unless enriched), no unmapped.proc."""
    return base(event, host, class_uid=class_uid, category_uid=CATEGORY_NETWORK, activity_id=activity_id,
                activity_name=activity_name, with_proc=event.proc.get("pid") is not None)


def _where(d: dict[str, Any]) -> dict[str, Any]:
    return {"ifindex": int(d.get("ifindex", 0)), "ifname": str(d.get("ifname") or ""), "netns": d.get("netns")}


def _with_interface(ep: dict[str, Any], d: dict[str, Any]) -> dict[str, Any]:
    if d.get("ifname"):
        ep["interface_name"] = str(d["ifname"])
    if d.get("ifindex"):
        ep["interface_uid"] = str(d["ifindex"])
    return ep


def _endpoint(ip: str | None, port: int | None) -> dict[str, Any]:
    ep: dict[str, Any] = {}
    if ip is not None:
        ep["ip"] = ip
    if port:
        ep["port"] = port
    return ep


# ---------------------------------------------------------------- flow


@register(KIND_FLOW)
def flow_activity(event: Event, host: HostInfo) -> dict[str, Any]:
    """One flow-table record (synthesised by the stage from se_ni_flows)."""
    d = event.data
    family, proto = int(d["family"]), int(d["proto"])
    state = str(d.get("state") or "active")
    obj = _base(event, host, CLASS_NETWORK_ACTIVITY, ACTIVITY_TRAFFIC if state == "active" else ACTIVITY_CLOSE)
    lip, rip = address(family, d["laddr"]), address(family, d["raddr"])
    lport, rport = int(d["lport"]), int(d["rport"])
    icmp = proto in (IPPROTO_ICMP, IPPROTO_ICMPV6)
    has_ports = proto in PORT_PROTOS
    local = _with_interface(_endpoint(lip, lport if has_ports else None), d)
    remote = _endpoint(rip, rport if has_ports else None)
    initiator = int(d.get("initiator", INIT_UNKNOWN))
    local_first = initiator == INIT_LOCAL
    src, dst = (local, remote) if local_first else (remote, local)
    if src:
        obj["src_endpoint"] = src
    if dst:
        obj["dst_endpoint"] = dst
    if not src and not dst:  # pragma: no cover - the flow table keys every entry by its addresses
        obj["src_endpoint"] = {"hostname": host.hostname}
    obj["is_src_dst_assignment_known"] = initiator != INIT_UNKNOWN
    obj["observation_point_id"] = OBSERVED_AT_SOURCE if local_first else OBSERVED_AT_DESTINATION

    conn: dict[str, Any] = {
        "direction_id": {INIT_LOCAL: DIRECTION_OUTBOUND, INIT_REMOTE: DIRECTION_INBOUND}.get(initiator,
                                                                                            DIRECTION_UNKNOWN),
        "protocol_name": protocol_name(proto),
        "protocol_num": proto,
    }
    cid = d.get("community_id") or _flow_community_id(d, lip, rip, local_first)
    if cid:
        conn["community_uid"] = cid
    if proto == IPPROTO_TCP:
        conn["tcp_flags"] = int(d.get("flags_in", 0)) | int(d.get("flags_out", 0))
    if d.get("cookie"):
        conn["uid"] = str(d["cookie"])
    obj["connection_info"] = conn

    pin, bin_, pout, bout = (int(d.get(k, 0)) for k in ("pkts_in", "bytes_in", "pkts_out", "bytes_out"))
    # OCSF: *_out = source -> destination; the source is the local side only when it initiated
    s2d_p, s2d_b, d2s_p, d2s_b = (pout, bout, pin, bin_) if local_first else (pin, bin_, pout, bout)
    obj["traffic"] = {"packets_out": s2d_p, "bytes_out": s2d_b, "packets_in": d2s_p, "bytes_in": d2s_b,
                      "packets": pin + pout, "bytes": bin_ + bout}
    first_ns, last_ns = int(d.get("first_ns", 0)), int(d.get("last_ns", 0))
    if first_ns and last_ns:
        obj["start_time"] = boot_ns_to_ms(first_ns, host)
        obj["end_time"] = boot_ns_to_ms(last_ns, host)
        obj["duration"] = max(0, (last_ns - first_ns) // 1_000_000)

    flow: dict[str, Any] = {
        "state": state, "initiator": INITIATOR_NAMES.get(initiator, str(initiator)), "family": family,
        "proto": proto, "local_ip": lip, "local_port": lport, "remote_ip": rip, "remote_port": rport,
        "pkts_in": pin, "bytes_in": bin_, "pkts_out": pout, "bytes_out": bout,
        "flags_in": int(d.get("flags_in", 0)), "flags_out": int(d.get("flags_out", 0)),
        "cookie": int(d.get("cookie", 0)), "first_ns": first_ns, "last_ns": last_ns,
    }
    if icmp:  # the flow key of ICMP: lport = echo id, rport = type << 8 | code of the first packet
        flow["icmp_echo_id"] = lport
        flow["icmp_type"], flow["icmp_code"] = rport >> 8, rport & 0xFF
    obj["unmapped"].update(_where(d))
    obj["unmapped"]["flow"] = flow
    return obj


def _flow_community_id(d: dict[str, Any], lip: str | None, rip: str | None, local_first: bool) -> str | None:
    """Community ID when the stage did not set one (both addresses needed)."""
    if lip is None or rip is None:
        return None
    proto, lport, rport = int(d["proto"]), int(d["lport"]), int(d["rport"])
    try:
        if proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
            tc = (rport >> 8, rport & 0xFF)
            return community_id(proto, rip, 0, lip, 0, tc) if not local_first else \
                community_id(proto, lip, 0, rip, 0, tc)
        sa, sp, da, dp = (lip, lport, rip, rport) if local_first else (rip, rport, lip, lport)
        return community_id(proto, sa, sp, da, dp)
    except ValueError:
        return None


# ---------------------------------------------------------------- dns


def _rcode(rcode_id: int, name: str) -> tuple[int, str]:
    caption = enum_caption(CLASS_DNS_ACTIVITY, "rcode_id", rcode_id)
    if caption is None or rcode_id == _RCODE_OTHER:
        return _RCODE_OTHER, name or str(rcode_id)
    return rcode_id, caption


def _flag_ids(flags: dict[str, Any]) -> list[int]:
    return [n for key, n in _DNS_FLAG_IDS if flags.get(key)]


@register(KIND_DNS)
def dns_activity(event: Event, host: HostInfo) -> dict[str, Any]:
    """One DNS message copied by TC (``data["parsed"]`` is the stage's parse_dns(...).as_dict())."""
    d = event.data
    p: dict[str, Any] = d.get("parsed") or {}
    if p.get("id") is None:
        activity = ACTIVITY_UNKNOWN
    else:
        activity = DNS_ACTIVITY_RESPONSE if p.get("response") else DNS_ACTIVITY_QUERY
    obj = _base(event, host, CLASS_DNS_ACTIVITY, activity)
    family, proto = int(d.get("family", 0)), int(d.get("proto", IPPROTO_UDP))
    sip, dip = address(family, d.get("saddr", b"")), address(family, d.get("daddr", b""))
    sport, dport = int(d.get("sport", 0)), int(d.get("dport", 0))
    outbound = int(d.get("dir", DIR_OUT)) == DIR_OUT
    src, dst = _endpoint(sip, sport), _endpoint(dip, dport)
    if outbound:
        src = _with_interface(src, d)
    else:
        dst = _with_interface(dst, d)
    if src:
        obj["src_endpoint"] = src
    if dst:
        obj["dst_endpoint"] = dst
    if not src and not dst:  # pragma: no cover - the kernel copies addresses of every message
        obj["src_endpoint"] = {"hostname": host.hostname}

    conn: dict[str, Any] = {"direction_id": DIRECTION_OUTBOUND if outbound else DIRECTION_INBOUND,
                            "protocol_name": protocol_name(proto), "protocol_num": proto}
    if sip is not None and dip is not None:
        try:
            conn["community_uid"] = community_id(proto, sip, sport, dip, dport)
        except ValueError:
            pass
    if d.get("cookie"):
        conn["uid"] = str(d["cookie"])
    obj["connection_info"] = conn

    questions = p.get("questions") or []
    if questions:
        q0 = questions[0]
        query: dict[str, Any] = {"hostname": q0["name"], "type": q0["type"], "class": q0["class"]}
        opcode_id = int(p.get("opcode_id", 0))
        caption = _opcode_caption(opcode_id)
        if caption is None or opcode_id == _OPCODE_OTHER:
            query["opcode_id"], query["opcode"] = _OPCODE_OTHER, str(p.get("opcode") or opcode_id)
        else:
            query["opcode_id"], query["opcode"] = opcode_id, caption
        query["packet_uid"] = int(p["id"])
        obj["query"] = query
    if activity == DNS_ACTIVITY_QUERY:
        obj["query_time"] = obj["time"]
    elif activity == DNS_ACTIVITY_RESPONSE:
        obj["response_time"] = obj["time"]
        rid, rname = _rcode(int(p.get("rcode_id", 0)), str(p.get("rcode") or ""))
        obj["rcode_id"], obj["rcode"] = rid, rname
        flag_ids = _flag_ids(p.get("flags") or {})
        answers = []
        for a in p.get("answers") or []:
            ans: dict[str, Any] = {"rdata": a["data"], "type": a["type"], "class": a["class"], "ttl": a["ttl"]}
            if flag_ids:
                ans["flag_ids"] = list(flag_ids)
                ans["flags"] = [_DNS_FLAG_CAPTIONS[n] for n in flag_ids]
            if p.get("id") is not None:
                ans["packet_uid"] = int(p["id"])
            answers.append(ans)
        if answers:
            obj["answers"] = answers
    if p.get("error"):
        obj["status_id"] = 2  # Failure: the message could not be parsed whole
        obj["status_detail"] = str(p["error"])

    um = obj["unmapped"]
    um.update(_where(d))
    um["dns"] = {
        "id": p.get("id"), "response": bool(p.get("response")), "opcode": p.get("opcode"),
        "rcode": p.get("rcode"), "rcode_id": p.get("rcode_id"), "flags": dict(p.get("flags") or {}),
        "counts": dict(p.get("counts") or {}), "questions": list(questions),
        "truncated": bool(p.get("truncated")), "error": p.get("error"),
        "labels": p.get("labels", 0), "label_max": p.get("label_max", 0), "entropy": p.get("entropy", 0.0),
        "domain": p.get("domain"),
        "dir": "out" if outbound else "in", "payload_len": int(d.get("payload_len", 0)),
        "copied": len(d.get("msg") or b""), "cut": bool(int(d.get("flags", 0)) & DNS_TRUNC),
        "cookie": int(d.get("cookie", 0)),
    }
    if p.get("error"):  # nothing lost: the bytes that could not be parsed, as hex
        um["dns"]["msg_hex"] = bytes(d.get("msg") or b"").hex()
    return obj


# ---------------------------------------------------------------- netdet


@register(KIND_NETDET)
def detection_activity(event: Event, host: HostInfo) -> dict[str, Any]:
    """An in-kernel detection (se_netdet) and the response taken, if any."""
    d = event.data
    kind = int(d["kind"])
    name, caption = DETECTIONS.get(kind, (f"det{kind}", f"Detection {kind}"))
    obj = _base(event, host, CLASS_NETWORK_ACTIVITY, ACTIVITY_OTHER, activity_name=caption)
    obj["severity_id"] = SEVERITY_MEDIUM
    family, proto, port = int(d.get("family", 0)), int(d.get("protocol", 0)), int(d.get("port", 0))
    sip = address(family, d.get("saddr", b""))
    dfam = family or (AF_INET6 if any(bytes(d.get("daddr", b""))[4:]) else AF_INET)
    dip = address(dfam, d.get("daddr", b""))
    if sip is not None:
        obj["src_endpoint"] = {"ip": sip}
    obj["dst_endpoint"] = _with_interface(_endpoint(dip, port if proto in PORT_PROTOS else None), d)
    if not obj["dst_endpoint"]:
        obj["dst_endpoint"] = {"hostname": host.hostname}
    obj["connection_info"] = {"direction_id": DIRECTION_INBOUND, "protocol_name": protocol_name(proto),
                              "protocol_num": proto}
    count = int(d.get("count", 0))
    obj["count"] = count
    window_ns, start_ns = int(d.get("window_ns", 0)), int(d.get("window_start_ns", 0))
    if start_ns:
        obj["start_time"] = boot_ns_to_ms(start_ns, host)
        obj["end_time"] = obj["time"]
    window_ms = window_ns // 1_000_000
    who = sip or "all sources"
    obj["message"] = f"{caption}: {count} from {who} in {window_ms} ms (threshold {int(d.get('threshold', 0))})"
    um = obj["unmapped"]
    um.update(_where(d))
    um.update({
        "detection": name, "kind": kind, "threshold": int(d.get("threshold", 0)), "window_ns": window_ns,
        "window_ms": window_ms, "window_start_ns": start_ns, "family": family, "protocol": proto, "port": port,
    })
    resp = d.get("response")
    um["response"] = dict(resp) if isinstance(resp, dict) else None
    if isinstance(resp, dict):
        obj["metadata"] = dict(obj["metadata"])
        obj["metadata"]["profiles"] = [*obj["metadata"]["profiles"], "security_control"]
        obj.update(security_control(str(resp.get("action") or "block"), bool(resp.get("ok")), RESPONSE_POLICY,
                                    "enforce"))
    return obj
