"""OCSF Network Activity mapping of se_net events, from hand-built Events."""

from __future__ import annotations

from typing import Any

import pytest

from sentinel_edge.model import KIND_NET, Event
from sentinel_edge.output.ocsf import HostInfo, to_ocsf
from sentinel_edge.output.ocsf.network import format_ip, network_activity
from sentinel_edge.output.ocsf.schema import validate

HOST = HostInfo(hostname="h1", boot_id="boot-1", boot_time_ns=1_700_000_000_000_000_000)

LO4 = [127, 0, 0, 1] + [0] * 12
LO6 = [0] * 15 + [1]
ZERO = [0] * 16


def proc(pid: int = 4242) -> dict[str, Any]:
    return {
        "pid": pid, "tid": pid, "ppid": 1, "ns_pid": pid, "uid": 1000, "euid": 1000, "gid": 1000,
        "egid": 1000, "loginuid": 1000, "sessionid": 3, "mnt_ns": 4026531841, "pid_ns": 4026531836,
        "net_ns": 4026531840, "_pad0": 0, "cgroup_id": 77, "start_ns": 5_000_000, "parent_start_ns": 1_000,
        "comm": b"curl",
    }


def net(**over: Any) -> Event:
    data: dict[str, Any] = {
        "op": 2, "ret": 0, "fd": 3, "family": 2, "sock_type": 1, "protocol": 6, "sport": 40000,
        "dport": 8080, "old_state": 0, "new_state": 0, "saddr": list(LO4), "daddr": list(LO4),
        "cookie": 4097, "backlog": 0, "flags": 0, "owner_pid": 0, "_pad0": 0, "bytes": 0,
        "unix_path": b"", "_pad1": b"",
    }
    data.update(over)
    return Event(kind=KIND_NET, type_id=20, ts_ns=2_000_000_000, cpu=1, proc=proc(), data=data)


def mapped(ev: Event) -> dict[str, Any]:
    obj = to_ocsf(ev, HOST)
    errors = validate(obj)
    assert errors == [], errors
    return obj


def test_registered_for_net_kind() -> None:
    ev = net()
    assert to_ocsf(ev, HOST) == network_activity(ev, HOST)


def test_connect_success_ipv4() -> None:
    o = mapped(net())
    assert (o["class_uid"], o["category_uid"], o["activity_id"], o["type_uid"]) == (4001, 4, 1, 400101)
    assert o["activity_name"] == "Open"
    assert o["status_id"] == 1
    assert "status_code" not in o
    assert o["src_endpoint"] == {"ip": "127.0.0.1", "port": 40000}
    assert o["dst_endpoint"] == {"ip": "127.0.0.1", "port": 8080}
    assert o["connection_info"] == {
        "direction_id": 2, "protocol_name": "tcp", "protocol_num": 6, "uid": "4097",
    }
    um = o["unmapped"]
    assert um["event"] == "net"
    assert um["proc"]["pid"] == 4242
    assert {k: um[k] for k in ("op", "ret", "fd", "family", "family_name", "sock_type", "sock_type_name",
                                "protocol", "cookie", "flags")} == {
        "op": "connect", "ret": 0, "fd": 3, "family": 2, "family_name": "AF_INET", "sock_type": 1,
        "sock_type_name": "SOCK_STREAM", "protocol": 6, "cookie": 4097, "flags": 0,
    }
    assert o["actor"]["process"]["pid"] == 4242


def test_connect_einprogress_is_pending() -> None:
    o = mapped(net(ret=-115, sport=0, saddr=list(ZERO)))
    assert o["activity_id"] == 1
    assert o["status_id"] == 0
    assert o["status_code"] == "EINPROGRESS"
    assert "connect_done" in o["status_detail"]
    assert "src_endpoint" not in o          # no local side chosen yet
    assert o["dst_endpoint"] == {"ip": "127.0.0.1", "port": 8080}


def test_connect_refused_syscall() -> None:
    o = mapped(net(ret=-111))
    assert o["activity_id"] == 1
    assert o["status_id"] == 2
    assert o["status_code"] == "ECONNREFUSED"
    assert o["status_detail"] == "Connection refused"


@pytest.mark.parametrize(
    ("ret", "activity", "status", "code"),
    [(0, 1, 1, None), (-111, 5, 2, "ECONNREFUSED"), (-110, 4, 2, "ETIMEDOUT"), (-103, 4, 2, "ECONNABORTED")],
)
def test_connect_done(ret: int, activity: int, status: int, code: str | None) -> None:
    o = mapped(net(op=3, ret=ret, old_state=2, new_state=1 if ret == 0 else 7, owner_pid=4242))
    assert o["activity_id"] == activity
    assert o["status_id"] == status
    assert o.get("status_code") == code
    assert o["unmapped"]["old_state"] == "SYN_SENT"
    assert o["unmapped"]["new_state"] == ("ESTABLISHED" if ret == 0 else "CLOSE")
    assert o["unmapped"]["owner_pid"] == 4242
    assert o["connection_info"]["direction_id"] == 2


def test_ipv6_and_mapped_addresses() -> None:
    o = mapped(net(family=10, saddr=list(LO6), daddr=list(LO6)))
    assert o["src_endpoint"]["ip"] == "::1"
    assert o["dst_endpoint"]["ip"] == "::1"
    mapped4 = [0] * 10 + [0xFF, 0xFF, 127, 0, 0, 1]
    assert format_ip(10, mapped4) == "::ffff:127.0.0.1"
    assert format_ip(2, [10, 1, 2, 3] + [9] * 12) == "10.1.2.3"   # only the first 4 bytes count
    assert format_ip(1, LO4) is None


