"""Alert sinks against real files, a real rsyslog and a real HTTP server, all on this machine."""

from __future__ import annotations

import itertools
import json
import logging
import os
import select
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from alert_kit import HOST, NOW, SEC, HttpServer, Rsyslog, free_port, shadow_alert, wait_until

from sentinel_edge.alerts.config import AlertsConfig, SyslogConfig, WebhookConfig
from sentinel_edge.alerts.ocsf import to_finding
from sentinel_edge.alerts.output import AlertOutput
from sentinel_edge.alerts.sinks import (
    FileSink,
    QueuedSink,
    RotatingFileSink,
    StdoutSink,
    SyslogSink,
    WebhookSink,
    format_rfc5424,
)
from sentinel_edge.errors import OutputError
from sentinel_edge.rules.model import Alert, RuleMeta

ROOT = Path(__file__).resolve().parents[2]


def alerts(n: int, start: int = 0) -> list[Alert]:
    """n distinct alerts (distinct processes, so nothing folds)."""
    return [shadow_alert(NOW + i * SEC, ts_ms=5_000 + i, pid=1000 + i, exec_id=f"x-{1000 + i}",
                         message=f"cat[{1000 + i}] read /etc/shadow") for i in range(start, start + n)]


def finding_line(a: Alert) -> tuple[dict[str, Any], bytes]:
    f = to_finding(a, HOST)
    return f, orjson.dumps(f) + b"\n"


# ---------------------------------------------------------------- JSON lines file


READER = textwrap.dedent("""
    import json, sys
    lines = open(sys.argv[1], "rb").read().split(b"\\n")
    assert lines[-1] == b"", "the file ends inside a line"
    objs = [json.loads(x) for x in lines[:-1]]
    print(json.dumps([o["finding_info"]["uid"] for o in objs]))
""")


def read_in_other_process(path: Path) -> list[str]:
    out = subprocess.run([sys.executable, "-c", READER, str(path)], check=True, capture_output=True, timeout=30)
    uids: list[str] = json.loads(out.stdout)
    return uids


