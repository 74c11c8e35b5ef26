"""`events` and `alerts` commands over a real history database, in-process and as a subprocess."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from history_objs import make_alert, make_event

from sentinel_edge.errors import OutputError
from sentinel_edge.history import HistoryStore
from sentinel_edge.history.cli import DEFAULT_DB, add_history_parsers, parse_severity, parse_when

NOW = int(time.time() * 1000)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sentinel-edge")
    sub = p.add_subparsers(dest="command", required=True)
    add_history_parsers(sub)
    return p


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    args = _parser().parse_args(argv)
    rc = int(args.fn(args))
    return rc, capsys.readouterr().out.splitlines()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "h.db"
    with HistoryStore(path, retention_days=None, max_bytes=None) as s:
        s.add_event(make_event(0, time_ms=NOW - 3_600_000, class_uid=1001, kind="open", pid=10, exe="/usr/bin/cat",
                               user="bob", cmd_line="cat /etc/shadow", file_path="/etc/shadow"))
        s.add_event(make_event(1, time_ms=NOW - 1000, class_uid=1007, kind="exec", pid=11, exe="/usr/bin/curl",
                               user="root", cmd_line="curl http://evil.invalid/\x1b[31mred"))
        s.add_alert(make_alert("al-1", time_ms=NOW - 7_200_000, rule="se.a", title="Old low", severity_id=2))
        s.add_alert(make_alert("al-2", time_ms=NOW - 500, rule="se.b", title="New high", severity_id=4, pid=11,
                               user="root", exe="/usr/bin/curl"))
        assert s.flush()
    return path


def test_parse_when_and_severity() -> None:
    assert parse_when("15m", now_ms=1_000_000_000) == 1_000_000_000 - 900_000
    assert parse_when("2h", now_ms=10_000_000) == 10_000_000 - 7_200_000
    assert parse_when("1.5d", now_ms=200_000_000) == 200_000_000 - 129_600_000
    assert parse_when("1700000000") == 1_700_000_000_000
    assert parse_when("1700000000123") == 1_700_000_000_123
    assert parse_when("2023-11-14T22:13:20") == 1_700_000_000_000
    assert parse_when("2023-11-14T23:13:20+01:00") == 1_700_000_000_000
    with pytest.raises(argparse.ArgumentTypeError, match="bad time 'yesterday'"):
        parse_when("yesterday")
    assert parse_severity("high") == 4
    assert parse_severity("Critical") == 5
    assert parse_severity("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match="bad severity 'huge'"):
        parse_severity("huge")
    args = _parser().parse_args(["events"])
    assert args.db == DEFAULT_DB == "/var/lib/sentinel-edge/history.db"


def test_events_command_filters_and_json(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _run(["events", "--db", str(db), "--json"], capsys)
    assert rc == 0
    assert [json.loads(x)["unmapped"]["seq"] for x in out] == [1, 0]
    assert json.loads(out[1]) == make_event(0, time_ms=NOW - 3_600_000, class_uid=1001, kind="open", pid=10,
                                            exe="/usr/bin/cat", user="bob", cmd_line="cat /etc/shadow",
                                            file_path="/etc/shadow")
    for argv, want in ((["--class", "1001"], [0]), (["--kind", "exec"], [1]), (["--pid", "10"], [0]),
                       (["--exe", "/usr/bin/curl"], [1]), (["--user", "bob"], [0]), (["--since", "10m"], [1]),
                       (["--until", "10m"], [0]), (["--text", "shadow"], [0]), (["--text", "evil.invalid"], [1]),
                       (["--limit", "1"], [1]), (["--before-id", "2"], [0]), (["--pid", "99"], [])):
        rc, out = _run(["events", "--db", str(db), "--json", *argv], capsys)
        assert rc == 0
        assert [json.loads(x)["unmapped"]["seq"] for x in out] == want, argv
    rc, out = _run(["events", "--db", str(db), "--pid", "11"], capsys)
    assert rc == 0
    (line,) = out
    assert line.startswith("2 ")
    assert " class=1007 kind=exec pid=11 user=root exe=/usr/bin/curl cmd=curl http://evil.invalid/\\x1b[31mred" \
        in line
    assert "\x1b" not in line


def test_alerts_command_list_ack_resolve_show(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _run(["alerts", "--db", str(db), "--json"], capsys)
    assert rc == 0
    assert [json.loads(x)["finding_info"]["uid"] for x in out] == ["al-2", "al-1"]
    for argv, want in ((["--rule", "se.a"], ["al-1"]), (["--severity", "high"], ["al-2"]),
                       (["--severity", "2"], ["al-2", "al-1"]), (["--since", "1h"], ["al-2"]),
                       (["--text", "Old low"], ["al-1"]), (["--user", "root"], ["al-2"]), (["--pid", "11"], ["al-2"]),
                       (["--status", "new"], ["al-2", "al-1"]), (["--status", "resolved"], [])):
        rc, out = _run(["alerts", "--db", str(db), "--json", *argv], capsys)
        assert rc == 0
        assert [json.loads(x)["finding_info"]["uid"] for x in out] == want, argv

    rc, out = _run(["alerts", "--db", str(db), "ack", "al-2", "--who", "bob", "--comment", "on it"], capsys)
    assert (rc, out) == (0, ["al-2 acknowledged by bob"])
    rc, out = _run(["alerts", "resolve", "al-2", "--db", str(db), "--who", "carol", "--json"], capsys)
    assert rc == 0
    assert json.loads(out[0])["status_id"] == 4
    assert json.loads(out[0])["status"] == "Resolved"
    rc, out = _run(["alerts", "--db", str(db), "show", "al-2", "--json"], capsys)
    assert rc == 0
    shown = json.loads(out[0])
    assert [(h["who"], h["action"], h["old_status"], h["new_status"], h["comment"]) for h in shown["history"]] == [
        ("bob", "ack", "new", "acknowledged", "on it"), ("carol", "resolve", "acknowledged", "resolved", "")]
    rc, out = _run(["alerts", "--db", str(db), "show", "al-2"], capsys)
    assert rc == 0
    assert out[0].startswith("al-2 ") and " sev=4 resolved rule=se.b pid=11 user=root exe=/usr/bin/curl New high" \
        in out[0]
    assert out[1].endswith(" bob ack new->acknowledged on it")
    assert out[2].endswith(" carol resolve acknowledged->resolved ")
    rc, out = _run(["alerts", "--db", str(db), "--status", "resolved"], capsys)
    assert rc == 0
    assert [x.split()[0] for x in out] == ["al-2"]
    args = _parser().parse_args(["alerts", "--db", str(db), "ack", "nope"])
    with pytest.raises(OutputError, match="no alert 'nope'"):
        args.fn(args)
    args = _parser().parse_args(["events", "--db", str(db.parent / "missing.db")])
    with pytest.raises(OutputError, match=r"no history database at .*missing\.db"):
        args.fn(args)
    assert not (db.parent / "missing.db").exists()


def test_alerts_comment_command(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _run(["alerts", "--db", str(db), "comment", "al-1", "seen \x1b[2Jthis", "--who", "erin"], capsys)
    assert (rc, out) == (0, ["al-1 new commented by erin"])
    rc, out = _run(["alerts", "comment", "al-1", "second note", "--db", str(db), "--who", "frank", "--json"], capsys)
    assert rc == 0
    assert json.loads(out[0])["finding_info"]["uid"] == "al-1"
    assert json.loads(out[0])["status_id"] == 1
    rc, out = _run(["alerts", "--db", str(db), "show", "al-1"], capsys)
    assert rc == 0
    assert out[1].endswith(" erin comment new->new seen \\x1b[2Jthis")  # control characters escaped
    assert out[2].endswith(" frank comment new->new second note")
    args = _parser().parse_args(["alerts", "--db", str(db), "comment", "al-1", " "])
    assert args.fn(args) == 2
    assert capsys.readouterr().err == "sentinel-edge alerts comment: empty comment\n"
    with HistoryStore(db, retention_days=None, max_bytes=None) as s:
        got = s.get_alert("al-1")
        assert got is not None
        assert [(c.who, c.action, c.comment) for c in got.changes] == [("erin", "comment", "seen \x1b[2Jthis"),
                                                                        ("frank", "comment", "second note")]


def test_cli_as_a_subprocess(db: Path) -> None:
    code = ("import argparse, sys\n"
            "from sentinel_edge.history.cli import add_history_parsers\n"
            "p = argparse.ArgumentParser(prog='sentinel-edge')\n"
            "add_history_parsers(p.add_subparsers(dest='command', required=True))\n"
            "a = p.parse_args(sys.argv[1:])\n"
            "sys.exit(a.fn(a))\n")
    res = subprocess.run([sys.executable, "-c", code, "alerts", "--db", str(db), "ack", "al-1", "--who", "dave"],
                         capture_output=True, text=True, timeout=30)
    assert (res.returncode, res.stdout, res.stderr) == (0, "al-1 acknowledged by dave\n", "")
    res = subprocess.run([sys.executable, "-c", code, "alerts", "--db", str(db), "--status", "acknowledged",
                          "--json"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0
    (obj,) = [json.loads(x) for x in res.stdout.splitlines()]
    assert obj["finding_info"]["uid"] == "al-1"
    assert obj["status_id"] == 2
    res = subprocess.run([sys.executable, "-c", code, "events", "--db", str(db), "--since", "nonsense"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 2
    assert "bad time 'nonsense'" in res.stderr
