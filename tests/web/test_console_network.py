"""The console's Network page in a real headless Chromium, against a real agent inspecting real traffic.

The module makes two network namespaces joined by a veth pair (netns_topology, net 10.67.0.0/24), starts
dnsmasq in one of them and an agent whose packet inspector watches both veth ends (plus one interface that
does not exist, which must show up as a problem). Real traffic crosses the pair: a UDP exchange of known
packet and byte counts, a TCP connection, dig queries (one plain, one answered with markup in a TXT
record, one whose name is a ``<script>`` element, one with control characters) and a port scan from a
second address, which the agent blocks. The page must show the inspector's settings, the interfaces, the
kernel counters grown by that traffic, the flow and DNS rows with their addresses, ports, packet counts,
names, answers and processes, the detection, the block and the network alert, and every hostile string as
inert, visible text. Screenshots go to ``$SENTINEL_EDGE_ARTIFACTS/console``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from console_helpers import XSS_IMG, XSS_SCRIPT, Api, artifacts_dir, chromium, console_page, login, shot
from playwright.sync_api import Browser, Locator, Page, Route, expect

from conftest import AgentHandle, Obj, start_agent, stop_agent, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "netinspect"))
import netns_topology  # tests/netinspect: the two-namespace helper
from netns_topology import TCP_CLIENT, TCP_SERVER, UDP_SEND, UDP_SINK

from sentinel_edge.enforce.kernel import EnforceKernel

pytestmark = pytest.mark.kernel

TAG = f"sw{os.getpid() % 1000}"
NET = 67
PIN_ROOT = f"/sys/fs/bpf/se-test-console-net-{os.getpid()}"
SCANNER = f"10.{NET}.0.11"  # a second address of netns a: the port scan comes from it and gets blocked
WWW = f"10.{NET}.0.77"
SCAN_PORTS = 20
DROP_TTL_S = 600
MISSING_IF = "se-nosuch0"
WAIT_MS = 20_000  # the page refreshes itself every 5 s

HOSTILE_SCRIPT = f"{XSS_SCRIPT}.sentinel.test"  # a query name that is a <script> element
# BEL and an ANSI colour escape in a label, written with DNS presentation-format decimal escapes: dig sends
# the raw bytes, and the name comes back from the parser in the same escaped form (visible text)
HOSTILE_CTL = r"ctl\007\027[31mred.sentinel.test"


@dataclass
class NetConsole:
    handle: AgentHandle
    api: Api
    url: str
    token: str
    topo: netns_topology.Topology
    dns: str  # dnsmasq's address
    dns_pid: int


@pytest.fixture(scope="module")
def topo() -> Iterator[netns_topology.Topology]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    for tool in ("dnsmasq", "dig", "ethtool"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    t = netns_topology.make(TAG, NET)
    try:
        t.add_address_a(SCANNER)
        yield t
    finally:
        netns_topology.remove(t)


@pytest.fixture(scope="module")
def dns_server(topo: netns_topology.Topology,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """dnsmasq in netns b: (its address, its pid)."""
    tmp = tmp_path_factory.mktemp("dnsmasq")
    proc = netns_topology.start_dnsmasq(topo, tmp, [f"--host-record=www.sentinel.test,{WWW}",
                                                    f"--txt-record=xss.sentinel.test,{XSS_IMG}"],
                                        ("www.sentinel.test", WWW))
    try:
        assert Path(f"/proc/{proc.pid}/comm").read_text().strip() == "dnsmasq"  # ip netns exec runs it in place
        yield topo.ip_b, proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def net_console(topo: netns_topology.Topology, dns_server: tuple[str, int],
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetConsole]:
    tmp = tmp_path_factory.mktemp("console-net")
    cfg = textwrap.dedent(f"""\
        network:
          interfaces: ["{topo.b}/{topo.vb}", "{topo.a}/{topo.va}", "{topo.a}/{MISSING_IF}"]
          flow_interval_s: 0.5
          window_ms: 1000
          syn_flood_per_source: 5000
          syn_flood_total: 100000
          port_scan_ports: {SCAN_PORTS}
          icmp_flood: 5000
          drop: true
          drop_ttl_s: {DROP_TTL_S}
        enforce:
          policies: []
          pin_root: {PIN_ROOT}
          fanotify: false
        """)
    handle = start_agent(tmp, cfg, alerts=True)
    try:
        url = handle.api_url
        token = handle.admin_token
        yield NetConsole(handle, Api(url, token), url, token, topo, *dns_server)
    finally:
        rc = stop_agent(handle, read_output=False)
        shutil.copy(handle.log, artifacts_dir() / "agent-network.log")
        try:
            EnforceKernel(pin_root=PIN_ROOT).uninstall()
        finally:
            assert rc == 0, f"agent exited with {rc}:\n{handle.log.read_text()[-3000:]}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian chromium is not installed")
    with chromium() as b:
        yield b


# -- traffic ------------------------------------------------------------------------------------------------

def dig(topo: netns_topology.Topology, server: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(topo.exec_a("dig", f"@{server}", "+time=2", "+tries=1", *args),
                          capture_output=True, text=True, timeout=20)






SCAN = r"""
import socket, sys
src, dst, first, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for port in range(first, first + count):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(0.3)
    try:
        s.connect((dst, port))
    except OSError:
        pass
    s.close()
