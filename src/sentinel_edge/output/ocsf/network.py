"""OCSF Network Activity (class 4001) for the network sensor (kind ``net``).

One ``struct se_net`` becomes one Network Activity object. The op decides the
activity:

======================  =============================================
op                      activity
======================  =============================================
socket (raw / packet)   99 Other, ``activity_name`` "Socket"
connect                 1 Open; status from ret, -EINPROGRESS is
                        status Unknown (the outcome comes later)
connect_done            1 Open on success, 5 Refuse for ECONNREFUSED,
                        4 Fail for any other error
accept                  1 Open, direction inbound
bind                    99 Other, ``activity_name`` "Bind"
listen                  7 Listen
sendto                  6 Traffic with ``traffic.bytes_out``
send (first datagram    6 Traffic with ``traffic.bytes_out`` (once per
of a connected UDP      socket: what ties the socket's cookie to its
socket)                 process)
state (TCP)             1 Open into ESTABLISHED, 2 Close into CLOSE,
                        3 Reset when the close carries ECONNRESET
======================  =============================================

Endpoints follow OCSF: ``src_endpoint`` is the side that initiated, so for
accepted connections the peer is the source and the local socket the
destination. For bind the local address is ``src_endpoint``, for listen
(the responder side) ``dst_endpoint``. Addresses with neither an address nor
a port (an unbound side) are left out; when neither side is known (raw and
packet socket creation) ``src_endpoint`` is this host ({hostname}). AF_UNIX sockets have no IP: the path
(``@`` first for abstract names) is the endpoint ``name`` and
``unmapped.unix_path``. ``connection_info.uid`` is the socket cookie, which
is what ties events of one socket together (and to SO_COOKIE in user space).
Kernel values without an OCSF home go under ``unmapped``.
"""

from __future__ import annotations

import errno
import ipaddress
import os
from typing import Any

from sentinel_edge.model import KIND_NET, Event
from sentinel_edge.output.ocsf.common import (
    ACTIVITY_OTHER,
    STATUS_SUCCESS,
    STATUS_UNKNOWN,
    HostInfo,
    base,
    register,
    status_from_ret,
    text,
)

CLASS_NETWORK_ACTIVITY = 4001
CATEGORY_NETWORK = 4

ACTIVITY_OPEN = 1
ACTIVITY_CLOSE = 2
ACTIVITY_RESET = 3
ACTIVITY_FAIL = 4
ACTIVITY_REFUSE = 5
ACTIVITY_TRAFFIC = 6
ACTIVITY_LISTEN = 7

DIRECTION_UNKNOWN = 0
DIRECTION_INBOUND = 1
DIRECTION_OUTBOUND = 2

# enum se_net_op (bpf/shared/events.h)
OP_SOCKET = 1
OP_CONNECT = 2
OP_CONNECT_DONE = 3
OP_ACCEPT = 4
OP_BIND = 5
OP_LISTEN = 6
OP_SENDTO = 7
OP_STATE = 8
OP_DGRAM = 9  # first datagram of a connected UDP socket (once per socket)

OP_NAMES = {
    OP_SOCKET: "socket",
    OP_CONNECT: "connect",
    OP_CONNECT_DONE: "connect_done",
    OP_ACCEPT: "accept",
    OP_BIND: "bind",
    OP_LISTEN: "listen",
    OP_SENDTO: "sendto",
    OP_STATE: "state",
    OP_DGRAM: "send",
}

AF_UNIX = 1
AF_INET = 2
AF_INET6 = 10
AF_PACKET = 17
FAMILY_NAMES = {AF_UNIX: "AF_UNIX", AF_INET: "AF_INET", AF_INET6: "AF_INET6", AF_PACKET: "AF_PACKET"}

SOCK_TYPE_NAMES = {
    1: "SOCK_STREAM",
    2: "SOCK_DGRAM",
    3: "SOCK_RAW",
    4: "SOCK_RDM",
    5: "SOCK_SEQPACKET",
    6: "SOCK_DCCP",
    10: "SOCK_PACKET",
}

# IANA protocol numbers (IPPROTO_*) as OCSF protocol_name values
IP_PROTOCOL_NAMES = {
    0: "ip",
    1: "icmp",
    2: "igmp",
    6: "tcp",
    17: "udp",
    41: "ipv6",
    47: "gre",
    50: "esp",
    58: "icmpv6",
    132: "sctp",
    136: "udplite",
    255: "raw",
}

