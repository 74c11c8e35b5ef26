"""The live stream hub (web/live.py): filters, per-reader sampling, alerts never sampled."""

from __future__ import annotations

import time

from sentinel_edge.web.live import SUBSCRIBER_BUFFER, LiveHub, StreamFilter


def _ev(cls: int, cmd: str = "ls -l", path: str = "/etc/passwd") -> dict[str, object]:
    return {"class_uid": cls, "actor": {"process": {"cmd_line": cmd, "name": cmd.split()[0],
                                                    "file": {"path": "/usr/bin/" + cmd.split()[0]}}},
            "file": {"path": path}}


def test_no_reader_costs_nothing_and_filters_apply() -> None:
    hub = LiveHub(max_rate=1000)
    hub.publish("event", _ev(1007))
    assert hub.published == 0 and not hub.active
    procs = hub.subscribe(StreamFilter(class_uids=frozenset({1007})))
    curl = hub.subscribe(StreamFilter(text="CURL"))
    only_alerts = hub.subscribe(StreamFilter(events=False))
    hub.publish("event", _ev(1007, "ls -l"))
    hub.publish("event", _ev(1001, "curl http://x", "/tmp/out"))
    hub.publish("alert", {"finding_info": {"title": "curl to a paste site"}, "message": "m"})
    got = {name: hub.take(s)[0] for name, s in (("procs", procs), ("curl", curl), ("alerts", only_alerts))}
    assert [(k, o.get("class_uid")) for k, o in got["procs"]] == [("event", 1007), ("alert", None)]
    assert [(k, o.get("class_uid")) for k, o in got["curl"]] == [("event", 1001), ("alert", None)]
    assert [k for k, _ in got["alerts"]] == ["alert"]
    for s in (procs, curl, only_alerts):
        hub.unsubscribe(s)
    assert hub.subscribers() == 0


def test_a_flood_is_sampled_per_reader_and_reported_alerts_kept() -> None:
    hub = LiveHub(max_rate=50)
    slow = hub.subscribe(StreamFilter())
    fast = hub.subscribe(StreamFilter(class_uids=frozenset({4001})))
    for i in range(1000):
        hub.publish("event", _ev(1007, f"cmd{i}"))
        if i % 100 == 0:
            hub.publish("alert", {"n": i})
    items, reports = hub.take(slow, limit=10_000)
    events = [o for k, o in items if k == "event"]
    alerts = [o for k, o in items if k == "alert"]
    assert len(events) == 50  # the first second's share
    assert [a["n"] for a in alerts] == list(range(0, 1000, 100))  # every alert
    assert reports == []  # the window is still open
    time.sleep(1.05)
    hub.publish("event", _ev(1007, "next"))  # opens the next window: the last one is reported
    items, reports = hub.take(slow)
    assert reports == [{"shown": 50, "matched": 1000, "window_s": 1}]
    assert [o["actor"]["process"]["cmd_line"] for _, o in items] == ["next"]
    items, reports = hub.take(fast)  # no event matched its filter: nothing sampled, alerts all there
    assert [k for k, _ in items] == ["alert"] * 10 and reports == []


def test_a_reader_that_does_not_read_loses_events_counted() -> None:
    hub = LiveHub(max_rate=10**9)
    sub = hub.subscribe(StreamFilter())
    for i in range(SUBSCRIBER_BUFFER + 25):
        hub.publish("event", _ev(1007, f"c{i}"))
    assert sub.lost_slow == 25
    items, _ = hub.take(sub, limit=SUBSCRIBER_BUFFER + 100)
    assert len(items) == SUBSCRIBER_BUFFER
    assert items[0][1]["actor"]["process"]["cmd_line"] == "c0"