"""


@dataclass
class Flow:
    pid: int
    sport: int
    dport: int


def udp_exchange(topo: netns_topology.Topology, n: int, size: int, m: int, rsize: int, sport: int,
                 dport: int) -> Flow:
    """``n`` datagrams of ``size`` bytes from a to b, ``m`` replies of ``rsize`` bytes back."""
    sink = topo.popen(topo.b, [sys.executable, "-c", UDP_SINK, topo.ip_b, str(dport), str(n), str(m), str(rsize)],
                      stdout=subprocess.PIPE)
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == b"ready"
        res = subprocess.run(topo.exec_a(sys.executable, "-c", UDP_SEND, topo.ip_a, str(sport), topo.ip_b,
                                         str(dport), str(n), str(size), str(m)),
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        assert sink.wait(15) == 0
    finally:
        sink.kill()
        sink.wait()
    return Flow(int(res.stdout.split()[0]), sport, dport)


def tcp_exchange(topo: netns_topology.Topology, dport: int, nbytes: int) -> Flow:
    srv = topo.popen(topo.b, [sys.executable, "-c", TCP_SERVER, topo.ip_b, str(dport)], stdout=subprocess.PIPE)
    try:
        assert srv.stdout is not None and srv.stdout.readline().strip() == b"ready"
        res = subprocess.run(topo.exec_a(sys.executable, "-c", TCP_CLIENT, topo.ip_b, str(dport), str(nbytes)),
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        first, reply = res.stdout.splitlines()[:2]
        assert reply == f"ok {nbytes}"
        assert srv.wait(15) == 0
    finally:
        srv.kill()
        srv.wait()
    pid, sport = (int(x) for x in first.split())
    return Flow(pid, sport, dport)


# -- what the API holds (the page must show the same) ---------------------------------------------------------

def net_view(c: NetConsole) -> Obj:
    got: Obj = c.api.get("/network")
    return got


def ifname(o: Obj) -> str:
    return str((o.get("src_endpoint") or {}).get("interface_name") or
               (o.get("dst_endpoint") or {}).get("interface_name") or "")


def newest_flow(c: NetConsole, iface: str, sport: int, dport: int, want: Callable[[Obj], bool]) -> Obj:
    """The newest stored flow record of (iface, sport -> dport) once ``want`` holds for it."""
    def find() -> Obj | None:
        for e in c.api.get("/events?kind=flow&limit=50")["items"]:
            o = e["obj"]
            if ifname(o) == iface and (o["src_endpoint"].get("port"), o["dst_endpoint"].get("port")) == (sport, dport):
                return o if want(o) else None
        return None

    found: Obj = wait_until(find, f"flow {sport}->{dport} on {iface} in the history", timeout=20)
    return found


def stored_dns(c: NetConsole, name: str, activity: int, iface: str) -> Obj:
    def find() -> Obj | None:
        for e in c.api.get("/events?class_uid=4003&limit=50")["items"]:
            o = e["obj"]
            if o.get("activity_id") == activity and o.get("query", {}).get("hostname") == name and ifname(o) == iface:
                return o
        return None

    found: Obj = wait_until(find, f"DNS {activity} {name!r} on {iface} in the history", timeout=20)
    return found


# -- the page -------------------------------------------------------------------------------------------------

def no_script_ran(page: Page) -> None:
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate("Array.from(document.scripts).map(s => s.getAttribute('src'))") == ["/static/app.js"]
    assert page.evaluate("document.querySelectorAll('#app script, #app img, #app iframe, #app object').length") == 0


def counter(page: Page, hook: str, name: str) -> int:
    cell = page.locator(f'[data-testid="net-counter-row"][data-counter="{name}"] '
                        f'[data-testid="net-counter"][data-hook="{hook}"]')
    return int(cell.get_attribute("data-value") or "-1")


def flow_row(page: Page, iface: str, src: str, dst: str) -> Locator:
    return page.locator(f'[data-testid="net-flow-row"][data-interface="{iface}"][data-src="{src}"][data-dst="{dst}"]')


def dns_row(page: Page, activity: str, name: str, iface: str) -> Locator:
    rows = page.locator(f'[data-testid="net-dns-row"][data-activity="{activity}"]')
    return rows.filter(has=page.get_by_test_id("dns-interface").filter(has_text=re.compile(f"^{re.escape(iface)}$"))
                       ).filter(has=page.get_by_test_id("dns-name").filter(
                           has_text=re.compile(f"^{re.escape(name)}$")))


def reload(page: Page) -> None:
    """Refresh the page's data now and wait for the new content."""
    body = page.get_by_test_id("network")
    before = int(body.get_attribute("data-loads") or "0")
    page.get_by_test_id("network-refresh").click()
    wait_until(lambda: int(body.get_attribute("data-loads") or "0") > before, "the page's data refreshed", timeout=15)