# socket() flags carried in the type argument
SOCK_NONBLOCK = 0o4000
SOCK_CLOEXEC = 0o2000000

# include/net/tcp_states.h
TCP_STATE_NAMES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
    13: "BOUND_INACTIVE",
}
TCP_ESTABLISHED = 1
TCP_CLOSE = 7

ETH_P_NAMES = {0x0003: "ETH_P_ALL", 0x0800: "ETH_P_IP", 0x0806: "ETH_P_ARP", 0x86DD: "ETH_P_IPV6"}


def format_ip(family: int, raw: list[int] | bytes) -> str | None:
    """Text of an se_net address field (16 bytes, IPv4 in the first 4)."""
    data = bytes(raw)
    if family == AF_INET:
        return str(ipaddress.IPv4Address(data[:4]))
    if family == AF_INET6:
        addr = ipaddress.IPv6Address(data[:16])
        mapped = addr.ipv4_mapped
        # the same text on every Python version (3.13 changed str() of mapped addresses)
        return f"::ffff:{mapped}" if mapped is not None else str(addr)
    return None


def _endpoint(family: int, raw: list[int], port: int) -> dict[str, Any] | None:
    """OCSF Network Endpoint {ip, port}, None when nothing is known of that side."""
    if family not in (AF_INET, AF_INET6):
        return None
    if port == 0 and not any(bytes(raw)):
        return None
    ip = format_ip(family, raw)
    obj: dict[str, Any] = {"ip": ip}
    if port:
        obj["port"] = port
    return obj


def _socket_flags(flags: int) -> list[str]:
    names = []
    if flags & SOCK_NONBLOCK:
        names.append("SOCK_NONBLOCK")
    if flags & SOCK_CLOEXEC:
        names.append("SOCK_CLOEXEC")
    return names


def _protocol(family: int, protocol: int) -> tuple[str | None, int | None, dict[str, Any]]:
    """(protocol_name, protocol_num, extra unmapped) for connection_info."""
    if family == AF_PACKET:
        ethertype = int.from_bytes(protocol.to_bytes(2, "little"), "big")  # htons() on the wire
        extra: dict[str, Any] = {"ethertype": f"0x{ethertype:04x}"}
        if ethertype in ETH_P_NAMES:
            extra["ethertype_name"] = ETH_P_NAMES[ethertype]
        return None, None, extra
    if family in (AF_INET, AF_INET6):
        return IP_PROTOCOL_NAMES.get(protocol), protocol, {}
    return None, None, {}


def _errno_name(code: int) -> str:
    return errno.errorcode.get(code, str(code))


def _activity_and_status(d: dict[str, Any]) -> tuple[int, str | None, int | None, dict[str, Any]]:
    """(activity_id, activity_name for Other, status_id, status_code/detail)."""
    op = d["op"]
    ret = d["ret"]
    if op == OP_SOCKET:
        status, extra = status_from_ret(ret)
        return ACTIVITY_OTHER, "Socket", status, extra
    if op == OP_CONNECT:
        if ret == -errno.EINPROGRESS:
            return ACTIVITY_OPEN, None, STATUS_UNKNOWN, {
                "status_code": "EINPROGRESS",
                "status_detail": "non-blocking connect in progress; the outcome is reported by connect_done",
            }
        status, extra = status_from_ret(ret)
        return ACTIVITY_OPEN, None, status, extra
    if op == OP_CONNECT_DONE:
        if ret == 0:
            return ACTIVITY_OPEN, None, STATUS_SUCCESS, {}
        status, extra = status_from_ret(ret)
        activity = ACTIVITY_REFUSE if ret == -errno.ECONNREFUSED else ACTIVITY_FAIL
        return activity, None, status, extra
    if op == OP_ACCEPT:
        status, extra = status_from_ret(ret)
        return ACTIVITY_OPEN, None, status, extra
    if op == OP_BIND:
        status, extra = status_from_ret(ret)
        return ACTIVITY_OTHER, "Bind", status, extra
    if op == OP_LISTEN:
        status, extra = status_from_ret(ret)
        return ACTIVITY_LISTEN, None, status, extra
    if op in (OP_SENDTO, OP_DGRAM):
        status, extra = status_from_ret(ret)
        return ACTIVITY_TRAFFIC, None, status, extra
    if op == OP_STATE:
        if d["new_state"] == TCP_ESTABLISHED:
            return ACTIVITY_OPEN, None, STATUS_SUCCESS, {}
        if d["new_state"] == TCP_CLOSE:
            if ret == -errno.ECONNRESET:
                return ACTIVITY_RESET, None, STATUS_SUCCESS, {
                    "status_code": "ECONNRESET",
                    "status_detail": os.strerror(errno.ECONNRESET),
                }
            extra = {}
            if ret < 0:
                extra = {"status_code": _errno_name(-ret), "status_detail": os.strerror(-ret)}
            return ACTIVITY_CLOSE, None, STATUS_SUCCESS, extra
        return ACTIVITY_OTHER, "State Change", STATUS_SUCCESS, {}
    raise ValueError(f"net event with unknown op {op} (enum se_net_op in bpf/shared/events.h)")