def test_alerts_file_is_flushed_per_alert(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    path.write_bytes(b'{"earlier":1}\n')  # appended to, never truncated
    out = AlertOutput(AlertsConfig(file=str(path), fold_window_s=0), HOST)
    try:
        seen = []
        for a in alerts(3):
            out.emit(a)
            seen.append(to_finding(a, HOST)["finding_info"]["uid"])
            # another process reads the file while the output is still open
            lines = path.read_bytes().split(b"\n")
            assert json.loads(lines[0]) == {"earlier": 1}
            path_tail = tmp_path / "tail.jsonl"
            path_tail.write_bytes(b"\n".join(lines[1:]))
            assert read_in_other_process(path_tail) == seen
        assert out.stats()["sinks"][f"file:{path}"] == {"written": 3, "failed": 0, "errors": 0, "dropped": 0}
    finally:
        out.close()


def test_file_sink_appends_with_o_append_and_fsync(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    s1 = FileSink(str(path), fsync=True)
    s2 = FileSink(str(path))  # a second writer: O_APPEND keeps whole lines
    f, line = finding_line(alerts(1)[0])
    for _ in range(5):
        s1.write(f, line)
        s2.write(f, line)
    s1.close()
    s2.close()
    assert path.read_bytes() == line * 10
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert s1.written == s2.written == 5


def test_file_sink_failure_is_counted_and_named() -> None:
    s = FileSink("/dev/full")
    f, line = finding_line(alerts(1)[0])
    with pytest.raises(OutputError, match=r"alerts file /dev/full.*No space left"):
        s.write(f, line)
    s.close()
    assert s.stats() == {"written": 0, "failed": 1, "errors": 1, "dropped": 1}
    with pytest.raises(OutputError, match=r"cannot open alerts file /nonexistent/dir/a\.jsonl"):
        FileSink("/nonexistent/dir/a.jsonl")


# ---------------------------------------------------------------- stdout


CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from alert_kit import HOST, shadow_alert, NOW
    from sentinel_edge.alerts.config import AlertsConfig
    from sentinel_edge.alerts.output import AlertOutput
    out = AlertOutput(AlertsConfig(stdout=True, fold_window_s=0), HOST)
    for i in range(2):
        out.emit(shadow_alert(NOW + i, message=f"alert {{i}}"))
        sys.stdin.readline()   # wait: the parent must see the alert while we are still running
    out.close()
""")


def test_stdout_sink_writes_each_alert_at_once() -> None:
    code = CHILD.format(tests=str(Path(__file__).parent))
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for i in range(2):
            r, _, _ = select.select([proc.stdout], [], [], 20)
            assert r, "no alert on stdout while the writer is alive"
            obj = json.loads(proc.stdout.readline())
            assert obj["class_uid"] == 2004 and obj["message"] == f"alert {i}"
            assert proc.poll() is None
            proc.stdin.write(b"\n")
            proc.stdin.flush()
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_stdout_sink_to_a_closed_pipe_fails_cleanly() -> None:
    r, w = os.pipe()
    os.close(r)
    s = StdoutSink(w)
    f, line = finding_line(alerts(1)[0])
    with pytest.raises(OutputError, match=r"stdout.*Broken pipe"):
        s.write(f, line)
    os.close(w)
    assert s.failed == 1


# ---------------------------------------------------------------- rotating file


def _read_lines(p: Path) -> list[dict[str, Any]]:
    data = p.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"{p} ends inside a line"
    return [json.loads(x) for x in data.split(b"\n")[:-1]]


def test_rotating_file_keeps_whole_lines_and_n_backups(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    lines = [finding_line(a) for a in alerts(12)]
    size = len(lines[0][1])
    max_bytes = int(size * 3.5)  # three lines per file
    s = RotatingFileSink(str(path), max_bytes=max_bytes, backups=2)
    for f, line in lines:
        s.write(f, line)
    s.close()
    files = [path, tmp_path / "alerts.jsonl.1", tmp_path / "alerts.jsonl.2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in files)  # no .3, no temp file
    uids = [f["finding_info"]["uid"] for f, _ in lines]
    got = [[o["finding_info"]["uid"] for o in _read_lines(p)] for p in files]
    assert got == [uids[9:12], uids[6:9], uids[3:6]]  # newest in PATH, then .1, .2
    assert all(p.stat().st_size <= max_bytes for p in files)
    assert s.rotations == 3 and s.stats()["rotations"] == 3


def test_rotating_file_long_line_gets_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    s = RotatingFileSink(str(path), max_bytes=8192, backups=3)
    small = finding_line(alerts(1)[0])
    big_alert = shadow_alert(message="x" * 10_000)
    big = finding_line(big_alert)
    assert len(small[1]) < 8192 < len(big[1])
    s.write(*big)
    s.write(*big)
    s.write(*small)
    s.close()
    assert [len(_read_lines(p)) for p in (path, Path(f"{path}.1"), Path(f"{path}.2"))] == [1, 1, 1]
    assert _read_lines(Path(f"{path}.1"))[0]["message"] == "x" * 10_000


WATCHER = textwrap.dedent("""
    import os, sys, time
    path, stop = sys.argv[1], sys.argv[2]
    missing = opened = 0
    while not os.path.exists(stop):
        try:
            os.close(os.open(path, os.O_RDONLY))
            opened += 1
        except FileNotFoundError:
            missing += 1
    print(opened, missing)
""")


def test_rotation_never_leaves_the_path_missing(tmp_path: Path) -> None:
    """Another process opens PATH in a loop while hundreds of rotations happen: it is always there."""
    path = tmp_path / "r.jsonl"
    stop = tmp_path / "stop"
    s = RotatingFileSink(str(path), max_bytes=8192, backups=2)
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, str(path), str(stop)], stdout=subprocess.PIPE)
    try:
        f, line = finding_line(alerts(1)[0])
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            s.write(f, line)
        stop.touch()
        out, _ = watcher.communicate(timeout=30)
    finally:
        stop.touch()
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    s.close()
    opened, missing = map(int, out.split())
    assert s.rotations > 100 and opened > 100
    assert missing == 0


def test_rotating_file_continues_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    f, line = finding_line(alerts(1)[0])
    path.write_bytes(line * 2)
    s = RotatingFileSink(str(path), max_bytes=len(line) * 2, backups=1)
    s.write(f, line)  # the file is full: rotates first
    s.close()
    assert path.read_bytes() == line and Path(f"{path}.1").read_bytes() == line * 2


# ---------------------------------------------------------------- syslog (real rsyslog)


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslog]:
    r = Rsyslog(tmp_path_factory.mktemp("rsyslog"))
    try:
        yield r
    finally:
        r.stop()


def _wait_records(rs: Rsyslog, pred: Any, n: int) -> list[dict[str, Any]]:
    def got() -> list[dict[str, Any]]:
        recs = [r for r in rs.records() if pred(r)]
        return recs if len(recs) >= n else []

    recs: list[dict[str, Any]] = wait_until(got, 15, f"{n} record(s) in rsyslog's output")
    return recs


def _check_record(rec: dict[str, Any], finding: dict[str, Any], facility: int, app: str) -> None:
    sev = {5: 2, 4: 3, 3: 4, 2: 5, 1: 6}[finding["severity_id"]]
    assert int(rec["pri"]) == facility * 8 + sev
    assert (int(rec["facility"]), int(rec["severity"])) == (facility, sev)
    assert rec["protocol_version"] == "1"
    t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(finding["time"] / 1000))
    assert rec["timereported"].startswith(t), (rec["timereported"], t)
    assert rec["hostname"] == HOST.hostname and rec["app_name"] == app
    assert rec["procid"] == str(os.getpid()) and rec["msgid"] == "alert"
    sd = rec["sd"]
    info = finding["finding_info"]
    assert sd.startswith("[alert@32473 ") and sd.endswith("]")
    assert f'rule="{info["analytic"]["uid"]}"' in sd and f'uid="{info["uid"]}"' in sd
    assert f'severity="{finding["severity"]}"' in sd and f'count="{finding["count"]}"' in sd
    assert 'technique="T1003.008"' in sd
    msg = rec["msg"].lstrip("\ufeff")  # the BOM of RFC 5424 MSG-UTF8
    assert json.loads(msg) == json.loads(json.dumps(finding))


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
def test_syslog_to_real_rsyslog(rsyslog: Rsyslog, protocol: str) -> None:
    port = rsyslog.udp_port if protocol == "udp" else rsyslog.tcp_port
    app = f"se-test-{protocol}"
    cfg = AlertsConfig(fold_window_s=0, syslog=SyslogConfig(host="127.0.0.1", port=port, protocol=protocol,
                                                             app_name=app, facility="local3"))
    out = AlertOutput(cfg, HOST)
    sent = alerts(3)
    # a large finding (20 KB of command line): octet counting carries it whole over TCP
    sent.append(shadow_alert(NOW + 9 * SEC, message="big " + "é" * 10_000, exec_id="x-big"))
    rule = RuleMeta(id="se.test.crit", title="crit", severity="critical", attack=sent[0].rule.attack)
    sent.append(Alert(rule, sent[0].events, 'quotes " and ] and \\ in the message', NOW))
    for a in sent:
        out.emit(a)
    out.close(timeout=10)
    st = out.stats()["sinks"][f"syslog:{protocol}://127.0.0.1:{port}"]
    assert st["written"] == 5 and st["dropped"] == 0, st
    recs = _wait_records(rsyslog, lambda r: r["app_name"] == app, 5)
    assert len(recs) == 5
    assert {r["input"] for r in recs} == {"imudp" if protocol == "udp" else "imtcp"}
    for a, rec in zip(sent, recs, strict=True):
        _check_record(rec, to_finding(a, HOST), 19, app)


def test_syslog_tcp_reconnects_after_the_collector_closed_the_connection(rsyslog: Rsyslog) -> None:
    """A TCP collector restarting (here: a plain listener that closes) is noticed; the next alert reconnects."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    sink = SyslogSink("127.0.0.1", port, protocol="tcp", app_name="se", facility=16, hostname="h")
    f, line = finding_line(alerts(1)[0])
    sink.write(f, line)
    conn, _ = srv.accept()
    conn.settimeout(5)
    first = b""
    while b"{" not in first or not first.endswith(b"}"):
        first += conn.recv(65536)
    length, _, msg = first.partition(b" ")
    assert int(length) == len(msg) and msg.startswith(b"<131>1 ")  # local0 (16*8) + err (3)
    conn.close()  # the collector goes away
    time.sleep(0.1)
    sink.write(f, line)
    conn2, _ = srv.accept()
    conn2.settimeout(5)
    second = b""
    while not second.endswith(b"}"):
        second += conn2.recv(65536)
    assert second == first
    conn2.close()
    srv.close()
    sink.close()
    assert sink.written == 2 and sink.failed == 0


def test_syslog_tcp_to_a_closed_port_counts_a_drop(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    cfg = AlertsConfig(fold_window_s=0, syslog=SyslogConfig(port=port, protocol="tcp", timeout_s=1))
    out = AlertOutput(cfg, HOST)
    with caplog.at_level(logging.ERROR):
        out.emit(alerts(1)[0])
        out.close(timeout=5)
    st = out.stats()["sinks"][f"syslog:tcp://127.0.0.1:{port}"]
    assert (st["written"], st["failed"], st["dropped"]) == (0, 1, 1)
    assert any("Connection refused" in r.getMessage() for r in caplog.records)


def test_rfc5424_format() -> None:
    f, line = finding_line(alerts(1)[0])
    msg = format_rfc5424(f, line.rstrip(b"\n"), facility=4, app_name="a b", hostname="", procid=7)
    head, _, body = msg.partition(b"\xef\xbb\xbf")
    assert json.loads(body) == json.loads(line)
    pri, ts, host, app, procid, msgid, rest = head.decode().split(" ", 6)
    assert (pri, host, app, procid, msgid) == ("<35>1", "-", "ab", "7", "alert")
    assert ts.endswith("Z") and len(ts) == len("2023-11-14T22:13:20.000Z")
    assert rest.startswith("[alert@32473 rule=") and rest.endswith("] ")


# ---------------------------------------------------------------- webhook (real HTTP server)


@pytest.fixture
def http_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[HttpServer]:
    kw = getattr(request, "param", {})
    srv = HttpServer(tmp_path, **kw)
    try:
        yield srv
    finally:
        srv.stop()


def test_webhook_posts_each_finding(http_server: HttpServer) -> None:
    cfg = AlertsConfig(fold_window_s=0, webhook=WebhookConfig(url=http_server.url, headers={"X-Token": "s3cret"}))
    out = AlertOutput(cfg, HOST)
    sent = alerts(3)
    for a in sent:
        out.emit(a)
    out.close(timeout=10)
    reqs = http_server.requests()
    assert len(reqs) == 3
    for a, req in zip(sent, sorted(reqs, key=lambda r: r["n"]), strict=True):
        assert req["method"] == "POST" and req["path"] == "/hook?src=se"
        assert req["headers"]["Content-Type"] == "application/json"
        assert req["headers"]["X-Token"] == "s3cret"
        assert req["headers"]["User-Agent"].startswith("SentinelEdge/")
        assert json.loads(req["body"]) == json.loads(json.dumps(to_finding(a, HOST)))
    st = out.stats()["sinks"][f"webhook:{http_server.url}"]
    assert (st["written"], st["failed"], st["errors"], st["retries"], st["dropped"]) == (3, 0, 0, 0, 0)


@pytest.mark.parametrize("http_server", [{"fail_first": 3}], indirect=True)
def test_webhook_retries_with_exponential_backoff(http_server: HttpServer) -> None:
    sink = WebhookSink(http_server.url, retries=4, backoff_s=0.2, backoff_max_s=10, timeout_s=5)
    f, line = finding_line(alerts(1)[0])
    sink.write(f, line)
    reqs = sorted(http_server.requests(), key=lambda r: r["n"])
    assert [r["status"] for r in reqs] == [503, 503, 503, 200]
    assert len({r["body"] for r in reqs}) == 1  # the same finding each time
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(reqs)]
    # retry k waits d/2 + uniform(0, d/2), d = 0.2 * 2**(k-1): 0.1-0.2, 0.2-0.4, 0.4-0.8 (+ request time)
    for k, gap in enumerate(gaps, start=1):
        d = 0.2 * 2 ** (k - 1)
        assert d / 2 - 0.01 <= gap <= d + 0.5, (k, gaps)
    assert gaps[2] > gaps[0]
    assert sink.stats() == {"written": 1, "failed": 0, "errors": 3, "dropped": 0, "retries": 3,
                            "last_error": "HTTP 503"}


def test_backoff_delays_are_jittered_and_capped() -> None:
    sink = WebhookSink("http://127.0.0.1:9/", backoff_s=1.0, backoff_max_s=4.0)
    for k, d in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0), (10, 4.0)):
        samples = [sink.delay(k) for _ in range(200)]
        assert all(d / 2 <= s <= d for s in samples), (k, min(samples), max(samples))
        assert max(samples) - min(samples) > d / 10  # jitter spreads the retries of many agents