def kv(page: Page, testid: str, key: str) -> Locator:
    return page.locator(f'[data-testid="{testid}"] [data-testid="kv-row"][data-key="{key}"] td')


def expect_proc(cell: Locator, name_part: str, pid: int) -> None:
    expect(cell).to_have_attribute("data-pid", str(pid), timeout=WAIT_MS)
    expect(cell).to_contain_text(f"[{pid}]")
    assert name_part in cell.inner_text().lower(), cell.inner_text()


def expect_proc_of(cell: Locator, o: Obj) -> None:
    """The process cell shows the stored event's process (name [pid]), or a dash when it was not attributed."""
    p = (o.get("actor") or {}).get("process") or {}
    if p.get("pid") is None:
        expect(cell).to_have_text("—")
        expect(cell).not_to_have_attribute("data-pid", re.compile(".*"))
    else:
        expect(cell).to_have_attribute("data-pid", str(p["pid"]))
        expect(cell).to_have_text(f"{p.get('name') or p.get('file', {}).get('path', '')} [{p['pid']}]")


# -- tests ----------------------------------------------------------------------------------------------------


def test_network_page_shows_interfaces_counters_flows_dns_detections_and_blocks(net_console: NetConsole,
                                                                               browser: Browser) -> None:
    c, topo = net_console, net_console.topo
    before = net_view(c)
    assert before["enabled"] is True, before
    assert set(before["interfaces"]) == {f"{topo.b}/{topo.vb}", f"{topo.a}/{topo.va}"}, before
    assert list(before["problems"]) == [f"{topo.a}/{MISSING_IF}"], before
    c0 = before["counters"]

    # real traffic: UDP with known counts, a TCP connection, a plain DNS query (the port scan comes later: its
    # flows would push these out of the page's recent records)
    n, size, m, rsize = 23, 200, 7, 100
    udp = udp_exchange(topo, n, size, m, rsize, 41111, 41222)
    tcp = tcp_exchange(topo, 8181, 3000)
    digp = subprocess.Popen(topo.exec_a("dig", f"@{c.dns}", "+time=2", "+tries=1", "www.sentinel.test", "A"),
                            stdout=subprocess.PIPE, text=True)
    out, _ = digp.communicate(timeout=20)
    assert digp.returncode == 0 and WWW in out, out
    # what the history and the inspector hold once the exports have run
    udp_a = newest_flow(c, topo.va, udp.sport, udp.dport,
                        lambda o: (o["traffic"].get("packets_out"), o["traffic"].get("packets_in")) == (n, m))
    assert (udp_a["traffic"]["bytes_out"], udp_a["traffic"]["bytes_in"]) == (n * (28 + size), m * (28 + rsize))
    # the server's end of the same flow (same initiator; OCSF traffic counts from the source's side)
    udp_b = newest_flow(c, topo.vb, udp.sport, udp.dport,
                        lambda o: sorted((o["traffic"].get("packets_in"), o["traffic"].get("packets_out"))) == [m, n])
    tcp_a = newest_flow(c, topo.va, tcp.sport, tcp.dport, lambda o: o.get("activity_id") == 2)
    assert tcp_a["traffic"]["bytes_out"] >= 3000 + 40 * tcp_a["traffic"]["packets_out"]
    q = stored_dns(c, "www.sentinel.test", 1, topo.va)
    r = stored_dns(c, "www.sentinel.test", 2, topo.va)
    assert [(a["type"], a["rdata"]) for a in r["answers"]] == [("A", WWW)]
    with console_page(browser) as (page, watch):
        login(page, c.url, c.token)
        page.get_by_test_id("nav-network").click()
        expect(page).to_have_url(re.compile(r"#/network$"))
        expect(page.get_by_test_id("page-title")).to_have_text("Network")
        expect(page.get_by_test_id("nav-network")).to_have_class(re.compile(r"\bactive\b"))

        # enabled, settings
        expect(page.get_by_test_id("card-net-enabled-value")).to_have_text("on")
        expect(page.get_by_test_id("net-disabled")).to_have_count(0)
        settings = before["settings"]
        assert (settings["port_scan_ports"], settings["drop"], settings["drop_ttl_s"]) == (SCAN_PORTS, True, DROP_TTL_S)
        for key, want in (("port_scan_ports", str(SCAN_PORTS)), ("syn_flood_per_source", "5,000"),
                          ("syn_flood_total", "100,000"), ("icmp_flood", "5,000"), ("window_ms", "1,000"),
                          ("drop", "true"), ("drop_ttl_s", "600"), ("flows", "true"), ("dns", "true"),
                          ("xdp", "true"), ("tc", "true"), ("flow_interval_s", "0.5")):
            expect(kv(page, "net-settings", key)).to_have_text(want)

        # interfaces: both veth ends attached (in their namespaces), the missing one with its reason
        rows = page.get_by_test_id("net-if-row")
        expect(rows).to_have_count(3)
        for ns, dev in ((topo.a, topo.va), (topo.b, topo.vb)):
            row = page.locator(f'[data-testid="net-if-row"][data-spec="{ns}/{dev}"]')
            expect(row).to_have_attribute("data-state", "attached")
            expect(row.get_by_test_id("net-if-name")).to_have_text(dev)
            expect(row.get_by_test_id("net-if-netns")).to_have_text(ns)
            expect(row.get_by_test_id("net-if-hooks")).to_have_text("xdp, tc ingress + egress")
            expect(row.get_by_test_id("net-if-state")).to_have_text("attached")
        bad = page.locator(f'[data-testid="net-if-row"][data-spec="{topo.a}/{MISSING_IF}"]')
        expect(bad).to_have_attribute("data-state", "problem")
        expect(bad.get_by_test_id("net-if-problem")).to_have_text(before["problems"][f"{topo.a}/{MISSING_IF}"])
        assert MISSING_IF in before["problems"][f"{topo.a}/{MISSING_IF}"]
        expect(page.get_by_test_id("card-net-interfaces-value")).to_have_text("2")

        # kernel counters per hook: grown by at least what was sent (both ends are inspected)
        for hook in ("xdp", "tc_ingress", "tc_egress"):
            expect(page.locator(f'[data-testid="net-counter"][data-hook="{hook}"]').first).to_be_attached()
            for name in ("packets", "bytes", "bad_ihl", "ring_dropped", "flow_new", "dns"):
                assert counter(page, hook, name) >= c0[hook].get(name, 0), (hook, name)
        # UDP: n out of va and into vb, m out of vb and into va
        assert counter(page, "tc_egress", "packets") - c0["tc_egress"]["packets"] >= n + m
        assert counter(page, "tc_ingress", "packets") - c0["tc_ingress"]["packets"] >= n + m
        assert counter(page, "tc_ingress", "bytes") - c0["tc_ingress"]["bytes"] >= n * size + m * rsize
        assert counter(page, "xdp", "packets") - c0["xdp"]["packets"] >= n + m
        assert counter(page, "tc_egress", "flow_new") - c0["tc_egress"].get("flow_new", 0) >= 2
        assert counter(page, "tc_ingress", "dns") + counter(page, "tc_egress", "dns") \
            - c0["tc_ingress"].get("dns", 0) - c0["tc_egress"].get("dns", 0) >= 4  # query and answer, both ends
        # the page's numbers are the API's of the same moment (no traffic now: they hold still)
        now = net_view(c)["counters"]
        reload(page)
        for hook in ("xdp", "tc_ingress", "tc_egress"):
            assert counter(page, hook, "packets") >= now[hook]["packets"]
            assert counter(page, hook, "bad_ihl") == now[hook].get("bad_ihl", 0)
        expect(page.get_by_test_id("card-net-failures-value")).to_have_text(re.compile(r"^\d[\d,]*$"))
        shot(page, "40-network")

        # the UDP flow from both ends: addresses, ports, protocol, packets and bytes per direction, process
        src, dst = f"{topo.ip_a}:{udp.sport}", f"{topo.ip_b}:{udp.dport}"
        ra = flow_row(page, topo.va, src, dst)
        expect(ra).to_have_count(1, timeout=WAIT_MS)
        expect(ra.get_by_test_id("flow-interface")).to_have_text(topo.va)
        expect(ra.get_by_test_id("flow-src")).to_have_text(src)
        expect(ra.get_by_test_id("flow-dst")).to_have_text(dst)
        expect(ra.get_by_test_id("flow-proto")).to_have_text("UDP")
        expect(ra.get_by_test_id("flow-packets-out")).to_have_text(str(n))
        expect(ra.get_by_test_id("flow-packets-in")).to_have_text(str(m))
        expect(ra.get_by_test_id("flow-bytes-out")).to_have_text(f"{n * (28 + size):,}")
        expect(ra.get_by_test_id("flow-bytes-in")).to_have_text(f"{m * (28 + rsize):,}")
        cid = udp_a["connection_info"]["community_uid"]
        assert cid.startswith("1:")
        expect(ra.get_by_test_id("flow-community-id")).to_have_text(cid)
        expect_proc_of(ra.get_by_test_id("flow-process"), udp_a)
        assert (udp_a.get("actor") or {}).get("process", {}).get("pid") in (None, udp.pid)
        rb = flow_row(page, topo.vb, src, dst)
        for key in ("packets_in", "packets_out", "bytes_in", "bytes_out"):
            expect(rb.get_by_test_id(f"flow-{key.replace('_', '-')}")).to_have_text(f"{udp_b['traffic'][key]:,}")
        expect(rb.get_by_test_id("flow-community-id")).to_have_text(udp_b["connection_info"]["community_uid"])
        assert udp_b["connection_info"]["community_uid"] == cid

        # the TCP flow, closed, attributed to the client
        rt = flow_row(page, topo.va, f"{topo.ip_a}:{tcp.sport}", f"{topo.ip_b}:{tcp.dport}")
        expect(rt).to_have_count(1, timeout=WAIT_MS)
        expect(rt.get_by_test_id("flow-proto")).to_have_text("TCP")
        expect(rt.get_by_test_id("flow-state")).to_have_text("closed")
        t = tcp_a["traffic"]
        for key in ("packets_in", "packets_out", "bytes_in", "bytes_out"):
            expect(rt.get_by_test_id(f"flow-{key.replace('_', '-')}")).to_have_text(f"{t[key]:,}")
        assert t["packets_out"] >= 4 and t["packets_in"] >= 3
        expect_proc_of(rt.get_by_test_id("flow-process"), tcp_a)
        assert (tcp_a.get("actor") or {}).get("process", {}).get("pid") in (None, tcp.pid)
        expect(rt.get_by_test_id("flow-community-id")).to_have_text(tcp_a["connection_info"]["community_uid"])

        # the DNS query and its response on the client's end: name, type, code, answer, process (dig)
        qrow = dns_row(page, "query", "www.sentinel.test", topo.va)
        expect(qrow).to_have_count(1, timeout=WAIT_MS)
        expect(qrow.get_by_test_id("dns-type")).to_have_text("A")
        expect(qrow.get_by_test_id("dns-rcode")).to_have_text("")
        expect(qrow.get_by_test_id("dns-answer")).to_have_count(0)
        expect_proc_of(qrow.get_by_test_id("dns-process"), q)
        assert (q.get("actor") or {}).get("process", {}).get("pid") in (None, digp.pid)
        rrow = dns_row(page, "response", "www.sentinel.test", topo.va)
        expect(rrow).to_have_count(1)
        expect(rrow.get_by_test_id("dns-type")).to_have_text("A")
        expect(rrow.get_by_test_id("dns-rcode")).to_have_text(str(r["rcode"]))
        assert r["rcode"] == "NoError" and q["query"]["type"] == "A"
        ans = rrow.get_by_test_id("dns-answer")
        expect(ans).to_have_count(1)
        expect(ans).to_contain_text(f"A {WWW}")
        expect_proc_of(rrow.get_by_test_id("dns-process"), r)
        assert (r.get("actor") or {}).get("process", {}).get("pid") in (None, digp.pid)
        # the server's end sees the same exchange; its answer was sent by dnsmasq (a long-lived socket owner)
        expect(dns_row(page, "query", "www.sentinel.test", topo.vb)).to_have_count(1)
        rb_dns = dns_row(page, "response", "www.sentinel.test", topo.vb)
        expect(rb_dns.get_by_test_id("dns-answer")).to_contain_text(f"A {WWW}")
        expect_proc(rb_dns.get_by_test_id("dns-process"), "dnsmasq", c.dns_pid)
        expect_proc_of(rb_dns.get_by_test_id("dns-process"), stored_dns(c, "www.sentinel.test", 2, topo.vb))

        # a port scan from the second address: a detection, its source blocked for drop_ttl_s
        amark = c.handle.alert_mark()
        scan = subprocess.run(topo.exec_a(sys.executable, "-c", SCAN, SCANNER, topo.ip_b, "20001",
                                          str(SCAN_PORTS + 5)), capture_output=True, text=True, timeout=60)
        assert scan.returncode == 0, scan.stderr

        def blocked() -> Obj | None:
            v = net_view(c)
            return v if v["blocks_in_force"] and v.get("detections", {}).get("port_scan") else None

        after = wait_until(blocked, "the port scan's detection and block", timeout=20)
        reload(page)
        det = page.locator('[data-testid="net-detection-row"][data-kind="port_scan"]')
        expect(det.get_by_test_id("net-detection-count")).to_have_text(f"{after['detections']['port_scan']:,}")
        blk = page.locator(f'[data-testid="net-block-row"][data-address="{SCANNER}"]')
        expect(blk).to_have_count(1)
        api_block = next(b for b in after["blocks_in_force"] if b["address"] == SCANNER)
        expect(blk.get_by_test_id("net-block-reason")).to_have_text(api_block["reason"])
        secs = float(blk.get_by_test_id("net-block-expires").inner_text().rstrip(" s").replace(",", ""))
        assert DROP_TTL_S - 120 < secs <= DROP_TTL_S
        expect(page.get_by_test_id("card-net-blocks-value")).to_have_text(str(len(after["blocks_in_force"])))
        shot(page, "41-network-flows-dns")

        # the search page shows the flow records with their addresses
        page.goto(f"{c.url}/#/search?kind=flow")
        expect(page.get_by_test_id("search-summary").filter(has_text=f"{src} → {dst}").first).to_be_visible()

        # the scan's alert: among the network alerts (the network rules' alerts), linking to its page
        rules = network_rules(c)
        scan_rule = next(r["id"] for r in rules if any(a["technique"] == "T1046" for a in r["attack"]))
        alert = c.handle.wait_alert(scan_rule, since=amark, timeout=20)
        alert_uid = alert["finding_info"]["uid"]
        wait_until(lambda: c.api.request("GET", f"/api/v1/alerts/{alert_uid}").status == 200, "alert in history")
        page.goto(f"{c.url}/#/network")
        links = page.get_by_test_id("net-rule-link")
        expect(links).to_have_count(len(rules))
        assert sorted(links.evaluate_all("ls => ls.map(l => l.dataset.rule)")) == sorted(r["id"] for r in rules)
        arow = page.locator(f'[data-testid="net-alerts"] [data-testid="alert-row"][data-uid="{alert_uid}"]')
        expect(arow).to_have_count(1, timeout=WAIT_MS)
        expect(arow.get_by_test_id("alert-rule")).to_have_text(scan_rule)
        expect(arow.get_by_test_id("alert-message")).to_have_text(alert["message"])
        assert SCANNER in alert["message"]
        for r in page.locator('[data-testid="net-alerts"] [data-testid="alert-row"]').all():
            assert r.get_by_test_id("alert-rule").inner_text() in {x["id"] for x in rules}
        shot(page, "42-network-alerts")
        arow.get_by_test_id("alert-link").click()
        expect(page).to_have_url(re.compile("#/alerts/" + re.escape(alert_uid) + "$"))
        expect(page.get_by_test_id("detail-rule")).to_have_text(scan_rule)
        expect(page.get_by_test_id("detail-title")).to_have_text(alert["finding_info"]["title"])
        shot(page, "43-network-alert-detail")
        assert watch.errors == [] and watch.dialogs == [] and watch.csp_violations() == []