def test_accept_is_inbound_with_peer_as_source() -> None:
    o = mapped(net(op=4, ret=5, fd=3, sport=8080, dport=51000, flags=0o2000000))
    assert o["activity_id"] == 1
    assert o["status_id"] == 1
    assert o["src_endpoint"] == {"ip": "127.0.0.1", "port": 51000}
    assert o["dst_endpoint"] == {"ip": "127.0.0.1", "port": 8080}
    assert o["connection_info"]["direction_id"] == 1
    assert o["unmapped"]["ret"] == 5
    assert o["unmapped"]["flags"] == 0o2000000


def test_bind_is_other_named_bind() -> None:
    o = mapped(net(op=5, sport=5353, dport=0, daddr=list(ZERO), saddr=list(ZERO), sock_type=2, protocol=17))
    assert (o["activity_id"], o["activity_name"], o["type_uid"]) == (99, "Bind", 400199)
    assert o["src_endpoint"] == {"ip": "0.0.0.0", "port": 5353}
    assert "dst_endpoint" not in o
    assert o["connection_info"]["protocol_name"] == "udp"


def test_bind_failure() -> None:
    o = mapped(net(op=5, ret=-98, sport=80, dport=0, daddr=list(ZERO)))
    assert o["status_id"] == 2
    assert o["status_code"] == "EADDRINUSE"


def test_listen() -> None:
    o = mapped(net(op=6, sport=8080, dport=0, daddr=list(ZERO), backlog=128))
    assert o["activity_id"] == 7
    assert o["activity_name"] == "Listen"
    assert o["dst_endpoint"] == {"ip": "127.0.0.1", "port": 8080}
    assert "src_endpoint" not in o
    assert o["unmapped"]["backlog"] == 128
    assert o["connection_info"]["direction_id"] == 1


def test_sendto_traffic() -> None:
    o = mapped(net(op=7, ret=37, bytes=37, sock_type=2, protocol=17, dport=53, sport=40001))
    assert o["activity_id"] == 6
    assert o["traffic"] == {"bytes_out": 37, "packets_out": 1}
    assert o["connection_info"]["protocol_name"] == "udp"
    assert o["unmapped"]["bytes"] == 37
    failed = mapped(net(op=7, ret=-101, bytes=37, sock_type=2, protocol=17))
    assert "traffic" not in failed
    assert failed["status_code"] == "ENETUNREACH"


@pytest.mark.parametrize(
    ("old", "new", "ret", "activity", "code"),
    [(3, 1, 0, 1, None), (5, 7, 0, 2, None), (1, 7, -104, 3, "ECONNRESET"), (1, 7, -110, 2, "ETIMEDOUT")],
)
def test_state(old: int, new: int, ret: int, activity: int, code: str | None) -> None:
    o = mapped(net(op=8, ret=ret, old_state=old, new_state=new, fd=-1))
    assert o["activity_id"] == activity
    assert o.get("status_code") == code
    assert o["connection_info"]["direction_id"] == 0
    assert o["connection_info"]["uid"] == "4097"
    assert o["unmapped"]["owner_pid"] == 0


def test_unix_connect_abstract() -> None:
    ev = net(family=1, protocol=0, sport=0, dport=0, saddr=list(ZERO), daddr=list(ZERO), cookie=0,
             unix_path=b"@sentinel\x00x")
    o = mapped(ev)
    assert o["dst_endpoint"] == {"name": "@sentinel\x00x"}
    assert "src_endpoint" not in o
    assert o["unmapped"]["unix_path"] == "@sentinel\x00x"
    assert o["connection_info"] == {"direction_id": 2}   # no IP protocol, no cookie


def test_unix_path_invalid_utf8_is_escaped() -> None:
    o = mapped(net(op=5, family=1, protocol=0, sport=0, dport=0, saddr=list(ZERO), daddr=list(ZERO),
                   unix_path=b"/tmp/\xff.sock"))
    assert o["src_endpoint"] == {"name": "/tmp/\\xff.sock"}


def test_raw_and_packet_socket() -> None:
    raw = mapped(net(op=1, ret=7, fd=7, sock_type=3, protocol=1, sport=0, dport=0, saddr=list(ZERO),
                     daddr=list(ZERO), cookie=0, flags=0o2000000 | 0o4000))
    assert (raw["activity_id"], raw["activity_name"]) == (99, "Socket")
    assert raw["connection_info"] == {"direction_id": 0, "protocol_name": "icmp", "protocol_num": 1}
    assert raw["unmapped"]["socket_flags"] == ["SOCK_NONBLOCK", "SOCK_CLOEXEC"]
    assert raw["src_endpoint"] == {"hostname": "h1"}   # OCSF needs one endpoint: this host
    assert "dst_endpoint" not in raw
    pkt = mapped(net(op=1, ret=8, fd=8, family=17, sock_type=3, protocol=0x0300, sport=0, dport=0,
                     saddr=list(ZERO), daddr=list(ZERO), cookie=0))
    assert pkt["unmapped"]["family_name"] == "AF_PACKET"
    assert pkt["unmapped"]["ethertype"] == "0x0003"
    assert pkt["unmapped"]["ethertype_name"] == "ETH_P_ALL"
    assert "protocol_name" not in pkt["connection_info"]


def test_socket_failure() -> None:
    o = mapped(net(op=1, ret=-1, fd=-1, sock_type=3, protocol=1, sport=0, dport=0, saddr=list(ZERO),
                   daddr=list(ZERO), cookie=0))
    assert o["status_id"] == 2
    assert o["status_code"] == "EPERM"


def test_unknown_op_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown op 42"):
        network_activity(net(op=42), HOST)