def _direction(op: int) -> int:
    if op in (OP_CONNECT, OP_CONNECT_DONE, OP_SENDTO, OP_DGRAM):
        return DIRECTION_OUTBOUND
    if op in (OP_ACCEPT, OP_LISTEN):
        return DIRECTION_INBOUND
    return DIRECTION_UNKNOWN


@register(KIND_NET)
def network_activity(event: Event, host: HostInfo) -> dict[str, Any]:
    """OCSF Network Activity of one se_net event."""
    d = event.data
    op = d["op"]
    family = d["family"]
    activity, activity_name, status, status_extra = _activity_and_status(d)
    obj = base(
        event,
        host,
        class_uid=CLASS_NETWORK_ACTIVITY,
        category_uid=CATEGORY_NETWORK,
        activity_id=activity,
        activity_name=activity_name,
        status_id=status,
    )
    obj.update(status_extra)

    local = _endpoint(family, d["saddr"], d["sport"])
    remote = _endpoint(family, d["daddr"], d["dport"])
    unix_path = text(d.get("unix_path")) or None
    if op == OP_ACCEPT:
        src, dst = remote, local
    elif op == OP_LISTEN:
        src, dst = None, local
    elif op == OP_BIND:
        src, dst = local, None
    else:
        src, dst = local, remote
    if family == AF_UNIX and unix_path is not None:
        # connect: the path is the peer; bind/listen/accept: our own name
        if op in (OP_CONNECT, OP_SENDTO):
            dst = {"name": unix_path}
        elif op == OP_BIND:
            src = {"name": unix_path}
        else:
            dst = {"name": unix_path}
    if src is None and dst is None:
        # OCSF needs one endpoint; a socket with no address yet (raw/packet
        # creation, unnamed AF_UNIX) is known only as a socket of this host
        src = {"hostname": host.hostname}
    if src is not None:
        obj["src_endpoint"] = src
    if dst is not None:
        obj["dst_endpoint"] = dst

    proto_name, proto_num, proto_extra = _protocol(family, d["protocol"])
    conn: dict[str, Any] = {"direction_id": _direction(op)}
    if proto_name is not None:
        conn["protocol_name"] = proto_name
    if proto_num is not None:
        conn["protocol_num"] = proto_num
    if d["cookie"]:
        conn["uid"] = str(d["cookie"])
    obj["connection_info"] = conn

    if op in (OP_SENDTO, OP_DGRAM) and d["ret"] >= 0:
        obj["traffic"] = {"bytes_out": d["bytes"], "packets_out": 1}

    um: dict[str, Any] = obj["unmapped"]
    um.update(
        {
            "op": OP_NAMES.get(op, str(op)),
            "ret": d["ret"],
            "fd": d["fd"],
            "family": family,
            "family_name": FAMILY_NAMES.get(family, str(family)),
            "sock_type": d["sock_type"],
            "sock_type_name": SOCK_TYPE_NAMES.get(d["sock_type"], str(d["sock_type"])),
            "protocol": d["protocol"],
            "cookie": d["cookie"],
            "flags": d["flags"],
        }
    )
    um.update(proto_extra)
    if op == OP_SOCKET:
        um["socket_flags"] = _socket_flags(d["flags"])
    if op in (OP_STATE, OP_CONNECT_DONE):
        um["old_state"] = TCP_STATE_NAMES.get(d["old_state"], str(d["old_state"]))
        um["new_state"] = TCP_STATE_NAMES.get(d["new_state"], str(d["new_state"]))
        um["owner_pid"] = d["owner_pid"]
    if op == OP_LISTEN:
        um["backlog"] = d["backlog"]
    if op in (OP_SENDTO, OP_DGRAM):
        um["bytes"] = d["bytes"]
    if unix_path is not None:
        um["unix_path"] = unix_path
    return obj