def network_rules(c: NetConsole) -> list[Obj]:
    """The loaded rules of the network rule set (rules/default/70_network.yaml)."""
    rules = [r for r in c.api.get("/rules")["items"] if "network" in Path(r["file"] or "").name]
    assert len(rules) >= 4, rules
    return rules


def test_hostile_dns_names_and_answers_are_inert_visible_text(net_console: NetConsole, browser: Browser) -> None:
    c, topo = net_console, net_console.topo
    txt = dig(topo, c.dns, "xss.sentinel.test", "TXT")
    assert XSS_IMG in txt.stdout, txt.stdout
    for name in (HOSTILE_SCRIPT, HOSTILE_CTL):
        res = dig(topo, c.dns, name, "A")
        assert "status:" in res.stdout, res.stdout + res.stderr
    # the history holds them in DNS presentation format: markup as is, control bytes as \DDD escapes
    txt_r = stored_dns(c, "xss.sentinel.test", 2, topo.va)
    assert [(a["type"], a["rdata"]) for a in txt_r["answers"]] == [("TXT", f'"{XSS_IMG}"')]
    script_q = stored_dns(c, HOSTILE_SCRIPT, 1, topo.va)
    ctl_q = stored_dns(c, HOSTILE_CTL, 1, topo.va)
    assert script_q["query"]["type"] == "A" and ctl_q["query"]["type"] == "A"

    with console_page(browser) as (page, watch):
        login(page, c.url, c.token)
        page.goto(f"{c.url}/#/network")
        srow = dns_row(page, "query", HOSTILE_SCRIPT, topo.va)
        expect(srow).to_have_count(1, timeout=WAIT_MS)
        expect(srow.get_by_test_id("dns-name")).to_have_text(HOSTILE_SCRIPT)
        assert srow.get_by_test_id("dns-name").evaluate("e => e.children.length") == 0  # one text node
        crow = dns_row(page, "query", HOSTILE_CTL, topo.va)
        expect(crow).to_have_count(1)
        expect(crow.get_by_test_id("dns-name")).to_have_text(HOSTILE_CTL)
        trow = dns_row(page, "response", "xss.sentinel.test", topo.va)
        expect(trow.get_by_test_id("dns-answer")).to_contain_text(f'TXT "{XSS_IMG}"')
        expect(trow.get_by_test_id("dns-type")).to_have_text("TXT")
        no_script_ran(page)
        shot(page, "44-network-hostile-dns")

        # the search page shows the same names as text
        page.goto(f"{c.url}/#/search?class_uid=4003")
        expect(page.get_by_test_id("search-summary").filter(has_text=XSS_SCRIPT).first).to_be_visible()
        no_script_ran(page)
        assert watch.errors == [] and watch.dialogs == [] and watch.csp_violations() == []

    # Raw control and bidi characters never come out of the DNS parser (presentation format escapes them),
    # but any string the page shows may hold them: the real answer, with raw ones put in the name in
    # flight, shows them as visible escapes.
    raw = "\x07\x1b[31m<b>\u202eevil\u200b.sentinel.test"
    with console_page(browser) as (page, watch):
        def inject(route: Route) -> None:
            real = route.fetch()
            body: Any = real.json()
            hit = next(e for e in body["items"] if e["obj"].get("query", {}).get("hostname") == HOSTILE_SCRIPT)
            hit["obj"]["query"]["hostname"] = raw
            route.fulfill(response=real, json=body)

        page.route(re.compile(r".*/api/v1/events\?.*class_uid=4003.*"), inject)
        login(page, c.url, c.token)
        page.goto(f"{c.url}/#/network")
        row = page.locator('[data-testid="net-dns-row"]').filter(has_text="evil")
        expect(row).to_have_count(1, timeout=WAIT_MS)
        name = row.get_by_test_id("dns-name")
        expect(name).to_have_text("\\x07\\x1b[31m<b>\\u202eevil\\u200b.sentinel.test")
        assert name.evaluate("e => e.querySelectorAll('span.ctl').length") == 4
        assert name.evaluate("e => e.querySelectorAll('b').length") == 0
        no_script_ran(page)
        shot(page, "45-network-control-characters")
        assert watch.errors == [] and watch.csp_violations() == []
