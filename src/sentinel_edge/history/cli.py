"""`sentinel-edge events` and `sentinel-edge alerts`: query the history store, acknowledge and resolve alerts."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import re
import sys
import time
from typing import Any

from sentinel_edge.errors import OutputError
from sentinel_edge.history.store import HistoryStore, StoredAlert, StoredEvent

DEFAULT_DB = "/var/lib/sentinel-edge/history.db"
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SEVERITY = {"unknown": 0, "informational": 1, "info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5,
             "fatal": 6}


def parse_when(text: str, *, now_ms: int | None = None) -> int:
    """A time as epoch ms: ``15m``/``2h``/``7d`` ago, epoch seconds or ms, or ISO 8601 (UTC if no zone)."""
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    m = _RELATIVE.match(text)
    if m:
        return now - int(float(m.group(1)) * _UNIT_S[m.group(2)] * 1000)
    if text.isdigit():
        value = int(text)
        return value if value >= 10**11 else value * 1000  # 10**11 s is year 5138: larger means ms
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad time {text!r}: use 15m, 2h, 7d, epoch seconds/ms or ISO 8601") \
            from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def parse_severity(text: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        return _SEVERITY[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"bad severity {text!r}: 0-6 or one of {', '.join(_SEVERITY)}") from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=DEFAULT_DB, metavar="PATH", help=f"history database (default {DEFAULT_DB})")
    p.add_argument("--since", type=parse_when, help="from this time (15m, 2h, 7d, epoch, ISO 8601)")
    p.add_argument("--until", type=parse_when, help="up to (not including) this time")
    p.add_argument("--pid", type=int)
    p.add_argument("--exe", help="executable path (exact)")
    p.add_argument("--user", help="user name (or uid when the name is unknown)")
    p.add_argument("--text", help="full-text search over command lines and paths")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--before-id", type=int, help="paging: rows older than this id")
    p.add_argument("--json", action="store_true", help="one OCSF JSON object per line")


def add_history_parsers(subparsers: Any) -> None:
    """Add ``events`` and ``alerts`` to the top-level sub-command parser."""
    ev = subparsers.add_parser("events", help="query stored events")
    _common(ev)
    ev.add_argument("--class", dest="class_uid", type=int, help="OCSF class_uid (e.g. 1007 process activity)")
    ev.add_argument("--kind", help="agent event kind (unmapped.event, e.g. exec, open)")
    ev.set_defaults(fn=_cmd_events)

    al = subparsers.add_parser("alerts", help="query stored alerts; ack or resolve one")
    _common(al)
    al.add_argument("--rule", help="rule id (finding_info.analytic.uid)")
    al.add_argument("--severity", type=parse_severity, help="minimum severity (0-6 or low/medium/high/critical)")
    al.add_argument("--status", choices=["new", "acknowledged", "resolved"])
    al.set_defaults(fn=_cmd_alerts)
    sub = al.add_subparsers(dest="alerts_action")
    for name, helptext in (("ack", "acknowledge an alert"), ("resolve", "resolve an alert"),
                           ("comment", "add a comment to an alert's history"),
                           ("show", "show one alert with its history")):
        one = sub.add_parser(name, help=helptext)
        one.add_argument("id", metavar="ID", help="alert uid (finding_info.uid)")
        if name == "comment":
            one.add_argument("text", metavar="TEXT", help="the comment")
        one.add_argument("--db", default=argparse.SUPPRESS, metavar="PATH", help="history database")
        one.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
        if name != "show":
            one.add_argument("--who", default=None, help="who (default: the login user)")
        if name in ("ack", "resolve"):
            one.add_argument("--comment", default="", help="a note kept in the alert's history")


def _open(path: str) -> HistoryStore:
    if not os.path.exists(path):
        raise OutputError(f"no history database at {path} (is the agent storing history? see --db)")
    return HistoryStore(path, retention_days=None, max_bytes=None)


def _ts(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _clean(value: object) -> str:
    """Attacker-controlled text on a terminal: no control characters."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in str(value))


def _event_line(e: StoredEvent) -> str:
    cmd = e.obj.get("actor", {}).get("process", {}).get("cmd_line", "")
    return _clean(f"{e.id} {_ts(e.time)} class={e.class_uid} kind={e.kind} pid={e.pid} user={e.user} "
                  f"exe={e.exe} cmd={cmd}")


def _alert_line(a: StoredAlert) -> str:
    return _clean(f"{a.uid} {_ts(a.time)} sev={a.severity_id} {a.status} rule={a.rule} pid={a.pid} "
                  f"user={a.user} exe={a.exe} {a.title}")


def _dump(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _cmd_events(args: argparse.Namespace) -> int:
    with _open(args.db) as store:
        rows = store.query_events(since=args.since, until=args.until, class_uid=args.class_uid, kind=args.kind,
                                  pid=args.pid, exe=args.exe, user=args.user, text=args.text, limit=args.limit,
                                  before_id=args.before_id)
    for e in rows:
        print(_dump(e.obj) if args.json else _event_line(e))
    return 0


def _cmd_alerts(args: argparse.Namespace) -> int:
    with _open(args.db) as store:
        action = getattr(args, "alerts_action", None)
        if action in ("ack", "resolve"):
            who = args.who or getpass.getuser()
            fn = store.ack if action == "ack" else store.resolve
            alert = fn(args.id, who, args.comment)
            print(_dump(alert.obj) if args.json else f"{_clean(alert.uid)} {alert.status} by {_clean(who)}")
            return 0
        if action == "comment":
            who = args.who or getpass.getuser()
            try:
                alert = store.comment(args.id, who, args.text)
            except ValueError as exc:
                print(f"sentinel-edge alerts comment: {exc}", file=sys.stderr)
                return 2
            print(_dump(alert.obj) if args.json else f"{_clean(alert.uid)} {alert.status} commented by {_clean(who)}")
            return 0
        if action == "show":
            found = store.get_alert(args.id)
            if found is None:
                print(f"no alert {_clean(args.id)}", file=sys.stderr)
                return 1
            if args.json:
                print(_dump({**found.obj, "history": [c.__dict__ for c in found.changes]}))
            else:
                print(_alert_line(found))
                for c in found.changes:
                    print(_clean(f"  {_ts(c.time)} {c.who} {c.action} {c.old_status}->{c.new_status} {c.comment}"))
            return 0
        rows = store.query_alerts(since=args.since, until=args.until, rule=args.rule, min_severity=args.severity,
                                  status=args.status, pid=args.pid, exe=args.exe, user=args.user, text=args.text,
                                  limit=args.limit, before_id=args.before_id)
    for a in rows:
        print(_dump(a.obj) if args.json else _alert_line(a))
    return 0