@pytest.mark.parametrize("http_server", [{"status": 400}], indirect=True)
def test_webhook_client_error_is_not_retried(http_server: HttpServer) -> None:
    sink = WebhookSink(http_server.url, retries=3, backoff_s=0.05)
    f, line = finding_line(alerts(1)[0])
    with pytest.raises(OutputError, match=r"not delivered after 1 attempt\(s\): HTTP 400"):
        sink.write(f, line)
    assert len(http_server.requests()) == 1 and sink.failed == 1


def test_webhook_server_down_drops_after_retries(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    cfg = AlertsConfig(fold_window_s=0, webhook=WebhookConfig(url=url, retries=2, backoff_s=0.05, timeout_s=1))
    out = AlertOutput(cfg, HOST)
    t0 = time.monotonic()
    with caplog.at_level(logging.ERROR):
        out.emit(alerts(1)[0])
        assert time.monotonic() - t0 < 0.1  # emit does not wait for the attempts
        out.close(timeout=10)
    st = out.stats()["sinks"][f"webhook:{url}"]
    assert (st["written"], st["failed"], st["errors"], st["retries"], st["dropped"]) == (0, 1, 3, 2, 1)
    assert "ConnectionRefusedError" in st["last_error"]
    assert out.stats()["dropped"] == 1
    assert any("not delivered after 3 attempt(s)" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("http_server", [{"sleep_s": 2.0}], indirect=True)
def test_webhook_timeout_counts_as_a_failed_attempt(http_server: HttpServer) -> None:
    sink = WebhookSink(http_server.url, retries=1, backoff_s=0.05, timeout_s=0.3)
    f, line = finding_line(alerts(1)[0])
    t0 = time.monotonic()
    with pytest.raises(OutputError, match=r"after 2 attempt\(s\): TimeoutError"):
        sink.write(f, line)
    assert time.monotonic() - t0 < 1.5
    assert sink.errors == 2


@pytest.mark.parametrize("http_server", [{"sleep_s": 1.0}], indirect=True)
def test_webhook_bounded_queue_counts_drops(http_server: HttpServer, caplog: pytest.LogCaptureFixture) -> None:
    sink = QueuedSink(WebhookSink(http_server.url, retries=0, timeout_s=5), queue_max=2)
    sent = alerts(10)
    with caplog.at_level(logging.WARNING):
        lines = [finding_line(a) for a in sent]
        sink.write(*lines[0])
        wait_until(lambda: sink.pending() == 0, 10, "the worker to take the first alert")  # now in flight
        t0 = time.monotonic()
        for f, line in lines[1:]:
            sink.write(f, line)
        assert time.monotonic() - t0 < 0.5
        sink.close(timeout=5)
    st = sink.stats()
    # one in flight, two queued; the other seven found the queue full
    assert st["queue_full"] == 7 and st["written"] == 3
    assert st["dropped"] == 7 and st["queued"] == 0
    assert len(http_server.requests()) == 3
    msgs = [r.getMessage() for r in caplog.records]
    assert any("falling behind: queue of 2 full, 1 alert(s) dropped" in m for m in msgs)
