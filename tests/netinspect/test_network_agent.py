"""The packet inspector in a real agent, between two network namespaces this module creates.

One agent inspects both ends of a veth pair (``<a>/va`` and ``<b>/vb``,
interfaces in other namespaces) and these tests send real traffic between
the namespaces: a UDP generator of known packet and byte counts, a TCP
client, dig against dnsmasq, nmap, hping3 and crafted malformed packets. The
agent's OCSF output, alerts, status, history (API) and metrics are checked.
GSO, GRO and TSO are off on both veths (netns_topology), so the kernel's
packet counts are the wire's.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import netns_topology
import pytest
from netns_topology import TCP_CLIENT, TCP_SERVER, UDP_SEND, UDP_SINK

from conftest import AgentHandle, Obj, start_agent, stop_agent, wait_until
from sentinel_edge.enforce.kernel import EnforceKernel

pytestmark = pytest.mark.kernel

TAG = f"se6{os.getpid() % 1000}"
NET = 66
PIN_ROOT = f"/sys/fs/bpf/se-test-net-{os.getpid()}"
WINDOW_MS = 1000
SYN_SRC, SYN_ALL, SCAN_PORTS, ICMP = 150, 400, 25, 150
MGMT_SOURCE = f"10.{NET}.0.12"   # in response.never_block: detections from it are never blocked
FLOOD_SOURCE = f"10.{NET}.0.11"  # the source the SYN-flood drop test blocks
SCAN_SOURCE = f"10.{NET}.0.13"   # the scanner (blocked for the scan: the drop is on)
ICMP_SOURCE = f"10.{NET}.0.14"   # the ICMP flooder


@pytest.fixture(scope="module")
def topo() -> Iterator[netns_topology.Topology]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    t = netns_topology.make(TAG, NET)
    try:
        t.add_address_a(FLOOD_SOURCE)
        t.add_address_a(MGMT_SOURCE)
        t.add_address_a(SCAN_SOURCE)
        t.add_address_a(ICMP_SOURCE)
        yield t
    finally:
        netns_topology.remove(t)


@pytest.fixture(scope="module")
def net_agent(topo: netns_topology.Topology, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentHandle]:
    tmp = tmp_path_factory.mktemp("netagent")
    cfg = textwrap.dedent(f"""\
        network:
          interfaces: ["{topo.b}/{topo.vb}", "{topo.a}/{topo.va}"]
          flow_interval_s: 0.5
          flow_idle_s: 30
          window_ms: {WINDOW_MS}
          syn_flood_per_source: {SYN_SRC}
          syn_flood_total: {SYN_ALL}
          port_scan_ports: {SCAN_PORTS}
          icmp_flood: {ICMP}
          drop: true
          drop_ttl_s: 600
        enforce:
          policies: []
          pin_root: {PIN_ROOT}
          fanotify: false
        response:
          never_block: ["{MGMT_SOURCE}/32"]
        """)
    handle = start_agent(tmp, cfg, alerts=True)
    try:
        yield handle
    finally:
        rc = stop_agent(handle)
        try:
            EnforceKernel(pin_root=PIN_ROOT).uninstall()
        finally:
            if rc != 0:
                raise AssertionError(f"agent exited with {rc}:\n{handle.log.read_text()[-3000:]}")
        # stopping detached every hook it had: no filter, no XDP program left on either end
        for ns, dev in ((topo.a, topo.va), (topo.b, topo.vb)):
            for direction in ("ingress", "egress"):
                tc = netns_topology.sh("ip", "netns", "exec", ns, "tc", "filter", "show", "dev", dev, direction)
                assert "ni_tc" not in tc.stdout, (dev, direction, tc.stdout)
            link = netns_topology.sh("ip", "-n", ns, "-d", "link", "show", dev).stdout
            assert "xdp" not in link, link


def _get(agent: AgentHandle, path: str) -> Any:
    code, body = agent.api("GET", path)
    assert code == 200, (path, code, body)
    return body


def _status_net(agent: AgentHandle) -> dict[str, Any]:
    st = _get(agent, "/api/v1/status")
    net = st.get("network")
    assert net is not None, st
    return net  # type: ignore[no-any-return]


def _counters(agent: AgentHandle, hook: str) -> dict[str, int]:
    return _status_net(agent).get("counters", {}).get(hook, {})  # type: ignore[no-any-return]


def _flows(agent: AgentHandle, since: int, pred: Any) -> list[Obj]:
    return agent.find_all(lambda o: o.get("class_uid") == 4001 and _kind(o) == "flow" and pred(o), since)


def _kind(o: Obj) -> str:
    return str(o.get("metadata", {}).get("event_code") or "")


def _latest_flow(agent: AgentHandle, since: int, ifname: str, pred: Any, want: Any, timeout: float = 15) -> Obj:
    """The newest record of a flow on one interface once ``want(record)`` holds."""

    seen: list[Obj] = []

    def found() -> Obj | None:
        agent._read()
        recs = _flows(agent, since, lambda o: _ifname(o) == ifname and pred(o))
        seen[:] = recs
        return recs[-1] if recs and want(recs[-1]) else None

    try:
        return wait_until(found, f"flow record on {ifname}", timeout=timeout)
    except AssertionError as exc:
        others = [(_ifname(o), _ports(o), o.get("traffic")) for o in _flows(agent, since, lambda o: True)][-8:]
        raise AssertionError(f"{exc}; records of this flow: {seen[-3:]}; latest flow records: {others}") from None


def _ifname(o: Obj) -> str:
    for side in ("src_endpoint", "dst_endpoint"):
        name = (o.get(side) or {}).get("interface_name")
        if name:
            return str(name)
    return ""


def _ports(o: Obj) -> tuple[int, int]:
    return int(o["src_endpoint"].get("port", 0)), int(o["dst_endpoint"].get("port", 0))


# ------------------------------------------------------------------------------------- flows




def test_udp_flow_counts_match_the_generator(net_agent: AgentHandle, topo: netns_topology.Topology) -> None:
    """N datagrams of S bytes out, M replies of R bytes back: packets and bytes per direction, on both ends."""
    n, size, m, rsize, cport, sport = 37, 300, 11, 123, 40111, 40222
    mark = net_agent.mark()
    sink = topo.popen(topo.b, [sys.executable, "-c", UDP_SINK, topo.ip_b, str(sport), str(n), str(m), str(rsize)],
                      stdout=subprocess.PIPE)
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == b"ready"
        res = subprocess.run(topo.exec_a(sys.executable, "-c", UDP_SEND, topo.ip_a, str(cport), topo.ip_b,
                                         str(sport), str(n), str(size), str(m)), capture_output=True, timeout=30)
        assert res.returncode == 0, res.stderr
        sender = int(res.stdout.split()[0])
        assert sink.wait(15) == 0
    finally:
        sink.kill()
        sink.wait()
    out_bytes, in_bytes = n * (20 + 8 + size), m * (20 + 8 + rsize)
    # the client's end: local = 10.x.0.1:cport, it initiated
    rec_a = _latest_flow(net_agent, mark, topo.va, lambda o: _ports(o) == (cport, sport),
                         lambda o: o["traffic"].get("packets_in") == m)
    t = rec_a["traffic"]
    assert (t["packets_out"], t["bytes_out"], t["packets_in"], t["bytes_in"]) == (n, out_bytes, m, in_bytes)
    assert rec_a["src_endpoint"]["ip"] == topo.ip_a and rec_a["dst_endpoint"]["ip"] == topo.ip_b
    ci = rec_a["connection_info"]
    assert ci["protocol_num"] == 17 and ci["protocol_name"].lower() == "udp"
    assert ci["community_uid"].startswith("1:") and len(ci["community_uid"]) == 30
    # the server's end sees the same flow: OCSF traffic is by endpoint (out = source -> destination, the
    # source being the initiator), so the figures are the same; the interface view (unmapped.flow) is swapped
    rec_b = _latest_flow(net_agent, mark, topo.vb, lambda o: _ports(o) == (cport, sport),
                         lambda o: o["traffic"].get("packets_in") == m)
    t = rec_b["traffic"]
    assert (t["packets_out"], t["bytes_out"], t["packets_in"], t["bytes_in"]) == (n, out_bytes, m, in_bytes)
    fb = rec_b["unmapped"]["flow"]
    assert (fb["pkts_in"], fb["bytes_in"], fb["pkts_out"], fb["bytes_out"]) == (n, out_bytes, m, in_bytes)
    assert (fb["local_ip"], fb["local_port"], fb["initiator"]) == (topo.ip_b, sport, "remote")
    fa = rec_a["unmapped"]["flow"]
    assert (fa["local_ip"], fa["local_port"], fa["initiator"]) == (topo.ip_a, cport, "local")
    assert rec_b["src_endpoint"]["ip"] == topo.ip_a  # the initiator is the source on both ends
    assert rec_b["connection_info"]["community_uid"] == ci["community_uid"]
    # each end's process from its own socket: the connected sender (its first datagram reported the cookie)
    # and the sink replying with sendto
    assert rec_a["actor"]["process"]["pid"] == sender
    assert rec_b["actor"]["process"]["pid"] == sink.pid
    assert rec_a["activity_id"] in (6, 2) and rec_a["start_time"] <= rec_a["end_time"]





@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_tcp_client_flow_is_attributed_to_its_process(net_agent: AgentHandle, topo: netns_topology.Topology,
                                                      v6: bool) -> None:
    """A Python client in netns a: its flow on va carries its pid and exec_id, from the socket cookie."""
    server_ip, port, nbytes = (topo.ip6_b if v6 else topo.ip_b), 8081 + int(v6), 5000
    mark = net_agent.mark()
    srv = topo.popen(topo.b, [sys.executable, "-c", TCP_SERVER, server_ip, str(port), "1"], stdout=subprocess.PIPE)
    try:
        assert srv.stdout is not None and srv.stdout.readline().strip() == b"ready"
        res = subprocess.run(topo.exec_a(sys.executable, "-c", TCP_CLIENT, server_ip, str(port), str(nbytes)),
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        pid_s, cport_s = res.stdout.split("\n")[0].split()
        assert res.stdout.split("\n")[1] == f"ok {nbytes}"
        assert srv.wait(15) == 0
    finally:
        srv.kill()
        srv.wait()
    pid, cport = int(pid_s), int(cport_s)
    rec = _latest_flow(net_agent, mark, topo.va, lambda o: _ports(o) == (cport, port),
                       lambda o: o.get("activity_id") == 2)
    proc = (rec.get("actor") or {}).get("process") or {}
    if proc.get("pid") != pid:
        cookie = rec["unmapped"]["flow"]["cookie"]
        nets = [(o.get("activity_name"), o.get("actor", {}).get("process", {}).get("pid"),
                 o.get("connection_info", {}).get("uid")) for o in net_agent.objects
                if o.get("class_uid") == 4001 and o.get("metadata", {}).get("event_code") != "flow"
                and o.get("actor", {}).get("process", {}).get("pid") == pid]
        raise AssertionError(f"flow not attributed to {pid}: cookie {cookie}; the client's net events: {nets}; "
                             f"record {rec}")
    assert proc.get("uid"), rec  # exec_id: unique per host and exec
    assert "python" in (proc.get("file", {}).get("name", "") + proc.get("name", "")).lower()
    t = rec["traffic"]
    # every segment is one packet (TSO/GSO/GRO off); the payload plus headers is in the bytes
    assert t["packets_out"] >= 4 and t["packets_in"] >= 3
    hdr = 40 if v6 else 20
    assert t["bytes_out"] >= nbytes + t["packets_out"] * (hdr + 20)
    flags = rec["connection_info"].get("tcp_flags")
    assert flags is not None and flags & 0x02 and flags & 0x01  # SYN and FIN seen
    assert rec["src_endpoint"]["ip"] == str(ipaddress.ip_address(topo.ip6_a if v6 else topo.ip_a))
    # the same flow seen on the server's end has no local process (the server is in netns b, its socket
    # cookie is known too: the accepted socket's owner)
    rec_b = _latest_flow(net_agent, mark, topo.vb, lambda o: _ports(o) == (cport, port),
                         lambda o: o.get("activity_id") == 2)
    assert rec_b["connection_info"]["community_uid"] == rec["connection_info"]["community_uid"]
    assert rec_b["actor"]["process"]["pid"] == srv.pid  # the accepted socket's owner, the server


# ---------------------------------------------------------------------------------------- DNS

@pytest.fixture(scope="module")
def dns_server(topo: netns_topology.Topology, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("dnsmasq")
    proc = netns_topology.start_dnsmasq(topo, tmp, ["--host-record=www.sentinel.test,10.66.0.77",
                                                    "--host-record=mail.sentinel.test,10.66.0.78,fd66::78",
                                                    "--txt-record=txt.sentinel.test,hello"],
                                        ("www.sentinel.test", "10.66.0.77"))
    try:
        yield topo.ip_b
    finally:
        proc.kill()
        proc.wait()


def _dns(agent: AgentHandle, since: int, pred: Any) -> list[Obj]:
    return agent.find_all(lambda o: o.get("class_uid") == 4003 and pred(o), since)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_dig_query_and_response(net_agent: AgentHandle, topo: netns_topology.Topology, dns_server: str,
                                tcp: bool) -> None:
    mark = net_agent.mark()
    cmd = topo.exec_a("dig", f"@{dns_server}", "+time=2", "+tries=1", "mail.sentinel.test", "A")
    if tcp:
        cmd.insert(-2, "+tcp")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate(timeout=20)
    assert p.returncode == 0 and "10.66.0.78" in out, out

    def pair() -> tuple[Obj, Obj] | None:
        net_agent._read()
        recs = _dns(net_agent, mark, lambda o: o.get("query", {}).get("hostname") == "mail.sentinel.test"
                    and _ifname(o) == topo.va)
        q = [o for o in recs if o["activity_id"] == 1]
        r = [o for o in recs if o["activity_id"] == 2]
        return (q[0], r[0]) if q and r else None

    q, r = wait_until(pair, "DNS query and response events", timeout=15)
    for o in (q, r):
        assert o["query"]["type"] == "A" and o["query"]["class"] == "IN"
        assert o["connection_info"]["protocol_num"] == (6 if tcp else 17)
        assert o["dst_endpoint"]["ip"] == dns_server or o["src_endpoint"]["ip"] == dns_server
        assert o["actor"]["process"]["pid"] == p.pid, o  # dig, from its socket cookie (query) / the query (response)
    assert q["src_endpoint"]["ip"] == topo.ip_a and q["dst_endpoint"]["port"] == 53
    assert r["rcode"] == "NoError" and r["rcode_id"] == 0
    answers = r["answers"]
    assert [(a["type"], a["rdata"]) for a in answers] == [("A", "10.66.0.78")]
    assert answers[0]["ttl"] >= 0 and r["query"]["uid"] if "uid" in r["query"] else True
    # the response's id is the query's id
    assert q["query"].get("packet_uid") == r["query"].get("packet_uid") or \
        q.get("unmapped", {}).get("dns", {}).get("id") == r.get("unmapped", {}).get("dns", {}).get("id")


def test_nxdomain_and_tunnelling_like_name_raise_a_dns_alert(net_agent: AgentHandle,
                                                              topo: netns_topology.Topology,
                                                              dns_server: str) -> None:
    mark = net_agent.mark()
    amark = net_agent.alert_mark()
    label = "x9f3kq7zt2mb8wq1vn4hc6pd0ls5ry7eg2ua9jf3kx8td1mq6zb4wv7nc2hp5"  # 61 random-looking characters
    name = f"{label}.sentinel.test"
    res = subprocess.run(topo.exec_a("dig", f"@{dns_server}", "+time=2", "+tries=1", name, "TXT"),
                         capture_output=True, text=True, timeout=20)
    assert "NXDOMAIN" in res.stdout, res.stdout
    r = wait_until(lambda: (net_agent._read(), next(iter(_dns(net_agent, mark, lambda o: o["activity_id"] == 2
                   and o["query"]["hostname"] == name)), None))[1], "NXDOMAIN response", timeout=15)
    assert r["rcode"] == "NXDomain" and r["rcode_id"] == 3 and r.get("answers", []) == []
    a = net_agent.wait_alert("se.command_and_control.dns_tunnel_long_label", since=amark, timeout=15)
    assert name in json.dumps(a)
    # a normal name right after: no alert for it
    amark2 = net_agent.alert_mark()
    subprocess.run(topo.exec_a("dig", f"@{dns_server}", "+time=2", "+tries=1", "www.sentinel.test"),
                   capture_output=True, timeout=20, check=True)
    time.sleep(1.0)
    net_agent.assert_no_alert("se.command_and_control.dns_tunnel_long_label", since=amark2, settle=0.5)


# ---------------------------------------------------------------------- detections and drops

def _netdet(agent: AgentHandle, since: int, name: str) -> list[Obj]:
    return agent.find_all(lambda o: o.get("class_uid") == 4001 and _kind(o) == "netdet"
                          and o.get("activity_name", "").lower().replace(" ", "_").startswith(name), since)


def test_nmap_port_scan_names_the_scanner(net_agent: AgentHandle, topo: netns_topology.Topology) -> None:
    mark, amark = net_agent.mark(), net_agent.alert_mark()
    # 100 ports: below the SYN-flood threshold, far above the scan threshold
    res = subprocess.run(topo.exec_a("nmap", "-n", "-Pn", "-sS", "-S", SCAN_SOURCE, "-e", topo.va, "-p", "1-100",
                                     "--max-retries", "0", "--host-timeout", "20s", topo.ip_b),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "Nmap done: 1 IP address (1 host up)" in res.stdout and "closed tcp ports" in res.stdout, res.stdout
    ev = wait_until(lambda: (net_agent._read(), next(iter(_netdet(net_agent, mark, "port_scan")), None))[1],
                    "port-scan event", timeout=15)
    assert ev["src_endpoint"]["ip"] == SCAN_SOURCE
    assert ev["dst_endpoint"]["ip"] == topo.ip_b and _ifname(ev) == topo.vb
    assert ev["count"] == SCAN_PORTS
    assert not _netdet(net_agent, mark, "syn_flood")
    a = net_agent.wait_alert("se.discovery.net_port_scan", since=amark, timeout=15)
    assert SCAN_SOURCE in json.dumps(a)
    # the drop is on: the scanner is blocked (response blocks), and a second scan sees nothing at all
    resp = ev["unmapped"]["response"]
    assert resp["ok"] is True and resp["address"] == SCAN_SOURCE, resp
    res = subprocess.run(topo.exec_a("nmap", "-n", "-Pn", "-sS", "-S", SCAN_SOURCE, "-e", topo.va, "-p", "1-20",
                                     "--max-retries", "0", "--host-timeout", "10s", topo.ip_b),
                         capture_output=True, text=True, timeout=60)
    assert len(re.findall(r"^\d+/tcp\s+filtered", res.stdout, re.M)) == 20 and "closed" not in res.stdout, res.stdout


def _syn_replies(topo: netns_topology.Topology, source: str, port: int, count: int) -> int:
    """hping3: ``count`` SYNs from ``source`` (an address of netns a), replies received (RST or SYN-ACK)."""
    res = subprocess.run(topo.exec_a("hping3", "-S", "-p", str(port), "-a", source, "-c", str(count), "-i", "u2000",
                                     topo.ip_b), capture_output=True, text=True, timeout=60)
    for line in (res.stdout + res.stderr).splitlines():
        if "packets received" in line:  # "N packets transmitted, M packets received, ..."
            return int(line.split(",")[1].split()[0])
    raise AssertionError(f"hping3 said: {res.stdout} {res.stderr}")


def test_syn_flood_raises_an_event_and_the_drop_stops_replies(net_agent: AgentHandle,
                                                              topo: netns_topology.Topology) -> None:
    mark, amark = net_agent.mark(), net_agent.alert_mark()
    before = _syn_replies(topo, FLOOD_SOURCE, 7, 5)
    assert before > 0  # RSTs from the closed port (a loaded host may lose one: what counts is none after the drop)
    burst = SYN_SRC * 4  # 1.2 s: the threshold is crossed after 0.3 s, the block must land before the end
    got = _syn_replies(topo, FLOOD_SOURCE, 7, burst)
    ev = wait_until(lambda: (net_agent._read(), next(iter(_netdet(net_agent, mark, "syn_flood")), None))[1],
                    "SYN-flood event", timeout=15)
    assert ev["src_endpoint"]["ip"] == FLOOD_SOURCE and ev["count"] == SYN_SRC
    resp = ev["unmapped"]["response"]
    assert resp["ok"] is True and resp["address"] == FLOOD_SOURCE, resp
    net_agent.wait_alert("se.impact.net_syn_flood", since=amark, timeout=15)
    assert got < burst  # the drop started during the burst
    after = _syn_replies(topo, FLOOD_SOURCE, 7, 5)
    assert after == 0  # dropped in XDP by the enforcement entry program
    assert _syn_replies(topo, topo.ip_a, 7, 5) > 0  # another source of the same namespace still gets replies
    c = _counters(net_agent, "xdp")
    assert c.get("packets", 0) > burst
    # the drops are counted by the enforcement entry program, and shown in /metrics
    metrics = str(_get(net_agent, "/metrics"))
    m = re.search(r'^sentinel_edge_enforce_kernel_total\{counter="drops"\} (\d+)', metrics, re.M)
    assert m is not None and int(float(m.group(1))) >= 5, metrics[-2000:]


def test_flood_from_a_never_block_source_is_reported_not_blocked(net_agent: AgentHandle,
                                                                 topo: netns_topology.Topology) -> None:
    mark = net_agent.mark()
    _syn_replies(topo, MGMT_SOURCE, 9, SYN_SRC + 20)
    ev = wait_until(lambda: (net_agent._read(), next(iter(
        n for n in _netdet(net_agent, mark, "syn_flood") if n["src_endpoint"]["ip"] == MGMT_SOURCE), None))[1],
        "SYN-flood event of the management source", timeout=15)
    resp = ev["unmapped"]["response"]
    assert resp["ok"] is False and "management network" in resp["error"], resp
    assert _syn_replies(topo, MGMT_SOURCE, 9, 5) > 0  # not blocked (a blocked source gets none)


def test_spoofed_syn_flood_raises_the_aggregate_event_and_blocks_no_one(net_agent: AgentHandle,
                                                                        topo: netns_topology.Topology) -> None:
    """Random sources (hping3 --rand-source; b has no route to them, its replies go nowhere): the aggregate
    detection fires, no per-source one, and nothing is blocked (the sources are forged)."""
    mark, amark = net_agent.mark(), net_agent.alert_mark()
    blocks_before = {b["address"] for b in _get(net_agent, "/api/v1/network")["blocks_in_force"]}
    subprocess.run(topo.exec_a("hping3", "-S", "-p", "22", "--rand-source", "-c", "1000", "-i", "u500", topo.ip_b),
                   capture_output=True, timeout=60)
    ev = wait_until(lambda: (net_agent._read(), next(iter(_netdet(net_agent, mark, "aggregate_syn_flood")),
                                                     None))[1], "aggregate SYN-flood event", timeout=15)
    assert ev["count"] == SYN_ALL and ev["dst_endpoint"]["ip"] == topo.ip_b and ev["dst_endpoint"]["port"] == 22
    assert not (ev.get("unmapped") or {}).get("response")
    net_agent.wait_alert("se.impact.net_syn_flood_aggregate", since=amark, timeout=15)
    assert not _netdet(net_agent, mark, "syn_flood")  # no single forged source crossed its threshold
    blocks_after = {b["address"] for b in _get(net_agent, "/api/v1/network")["blocks_in_force"]}
    assert blocks_after == blocks_before


def test_icmp_flood_is_detected_and_its_source_dropped(net_agent: AgentHandle,
                                                       topo: netns_topology.Topology) -> None:
    mark = net_agent.mark()

    def pings(count: int, interval: str) -> int:
        res = subprocess.run(topo.exec_a("hping3", "--icmp", "-a", ICMP_SOURCE, "-c", str(count), "-i", interval,
                                         topo.ip_b), capture_output=True, text=True, timeout=60)
        line = next(ln for ln in (res.stdout + res.stderr).splitlines() if "packets received" in ln)
        return int(line.split(",")[1].split()[0])

    assert pings(3, "u10000") > 0
    pings(ICMP + 50, "u1000")
    ev = wait_until(lambda: (net_agent._read(), next(iter(_netdet(net_agent, mark, "icmp_flood")), None))[1],
                    "ICMP-flood event", timeout=15)
    assert ev["src_endpoint"]["ip"] == ICMP_SOURCE and ev["count"] == ICMP
    assert ev["connection_info"]["protocol_num"] == 1
    assert ev["unmapped"]["response"]["ok"] is True
    assert pings(3, "u10000") == 0


# --------------------------------------------------------------------------- malformed packets

MALFORMED = r"""
import sys
from scapy.all import Ether, IP, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, TCP, UDP, Raw, sendp, conf
conf.verb = 0
dev, src, dst, dmac = sys.argv[1:5]
good = bytes(Ether(dst=dmac) / IP(src=src, dst=dst) / UDP(sport=40999, dport=40998) / Raw(b"z" * 10))
pkts = [
    bytes(Ether(dst=dmac, type=0x8100)) + b"\x00\x01",                  # truncated VLAN tag
    bytes(Ether(dst=dmac) / IP(src=src, dst=dst))[:14 + 12],             # truncated IPv4
    bytes(Ether(dst=dmac) / IP(src=src, dst=dst, ihl=3) / UDP()),        # IHL below 5
    bytes(Ether(dst=dmac) / IP(src=src, dst=dst, ihl=15) / UDP()),       # options past the end
    bytes(Ether(dst=dmac) / IP(src=src, dst=dst, proto=6))[:14 + 20] + b"\x00" * 6,  # truncated TCP
    bytes(Ether(dst=dmac) / IPv6(src="fd66::1", dst="fd66::2", nh=60)
          / b"".join(bytes(IPv6ExtHdrDestOpt(nh=60)) for _ in range(12))),  # an extension header chain too long
    good,
]
for p in pkts:
    sendp(p, iface=dev)
