"""Network sensor against the real kernel: every action runs in a python
subprocess (so the event's pid is that subprocess), on loopback only, and
prints what it saw (pid, fds, ports, SO_COOKIE) as JSON for the assertions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.kernel

Obj = dict[str, Any]

PRELUDE = textwrap.dedent(
    """
    import errno, json, os, select, socket, struct
    def cookie(s):
        return struct.unpack("<Q", s.getsockopt(socket.SOL_SOCKET, 57, 8))[0]   # SO_COOKIE
    out = {"pid": os.getpid()}
    """
)


def run(script: str) -> dict[str, Any]:
    code = PRELUDE + textwrap.dedent(script) + "\nprint(json.dumps(out))\n"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    data: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return data


def net(pid: int, op: str, **fields: Any) -> Any:
    def pred(o: Obj) -> bool:
        um = o.get("unmapped", {})
        if um.get("event") != "net" or um.get("op") != op or um.get("proc", {}).get("pid") != pid:
            return False
        return all(um.get(k) == v for k, v in fields.items())

    return pred


def check_common(o: Obj, pid: int, *, activity: int, family: int, sock_type: int, protocol: int) -> None:
    assert o["class_uid"] == 4001
    assert o["category_uid"] == 4
    assert o["activity_id"] == activity
    assert o["type_uid"] == 400100 + activity
    assert o["actor"]["process"]["pid"] == pid
    um = o["unmapped"]
    assert um["proc"]["pid"] == pid
    assert um["family"] == family
    assert um["sock_type"] == sock_type
    assert um["protocol"] == protocol


def test_tcp_blocking_connect_ipv4_and_ipv6(agent: Any) -> None:
    for family, host in ((2, "127.0.0.1"), (10, "::1")):
        mark = agent.mark()
        r = run(
            f"""
            fam = socket.AF_INET if {family} == 2 else socket.AF_INET6
            l = socket.socket(fam); l.bind(({host!r}, 0)); l.listen(5)
            c = socket.socket(fam); c.connect(({host!r}, l.getsockname()[1]))
            a, _ = l.accept()
            out.update(lport=l.getsockname()[1], cport=c.getsockname()[1], cfd=c.fileno(),
                       lfd=l.fileno(), afd=a.fileno(), ccookie=cookie(c), acookie=cookie(a),
                       lcookie=cookie(l))
            c.close(); a.close(); l.close()
            """
        )
        pid = r["pid"]
        conn = agent.wait_for(net(pid, "connect"), since=mark)
        check_common(conn, pid, activity=1, family=family, sock_type=1, protocol=6)
        assert conn["status_id"] == 1
        assert conn["src_endpoint"] == {"ip": host, "port": r["cport"]}
        assert conn["dst_endpoint"] == {"ip": host, "port": r["lport"]}
        assert conn["connection_info"] == {
            "direction_id": 2, "protocol_name": "tcp", "protocol_num": 6, "uid": str(r["ccookie"]),
        }
        assert conn["unmapped"]["fd"] == r["cfd"]
        assert conn["unmapped"]["ret"] == 0
        assert conn["unmapped"]["cookie"] == r["ccookie"] != 0

        bind = agent.wait_for(net(pid, "bind"), since=mark)
        check_common(bind, pid, activity=99, family=family, sock_type=1, protocol=6)
        assert bind["activity_name"] == "Bind"
        assert bind["src_endpoint"] == {"ip": host, "port": r["lport"]}   # port 0 asked: the assigned one
        assert bind["unmapped"]["fd"] == r["lfd"]
        assert bind["unmapped"]["ret"] == 0

        lis = agent.wait_for(net(pid, "listen"), since=mark)
        check_common(lis, pid, activity=7, family=family, sock_type=1, protocol=6)
        assert lis["dst_endpoint"] == {"ip": host, "port": r["lport"]}
        assert lis["unmapped"]["backlog"] == 5
        assert lis["unmapped"]["fd"] == r["lfd"]
        assert lis["unmapped"]["cookie"] == r["lcookie"] != 0

        acc = agent.wait_for(net(pid, "accept"), since=mark)
        check_common(acc, pid, activity=1, family=family, sock_type=1, protocol=6)
        assert acc["src_endpoint"] == {"ip": host, "port": r["cport"]}    # the peer initiated
        assert acc["dst_endpoint"] == {"ip": host, "port": r["lport"]}
        assert acc["connection_info"]["direction_id"] == 1
        assert acc["unmapped"]["fd"] == r["lfd"]
        assert acc["unmapped"]["ret"] == r["afd"]
        assert acc["unmapped"]["cookie"] == r["acookie"] != 0

        # flows: both sides CLOSE with their owner filled from the owner table
        sides = ((r["ccookie"], r["cport"], r["lport"]), (r["acookie"], r["lport"], r["cport"]))
        for ck, local, peer in sides:
            close = agent.wait_for(net(pid, "state", cookie=ck, new_state="CLOSE"), since=mark)
            assert close["activity_id"] == 2
            assert close["unmapped"]["owner_pid"] == pid
            assert close["src_endpoint"] == {"ip": host, "port": local}
            assert close["dst_endpoint"] == {"ip": host, "port": peer}
        # a blocking connect's result is in its CONNECT event: no CONNECT_DONE, and the
        # accepted socket's ownerless ESTABLISHED is covered by ACCEPT
        assert agent.find_all(net(pid, "connect_done"), since=mark) == []
        assert agent.find_all(lambda o, r=r: o.get("unmapped", {}).get("op") == "state"
                              and o["unmapped"].get("new_state") == "ESTABLISHED"
                              and o["unmapped"].get("cookie") in (r["acookie"], r["ccookie"]), since=mark) == []


def test_tcp_blocking_connect_refused(agent: Any) -> None:
    mark = agent.mark()
    r = run(
        """
        l = socket.socket(); l.bind(("127.0.0.1", 0)); port = l.getsockname()[1]; l.close()
        c = socket.socket()
        out.update(port=port, fd=c.fileno(), err=c.connect_ex(("127.0.0.1", port)), cookie=cookie(c))
        """
    )
    assert r["err"] == 111
    pid = r["pid"]
    conn = agent.wait_for(net(pid, "connect", ret=-111), since=mark)
    check_common(conn, pid, activity=1, family=2, sock_type=1, protocol=6)
    assert conn["status_id"] == 2
    assert conn["status_code"] == "ECONNREFUSED"
    assert conn["dst_endpoint"] == {"ip": "127.0.0.1", "port": r["port"]}
    assert conn["unmapped"]["fd"] == r["fd"]
    assert conn["unmapped"]["cookie"] == r["cookie"] != 0
    # the blocking call itself returned the refusal: no separate CONNECT_DONE
    agent.wait_for(lambda o: o.get("unmapped", {}).get("event") == "exit"
                   and o["unmapped"]["proc"]["pid"] == pid, since=mark)
    assert agent.find_all(net(pid, "connect_done"), since=mark) == []


def test_tcp_nonblocking_connect_success_and_refused(agent: Any) -> None:
    mark = agent.mark()
    r = run(
        """
        l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(); port = l.getsockname()[1]
        c = socket.socket(); c.setblocking(False)
        out.update(port=port, fd=c.fileno(), ret=c.connect_ex(("127.0.0.1", port)))
        select.select([], [c], [], 5)
        out.update(so_error=c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), cookie=cookie(c),
                   cport=c.getsockname()[1])
        l.close()
        d = socket.socket(); d.setblocking(False)
        out.update(dfd=d.fileno(), dret=d.connect_ex(("127.0.0.1", port)))
        select.select([], [d], [], 5)
        out.update(dso_error=d.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), dcookie=cookie(d))
        """
    )
    assert (r["ret"], r["so_error"], r["dret"], r["dso_error"]) == (115, 0, 115, 111)
    pid = r["pid"]
    conn = agent.wait_for(net(pid, "connect", fd=r["fd"]), since=mark)
    assert conn["unmapped"]["ret"] == -115
    assert conn["status_id"] == 0
    assert conn["status_code"] == "EINPROGRESS"
    assert conn["dst_endpoint"] == {"ip": "127.0.0.1", "port": r["port"]}
    assert conn["unmapped"]["cookie"] == r["cookie"] != 0
    ok = agent.wait_for(net(pid, "connect_done", cookie=r["cookie"]), since=mark)
    assert ok["unmapped"]["ret"] == 0
    assert ok["activity_id"] == 1
    assert ok["status_id"] == 1
    assert ok["unmapped"]["owner_pid"] == pid
    assert ok["unmapped"]["fd"] == r["fd"]
    assert ok["src_endpoint"] == {"ip": "127.0.0.1", "port": r["cport"]}

    bad = agent.wait_for(net(pid, "connect", fd=r["dfd"]), since=mark)
    assert bad["unmapped"]["ret"] == -115
    assert bad["unmapped"]["cookie"] == r["dcookie"] != 0
    refused = agent.wait_for(net(pid, "connect_done", cookie=r["dcookie"]), since=mark)
    assert refused["unmapped"]["ret"] == -111
    assert refused["activity_id"] == 5
    assert refused["status_code"] == "ECONNREFUSED"
    assert refused["unmapped"]["owner_pid"] == pid
    assert refused["unmapped"]["fd"] == r["dfd"]


def test_unix_connect_path_and_abstract(agent: Any, tmp_path: Any) -> None:
    path = str(tmp_path / "srv.sock")
    abstract = f"se-test-{uuid.uuid4().hex[:12]}"
    mark = agent.mark()
    r = run(
        f"""
        s = socket.socket(socket.AF_UNIX); s.bind({path!r}); s.listen(3)
        c = socket.socket(socket.AF_UNIX); c.connect({path!r})
        a = socket.socket(socket.AF_UNIX); a.bind("\\0" + {abstract!r}); a.listen(3)
        d = socket.socket(socket.AF_UNIX); d.connect("\\0" + {abstract!r})
        out.update(sfd=s.fileno(), cfd=c.fileno(), afd=a.fileno(), dfd=d.fileno())
        """
    )
    os.unlink(path)
    pid = r["pid"]
    for fd, name in ((r["cfd"], path), (r["dfd"], "@" + abstract)):
        o = agent.wait_for(net(pid, "connect", fd=fd), since=mark)
        check_common(o, pid, activity=1, family=1, sock_type=1, protocol=0)
        assert o["status_id"] == 1
        assert o["unmapped"]["unix_path"] == name
        assert o["dst_endpoint"] == {"name": name}
        assert o["unmapped"]["ret"] == 0
    for fd, name in ((r["sfd"], path), (r["afd"], "@" + abstract)):
        b = agent.wait_for(net(pid, "bind", fd=fd), since=mark)
        assert b["unmapped"]["unix_path"] == name
        assert b["src_endpoint"] == {"name": name}
        lis = agent.wait_for(net(pid, "listen", fd=fd), since=mark)
        assert lis["unmapped"]["unix_path"] == name
        assert lis["unmapped"]["backlog"] == 3


def test_udp_unconnected_sendto(agent: Any) -> None:
    mark = agent.mark()
    r = run(
        """
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); rx.bind(("127.0.0.1", 0))
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        n = tx.sendto(b"x" * 37, ("127.0.0.1", rx.getsockname()[1]))
        # a connected socket's sends are not SENDTO events
        cx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); cx.connect(rx.getsockname()); cx.send(b"yy")
        out.update(n=n, fd=tx.fileno(), port=rx.getsockname()[1], sport=tx.getsockname()[1],
                   cookie=cookie(tx), cxfd=cx.fileno())
        """
    )
    pid = r["pid"]
    o = agent.wait_for(net(pid, "sendto"), since=mark)
    check_common(o, pid, activity=6, family=2, sock_type=2, protocol=17)
    assert o["unmapped"]["bytes"] == 37 == r["n"]
    assert o["traffic"] == {"bytes_out": 37, "packets_out": 1}
    assert o["dst_endpoint"] == {"ip": "127.0.0.1", "port": r["port"]}
    assert o["src_endpoint"] == {"ip": "0.0.0.0", "port": r["sport"]}
    assert o["unmapped"]["fd"] == r["fd"]
    assert o["unmapped"]["cookie"] == r["cookie"] != 0
    assert o["connection_info"]["uid"] == str(r["cookie"])
    assert agent.find_all(net(pid, "sendto", fd=r["cxfd"]), since=mark) == []


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_connected_udp_first_send_reports_its_cookie_once(agent: Any, v6: bool) -> None:
    """connect() of a UDP socket has no cookie yet: the first datagram reports it (op send), once."""
    mark = agent.mark()
    fam, host = ("AF_INET6", "::1") if v6 else ("AF_INET", "127.0.0.1")
    r = run(
        f"""
        rx = socket.socket(socket.{fam}, socket.SOCK_DGRAM); rx.bind(("{host}", 0))
        cx = socket.socket(socket.{fam}, socket.SOCK_DGRAM); cx.connect(rx.getsockname()[:2])
        n = cx.send(b"q" * 29)
        cx.send(b"second"); cx.send(b"third")
        out.update(n=n, port=rx.getsockname()[1], sport=cx.getsockname()[1], cookie=cookie(cx))
        """
    )
    pid = r["pid"]
    o = agent.wait_for(net(pid, "send"), since=mark)
    check_common(o, pid, activity=6, family=10 if v6 else 2, sock_type=2, protocol=17)
    assert o["unmapped"]["cookie"] == r["cookie"] != 0 and o["connection_info"]["uid"] == str(r["cookie"])
    assert o["unmapped"]["bytes"] == 29 == r["n"] and o["traffic"] == {"bytes_out": 29, "packets_out": 1}
    assert o["dst_endpoint"] == {"ip": host, "port": r["port"]}
    assert o["src_endpoint"] == {"ip": host, "port": r["sport"]}
    assert o["connection_info"]["direction_id"] == 2
    # the connect event before it had no cookie to give; later sends are not reported
    c = agent.wait_for(net(pid, "connect"), since=mark)
    assert c["unmapped"]["cookie"] == 0
    agent.wait_for(lambda x: x.get("unmapped", {}).get("event") == "exit"
                   and x.get("unmapped", {}).get("proc", {}).get("pid") == pid, since=mark)
    assert len(agent.find_all(net(pid, "send"), since=mark)) == 1


def test_raw_and_packet_sockets(agent: Any) -> None:
    mark = agent.mark()
    r = run(
        """
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        pkt = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        tcp = socket.socket()   # ordinary: not reported
        out.update(raw=raw.fileno(), pkt=pkt.fileno(), tcp=tcp.fileno())
        """
    )
    pid = r["pid"]
    raw = agent.wait_for(net(pid, "socket", fd=r["raw"]), since=mark)
    check_common(raw, pid, activity=99, family=2, sock_type=3, protocol=1)
    assert raw["activity_name"] == "Socket"
    assert raw["unmapped"]["ret"] == r["raw"]
    assert raw["unmapped"]["socket_flags"] == ["SOCK_CLOEXEC"]   # python opens with SOCK_CLOEXEC
    assert raw["connection_info"]["protocol_name"] == "icmp"
    pkt = agent.wait_for(net(pid, "socket", fd=r["pkt"]), since=mark)
    check_common(pkt, pid, activity=99, family=17, sock_type=3, protocol=0x0300)
    assert pkt["unmapped"]["ethertype_name"] == "ETH_P_ALL"
    assert agent.find_all(net(pid, "socket", fd=r["tcp"]), since=mark) == []
