"""AlertOutput: folding over a window, never blocking on slow sinks, bounded close, stats."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alert_kit import HOST, NOW, SEC, HttpServer, shadow_alert

from sentinel_edge.alerts.config import AlertsConfig, WebhookConfig
from sentinel_edge.alerts.ocsf import finding_uid, to_finding
from sentinel_edge.alerts.output import AlertOutput, fold_key
from sentinel_edge.alerts.sinks import FileSink
from sentinel_edge.errors import OutputError
from sentinel_edge.output.ocsf.schema import validate
from sentinel_edge.rules.model import Alert


def lines(p: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in p.read_text().splitlines()]


@pytest.fixture
def out_file(tmp_path: Path) -> Iterator[tuple[AlertOutput, Path]]:
    path = tmp_path / "alerts.jsonl"
    out = AlertOutput(AlertsConfig(file=str(path), fold_window_s=10), HOST)
    try:
        yield out, path
    finally:
        out.close()


def test_identical_alerts_fold_within_the_window(out_file: tuple[AlertOutput, Path]) -> None:
    out, path = out_file
    first = shadow_alert(NOW)
    out.emit(first)
    got = lines(path)
    assert len(got) == 1 and got[0]["activity_id"] == 1 and got[0]["count"] == 1  # written at once
    uid = got[0]["finding_info"]["uid"]
    assert uid == finding_uid(first, HOST)
    for i in range(1, 5):  # four repeats within 10 s: counted, not written
        out.emit(shadow_alert(NOW + i * SEC, ts_ms=5_000 + i * 1000))
    out.tick(NOW + 9 * SEC)
    assert len(lines(path)) == 1
    assert out.stats()["folded"] == 4 and out.stats()["open_folds"] == 1
    out.tick(NOW + 10 * SEC)  # the window closes: one Update with the total
    got = lines(path)
    assert len(got) == 2
    upd = got[1]
    assert validate(upd) == []
    assert (upd["activity_id"], upd["activity_name"], upd["count"]) == (2, "Update", 5)
    assert upd["finding_info"]["uid"] == uid
    assert upd["finding_info"]["first_seen_time"] == NOW // 1_000_000
    assert upd["finding_info"]["last_seen_time"] == (NOW + 4 * SEC) // 1_000_000 == upd["time"]
    assert upd["finding_info"]["created_time"] == NOW // 1_000_000
    assert upd["evidences"][0]["data"]["unmapped"]["proc"]["ktime_ns"] == 9_000 * 1_000_000  # the latest one
    # the flood goes on: the same finding, the count keeps growing, one Update per window
    out.emit(shadow_alert(NOW + 12 * SEC))
    out.emit(shadow_alert(NOW + 13 * SEC))
    out.tick(NOW + 20 * SEC)
    got = lines(path)
    assert len(got) == 3 and got[2]["count"] == 7 and got[2]["finding_info"]["uid"] == uid
    # a quiet window closes the fold; the next occurrence is a new finding
    out.tick(NOW + 31 * SEC)
    assert out.stats()["open_folds"] == 0 and len(lines(path)) == 3
    out.emit(shadow_alert(NOW + 40 * SEC))
    got = lines(path)
    assert len(got) == 4 and got[3]["activity_id"] == 1 and got[3]["count"] == 1
    assert got[3]["finding_info"]["uid"] != uid
    st = out.stats()
    assert (st["received"], st["emitted"], st["updates"], st["folded"]) == (8, 4, 2, 6)


def test_fold_key_separates_processes_and_messages(out_file: tuple[AlertOutput, Path]) -> None:
    out, path = out_file
    a = shadow_alert(NOW)
    b = shadow_alert(NOW + 1, exec_id="x-301", pid=301)  # another process
    c = shadow_alert(NOW + 2, message="cat read /etc/gshadow")  # another message
    assert len({fold_key(a), fold_key(b), fold_key(c)}) == 3
    assert fold_key(a) == ("se.credential_access.shadow_read", "x-300", "cat read /etc/shadow")
    for x in (a, b, c, shadow_alert(NOW + 3)):
        out.emit(x)
    assert len(lines(path)) == 3 and out.stats()["folded"] == 1


def test_repeat_after_the_window_without_tick_reports_then_starts_over(out_file: tuple[AlertOutput, Path]) -> None:
    out, path = out_file
    out.emit(shadow_alert(NOW))
    out.emit(shadow_alert(NOW + 1 * SEC))
    out.emit(shadow_alert(NOW + 11 * SEC))  # no tick came: the old window is reported first
    got = lines(path)
    assert [(g["activity_id"], g["count"]) for g in got] == [(1, 1), (2, 2), (1, 1)]
    assert got[0]["finding_info"]["uid"] == got[1]["finding_info"]["uid"] != got[2]["finding_info"]["uid"]


def test_close_flushes_pending_folds(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    out = AlertOutput(AlertsConfig(file=str(path)), HOST)
    for i in range(3):
        out.emit(shadow_alert(NOW + i))
    out.close()
    got = lines(path)
    assert [(g["activity_id"], g["count"]) for g in got] == [(1, 1), (2, 3)]
    with pytest.raises(OutputError, match="closed"):
        out.emit(shadow_alert(NOW))
    out.close()  # idempotent


def test_window_zero_disables_folding(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    out = AlertOutput(AlertsConfig(file=str(path), fold_window_s=0), HOST)
    for i in range(3):
        out.emit(shadow_alert(NOW + i))
    out.close()
    assert [g["count"] for g in lines(path)] == [1, 1, 1] and out.stats()["folded"] == 0


def test_fold_table_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    out = AlertOutput(AlertsConfig(file=str(path)), HOST, fold_max=2)
    out.emit(shadow_alert(NOW, message="m0"))
    out.emit(shadow_alert(NOW + 1, message="m0"))  # folded into m0
    out.emit(shadow_alert(NOW + 2, message="m1"))
    out.emit(shadow_alert(NOW + 3, message="m2"))  # a third open fold: m0, the oldest, is closed
    got = lines(path)
    assert [(g["message"], g["activity_id"], g["count"]) for g in got] == [
        ("m0", 1, 1), ("m1", 1, 1), ("m2", 1, 1), ("m0", 2, 2)]
    st = out.stats()
    assert st["open_folds"] == 2 and st["fold_evictions"] == 1
    out.close()


def test_wall_clock_going_back_closes_the_windows(out_file: tuple[AlertOutput, Path]) -> None:
    out, path = out_file
    out.tick(NOW)
    out.emit(shadow_alert(NOW))
    out.emit(shadow_alert(NOW + 1))
    out.tick(NOW - 3600 * SEC)
    assert [g["count"] for g in lines(path)] == [1, 2]


def test_a_failing_sink_does_not_stop_the_others(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "a.jsonl"
    out = AlertOutput(AlertsConfig(file=str(path), fold_window_s=0), HOST, sinks=[FileSink("/dev/full")])
    with caplog.at_level(logging.ERROR):
        out.emit(shadow_alert(NOW))  # does not raise
    assert len(lines(path)) == 1
    st = out.stats()
    assert st["errors"] == 1 and st["sinks"]["file:/dev/full"]["failed"] == 1 and st["dropped"] == 1
    assert any("/dev/full" in r.getMessage() for r in caplog.records)
    out.close()


def test_an_alert_that_cannot_be_mapped_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    out = AlertOutput(AlertsConfig(file=str(path), fold_window_s=0), HOST)
    a = shadow_alert(NOW)
    bad = Alert(a.rule.__class__(id="r", title="t", severity="nope"), a.events, "m", NOW)
    out.emit(bad)
    out.emit(a)
    assert len(lines(path)) == 1 and out.stats()["errors"] == 1 and out.stats()["emitted"] == 1
    out.close()


def test_cannot_open_the_alerts_file() -> None:
    with pytest.raises(OutputError, match=r"cannot open alerts file /nonexistent/x\.jsonl"):
        AlertOutput(AlertsConfig(file="/nonexistent/x.jsonl"), HOST)


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[HttpServer]:
    srv = HttpServer(tmp_path, sleep_s=2.0)
    try:
        yield srv
    finally:
        srv.stop()


def test_a_slow_webhook_never_slows_emit(tmp_path: Path, slow_server: HttpServer) -> None:
    """A webhook that takes 2 s per request: emit stays fast, the file sink stays current, close is bounded."""
    path = tmp_path / "a.jsonl"
    cfg = AlertsConfig(file=str(path), fold_window_s=0, close_timeout_s=1.0,
                       webhook=WebhookConfig(url=slow_server.url, timeout_s=5, retries=0, queue_max=20))
    out = AlertOutput(cfg, HOST)
    sent = [shadow_alert(NOW + i, pid=2000 + i, exec_id=f"x-{2000 + i}") for i in range(200)]
    findings = [to_finding(a, HOST) for a in sent[:5]]  # warm the mapper caches
    assert findings
    worst = 0.0
    t0 = time.monotonic()
    for a in sent:
        t = time.monotonic()
        out.emit(a)
        worst = max(worst, time.monotonic() - t)
    total = time.monotonic() - t0
    assert len(lines(path)) == 200  # synchronous sinks got every alert meanwhile
    assert worst < 0.1 and total < 2.0, (worst, total)
    t = time.monotonic()
    out.close()
    assert time.monotonic() - t < 2.5  # close_timeout_s + the abort grace
    st = out.stats()["sinks"][f"webhook:{slow_server.url}"]
    # 200 alerts: at most one was delivered in the time given, the rest are all accounted for
    assert st["queue_full"] >= 200 - 20 - 1
    assert st["written"] + st["dropped"] + st["queued"] >= 199
    assert st["written"] + st["queue_full"] + st["abandoned"] + st["failed"] <= 200
    assert out.stats()["dropped"] == st["dropped"] > 150


def test_stats_shape(out_file: tuple[AlertOutput, Path]) -> None:
    out, path = out_file
    out.emit(shadow_alert(NOW))
    st = out.stats()
    assert set(st) == {"received", "emitted", "updates", "folded", "open_folds", "fold_evictions", "errors",
                       "dropped", "sinks"}
    assert st["sinks"] == {f"file:{path}": {"written": 1, "failed": 0, "errors": 0, "dropped": 0}}
    json.dumps(st)  # the agent writes it into its status file