print("sent", len(pkts))
"""


def test_malformed_packets_are_counted_and_the_next_good_one_parsed(net_agent: AgentHandle,
                                                                     topo: netns_topology.Topology) -> None:
    mac_b = json.loads(subprocess.run(["ip", "-n", topo.b, "-j", "link", "show", topo.vb], capture_output=True,
                                      text=True, check=True).stdout)[0]["address"]
    before = _counters(net_agent, "xdp")
    mark = net_agent.mark()
    res = subprocess.run(topo.exec_a(sys.executable, "-c", MALFORMED, topo.va, topo.ip_a, topo.ip_b, mac_b),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr

    def grew() -> dict[str, int] | None:
        c = _counters(net_agent, "xdp")
        want = {"bad_l2": 1, "bad_ipv4": 1, "bad_ihl": 2, "bad_l4": 1, "ipv6_ext_limit": 1}
        ok = all(c.get(k, 0) - before.get(k, 0) >= v for k, v in want.items())
        return c if ok else None

    after = wait_until(grew, "parse-failure counters", timeout=10)
    for k, v in {"bad_l2": 1, "bad_ipv4": 1, "bad_ihl": 2, "bad_l4": 1, "ipv6_ext_limit": 1}.items():
        assert after.get(k, 0) - before.get(k, 0) == v, (k, v, before, after)
    rec = _latest_flow(net_agent, mark, topo.vb, lambda o: _ports(o) == (40999, 40998), lambda o: True)
    fl = rec["unmapped"]["flow"]  # received on vb: in, from the source (the initiator) to vb's side
    assert (fl["pkts_in"], fl["bytes_in"], fl["pkts_out"]) == (1, 20 + 8 + 10, 0)
    assert rec["traffic"]["packets_out"] == 1 and rec["src_endpoint"]["ip"] == topo.ip_a
    metrics = _get(net_agent, "/metrics")
    assert 'sentinel_edge_net_parse_failures_total{hook="xdp",reason="bad_ihl"}' in str(metrics)


# ------------------------------------------------------------------------- status, history, API

def test_interfaces_status_and_history(net_agent: AgentHandle, topo: netns_topology.Topology) -> None:
    net = _status_net(net_agent)
    assert set(net["interfaces"]) == {f"{topo.b}/{topo.vb}", f"{topo.a}/{topo.va}"}
    assert net["problems"] == {}
    for spec, ns, dev, index in ((f"{topo.b}/{topo.vb}", topo.b, topo.vb, topo.ib),
                                 (f"{topo.a}/{topo.va}", topo.a, topo.va, topo.ia)):
        i = net["interfaces"][spec]
        assert (i["name"], i["netns"], i["ifindex"]) == (dev, ns, index)
        assert sorted(i["hooks"]) == ["tc_egress", "tc_ingress", "xdp"]
    # the status command shows the inspector too
    wait_until(lambda: net_agent.status().get("network", {}).get("interfaces"), "status file with the inspector")
    out = subprocess.run([sys.executable, "-m", "sentinel_edge.cli", "status", "--status-file",
                          str(net_agent.status_file)], capture_output=True, text=True, timeout=30).stdout
    assert f"network inspector: {topo.b}/{topo.vb} (xdp+tc_ingress+tc_egress)" in out, out
    assert re.search(r"^  xdp +packets +\d+, parse failures \d+, ring dropped 0$", out, re.M), out
    view = _get(net_agent, "/api/v1/network")
    assert view["enabled"] is True and view["settings"]["port_scan_ports"] == SCAN_PORTS
    assert set(view["interfaces"]) == set(net["interfaces"])
    # the drop tests above blocked the scanner and the flooder, never the management source
    blocked = {b["address"]: b for b in view["blocks_in_force"]}
    assert {SCAN_SOURCE, FLOOD_SOURCE} <= set(blocked) and MGMT_SOURCE not in blocked
    assert 0 < blocked[SCAN_SOURCE]["expires_in_s"] <= 600
    assert blocked[SCAN_SOURCE]["reason"].startswith("network inspector: port_scan")
    assert view["detections"]["port_scan"] >= 1 and view["blocks"] >= 2
    page = _get(net_agent, "/api/v1/events?kind=flow&limit=5")
    assert page["items"] and all(i["class_uid"] == 4001 for i in page["items"])
    page = _get(net_agent, "/api/v1/events?class_uid=4003&limit=5")
    assert all(i["class_uid"] == 4003 for i in page["items"])


def test_interfaces_attach_and_detach_at_run_time(net_agent: AgentHandle, topo: netns_topology.Topology,
                                                  tmp_path: Path) -> None:
    cfg_path = Path(net_agent.log).parent / "config.yaml"
    text = cfg_path.read_text()
    keep = f'interfaces: ["{topo.b}/{topo.vb}", "{topo.a}/{topo.va}"]'
    assert keep in text
    cfg_path.write_text(text.replace(keep, f'interfaces: ["{topo.b}/{topo.vb}", "{topo.a}/nosuch0"]'))
    try:
        net = wait_until(lambda: ((n := _status_net(net_agent)) and f"{topo.a}/nosuch0" in n["problems"] and n) or None,
                         "interfaces re-read", timeout=15)
        assert set(net["interfaces"]) == {f"{topo.b}/{topo.vb}"}
        tc = subprocess.run(["ip", "netns", "exec", topo.a, "tc", "filter", "show", "dev", topo.va, "egress"],
                            capture_output=True, text=True)
        assert "ni_tc" not in tc.stdout
    finally:
        cfg_path.write_text(text)
    wait_until(lambda: ((n := _status_net(net_agent)) and set(n["interfaces"]) == {
        f"{topo.b}/{topo.vb}", f"{topo.a}/{topo.va}"} and n) or None, "interfaces back", timeout=15)
    tc = subprocess.run(["ip", "netns", "exec", topo.a, "tc", "filter", "show", "dev", topo.va, "egress"],
                        capture_output=True, text=True)
    assert "ni_tc" in tc.stdout
